//! `oomlab`: the command line. anyhow lives here only; the library speaks
//! in typed errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use oomlab::events::kernel::KernelEvent;
use oomlab::experiment::{self, ExperimentError, Progress, RunOptions, StageDone};
use oomlab::image::ImageError;
use oomlab::matrix::{MatrixEvent, RunResult};
use oomlab::scenario::{Accel, Scenario};
use oomlab::text::{printable, printable_lines};
use oomlab::vm::Output;
use tokio::sync::watch;

/// Exit statuses shared by every subcommand: the one place they become
/// numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// 0: as expected (`run`), no loop found (`analyze`), valid (`check`).
    Success,
    /// 1: a verdict other than the expected one (`run`), a loop found
    /// (`analyze`).
    Mismatch,
    /// 2: bad input: a scenario, a kernel or a log that cannot be used.
    BadInput,
    /// 3: the run could not happen (QEMU, disk, evidence lost, a busy
    /// output folder).
    CannotRun,
    /// 128+N: interrupted by signal N (the shell's convention).
    Signal(i32),
    /// 125 (`run --bisect`): this kernel cannot be tested (no boot, an
    /// inconclusive window, a mitigation it cannot apply, a run that could
    /// not happen): `git bisect run` skips the commit.
    Untestable,
    /// 128 (`run --bisect`): the scenario itself is unusable; `git bisect
    /// run` stops instead of marking commits.
    Abort,
}

impl Exit {
    fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Mismatch => 1,
            Exit::BadInput => 2,
            Exit::CannotRun => 3,
            Exit::Untestable => 125,
            Exit::Abort => 128,
            // Signal numbers are 1..=64 on Linux; 128+N must fit a byte.
            Exit::Signal(n) => match u8::try_from(n) {
                Ok(n @ 1..=127) => 128 + n,
                _ => 3,
            },
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
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
        /// For `git bisect run`: exit 0 when the verdict is the expected
        /// one, 1 when it differs, 125 when this kernel cannot be tested
        /// (boot failure, inconclusive, n/a, a run that could not happen),
        /// 128 when the scenario itself is unusable (bisect stops).
        #[arg(long)]
        bisect: bool,
    },
    /// Diagnose OOM kills and kill/respawn loops in real logs of any kernel
    /// era: dmesg, dmesg -T, syslog, journalctl (short*, -o json), .gz
    /// files, `-` for stdin; with the logs of the supervisors that respawn
    /// what was killed (systemd, nginx, php-fpm, uWSGI, gunicorn,
    /// supervisord, PostgreSQL, Docker, containerd, kubelet), in the same
    /// files or given beside them. Exit 0: no loop, 1: loop found, 2: an
    /// input could not be read (the others are analysed).
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
        /// Also write a scenario that reproduces the incident (its workers,
        /// their memory, the respawn, a memory cgroup's limit) in a small
        /// guest on the nearest catalogue kernel: `oomlab run` it.
        #[arg(long, value_name = "OUT.yaml")]
        emit_scenario: Option<PathBuf>,
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
        /// Only shard I of N (e.g. `1/2`): the cells are dealt out
        /// deterministically; `oomlab merge` joins the shards' folders.
        #[arg(long, value_parser = oomlab::matrix::parse_shard)]
        shard: Option<(usize, usize)>,
    },
    /// Join the folders of sharded matrices (`oomlab matrix --shard I/N`)
    /// into one: the runs copied in, one summary, one table, one report,
    /// JUnit, KTAP and KCIDB over all cells. Exit codes as `matrix`.
    Merge {
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
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
            return Exit::CannotRun.into();
        }
    };
    // Current-thread runtime: QEMU is spawned from the main thread, so its
    // PR_SET_PDEATHSIG fires exactly when this process dies.
    let exit = rt.block_on(async {
        match cli.cmd {
            Cmd::Check { scenarios } => check(&scenarios),
            Cmd::Kernels { fetch, all } => kernels(fetch.as_deref(), all),
            Cmd::Merge { inputs, out } => merge(&inputs, &out),
            Cmd::Matrix {
                scenarios,
                kernels,
                jobs,
                repeat,
                out,
                accel,
                reprobe,
                shard,
            } => {
                let opts = oomlab::matrix::MatrixOptions {
                    kernels,
                    jobs: jobs.unwrap_or_else(oomlab::matrix::default_jobs),
                    repeat,
                    out,
                    accel: accel.map(AccelArg::to_accel),
                    reprobe,
                    shard,
                };
                matrix(&scenarios, opts).await
            }
            Cmd::Analyze {
                inputs,
                json,
                max_incidents,
                min_respawned_kills,
                emit_scenario,
            } => analyze(
                &inputs,
                json,
                &oomlab::analyze::AnalyzeOptions {
                    max_incidents,
                    min_respawned_kills,
                },
                emit_scenario.as_deref(),
            ),
            Cmd::Run {
                scenarios,
                json,
                out,
                accel,
                kernel,
                reprobe,
                verbose,
                bisect,
            } => {
                let opts = RunOptions {
                    accel: accel.map(AccelArg::to_accel),
                    kernel,
                    out_dir: None,
                    reprobe,
                };
                if bisect {
                    bisect_run(&scenarios, out, opts, verbose).await
                } else {
                    run(&scenarios, json, out, opts, verbose).await
                }
            }
        }
    });
    exit.into()
}

