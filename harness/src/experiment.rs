//! The main job, stage by stage: scenario -> image -> vm -> verdict ->
//! report. The CLI and the end-to-end tests both call [`run_scenario`].

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc::UnboundedSender, watch};

use crate::image::{self, ImageError, KernelImage};
use crate::report::{self, KernelInfo, Report, Timings};
use crate::scenario::{Accel, Limits, Scenario};
use crate::verdict::RunRecord;
use crate::vm::accel::{self, AccelDecision, ProbeResult};
use crate::vm::{self, AccelKind, Cancel, Output, StopReason, VmConfig, VmError};

/// What the main job tells its UI.
#[derive(Debug, Clone)]
pub enum Progress {
    Stage(String),
    Accel(AccelDecision),
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

const SCRATCH_PREFIX: &str = "oomlab-run-";

/// A per-run temp dir named after this process, so a later run can tell
/// the leftovers of a harness that was SIGKILLed (the one exit path that
/// runs no destructor) from those of a harness still running.
fn scratch_dir() -> Result<tempfile::TempDir, ExperimentError> {
    sweep_stale_scratch(&std::env::temp_dir());
    tempfile::Builder::new()
        .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
        .tempdir()
        .map_err(io("create the run's temp dir"))
}

/// Remove `oomlab-run-<pid>-*` dirs whose process is gone.
pub fn sweep_stale_scratch(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The probe's workload: one tiny worker, half a second, then power-off.
const PROBE_CONF: &str = "name=kvm-probe\nduration_ms=500\nworkers=1\nworker_mem_kib=1024\ncanary_ms=100\nsample_ms=200\n";

/// Boot the real kernel + payload under KVM and believe only `ready` and
/// `done` from the payload.
async fn probe_kvm(
    qemu: &Path,
    kernel: &KernelImage,
    payload: &Path,
    cancel: watch::Receiver<Option<i32>>,
) -> Result<ProbeResult, ExperimentError> {
    let when = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let result = |kvm_works, detail: String| ProbeResult {
        kvm_works,
        detail,
        when,
    };
    if let Err(why) = accel::kvm_device_check(Path::new("/dev/kvm")) {
        return Ok(result(false, why));
    }
    let scratch = scratch_dir()?;
    let initrd = scratch.path().join("probe.cpio");
    {
        let (initrd, payload) = (initrd.clone(), payload.to_path_buf());
        blocking(move || image::write_initramfs(&initrd, &payload, PROBE_CONF)).await?;
    }
    let cfg = VmConfig {
        qemu: qemu.to_path_buf(),
        accel: AccelKind::Kvm,
        kernel: kernel.path.clone(),
        initrd,
        memory_mib: 256,
        cpus: 1,
        cmdline: vm::args::kernel_cmdline(&[]),
        scratch: scratch.path().to_path_buf(),
        keep_logs: None,
    };
    let limits = Limits {
        duration_s: 1.0,
        settle_s: 0.5,
        hang_s: 10.0,
        // TCG reaches `ready` in ~2 s here; a KVM that needs 10 s is not
        // one to measure with (and PVM hosts only fail slowly).
        boot_s: 10.0,
        wall_s: 15.0,
        early_verdict: false,
    };
    let started = Instant::now();
    let out = vm::run(&cfg, &limits, RunRecord::new(1), None, cancel_on(cancel)).await?;
    if let StopReason::Interrupted(sig) = out.stop {
        return Err(ExperimentError::Interrupted(sig));
    }
    let took = started.elapsed().as_secs_f64();
    let r = &out.record;
    Ok(if r.ready_t.is_some() && r.done_t.is_some() {
        result(true, format!("payload ran to `done` in {took:.1} s"))
    } else {
        let qemu_said = out.qemu_stderr.lines().next().unwrap_or("");
        result(
            false,
            format!(
                "booting under KVM failed after {took:.1} s ({}, {}, {} console lines) {qemu_said}",
                out.stop,
                if r.ready_t.is_some() {
                    "payload started"
                } else {
                    "payload never started"
                },
                r.console_lines
            )
            .trim_end()
            .to_string(),
        )
    })
}

/// Decide the accelerator for `requested`, probing (and caching) for auto.
pub async fn choose_accel(
    requested: Accel,
    qemu: &Path,
    kernel: &KernelImage,
    payload: &Path,
    reprobe: bool,
    cancel: watch::Receiver<Option<i32>>,
) -> Result<(AccelDecision, f64), ExperimentError> {
    if requested != Accel::Auto {
        return Ok((accel::decide(requested, None), 0.0));
    }
    let started = Instant::now();
    let key = accel::probe_key(
        &accel::host_release(),
        &accel::qemu_version(qemu),
        &kernel.sha256,
    );
    let file = image::cache_dir().ok().map(|d| accel::cache_file(&d));
    if !reprobe {
        if let Some(hit) = file.as_deref().and_then(|f| accel::load_cached(f, &key)) {
            return Ok((accel::decide(requested, Some((&hit, true))), 0.0));
        }
    }
    let fresh = probe_kvm(qemu, kernel, payload, cancel).await?;
    if let Some(f) = &file {
        // A cache we cannot write only costs the probe next time.
        let _ = accel::store_cached(f, &key, &fresh);
    }
    Ok((
        accel::decide(requested, Some((&fresh, false))),
        started.elapsed().as_secs_f64(),
    ))
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

/// `base`, or `base-2`, `base-3`... whichever does not exist yet, so two
/// runs never write into one folder.
pub fn fresh_dir(base: &Path) -> PathBuf {
    if !base.exists() {
        return base.to_path_buf();
    }
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (2u32..)
        .map(|i| base.with_file_name(format!("{name}-{i}")))
        .find(|p| !p.exists())
        .expect("some suffix is free")
}

fn default_out_dir(name: &str) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("oomlab-runs").join(format!("{name}-{secs}"))
}

/// Run one scenario end to end and return its report (also written as
/// `report.json` in the output folder).
pub async fn run_scenario(
    scenario: &Scenario,
    opts: &RunOptions,
    ui: Option<UnboundedSender<Progress>>,
    cancel: watch::Receiver<Option<i32>>,
) -> Result<Report, ExperimentError> {
    let say = |p: Progress| vm::runner::tell(ui.as_ref(), p);
    let qemu = vm::find_qemu()?;
    let kernel_spec = opts
        .kernel
        .clone()
        .unwrap_or_else(|| scenario.vm.kernel.clone());
    say(Progress::Stage(format!("kernel {kernel_spec}")));
    // Fetching a kernel or building the payload can take minutes: a signal
    // must end the wait, not queue behind it.
    let kernel = interruptible(
        blocking(move || image::resolve_kernel(&kernel_spec)),
        cancel.clone(),
    )
    .await?;
    say(Progress::Stage("guest payload".into()));
    let payload = interruptible(blocking(image::locate_payload), cancel.clone()).await?;

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
    say(Progress::Accel(decision.clone()));

    let out_dir = match &opts.out_dir {
        Some(d) => d.clone(),
        None => fresh_dir(&default_out_dir(&scenario.name)),
    };
    let created = !out_dir.exists();
    std::fs::create_dir_all(&out_dir).map_err(io(format!("create {}", out_dir.display())))?;
    let result = boot_and_judge(
        scenario,
        Prepared {
            qemu,
            kernel,
            payload,
            decision,
            probe_s,
        },
        &out_dir,
        ui.clone(),
        cancel,
    )
    .await;
    // A run that never got going leaves no empty folder behind; an
    // interrupted one keeps its raw logs (they show what happened).
    if created && matches!(&result, Err(e) if !matches!(e, ExperimentError::Interrupted(_))) {
        let _ = std::fs::remove_dir_all(&out_dir);
    }
    result
}

/// What the image and accelerator stages produced.
struct Prepared {
    qemu: PathBuf,
    kernel: KernelImage,
    payload: PathBuf,
    decision: AccelDecision,
    probe_s: f64,
}

async fn boot_and_judge(
    scenario: &Scenario,
    prep: Prepared,
    out_dir: &Path,
    ui: Option<UnboundedSender<Progress>>,
    cancel: watch::Receiver<Option<i32>>,
) -> Result<Report, ExperimentError> {
    let say = |p: Progress| vm::runner::tell(ui.as_ref(), p);
    let Prepared {
        qemu,
        kernel,
        payload,
        decision,
        probe_s,
    } = prep;
    let scratch = scratch_dir()?;
    let initrd = scratch.path().join("initrd.cpio");
    {
        let (initrd, payload, conf) = (initrd.clone(), payload.clone(), scenario.guest_conf());
        blocking(move || image::write_initramfs(&initrd, &payload, &conf)).await?;
    }
    let cfg = VmConfig {
        qemu,
        accel: decision.used,
        kernel: kernel.path.clone(),
        initrd,
        memory_mib: scenario.vm.memory_mib,
        cpus: scenario.vm.cpus,
        cmdline: vm::args::kernel_cmdline(&scenario.vm.cmdline),
        scratch: scratch.path().to_path_buf(),
        keep_logs: Some(out_dir.to_path_buf()),
    };
    let (vm_tx, mut vm_rx) = tokio::sync::mpsc::unbounded_channel();
    let forward = {
        let ui = ui.clone();
        tokio::spawn(async move {
            while let Some(o) = vm_rx.recv().await {
                vm::runner::tell(ui.as_ref(), Progress::Vm(o));
            }
        })
    };
    say(Progress::Stage(format!(
        "boot under {}",
        decision.used.as_str()
    )));
    let out = vm::run(
        &cfg,
        &scenario.limits,
        RunRecord::for_workload(&scenario.workload),
        Some(vm_tx),
        cancel_on(cancel.clone()),
    )
    .await?;
    let _ = forward.await;
    drop(scratch);
    if let StopReason::Interrupted(sig) = out.stop {
        return Err(ExperimentError::Interrupted(sig));
    }
    // A signal that came as QEMU was ending still means "stop": no report.
    if let Some(sig) = *cancel.borrow() {
        return Err(ExperimentError::Interrupted(sig));
    }
    let mut judgement = out.record.judge(&scenario.limits);
    if !out.qemu_stderr.is_empty() {
        judgement
            .evidence
            .notes
            .push(format!("QEMU said: {}", out.qemu_stderr));
    }
    let mut timeline = out.record.timeline.clone();
    crate::events::timeline::write_jsonl(&out_dir.join("timeline.jsonl"), &mut timeline)
        .map_err(io(format!("write {}/timeline.jsonl", out_dir.display())))?;
    let report = Report {
        scenario: scenario.name.clone(),
        verdict: judgement.verdict,
        expected: scenario.expect,
        matches: scenario.expect.is_none_or(|e| e == judgement.verdict),
        why: judgement.why,
        accel: decision.used,
        accel_decision: decision,
        kernel: KernelInfo {
            name: kernel.name.clone(),
            release: out.record.kernel_release.clone(),
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
    };
    report::write_json(&out_dir.join("report.json"), &report)
        .map_err(io(format!("write {}/report.json", out_dir.display())))?;
    Ok(report)
}
