//! Just enough ELF to pack a dynamically linked program into the guest: its
//! interpreter (`PT_INTERP`) and the libraries it needs (`DT_NEEDED`, with
//! `DT_RUNPATH`/`DT_RPATH`), resolved recursively against a root directory
//! and the host's library directories. 64-bit little-endian only: the guest
//! is x86_64.
//!
//! Hand-written rather than a crate: three table walks over a few headers,
//! every offset bounds-checked; what the guest image needs and nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a program needs from the dynamic linker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dynamic {
    /// `PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`; None for static.
    pub interp: Option<String>,
    /// `DT_NEEDED` names, e.g. `libc.so.6`.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` and `DT_RPATH` entries (`$ORIGIN` unexpanded).
    pub runpath: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    #[error("not an ELF file")]
    NotElf,
    #[error("not a 64-bit little-endian ELF (only x86_64 guests are supported)")]
    Unsupported,
    #[error("truncated or malformed ELF: {0}")]
    Malformed(&'static str),
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}
fn usize_at(b: &[u8], off: usize) -> Option<usize> {
    usize::try_from(u64_at(b, off)?).ok()
}

fn c_str(b: &[u8], off: usize) -> Option<String> {
    let s = b.get(off..)?;
    let end = s.iter().take(4096).position(|&c| c == 0)?;
    String::from_utf8(s[..end].to_vec()).ok()
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// Reads the dynamic-linking facts of an ELF image.
pub fn dynamic(b: &[u8]) -> Result<Dynamic, ElfError> {
    if b.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian.
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err(ElfError::Unsupported);
    }
    let m = ElfError::Malformed;
    let phoff = usize_at(b, 0x20).ok_or(m("e_phoff"))?;
    let phentsize = usize::from(u16_at(b, 0x36).ok_or(m("e_phentsize"))?);
    let phnum = usize::from(u16_at(b, 0x38).ok_or(m("e_phnum"))?);
    if phentsize < 56 {
        return Err(m("program header entries too small"));
    }
    // (vaddr, offset, filesz) of each PT_LOAD, to map addresses to offsets.
    let mut loads = Vec::new();
    let mut out = Dynamic::default();
    let mut dyn_seg = None;
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i.checked_mul(phentsize).ok_or(m("e_phnum"))?)
            .ok_or(m("e_phoff"))?;
        let p_type = u32_at(b, ph).ok_or(m("program header"))?;
        let p_offset = usize_at(b, ph + 8).ok_or(m("p_offset"))?;
        let p_vaddr = u64_at(b, ph + 16).ok_or(m("p_vaddr"))?;
        let p_filesz = usize_at(b, ph + 32).ok_or(m("p_filesz"))?;
        match p_type {
            PT_LOAD => loads.push((p_vaddr, p_offset, p_filesz)),
            PT_INTERP => out.interp = Some(c_str(b, p_offset).ok_or(m("PT_INTERP"))?),
            PT_DYNAMIC => dyn_seg = Some((p_offset, p_filesz)),
            _ => {}
        }
    }
    let Some((doff, dsize)) = dyn_seg else {
        return Ok(out); // static
    };
    let mut strtab_vaddr = None;
    let mut needed_off = Vec::new();
    let mut path_off = Vec::new();
    let mut at = doff;
    while at + 16 <= doff.saturating_add(dsize) {
        let tag = u64_at(b, at).ok_or(m("dynamic entry"))?;
        let val = u64_at(b, at + 8).ok_or(m("dynamic entry"))?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed_off.push(val),
            DT_STRTAB => strtab_vaddr = Some(val),
            DT_RPATH | DT_RUNPATH => path_off.push(val),
            _ => {}
        }
        at += 16;
    }
    let strtab_vaddr = strtab_vaddr.ok_or(m("no DT_STRTAB"))?;
    let strtab = loads
        .iter()
        .find(|(v, _, sz)| strtab_vaddr >= *v && strtab_vaddr < v + *sz as u64)
        .and_then(|(v, off, _)| usize::try_from(strtab_vaddr - v).ok().map(|d| off + d))
        .ok_or(m("DT_STRTAB outside every PT_LOAD"))?;
    let name_at = |o: u64| {
        usize::try_from(o)
            .ok()
            .and_then(|o| c_str(b, strtab.checked_add(o)?))
            .ok_or(m("string table entry"))
    };
    for o in needed_off {
        out.needed.push(name_at(o)?);
    }
    for o in path_off {
        out.runpath.extend(
            name_at(o)?
                .split(':')
                .filter(|p| !p.is_empty())
                .map(String::from),
        );
    }
    Ok(out)
}

