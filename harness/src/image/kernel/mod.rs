//! Guest kernels: a small pinned catalogue (`images/kernels.yaml`) fetched
//! through the host's own Debian mirror, or a bring-your-own `vmlinuz`.
//!
//! Catalogue kernels are cached outside the tree (see [`super::cache_dir`])
//! and their sha256 is checked on every use, so a run always says exactly
//! which kernel it booted.
//!
//! - [`catalogue`]: `images/kernels.yaml`, compiled in.
//! - [`debian`]: Debian catalogue kernels: apt through the host's mirror
//!   (its sources lists read in [`debian::sources`]), `.deb` extraction.
//! - [`rpm`]: vendor kernel RPMs, unpacked in-process.
//! - [`float`]: the stand-in used when a pin has left the mirror.

pub mod bootimage;
pub mod catalogue;
pub mod debian;
pub mod float;
pub mod pvh;
pub mod rpm;

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ImageError;

pub use bootimage::{
    bzimage_release, check_boot_image, parse_boot_header, BootImage, MIN_BOOT_PROTOCOL,
};

pub use catalogue::{
    catalogue, parse_catalogue, Catalogue, CatalogueEntry, DebianSource, FileSource, KernelSource,
    RpmSource, DEFAULT_KERNEL,
};
pub use debian::sources::{mirror_uri, security_mirror_uri};
pub use float::{float_record, float_warning, parse_float_record, FloatRecord, FLOAT_RECORD};

use debian::{config_package, extract_kernel, extract_members, AptSetups};
use float::{adopt_floated_pin, cached_float, install_float, verify_float};

/// A kernel ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    pub path: PathBuf,
    /// Catalogue name, or the file name for a bring-your-own kernel.
    pub name: String,
    /// Verified against the catalogue, or just computed for your own file.
    pub sha256: String,
    /// e.g. `6.1.0-50-cloud-amd64`; `unknown` if a bring-your-own image
    /// has no readable version string.
    pub release: String,
    /// True only when `sha256` was checked against the catalogue's pin.
    /// False for your own file and for a floated stand-in for a pin that
    /// left the mirror (its [`float_record`] says which package it is).
    pub pinned: bool,
}

/// `<cache>/kernels/<name>/vmlinuz`.
pub fn cached_kernel_path(name: &str) -> Result<PathBuf, ImageError> {
    Ok(super::cache_dir()?
        .join("kernels")
        .join(name)
        .join("vmlinuz"))
}

/// What QEMU's `-kernel` gets for `k`: its PVH ELF when it has one (no
/// decompression in the guest: seconds less under TCG), else `k.path`.
pub fn boot_image(k: &KernelImage) -> PathBuf {
    match super::cache_dir() {
        Ok(cache) => pvh::boot_image(&k.path, &k.sha256, &cache),
        Err(_) => k.path.clone(),
    }
}

/// The kernel's build configuration, when one was cached beside it
/// (`config` next to `vmlinuz`: from the kernel package, or 7.x's
/// `linux-base-*`).
pub fn kernel_config(k: &KernelImage) -> Option<PathBuf> {
    let c = k.path.with_file_name("config");
    (k.path.file_name().is_some_and(|n| n == "vmlinuz") && c.is_file()).then_some(c)
}

/// A catalogue name (fetched and cached on first use, verified every time)
/// or a path to your own vmlinuz (no checksum to verify against) or to a
/// kernel RPM (its vmlinuz extracted into the cache).
pub fn resolve_kernel(spec: &str) -> Result<KernelImage, ImageError> {
    let cat = catalogue()?;
    let spec = if spec.is_empty() {
        cat.default.as_str()
    } else {
        spec
    };
    if let Some(entry) = cat.get(spec) {
        let k = ensure_cached(entry)?;
        // Pinned by sha256 already; the header check is cheap and also
        // covers a floated stand-in.
        check_boot_image(&k.path).map_err(|why| ImageError::NotBootImage {
            path: k.path.clone(),
            why,
        })?;
        return Ok(k);
    }
    let path = Path::new(spec);
    if path.is_file() && spec.ends_with(".rpm") {
        return rpm::own_rpm(path, &super::cache_dir()?.join("kernels"));
    }
    if std::fs::metadata(path).is_ok() {
        return own_kernel(path);
    }
    Err(ImageError::UnknownKernel {
        spec: spec.to_string(),
        known: cat.names(),
    })
}

