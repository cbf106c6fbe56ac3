//! The accelerator stage: `auto` boots the real kernel and payload under KVM
//! once and believes only a payload that says `ready` and `done`; the
//! answer is cached per (host kernel, QEMU, guest kernel).

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::outdir::scratch_dir;
use super::{blocking, cancel_on, ExperimentError};
use crate::image::{self, KernelImage};
use crate::scenario::{Accel, Limits, Scenario, VmSpec, Workload};
use crate::verdict::{Live, RunRecord};
use crate::vm::accel::{self, AccelDecision, KvmStatus, ProbeResult};
use crate::vm::{self, AccelKind, StopReason, VmConfig};

/// The probe's guest: one tiny worker, half a second, then power-off.
pub fn probe_scenario() -> Scenario {
    Scenario {
        name: "kvm-probe".into(),
        description: "does KVM run the payload to its end?".into(),
        expect: None,
        expect_kernels: Default::default(),
        vm: VmSpec {
            memory_mib: 256,
            cpus: 1,
            accel: Accel::Kvm,
            ..VmSpec::default()
        },
        limits: Limits {
            duration_s: 0.5,
            settle_s: 0.25,
            hang_s: 10.0,
            // TCG reaches `ready` in ~2 s here; a KVM that needs 10 s is not
            // one to measure with (and PVM hosts only fail slowly).
            boot_s: 10.0,
            wall_s: 15.0,
            early_verdict: false,
            ..Limits::default()
        },
        workload: Workload {
            workers: 1,
            worker_mem_mib: 1,
            canary_ms: 100,
            sample_ms: 200,
            ..Workload::default()
        },
        mitigations: Vec::new(),
        ssh: Default::default(),
    }
}

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
    let result = |status: KvmStatus, detail: String| ProbeResult {
        kvm_works: status == KvmStatus::Works,
        detail,
        when,
        status: Some(status),
    };
    if let Err(status) = accel::kvm_device_check(Path::new("/dev/kvm")) {
        return Ok(result(status.clone(), status.sentence()));
    }
    let sc = probe_scenario();
    let scratch = scratch_dir()?;
    let initrd = scratch.path().join("probe.cpio");
    {
        let (initrd, payload, conf) = (initrd.clone(), payload.to_path_buf(), sc.guest_conf());
        blocking(move || image::write_initramfs(&initrd, &payload, &conf.render(), &[])).await?;
    }
    let cfg = VmConfig {
        qemu: qemu.to_path_buf(),
        accel: AccelKind::Kvm,
        kernel: image::kernel::boot_image(kernel),
        initrd,
        memory_mib: sc.vm.memory_mib,
        cpus: sc.vm.cpus,
        cmdline: vm::args::kernel_cmdline(&[]),
        scratch: scratch.path().to_path_buf(),
        keep_logs: None,
        devices: Vec::new(),
    };
    let started = Instant::now();
    let mut record = RunRecord::for_workload(&sc.workload);
    let out = vm::run(
        &cfg,
        sc.limits.stop_policy(),
        &mut Live {
            record: &mut record,
            limits: &sc.limits,
        },
        None,
        cancel_on(cancel),
    )
    .await?;
    if let StopReason::Interrupted(sig) = out.stop {
        return Err(ExperimentError::Interrupted(sig));
    }
    let took = started.elapsed().as_secs_f64();
    Ok(if record.ready_t.is_some() && record.done_t.is_some() {
        result(
            KvmStatus::Works,
            format!("payload ran to `done` in {took:.1} s"),
        )
    } else {
        let qemu_said = out.qemu_stderr.lines().next().unwrap_or("");
        let detail = format!(
            "booting under KVM failed after {took:.1} s ({}, {}, {} console lines) {qemu_said}",
            out.stop,
            if record.ready_t.is_some() {
                "payload started"
            } else {
                "payload never started"
            },
            record.console_lines
        )
        .trim_end()
        .to_string();
        result(KvmStatus::Unusable(detail.clone()), detail)
    })
}

/// Decide the accelerator for `requested`, probing (and caching) for auto.
/// Returns the decision and the seconds the probe took (0 when cached).
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
