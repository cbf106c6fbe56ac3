//! The main job, stage by stage: kernel -> payload -> probe -> image ->
//! boot -> observe -> judge -> report. The CLI, the matrix and the
//! end-to-end tests all call [`run_scenario`]; its UI hears a typed
//! [`Progress`] for the start and the end of every stage.

mod outdir;
mod probe;

pub use outdir::{claim_fresh_dir, fresh_dir, sweep_stale_scratch, OutDirLock, OUT_DIR_LOCK};
use outdir::{default_out_dir, scratch_dir, DERIVED_FILES};

use std::path::{Path, PathBuf};

use tokio::sync::{mpsc::UnboundedSender, watch};

pub use probe::{choose_accel, probe_scenario};

use crate::image::{self, ImageError, KernelImage};
use crate::probe_ssh::{self, SshKeys};
use crate::report::{self, KernelInfo, Report, Timings};
use crate::scenario::{Accel, Scenario};
use crate::verdict::{Live, RunRecord, SshAttempt, SshSetup, Verdict};
use crate::vm::accel::AccelDecision;
use crate::vm::{self, Cancel, Output, StopReason, VmConfig, VmError};

/// The stages of one run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Resolve (fetch, verify) the guest kernel.
    Kernel,
    /// Locate (or build) the static guest payload.
    Payload,
    /// Decide the accelerator (KVM probe or its cached answer).
    Probe,
    /// Write the per-run initramfs.
    Image,
    /// QEMU start to the payload's `ready`.
    Boot,
    /// The observation window.
    Observe,
    /// The verdict.
    Judge,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Kernel => "kernel",
            Stage::Payload => "payload",
            Stage::Probe => "probe",
            Stage::Image => "image",
            Stage::Boot => "boot",
            Stage::Observe => "observe",
            Stage::Judge => "judge",
        }
    }
}

/// The end of a stage, with what it produced.
#[derive(Debug, Clone)]
pub enum StageDone {
    Kernel {
        name: String,
        release: String,
        pinned: bool,
    },
    Payload {
        path: PathBuf,
    },
    Probe(AccelDecision),
    Image {
        bytes: u64,
    },
    Boot {
        boot_s: f64,
    },
    Observe(StopReason),
    Judge {
        verdict: Verdict,
        why: String,
    },
}

