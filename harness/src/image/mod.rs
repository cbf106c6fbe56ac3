//! image: everything the VM boots, built or fetched before a run.
//!
//! - [`kernel`]: a small catalogue of Debian cloud kernels, fetched through the
//!   host's own apt mirror into a cache outside the tree and checked by sha256
//!   on every use; or a bring-your-own `vmlinuz` path.
//! - [`payload`]: locates (or builds) the static `guest-payload` binary.
//! - [`initramfs`]: packs the payload as `/init` plus `scenario.conf` into a
//!   newc archive written by [`cpio`].

pub mod cpio;
pub mod disk;
pub mod elf;
pub mod guest;
pub mod initramfs;
pub mod kernel;
pub mod modules;
pub mod payload;
pub mod programs;
pub mod tree;

use std::path::PathBuf;

pub use initramfs::write_initramfs;
pub use kernel::{mirror_uri, resolve_kernel, KernelImage, DEFAULT_KERNEL};
pub use payload::{build_payload, locate_payload, BuiltPayload};

/// Errors of the image stage. Each names the file, command or catalogue
/// entry involved so the message alone says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed: {detail}")]
    Command { cmd: String, detail: String },
    #[error("kernel catalogue images/kernels.yaml is invalid: {0}")]
    Catalogue(String),
    #[error("unknown kernel `{spec}`: not a catalogue entry ({known}) and no such file")]
    UnknownKernel { spec: String, known: String },
    #[error(
        "kernel `{name}`: sha256 mismatch for {path}: expected {expected}, got {actual} \
         (delete the file to refetch, or fix images/kernels.yaml)"
    )]
    ChecksumMismatch {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("kernel `{name}`: {detail}")]
    Fetch { name: String, detail: String },
    #[error("{path}: not an x86 Linux boot image: {why}")]
    NotBootImage { path: PathBuf, why: String },
    #[error("no Debian mirror found in the host's apt configuration: {0}")]
    NoMirror(String),
    #[error("guest payload not found: {0}")]
    PayloadNotFound(String),
    #[error("no cache directory: set OOMLAB_CACHE, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    #[error("cpio entry `{name}`: {detail}")]
    Cpio { name: String, detail: String },
}

impl ImageError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Where fetched artefacts live: `$OOMLAB_CACHE`, else
/// `$XDG_CACHE_HOME/oomlab`, else `~/.cache/oomlab`. Never inside the git tree.
pub fn cache_dir() -> Result<PathBuf, ImageError> {
    cache_dir_from(|k| std::env::var_os(k))
}

/// The Python that has kernel CI's readers (`kcidb-io`, `junitparser`)
/// for the CI-format tests: the virtual environment `cargo xtask setup`
/// makes in the cache when the system's own Python lacks them (Debian's
/// is externally managed: no `pip install` into it), else `python3`.
pub fn validators_python() -> PathBuf {
    cache_dir()
        .map(|c| c.join("py/bin/python3"))
        .ok()
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

fn cache_dir_from(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<PathBuf, ImageError> {
    let nonempty = |k: &str| get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = nonempty("OOMLAB_CACHE") {
        return Ok(p);
    }
    if let Some(p) = nonempty("XDG_CACHE_HOME") {
        return Ok(p.join("oomlab"));
    }
    nonempty("HOME")
        .map(|h| h.join(".cache").join("oomlab"))
        .ok_or(ImageError::NoCacheDir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn cache_dir_precedence() {
        let all = [
            ("OOMLAB_CACHE", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(cache_dir_from(env(&all)).unwrap(), PathBuf::from("/c"));
        let xdg = [
            ("OOMLAB_CACHE", ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            cache_dir_from(env(&xdg)).unwrap(),
            PathBuf::from("/x/oomlab")
        );
        let home = [("HOME", "/h")];
        assert_eq!(
            cache_dir_from(env(&home)).unwrap(),
            PathBuf::from("/h/.cache/oomlab")
        );
        assert!(matches!(
            cache_dir_from(env(&[])),
            Err(ImageError::NoCacheDir)
        ));
    }
}