/// The host's library directories, searched after a program's own
/// runpath (the multiarch layout of Debian first).
pub const HOST_LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// A file to put into the guest: where it goes, where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GuestFile {
    pub guest: PathBuf,
    pub host: PathBuf,
}

/// Every file `program` needs at run time, itself included: the program
/// at `guest` (read from `host`), its interpreter and every library,
/// recursively, at the path the dynamic linker will look for them. Library
/// names are searched under `root` (an extracted package) first, then on
/// the host.
pub fn closure(guest: &Path, host: &Path, root: &Path) -> Result<Vec<GuestFile>, String> {
    closure_in(guest, host, &[root.to_path_buf()])
}

/// [`closure`] searching several extracted packages (in order) before the
/// host.
pub fn closure_in(guest: &Path, host: &Path, roots: &[PathBuf]) -> Result<Vec<GuestFile>, String> {
    let mut files: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    files.insert(guest.to_path_buf(), host.to_path_buf());
    let mut todo = vec![(guest.to_path_buf(), host.to_path_buf())];
    while let Some((g, h)) = todo.pop() {
        let bytes = std::fs::read(&h).map_err(|e| format!("read {}: {e}", h.display()))?;
        let d = dynamic(&bytes).map_err(|e| format!("{}: {e}", h.display()))?;
        if let Some(interp) = &d.interp {
            let gi = PathBuf::from(interp);
            if !files.contains_key(&gi) {
                let hi = find_on_host(roots, &gi)
                    .ok_or_else(|| format!("{}: interpreter {interp} not found", h.display()))?;
                files.insert(gi.clone(), hi.clone());
                todo.push((gi, hi));
            }
        }
        let origin = g.parent().unwrap_or(Path::new("/")).to_path_buf();
        for lib in &d.needed {
            if files
                .keys()
                .any(|k| k.file_name().is_some_and(|n| n == lib.as_str()))
            {
                continue;
            }
            let mut dirs: Vec<PathBuf> = d
                .runpath
                .iter()
                .map(|p| PathBuf::from(p.replace("$ORIGIN", &origin.to_string_lossy())))
                .collect();
            dirs.extend(HOST_LIB_DIRS.iter().map(PathBuf::from));
            let found = dirs.iter().find_map(|dir| {
                let gl = dir.join(lib);
                find_on_host(roots, &gl).map(|hl| (gl, hl))
            });
            let (gl, hl) =
                found.ok_or_else(|| format!("{}: library {lib} not found", h.display()))?;
            files.insert(gl.clone(), hl.clone());
            todo.push((gl, hl));
        }
    }
    Ok(files
        .into_iter()
        .map(|(guest, host)| GuestFile { guest, host })
        .collect())
}

/// `path` (absolute, as the guest sees it) under one of `roots`, else on
/// the host.
fn find_on_host(roots: &[PathBuf], path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    roots
        .iter()
        .map(|r| r.join(rel))
        .chain(std::iter::once(path.to_path_buf()))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_dynamic_binary() {
        // Any dynamically linked program of the host will do.
        let exe = ["/bin/sh", "/usr/bin/env", "/bin/ls"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .expect("a host binary");
        let d = dynamic(&std::fs::read(exe).unwrap()).unwrap();
        assert!(
            d.interp.as_deref().is_some_and(|i| i.contains("ld-linux")),
            "{d:?}"
        );
        assert!(d.needed.iter().any(|n| n.starts_with("libc.so")), "{d:?}");
        let files = closure(exe, exe, Path::new("/nonexistent")).unwrap();
        assert!(
            files.iter().any(|f| f.guest.ends_with("libc.so.6")),
            "{files:?}"
        );
        assert!(files.iter().all(|f| f.host.is_file()));
    }

    #[test]
    fn refuses_what_is_not_elf64() {
        assert_eq!(dynamic(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        let mut b = b"\x7fELF".to_vec();
        b.extend([1, 1, 1]);
        assert_eq!(dynamic(&b), Err(ElfError::Unsupported));
        let mut b = b"\x7fELF".to_vec();
        b.extend([2, 1, 1]);
        assert!(matches!(dynamic(&b), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn hostile_headers_never_panic() {
        let exe = std::fs::read("/bin/sh").unwrap_or_default();
        if exe.len() < 64 {
            return;
        }
        // Flip every byte of the headers, one at a time.
        for i in 0..exe.len().min(1024) {
            let mut b = exe.clone();
            b[i] ^= 0xff;
            let _ = dynamic(&b);
        }
        for n in [0, 16, 63, 64, 200] {
            let _ = dynamic(&exe[..n.min(exe.len())]);
        }
    }
}
