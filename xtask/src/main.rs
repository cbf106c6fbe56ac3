//! `cargo xtask <verb>`: setup, builds, fetches and the project's test/CI
//! entry points. Everything here is idempotent and says what it did.

mod bench;
mod bench_boot;
mod kconfig;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use oomlab::image::{self, kernel, payload};

#[derive(Parser)]
#[command(name = "xtask", about = "oomlab developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: QEMU, the musl target, the payload, the default kernel.
    Setup,
    /// Build the static guest payload.
    BuildPayload,
    /// Fetch (or verify) a catalogue kernel: the default, NAME, or --all.
    FetchKernel {
        name: Option<String>,
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
    /// Write an initramfs for a scenario.conf.
    Initramfs {
        #[arg(long)]
        conf: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// setup, then `cargo test --workspace`: the project's test command.
    Test,
    /// setup, then the demo: the seed's loop, a mitigation ending it, and
    /// the matrix of every mitigation with its HTML report.
    Demo,
    /// Time the seed scenario: N runs, min/median/max, markdown in
    /// target/bench/<label>.md (seed.md by default).
    Bench {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Another scenario file.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// A catalogue kernel (or a path) instead of the scenario's.
        #[arg(long)]
        kernel: Option<String>,
        /// Names the output (target/bench/<label>.md).
        #[arg(long)]
        label: Option<String>,
    },
    /// The whole matrix with one guest at a time and with one per core:
    /// wall time and kill rates side by side in target/bench/matrix.md.
    BenchMatrix {
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// The `--jobs` settings to compare.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        jobs: Vec<usize>,
    },
    /// What each boot-time change buys, kernel by kernel: a boot-only
    /// scenario under each step of the tuning (TCG), in target/bench/boot.md.
    BenchBoot {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Catalogue kernels (or paths) to time; default: the whole catalogue.
        #[arg(long)]
        kernel: Vec<String>,
    },
    /// fmt --check, clippy -D warnings, then test.
    Ci,
    /// Regenerate the key and event tables of protocol/PROTOCOL.md.
    ProtocolDoc,
    /// Print the kernel config fragment a self-built kernel needs to boot
    /// in oomlab (merge it with scripts/kconfig/merge_config.sh); with
    /// --check, say what a built tree's .config lacks of it instead.
    Kconfig {
        #[arg(long, value_name = "DOT_CONFIG")]
        check: Option<PathBuf>,
    },
    /// Fetch what the shipped scenarios' guests need ahead of a run: the
    /// Debian programs (dropbear, busybox, nginx...) and the kernel's
    /// modules; runs fetch the same on first use.
    FetchGuest {
        /// Catalogue kernel whose modules to fetch (default: the default kernel).
        #[arg(long)]
        kernel: Option<String>,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
    match cli.cmd {
        Cmd::Setup => setup(&root).map(|_| ExitCode::SUCCESS),
        Cmd::BuildPayload => {
            let p = payload::build_payload(&root)?;
            println!("payload: {} ({}: {})", p.path.display(), p.target, p.reason);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::FetchKernel { name, all } => {
            let names: Vec<String> = if all {
                kernel::catalogue()?
                    .kernels
                    .into_iter()
                    .map(|k| k.name)
                    .collect()
            } else {
                vec![name.unwrap_or_else(|| kernel::DEFAULT_KERNEL.to_string())]
            };
            for n in names {
                fetch_kernel(&n)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Initramfs { conf, out } => {
            let text = std::fs::read_to_string(&conf)
                .with_context(|| format!("read {}", conf.display()))?;
            let p = image::locate_payload()?;
            image::write_initramfs(&out, &p, &text, &[])?;
            println!("initramfs: {} (payload {})", out.display(), p.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Test => {
            setup(&root)?;
            test()
        }
        Cmd::Demo => {
            setup(&root)?;
            demo()
        }
        Cmd::ProtocolDoc => {
            let path = root.join("protocol/PROTOCOL.md");
            let doc = std::fs::read_to_string(&path)
                .with_context(|| format!("read {}", path.display()))?;
            let fresh = oomlab_protocol::with_generated(&doc).with_context(|| {
                format!("{}: generated-section markers missing", path.display())
            })?;
            if fresh == doc {
                println!("{}: up to date", path.display());
            } else {
                std::fs::write(&path, fresh)
                    .with_context(|| format!("write {}", path.display()))?;
                println!("{}: regenerated", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::BenchMatrix { repeat, jobs } => {
            bench::bench_matrix(&root, repeat, &jobs).map(|_| ExitCode::SUCCESS)
        }
        Cmd::BenchBoot { runs, kernel } => {
            bench_boot::bench_boot(&root, runs, &kernel).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Bench {
            runs,
            scenario,
            kernel,
            label,
        } => bench::bench(
            &root,
            runs,
            &bench::BenchSpec {
                scenario,
                kernel,
                label,
            },
        )
        .map(|_| ExitCode::SUCCESS),
        Cmd::Kconfig { check: None } => {
            print!("{}", kconfig::fragment());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Kconfig { check: Some(path) } => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read {}", path.display()))?;
            let problems = kconfig::problems(&text);
            for p in &problems {
                println!("{}: {p}", path.display());
            }
            if problems.is_empty() {
                println!("{}: has every option oomlab needs", path.display());
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::FAILURE)
            }
        }
        Cmd::FetchGuest { kernel } => {
            fetch_guest(&root, kernel.as_deref()).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Ci => {
            for args in [
                &["fmt", "--all", "--", "--check"][..],
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ][..],
            ] {
                let code = cargo(args)?;
                if code != ExitCode::SUCCESS {
                    return Ok(code);
                }
            }
            setup(&root)?;
            test()
        }
    }
}

/// The project's tests: bounded fuzz runs of the log parser and of
/// scenario parsing (cargo-fuzz needs nightly; these are its stand-in),
/// then the whole suite, last, so its summary closes the output.
fn test() -> Result<ExitCode> {
    // A fixed seed: the gate is repeatable, and a failure replays exactly.
    // Explore further by hand with `--seed N --seconds M`.
    let fuzz = cargo(&[
        "run",
        "--quiet",
        "-p",
        "oomlab",
        "--example",
        "fuzz_parser",
        "--",
        "--seconds",
        "20",
    ])?;
    if fuzz != ExitCode::SUCCESS {
        bail!("the parser fuzz run found a panic (input saved in the temp dir, see above)");
    }
    // Scenario files: hostile YAML must be refused within the bounds, never
    // panic; the same fixed-seed rule.
    let fuzz = cargo(&[
        "run",
        "--quiet",
        "-p",
        "oomlab",
        "--example",
        "fuzz_scenario",
        "--",
        "--seconds",
        "5",
    ])?;
    if fuzz != ExitCode::SUCCESS {
        bail!("the scenario fuzz run found a failure (input saved in the temp dir, see above)");
    }
    cargo(&["test", "--workspace"])
}

/// xtask always lives one level below the workspace root.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent dir")
        .to_path_buf()
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Runs cargo with inherited stdio; its exit code becomes ours.
fn cargo(args: &[&str]) -> Result<ExitCode> {
    println!("+ cargo {}", args.join(" "));
    let status = Command::new(cargo_bin())
        .args(args)
        .status()
        .with_context(|| format!("run cargo {}", args.join(" ")))?;
    Ok(exit_code(status.code()))
}

fn exit_code(code: Option<i32>) -> ExitCode {
    // A signal death has no code: report it as a plain failure.
    ExitCode::from(code.map_or(1, |c| c.clamp(0, 255) as u8))
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(bin).is_file()))
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self is owned by the effective uid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn setup(root: &Path) -> Result<()> {
    ensure_debian(
        "qemu-system-x86_64",
        "qemu-system-x86",
        "it runs the guests",
    )?;
    // The matrix test opens the HTML report in a real browser.
    ensure_debian(
        "chromium",
        "chromium",
        "the HTML report test renders the page",
    )?;
    ensure_python_validators()?;
    if payload::musl_installed() {
        println!("musl target: present");
    } else {
        let ok = Command::new("rustup")
            .args(["target", "add", payload::MUSL])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            println!("musl target: installed");
        } else {
            println!("musl target: unavailable (payload falls back to static glibc)");
        }
    }
    let p = payload::build_payload(root).context("payload build")?;
    println!(
        "payload: built {} ({}: {})",
        p.path.display(),
        p.target,
        p.reason
    );
    fetch_kernel(kernel::DEFAULT_KERNEL)
}

/// Programs of every shipped scenario, and the modules of a kernel.
fn fetch_guest(root: &Path, kernel_name: Option<&str>) -> Result<()> {
    let mut dir: Vec<PathBuf> = oomlab::scenario::SHIPPED_DIRS
        .iter()
        .filter_map(|d| std::fs::read_dir(root.join(d)).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    dir.sort();
    for p in dir {
        let sc = oomlab::scenario::Scenario::load(&p)?;
        for prog in image::guest::wanted_programs(&sc)? {
            let what = if prog.package.is_empty() {
                "host"
            } else {
                &prog.package
            };
            println!(
                "{}: {what} {} {} ({} files)",
                sc.name,
                prog.version,
                prog.path,
                prog.files.len()
            );
        }
    }
    let k = image::resolve_kernel(kernel_name.unwrap_or(kernel::DEFAULT_KERNEL))?;
    match image::modules::ensure_modules(&k)? {
        Some(d) => println!("modules of {}: {}", k.name, d.display()),
        None => println!("modules of {}: none known (a kernel of your own)", k.name),
    }
    Ok(())
}

/// The CI-format tests check oomlab's KCIDB and JUnit output with the
/// readers kernel CI uses (PyPI `kcidb-io`, `junitparser`). The system's
/// Python is used when it has them; else they go into a virtual
/// environment in the cache (Debian's own Python refuses `pip install`),
/// with Debian's `python3-venv` installed first when it is missing.
fn ensure_python_validators() -> Result<()> {
    let has_them = |python: &Path| {
        Command::new(python)
            .args(["-c", "import kcidb_io, junitparser"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let python = image::validators_python();
    if has_them(&python) {
        println!("kcidb-io, junitparser: present ({})", python.display());
        return Ok(());
    }
    let venv = image::cache_dir()?.join("py");
    let make_venv = || {
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !make_venv() {
        if !is_root() {
            bail!(
                "cannot make a Python virtual environment for the CI-format validators; \
                 install python3-venv first (`sudo apt-get install -y python3-venv`), then rerun"
            );
        }
        run_checked(Command::new("apt-get").arg("update"))?;
        run_checked(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "--no-install-recommends", "python3-venv"]),
        )?;
        if !make_venv() {
            bail!(
                "python3-venv installed but `python3 -m venv {}` still fails",
                venv.display()
            );
        }
    }
    let python = venv.join("bin/python3");
    run_checked(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "kcidb-io",
        "junitparser",
    ]))
    .context("install the CI-format validators (pip install kcidb-io junitparser)")?;
    if !has_them(&python) {
        bail!(
            "kcidb-io and junitparser installed in {} but cannot be imported",
            venv.display()
        );
    }
    println!("kcidb-io, junitparser: installed in {}", venv.display());
    Ok(())
}

/// A Debian package the tests or the demo need, installed from the host's
/// own archive when its binary is missing (as root; else a clear hint).
fn ensure_debian(bin: &str, package: &str, why: &str) -> Result<()> {
    if on_path(bin) {
        println!("{package}: present");
        return Ok(());
    }
    if !is_root() {
        bail!(
            "{bin} not found ({why}); install it first, e.g. \
             `sudo apt-get install -y {package}`, then rerun"
        );
    }
    // Only refresh the package lists when apt does not know the package.
    let known = Command::new("apt-cache")
        .args(["show", package])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if !known {
        run_checked(Command::new("apt-get").arg("update"))?;
    }
    run_checked(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends", package]),
    )?;
    if !on_path(bin) {
        bail!("{package} installed but {bin} still not on PATH");
    }
    println!("{package}: installed");
    Ok(())
}

fn run_checked(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

fn fetch_kernel(name: &str) -> Result<()> {
    let catalogued = kernel::catalogue()?.get(name).is_some();
    let cached = catalogued && kernel::cached_kernel_path(name)?.is_file();
    let k = image::resolve_kernel(name)?;
    if catalogued && !k.pinned {
        // The pin left the mirror: say what stands in, and what to pin.
        let rec = kernel::float_record(&k.path)?;
        println!(
            "kernel {}: FLOATED: pinned {} is gone, using {}={} {} ({}, sha256 {})",
            k.name,
            rec.replaces,
            rec.package,
            rec.version,
            k.path.display(),
            k.release,
            &k.sha256[..16]
        );
        println!(
            "  to pin it, set entry `{}` in images/kernels.yaml to:\n    package: {}\n    \
             version: {}\n    release: {}\n    sha256: {}",
            k.name, rec.package, rec.version, rec.release, rec.sha256
        );
        return Ok(());
    }
    let how = match (catalogued, cached) {
        (false, _) => "own file",
        (true, true) => "present",
        (true, false) => "fetched",
    };
    println!(
        "kernel {}: {how} {} ({}, sha256 {})",
        k.name,
        k.path.display(),
        k.release,
        &k.sha256[..16]
    );
    Ok(())
}

/// The demo, step by step: the seed's loop reproduced and judged, one
/// mitigation shown ending it, every mitigation side by side, then the
/// loop and its fix kernel by kernel.
const DEMO_RUNS: [&str; 2] = ["scenarios/seed-livelock.yaml", "scenarios/oom-group.yaml"];

/// Where the demo's matrix goes.
const DEMO_MATRIX: &str = "oomlab-runs/demo-matrix";

/// The demo's kernel comparison: the loop and its fix from 5.10 to 7.x
/// (the kernels are fetched on first use, ~15 MB each).
const DEMO_KERNELS: [&str; 4] = [
    "debian-bullseye-cloud-5.10",
    "debian-bookworm-cloud-6.1",
    "debian-trixie-cloud-6.12",
    "debian-trixie-backports-cloud-7.3",
];
const DEMO_KERNEL_MATRIX: &str = "oomlab-runs/demo-kernels";

/// The CLI's exit-code contract, in words.
fn describe_exit(code: Option<i32>) -> &'static str {
    match code {
        Some(0) => "as expected",
        Some(1) => "MISMATCH (or unstable)",
        Some(2) => "bad input",
        Some(3) => "run could not happen",
        _ => "crashed",
    }
}

fn oomlab(args: &[&str]) -> Result<Option<i32>> {
    let mut all = vec!["run", "--quiet", "--release", "-p", "oomlab", "--"];
    all.extend(args);
    println!("\n+ cargo {}", all.join(" "));
    let status = Command::new(cargo_bin())
        .args(&all)
        .status()
        .with_context(|| format!("run oomlab {}", args.join(" ")))?;
    Ok(status.code())
}

fn demo() -> Result<ExitCode> {
    let mut results = Vec::new();
    for s in DEMO_RUNS {
        results.push((format!("run {s}"), oomlab(&["run", s])?));
    }
    let mut matrix: Vec<String> = std::fs::read_dir("scenarios")
        .context("read scenarios/")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    matrix.sort();
    let _ = std::fs::remove_dir_all(DEMO_MATRIX);
    let mut args = vec!["matrix", "--out", DEMO_MATRIX];
    args.extend(matrix.iter().map(String::as_str));
    results.push(("matrix scenarios/*.yaml".to_string(), oomlab(&args)?));
    let _ = std::fs::remove_dir_all(DEMO_KERNEL_MATRIX);
    let mut args = vec!["matrix", "--out", DEMO_KERNEL_MATRIX];
    args.extend(DEMO_RUNS);
    for k in DEMO_KERNELS {
        args.extend(["--kernel", k]);
    }
    results.push((
        format!("matrix seed + oom-group on {} kernels", DEMO_KERNELS.len()),
        oomlab(&args)?,
    ));
    println!("\ndemo summary:");
    for (what, code) in &results {
        let shown = code.map_or("-".to_string(), |c| c.to_string());
        println!("  {what:<40} exit {shown}: {}", describe_exit(*code));
    }
    println!("  the reports (one file each, open them in a browser):");
    println!("    every mitigation: {DEMO_MATRIX}/report.html");
    println!("    kernel by kernel: {DEMO_KERNEL_MATRIX}/report.html");
    let worst = results
        .iter()
        .map(|(_, c)| c.unwrap_or(1))
        .max()
        .unwrap_or(0);
    Ok(exit_code(Some(worst)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_described() {
        assert_eq!(describe_exit(Some(0)), "as expected");
        assert_eq!(describe_exit(Some(3)), "run could not happen");
        assert_eq!(describe_exit(None), "crashed");
    }

    #[test]
    fn root_is_the_workspace() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
