//! The payload must run on 2.6.32 (CentOS 6's kernel): here it runs its
//! self-test under a seccomp filter that answers ENOSYS to every system
//! call added after 2.6.32, as that kernel would. A payload that starts to
//! need one (`getrandom`, `statx`, `clone3`, `prlimit64`...) fails here, in
//! CI, without that kernel.
//!
//! The cut-off: on x86_64, 2.6.32's last system call is 298
//! (`perf_event_open`); `recvmmsg` (299) came in 2.6.33, `fanotify_init`
//! (300) and `prlimit64` (302) in 2.6.36. So every number from 299 up gets
//! ENOSYS, and so does every call of another ABI (i386, x32).

mod common;
use common::selftest;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// First x86_64 system call number that 2.6.32 does not have.
const FIRST_AFTER_2_6_32: u32 = 299;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// BPF: arch != x86_64 -> ENOSYS; nr >= 299 -> ENOSYS; else allow.
fn filter() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        // seccomp_data.arch (offset 4)
        ins(LD_W_ABS, 0, 0, 4),
        ins(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        ins(RET_K, 0, 0, enosys),
        // seccomp_data.nr (offset 0); x32 calls have bit 30 set: >= 299 too.
        ins(LD_W_ABS, 0, 0, 0),
        ins(JGE_K, 0, 1, FIRST_AFTER_2_6_32),
        ins(RET_K, 0, 0, enosys),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// `cmd` runs under the 2.6.32 filter (installed between fork and exec).
fn as_on_2_6_32(cmd: &mut Command) -> &mut Command {
    let prog = filter();
    // SAFETY: only prctl calls between fork and exec, on memory prepared
    // before the fork (`prog` is moved into the closure).
    unsafe {
        cmd.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Runs the self-test (workers growing in steps, sampling, a canary) and
/// returns its telemetry lines.
fn run(payload: &Path, filtered: bool) -> (bool, Vec<String>) {
    let conf = "name=old-syscalls\nduration_ms=1200\nworkers=2\nworker_mem_kib=1024\n\
                worker_step_kib=256\nworker_step_ms=10\ncanary_ms=50\nsample_ms=200\n\
                mitigation=oom_score_adj master=1000 workers=0\n";
    let tag = format!("oldsys-{filtered}");
    let tweak = |cmd: &mut Command| {
        if filtered {
            as_on_2_6_32(cmd);
        }
    };
    selftest(payload, &tag, conf, tweak, |_, _| {})
}

fn check_run(what: &str, ok: bool, lines: &[String]) {
    let all = lines.join("\n");
    assert!(
        ok,
        "{what}: the payload failed under the 2.6.32 filter:\n{all}"
    );
    let has = |ev: &str| {
        lines
            .iter()
            .any(|l| l.contains(&format!("\"ev\":\"{ev}\"")))
    };
    assert!(has("ready") && has("done"), "{what}:\n{all}");
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("\"ev\":\"tick\""))
            .count()
            >= 5,
        "{what}: the canary did not tick:\n{all}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"role\":\"worker\"")),
        "{what}: no worker:\n{all}"
    );
    // ENOSYS is "Function not implemented" (os error 38): no step of the
    // payload may have hit it.
    for l in lines {
        assert!(!l.contains("os error 38"), "{what}: {l}");
    }
}

/// The payload of this build (host target).
#[test]
fn payload_selftest_runs_with_2_6_32_syscalls_only() {
    let payload = PathBuf::from(env!("CARGO_BIN_EXE_guest-payload"));
    let (ok, lines) = run(&payload, true);
    check_run("host-target payload", ok, &lines);
}

/// The static payload that really goes into the guest, when it is built
/// (`cargo xtask build-payload`); said loudly when it is not.
#[test]
fn static_guest_payload_runs_with_2_6_32_syscalls_only() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let candidates = [
        target.join("x86_64-unknown-linux-musl/release/guest-payload"),
        target.join("x86_64-unknown-linux-gnu/release/guest-payload"),
    ];
    let Some(p) = candidates.iter().find(|p| p.is_file()) else {
        eprintln!(
            "SKIPPED static_guest_payload_runs_with_2_6_32_syscalls_only: no static payload \
             built under {} (cargo xtask build-payload); only the host-target build was checked",
            target.display()
        );
        return;
    };
    let (ok, lines) = run(p, true);
    check_run(&p.display().to_string(), ok, &lines);
}

/// The negative control: a child that needs getrandom (318, Linux 3.17)
/// fails under the filter, and works without it. So the filter is really
/// in place and a payload that needed such a call would fail above.
#[test]
fn getrandom_child_fails_under_the_filter() {
    if std::env::var_os("OOMLAB_GETRANDOM_CHILD").is_some() {
        let mut buf = [0u8; 8];
        // SAFETY: getrandom into our own buffer.
        let r = unsafe { libc::syscall(libc::SYS_getrandom, buf.as_mut_ptr(), buf.len(), 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            eprintln!("getrandom failed: {e}");
            std::process::exit(if e.raw_os_error() == Some(libc::ENOSYS) {
                38
            } else {
                1
            });
        }
        std::process::exit(0);
    }
    let me = std::env::current_exe().unwrap();
    let run = |filtered: bool| {
        let mut cmd = Command::new(&me);
        cmd.args([
            "--exact",
            "getrandom_child_fails_under_the_filter",
            "--test-threads=1",
        ])
        .env("OOMLAB_GETRANDOM_CHILD", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if filtered {
            as_on_2_6_32(&mut cmd);
        }
        cmd.status().unwrap().code()
    };
    assert_eq!(
        run(false),
        Some(0),
        "getrandom should work without the filter"
    );
    assert_eq!(
        run(true),
        Some(38),
        "getrandom must get ENOSYS under the filter"
    );
}
