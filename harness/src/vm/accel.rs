//! Which accelerator runs the VM. `/dev/kvm` existing proves little (on
//! PVM hosts it exists, opens, creates VMs, and then a stock kernel dies
//! with "KVM internal error"), so `auto` boots the real kernel and payload
//! under KVM once, and believes only a payload that says `ready` and `done`.
//! The answer is cached per (host kernel, QEMU, guest kernel).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::args::AccelKind;
use crate::scenario::Accel;

#[derive(Debug, Clone, Serialize)]
pub struct AccelDecision {
    pub used: AccelKind,
    pub requested: Accel,
    /// Why this accelerator, in words (shown and reported).
    pub reason: String,
    /// The KVM answer came from the per-host cache.
    pub cached: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeResult {
    pub kvm_works: bool,
    pub detail: String,
    /// Unix seconds.
    pub when: u64,
    /// What the probe found, as one of four plain answers (absent in
    /// caches written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<KvmStatus>,
}

/// What a KVM probe found, in the four cases a person acts on differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum KvmStatus {
    /// The probe booted the real kernel and payload to its end under KVM.
    Works,
    /// No `/dev/kvm`: no hardware virtualization here, or no kvm module.
    NoDevice,
    /// `/dev/kvm` exists but this user may not open it.
    NoPermission,
    /// `/dev/kvm` opens, but KVM cannot run this guest (old API, no VM,
    /// or the guest died under it, as on PVM hosts).
    Unusable(String),
}

impl KvmStatus {
    /// The answer in plain words.
    pub fn sentence(&self) -> String {
        match self {
            KvmStatus::Works => "KVM works".into(),
            KvmStatus::NoDevice => "no KVM device: /dev/kvm does not exist (no hardware \
                 virtualization on this machine, or the kvm module is not loaded)"
                .into(),
            KvmStatus::NoPermission => "no permission: /dev/kvm exists but this user cannot \
                 open it (join the `kvm` group, or run as root)"
                .into(),
            KvmStatus::Unusable(why) => format!("KVM present but unusable: {why}"),
        }
    }

    /// How opening the device failed, sorted into the answers above.
    pub fn from_open_error(dev: &Path, e: &std::io::Error) -> KvmStatus {
        match e.kind() {
            std::io::ErrorKind::NotFound => KvmStatus::NoDevice,
            std::io::ErrorKind::PermissionDenied => KvmStatus::NoPermission,
            _ => KvmStatus::Unusable(format!("cannot open {}: {e}", dev.display())),
        }
    }
}

