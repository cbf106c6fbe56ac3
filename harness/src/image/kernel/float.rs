//! Fallback ("floated") kernels: when a pinned version has left the mirror,
//! the current dependency of the entry's `track` metapackage stands in,
//! loudly, with its own sha256 record beside it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::catalogue::{is_package_name, is_sha256_hex, is_version, CatalogueEntry};
use super::debian::extract_kernel;
use super::{sha256_file, KernelImage};
use crate::image::ImageError;

/// What is known about a floated kernel, stored as [`FLOAT_RECORD`] beside
/// its `vmlinuz`; the sha256 is re-checked against it on every use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloatRecord {
    pub package: String,
    pub version: String,
    /// `uname -r`, from the `boot/vmlinuz-<release>` file name (or the
    /// `usr/lib/modules/<release>/` folder of a 7.x package).
    pub release: String,
    pub sha256: String,
    /// `package=version` of the catalogue pin it stands in for.
    pub replaces: String,
    /// The metapackage it was found through.
    pub track: String,
}

pub const FLOAT_RECORD: &str = "kernel.json";

impl FloatRecord {
    /// `<package>_<version>`, the cache directory name (an epoch's `:`
    /// written as `%3a`, as apt names its .debs).
    pub fn dir_name(&self) -> String {
        format!("{}_{}", self.package, self.version.replace(':', "%3a"))
    }
}

/// Reads and sanity-checks a [`FloatRecord`].
pub fn parse_float_record(text: &str) -> Result<FloatRecord, String> {
    let rec: FloatRecord = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if !is_sha256_hex(&rec.sha256) {
        return Err("sha256 is not 64 lowercase hex digits".into());
    }
    if !is_package_name(&rec.package) || !is_version(&rec.version) {
        return Err(format!("bad package `{}={}`", rec.package, rec.version));
    }
    Ok(rec)
}

/// The record beside a floated kernel's `vmlinuz` (e.g. a
/// [`KernelImage::path`] whose `pinned` is false).
pub fn float_record(vmlinuz: &Path) -> Result<FloatRecord, ImageError> {
    let path = vmlinuz.with_file_name(FLOAT_RECORD);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ImageError::io(format!("read {}", path.display()), e))?;
    parse_float_record(&text).map_err(|e| ImageError::Fetch {
        name: path.display().to_string(),
        detail: e,
    })
}
/// A floated kernel directory's record and verified vmlinuz.
pub(crate) fn verify_float(
    entry: &CatalogueEntry,
    dir: &Path,
) -> Result<(KernelImage, FloatRecord), ImageError> {
    let path = dir.join("vmlinuz");
    let rec = float_record(&path)?;
    let actual = sha256_file(&path)?;
    if actual != rec.sha256 {
        return Err(ImageError::ChecksumMismatch {
            name: entry.name.clone(),
            path,
            expected: rec.sha256,
            actual,
        });
    }
    let k = KernelImage {
        path,
        name: entry.name.clone(),
        sha256: actual,
        release: rec.release.clone(),
        pinned: false,
    };
    Ok((k, rec))
}

/// A floated kernel already cached for this entry's current pin (the
/// newest by directory name if several), verified; None if there is none.
pub(crate) fn cached_float(
    dir: &Path,
    entry: &CatalogueEntry,
) -> Result<Option<(KernelImage, FloatRecord)>, ImageError> {
    let Some(deb) = entry.debian() else {
        return Ok(None);
    };
    let pin = format!("{}={}", deb.package, deb.version);
    let Ok(read) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut dirs: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .starts_with('.')
        })
        .filter(|p| p.join(FLOAT_RECORD).is_file())
        .collect();
    dirs.sort();
    for d in dirs.iter().rev() {
        match float_record(&d.join("vmlinuz")) {
            Ok(rec) if rec.replaces == pin => return verify_float(entry, d).map(Some),
            _ => continue, // another pin's stand-in, or unreadable: refetch
        }
    }
    Ok(None)
}

/// The catalogue was updated to a kernel this machine once floated to:
/// when the bytes match the new pin, copy them into place, no network.
pub(crate) fn adopt_floated_pin(
    dir: &Path,
    entry: &CatalogueEntry,
    pinned: &Path,
) -> Result<bool, ImageError> {
    let Some(deb) = entry.debian() else {
        return Ok(false);
    };
    let probe = FloatRecord {
        package: deb.package.clone(),
        version: deb.version.clone(),
        release: String::new(),
        sha256: String::new(),
        replaces: String::new(),
        track: String::new(),
    };
    let src = dir.join(probe.dir_name()).join("vmlinuz");
    match float_record(&src) {
        Ok(rec) if rec.sha256 == entry.sha256 && rec.release == entry.release => {}
        _ => return Ok(false),
    }
    if sha256_file(&src)? != entry.sha256 {
        return Ok(false);
    }
    crate::atomic::write_atomic(pinned, |w| {
        std::io::copy(&mut std::fs::File::open(&src)?, w).map(|_| ())
    })
    .map_err(|e| ImageError::io(format!("copy {} to {}", src.display(), pinned.display()), e))?;
    Ok(true)
}

