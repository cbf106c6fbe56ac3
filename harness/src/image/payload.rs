//! Finding (or building) the static `guest-payload` binary that becomes
//! `/init`. It must be fully static: the initramfs has no libc.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;

pub const MUSL: &str = "x86_64-unknown-linux-musl";
pub const GNU: &str = "x86_64-unknown-linux-gnu";
const PACKAGE: &str = "guest-payload";
/// Only the gnu fallback needs this; musl links statically by default.
const GNU_STATIC_FLAGS: &str = "-C target-feature=+crt-static";

/// A built payload, with which target was used and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPayload {
    pub path: PathBuf,
    pub target: &'static str,
    pub reason: String,
}

/// The build target for the payload and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetChoice {
    pub target: &'static str,
    pub reason: String,
}

impl TargetChoice {
    /// Extra RUSTFLAGS this target needs to produce a static binary.
    pub fn rustflags(&self) -> Option<&'static str> {
        (self.target == GNU).then_some(GNU_STATIC_FLAGS)
    }
}

/// Whether the musl rust-std is installed in the active toolchain.
pub fn musl_installed() -> bool {
    rustc_sysroot()
        .map(|s| s.join("lib/rustlib").join(MUSL).is_dir())
        .unwrap_or(false)
}

fn rustc_sysroot() -> Option<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// musl if installed; else one `rustup target add` try; else static glibc.
/// musl is preferred because static glibc refuses kernels older than 3.2.
pub fn choose_target() -> TargetChoice {
    if musl_installed() {
        return TargetChoice {
            target: MUSL,
            reason: format!("{MUSL} rust-std is installed"),
        };
    }
    let added = Command::new("rustup")
        .args(["target", "add", MUSL])
        .output();
    match added {
        Ok(o) if o.status.success() && musl_installed() => TargetChoice {
            target: MUSL,
            reason: format!("installed {MUSL} with rustup"),
        },
        Ok(o) => TargetChoice {
            target: GNU,
            reason: format!(
                "`rustup target add {MUSL}` failed ({}); static glibc fallback \
                 (needs a guest kernel >= 3.2)",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        },
        Err(e) => TargetChoice {
            target: GNU,
            reason: format!(
                "rustup unavailable ({e}); static glibc fallback (needs a guest kernel >= 3.2)"
            ),
        },
    }
}

/// Whether a Cargo.toml's text declares a workspace.
pub fn is_workspace_manifest(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "[workspace]")
}

fn workspace_above(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
        is_workspace_manifest(&text).then(|| dir.to_path_buf())
    })
}

/// The oomlab workspace root: above the running executable (it normally
/// lives in `target/`), else above the current directory, else where this
/// crate was compiled from.
pub fn workspace_root() -> Option<PathBuf> {
    local_workspace_root().or_else(|| workspace_above(Path::new(env!("CARGO_MANIFEST_DIR"))))
}

/// The workspace the running executable or the current directory is in;
/// not the one it was compiled from (an installed binary has none).
fn local_workspace_root() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok();
    exe.as_deref().and_then(workspace_above).or_else(|| {
        std::env::current_dir()
            .ok()
            .as_deref()
            .and_then(workspace_above)
    })
}

/// The payload built with this binary (harness/build.rs), empty when that
/// build could not make one.
pub static EMBEDDED: &[u8] = include_bytes!(env!("OOMLAB_EMBEDDED_PAYLOAD"));
/// The target it was built for (`x86_64-unknown-linux-musl`...), or empty.
pub const EMBEDDED_TARGET: &str = env!("OOMLAB_EMBEDDED_PAYLOAD_TARGET");
/// Why nothing was embedded, if nothing was.
pub const EMBEDDED_NOTE: &str = env!("OOMLAB_EMBEDDED_PAYLOAD_NOTE");

