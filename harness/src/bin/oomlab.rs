//! `oomlab`: the command line. anyhow lives here only; the library speaks
//! in typed errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use oomlab::events::kernel::KernelEvent;
use oomlab::experiment::{self, ExperimentError, Progress, RunOptions, StageDone};
use oomlab::scenario::{Accel, Scenario};
use oomlab::vm::Output;
use tokio::sync::watch;

/// Exit codes shared by every subcommand.
mod code {
    pub const MISMATCH: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const CANNOT_RUN: u8 = 3;
}

#[derive(Parser)]
#[command(
    name = "oomlab",
    version,
    about = "Reproduce, judge and compare Linux OOM-killer kill/respawn loops in real VMs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot a scenario in QEMU and judge it: livelock, recovered, no-oom,
    /// panic, hang, boot-failure or inconclusive. Exit 0 when the verdict is
    /// the expected one, 1 when not, 2 for bad input, 3 when the run could
    /// not happen, 128+N when interrupted by signal N.
    Run {
        /// Scenario files (YAML); several run one after another.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// Also write the report as JSON here (one scenario) or into this
        /// folder as <name>.json (several).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Keep console.log, telemetry.jsonl and report.json here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the scenario's accelerator.
        #[arg(long, value_enum)]
        accel: Option<AccelArg>,
        /// Override the scenario's kernel (catalogue name or vmlinuz path).
        #[arg(long)]
        kernel: Option<String>,
        /// Probe KVM again instead of trusting the cached answer.
        #[arg(long)]
        reprobe: bool,
        /// Print every kernel console line.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Diagnose OOM kills and kill/respawn loops in real logs of any kernel
    /// era: dmesg, dmesg -T, syslog, journalctl (short*, -o json), .gz
    /// files, `-` for stdin. Exit 0: no loop, 1: loop found, 2: unreadable.
    Analyze {
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Print the analysis as JSON instead of the human summary.
        #[arg(long)]
        json: bool,
        /// Incidents kept in detail; later ones are only counted.
        #[arg(long, default_value_t = 1000)]
        max_incidents: usize,
        /// Kills of re-forked processes in one group needed to call a loop.
        #[arg(long, default_value_t = 2)]
        min_respawned_kills: usize,
    },
    /// Validate scenario files without running them.
    Check {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// List the kernel catalogue and what of it is cached; `--fetch NAME`
    /// or `--all` fetches (kernel and config) and verifies. Exit 2 for an
    /// unknown name, 3 when a fetch failed.
    Kernels {
        /// Fetch (or verify) this catalogue kernel.
        #[arg(long, value_name = "NAME", conflicts_with = "all")]
        fetch: Option<String>,
        /// Fetch (or verify) every catalogue kernel.
        #[arg(long)]
        all: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oomlab: cannot start the async runtime: {e}");
            return ExitCode::from(code::CANNOT_RUN);
        }
    };
    // Current-thread runtime: QEMU is spawned from the main thread, so its
    // PR_SET_PDEATHSIG fires exactly when this process dies.
    rt.block_on(async {
        match cli.cmd {
            Cmd::Check { scenarios } => check(&scenarios),
            Cmd::Kernels { fetch, all } => kernels(fetch.as_deref(), all),
            Cmd::Analyze {
                inputs,
                json,
                max_incidents,
                min_respawned_kills,
            } => analyze(
                &inputs,
                json,
                &oomlab::analyze::AnalyzeOptions {
                    max_incidents,
                    min_respawned_kills,
                },
            ),
            Cmd::Run {
                scenarios,
                json,
                out,
                accel,
                kernel,
                reprobe,
                verbose,
            } => {
                let opts = RunOptions {
                    accel: accel.map(|a| match a {
                        AccelArg::Auto => Accel::Auto,
                        AccelArg::Kvm => Accel::Kvm,
                        AccelArg::Tcg => Accel::Tcg,
                    }),
                    kernel,
                    out_dir: None,
                    reprobe,
                };
                run(&scenarios, json, out, opts, verbose).await
            }
        }
    })
}

fn analyze(inputs: &[PathBuf], json: bool, opts: &oomlab::analyze::AnalyzeOptions) -> ExitCode {
    match oomlab::analyze::analyze_paths(inputs, opts) {
        Ok(a) => {
            if json {
                match serde_json::to_string_pretty(&a) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("oomlab: cannot encode the analysis: {e}");
                        return ExitCode::from(code::BAD_INPUT);
                    }
                }
            } else {
                print!("{}", oomlab::analyze::render_human(&a));
            }
            ExitCode::from(oomlab::analyze::exit_code(&a) as u8)
        }
        Err(e) => {
            eprintln!("oomlab: {e}");
            ExitCode::from(code::BAD_INPUT)
        }
    }
}

