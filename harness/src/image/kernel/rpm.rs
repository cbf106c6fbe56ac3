//! Vendor kernel RPMs (CentOS/RHEL `kernel-<version>.<arch>.rpm`): the
//! `/boot/vmlinuz-*` (and `/boot/config-*`) are taken out of the package
//! in-process, so no rpm tools are needed on the host.
//!
//! An RPM file is a 96-byte lead, a signature header (padded to 8 bytes),
//! the main header, then the payload: a cpio archive (SVR4 "newc"),
//! compressed with what the header's `PAYLOADCOMPRESSOR` tag names. The
//! compression is recognised by its magic bytes (the tag is only checked
//! against it): gzip (`flate2`), xz and lzma (`lzma-rust2`: it verifies the
//! SHA-256 check rpm writes into xz streams), zstd (`ruzstd`), all pure
//! Rust, so installing oomlab needs no C toolchain.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::catalogue::{is_release, CatalogueEntry, RpmSource};
use super::{hex, sha256_file, verify_cached, KernelImage};
use crate::image::ImageError;

const LEAD_LEN: usize = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
const TAG_PAYLOADFORMAT: u32 = 1124;
const TAG_PAYLOADCOMPRESSOR: u32 = 1125;
const TYPE_STRING: u32 = 6;
/// Far above any real header; a bound so a hostile file cannot make us
/// allocate gigabytes.
const MAX_HEADER_DATA: u32 = 256 << 20;
const MAX_INDEX: u32 = 1 << 20;
/// Larger files in the payload are not kernels: refused.
const MAX_MEMBER: u64 = 512 << 20;

/// What the headers say about the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmHeaders {
    /// `PAYLOADFORMAT`, normally `cpio` (absent in very old packages).
    pub format: Option<String>,
    /// `PAYLOADCOMPRESSOR`: `gzip`, `xz`, `lzma`, `zstd`... (absent: gzip).
    pub compressor: Option<String>,
    /// Byte offset of the payload in the file.
    pub payload_offset: u64,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads one header structure (magic, index, data); returns its index
/// entries, its data and the bytes it took.
fn read_header(r: &mut impl Read) -> io::Result<(Vec<[u32; 4]>, Vec<u8>, u64)> {
    let mut intro = [0u8; 16];
    r.read_exact(&mut intro)?;
    if intro[..4] != HEADER_MAGIC {
        return Err(bad("not an RPM header (bad magic)"));
    }
    let (n, size) = (be32(&intro[8..12]), be32(&intro[12..16]));
    if n > MAX_INDEX || size > MAX_HEADER_DATA {
        return Err(bad(format!(
            "RPM header too large ({n} entries, {size} bytes)"
        )));
    }
    let mut index = vec![0u8; n as usize * 16];
    r.read_exact(&mut index)?;
    let mut data = vec![0u8; size as usize];
    r.read_exact(&mut data)?;
    let entries = index
        .chunks_exact(16)
        .map(|c| [be32(&c[0..]), be32(&c[4..]), be32(&c[8..]), be32(&c[12..])])
        .collect();
    Ok((entries, data, 16 + u64::from(n) * 16 + u64::from(size)))
}

fn string_tag(entries: &[[u32; 4]], data: &[u8], tag: u32) -> Option<String> {
    let e = entries
        .iter()
        .find(|e| e[0] == tag && e[1] == TYPE_STRING)?;
    let s = data.get(e[2] as usize..)?;
    let end = s.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&s[..end]).into_owned())
}

/// Reads lead, signature header and main header; `r` is left at the
/// payload.
pub fn read_headers(r: &mut impl Read) -> io::Result<RpmHeaders> {
    let mut lead = [0u8; LEAD_LEN];
    r.read_exact(&mut lead)
        .map_err(|_| bad("shorter than an RPM lead"))?;
    if lead[..4] != LEAD_MAGIC {
        return Err(bad("not an RPM (bad lead magic)"));
    }
    let (_, _, sig_len) = read_header(r)?;
    // The signature header is padded to a multiple of 8 bytes.
    let pad = (8 - sig_len % 8) % 8;
    io::copy(&mut r.take(pad), &mut io::sink())?;
    let (entries, data, main_len) = read_header(r)?;
    Ok(RpmHeaders {
        format: string_tag(&entries, &data, TAG_PAYLOADFORMAT),
        compressor: string_tag(&entries, &data, TAG_PAYLOADCOMPRESSOR),
        payload_offset: LEAD_LEN as u64 + sig_len + pad + main_len,
    })
}

