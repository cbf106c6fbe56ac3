//! Shared helpers for the end-to-end tests. These boot real kernels under
//! real QEMU with the real payload; nothing here is mocked.

pub mod ktap;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `oomlab` binary of this build profile, built once if missing.
pub fn oomlab_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("OOMLAB_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test-exe> -> target/<profile>/oomlab
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test exe under target/<profile>/deps");
        let bin = profile_dir.join("oomlab");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root())
            .args(["build", "--quiet", "-p", "oomlab", "--bin", "oomlab"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
        assert!(ok && bin.is_file(), "could not build {}", bin.display());
        bin
    })
    .clone()
}

/// Processes whose command line contains `needle` (e.g. a run's private
/// TMPDIR, which QEMU's telemetry socket path carries).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(needle) && pid != std::process::id() {
                found.push((pid, cmd));
            }
        }
    }
    found
}

/// Entries of `dir` whose names start with `prefix`.
pub fn leftovers(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a small Python program against `file` with the validators that
/// kernel CI uses (`kcidb-io`, `junitparser`; `cargo xtask setup` installs
/// them). Returns its stdout; panics with its stderr.
pub fn python_check(program: &str, file: &Path) -> String {
    let o = Command::new(oomlab::image::validators_python())
        .arg("-c")
        .arg(program)
        .arg(file)
        .output()
        .expect("python3 is needed for the CI-format validators");
    assert!(
        o.status.success(),
        "{} rejected by the validator:\n{}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// KCIDB's own schema check (PyPI `kcidb-io`, latest schema).
pub const KCIDB_VALIDATE: &str = "import json, sys, kcidb_io\n\
d = json.load(open(sys.argv[1]))\n\
kcidb_io.schema.LATEST.validate(d)\n\
print(len(d['tests']))\n";

/// A JUnit reader (PyPI `junitparser`): per suite, (name, tests, failures,
/// errors, skipped) as JSON.
pub const JUNIT_READ: &str = "import json, sys\n\
from junitparser import JUnitXml\n\
x = JUnitXml.fromfile(sys.argv[1])\n\
print(json.dumps([[s.name, s.tests, s.failures, s.errors, s.skipped, [[c.name, c.is_passed, c.is_skipped] for c in s]] for s in x]))\n";

/// `oomlab run SCENARIO --out OUT/run --json OUT/report.json` from the
/// workspace root: exit code, report, and both output streams.
pub fn run_oomlab(scenario: &Path, out: &Path) -> (i32, serde_json::Value, String) {
    let json = out.join("report.json");
    let o = Command::new(oomlab_bin())
        .current_dir(root())
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(out.join("run"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run oomlab");
    let logs = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no report ({e})\n{logs}"));
    let v = serde_json::from_str(&text).expect("report is JSON");
    (o.status.code().unwrap_or(-1), v, logs)
}

/// A number at a dotted path of a report.
pub fn num(v: &serde_json::Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

/// TCP sockets listening on `port` in `/proc/net/tcp` and `tcp6` text:
/// their local addresses as the kernel writes them (hex).
pub fn listeners(proc_net_tcp: &str, port: u16) -> Vec<String> {
    let want = format!("{port:04X}");
    proc_net_tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, p) = f.get(1)?.rsplit_once(':')?;
            (p == want && f.get(3) == Some(&"0A")).then(|| addr.to_string())
        })
        .collect()
}