/// Load and fully validate one scenario file, kernel spec included
/// (`kernel` overrides the file's `vm.kernel`, as `run --kernel` does).
fn load_checked(path: &PathBuf, kernel: Option<&str>) -> Result<Scenario, String> {
    let mut s = Scenario::load(path).map_err(|e| e.to_string())?;
    if let Some(k) = kernel {
        s.vm.kernel = k.to_string();
    }
    let cat = oomlab::image::kernel::catalogue().map_err(|e| e.to_string())?;
    let known: Vec<&str> = cat.kernels.iter().map(|k| k.name.as_str()).collect();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    s.check_kernel(path, &text, &known)
        .map_err(|e| e.to_string())?;
    Ok(s)
}

fn check(paths: &[PathBuf]) -> ExitCode {
    let mut bad = false;
    for p in paths {
        match load_checked(p, None) {
            Ok(s) => println!("{}: ok ({})", p.display(), s.name),
            Err(e) => {
                eprintln!("oomlab: {e}");
                bad = true;
            }
        }
    }
    if bad {
        ExitCode::from(code::BAD_INPUT)
    } else {
        ExitCode::SUCCESS
    }
}

/// `oomlab kernels`: the catalogue, one line per kernel, with what the
/// cache holds; fetching first when asked.
fn kernels(fetch: Option<&str>, all: bool) -> ExitCode {
    use oomlab::image::kernel::{self, CacheState};
    let cat = match kernel::catalogue() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oomlab: {e}");
            return ExitCode::from(code::CANNOT_RUN);
        }
    };
    let wanted: Vec<&str> = match (fetch, all) {
        (Some(n), _) if cat.get(n).is_none() => {
            eprintln!(
                "oomlab: unknown kernel `{n}`: the catalogue has {}",
                cat.names()
            );
            return ExitCode::from(code::BAD_INPUT);
        }
        (Some(n), _) => vec![n],
        (None, true) => cat.kernels.iter().map(|k| k.name.as_str()).collect(),
        (None, false) => Vec::new(),
    };
    let mut failed = false;
    for name in wanted {
        let entry = cat.get(name).expect("checked above");
        eprintln!("oomlab: fetching {name} ({})", entry.origin());
        match oomlab::image::resolve_kernel(name) {
            Ok(k) if k.pinned => eprintln!(
                "oomlab: {name}: ok, {} (sha256 {})",
                k.path.display(),
                k.sha256
            ),
            Ok(k) => match kernel::float_record(&k.path) {
                Ok(rec) => eprintln!(
                    "oomlab: {name}: FLOATED to {}={} (release {}); to pin it set `package: {}`, \
                     `version: {}`, `release: {}`, `sha256: {}` in images/kernels.yaml",
                    rec.package,
                    rec.version,
                    rec.release,
                    rec.package,
                    rec.version,
                    rec.release,
                    rec.sha256
                ),
                Err(e) => eprintln!("oomlab: {name}: NOT pinned: {e}"),
            },
            Err(e) => {
                eprintln!("oomlab: {name}: {e}");
                failed = true;
                continue;
            }
        }
        if let Err(e) = kernel::ensure_config(entry) {
            eprintln!("oomlab: {name}: note: no config: {e}");
        }
    }
    println!("{:<36} {:<28} {:<22} origin", "kernel", "release", "cached");
    for k in &cat.kernels {
        let (state, config) = match kernel::cache_state(k) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("oomlab: {e}");
                return ExitCode::from(code::CANNOT_RUN);
            }
        };
        let mut cached = match state {
            CacheState::Pinned(_) => "yes".to_string(),
            CacheState::Floated(_) => "FLOATED (not the pin)".to_string(),
            CacheState::File(_, true) => "file".to_string(),
            CacheState::File(_, false) => "file MISSING".to_string(),
            CacheState::Absent => "no".to_string(),
        };
        if config.is_some() {
            cached.push_str(", config");
        }
        let name = if k.name == cat.default {
            format!("{} (default)", k.name)
        } else {
            k.name.clone()
        };
        println!("{name:<36} {:<28} {cached:<22} {}", k.release, k.origin());
    }
    if failed {
        ExitCode::from(code::CANNOT_RUN)
    } else {
        ExitCode::SUCCESS
    }
}

/// SIGINT and SIGTERM fill the watch; the run sees it, kills QEMU, cleans up
/// and returns, so every destructor runs.
fn install_signals() -> watch::Receiver<Option<i32>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        let sig = tokio::select! {
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
        };
        let _ = tx.send(Some(sig));
        // A second signal means "now": exit at once. QEMU still dies
        // (PR_SET_PDEATHSIG); the temp dir is swept by the next run.
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("oomlab: second signal, exiting now");
        std::process::exit(128 + sig);
    });
    rx
}