/// The payload's compression, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Lzma,
    Zstd,
    None,
}

pub fn sniff(head: &[u8]) -> Result<Compression, String> {
    Ok(match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Compression::Xz,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [b'0', b'7', b'0', b'7', b'0', ..] => Compression::None,
        [b'B', b'Z', b'h', ..] => return Err("bzip2 payloads are not supported".into()),
        // .lzma ("LZMA alone"): properties byte, dictionary size, length.
        [0x5d, 0, 0, ..] => Compression::Lzma,
        _ => {
            return Err(format!(
                "unknown payload compression (first bytes {head:02x?})"
            ))
        }
    })
}

/// A cpio ("newc") stream consumer: writes the regular files whose names
/// `want` accepts into `into` (by their last path component only), skips
/// everything else without buffering it.
pub struct CpioSink<'a> {
    into: &'a Path,
    want: &'a dyn Fn(&str) -> bool,
    state: CpioState,
    acc: Vec<u8>,
    /// `(name in the archive, file written)`.
    pub extracted: Vec<(String, PathBuf)>,
    pub done: bool,
}

enum CpioState {
    Header,
    Name {
        need: usize,
        name_len: usize,
        size: u64,
        regular: bool,
    },
    Data {
        left: u64,
        pad: u64,
        out: Option<File>,
    },
}

impl<'a> CpioSink<'a> {
    pub fn new(into: &'a Path, want: &'a dyn Fn(&str) -> bool) -> Self {
        CpioSink {
            into,
            want,
            state: CpioState::Header,
            acc: Vec::with_capacity(512),
            extracted: Vec::new(),
            done: false,
        }
    }

    fn hex_field(h: &[u8], i: usize) -> io::Result<u64> {
        let f = std::str::from_utf8(&h[6 + i * 8..14 + i * 8]).map_err(|_| bad("cpio header"))?;
        u64::from_str_radix(f, 16).map_err(|_| bad(format!("cpio header field `{f}`")))
    }

    /// Consumes a prefix of `buf`; returns how much.
    fn step(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            CpioState::Header => {
                let take = (110 - self.acc.len()).min(buf.len());
                self.acc.extend_from_slice(&buf[..take]);
                if self.acc.len() == 110 {
                    let h = std::mem::take(&mut self.acc);
                    if &h[..6] != b"070701" && &h[..6] != b"070702" {
                        return Err(bad(format!(
                            "not a newc cpio member (magic {:?})",
                            String::from_utf8_lossy(&h[..6])
                        )));
                    }
                    let mode = Self::hex_field(&h, 1)?;
                    let size = Self::hex_field(&h, 6)?;
                    let name_len = Self::hex_field(&h, 11)? as usize;
                    if name_len == 0 || name_len > 4096 {
                        return Err(bad("cpio name length out of range"));
                    }
                    // Header + name are padded to a multiple of 4.
                    let need = (110 + name_len).div_ceil(4) * 4 - 110;
                    self.state = CpioState::Name {
                        need,
                        name_len,
                        size,
                        regular: mode & 0o170000 == 0o100000,
                    };
                }
                Ok(take)
            }
            CpioState::Name {
                need,
                name_len,
                size,
                regular,
            } => {
                let take = (*need - self.acc.len()).min(buf.len());
                self.acc.extend_from_slice(&buf[..take]);
                if self.acc.len() == *need {
                    let raw = &self.acc[..*name_len - 1];
                    let name = String::from_utf8_lossy(raw).into_owned();
                    let (size, regular) = (*size, *regular);
                    self.acc.clear();
                    if name == "TRAILER!!!" {
                        self.done = true;
                        return Ok(take);
                    }
                    let mut out = None;
                    if regular && (self.want)(&name) {
                        if size > MAX_MEMBER {
                            return Err(bad(format!("{name}: {size} bytes, too large")));
                        }
                        let base = name.rsplit('/').next().unwrap_or_default();
                        if base.is_empty() || base.starts_with('.') {
                            return Err(bad(format!("cpio member `{name}`: bad file name")));
                        }
                        let path = self.into.join(base);
                        out = Some(File::create(&path)?);
                        self.extracted.push((name, path));
                    }
                    self.state = CpioState::Data {
                        left: size,
                        pad: (4 - size % 4) % 4,
                        out,
                    };
                }
                Ok(take)
            }
            CpioState::Data { left, pad, out } => {
                if *left > 0 {
                    let take = (*left).min(buf.len() as u64) as usize;
                    if let Some(f) = out {
                        f.write_all(&buf[..take])?;
                    }
                    *left -= take as u64;
                    return Ok(take);
                }
                let take = (*pad).min(buf.len() as u64) as usize;
                *pad -= take as u64;
                if *pad == 0 {
                    self.state = CpioState::Header;
                }
                Ok(take)
            }
        }
    }
}

