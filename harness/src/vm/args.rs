//! QEMU's command line, built by small pure functions so each flag's reason
//! sits next to it and every piece is unit-tested.

use std::ffi::OsString;
use std::path::Path;

/// The accelerator a VM actually runs under (never `auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelKind {
    Kvm,
    Tcg,
}

impl AccelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccelKind::Kvm => "kvm",
            AccelKind::Tcg => "tcg",
        }
    }
}

fn os(parts: &[&str]) -> Vec<OsString> {
    parts.iter().map(OsString::from).collect()
}

/// Nothing from the host or QEMU's defaults leaks in: no config files, no
/// default NIC/VGA/serial/monitor, no window.
pub fn base_args() -> Vec<OsString> {
    os(&["-no-user-config", "-nodefaults", "-display", "none"])
}

/// `pc` (i440fx) has the two ISA UARTs the payload needs without a module
/// and ACPI power-off, so `reboot(RB_POWER_OFF)` ends QEMU; `-no-reboot`
/// turns the guest's reboot after a panic (`panic=-1`) into QEMU's exit.
pub fn machine_args(accel: AccelKind) -> Vec<OsString> {
    let mut v = os(&["-machine", "pc", "-no-reboot", "-accel", accel.as_str()]);
    if accel == AccelKind::Kvm {
        // The host's CPU model: the guest gets what the hardware has
        // instead of an emulated baseline.
        v.extend(os(&["-cpu", "host"]));
    }
    v
}

/// RAM is the experiment's main knob: the loop needs a guest that is small
/// next to its workload.
pub fn memory_args(memory_mib: u32, cpus: u32) -> Vec<OsString> {
    os(&["-m", &format!("{memory_mib}M"), "-smp", &cpus.to_string()])
}

/// Direct kernel boot: no firmware menu, no disk, the initramfs is the root.
pub fn kernel_args(kernel: &Path, initrd: &Path, cmdline: &str) -> Vec<OsString> {
    vec![
        "-kernel".into(),
        kernel.into(),
        "-initrd".into(),
        initrd.into(),
        "-append".into(),
        cmdline.into(),
    ]
}

/// ttyS0 = kernel console on QEMU's stdout; ttyS1 = telemetry on a unix
/// socket the harness listens on. Two streams, so OOM storms on the console
/// can never garble the payload's JSON, and vice versa.
pub fn serial_args(telemetry_socket: &Path) -> Vec<OsString> {
    let mut sock = OsString::from("socket,id=telemetry,path=");
    sock.push(telemetry_socket);
    vec![
        "-chardev".into(),
        // signal=off: QEMU must not treat bytes as Ctrl-C; the harness owns
        // signals and kills QEMU itself.
        "stdio,id=console,signal=off".into(),
        "-serial".into(),
        "chardev:console".into(),
        "-chardev".into(),
        sock,
        "-serial".into(),
        "chardev:telemetry".into(),
    ]
}

/// A virtio NIC on QEMU's user network: `restrict=on` isolates the guest
/// (no traffic leaves it), and the one way in is a forward from
/// 127.0.0.1:`host_port` (never another address) to the guest's port 22.
pub fn net_args(host_port: u16) -> Vec<OsString> {
    os(&[
        "-netdev",
        &format!("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{host_port}-:22"),
        "-device",
        "virtio-net-pci,netdev=net0",
    ])
}

/// QEMU's I/O throttling of a disk: operations and bytes per second, and
/// a burst allowance at 20x the rate for `burst_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    pub iops: u32,
    pub bps: u64,
    pub burst_s: u32,
}

/// A raw image as a virtio disk (`vda`, `vdb`... in the order given).
/// Writes go to the image itself: it lives in the run's scratch folder.
pub fn disk_args(id: &str, image: &Path, throttle: Throttle) -> Vec<OsString> {
    let mut drive = OsString::from("file=");
    drive.push(image);
    drive.push(format!(",if=none,id={id},format=raw,cache=writeback"));
    let Throttle { iops, bps, burst_s } = throttle;
    if iops > 0 {
        drive.push(format!(",throttling.iops-total={iops}"));
        if burst_s > 0 {
            drive.push(format!(
                ",throttling.iops-total-max={},throttling.iops-total-max-length={burst_s}",
                u64::from(iops) * 20
            ));
        }
    }
    if bps > 0 {
        drive.push(format!(",throttling.bps-total={bps}"));
        if burst_s > 0 {
            drive.push(format!(
                ",throttling.bps-total-max={},throttling.bps-total-max-length={burst_s}",
                bps * 20
            ));
        }
    }
    vec![
        "-drive".into(),
        drive,
        "-device".into(),
        format!("virtio-blk-pci,drive={id}").into(),
    ]
}

