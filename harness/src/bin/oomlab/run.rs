//! `oomlab run` (and `--bisect`): one scenario after another, progress on
//! stderr, the report on stdout.

use std::path::PathBuf;

use oomlab::events::kernel::KernelEvent;
use oomlab::experiment::{self, ExperimentError, Progress, RunOptions, StageDone};
use oomlab::image::ImageError;
use oomlab::text::{printable, printable_lines};
use oomlab::vm::Output;

use super::{install_signals, load_checked, Exit};

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
pub(super) async fn bisect_run(
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
pub(super) fn bisect_exit(
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

pub(super) async fn run(
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