impl Write for CpioSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut at = 0;
        while at < buf.len() && !self.done {
            at += self.step(&buf[at..])?;
        }
        // After the trailer: padding, ignored.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a kernel RPM held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmKernel {
    pub vmlinuz: PathBuf,
    pub release: String,
    pub config: Option<PathBuf>,
    pub headers: RpmHeaders,
}

fn is_boot_file(name: &str) -> bool {
    let n = name.trim_start_matches('.');
    ["/boot/vmlinuz-", "/boot/config-"]
        .iter()
        .any(|p| n.starts_with(p) && !n[p.len()..].contains('/'))
}

/// Unpacks `boot/vmlinuz-*` and `boot/config-*` of the RPM at `rpm` into
/// `into`. Exactly one kernel must be there.
pub fn extract_rpm_kernel(rpm: &Path, into: &Path) -> Result<RpmKernel, ImageError> {
    let fail = |detail: String| ImageError::Command {
        cmd: format!("unpack {}", rpm.display()),
        detail,
    };
    std::fs::create_dir_all(into).map_err(|e| ImageError::io("create extract dir", e))?;
    let f = File::open(rpm).map_err(|e| ImageError::io(format!("open {}", rpm.display()), e))?;
    let mut r = BufReader::with_capacity(1 << 16, f);
    let headers = read_headers(&mut r).map_err(|e| fail(e.to_string()))?;
    if headers.format.as_deref().is_some_and(|f| f != "cpio") {
        return Err(fail(format!(
            "payload format `{}` is not cpio",
            headers.format.as_deref().unwrap_or_default()
        )));
    }
    let head = r.fill_buf().map_err(|e| fail(e.to_string()))?;
    let kind = sniff(head).map_err(fail)?;
    let named = headers.compressor.as_deref().unwrap_or("gzip");
    let agrees = match kind {
        Compression::Gzip => named == "gzip",
        Compression::Xz => named == "xz",
        Compression::Lzma => named == "lzma",
        Compression::Zstd => named == "zstd",
        Compression::None => true,
    };
    if !agrees {
        return Err(fail(format!(
            "the header says the payload is {named}, its bytes say {kind:?}"
        )));
    }
    let want = is_boot_file;
    let mut sink = CpioSink::new(into, &want);
    let res = match kind {
        Compression::Gzip => {
            io::copy(&mut flate2::bufread::MultiGzDecoder::new(r), &mut sink).map(|_| ())
        }
        Compression::None => io::copy(&mut r, &mut sink).map(|_| ()),
        Compression::Zstd => ruzstd::decoding::StreamingDecoder::new(r)
            .map_err(|e| bad(e.to_string()))
            .and_then(|mut d| io::copy(&mut d, &mut sink).map(|_| ())),
        Compression::Xz => io::copy(&mut lzma_rust2::XzReader::new(r, true), &mut sink).map(|_| ()),
        Compression::Lzma => lzma_rust2::LzmaReader::new_mem_limit(r, 1 << 20, None)
            .and_then(|mut d| io::copy(&mut d, &mut sink).map(|_| ())),
    };
    res.map_err(|e| fail(format!("payload ({kind:?}): {e}")))?;
    if !sink.done {
        return Err(fail("payload ends before the cpio trailer".into()));
    }
    let mut kernels = Vec::new();
    let mut configs = Vec::new();
    for (name, path) in &sink.extracted {
        let base = name.rsplit('/').next().unwrap_or_default();
        if let Some(rel) = base.strip_prefix("vmlinuz-") {
            kernels.push((rel.to_string(), path.clone()));
        } else if let Some(rel) = base.strip_prefix("config-") {
            configs.push((rel.to_string(), path.clone()));
        }
    }
    if kernels.len() != 1 || !is_release(&kernels[0].0) {
        return Err(fail(format!(
            "expected one /boot/vmlinuz-<release>, found {}",
            kernels.len()
        )));
    }
    let (release, vmlinuz) = kernels.remove(0);
    let config = configs
        .into_iter()
        .find(|(r, _)| *r == release)
        .map(|(_, p)| p);
    Ok(RpmKernel {
        vmlinuz,
        release,
        config,
        headers,
    })
}