/// The guest kernel's command line.
pub fn kernel_cmdline(extra: &[String]) -> String {
    let mut words = vec![
        // Kernel messages on the first UART, which is QEMU's stdout.
        "console=ttyS0",
        // A quiet boot: every boot message is a trip through an emulated
        // UART. The payload raises the console to level 7 (the OOM task
        // table is KERN_INFO: the evidence) before its workload starts;
        // `vm.cmdline: [loglevel=7]` shows the whole boot again.
        "loglevel=4",
        // printk stamps share CLOCK_MONOTONIC with the payload's telemetry.
        "printk.time=1",
        // Reboot at once on panic; with -no-reboot QEMU exits instead of
        // sitting on a dead guest until the wall limit.
        "panic=-1",
        // Speculation mitigations cost a lot under TCG and measure nothing
        // this experiment is about.
        "mitigations=off",
        // No initramfs unpacking surprises: the payload is /init.
        "rdinit=/init",
        // The crypto self-tests run at every boot (0.3 s of TCG guest
        // time on 6.1) and test nothing this experiment uses.
        "cryptomgr.notests",
        // The IO-APIC timer check waits on ticks; QEMU's timer works.
        "no_timer_check",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    words.extend(extra.iter().cloned());
    words.join(" ")
}

/// Everything after the QEMU binary, in order.
pub fn qemu_args(
    accel: AccelKind,
    memory_mib: u32,
    cpus: u32,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    telemetry_socket: &Path,
) -> Vec<OsString> {
    let mut v = base_args();
    v.extend(machine_args(accel));
    v.extend(memory_args(memory_mib, cpus));
    v.extend(kernel_args(kernel, initrd, cmdline));
    v.extend(serial_args(telemetry_socket));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[OsString]) -> String {
        v.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn tcg_has_no_cpu_host_and_kvm_has() {
        assert_eq!(
            s(&machine_args(AccelKind::Tcg)),
            "-machine pc -no-reboot -accel tcg"
        );
        assert_eq!(
            s(&machine_args(AccelKind::Kvm)),
            "-machine pc -no-reboot -accel kvm -cpu host"
        );
    }

    #[test]
    fn memory_and_cpus() {
        assert_eq!(s(&memory_args(256, 1)), "-m 256M -smp 1");
    }

    #[test]
    fn serial_ports_console_then_telemetry() {
        let a = s(&serial_args(Path::new("/run/x/telemetry.sock")));
        assert_eq!(
            a,
            "-chardev stdio,id=console,signal=off -serial chardev:console \
             -chardev socket,id=telemetry,path=/run/x/telemetry.sock -serial chardev:telemetry"
        );
        // ttyS0 must be the console: the first -serial is ttyS0.
        assert!(a.find("chardev:console").unwrap() < a.find("chardev:telemetry").unwrap());
    }

    #[test]
    fn cmdline_has_console_panic_and_extras_last() {
        let c = kernel_cmdline(&["vm.overcommit_memory=1".into()]);
        assert!(c.starts_with("console=ttyS0 "));
        assert!(c.contains(" panic=-1 "));
        assert!(c.ends_with(" vm.overcommit_memory=1"));
        // A quiet boot; a scenario's own loglevel comes later and wins.
        assert!(c.contains(" loglevel=4 "));
        let loud = kernel_cmdline(&["loglevel=7".into()]);
        assert!(loud.find("loglevel=4").unwrap() < loud.find("loglevel=7").unwrap());
    }

    #[test]
    fn network_is_restricted_and_forwarded_from_loopback_only() {
        let a = s(&net_args(40022));
        assert_eq!(
            a,
            "-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22 -device virtio-net-pci,netdev=net0"
        );
    }

    #[test]
    fn disks_with_and_without_throttling() {
        assert_eq!(
            s(&disk_args("d0", Path::new("/s/root.ext4"), Throttle::default())),
            "-drive file=/s/root.ext4,if=none,id=d0,format=raw,cache=writeback -device virtio-blk-pci,drive=d0"
        );
        let t = Throttle {
            iops: 100,
            bps: 4 << 20,
            burst_s: 2,
        };
        let a = s(&disk_args("d0", Path::new("r"), t));
        assert!(a.contains(",throttling.iops-total=100,throttling.iops-total-max=2000,throttling.iops-total-max-length=2"), "{a}");
        assert!(a.contains(",throttling.bps-total=4194304,"), "{a}");
    }

    #[test]
    fn full_line_is_stable() {
        let a = qemu_args(
            AccelKind::Tcg,
            256,
            1,
            Path::new("k/vmlinuz"),
            Path::new("r/initrd.cpio"),
            "console=ttyS0",
            Path::new("r/t.sock"),
        );
        insta::assert_snapshot!(s(&a), @"-no-user-config -nodefaults -display none -machine pc -no-reboot -accel tcg -m 256M -smp 1 -kernel k/vmlinuz -initrd r/initrd.cpio -append console=ttyS0 -chardev stdio,id=console,signal=off -serial chardev:console -chardev socket,id=telemetry,path=r/t.sock -serial chardev:telemetry");
    }
}