/// Writes `bytes` to `<cache>/payload/<sha256>/guest-payload` (once; the
/// name is the content) and returns that path.
pub fn cache_embedded(cache: &Path, bytes: &[u8]) -> Result<PathBuf, ImageError> {
    use sha2::{Digest, Sha256};
    let sha = super::kernel::hex(&Sha256::digest(bytes));
    let dir = cache.join("payload").join(&sha);
    let path = dir.join(PACKAGE);
    if path.is_file() && super::kernel::sha256_file(&path).ok().as_deref() == Some(sha.as_str()) {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| ImageError::io(format!("create {}", dir.display()), e))?;
    crate::atomic::write_atomic(&path, |w| std::io::Write::write_all(w, bytes))
        .map_err(|e| ImageError::io(format!("write {}", path.display()), e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| ImageError::io(format!("chmod {}", path.display()), e))?;
    Ok(path)
}

/// The embedded payload, in the cache.
fn embedded_payload() -> Result<PathBuf, ImageError> {
    if EMBEDDED.is_empty() {
        return Err(ImageError::PayloadNotFound(format!(
            "this oomlab was built without an embedded payload ({EMBEDDED_NOTE})"
        )));
    }
    cache_embedded(&super::cache_dir()?, EMBEDDED)
}

/// Cargo's target directory for `root`, honouring `CARGO_TARGET_DIR`.
pub fn target_dir(root: &Path) -> PathBuf {
    target_dir_from(
        root,
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
    )
}

fn target_dir_from(root: &Path, env: Option<PathBuf>) -> PathBuf {
    match env.filter(|p| !p.as_os_str().is_empty()) {
        // Cargo resolves a relative CARGO_TARGET_DIR against the cwd.
        Some(p) if p.is_relative() => std::env::current_dir().map(|c| c.join(&p)).unwrap_or(p),
        Some(p) => p,
        None => root.join("target"),
    }
}

/// Where cargo puts the payload for `target` under `target_dir`.
pub fn payload_path(target_dir: &Path, target: &str) -> PathBuf {
    target_dir.join(target).join("release").join(PACKAGE)
}

/// Runs `cargo build --release -p guest-payload --target T` in `workspace_root`.
pub fn build_payload(workspace_root: &Path) -> Result<BuiltPayload, ImageError> {
    let choice = choose_target();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root).args([
        "build",
        "--release",
        "-p",
        PACKAGE,
        "--target",
        choice.target,
    ]);
    if let Some(flags) = choice.rustflags() {
        let mut all = std::env::var("RUSTFLAGS").unwrap_or_default();
        if !all.is_empty() {
            all.push(' ');
        }
        all.push_str(flags);
        cmd.env("RUSTFLAGS", all);
    }
    let shown = format!(
        "cargo build --release -p {PACKAGE} --target {}",
        choice.target
    );
    let status = cmd.status().map_err(|e| ImageError::Command {
        cmd: shown.clone(),
        detail: e.to_string(),
    })?;
    if !status.success() {
        return Err(ImageError::Command {
            cmd: shown,
            detail: format!("{status} (target chosen because: {})", choice.reason),
        });
    }
    let path = payload_path(&target_dir(workspace_root), choice.target);
    if !path.is_file() {
        return Err(ImageError::PayloadNotFound(format!(
            "{shown} succeeded but {} does not exist",
            path.display()
        )));
    }
    Ok(BuiltPayload {
        path,
        target: choice.target,
        reason: choice.reason,
    })
}

/// The newest existing candidate, if any.
fn newest(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p.clone())
}

/// Candidate payload paths: the configured target dir, plus any directory
/// between the running executable and the workspace root (so a binary built
/// with another CARGO_TARGET_DIR still finds its sibling payload).
fn candidates(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![target_dir(root)];
    if let Ok(exe) = std::env::current_exe() {
        for d in exe.ancestors().skip(1) {
            if d == root || !d.starts_with(root) {
                break;
            }
            dirs.push(d.to_path_buf());
        }
    }
    dirs.iter()
        .flat_map(|d| [payload_path(d, MUSL), payload_path(d, GNU)])
        .collect()
}

/// `$OOMLAB_PAYLOAD` if set; else the newest payload in the workspace's
/// target dir(s); else builds it when a workspace and cargo are available.
/// A built payload older than any file of the crate's sources.
fn is_stale(binary: &Path, crate_dir: &Path) -> bool {
    fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
        let mut best = None;
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            let m = if p.is_dir() {
                newest_mtime(&p)
            } else {
                e.metadata().ok().and_then(|m| m.modified().ok())
            };
            best = best.max(m);
        }
        best
    }
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok();
    let sources = newest_mtime(&crate_dir.join("src")).max(
        std::fs::metadata(crate_dir.join("Cargo.toml"))
            .and_then(|m| m.modified())
            .ok(),
    );
    matches!((built, sources), (Some(b), Some(s)) if s > b)
}