/// Write the scenario that reproduces `a` to `out`, checked the way `oomlab
/// run` will read it.
fn emit_scenario(
    a: &oomlab::analyze::Analysis,
    inputs: &[PathBuf],
    out: &Path,
) -> Result<(), String> {
    let source = inputs
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let cat = oomlab::image::kernel::catalogue().map_err(|e| e.to_string())?;
    let text = oomlab::analyze::scenario_yaml(a, &source, &cat).map_err(|e| e.to_string())?;
    Scenario::parse(out, &text).map_err(|e| format!("the scenario written is not valid: {e}"))?;
    std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(())
}

fn analyze(
    inputs: &[PathBuf],
    json: bool,
    opts: &oomlab::analyze::AnalyzeOptions,
    scenario_out: Option<&Path>,
) -> Exit {
    match oomlab::analyze::analyze_paths(inputs, opts) {
        Ok(a) => {
            if let Some(out) = scenario_out {
                match emit_scenario(&a, inputs, out) {
                    Ok(()) => eprintln!(
                        "oomlab: wrote {} (run it: oomlab run {})",
                        printable(&out.display().to_string()),
                        printable(&out.display().to_string())
                    ),
                    Err(e) => {
                        eprintln!("oomlab: cannot write a scenario: {}", printable(&e));
                        return Exit::BadInput;
                    }
                }
            }
            // like grep: every readable input analysed, each unreadable one
            // reported, exit 2 at the end
            for e in &a.unreadable {
                eprintln!("oomlab: {}: {}", printable(&e.path), printable(&e.error));
            }
            if json {
                match serde_json::to_string_pretty(&a) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("oomlab: cannot encode the analysis: {e}");
                        return Exit::BadInput;
                    }
                }
            } else {
                print!("{}", oomlab::analyze::render_human(&a));
            }
            match oomlab::analyze::exit_code(&a) {
                0 => Exit::Success,
                1 => Exit::Mismatch,
                2 => Exit::BadInput,
                other => {
                    eprintln!("oomlab: analyze gave an unknown status {other}");
                    Exit::CannotRun
                }
            }
        }
        Err(oomlab::analyze::AnalyzeError::Unreadable(errors)) => {
            for e in &errors {
                eprintln!("oomlab: {}: {}", printable(&e.path), printable(&e.error));
            }
            Exit::BadInput
        }
        Err(e) => {
            eprintln!("oomlab: {}", printable(&e.to_string()));
            Exit::BadInput
        }
    }
}