/// Gets the RPM of `src` into `work`: its `path` if that file exists, else
/// its `url` (`file://`, or http(s) through curl or wget).
fn obtain(src: &RpmSource, work: &Path) -> Result<PathBuf, String> {
    if let Some(p) = &src.path {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        if src.url.is_none() {
            return Err(format!("{} does not exist", p.display()));
        }
    }
    let url = src.url.as_deref().ok_or("no url")?;
    if let Some(p) = url.strip_prefix("file://") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{url}: no such file"))
        };
    }
    let dest = work.join("kernel.rpm");
    let tries: [(&str, Vec<&str>); 2] = [
        (
            "curl",
            vec!["-fsSL", "--retry", "2", "--connect-timeout", "30", "-o"],
        ),
        ("wget", vec!["-q", "--tries=3", "--timeout=30", "-O"]),
    ];
    let mut errors = Vec::new();
    for (tool, args) in tries {
        match std::process::Command::new(tool)
            .args(&args)
            .arg(&dest)
            .arg(url)
            .output()
        {
            Ok(o) if o.status.success() => return Ok(dest),
            Ok(o) => errors.push(format!(
                "{tool}: {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => errors.push(format!("{tool}: {e}")),
        }
    }
    Err(format!("download {url}: {}", errors.join("; ")))
}

/// A catalogue `rpm:` kernel: `<dir>/vmlinuz` once fetched (verified on
/// every use), else the RPM is obtained, checked against its own sha256,
/// and unpacked; the kernel's release and sha256 must match the entry.
pub(crate) fn ensure_cached_rpm(
    dir: &Path,
    entry: &CatalogueEntry,
    src: &RpmSource,
) -> Result<KernelImage, ImageError> {
    let pinned = dir.join("vmlinuz");
    if pinned.is_file() {
        return verify_cached(entry, pinned);
    }
    let fail = |detail: String| ImageError::Fetch {
        name: entry.name.clone(),
        detail,
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| ImageError::io(format!("create {}", dir.display()), e))?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .map_err(|e| ImageError::io(format!("create temp dir in {}", dir.display()), e))?;
    let rpm = obtain(src, work.path()).map_err(fail)?;
    let actual = sha256_file(&rpm)?;
    if actual != src.sha256 {
        return Err(ImageError::ChecksumMismatch {
            name: entry.name.clone(),
            path: rpm,
            expected: src.sha256.clone(),
            actual,
        });
    }
    let k = extract_rpm_kernel(&rpm, &work.path().join("x"))?;
    if k.release != entry.release {
        return Err(fail(format!(
            "{} holds the kernel of release {}, the catalogue says {}",
            rpm.display(),
            k.release,
            entry.release
        )));
    }
    let got = sha256_file(&k.vmlinuz)?;
    if got != entry.sha256 {
        return Err(ImageError::ChecksumMismatch {
            name: entry.name.clone(),
            path: k.vmlinuz,
            expected: entry.sha256.clone(),
            actual: got,
        });
    }
    if let Some(c) = &k.config {
        std::fs::rename(c, dir.join("config"))
            .map_err(|e| ImageError::io("move config into the cache", e))?;
    }
    std::fs::rename(&k.vmlinuz, &pinned)
        .map_err(|e| ImageError::io(format!("move kernel into {}", pinned.display()), e))?;
    verify_cached(entry, pinned)
}

/// `--kernel some-kernel.rpm`: unpacked once into
/// `<kernels>/rpm-<sha256 of the rpm, 16 digits>/`; not pinned (nothing to
/// check it against), but named by the RPM's own hash.
pub fn own_rpm(rpm: &Path, kernels: &Path) -> Result<KernelImage, ImageError> {
    let sha = sha256_file(rpm)?;
    let dir = kernels.join(format!("rpm-{}", &sha[..16]));
    let vmlinuz = dir.join("vmlinuz");
    let release_file = dir.join("release");
    let name = rpm
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !(vmlinuz.is_file() && release_file.is_file()) {
        std::fs::create_dir_all(&dir)
            .map_err(|e| ImageError::io(format!("create {}", dir.display()), e))?;
        let work = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&dir)
            .map_err(|e| ImageError::io("create temp dir", e))?;
        let k = extract_rpm_kernel(rpm, work.path())?;
        if let Some(c) = &k.config {
            std::fs::rename(c, dir.join("config"))
                .map_err(|e| ImageError::io("move config into the cache", e))?;
        }
        std::fs::write(&release_file, &k.release)
            .map_err(|e| ImageError::io("write release", e))?;
        std::fs::rename(&k.vmlinuz, &vmlinuz)
            .map_err(|e| ImageError::io(format!("move kernel into {}", vmlinuz.display()), e))?;
    }
    let release = std::fs::read_to_string(&release_file)
        .map_err(|e| ImageError::io("read release", e))?
        .trim()
        .to_string();
    Ok(KernelImage {
        sha256: sha256_file(&vmlinuz)?,
        path: vmlinuz,
        name,
        release,
        pinned: false,
    })
}

