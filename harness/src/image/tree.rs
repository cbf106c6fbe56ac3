//! The files a guest gets beside the payload, as one tree that both image
//! formats are written from: the initramfs (newc cpio) and the ext4 disk.
//! Every entry is owned by root; modes are explicit (the SSH server refuses
//! keys in folders others can write).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cpio::CpioWriter;
use super::elf::GuestFile;
use super::ImageError;

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// A file on the host, read when the image is written.
    Host(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, content: Content },
    Symlink { target: String },
}

/// Paths are absolute in the guest; kept without the leading `/`, sorted,
/// so a folder always comes before what it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestTree {
    nodes: BTreeMap<String, Node>,
}

fn key(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

impl GuestTree {
    pub fn new() -> Self {
        Self::default()
    }

    fn parents(&mut self, k: &str) {
        let mut at = 0;
        while let Some(i) = k[at..].find('/') {
            let p = &k[..at + i];
            self.nodes
                .entry(p.to_string())
                .or_insert(Node::Dir { mode: 0o755 });
            at += i + 1;
        }
    }

    /// A folder (and its missing parents, 0755); a later call sets the mode.
    pub fn dir(&mut self, path: &str, mode: u32) {
        let k = key(path);
        if k.is_empty() {
            return;
        }
        self.parents(&k);
        self.nodes.insert(k, Node::Dir { mode });
    }

    pub fn file(&mut self, path: &str, mode: u32, content: Content) {
        let k = key(path);
        self.parents(&k);
        self.nodes.insert(k, Node::File { mode, content });
    }

    pub fn bytes(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) {
        self.file(path, mode, Content::Bytes(data.into()));
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        let k = key(path);
        self.parents(&k);
        self.nodes.insert(
            k,
            Node::Symlink {
                target: target.to_string(),
            },
        );
    }

    /// Programs and their libraries, executable, from the host.
    pub fn programs(&mut self, files: &[GuestFile]) {
        for f in files {
            self.file(
                &f.guest.to_string_lossy(),
                0o755,
                Content::Host(f.host.clone()),
            );
        }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(&key(path))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Bytes of all file contents (host files by their size now).
    pub fn content_bytes(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| match n {
                Node::File {
                    content: Content::Bytes(b),
                    ..
                } => b.len() as u64,
                Node::File {
                    content: Content::Host(p),
                    ..
                } => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
                _ => 0,
            })
            .sum()
    }

    /// Every entry into a cpio archive, skipping folders in `skip` (the
    /// archive already has them).
    pub fn write_cpio<W: std::io::Write>(
        &self,
        w: &mut CpioWriter<W>,
        skip: &[&str],
    ) -> Result<(), ImageError> {
        for (k, n) in &self.nodes {
            match n {
                Node::Dir { mode } if !skip.contains(&k.as_str()) => w.dir(k, *mode)?,
                Node::Dir { .. } => {}
                Node::File { mode, content } => w.file(k, *mode, &read(content)?)?,
                Node::Symlink { target } => w.symlink(k, target)?,
            }
        }
        Ok(())
    }

    /// Writes the tree under `root` (a fresh folder), modes included.
    pub fn materialize(&self, root: &Path) -> Result<(), ImageError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |what: &str, p: &Path, e| ImageError::io(format!("{what} {}", p.display()), e);
        for (k, n) in &self.nodes {
            let p = root.join(k);
            match n {
                Node::Dir { mode } => {
                    std::fs::create_dir_all(&p).map_err(|e| io("create", &p, e))?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                        .map_err(|e| io("chmod", &p, e))?;
                }
                Node::File { mode, content } => {
                    match content {
                        Content::Bytes(b) => std::fs::write(&p, b),
                        Content::Host(h) => std::fs::copy(h, &p).map(|_| ()),
                    }
                    .map_err(|e| io("write", &p, e))?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                        .map_err(|e| io("chmod", &p, e))?;
                }
                Node::Symlink { target } => {
                    std::os::unix::fs::symlink(target, &p).map_err(|e| io("symlink", &p, e))?
                }
            }
        }
        Ok(())
    }
}

fn read(c: &Content) -> Result<Vec<u8>, ImageError> {
    match c {
        Content::Bytes(b) => Ok(b.clone()),
        Content::Host(p) => {
            std::fs::read(p).map_err(|e| ImageError::io(format!("read {}", p.display()), e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parents_come_first_and_modes_stick() {
        let mut t = GuestTree::new();
        t.bytes("/root/.ssh/authorized_keys", 0o600, "ssh-ed25519 AAAA k\n");
        t.dir("/root/.ssh", 0o700);
        t.dir("/root", 0o700);
        t.symlink("/bin/sh", "busybox");
        let keys: Vec<&str> = t.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "bin",
                "bin/sh",
                "root",
                "root/.ssh",
                "root/.ssh/authorized_keys"
            ]
        );
        assert_eq!(t.get("/root/.ssh"), Some(&Node::Dir { mode: 0o700 }));
        let d = tempfile::tempdir().unwrap();
        t.materialize(d.path()).unwrap();
        let mode = |p: &str| {
            std::fs::symlink_metadata(d.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("root"), 0o700);
        assert_eq!(mode("root/.ssh/authorized_keys"), 0o600);
        assert_eq!(
            std::fs::read_link(d.path().join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(t.content_bytes(), 19);
    }
}
