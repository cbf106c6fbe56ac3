//! Booting without decompressing: the `vmlinux` ELF inside a bzImage,
//! handed to QEMU's `-kernel` when it carries a PVH entry point.
//!
//! A bzImage is a small real-mode setup, a decompressor and the kernel's
//! own ELF image compressed (LZ4, XZ, ZSTD, gzip... as the kernel was
//! configured). Under TCG the guest spends 1 to 10 s just decompressing it
//! (XZ being the slowest), before the kernel's clock even starts. Kernels
//! built with `CONFIG_PVH` (every Debian kernel of the catalogue) carry a
//! `XEN_ELFNOTE_PHYS32_ENTRY` note, and QEMU boots such an ELF directly
//! (its PVH option ROM), initramfs and command line included. The ELF is
//! taken out of the bzImage once, here, and cached by the bzImage's
//! sha256; a kernel without the note boots as a bzImage, as before.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{hex, ImageError};

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit PVH entry point.
const PHYS32_ENTRY: u32 = 18;
/// Largest ELF accepted (Debian's are 40-70 MB).
const MAX_ELF: usize = 512 << 20;

/// The compressed kernel inside a bzImage (boot protocol >= 2.08), from
/// the setup header's `payload_offset`/`payload_length`.
pub fn bzimage_payload(image: &[u8]) -> Option<&[u8]> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let version = u16::from_le_bytes([*image.get(0x206)?, *image.get(0x207)?]);
    if version < 0x0208 {
        return None;
    }
    let setup_sects = match *image.get(0x1f1)? {
        0 => 4,
        n => n as usize,
    };
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let start = (setup_sects + 1) * 512 + u32_at(0x248)?;
    image.get(start..start.checked_add(u32_at(0x24c)?)?)
}

/// Decompresses a kernel payload: gzip, XZ (with the x86 BCJ filter),
/// LZMA, ZSTD, or LZ4 in the kernel's "legacy" frame format.
pub fn decompress(payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let io = |e: std::io::Error| e.to_string();
    match payload {
        [0x1f, 0x8b, ..] => {
            flate2::read::GzDecoder::new(payload)
                .take(MAX_ELF as u64)
                .read_to_end(&mut out)
                .map_err(io)?;
        }
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
            lzma_rust2::XzReader::new(payload, false)
                .take(MAX_ELF as u64)
                .read_to_end(&mut out)
                .map_err(io)?;
        }
        [0x5d, 0, 0, ..] => {
            lzma_rust2::LzmaReader::new_mem_limit(payload, 1 << 20, None)
                .map_err(io)?
                .take(MAX_ELF as u64)
                .read_to_end(&mut out)
                .map_err(io)?;
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            ruzstd::decoding::StreamingDecoder::new(payload)
                .map_err(|e| e.to_string())?
                .take(MAX_ELF as u64)
                .read_to_end(&mut out)
                .map_err(io)?;
        }
        [0x02, 0x21, 0x4c, 0x18, ..] => out = unlz4_legacy(payload)?,
        [b'B', b'Z', b'h', ..] => return Err("bzip2-compressed kernel".into()),
        [0x89, b'L', b'Z', b'O', ..] => return Err("LZO-compressed kernel".into()),
        _ => return Err("unknown kernel compression".into()),
    }
    if out.len() >= MAX_ELF {
        return Err("decompressed kernel too large".into());
    }
    Ok(out)
}

/// LZ4 "legacy" frames (what the kernel's `lz4 -l` makes): the magic, then
/// blocks of at most 8 MiB, each after its little-endian compressed size.
/// The kernel build appends the uncompressed size as four more bytes.
fn unlz4_legacy(mut p: &[u8]) -> Result<Vec<u8>, String> {
    const MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
    const BLOCK: usize = 8 << 20;
    let mut out = Vec::new();
    let mut buf = vec![0u8; BLOCK];
    while p.len() >= 4 {
        if p[..4] == MAGIC {
            p = &p[4..];
            continue;
        }
        let n = u32::from_le_bytes(p[..4].try_into().expect("4 bytes")) as usize;
        if n == 0 || n > p.len() - 4 {
            break; // the appended size, or padding
        }
        let got = lz4_flex::block::decompress_into(&p[4..4 + n], &mut buf)
            .map_err(|e| format!("lz4 block: {e}"))?;
        out.extend_from_slice(&buf[..got]);
        if out.len() > MAX_ELF {
            return Err("decompressed kernel too large".into());
        }
        p = &p[4 + n..];
    }
    if out.is_empty() {
        return Err("no lz4 block".into());
    }
    Ok(out)
}