/// Load and fully validate one scenario file (read once), kernel included:
/// `kernel` (`run --kernel`) replaces the file's `vm.kernel` and is checked
/// in its place. Errors are ready to print.
fn load_checked(path: &Path, kernel: Option<&str>) -> Result<Scenario, String> {
    // Messages quote input; a 256 KiB value need not be shown whole.
    let shown = |e: &dyn std::fmt::Display| {
        printable(&oomlab::text::clip(&e.to_string(), 2000)).into_owned()
    };
    let file = Scenario::load_file(path).map_err(|e| shown(&e))?;
    let mut s = file.scenario;
    let cat = oomlab::image::kernel::catalogue().map_err(|e| shown(&e))?;
    let known: Vec<&str> = cat.kernels.iter().map(|k| k.name.as_str()).collect();
    match kernel {
        Some(k) => {
            if let Some(why) = oomlab::scenario::kernel_problem(k, &known) {
                return Err(format!("--kernel: {}", printable(&why)));
            }
            s.vm.kernel = k.to_string();
        }
        None => s
            .check_kernel(path, &file.text, &known)
            .map_err(|e| shown(&e))?,
    }
    Ok(s)
}

fn check(paths: &[PathBuf]) -> Exit {
    let mut bad = false;
    for p in paths {
        match load_checked(p, None) {
            Ok(s) => println!(
                "{}: ok ({})",
                printable(&p.display().to_string()),
                printable(&s.name)
            ),
            Err(e) => {
                eprintln!("oomlab: {e}");
                bad = true;
            }
        }
    }
    if bad {
        Exit::BadInput
    } else {
        Exit::Success
    }
}

/// `oomlab kernels`: the catalogue, one line per kernel, with what the
/// cache holds; fetching first when asked.
fn kernels(fetch: Option<&str>, all: bool) -> Exit {
    use oomlab::image::kernel::{self, CacheState};
    let cat = match kernel::catalogue() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oomlab: {e}");
            return Exit::CannotRun;
        }
    };
    let wanted: Vec<&str> = match (fetch, all) {
        (Some(n), _) if cat.get(n).is_none() => {
            eprintln!(
                "oomlab: unknown kernel `{n}`: the catalogue has {}",
                cat.names()
            );
            return Exit::BadInput;
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
                return Exit::CannotRun;
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
        Exit::CannotRun
    } else {
        Exit::Success
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
        std::process::exit(i32::from(Exit::Signal(sig).code()));
    });
    rx
}

/// Progress on stderr: every stage's end, the first kills, panics; the
/// console itself with `--verbose`. What the guest, the kernel image or the
/// scenario wrote is escaped ([`printable`]).
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
                "oomlab: kernel {} ({}{})",
                printable(&release),
                printable(&name),
                if pinned { ", pinned" } else { ", NOT pinned" }
            ),
            StageDone::Payload { path } => {
                if verbose {
                    eprintln!("oomlab: payload {}", printable(&path.display().to_string()));
                }
            }
            StageDone::Probe(d) => eprintln!(
                "oomlab: accelerator {}{}: {}",
                d.used.as_str().to_uppercase(),
                if d.cached { " (cached probe)" } else { "" },
                printable(&d.reason)
            ),
            StageDone::Image { bytes } => {
                if verbose {
                    eprintln!("oomlab: initramfs {} KiB", bytes / 1024);
                }
            }
            StageDone::Boot { boot_s } => eprintln!("oomlab: payload ready after {boot_s:.2} s"),
            StageDone::Observe(why) => {
                eprintln!("oomlab: stopping: {}", printable(&why.to_string()))
            }
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
                    eprintln!("  | {}", printable(&line));
                }
            }
            Output::Kernel(KernelEvent::Killed(k)) => {
                *kills += 1;
                if *kills == 1 || kills.is_power_of_two() {
                    eprintln!(
                        "oomlab: OOM kill #{kills}: pid {} ({})",
                        k.pid,
                        printable(&k.name)
                    );
                }
            }
            Output::Kernel(KernelEvent::Panic { reason }) => {
                eprintln!("oomlab: kernel panic: {}", printable(&reason))
            }
            // Other kernel events and telemetry are in the logs and the
            // report; the terminal shows kills and panics only.
            Output::Kernel(_) | Output::Telemetry(_) => {}
            // The experiment turns these into stage ends (Done above).
            Output::Booted { .. } | Output::Stopping(_) => {}
        },
    }
}