/// Progress on stderr: every stage's end, the first kills, panics; the
/// console itself with `--verbose`.
fn show(p: Progress, verbose: bool, kills: &mut usize) {
    match p {
        Progress::Start(stage) => {
            if verbose {
                eprintln!("oomlab: {} ...", stage.as_str());
            }
        }
        Progress::Done(done) => match done {
            StageDone::Kernel {
                name,
                release,
                pinned,
            } => eprintln!(
                "oomlab: kernel {release} ({name}{})",
                if pinned { ", pinned" } else { ", NOT pinned" }
            ),
            StageDone::Payload { path } => {
                if verbose {
                    eprintln!("oomlab: payload {}", path.display());
                }
            }
            StageDone::Probe(d) => eprintln!(
                "oomlab: accelerator {}{}: {}",
                d.used.as_str().to_uppercase(),
                if d.cached { " (cached probe)" } else { "" },
                d.reason
            ),
            StageDone::Image { bytes } => {
                if verbose {
                    eprintln!("oomlab: initramfs {} KiB", bytes / 1024);
                }
            }
            StageDone::Boot { boot_s } => eprintln!("oomlab: payload ready after {boot_s:.2} s"),
            StageDone::Observe(why) => eprintln!("oomlab: stopping: {why}"),
            StageDone::Judge { verdict, .. } => {
                if verbose {
                    eprintln!("oomlab: verdict {verdict}");
                }
            }
        },
        Progress::Vm(o) => match o {
            Output::QemuStarted { pid, accel } => {
                if verbose {
                    eprintln!("oomlab: QEMU pid {pid} under {}", accel.as_str());
                }
            }
            Output::Console(line) => {
                if verbose {
                    eprintln!("  | {line}");
                }
            }
            Output::Kernel(KernelEvent::Killed(k)) => {
                *kills += 1;
                if *kills == 1 || kills.is_power_of_two() {
                    eprintln!("oomlab: OOM kill #{kills}: pid {} ({})", k.pid, k.name);
                }
            }
            Output::Kernel(KernelEvent::Panic { reason }) => {
                eprintln!("oomlab: kernel panic: {reason}")
            }
            // Other kernel events and telemetry are in the logs and the
            // report; the terminal shows kills and panics only.
            Output::Kernel(_) | Output::Telemetry(_) => {}
            // The experiment turns these into stage ends (Done above).
            Output::Booted { .. } | Output::Stopping(_) => {}
        },
    }
}

async fn run(
    paths: &[PathBuf],
    json: Option<PathBuf>,
    out: Option<PathBuf>,
    mut opts: RunOptions,
    verbose: bool,
) -> ExitCode {
    // Validate every file before booting anything.
    let mut scenarios = Vec::new();
    for p in paths {
        match load_checked(p, opts.kernel.as_deref()) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                eprintln!("oomlab: {e}");
                return ExitCode::from(code::BAD_INPUT);
            }
        }
    }
    let cancel = install_signals();
    let many = scenarios.len() > 1;
    let mut worst = 0u8;
    let mut used_names = std::collections::HashSet::new();
    for s in &scenarios {
        // Two runs of one scenario name in one call get distinct outputs.
        let mut key = s.name.clone();
        for i in 2.. {
            if used_names.insert(key.clone()) {
                break;
            }
            key = format!("{}-{i}", s.name);
        }
        opts.out_dir = out.as_ref().map(|o| {
            if many {
                experiment::fresh_dir(&o.join(&key))
            } else {
                o.clone()
            }
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let printer = tokio::spawn(async move {
            let mut kills = 0;
            while let Some(p) = rx.recv().await {
                show(p, verbose, &mut kills);
            }
        });
        eprintln!("oomlab: running {} ({})", s.name, s.description);
        let result = experiment::run_scenario(s, &opts, Some(tx), cancel.clone()).await;
        let _ = printer.await;
        match result {
            Ok(report) => {
                print!("{}", oomlab::report::render_terminal(&report));
                if let Some(j) = &json {
                    let path = if many {
                        j.join(format!("{key}.json"))
                    } else {
                        j.clone()
                    };
                    if let Err(e) = oomlab::report::write_json(&path, &report) {
                        eprintln!("oomlab: cannot write {}: {e}", path.display());
                        return ExitCode::from(code::CANNOT_RUN);
                    }
                }
                if !report.matches {
                    worst = worst.max(code::MISMATCH);
                }
            }
            Err(ExperimentError::Interrupted(sig)) => {
                eprintln!("oomlab: interrupted by signal {sig}; QEMU stopped, temp files removed");
                return ExitCode::from(128 + sig as u8);
            }
            Err(ExperimentError::LostEvidence { errors, report }) => {
                if let Some(r) = report.as_ref() {
                    print!("{}", oomlab::report::render_terminal(r));
                }
                eprintln!(
                    "oomlab: {}: the run's evidence was not fully written: {}",
                    s.name,
                    errors.join("; ")
                );
                return ExitCode::from(code::CANNOT_RUN);
            }
            Err(e) => {
                eprintln!("oomlab: {}: cannot run: {e}", s.name);
                return ExitCode::from(code::CANNOT_RUN);
            }
        }
    }
    ExitCode::from(worst)
}