/// A bring-your-own kernel: its boot header is checked (a wrong or cut
/// file is refused before QEMU sees it), its sha256 computed, its release
/// read from the image, else from a `vmlinuz-<release>` file name.
fn own_kernel(path: &Path) -> Result<KernelImage, ImageError> {
    let boot = check_boot_image(path).map_err(|why| ImageError::NotBootImage {
        path: path.to_path_buf(),
        why,
    })?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let release = boot
        .release
        .or_else(|| file_name.strip_prefix("vmlinuz-").map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    Ok(KernelImage {
        path: path.to_path_buf(),
        name: file_name,
        sha256: sha256_file(path)?,
        release,
        pinned: false,
    })
}

/// Whether a catalogue kernel whose pinned version can no longer be
/// downloaded may be replaced by the suite's current one
/// (`OOMLAB_KERNEL_PIN=strict` refuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinPolicy {
    /// Fall back to the `track`ed package's current version, loudly.
    Float,
    /// Only ever the exact pinned kernel.
    Strict,
}

/// `OOMLAB_KERNEL_PIN`: unset, empty or `float` allow the fallback,
/// `strict` refuses it; anything else is an error rather than a guess.
pub fn parse_pin_policy(value: Option<&str>) -> Result<PinPolicy, String> {
    match value.map(str::trim) {
        None | Some("") | Some("float") => Ok(PinPolicy::Float),
        Some("strict") => Ok(PinPolicy::Strict),
        Some(v) => Err(format!(
            "OOMLAB_KERNEL_PIN=`{v}` is not understood: use `strict` (or unset it)"
        )),
    }
}

fn ensure_cached(entry: &CatalogueEntry) -> Result<KernelImage, ImageError> {
    let value = std::env::var("OOMLAB_KERNEL_PIN").ok();
    let policy = parse_pin_policy(value.as_deref()).map_err(|detail| ImageError::Fetch {
        name: entry.name.clone(),
        detail,
    })?;
    let dir = super::cache_dir()?.join("kernels").join(&entry.name);
    match &entry.source {
        KernelSource::Debian(_) => ensure_cached_in(&dir, entry, policy),
        KernelSource::Rpm(r) => rpm::ensure_cached_rpm(&dir, entry, r),
        KernelSource::File(f) => file_kernel(entry, f),
    }
}

/// What is cached for a catalogue entry, without fetching anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheState {
    /// The pinned kernel is at this path (not re-hashed here).
    Pinned(PathBuf),
    /// Only a stand-in for a pin that left the mirror.
    Floated(PathBuf),
    /// A `file:` entry: its path, present or not.
    File(PathBuf, bool),
    Absent,
}

/// What the cache holds for `entry` (and its config, if any).
pub fn cache_state(entry: &CatalogueEntry) -> Result<(CacheState, Option<PathBuf>), ImageError> {
    if let KernelSource::File(f) = &entry.source {
        let p = expand_path(&f.path);
        let c = p.with_file_name("config");
        let present = p.is_file();
        return Ok((CacheState::File(p, present), c.is_file().then_some(c)));
    }
    let dir = super::cache_dir()?.join("kernels").join(&entry.name);
    let config = |d: &Path| {
        let c = d.join("config");
        c.is_file().then_some(c)
    };
    if dir.join("vmlinuz").is_file() {
        return Ok((CacheState::Pinned(dir.join("vmlinuz")), config(&dir)));
    }
    let floated = std::fs::read_dir(&dir).ok().and_then(|r| {
        r.filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(FLOAT_RECORD).is_file() && p.join("vmlinuz").is_file())
            .max()
    });
    Ok(match floated {
        Some(d) => (CacheState::Floated(d.join("vmlinuz")), config(&d)),
        None => (CacheState::Absent, None),
    })
}

