//! The per-run initramfs: the payload as `/init`, the few device nodes PID 1
//! needs before it can mount anything, and the scenario as plain text.

use std::io::Write;
use std::path::Path;

use super::cpio::CpioWriter;
use super::elf::GuestFile;
use super::ImageError;

/// Device nodes created in the archive, so `/init` has a console and both
/// serial ports without devtmpfs: (path, major, minor).
pub const DEVICE_NODES: [(&str, u32, u32); 4] = [
    ("dev/console", 5, 1),
    ("dev/null", 1, 3),
    ("dev/ttyS0", 4, 64),
    ("dev/ttyS1", 4, 65),
];

/// Directories created in the archive (mount points and scratch).
pub const DIRS: [&str; 5] = ["dev", "proc", "sys", "oomlab", "tmp"];

/// A file beside the payload (a program, its libraries): its path in the
/// archive (leading `/` allowed) and its bytes; always executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    pub path: String,
    pub data: Vec<u8>,
}

/// Packs the archive into any writer. Pure apart from the writer: tested on
/// a `Vec<u8>`.
pub fn pack<W: Write>(
    out: W,
    payload: &[u8],
    scenario_conf: &str,
    extras: &[Extra],
) -> Result<W, ImageError> {
    let mut w = CpioWriter::new(out);
    for d in DIRS {
        // /tmp is world-writable with the sticky bit, as everywhere else.
        let perm = if d == "tmp" { 0o1777 } else { 0o755 };
        w.dir(d, perm)?;
    }
    // Every parent folder of the extras, parents first (sorted order).
    let mut parents = std::collections::BTreeSet::new();
    for e in extras {
        let p = Path::new(e.path.trim_start_matches('/'));
        for a in p.ancestors().skip(1) {
            let a = a.to_string_lossy();
            if !a.is_empty() && !DIRS.contains(&a.as_ref()) {
                parents.insert(a.into_owned());
            }
        }
    }
    for d in &parents {
        w.dir(d, 0o755)?;
    }
    for e in extras {
        w.file(e.path.trim_start_matches('/'), 0o755, &e.data)?;
    }
    for (name, major, minor) in DEVICE_NODES {
        let perm = if name == "dev/null" { 0o666 } else { 0o600 };
        w.char_dev(name, perm, major, minor)?;
    }
    w.file("init", 0o755, payload)?;
    w.file("oomlab/scenario.conf", 0o644, scenario_conf.as_bytes())?;
    w.finish()
}

/// Writes the initramfs to `out`, atomically: a crash never leaves a
/// half-written image. `files` are packed beside the payload.
pub fn write_initramfs(
    out: &Path,
    payload: &Path,
    scenario_conf: &str,
    files: &[GuestFile],
) -> Result<(), ImageError> {
    let data = std::fs::read(payload)
        .map_err(|e| ImageError::io(format!("read payload {}", payload.display()), e))?;
    let extras = files
        .iter()
        .map(|f| {
            Ok(Extra {
                path: f.guest.to_string_lossy().into_owned(),
                data: std::fs::read(&f.host)
                    .map_err(|e| ImageError::io(format!("read {}", f.host.display()), e))?,
            })
        })
        .collect::<Result<Vec<_>, ImageError>>()?;
    crate::atomic::write_atomic(out, |w| {
        pack(w, &data, scenario_conf, &extras)
            .map(|_| ())
            .map_err(std::io::Error::other)
    })
    .map_err(|e| ImageError::io(format!("write {}", out.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn pack_has_every_entry() {
        let bytes = pack(Vec::new(), b"PAYLOAD", "name=t\n", &[]).unwrap();
        for name in ["dev\0", "proc\0", "sys\0", "oomlab\0", "tmp\0", "init\0"] {
            assert!(contains(&bytes, name.as_bytes()), "{name}");
        }
        for (n, _, _) in DEVICE_NODES {
            assert!(contains(&bytes, n.as_bytes()), "{n}");
        }
        assert!(contains(&bytes, b"oomlab/scenario.conf\0"));
        assert!(contains(&bytes, b"PAYLOAD"));
        assert!(contains(&bytes, b"name=t\n"));
        assert!(contains(&bytes, b"TRAILER!!!\0"));
    }

    #[test]
    fn extras_get_their_parent_folders_once() {
        let extras = [
            Extra {
                path: "/usr/bin/earlyoom".into(),
                data: b"EO".to_vec(),
            },
            Extra {
                path: "/lib/x86_64-linux-gnu/libc.so.6".into(),
                data: b"LIBC".to_vec(),
            },
        ];
        let bytes = pack(Vec::new(), b"P", "", &extras).unwrap();
        for name in [
            "usr\0",
            "usr/bin\0",
            "usr/bin/earlyoom\0",
            "lib/x86_64-linux-gnu\0",
        ] {
            assert!(contains(&bytes, name.as_bytes()), "{name}");
        }
        let count = |n: &[u8]| bytes.windows(n.len()).filter(|w| *w == n).count();
        assert_eq!(count(b"usr\0"), 1);
    }

    #[test]
    fn write_is_atomic_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("payload");
        std::fs::write(&payload, b"\x7fELF").unwrap();
        let out = dir.path().join("initramfs.cpio");
        write_initramfs(&out, &payload, "duration_ms=1\n", &[]).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(
            bytes,
            pack(Vec::new(), b"\x7fELF", "duration_ms=1\n", &[]).unwrap()
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn missing_payload_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_initramfs(&dir.path().join("out"), &dir.path().join("nope"), "", &[])
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
