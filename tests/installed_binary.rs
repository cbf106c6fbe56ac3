//! `cargo install --path harness` gives an oomlab that works outside the
//! source tree: the static payload is embedded in the binary. Checked by
//! copying the built binary out of the tree and running the seed scenario
//! from a directory with no workspace above it (real QEMU, TCG).

use std::process::Command;

use oomlab_e2e::{oomlab_bin, root};

#[test]
fn binary_outside_the_tree_runs_the_seed() {
    let outside = tempfile::tempdir().unwrap();
    let bin = outside.path().join("oomlab");
    std::fs::copy(oomlab_bin(), &bin).unwrap();
    let scenario = root().join("scenarios/seed-livelock.yaml");
    let json = outside.path().join("report.json");
    let o = Command::new(&bin)
        .current_dir(outside.path())
        // No workspace build may be found by any route but the embedded one.
        .env_remove("OOMLAB_PAYLOAD")
        .args(["run", "--accel", "tcg", "--out"])
        .arg(outside.path().join("run"))
        .arg("--json")
        .arg(&json)
        .arg("--verbose")
        .arg(&scenario)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let text =
        std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no report ({e}):\n{stderr}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["verdict"], "livelock", "{stderr}");
    // The payload came out of the binary, into the cache by its sha256.
    let line = stderr
        .lines()
        .find(|l| l.starts_with("oomlab: payload /"))
        .unwrap_or_else(|| panic!("no payload line:\n{stderr}"));
    assert!(line.contains("/payload/"), "{line}");
    assert!(!line.contains(&root().display().to_string()), "{line}");
}

/// `oomlab kernels` lists every catalogue kernel with its release and
/// origin; an unknown `--fetch` name is bad input (exit 2), fetching nothing.
#[test]
fn kernels_lists_the_catalogue() {
    let o = Command::new(oomlab_bin()).arg("kernels").output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    let cat = oomlab::image::kernel::catalogue().unwrap();
    for k in &cat.kernels {
        let line = out
            .lines()
            .find(|l| l.starts_with(&k.name))
            .unwrap_or_else(|| panic!("{} missing:\n{out}", k.name));
        assert!(line.contains(&k.release), "{line}");
        assert!(line.contains(&k.origin()), "{line}");
    }
    assert!(out.contains("(default)"), "{out}");
    let o = Command::new(oomlab_bin())
        .args(["kernels", "--fetch", "no-such-kernel"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-kernel"));
}
