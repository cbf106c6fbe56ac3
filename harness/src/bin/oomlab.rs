//! `oomlab`: the command line. anyhow lives here only; the library speaks
//! in typed errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use oomlab::events::kernel::KernelEvent;
use oomlab::experiment::{self, ExperimentError, Progress, RunOptions, StageDone};
use oomlab::matrix::{MatrixEvent, RunResult};
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

impl AccelArg {
    fn to_accel(self) -> Accel {
        match self {
            AccelArg::Auto => Accel::Auto,
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        }
    }
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
    /// Every scenario on every kernel, side by side: verdicts across
    /// repeats (unstable cells marked), what each mitigation cost, and one
    /// HTML report with a timeline per run. Exit 0 when every cell is
    /// stable and as expected, 1 when not, 2 for bad input, 3 when a run
    /// could not happen, 128+N when interrupted.
    Matrix {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// Run every scenario on this kernel (repeatable; default: each
        /// scenario's own).
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        /// Guests at once (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Runs per cell; a cell whose verdicts differ is unstable.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Folder for the runs and the summaries (summary.json,
        /// summary.md, report.html).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum)]
        accel: Option<AccelArg>,
        /// Probe KVM again instead of trusting the cached answer.
        #[arg(long)]
        reprobe: bool,
    },
    /// Validate scenario files without running them.
    Check {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
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
            Cmd::Matrix {
                scenarios,
                kernels,
                jobs,
                repeat,
                out,
                accel,
                reprobe,
            } => {
                let opts = oomlab::matrix::MatrixOptions {
                    kernels,
                    jobs: jobs.unwrap_or_else(oomlab::matrix::default_jobs),
                    repeat,
                    out,
                    accel: accel.map(AccelArg::to_accel),
                    reprobe,
                };
                matrix(&scenarios, opts).await
            }
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
                    accel: accel.map(AccelArg::to_accel),
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

/// Progress of a matrix: a bar on a terminal, plain lines otherwise.
struct MatrixUi {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
}

impl MatrixUi {
    fn say(&self, line: String) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn show(&mut self, e: MatrixEvent) {
        match e {
            MatrixEvent::Planned { runs, cells } => {
                self.total = runs;
                if let Some(b) = &self.bar {
                    b.set_length(runs as u64);
                }
                self.say(format!("oomlab: matrix of {cells} cell(s), {runs} run(s)"));
            }
            MatrixEvent::Prepared {
                kernel,
                release,
                accel,
            } => self.say(format!(
                "oomlab: kernel {} ready ({}), {}",
                kernel,
                release,
                accel.to_uppercase()
            )),
            MatrixEvent::Started {
                scenario,
                kernel,
                repeat,
                ..
            } => {
                if let Some(b) = &self.bar {
                    b.set_message(format!("{scenario} on {kernel} #{repeat}"));
                }
            }
            MatrixEvent::Finished { index, outcome } => {
                self.done += 1;
                if let Some(b) = &self.bar {
                    b.set_position(self.done as u64);
                }
                let what = match outcome {
                    RunResult::Judged(r) => format!(
                        "{} on {}: {}{}",
                        r.scenario,
                        r.kernel.name,
                        r.verdict.as_str().to_uppercase(),
                        r.evidence
                            .kill_rate_per_s
                            .map_or(String::new(), |k| format!(" ({k:.1} kills/s)"))
                    ),
                    RunResult::Failed(e) => format!("run {index}: could not run: {e}"),
                };
                self.say(format!("[{}/{}] {what}", self.done, self.total));
            }
        }
    }
}

async fn matrix(paths: &[PathBuf], opts: oomlab::matrix::MatrixOptions) -> ExitCode {
    let mut scenarios = Vec::new();
    for p in paths {
        // Each --kernel is checked against the first file (the check is
        // the same for every file); the files keep their own kernel.
        let checks = std::iter::once(None).chain(opts.kernels.iter().map(|k| Some(k.as_str())));
        for kernel in checks {
            if let Err(e) = load_checked(p, kernel) {
                eprintln!("oomlab: {e}");
                return ExitCode::from(code::BAD_INPUT);
            }
        }
        match load_checked(p, None) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                eprintln!("oomlab: {e}");
                return ExitCode::from(code::BAD_INPUT);
            }
        }
    }
    let cancel = install_signals();
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        let mut ui = MatrixUi {
            bar,
            total: 0,
            done: 0,
        };
        while let Some(e) = rx.recv().await {
            ui.show(e);
        }
        if let Some(b) = ui.bar {
            b.finish_and_clear();
        }
    });
    let result = oomlab::matrix::run_matrix(&scenarios, &opts, Some(tx), cancel).await;
    let _ = printer.await;
    match result {
        Ok(summary) => {
            print!("{}", oomlab::matrix::summary::render_terminal(&summary));
            println!("report: {}", opts.out.join("report.html").display());
            ExitCode::from(summary.exit_code())
        }
        Err(oomlab::matrix::MatrixError::Interrupted(sig)) => {
            eprintln!("oomlab: interrupted by signal {sig}; QEMU stopped, no summary written");
            ExitCode::from(128 + sig as u8)
        }
        Err(e) => {
            eprintln!("oomlab: matrix: {e}");
            ExitCode::from(code::CANNOT_RUN)
        }
    }
}