/// Builds a minimal, valid RPM around a cpio payload: for tests, and to
/// document the format in code. `compressor` is written as the
/// `PAYLOADCOMPRESSOR` tag; `payload` must already be compressed that way.
pub fn build_minimal_rpm(name: &str, compressor: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut lead = [0u8; LEAD_LEN];
    lead[..4].copy_from_slice(&LEAD_MAGIC);
    lead[4] = 3; // major
    lead[8] = 1; // arch: i386/x86_64 family
    let n = name.as_bytes();
    lead[10..10 + n.len().min(65)].copy_from_slice(&n[..n.len().min(65)]);
    lead[76..78].copy_from_slice(&1u16.to_be_bytes()); // os: Linux
    lead[78..80].copy_from_slice(&5u16.to_be_bytes()); // signature type: header-style
    v.extend_from_slice(&lead);
    let header = |tags: &[(u32, &str)]| {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, value) in tags {
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&TYPE_STRING.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(value.as_bytes());
            data.push(0);
        }
        let mut h = HEADER_MAGIC.to_vec();
        h.extend_from_slice(&[0; 4]);
        h.extend_from_slice(&(tags.len() as u32).to_be_bytes());
        h.extend_from_slice(&(data.len() as u32).to_be_bytes());
        h.extend_from_slice(&index);
        h.extend_from_slice(&data);
        h
    };
    // A signature header with one (meaningless) string tag, to exercise
    // the padding; then the main header.
    let sig = header(&[(1000, "x")]);
    v.extend_from_slice(&sig);
    v.resize(v.len() + (8 - sig.len() % 8) % 8, 0);
    v.extend_from_slice(&header(&[
        (1000, name),
        (TAG_PAYLOADFORMAT, "cpio"),
        (TAG_PAYLOADCOMPRESSOR, compressor),
    ]));
    v.extend_from_slice(payload);
    v
}

/// A newc cpio archive of `files` (`(name, mode, data)`), with the trailer.
pub fn build_newc(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut member = |name: &str, mode: u32, data: &[u8], ino: u32| {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        v.extend_from_slice(b"070701");
        for f in fields {
            v.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        v.extend_from_slice(name.as_bytes());
        v.push(0);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(data);
        while v.len() % 4 != 0 {
            v.push(0);
        }
    };
    for (i, (name, mode, data)) in files.iter().enumerate() {
        member(name, *mode, data, i as u32 + 1);
    }
    member("TRAILER!!!", 0, &[], 0);
    v
}

/// sha256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests;
