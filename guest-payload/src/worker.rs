//! A worker: allocates its memory like an nginx worker under load and keeps
//! it resident by touching every page.

use oomlab_protocol::conf::GuestConf as Scenario;

use crate::mitigate::{self, Plan};

use crate::sys;

const PAGE: usize = 4096;

/// Writes one byte per page so every page is (and stays) resident.
fn touch(ptr: *mut u8, len: usize, val: u8) {
    let mut off = 0;
    while off < len {
        // SAFETY: ptr..ptr+len is our own RW anonymous mapping.
        unsafe { ptr.add(off).write_volatile(val) };
        off += PAGE;
    }
}

/// `report_ok`: only the first worker reports a successful setup, so a
/// respawn loop does not flood the telemetry line with copies.
/// `master`: the pid of the process that forked this worker.
pub fn run(sc: &Scenario, plan: &Plan, report_ok: bool, master: i32) -> ! {
    sys::set_comm(c"nginx");
    if sc.worker_die_with_master == Some(true) {
        // SAFETY: plain prctl/getppid on ourselves.
        let res = if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        };
        // The master may have died before the prctl: then go now.
        // SAFETY: as above.
        if res.is_ok() && unsafe { libc::getppid() } != master {
            // SAFETY: _exit skips atexit handlers inherited from the parent.
            unsafe { libc::_exit(0) };
        }
        if res.is_err() || report_ok {
            crate::telemetry::setup_step(
                "worker_die_with_master",
                "PR_SET_PDEATHSIG SIGKILL",
                &res,
            );
        }
    }
    if let Some(adj) = plan.worker_adj {
        let res = mitigate::set_own_oom_score_adj(adj);
        if res.is_err() || report_ok {
            let detail = match &res {
                Ok(how) => format!("worker {how}"),
                Err(_) => format!("worker={adj}"),
            };
            mitigate::report("oom_score_adj", &detail, &res.map(|_| ()));
        }
    }
    // After the oom_score_adj write: lowering it needs the privilege the
    // worker is about to drop.
    if let Some(uid) = sc.worker_uid {
        let res = sys::drop_to_uid(uid);
        if res.is_err() || report_ok {
            crate::telemetry::setup_step(
                "worker_uid",
                &format!("worker uid={uid} gid={uid}"),
                &res,
            );
        }
    }
    let total = usize::try_from(sc.worker_mem_kib.saturating_mul(1024)).unwrap_or(usize::MAX);
    let step = match usize::try_from(sc.worker_step_kib.saturating_mul(1024)) {
        Ok(0) | Err(_) => total,
        Ok(s) => s.min(total),
    };
    // Separate mappings per step, so commit charge (overcommit=2) grows with
    // the allocation like a heap does.
    let mut chunks: Vec<(*mut u8, usize)> = Vec::with_capacity(total.div_ceil(step.max(1)));
    let mut have = 0;
    while have < total {
        let len = step.min(total - have);
        // SAFETY: fresh private anonymous mapping, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            // overcommit=2 refuses the mapping: the worker dies, the master
            // re-forks it (the "respawn storm"). Silent: the master's `exit`
            // event with status 1 says it all.
            // SAFETY: _exit skips atexit handlers inherited from the parent.
            unsafe { libc::_exit(1) };
        }
        let p = p.cast::<u8>();
        touch(p, len, 1);
        chunks.push((p, len));
        have += len;
        if have < total && sc.worker_step_ms > 0 {
            sys::sleep_ms(sc.worker_step_ms);
        }
    }
    let mut pass: u8 = 2;
    loop {
        for &(p, len) in &chunks {
            touch(p, len, pass);
        }
        pass = pass.wrapping_add(1);
        if sc.touch_ms > 0 {
            sys::sleep_ms(sc.touch_ms);
        }
    }
}
