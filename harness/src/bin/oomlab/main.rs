//! `oomlab`: the command line. anyhow lives here only; the library speaks
//! in typed errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use oomlab::experiment::RunOptions;
use oomlab::scenario::{Accel, Scenario};
use oomlab::text::printable;
use tokio::sync::watch;

mod analyze;
mod kernels;
mod matrix;
mod run;

use analyze::analyze;
use kernels::kernels;
use matrix::{matrix, merge};
use run::{bisect_run, run};

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
    /// panic, hang, thrashing, boot-failure, inconclusive, or n/a (a
    /// mitigation this kernel cannot apply). Exit 0 when the verdict is
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

/// Load and fully validate one scenario file (read once), kernel included:
/// `kernel` (`run --kernel`) replaces the file's `vm.kernel` and is checked
/// in its place. Errors are ready to print.
pub(crate) fn load_checked(path: &Path, kernel: Option<&str>) -> Result<Scenario, String> {
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

/// SIGINT and SIGTERM fill the watch; the run sees it, kills QEMU, cleans up
/// and returns, so every destructor runs.
pub(crate) fn install_signals() -> watch::Receiver<Option<i32>> {
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

#[cfg(test)]
mod tests {
    use super::run::bisect_exit;
    use super::Exit;

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
