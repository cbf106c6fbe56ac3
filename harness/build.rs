//! Builds the static guest payload and hands its path to the crate, which
//! embeds the bytes (`include_bytes!`): an installed `oomlab` then needs no
//! source tree. The nested `cargo build -p guest-payload` gets its own
//! target directory under OUT_DIR, so it never waits on the lock of the
//! build that runs this script, and is cached there between builds.
//!
//! musl when its rust-std is installed (static by default, runs on any
//! kernel); else static glibc (`+crt-static`, needs a guest kernel >= 3.2),
//! as `image::payload` chooses at run time. When the payload cannot be
//! built (no guest-payload sources beside this crate, a failed build) an
//! empty file is embedded and a warning printed: that binary then finds
//! the payload at run time as before (workspace build or OOMLAB_PAYLOAD).

use std::path::{Path, PathBuf};
use std::process::Command;

const MUSL: &str = "x86_64-unknown-linux-musl";
const GNU: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let root = manifest
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf();
    let embedded = out.join("guest-payload.bin");
    println!("cargo:rerun-if-env-changed=OOMLAB_EMBED_PAYLOAD");
    for p in [
        "guest-payload/src",
        "guest-payload/Cargo.toml",
        "protocol/src",
        "protocol/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let (target, note) = match build(&root, &out) {
        Ok((built, target)) => {
            std::fs::copy(&built, &embedded).expect("copy the payload into OUT_DIR");
            (target, String::new())
        }
        Err(why) => {
            println!("cargo:warning=guest payload not embedded: {why}");
            std::fs::write(&embedded, b"").expect("write OUT_DIR");
            ("", why)
        }
    };
    println!(
        "cargo:rustc-env=OOMLAB_EMBEDDED_PAYLOAD={}",
        embedded.display()
    );
    println!("cargo:rustc-env=OOMLAB_EMBEDDED_PAYLOAD_TARGET={target}");
    println!(
        "cargo:rustc-env=OOMLAB_EMBEDDED_PAYLOAD_NOTE={}",
        note.replace('\n', " ")
    );
}

fn musl_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|s| s.join("lib/rustlib").join(MUSL).is_dir())
}

fn build(root: &Path, out: &Path) -> Result<(PathBuf, &'static str), String> {
    if std::env::var("OOMLAB_EMBED_PAYLOAD").is_ok_and(|v| v == "0") {
        return Err("OOMLAB_EMBED_PAYLOAD=0".into());
    }
    if !root.join("guest-payload/Cargo.toml").is_file() {
        return Err(format!("no guest-payload sources in {}", root.display()));
    }
    let target = if musl_installed() { MUSL } else { GNU };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = out.join("payload-target");
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--release", "-p", "guest-payload", "--target", target])
        .arg("--target-dir")
        .arg(&target_dir);
    // What the outer build set for itself must not leak into this one:
    // its flags, wrappers (clippy's driver) and target.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    if target == GNU {
        cmd.env("RUSTFLAGS", "-C target-feature=+crt-static");
    }
    let o = cmd.output().map_err(|e| format!("run cargo: {e}"))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(format!(
            "cargo build -p guest-payload --target {target} failed: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    let built = target_dir.join(target).join("release/guest-payload");
    if !built.is_file() {
        return Err(format!("{} missing after the build", built.display()));
    }
    Ok((built, target))
}