/// How a run that produced no report ends: what to say, and the status.
fn run_error(name: &str, e: &ExperimentError) -> Exit {
    let name = printable(name);
    match e {
        ExperimentError::Interrupted(sig) => {
            eprintln!("oomlab: interrupted by signal {sig}; QEMU stopped, temp files removed");
            Exit::Signal(*sig)
        }
        ExperimentError::LostEvidence { errors, report } => {
            if let Some(r) = report.as_ref() {
                print!("{}", oomlab::report::render_terminal(r));
            }
            eprintln!(
                "oomlab: {name}: EVIDENCE INCOMPLETE, no verdict is claimed: {}",
                printable(&errors.join("; "))
            );
            Exit::CannotRun
        }
        // The kernel file was checked before the run; one that changed
        // since is still the user's input.
        ExperimentError::Image(ImageError::NotBootImage { .. }) => {
            eprintln!("oomlab: {name}: {}", printable(&e.to_string()));
            Exit::BadInput
        }
        // QemuFailed (QEMU ended before the guest printed a line) carries
        // QEMU's own stderr: kept as lines, escaped.
        e => {
            eprintln!(
                "oomlab: {name}: cannot run: {}",
                printable_lines(&e.to_string())
            );
            Exit::CannotRun
        }
    }
}

/// `oomlab run --bisect`: one scenario, its verdict mapped onto the codes
/// `git bisect run` understands.
async fn bisect_run(
    paths: &[PathBuf],
    out: Option<PathBuf>,
    mut opts: RunOptions,
    verbose: bool,
) -> Exit {
    let [path] = paths else {
        eprintln!("oomlab: --bisect takes exactly one scenario");
        return Exit::Abort;
    };
    // A kernel that is not a boot image (the commit's build failed) is a
    // commit to skip; a broken scenario stops the bisection.
    let s = match load_checked(path, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("oomlab: {e}");
            return Exit::Abort;
        }
    };
    if s.expect.is_none() && s.expect_kernels.is_empty() {
        eprintln!("oomlab: --bisect needs the scenario's `expect:` (the verdict of a good commit)");
        return Exit::Abort;
    }
    if let Some(k) = &opts.kernel {
        if let Err(e) = load_checked(path, Some(k)) {
            eprintln!("oomlab: {e}; skipping this commit");
            return Exit::Untestable;
        }
    }
    opts.out_dir = out;
    let cancel = install_signals();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        let mut kills = 0;
        while let Some(p) = rx.recv().await {
            show(p, verbose, &mut kills);
        }
    });
    let result = experiment::run_scenario(&s, &opts, Some(tx), cancel).await;
    let _ = printer.await;
    match result {
        Ok(report) => {
            print!("{}", oomlab::report::render_terminal(&report));
            let exit = bisect_exit(report.verdict, report.expected);
            eprintln!(
                "oomlab: bisect: {} ({})",
                match exit {
                    Exit::Success => "good",
                    Exit::Mismatch => "bad",
                    _ => "skip",
                },
                report.verdict
            );
            exit
        }
        Err(ExperimentError::Interrupted(sig)) => Exit::Signal(sig),
        Err(e) => {
            eprintln!(
                "oomlab: {}: cannot run: {}; skipping this commit",
                printable(&s.name),
                printable(&e.to_string())
            );
            Exit::Untestable
        }
    }
}

/// good (0), bad (1) or skip (125) for one verdict.
fn bisect_exit(
    verdict: oomlab::verdict::Verdict,
    expected: Option<oomlab::verdict::Verdict>,
) -> Exit {
    use oomlab::verdict::Verdict;
    match verdict {
        Verdict::BootFailure | Verdict::Inconclusive => Exit::Untestable,
        Verdict::NotApplicable if expected != Some(Verdict::NotApplicable) => Exit::Untestable,
        v if Some(v) == expected => Exit::Success,
        _ => Exit::Mismatch,
    }
}