/// Extracts a floated kernel's `deb` and renames it, with its record
/// (`release` and `sha256` filled in here), to `<dir>/<package>_<version>/`.
pub(crate) fn install_float(
    dir: &Path,
    work: &Path,
    deb: &Path,
    mut rec: FloatRecord,
) -> Result<FloatRecord, ImageError> {
    let x = extract_kernel(deb, &work.join("x-float"))?;
    rec.release = x.release.clone();
    rec.sha256 = sha256_file(&x.vmlinuz)?;
    let stage = work.join("float");
    std::fs::create_dir_all(&stage).map_err(|e| ImageError::io("create stage dir", e))?;
    std::fs::rename(&x.vmlinuz, stage.join("vmlinuz"))
        .map_err(|e| ImageError::io("stage floated kernel", e))?;
    if let Some(c) = &x.config {
        std::fs::rename(c, stage.join("config"))
            .map_err(|e| ImageError::io("stage floated kernel's config", e))?;
    }
    let json = serde_json::to_string_pretty(&rec).expect("record serialises");
    std::fs::write(stage.join(FLOAT_RECORD), json + "\n")
        .map_err(|e| ImageError::io("write kernel record", e))?;
    let dest = dir.join(rec.dir_name());
    // A stand-in for an older pin may sit there; the fresh bytes win.
    if dest.exists() {
        std::fs::remove_dir_all(&dest)
            .map_err(|e| ImageError::io(format!("remove {}", dest.display()), e))?;
    }
    std::fs::rename(&stage, &dest)
        .map_err(|e| ImageError::io(format!("move kernel into {}", dest.display()), e))?;
    Ok(rec)
}

