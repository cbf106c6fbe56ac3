//! Minimal newc ("070701") cpio writer: what the kernel's initramfs unpacker
//! reads. Uncompressed, so the kernel needs no decompressor configured.
//!
//! Every field is fixed (uid/gid 0, mtime 0) so the same inputs give the
//! same bytes: images are reproducible and cheap to compare.

use std::io::{self, Write};

use super::ImageError;

const MAGIC: &str = "070701";
const HEADER_LEN: usize = 110;

pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFLNK: u32 = 0o120000;

/// One header's variable fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub ino: u32,
    pub mode: u32,
    pub nlink: u32,
    pub filesize: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// Name length including its terminating NUL, as newc stores it.
    pub namesize: u32,
}

impl Header {
    /// The 110-byte ASCII header: magic then 13 eight-digit hex fields.
    pub fn encode(&self) -> String {
        let fields = [
            self.ino,
            self.mode,
            0, // uid
            0, // gid
            self.nlink,
            0, // mtime: fixed for reproducible images
            self.filesize,
            0, // devmajor
            0, // devminor
            self.rdev_major,
            self.rdev_minor,
            self.namesize,
            0, // check: only used by the "070702" crc format
        ];
        let mut s = String::with_capacity(HEADER_LEN);
        s.push_str(MAGIC);
        for f in fields {
            s.push_str(&format!("{f:08X}"));
        }
        s
    }
}

/// Zero bytes needed to bring `len` to a multiple of 4.
pub fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Streams entries into `W`; call [`CpioWriter::finish`] to write the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    offset: usize,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            offset: 0,
        }
    }

    /// A directory, e.g. `dir("dev", 0o755)`. Names are archive-relative
    /// (no leading `/`); a leading `/` is stripped.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), ImageError> {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    /// A regular file with `perm` bits (e.g. 0o755 for `/init`).
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), ImageError> {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link to `target` (its body is the target path).
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), ImageError> {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node, e.g. `/dev/console` = (5, 1).
    pub fn char_dev(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), ImageError> {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Writes `TRAILER!!!` and returns the inner writer, flushed.
    pub fn finish(mut self) -> Result<W, ImageError> {
        // The trailer is an ordinary entry with inode 0 and an empty body.
        self.next_ino = 0;
        self.raw_entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        self.out
            .flush()
            .map_err(|e| ImageError::io("flush cpio archive", e))?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), ImageError> {
        let name = name.trim_start_matches('/');
        if name.is_empty() || name == "TRAILER!!!" {
            return Err(ImageError::Cpio {
                name: name.to_string(),
                detail: "reserved or empty name".into(),
            });
        }
        self.raw_entry(name, mode, nlink, rdev, data)?;
        self.next_ino += 1;
        Ok(())
    }

    fn raw_entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), ImageError> {
        let bad = |detail: &str| ImageError::Cpio {
            name: name.to_string(),
            detail: detail.to_string(),
        };
        if name.contains('\0') {
            return Err(bad("name contains NUL"));
        }
        let filesize = u32::try_from(data.len()).map_err(|_| bad("file larger than 4 GiB"))?;
        let header = Header {
            ino: self.next_ino,
            mode,
            nlink,
            filesize,
            rdev_major: rdev.0,
            rdev_minor: rdev.1,
            namesize: name.len() as u32 + 1,
        };
        let io_err = |e: io::Error| ImageError::io(format!("write cpio entry `{name}`"), e);
        let zeros = [0u8; 4];
        // Header + name + NUL is padded so the body starts 4-aligned, and the
        // body is padded so the next header does too.
        let head_len = HEADER_LEN + name.len() + 1;
        let head_pad = pad4(self.offset + head_len);
        self.out
            .write_all(header.encode().as_bytes())
            .and_then(|_| self.out.write_all(name.as_bytes()))
            .and_then(|_| self.out.write_all(&zeros[..1]))
            .and_then(|_| self.out.write_all(&zeros[..head_pad]))
            .map_err(io_err)?;
        self.offset += head_len + head_pad;
        let body_pad = pad4(self.offset + data.len());
        self.out
            .write_all(data)
            .and_then(|_| self.out.write_all(&zeros[..body_pad]))
            .map_err(io_err)?;
        self.offset += data.len() + body_pad;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses one newc header field (index 0 = ino).
    fn field(h: &[u8], i: usize) -> u32 {
        let s = std::str::from_utf8(&h[6 + i * 8..6 + (i + 1) * 8]).unwrap();
        u32::from_str_radix(s, 16).unwrap()
    }

    /// (name, mode, rdev, data) of one archive entry.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Reads back every entry.
    fn parse(mut b: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut off = 0usize;
        loop {
            assert_eq!(&b[..6], b"070701", "magic at offset {off}");
            let mode = field(b, 1);
            let size = field(b, 6) as usize;
            let rdev = (field(b, 9), field(b, 10));
            let namesize = field(b, 11) as usize;
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(b[110 + namesize - 1], 0);
            let body = 110 + namesize + pad4(off + 110 + namesize);
            assert_eq!((off + body) % 4, 0);
            let data = b[body..body + size].to_vec();
            let next = body + size + pad4(off + body + size);
            off += next;
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, rdev, data));
        }
    }

    #[test]
    fn header_fields_are_fixed_width_hex() {
        let h = Header {
            ino: 1,
            mode: S_IFCHR | 0o600,
            nlink: 1,
            filesize: 0x1234,
            rdev_major: 5,
            rdev_minor: 1,
            namesize: 12,
        };
        let s = h.encode();
        assert_eq!(s.len(), HEADER_LEN);
        assert_eq!(
            s,
            "070701\
             00000001\
             00002180\
             00000000\
             00000000\
             00000001\
             00000000\
             00001234\
             00000000\
             00000000\
             00000005\
             00000001\
             0000000C\
             00000000"
        );
    }

    #[test]
    fn pad4_rounds_up() {
        assert_eq!(pad4(0), 0);
        assert_eq!(pad4(1), 3);
        assert_eq!(pad4(4), 0);
        assert_eq!(pad4(110 + 5), 1);
    }

    #[test]
    fn round_trip_all_entry_kinds() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/dev", 0o755).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.file("/init", 0o755, b"\x7fELF-ish").unwrap();
        w.file("oomlab/scenario.conf", 0o644, b"name=x\n").unwrap();
        w.file("empty", 0o644, b"").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "oomlab/scenario.conf",
                "empty"
            ]
        );
        assert_eq!(entries[0].1, S_IFDIR | 0o755);
        assert_eq!(entries[1].1, S_IFCHR | 0o600);
        assert_eq!(entries[1].2, (5, 1));
        assert_eq!(entries[2].1, S_IFREG | 0o755);
        assert_eq!(entries[2].3, b"\x7fELF-ish");
        assert_eq!(entries[3].3, b"name=x\n");
    }

    #[test]
    fn inodes_are_distinct_and_output_is_deterministic() {
        let build = || {
            let mut w = CpioWriter::new(Vec::new());
            w.dir("a", 0o755).unwrap();
            w.dir("b", 0o755).unwrap();
            w.finish().unwrap()
        };
        let a = build();
        assert_eq!(a, build());
        let second = 110 + 2 + pad4(112);
        assert_eq!(field(&a, 0), 1);
        assert_eq!(field(&a[second..], 0), 2);
    }

    #[test]
    fn rejects_bad_names() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("a\0b", 0o644, b"").is_err());
        assert!(w.dir("/", 0o755).is_err());
        assert!(w.file("TRAILER!!!", 0o644, b"").is_err());
    }
}