/// The PVH entry point of an x86_64 ELF kernel, from its notes.
pub fn pvh_entry(elf: &[u8]) -> Option<u32> {
    if elf.get(..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None; // ELF64, little endian only
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let (phentsize, phnum) = (u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != 4 {
            continue; // PT_NOTE only
        }
        let off = usize::try_from(u64_at(ph + 8)?).ok()?;
        let size = usize::try_from(u64_at(ph + 32)?).ok()?;
        let notes = elf.get(off..off.checked_add(size)?)?;
        let mut at = 0usize;
        while at + 12 <= notes.len() {
            let namesz = u32::from_le_bytes(notes[at..at + 4].try_into().ok()?) as usize;
            let descsz = u32::from_le_bytes(notes[at + 4..at + 8].try_into().ok()?) as usize;
            let ty = u32::from_le_bytes(notes[at + 8..at + 12].try_into().ok()?);
            let name_at = at + 12;
            let desc_at = name_at.checked_add(namesz.div_ceil(4) * 4)?;
            let next = desc_at.checked_add(descsz.div_ceil(4) * 4)?;
            let name = notes.get(name_at..name_at + namesz)?;
            if ty == PHYS32_ENTRY && name.starts_with(b"Xen") && descsz >= 4 {
                let d = notes.get(desc_at..desc_at + 4)?;
                return Some(u32::from_le_bytes(d.try_into().ok()?));
            }
            at = next;
        }
    }
    None
}

/// What to hand QEMU's `-kernel` for the bzImage at `vmlinuz`: its PVH
/// ELF from `<cache>/pvh/<sha256>/vmlinux` (made on first use), or the
/// bzImage itself when it has none (the reason is remembered beside it, so
/// it is not worked out again). `OOMLAB_PVH=0` always gives the bzImage.
pub fn boot_image(vmlinuz: &Path, sha256: &str, cache: &Path) -> PathBuf {
    if std::env::var("OOMLAB_PVH").is_ok_and(|v| v == "0") {
        return vmlinuz.to_path_buf();
    }
    match pvh_image(vmlinuz, sha256, cache) {
        Ok(Some(p)) => p,
        Ok(None) => vmlinuz.to_path_buf(),
        Err(e) => {
            eprintln!(
                "oomlab: note: booting {} as a bzImage: {e}",
                vmlinuz.display()
            );
            vmlinuz.to_path_buf()
        }
    }
}

/// The cached PVH ELF of a bzImage; None when it has no PVH entry (or
/// is no bzImage).
pub fn pvh_image(
    vmlinuz: &Path,
    sha256: &str,
    cache: &Path,
) -> Result<Option<PathBuf>, ImageError> {
    let key = if sha256.len() == 64 {
        sha256.to_string()
    } else {
        super::sha256_file(vmlinuz)?
    };
    let dir = cache.join("pvh").join(&key);
    let elf = dir.join("vmlinux");
    let elf_sha = dir.join("vmlinux.sha256");
    let none = dir.join("no-pvh");
    // Checked on every use, as the bzImage is: a damaged copy is remade.
    if elf.is_file() {
        let want = std::fs::read_to_string(&elf_sha).unwrap_or_default();
        if super::sha256_file(&elf)? == want.trim() {
            return Ok(Some(elf));
        }
    }
    if none.is_file() {
        return Ok(None);
    }
    let image = std::fs::read(vmlinuz)
        .map_err(|e| ImageError::io(format!("read {}", vmlinuz.display()), e))?;
    let made = bzimage_payload(&image)
        .ok_or_else(|| "not a bzImage of boot protocol 2.08+".to_string())
        .and_then(decompress)
        .and_then(|elf| match pvh_entry(&elf) {
            Some(_) => Ok(elf),
            None => Err("no PVH entry note (CONFIG_PVH off)".to_string()),
        });
    std::fs::create_dir_all(&dir)
        .map_err(|e| ImageError::io(format!("create {}", dir.display()), e))?;
    match made {
        Ok(bytes) => {
            crate::atomic::write_atomic(&elf, |w| std::io::Write::write_all(w, &bytes))
                .map_err(|e| ImageError::io(format!("write {}", elf.display()), e))?;
            std::fs::write(&elf_sha, sha(&bytes) + "\n")
                .map_err(|e| ImageError::io(format!("write {}", elf_sha.display()), e))?;
            Ok(Some(elf))
        }
        Err(why) => {
            let _ = std::fs::write(&none, format!("{why}\n"));
            Ok(None)
        }
    }
}

/// sha256 of bytes, hex.
fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal ELF64 with one PT_NOTE holding a Xen PHYS32_ENTRY note.
    fn elf_with_note(entry: Option<u32>) -> Vec<u8> {
        let mut e = vec![0u8; 0x200];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let ph = 0x40;
        e[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes());
        e[ph + 8..ph + 16].copy_from_slice(&0x100u64.to_le_bytes());
        let mut notes = Vec::new();
        // An unrelated note first.
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&3u32.to_le_bytes());
        notes.extend_from_slice(b"GNU\0abcd");
        if let Some(v) = entry {
            notes.extend_from_slice(&4u32.to_le_bytes());
            notes.extend_from_slice(&8u32.to_le_bytes());
            notes.extend_from_slice(&PHYS32_ENTRY.to_le_bytes());
            notes.extend_from_slice(b"Xen\0");
            notes.extend_from_slice(&u64::from(v).to_le_bytes());
        }
        e[ph + 32..ph + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        e[0x100..0x100 + notes.len()].copy_from_slice(&notes);
        e
    }

    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 5 * 512];
        b[0x1f1] = 4;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&0x10u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0xaa; 0x10]);
        b.extend_from_slice(payload);
        b.extend_from_slice(&[0xbb; 64]);
        b
    }

    fn lz4_legacy(data: &[u8]) -> Vec<u8> {
        let mut v = vec![0x02, 0x21, 0x4c, 0x18];
        for chunk in data.chunks(8 << 20) {
            let c = lz4_flex::block::compress(chunk);
            v.extend_from_slice(&(c.len() as u32).to_le_bytes());
            v.extend_from_slice(&c);
        }
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v
    }

    #[test]
    fn pvh_note_is_found() {
        assert_eq!(
            pvh_entry(&elf_with_note(Some(0x0100_0b20))),
            Some(0x0100_0b20)
        );
        assert_eq!(pvh_entry(&elf_with_note(None)), None);
        assert_eq!(pvh_entry(b"not an elf at all"), None);
        let mut bad = elf_with_note(Some(1));
        bad[0x40 + 32..0x40 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(pvh_entry(&bad), None);
    }

    #[test]
    fn every_kernel_compression_round_trips() {
        let mut elf = elf_with_note(Some(0x1000));
        elf.extend((0..300_000u32).map(|i| (i % 251) as u8));
        let size = (elf.len() as u32).to_le_bytes();
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&elf).unwrap();
            let mut v = e.finish().unwrap();
            v.extend_from_slice(&size);
            v
        };
        let xz = {
            let mut opts = lzma_rust2::XzOptions::with_preset(1);
            opts.filters = vec![lzma_rust2::FilterConfig::new_bcj_x86(0)];
            let mut w = lzma_rust2::XzWriter::new(Vec::new(), opts).unwrap();
            w.write_all(&elf).unwrap();
            let mut v = w.finish().unwrap();
            v.extend_from_slice(&size);
            v
        };
        let zst = {
            let mut v = ruzstd::encoding::compress_to_vec(
                &elf[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            );
            v.extend_from_slice(&size);
            v
        };
        for (what, p) in [
            ("gzip", gz),
            ("xz", xz),
            ("zstd", zst),
            ("lz4", lz4_legacy(&elf)),
        ] {
            let img = bzimage(&p);
            assert_eq!(bzimage_payload(&img), Some(&p[..]), "{what}");
            assert_eq!(
                decompress(&p).unwrap_or_else(|e| panic!("{what}: {e}")),
                elf,
                "{what}"
            );
        }
        assert!(decompress(b"BZh91AY&SY").is_err());
        assert!(decompress(b"\x02\x21\x4c\x18").is_err());
        assert!(decompress(&[0u8; 16]).is_err());
    }

    #[test]
    fn boot_image_is_cached_or_falls_back() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let elf = elf_with_note(Some(0x1000));
        let k = d.path().join("vmlinuz");
        std::fs::write(&k, bzimage(&lz4_legacy(&elf))).unwrap();
        let s = sha(&std::fs::read(&k).unwrap());
        let p = pvh_image(&k, &s, &cache).unwrap().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), elf);
        assert_eq!(pvh_image(&k, &s, &cache).unwrap(), Some(p.clone()));
        // A damaged copy is made again.
        std::fs::write(&p, b"tampered").unwrap();
        assert_eq!(pvh_image(&k, &s, &cache).unwrap(), Some(p.clone()));
        assert_eq!(std::fs::read(&p).unwrap(), elf);
        // No note: the bzImage itself, and the answer is remembered.
        let plain = d.path().join("vmlinuz-plain");
        std::fs::write(&plain, bzimage(&lz4_legacy(&elf_with_note(None)))).unwrap();
        let s2 = sha(&std::fs::read(&plain).unwrap());
        assert_eq!(boot_image(&plain, &s2, &cache), plain);
        assert!(cache.join("pvh").join(&s2).join("no-pvh").is_file());
        // Not a bzImage at all (an old kernel of one's own): as it is.
        let junk = d.path().join("junk");
        std::fs::write(&junk, b"junk").unwrap();
        assert_eq!(boot_image(&junk, "", &cache), junk);
    }

    /// The real catalogue kernels that are cached: each gives a PVH ELF.
    #[test]
    fn cached_catalogue_kernels_have_pvh_entries() {
        let Ok(cat) = super::super::catalogue() else {
            return;
        };
        let mut checked = 0;
        for k in &cat.kernels {
            let Ok((super::super::CacheState::Pinned(p), _)) = super::super::cache_state(k) else {
                continue;
            };
            let image = std::fs::read(&p).unwrap();
            let payload = bzimage_payload(&image).unwrap_or_else(|| panic!("{}", k.name));
            let elf = decompress(payload).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            assert!(pvh_entry(&elf).is_some(), "{}: no PVH note", k.name);
            checked += 1;
        }
        if checked == 0 {
            eprintln!(
                "SKIPPED cached_catalogue_kernels_have_pvh_entries: no catalogue kernel cached"
            );
        }
    }
}