/// Cheap checks first: is there a KVM device this user can open, with the
/// stable API, that can create a VM? Err(what is wrong) when not; Ok only
/// means "worth booting a probe", not [`KvmStatus::Works`].
pub fn kvm_device_check(dev: &Path) -> Result<(), KvmStatus> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| KvmStatus::from_open_error(dev, &e))?;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    // SAFETY: plain ioctls on a descriptor we own; no pointers passed.
    let api = unsafe { libc::ioctl(f.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if api != 12 {
        return Err(KvmStatus::Unusable(format!(
            "{}: KVM API version {api}, expected 12",
            dev.display()
        )));
    }
    // SAFETY: as above; the returned fd is closed right away.
    let vm = unsafe { libc::ioctl(f.as_raw_fd(), KVM_CREATE_VM, 0) };
    if vm < 0 {
        return Err(KvmStatus::Unusable(format!(
            "{}: KVM_CREATE_VM failed: {}",
            dev.display(),
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: vm is a descriptor the kernel just gave us.
    unsafe { libc::close(vm) };
    Ok(())
}

/// The cache key: what could change the answer.
pub fn probe_key(host_release: &str, qemu_version: &str, kernel_sha256: &str) -> String {
    format!(
        "host={host_release}|qemu={}|guest={}",
        qemu_version.lines().next().unwrap_or("").trim(),
        &kernel_sha256[..kernel_sha256.len().min(16)]
    )
}

pub fn cache_file(cache_dir: &Path) -> PathBuf {
    cache_dir.join("kvm-probe.json")
}

pub fn load_cached(file: &Path, key: &str) -> Option<ProbeResult> {
    let text = std::fs::read_to_string(file).ok()?;
    let map: BTreeMap<String, ProbeResult> = serde_json::from_str(&text).ok()?;
    map.get(key).cloned()
}

/// Write atomically: a half-written cache must never be read.
pub fn store_cached(file: &Path, key: &str, result: &ProbeResult) -> std::io::Result<()> {
    let mut map: BTreeMap<String, ProbeResult> = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    map.insert(key.to_string(), result.clone());
    crate::atomic::write_bytes(file, &serde_json::to_vec_pretty(&map)?)
}

pub fn host_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

pub fn qemu_version(qemu: &Path) -> String {
    std::process::Command::new(qemu)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Decide from a request and (for `auto`) a probe outcome. Pure, so the
/// wording of every branch is tested.
pub fn decide(requested: Accel, probe: Option<(&ProbeResult, bool)>) -> AccelDecision {
    match (requested, probe) {
        (Accel::Tcg, _) => AccelDecision {
            used: AccelKind::Tcg,
            requested,
            reason: "TCG requested".into(),
            cached: false,
        },
        (Accel::Kvm, _) => AccelDecision {
            used: AccelKind::Kvm,
            requested,
            reason: "KVM requested (not probed)".into(),
            cached: false,
        },
        (Accel::Auto, Some((p, cached))) if p.kvm_works => AccelDecision {
            used: AccelKind::Kvm,
            requested,
            reason: format!("KVM works: the probe booted the payload: {}", p.detail),
            cached,
        },
        (Accel::Auto, Some((p, cached))) => AccelDecision {
            used: AccelKind::Tcg,
            requested,
            reason: match &p.status {
                Some(s @ (KvmStatus::NoDevice | KvmStatus::NoPermission)) => {
                    format!("{}; using TCG", s.sentence())
                }
                Some(s @ KvmStatus::Unusable(_)) => {
                    format!("{}; falling back to TCG", s.sentence())
                }
                // Caches from before the status: the old wording.
                _ => format!("KVM unusable, falling back to TCG: {}", p.detail),
            },
            cached,
        },
        (Accel::Auto, None) => AccelDecision {
            used: AccelKind::Tcg,
            requested,
            reason: "KVM not probed, using TCG".into(),
            cached: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_say_why() {
        let bad = ProbeResult {
            kvm_works: false,
            detail: "KVM internal error".into(),
            when: 0,
            status: None,
        };
        let d = decide(Accel::Auto, Some((&bad, true)));
        assert_eq!(d.used, AccelKind::Tcg);
        assert!(d.cached);
        assert!(d.reason.contains("falling back to TCG: KVM internal error"));
        let good = ProbeResult {
            kvm_works: true,
            ..bad
        };
        assert_eq!(
            decide(Accel::Auto, Some((&good, false))).used,
            AccelKind::Kvm
        );
        assert_eq!(
            decide(Accel::Tcg, Some((&good, false))).used,
            AccelKind::Tcg
        );
        assert_eq!(decide(Accel::Kvm, None).used, AccelKind::Kvm);
    }

    #[test]
    fn missing_device_is_reported() {
        let e = kvm_device_check(Path::new("/nonexistent/kvm")).unwrap_err();
        assert_eq!(e, KvmStatus::NoDevice);
        // A file that is no KVM device opens, but its ioctls fail.
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = kvm_device_check(f.path()).unwrap_err();
        assert!(
            matches!(&e, KvmStatus::Unusable(d) if d.contains("API version")),
            "{e:?}"
        );
    }

    #[test]
    fn four_answers_in_plain_words() {
        let dev = Path::new("/dev/kvm");
        let err = |k| std::io::Error::from(k);
        assert_eq!(
            KvmStatus::from_open_error(dev, &err(std::io::ErrorKind::NotFound)),
            KvmStatus::NoDevice
        );
        assert_eq!(
            KvmStatus::from_open_error(dev, &err(std::io::ErrorKind::PermissionDenied)),
            KvmStatus::NoPermission
        );
        assert!(matches!(
            KvmStatus::from_open_error(dev, &std::io::Error::from_raw_os_error(libc::ENXIO)),
            KvmStatus::Unusable(_)
        ));
        let words: Vec<String> = [
            KvmStatus::Works,
            KvmStatus::NoDevice,
            KvmStatus::NoPermission,
            KvmStatus::Unusable("KVM internal error".into()),
        ]
        .iter()
        .map(KvmStatus::sentence)
        .collect();
        assert_eq!(words[0], "KVM works");
        assert!(words[1].starts_with("no KVM device"), "{}", words[1]);
        assert!(words[2].starts_with("no permission"), "{}", words[2]);
        assert_eq!(words[3], "KVM present but unusable: KVM internal error");
        // Each answer reaches the decision's reason.
        for (status, starts) in [
            (KvmStatus::NoDevice, "no KVM device"),
            (KvmStatus::NoPermission, "no permission"),
            (
                KvmStatus::Unusable("x".into()),
                "KVM present but unusable: x",
            ),
        ] {
            let p = ProbeResult {
                kvm_works: false,
                detail: String::new(),
                when: 0,
                status: Some(status),
            };
            let d = decide(Accel::Auto, Some((&p, false)));
            assert_eq!(d.used, AccelKind::Tcg);
            assert!(d.reason.starts_with(starts), "{}", d.reason);
        }
        let p = ProbeResult {
            kvm_works: true,
            detail: "payload ran to `done` in 1.0 s".into(),
            when: 0,
            status: Some(KvmStatus::Works),
        };
        assert!(decide(Accel::Auto, Some((&p, false)))
            .reason
            .starts_with("KVM works"));
        // The status survives the cache, and old caches still read.
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""status":{"kind":"works"}"#), "{json}");
        let old: ProbeResult =
            serde_json::from_str(r#"{"kvm_works":false,"detail":"d","when":1}"#).unwrap();
        assert_eq!(old.status, None);
        let u = serde_json::to_string(&KvmStatus::Unusable("x".into())).unwrap();
        assert_eq!(u, r#"{"kind":"unusable","detail":"x"}"#);
    }

    #[test]
    fn cache_round_trip_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = cache_file(dir.path());
        let k = probe_key(
            "6.1",
            "QEMU emulator version 7.2.0\nCopyright",
            "abcdef0123456789ffff",
        );
        assert_eq!(
            k,
            "host=6.1|qemu=QEMU emulator version 7.2.0|guest=abcdef0123456789"
        );
        assert_eq!(load_cached(&f, &k), None);
        let r = ProbeResult {
            kvm_works: false,
            detail: "x".into(),
            when: 1,
            status: Some(KvmStatus::NoDevice),
        };
        store_cached(&f, &k, &r).unwrap();
        assert_eq!(load_cached(&f, &k), Some(r));
        assert_eq!(load_cached(&f, "other"), None);
    }
}