/// The loud one-line notice printed every time a floated kernel is used.
pub fn float_warning(entry: &CatalogueEntry, rec: &FloatRecord) -> String {
    format!(
        "oomlab: WARNING: kernel `{name}`: pinned {pin} is no longer downloadable; using \
         {pkg}={ver} (release {rel}, sha256 {sha}) from `{track}` instead, authenticated by \
         apt's signed archive index but NOT by the catalogue's sha256; update \
         images/kernels.yaml with the values `oomlab kernels --fetch {name}` (or `cargo \
         xtask fetch-kernel {name}`) prints \
         (OOMLAB_KERNEL_PIN=strict refuses this fallback)",
        name = entry.name,
        pin = rec.replaces,
        pkg = rec.package,
        ver = rec.version,
        rel = rec.release,
        sha = rec.sha256,
        track = rec.track,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::kernel::{
        bzimage_release, ensure_cached_in, hex, DebianSource, KernelSource, PinPolicy,
    };
    use sha2::{Digest, Sha256};

    fn entry(pin_version: &str, sha: &str) -> CatalogueEntry {
        CatalogueEntry {
            name: "k".into(),
            release: "1-cloud-amd64".into(),
            sha256: sha.into(),
            source: KernelSource::Debian(DebianSource {
                suite: "bookworm".into(),
                package: "linux-image-1-cloud-amd64-unsigned".into(),
                version: pin_version.into(),
                track: Some("linux-image-cloud-amd64".into()),
            }),
        }
    }

    /// Puts a floated kernel with `bytes` in `dir` standing in for `pin`.
    fn plant_float(dir: &Path, pin: &str, version: &str, bytes: &[u8]) -> FloatRecord {
        let rec = FloatRecord {
            package: "linux-image-2-cloud-amd64-unsigned".into(),
            version: version.into(),
            release: "2-cloud-amd64".into(),
            sha256: hex(&Sha256::digest(bytes)),
            replaces: pin.into(),
            track: "linux-image-cloud-amd64".into(),
        };
        let d = dir.join(rec.dir_name());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("vmlinuz"), bytes).unwrap();
        std::fs::write(d.join(FLOAT_RECORD), serde_json::to_string(&rec).unwrap()).unwrap();
        rec
    }

    #[test]
    fn float_record_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let rec = plant_float(d.path(), "p=1", "1:2.0-1", b"kernel");
        assert_eq!(
            rec.dir_name(),
            "linux-image-2-cloud-amd64-unsigned_1%3a2.0-1"
        );
        let back = float_record(&d.path().join(rec.dir_name()).join("vmlinuz")).unwrap();
        assert_eq!(back, rec);
        let mut bad = serde_json::to_value(&rec).unwrap();
        bad["sha256"] = "xyz".into();
        assert!(parse_float_record(&bad.to_string()).is_err());
        bad["sha256"] = rec.sha256.clone().into();
        bad["version"] = "1/../..".into();
        assert!(parse_float_record(&bad.to_string()).is_err());
        assert!(parse_float_record("{}").is_err());
    }

    #[test]
    fn cached_float_is_used_offline_and_verified() {
        // No network is touched: the stand-in is found, checked and named.
        let d = tempfile::tempdir().unwrap();
        let e = entry("1.0-1", &"0".repeat(64));
        plant_float(d.path(), "other-pin=9", "3.0-1", b"stale");
        let rec = plant_float(
            d.path(),
            "linux-image-1-cloud-amd64-unsigned=1.0-1",
            "2.0-1",
            b"new",
        );
        let k = ensure_cached_in(d.path(), &e, PinPolicy::Float).unwrap();
        assert!(!k.pinned);
        assert_eq!(k.release, "2-cloud-amd64");
        assert_eq!(k.sha256, rec.sha256);
        assert_eq!(k.path, d.path().join(rec.dir_name()).join("vmlinuz"));
        let w = float_warning(&e, &rec);
        for part in [
            "linux-image-1-cloud-amd64-unsigned=1.0-1",
            "linux-image-2-cloud-amd64-unsigned=2.0-1",
            rec.sha256.as_str(),
            "signed archive index",
            "cargo xtask fetch-kernel k",
            "OOMLAB_KERNEL_PIN=strict",
        ] {
            assert!(w.contains(part), "{part} not in {w}");
        }
        assert!(!w.contains('\n'));
        // Tampered bytes fail loudly instead of being refetched silently.
        std::fs::write(&k.path, b"evil").unwrap();
        let err = ensure_cached_in(d.path(), &e, PinPolicy::Float).unwrap_err();
        assert!(matches!(err, ImageError::ChecksumMismatch { .. }), "{err}");
    }

    #[test]
    fn catalogue_updated_to_a_floated_kernel_adopts_it() {
        let d = tempfile::tempdir().unwrap();
        let rec = plant_float(d.path(), "old=1", "2.0-1", b"new");
        let mut e = entry("2.0-1", &rec.sha256);
        if let KernelSource::Debian(d) = &mut e.source {
            d.package = rec.package.clone();
        }
        e.release = rec.release.clone();
        let k = ensure_cached_in(d.path(), &e, PinPolicy::Strict).unwrap();
        assert!(k.pinned);
        assert_eq!(k.path, d.path().join("vmlinuz"));
        assert_eq!(std::fs::read(&k.path).unwrap(), b"new");
    }

    /// The fallback for real, against the host's Debian mirror: a pin that
    /// never existed floats to the suite's current cloud kernel, and a second
    /// call finds it in the cache. Needs network; run by hand:
    /// `cargo test -p oomlab float_fallback_for_real -- --ignored --nocapture`
    /// (`OOMLAB_FLOAT_TEST_SUITE=trixie` for a suite the host lacks).
    #[test]
    #[ignore = "downloads a kernel package from the host's Debian mirror"]
    fn float_fallback_for_real() {
        let suite = std::env::var("OOMLAB_FLOAT_TEST_SUITE").unwrap_or("bookworm".into());
        let d = tempfile::tempdir().unwrap();
        let mut e = entry("0.0.0-0oomlab-never", &"0".repeat(64));
        if let KernelSource::Debian(d) = &mut e.source {
            d.suite = suite;
            d.package = "linux-image-cloud-amd64".into();
        }
        let err = ensure_cached_in(d.path(), &e, PinPolicy::Strict).unwrap_err();
        eprintln!("strict: {err}");
        assert!(
            err.to_string().contains("OOMLAB_KERNEL_PIN=strict"),
            "{err}"
        );
        let k = ensure_cached_in(d.path(), &e, PinPolicy::Float).unwrap();
        eprintln!("floated: {k:?}");
        assert!(!k.pinned);
        let rec = float_record(&k.path).unwrap();
        eprintln!("record: {rec:?}");
        assert!(
            rec.package.ends_with("-unsigned") || rec.package.starts_with("linux-binary-"),
            "{rec:?}"
        );
        assert_eq!(
            bzimage_release(&std::fs::read(&k.path).unwrap()),
            Some(k.release.clone())
        );
        assert!(rec.package.contains(&k.release));
        let again = ensure_cached_in(d.path(), &e, PinPolicy::Float).unwrap();
        assert_eq!(again, k);
        let leftovers: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [std::ffi::OsString::from(rec.dir_name())]);
    }
}