/// What the main job tells its UI.
#[derive(Debug, Clone)]
pub enum Progress {
    Start(Stage),
    Done(StageDone),
    /// While booting and observing: the VM runner's own events.
    Vm(Output),
}

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
    /// Another run holds the output folder: two runs never write into one.
    #[error(
        "output folder {} is in use by another oomlab run{}; wait for it to end or choose another --out",
        dir.display(),
        pid.map_or_else(String::new, |p| format!(" (pid {p})"))
    )]
    OutDirBusy { dir: PathBuf, pid: Option<u32> },
    /// QEMU ended before the guest printed a single line: the run could
    /// not happen (bad QEMU, bad flags), it is not a guest failure.
    #[error("QEMU failed before the guest printed anything ({stop}){}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    QemuFailed { stop: StopReason, stderr: String },
    /// A kept log could not be written: the evidence on disk is
    /// incomplete, so no verdict is claimed. The report (if it could be
    /// written) says so too.
    #[error("the run's evidence was not fully written ({}); no verdict is claimed", errors.join("; "))]
    LostEvidence {
        errors: Vec<String>,
        report: Box<Option<Report>>,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExperimentError {
    let what = what.into();
    move |source| ExperimentError::Io { what, source }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the scenario's `vm.accel`.
    pub accel: Option<Accel>,
    /// Overrides the scenario's `vm.kernel`.
    pub kernel: Option<String>,
    /// Where to keep console.log, telemetry.jsonl and report.json; default
    /// `oomlab-runs/<scenario>-<unix time>` under the current directory.
    pub out_dir: Option<PathBuf>,
    /// Ignore the cached KVM probe and probe again.
    pub reprobe: bool,
}

/// A cancel future from a watch channel that a signal handler fills.
pub fn cancel_on(mut rx: watch::Receiver<Option<i32>>) -> Cancel {
    Box::pin(async move {
        loop {
            if let Some(sig) = *rx.borrow_and_update() {
                return sig;
            }
            if rx.changed().await.is_err() {
                // Sender gone: nobody can cancel any more.
                std::future::pending::<()>().await;
            }
        }
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ExperimentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ExperimentError::Io {
            what: "image preparation".into(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(ExperimentError::from)
}

/// Await `work`, unless a signal comes first.
async fn interruptible<T>(
    work: impl std::future::Future<Output = Result<T, ExperimentError>>,
    cancel: watch::Receiver<Option<i32>>,
) -> Result<T, ExperimentError> {
    tokio::select! {
        // A terminal's Ctrl-C also reaches apt-get or cargo and fails the
        // work at the same moment: the signal is the story, not the failure.
        biased;
        sig = cancel_on(cancel) => Err(ExperimentError::Interrupted(sig)),
        r = work => r,
    }
}

/// What the kernel, payload and accelerator stages produced.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub qemu: PathBuf,
    /// First line of `qemu --version`, for the record.
    pub qemu_version: String,
    pub kernel: KernelImage,
    pub payload: PathBuf,
    pub decision: AccelDecision,
    pub probe_s: f64,
}

/// The stages before booting: kernel, payload, accelerator.
pub async fn prepare(
    scenario: &Scenario,
    opts: &RunOptions,
    ui: Option<&UnboundedSender<Progress>>,
    cancel: watch::Receiver<Option<i32>>,
) -> Result<Prepared, ExperimentError> {
    let say = |p: Progress| vm::runner::tell(ui, p);
    let qemu = vm::find_qemu()?;
    let kernel_spec = opts
        .kernel
        .clone()
        .unwrap_or_else(|| scenario.vm.kernel.clone());
    say(Progress::Start(Stage::Kernel));
    // Fetching a kernel or building the payload can take minutes: a signal
    // must end the wait, not queue behind it.
    let kernel = interruptible(
        blocking(move || {
            // Its PVH image is made (once) here too, off the async thread.
            image::resolve_kernel(&kernel_spec).inspect(|k| {
                image::kernel::boot_image(k);
            })
        }),
        cancel.clone(),
    )
    .await?;
    say(Progress::Done(StageDone::Kernel {
        name: kernel.name.clone(),
        release: kernel.release.clone(),
        pinned: kernel.pinned,
    }));
    say(Progress::Start(Stage::Payload));
    let payload = interruptible(blocking(image::locate_payload), cancel.clone()).await?;
    say(Progress::Done(StageDone::Payload {
        path: payload.clone(),
    }));
    say(Progress::Start(Stage::Probe));
    let requested = opts.accel.unwrap_or(scenario.vm.accel);
    let (decision, probe_s) = choose_accel(
        requested,
        &qemu,
        &kernel,
        &payload,
        opts.reprobe,
        cancel.clone(),
    )
    .await?;
    say(Progress::Done(StageDone::Probe(decision.clone())));
    let qemu_version = crate::vm::accel::qemu_version(&qemu)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    Ok(Prepared {
        qemu,
        qemu_version,
        kernel,
        payload,
        decision,
        probe_s,
    })
}

/// Run one scenario end to end and return its report (also written as
/// `report.json` in the output folder). The folder is locked for the run
/// ([`OutDirLock`]): a second run on it is refused with
/// [`ExperimentError::OutDirBusy`] before anything starts.
pub async fn run_scenario(
    scenario: &Scenario,
    opts: &RunOptions,
    ui: Option<UnboundedSender<Progress>>,
    cancel: watch::Receiver<Option<i32>>,
) -> Result<Report, ExperimentError> {
    let (out_dir, created) = match &opts.out_dir {
        Some(d) => {
            let created = !d.exists();
            std::fs::create_dir_all(d).map_err(io(format!("create {}", d.display())))?;
            (d.clone(), created)
        }
        None => {
            let base = default_out_dir(&scenario.name);
            let d = claim_fresh_dir(&base).map_err(io(format!("create {}", base.display())))?;
            (d, true)
        }
    };
    // Not removed on failure: the folder is the other run's.
    let lock = OutDirLock::acquire(&out_dir)?;
    for f in DERIVED_FILES {
        match std::fs::remove_file(out_dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(format!("remove the earlier {}/{f}", out_dir.display()))(
                    e,
                ))
            }
            _ => {}
        }
    }
    let mut booting = false;
    let result = async {
        let prep = prepare(scenario, opts, ui.as_ref(), cancel.clone()).await?;
        booting = true;
        boot_and_judge(scenario, prep, &out_dir, ui, cancel).await
    }
    .await;
    // A run that never got going leaves no empty folder behind; an
    // interrupted one keeps its raw logs (they show what happened).
    let never_ran = !booting
        || matches!(
            &result,
            Err(e) if !matches!(e, ExperimentError::Interrupted(_) | ExperimentError::LostEvidence { .. })
        );
    if created && never_ran {
        let _ = std::fs::remove_dir_all(&out_dir);
    }
    drop(lock);
    result
}

/// Boot, observe and judge, with the kernel, payload and accelerator that
/// `prep` holds; the raw logs and `report.json` go to `out_dir`.
pub async fn boot_and_judge(
    scenario: &Scenario,
    prep: Prepared,
    out_dir: &Path,
    ui: Option<UnboundedSender<Progress>>,
    cancel: watch::Receiver<Option<i32>>,
) -> Result<Report, ExperimentError> {
    let say = |p: Progress| vm::runner::tell(ui.as_ref(), p);
    let Prepared {
        qemu,
        qemu_version,
        kernel,
        payload,
        decision,
        probe_s,
    } = prep;
    // The scenario beside its logs: the folder alone says what ran (and
    // `oomlab merge` rebuilds cells from it).
    let yaml = serde_yaml::to_string(scenario).map_err(|e| ExperimentError::Io {
        what: "serialise the scenario".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    crate::atomic::write_bytes(
        &out_dir.join(crate::matrix::merge::SCENARIO_FILE),
        yaml.as_bytes(),
    )
    .map_err(io(format!("write {}/scenario.yaml", out_dir.display())))?;
    say(Progress::Start(Stage::Image));
    let scratch = scratch_dir()?;
    let ssh = &scenario.ssh;
    let keys = if ssh.enabled {
        Some(std::sync::Arc::new(
            SshKeys::generate().map_err(io("generate the run's SSH keys"))?,
        ))
    } else {
        None
    };
    let guest = {
        let (sc, k, p, dir, keys) = (
            scenario.clone(),
            kernel.clone(),
            payload.clone(),
            scratch.path().to_path_buf(),
            keys.clone(),
        );
        // A first use fetches packages and modules: a signal must end the wait.
        interruptible(
            blocking(move || image::guest::build(&sc, &k, &p, &dir, keys.as_deref())),
            cancel.clone(),
        )
        .await?
    };
    say(Progress::Done(StageDone::Image { bytes: guest.bytes }));
    let mut devices = Vec::new();
    let port = match &keys {
        Some(_) => {
            let port =
                probe_ssh::free_loopback_port().map_err(io("find a free port on 127.0.0.1"))?;
            devices.extend(vm::args::net_args(port));
            port
        }
        None => 0,
    };
    if let Some(d) = &guest.disk {
        let t = &scenario.vm.disk;
        let throttle = vm::args::Throttle {
            iops: t.iops,
            bps: u64::from(t.bps_kib) * 1024,
            burst_s: t.burst_s,
        };
        devices.extend(vm::args::disk_args("root", d, throttle));
    }
    if let Some(sw) = &guest.swap {
        devices.extend(vm::args::disk_args("swap", sw, Default::default()));
    }
    let cfg = VmConfig {
        qemu,
        accel: decision.used,
        kernel: image::kernel::boot_image(&kernel),
        initrd: guest.initrd.clone(),
        memory_mib: scenario.vm.memory_mib,
        cpus: scenario.vm.cpus,
        cmdline: vm::args::kernel_cmdline(&scenario.vm.cmdline),
        scratch: scratch.path().to_path_buf(),
        keep_logs: Some(out_dir.to_path_buf()),
        devices,
    };
    // The SSH probe starts when the guest says `ready` (dropbear listens
    // by then) and stops with the VM.
    let (booted_tx, booted_rx) = watch::channel(None::<std::time::Instant>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let prober = keys.clone().map(|k| {
        tokio::spawn(probe_ssh::probe(
            port,
            k,
            std::time::Duration::from_millis(u64::from(ssh.interval_ms)),
            std::time::Duration::from_millis(u64::from(ssh.timeout_ms)),
            booted_rx.clone(),
            stop_rx,
        ))
    });
    let (vm_tx, mut vm_rx) = tokio::sync::mpsc::unbounded_channel();
    let forward = {
        let ui = ui.clone();
        tokio::spawn(async move {
            let tell = |p| vm::runner::tell(ui.as_ref(), p);
            while let Some(o) = vm_rx.recv().await {
                match o {
                    Output::Booted { boot_s } => {
                        let _ = booted_tx.send(Some(std::time::Instant::now()));
                        tell(Progress::Done(StageDone::Boot { boot_s }));
                        tell(Progress::Start(Stage::Observe));
                    }
                    Output::Stopping(why) => {
                        // Before QEMU is stopped: a login cut by that is
                        // not the guest's failure.
                        let _ = stop_tx.send(true);
                        tell(Progress::Done(StageDone::Observe(why)))
                    }
                    o => tell(Progress::Vm(o)),
                }
            }
        })
    };
    say(Progress::Start(Stage::Boot));
    let mut record = RunRecord::for_workload(&scenario.workload);
    let out = vm::run(
        &cfg,
        scenario.limits.stop_policy(),
        &mut Live {
            record: &mut record,
            limits: &scenario.limits,
        },
        Some(vm_tx),
        cancel_on(cancel.clone()),
    )
    .await?;
    let _ = forward.await;
    if let (Some(p), Some(k)) = (prober, &keys) {
        let attempts = p.await.unwrap_or_default();
        let booted = *booted_rx.borrow();
        if let (Some(b), Some(ready)) = (booted, record.ready_t) {
            let mapped = attempts
                .into_iter()
                .map(|a| SshAttempt {
                    t: ready + a.start.saturating_duration_since(b).as_secs_f64(),
                    ok: a.result.is_ok(),
                    latency_ms: (a.latency.as_secs_f64() * 1e6).round() / 1e3,
                    error: a.result.err(),
                })
                .collect();
            record.add_ssh(
                SshSetup {
                    interval_ms: u64::from(ssh.interval_ms),
                    timeout_ms: u64::from(ssh.timeout_ms),
                    host_key: k.host_fingerprint(),
                    client_key: k.client_fingerprint(),
                    port,
                },
                mapped,
            );
        }
    }
    drop(scratch);
    if let StopReason::Interrupted(sig) = out.stop {
        return Err(ExperimentError::Interrupted(sig));
    }
    // A signal that came as QEMU was ending still means "stop": no report.
    if let Some(sig) = *cancel.borrow() {
        return Err(ExperimentError::Interrupted(sig));
    }
    if out.guest_silent && matches!(out.stop, StopReason::QemuExited(_)) {
        return Err(ExperimentError::QemuFailed {
            stop: out.stop,
            stderr: out.qemu_stderr,
        });
    }
    say(Progress::Start(Stage::Judge));
    record.apply_stop(&out.stop, &scenario.limits);
    let mut judgement = record.judge(&scenario.limits);
    judgement.evidence.notes.extend(guest.notes.iter().cloned());
    if !out.qemu_stderr.is_empty() {
        judgement
            .evidence
            .notes
            .push(format!("QEMU said: {}", out.qemu_stderr));
    }
    for e in &out.log_errors {
        judgement
            .evidence
            .notes
            .push(format!("EVIDENCE INCOMPLETE: {e}"));
    }
    say(Progress::Done(StageDone::Judge {
        verdict: judgement.verdict,
        why: judgement.why.clone(),
    }));
    let mut log_errors = out.log_errors.clone();
    let mut timeline = record.timeline.clone();
    if let Err(e) =
        crate::events::timeline::write_jsonl(&out_dir.join("timeline.jsonl"), &mut timeline)
    {
        log_errors.push(format!("writing timeline.jsonl failed: {e}"));
    }
    let expected = scenario.expected_for(&kernel.name, record.kernel_release.as_deref());
    let report = Report {
        scenario: scenario.name.clone(),
        verdict: judgement.verdict,
        expected,
        matches: expected.is_none_or(|e| e == judgement.verdict),
        why: judgement.why,
        accel: decision.used,
        accel_decision: decision,
        kernel: KernelInfo {
            name: kernel.name.clone(),
            release: record.kernel_release.clone(),
            sha256: Some(kernel.sha256.clone()),
            pinned: kernel.pinned,
        },
        evidence: judgement.evidence,
        timings: Timings {
            boot_s: out.boot_s.map(|b| (b * 1000.0).round() / 1000.0),
            wall_s: (out.wall_s * 1000.0).round() / 1000.0,
            accel_probe_s: (probe_s * 1000.0).round() / 1000.0,
            stopped_early: matches!(out.stop, StopReason::EarlyVerdict(_)),
        },
        stop: out.stop,
        out_dir: Some(out_dir.to_path_buf()),
        qemu_argv: out.argv,
        worker_uid: scenario.workload.worker_uid,
        qemu_version,
        programs: guest
            .programs
            .iter()
            .map(|p| report::ProgramInfo {
                package: p.package.clone(),
                version: p.version.clone(),
                path: p.path.clone(),
            })
            .collect(),
        evidence_errors: log_errors.clone(),
    };
    let written = report::write_json(&out_dir.join("report.json"), &report);
    if !log_errors.is_empty() {
        if let Err(e) = &written {
            log_errors.push(format!("writing report.json failed: {e}"));
        }
        return Err(ExperimentError::LostEvidence {
            errors: log_errors,
            report: Box::new(written.is_ok().then_some(report)),
        });
    }
    written.map_err(io(format!("write {}/report.json", out_dir.display())))?;
    Ok(report)
}