async fn run(
    paths: &[PathBuf],
    json: Option<PathBuf>,
    out: Option<PathBuf>,
    mut opts: RunOptions,
    verbose: bool,
) -> Exit {
    // Validate every file before booting anything.
    let mut scenarios = Vec::new();
    for p in paths {
        match load_checked(p, opts.kernel.as_deref()) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                eprintln!("oomlab: {e}");
                return Exit::BadInput;
            }
        }
    }
    let cancel = install_signals();
    let many = scenarios.len() > 1;
    let mut mismatch = false;
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
        eprintln!(
            "oomlab: running {} ({})",
            printable(&s.name),
            printable(&s.description)
        );
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
                        eprintln!(
                            "oomlab: cannot write {}: {e}",
                            printable(&path.display().to_string())
                        );
                        return Exit::CannotRun;
                    }
                }
                mismatch |= !report.matches;
            }
            Err(e) => return run_error(&s.name, &e),
        }
    }
    if mismatch {
        Exit::Mismatch
    } else {
        Exit::Success
    }
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

/// A matrix's table on stdout, where its report is, and its exit code.
fn show_summary(summary: &oomlab::matrix::MatrixSummary, out: &Path) -> Exit {
    print!(
        "{}",
        printable_lines(&oomlab::matrix::summary::render_terminal(summary))
    );
    println!(
        "report: {}",
        printable(&out.join("report.html").display().to_string())
    );
    match summary.exit_code() {
        0 => Exit::Success,
        1 => Exit::Mismatch,
        _ => Exit::CannotRun,
    }
}

fn merge(inputs: &[PathBuf], out: &Path) -> Exit {
    match oomlab::matrix::merge::merge(inputs, out) {
        Ok(summary) => show_summary(&summary, out),
        Err(e) => {
            eprintln!("oomlab: merge: {}", printable(&e.to_string()));
            Exit::BadInput
        }
    }
}

async fn matrix(paths: &[PathBuf], opts: oomlab::matrix::MatrixOptions) -> Exit {
    let mut scenarios = Vec::new();
    for p in paths {
        match load_checked(p, None) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                eprintln!("oomlab: {e}");
                return Exit::BadInput;
            }
        }
    }
    // Every --kernel must be usable before anything boots.
    if let Ok(cat) = oomlab::image::kernel::catalogue() {
        let known: Vec<&str> = cat.kernels.iter().map(|k| k.name.as_str()).collect();
        for k in &opts.kernels {
            if let Some(why) = oomlab::scenario::kernel_problem(k, &known) {
                eprintln!("oomlab: --kernel: {}", printable(&why));
                return Exit::BadInput;
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
        Ok(summary) => show_summary(&summary, &opts.out),
        Err(oomlab::matrix::MatrixError::Interrupted(sig)) => {
            eprintln!("oomlab: interrupted by signal {sig}; QEMU stopped, no summary written");
            Exit::Signal(sig)
        }
        Err(e) => {
            eprintln!("oomlab: matrix: {}", printable(&e.to_string()));
            Exit::CannotRun
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{bisect_exit, Exit};

    #[test]
    fn bisect_codes() {
        use oomlab::verdict::Verdict as V;
        assert_eq!(bisect_exit(V::Livelock, Some(V::Livelock)).code(), 0);
        assert_eq!(bisect_exit(V::Recovered, Some(V::Livelock)).code(), 1);
        assert_eq!(bisect_exit(V::Hang, Some(V::Livelock)).code(), 1);
        for v in [V::BootFailure, V::Inconclusive, V::NotApplicable] {
            assert_eq!(bisect_exit(v, Some(V::Livelock)).code(), 125);
        }
        assert_eq!(
            bisect_exit(V::NotApplicable, Some(V::NotApplicable)).code(),
            0
        );
        assert_eq!(Exit::Abort.code(), 128);
    }

    #[test]
    fn every_exit_status_has_one_explicit_code() {
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::Mismatch.code(), 1);
        assert_eq!(Exit::BadInput.code(), 2);
        assert_eq!(Exit::CannotRun.code(), 3);
        assert_eq!(Exit::Signal(libc::SIGINT).code(), 130);
        assert_eq!(Exit::Signal(libc::SIGTERM).code(), 143);
        assert_eq!(Exit::Signal(127).code(), 255);
        // No wrap-around: numbers no signal has are "could not run".
        for n in [0, -1, 128, 200, 256 + 2, i32::MAX, i32::MIN] {
            assert_eq!(Exit::Signal(n).code(), 3, "{n}");
        }
    }
}