/// `~/x` and relative paths of a `file:` entry.
fn expand_path(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// A `file:` entry: used where it is, its sha256 checked on every use.
fn file_kernel(entry: &CatalogueEntry, f: &FileSource) -> Result<KernelImage, ImageError> {
    let path = expand_path(&f.path);
    if !path.is_file() {
        return Err(ImageError::Fetch {
            name: entry.name.clone(),
            detail: format!("file {} does not exist", path.display()),
        });
    }
    verify_cached(entry, path)
}

/// The pinned kernel at `<dir>/vmlinuz` (fetched once, verified against the
/// catalogue every time); failing that, unless `policy` is strict, the
/// `track`ed package's current kernel at `<dir>/<package>_<version>/`.
pub(crate) fn ensure_cached_in(
    dir: &Path,
    entry: &CatalogueEntry,
    policy: PinPolicy,
) -> Result<KernelImage, ImageError> {
    let fail = |detail: String| ImageError::Fetch {
        name: entry.name.clone(),
        detail,
    };
    let Some(deb) = entry.debian() else {
        return Err(fail("not a Debian kernel".into()));
    };
    let pinned = dir.join("vmlinuz");
    if pinned.is_file() {
        return verify_cached(entry, pinned);
    }
    if adopt_floated_pin(dir, entry, &pinned)? {
        return verify_cached(entry, pinned);
    }
    if policy == PinPolicy::Float {
        if let Some((k, rec)) = cached_float(dir, entry)? {
            eprintln!("{}", float_warning(entry, &rec));
            return Ok(k);
        }
    }

    std::fs::create_dir_all(dir)
        .map_err(|e| ImageError::io(format!("create {}", dir.display()), e))?;
    // All scratch lives next to the cache entries (same filesystem, so the
    // final renames are atomic) and is removed on every path.
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .map_err(|e| ImageError::io(format!("create temp dir in {}", dir.display()), e))?;
    let mut apt = AptSetups::new(&entry.name, deb, work.path());
    let pin = format!("{}={}", deb.package, deb.version);
    let pin_error = match apt.try_each(|a| a.download(&pin, &work.path().join("debs"))) {
        Ok(file) => {
            install_pinned(entry, &file, &work.path().join("x"), &pinned)?;
            fetch_separate_config(
                &mut apt,
                entry,
                &deb.package,
                &deb.version,
                dir,
                work.path(),
            );
            return verify_cached(entry, pinned);
        }
        Err(e) => e,
    };
    if policy == PinPolicy::Strict {
        return Err(fail(format!(
            "pinned {pin} could not be downloaded ({pin_error}); OOMLAB_KERNEL_PIN=strict \
             refuses the fallback to the suite's current kernel: update images/kernels.yaml \
             or unset OOMLAB_KERNEL_PIN"
        )));
    }
    let Some(track) = deb.track.as_deref() else {
        return Err(fail(format!(
            "pinned {pin} could not be downloaded ({pin_error}), and the entry has no \
             `track:` package to fall back to"
        )));
    };
    let (package, version, file) = apt
        .try_each(|a| {
            let (package, version) = a.current_kernel_package(track)?;
            let file = a.download(&format!("{package}={version}"), &work.path().join("debs"))?;
            Ok((package, version, file))
        })
        .map_err(|e| {
            fail(format!(
                "pinned {pin} could not be downloaded ({pin_error}); the fallback to the \
                 current `{track}` failed too: {e}"
            ))
        })?;
    let rec = install_float(
        dir,
        work.path(),
        &file,
        FloatRecord {
            package: package.clone(),
            version: version.clone(),
            release: String::new(),
            sha256: String::new(),
            replaces: pin,
            track: track.to_string(),
        },
    )
    .map_err(|e| fail(format!("fallback kernel: {e}")))?;
    let float_dir = dir.join(rec.dir_name());
    fetch_separate_config(&mut apt, entry, &package, &version, &float_dir, work.path());
    let (k, rec) = verify_float(entry, &float_dir)?;
    eprintln!("{}", float_warning(entry, &rec));
    Ok(k)
}

/// 7.x keeps the kernel's config in `linux-base-<rel>`, not beside the
/// kernel: fetch it too, into `<dest>/config`. Best effort: the config is
/// documentation (`cargo xtask kconfig` checks against it), not needed to
/// boot, so a failure is a note.
fn fetch_separate_config(
    apt: &mut AptSetups<'_>,
    entry: &CatalogueEntry,
    kernel_package: &str,
    version: &str,
    dest: &Path,
    work: &Path,
) {
    if dest.join("config").is_file() {
        return;
    }
    let Some(base) = config_package(kernel_package) else {
        return;
    };
    let spec = format!("{base}={version}");
    let got = apt
        .try_each(|a| a.download(&spec, &work.join("debs-config")))
        .map_err(|e| e.to_string())
        .and_then(|file| {
            let x = work.join("x-config");
            let (_, configs) = extract_members(&file, &x).map_err(|e| e.to_string())?;
            let (_, c) = configs
                .into_iter()
                .next()
                .ok_or_else(|| format!("{spec} holds no config"))?;
            std::fs::rename(&c, dest.join("config")).map_err(|e| e.to_string())
        });
    if let Err(e) = got {
        eprintln!(
            "oomlab: note: kernel `{}`: its config ({spec}) could not be fetched: {e}",
            entry.name
        );
    }
}

/// Fetches what is missing of a catalogue kernel's config (the kernel
/// itself must be cached already): for a kernel cached before configs
/// were kept. `Ok(None)`: its source ships none.
pub fn ensure_config(entry: &CatalogueEntry) -> Result<Option<PathBuf>, ImageError> {
    let (state, config) = cache_state(entry)?;
    if config.is_some() {
        return Ok(config);
    }
    let (vmlinuz, package, version) = match (&state, &entry.source) {
        (CacheState::Pinned(p), KernelSource::Debian(d)) => {
            (p.clone(), d.package.clone(), d.version.clone())
        }
        (CacheState::Floated(p), KernelSource::Debian(_)) => {
            let rec = float_record(p)?;
            (p.clone(), rec.package, rec.version)
        }
        _ => return Ok(None),
    };
    let Some(deb) = entry.debian() else {
        return Ok(None);
    };
    let dir = vmlinuz.parent().expect("cached kernels live in a folder");
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .map_err(|e| ImageError::io(format!("create temp dir in {}", dir.display()), e))?;
    let mut apt = AptSetups::new(&entry.name, deb, work.path());
    let spec = match config_package(&package) {
        Some(base) => format!("{base}={version}"),
        None => format!("{package}={version}"),
    };
    let file = apt
        .try_each(|a| a.download(&spec, &work.path().join("debs")))
        .map_err(|detail| ImageError::Fetch {
            name: entry.name.clone(),
            detail,
        })?;
    let (_, configs) = extract_members(&file, &work.path().join("x"))?;
    let Some((_, c)) = configs.into_iter().next() else {
        return Ok(None);
    };
    let dest = dir.join("config");
    std::fs::rename(&c, &dest)
        .map_err(|e| ImageError::io(format!("move config into {}", dest.display()), e))?;
    Ok(Some(dest))
}

pub(crate) fn verify_cached(
    entry: &CatalogueEntry,
    path: PathBuf,
) -> Result<KernelImage, ImageError> {
    let actual = sha256_file(&path)?;
    if actual != entry.sha256 {
        return Err(ImageError::ChecksumMismatch {
            name: entry.name.clone(),
            path,
            expected: entry.sha256.clone(),
            actual,
        });
    }
    Ok(KernelImage {
        path,
        name: entry.name.clone(),
        sha256: actual,
        release: entry.release.clone(),
        pinned: true,
    })
}

pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let io = |e| ImageError::io(format!("hash {}", path.display()), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Extracts the pinned kernel from `deb` (scratch in `scratch`), checks
/// release and sha256 against the catalogue, then renames it to `dest`
/// (and its config, when the package ships one, beside it).
fn install_pinned(
    entry: &CatalogueEntry,
    deb: &Path,
    scratch: &Path,
    dest: &Path,
) -> Result<(), ImageError> {
    let fail = |detail: String| ImageError::Fetch {
        name: entry.name.clone(),
        detail,
    };
    let x = extract_kernel(deb, scratch).map_err(|e| fail(e.to_string()))?;
    let shown = deb.file_name().unwrap_or_default().to_string_lossy();
    if x.release != entry.release {
        return Err(fail(format!(
            "{shown} holds the kernel of release {}, the catalogue says {}",
            x.release, entry.release
        )));
    }
    let actual = sha256_file(&x.vmlinuz)?;
    if actual != entry.sha256 {
        return Err(ImageError::ChecksumMismatch {
            name: entry.name.clone(),
            path: PathBuf::from(format!("{shown} ({})", x.vmlinuz.display())),
            expected: entry.sha256.clone(),
            actual,
        });
    }
    if let Some(c) = &x.config {
        let to = dest.with_file_name("config");
        std::fs::rename(c, &to)
            .map_err(|e| ImageError::io(format!("move config into {}", to.display()), e))?;
    }
    std::fs::rename(&x.vmlinuz, dest)
        .map_err(|e| ImageError::io(format!("move kernel into {}", dest.display()), e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 4 KiB image with a valid header: 4 setup sectors (the `0` default)
    /// plus the boot sector, then 96 paragraphs of "kernel".
    pub(crate) fn fake_bzimage(version: &str) -> Vec<u8> {
        let mut b = vec![0u8; 0x1000];
        b[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
        b[0x1F4..0x1F8].copy_from_slice(&96u32.to_le_bytes());
        if !version.is_empty() {
            let at = 0x600usize;
            b[0x20E..0x210].copy_from_slice(&((at - 0x200) as u16).to_le_bytes());
            b[at..at + version.len()].copy_from_slice(version.as_bytes());
        }
        b
    }

    #[test]
    fn boot_header_checks() {
        let good = fake_bzimage("6.1.0-test #1");
        let b = parse_boot_header(&good, good.len() as u64).unwrap();
        assert_eq!(
            (
                b.protocol,
                b.setup_bytes,
                b.expected_len,
                b.release.as_deref()
            ),
            (0x020F, 2560, 4096, Some("6.1.0-test"))
        );
        // Signed kernels carry more after the image.
        assert!(parse_boot_header(&good, 5000).is_ok());
        let refused = |img: &[u8], len: u64, want: &str| {
            let e = parse_boot_header(img, len).unwrap_err();
            assert!(e.contains(want), "{e:?} should say {want:?}");
        };
        refused(b"root:x:0:0:root:/root:/bin/bash\n", 32, "too short");
        refused(&[0u8; 0x1000], 0x1000, "`HdrS`");
        refused(&good, 4095, "truncated: the header says 4096 bytes");
        let mut old = good.clone();
        old[0x206..0x208].copy_from_slice(&0x0104u16.to_le_bytes());
        refused(&old, 4096, "boot protocol 1.04");
        let mut unsigned = good.clone();
        unsigned[0x1FE] = 0;
        refused(&unsigned, 4096, "0x1FE");
        let mut empty = good.clone();
        empty[0x1F4..0x1F8].fill(0);
        refused(&empty, 4096, "syssize 0");
        let mut huge_setup = good.clone();
        huge_setup[0x1F1] = 255;
        refused(&huge_setup, 4096, "truncated");
        // A version pointer outside the setup code is ignored, not followed.
        let mut wild = good.clone();
        wild[0x20E..0x210].copy_from_slice(&0xFFFFu16.to_le_bytes());
        assert_eq!(parse_boot_header(&wild, 4096).unwrap().release, None);
    }

    #[test]
    fn check_boot_image_reads_files_only() {
        let d = tempfile::tempdir().unwrap();
        let e = check_boot_image(d.path()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let p = d.path().join("vmlinuz");
        std::fs::write(&p, fake_bzimage("6.1.0-x")).unwrap();
        assert_eq!(
            check_boot_image(&p).unwrap().release.as_deref(),
            Some("6.1.0-x")
        );
        // A cut download: the first MiB of a kernel that says it is longer.
        let mut cut = fake_bzimage("6.1.0-x");
        cut[0x1F4..0x1F8].copy_from_slice(&(14_000_000u32 / 16).to_le_bytes());
        std::fs::write(&p, &cut).unwrap();
        assert!(check_boot_image(&p).unwrap_err().contains("truncated"));
    }

    #[test]
    fn bzimage_version_string() {
        let img = fake_bzimage("6.1.0-50-cloud-amd64 (debian-kernel@lists) #1 SMP");
        assert_eq!(
            bzimage_release(&img).as_deref(),
            Some("6.1.0-50-cloud-amd64")
        );
        assert_eq!(bzimage_release(b"not a kernel"), None);
        assert_eq!(bzimage_release(&[0u8; 0x1000]), None);
    }

    #[test]
    fn own_kernel_needs_no_checksum() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("vmlinuz-2.6.32-custom");
        // A valid header without a version string: the file name says it.
        std::fs::write(&p, fake_bzimage("")).unwrap();
        let k = resolve_kernel(p.to_str().unwrap()).unwrap();
        assert_eq!(k.release, "2.6.32-custom");
        assert_eq!(k.name, "vmlinuz-2.6.32-custom");
        assert_eq!(k.sha256.len(), 64);
        let e = resolve_kernel("no-such-kernel").unwrap_err().to_string();
        assert!(
            e.contains("no-such-kernel") && e.contains(DEFAULT_KERNEL),
            "{e}"
        );
        // Not a kernel at all: refused before anything boots.
        std::fs::write(&p, b"no header").unwrap();
        let e = resolve_kernel(p.to_str().unwrap()).unwrap_err();
        assert!(matches!(e, ImageError::NotBootImage { .. }), "{e}");
        assert!(e.to_string().contains("vmlinuz-2.6.32-custom"), "{e}");
    }

    #[test]
    fn cached_kernel_is_verified() {
        // Wrong bytes in the cache must fail loudly, naming entry and file.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("vmlinuz");
        std::fs::write(&path, b"tampered").unwrap();
        let mut entry = CatalogueEntry {
            name: "t".into(),
            release: "r".into(),
            sha256: "0".repeat(64),
            source: KernelSource::Debian(DebianSource {
                suite: "bookworm".into(),
                package: "p".into(),
                version: "1".into(),
                track: None,
            }),
        };
        let e = verify_cached(&entry, path.clone()).unwrap_err().to_string();
        assert!(e.contains("`t`") && e.contains("vmlinuz"), "{e}");
        entry.sha256 = sha256_file(&path).unwrap();
        let k = verify_cached(&entry, path.clone()).unwrap();
        assert_eq!((k.path, k.release), (path, "r".to_string()));
        assert!(k.pinned);
    }

    #[test]
    fn pin_policy_values() {
        assert_eq!(parse_pin_policy(None), Ok(PinPolicy::Float));
        assert_eq!(parse_pin_policy(Some("")), Ok(PinPolicy::Float));
        assert_eq!(parse_pin_policy(Some("strict")), Ok(PinPolicy::Strict));
        assert!(parse_pin_policy(Some("yes")).unwrap_err().contains("yes"));
    }

    #[test]
    fn file_entries_are_checked_in_place() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bzImage");
        std::fs::write(&p, fake_bzimage("6.6.0-mine #1")).unwrap();
        let mut entry = CatalogueEntry {
            name: "mine".into(),
            release: "6.6.0-mine".into(),
            sha256: sha256_file(&p).unwrap(),
            source: KernelSource::File(FileSource {
                path: p.to_string_lossy().into_owned(),
            }),
        };
        let f = match &entry.source {
            KernelSource::File(f) => f.clone(),
            _ => unreachable!(),
        };
        let k = file_kernel(&entry, &f).unwrap();
        assert!(k.pinned);
        assert_eq!(
            (k.path.as_path(), k.release.as_str()),
            (p.as_path(), "6.6.0-mine")
        );
        let (state, config) = cache_state(&entry).unwrap();
        assert_eq!(state, CacheState::File(p.clone(), true));
        assert_eq!(config, None);
        entry.sha256 = "0".repeat(64);
        assert!(matches!(
            file_kernel(&entry, &f),
            Err(ImageError::ChecksumMismatch { .. })
        ));
        let gone = FileSource {
            path: d.path().join("nope").to_string_lossy().into_owned(),
        };
        assert!(file_kernel(&entry, &gone)
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }
}
