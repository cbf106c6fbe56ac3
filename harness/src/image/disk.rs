//! Disk images for the guest, written without root rights: the ext4 root
//! (`mkfs.ext4 -d` from a staged folder, then every inode given to root
//! with a `debugfs` batch, since `-d` keeps the builder's uid) and a swap
//! disk (a swap header, then zeros).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tree::GuestTree;
use super::ImageError;

/// e2fsprogs lives in /sbin, which a normal user's PATH may lack.
fn tool(name: &str) -> Result<PathBuf, ImageError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/sbin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ImageError::Command {
            cmd: name.to_string(),
            detail: "not found (Debian: e2fsprogs, which every Debian system has)".into(),
        })
}

fn run(cmd: &mut Command, shown: &str) -> Result<String, ImageError> {
    let out = cmd.output().map_err(|e| ImageError::Command {
        cmd: shown.to_string(),
        detail: e.to_string(),
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() {
        return Err(ImageError::Command {
            cmd: shown.to_string(),
            detail: format!("{}: {stderr}", out.status),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &stderr)
}

/// MiB for a file system holding `content` bytes: room for metadata, the
/// journal and what the guest writes (logs, nginx's temp files).
pub fn ext4_size_mib(content: u64) -> u64 {
    let mib = content.div_ceil(1 << 20);
    (mib + mib / 4 + 24).max(32)
}

/// The `debugfs` commands that make every path of `tree` root's.
pub fn ownership_commands(tree: &GuestTree) -> String {
    let mut s = String::new();
    for (k, _) in tree.iter() {
        for field in ["uid", "gid"] {
            s.push_str(&format!("sif \"/{k}\" {field} 0\n"));
        }
    }
    s
}

/// Writes an ext4 image of `tree` to `out`, staging its files under
/// `staging` (a fresh folder, removed by the caller). Returns its size.
pub fn write_ext4(tree: &GuestTree, staging: &Path, out: &Path) -> Result<u64, ImageError> {
    if tree
        .iter()
        .any(|(k, _)| k.contains('"') || k.contains('\n'))
    {
        return Err(ImageError::Command {
            cmd: "debugfs".into(),
            detail: "a guest path holds a quote or a newline".into(),
        });
    }
    tree.materialize(staging)?;
    let mib = ext4_size_mib(tree.content_bytes());
    let mkfs = tool("mkfs.ext4")?;
    run(
        Command::new(&mkfs)
            .args([
                "-q",
                "-F",
                "-b",
                "4096",
                "-L",
                "oomlab",
                "-E",
                "root_owner=0:0",
                "-d",
            ])
            .arg(staging)
            .arg(out)
            .arg(format!("{mib}M")),
        &format!("mkfs.ext4 -d {}", staging.display()),
    )?;
    let cmds = staging.with_extension("debugfs");
    std::fs::write(&cmds, ownership_commands(tree))
        .map_err(|e| ImageError::io(format!("write {}", cmds.display()), e))?;
    let res = run(
        Command::new(tool("debugfs")?)
            .arg("-w")
            .arg("-f")
            .arg(&cmds)
            .arg(out),
        "debugfs -w (owner root)",
    );
    let _ = std::fs::remove_file(&cmds);
    res?;
    Ok(mib << 20)
}

/// A swap disk of `mib` MiB: the swap header, then zeros (sparse).
pub fn write_swap(out: &Path, mib: u64) -> Result<(), ImageError> {
    let header = oomlab_protocol::guest::swap_header(mib * 256);
    let f = std::fs::File::create(out)
        .map_err(|e| ImageError::io(format!("create {}", out.display()), e))?;
    use std::io::Write;
    (&f).write_all(&header)
        .and_then(|_| f.set_len(mib << 20))
        .map_err(|e| ImageError::io(format!("write {}", out.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_leave_room() {
        assert_eq!(ext4_size_mib(0), 32);
        assert_eq!(ext4_size_mib(40 << 20), 40 + 10 + 24);
    }

    #[test]
    fn swap_disk_has_its_signature() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("swap.img");
        write_swap(&p, 4).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(b.len(), 4 << 20);
        assert_eq!(&b[4086..4096], b"SWAPSPACE2");
    }

    /// mkfs.ext4 -d, then debugfs reads back owners and modes.
    #[test]
    fn ext4_image_is_owned_by_root_with_modes_kept() {
        if tool("mkfs.ext4").is_err() || tool("debugfs").is_err() {
            eprintln!("e2fsprogs missing: skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let mut t = GuestTree::new();
        t.dir("/root", 0o700);
        t.dir("/root/.ssh", 0o700);
        t.bytes("/root/.ssh/authorized_keys", 0o600, "ssh-ed25519 AAAA k\n");
        t.bytes("/init", 0o755, b"\x7fELF".to_vec());
        t.symlink("/bin/sh", "busybox");
        let img = d.path().join("disk.ext4");
        let size = write_ext4(&t, &d.path().join("stage"), &img).unwrap();
        assert_eq!(std::fs::metadata(&img).unwrap().len(), size);
        let stat = run(
            Command::new(tool("debugfs").unwrap())
                .arg("-R")
                .arg("stat /root/.ssh/authorized_keys")
                .arg(&img),
            "debugfs stat",
        )
        .unwrap();
        assert!(
            stat.contains("User:     0") && stat.contains("Group:     0"),
            "{stat}"
        );
        assert!(stat.contains("Mode:  0600"), "{stat}");
        let ls = run(
            Command::new(tool("debugfs").unwrap())
                .arg("-R")
                .arg("stat /root")
                .arg(&img),
            "debugfs stat",
        )
        .unwrap();
        assert!(ls.contains("Mode:  0700"), "{ls}");
    }
}