/// `$OOMLAB_PAYLOAD` if set; else, in an oomlab workspace (the binary's or
/// the current directory's), its newest payload build, rebuilt when older
/// than its sources; else the payload embedded in this binary (written to
/// the cache, named by its sha256); else the workspace this binary was
/// compiled from.
pub fn locate_payload() -> Result<PathBuf, ImageError> {
    if let Some(p) = std::env::var_os("OOMLAB_PAYLOAD").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(ImageError::PayloadNotFound(format!(
                "OOMLAB_PAYLOAD={} is not a file",
                p.display()
            )))
        };
    }
    let local = local_workspace_root();
    if let Some(root) = &local {
        if let Some(p) = newest(&candidates(root)) {
            if !is_stale(&p, &root.join("guest-payload")) {
                return Ok(p);
            }
        }
    }
    // No fresh workspace build: the embedded payload was built from the
    // sources this binary was (cargo reruns the build script when they
    // change), so it is the code as it is.
    let exe_fresh = match (&local, std::env::current_exe()) {
        (Some(root), Ok(exe)) => !is_stale(&exe, &root.join("guest-payload")),
        _ => true,
    };
    let embedded = embedded_payload();
    if exe_fresh && embedded.is_ok() || local.is_none() && workspace_root().is_none() {
        return embedded;
    }
    let root = workspace_root().ok_or_else(|| {
        ImageError::PayloadNotFound(
            "no oomlab workspace found; set OOMLAB_PAYLOAD to a static guest-payload binary".into(),
        )
    })?;
    if let Some(p) = newest(&candidates(&root)) {
        if !is_stale(&p, &root.join("guest-payload")) {
            return Ok(p);
        }
        // Edited since the last build: a run must test the code as it is.
        return match build_payload(&root) {
            Ok(b) => Ok(b.path),
            Err(e) => {
                eprintln!(
                    "oomlab: warning: {} is older than guest-payload's sources and rebuilding failed ({e}); using it anyway",
                    p.display()
                );
                Ok(p)
            }
        };
    }
    build_payload(&root).map(|b| b.path).map_err(|e| {
        ImageError::PayloadNotFound(format!(
            "none built under {} and building failed: {e} \
             (run `cargo xtask build-payload` or set OOMLAB_PAYLOAD)",
            target_dir(&root).display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_payload_is_cached_by_content() {
        let d = tempfile::tempdir().unwrap();
        let a = cache_embedded(d.path(), b"\x7fELF payload one").unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"\x7fELF payload one");
        assert_eq!(cache_embedded(d.path(), b"\x7fELF payload one").unwrap(), a);
        let b = cache_embedded(d.path(), b"\x7fELF payload two").unwrap();
        assert_ne!(a, b);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // A damaged copy is rewritten.
        std::fs::write(&a, b"junk").unwrap();
        assert_eq!(
            std::fs::read(cache_embedded(d.path(), b"\x7fELF payload one").unwrap()).unwrap(),
            b"\x7fELF payload one"
        );
    }

    #[test]
    fn this_build_embeds_a_static_payload() {
        if EMBEDDED.is_empty() {
            eprintln!("SKIPPED this_build_embeds_a_static_payload: {EMBEDDED_NOTE}");
            return;
        }
        assert_eq!(&EMBEDDED[..4], b"\x7fELF");
        assert!(EMBEDDED_TARGET == MUSL || EMBEDDED_TARGET == GNU);
        // Static: no PT_INTERP program header (ELF64, little endian).
        let phoff = u64::from_le_bytes(EMBEDDED[0x20..0x28].try_into().unwrap()) as usize;
        let phentsize = u16::from_le_bytes([EMBEDDED[0x36], EMBEDDED[0x37]]) as usize;
        let phnum = u16::from_le_bytes([EMBEDDED[0x38], EMBEDDED[0x39]]) as usize;
        for i in 0..phnum {
            let at = phoff + i * phentsize;
            let p_type = u32::from_le_bytes(EMBEDDED[at..at + 4].try_into().unwrap());
            assert_ne!(p_type, 3, "the embedded payload has an interpreter");
        }
    }

    #[test]
    fn workspace_manifest_detection() {
        assert!(is_workspace_manifest("[workspace]\nmembers = []\n"));
        assert!(is_workspace_manifest(
            "[package]\nname='x'\n\n [workspace] \n"
        ));
        assert!(!is_workspace_manifest("[workspace.dependencies]\nx = 1\n"));
        assert!(!is_workspace_manifest("[package]\nname = \"workspace\"\n"));
    }

    #[test]
    fn finds_this_workspace() {
        let root = workspace_above(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(root.join("guest-payload").is_dir(), "{}", root.display());
    }

    #[test]
    fn target_dir_honours_env() {
        let root = Path::new("/ws");
        assert_eq!(target_dir_from(root, None), PathBuf::from("/ws/target"));
        assert_eq!(
            target_dir_from(root, Some("".into())),
            PathBuf::from("/ws/target")
        );
        assert_eq!(
            target_dir_from(root, Some("/t".into())),
            PathBuf::from("/t")
        );
        assert!(target_dir_from(root, Some("rel".into())).is_absolute());
    }

    #[test]
    fn payload_path_layout() {
        assert_eq!(
            payload_path(Path::new("/t"), MUSL),
            PathBuf::from("/t/x86_64-unknown-linux-musl/release/guest-payload")
        );
    }

    #[test]
    fn only_gnu_needs_static_flags() {
        let c = |target| TargetChoice {
            target,
            reason: String::new(),
        };
        assert_eq!(c(MUSL).rustflags(), None);
        assert_eq!(c(GNU).rustflags(), Some("-C target-feature=+crt-static"));
    }

    #[test]
    fn newest_picks_latest_existing() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, b"").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        std::fs::File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let missing = d.path().join("missing");
        assert_eq!(newest(&[a.clone(), missing.clone(), b.clone()]), Some(b));
        assert_eq!(newest(&[missing]), None);
    }
}
