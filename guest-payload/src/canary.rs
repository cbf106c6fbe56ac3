//! The canary: proves the guest as a whole still schedules userspace while
//! the service is being killed over and over.

use oomlab_protocol::Event;

use crate::sys;
use crate::telemetry;

pub fn run(period_ms: u64) -> ! {
    sys::set_comm(c"canary");
    // -1000: the OOM killer never picks it, so a silent canary means a stuck
    // guest, not a dead canary.
    match crate::mitigate::set_own_oom_score_adj(-1000) {
        Ok(how) => telemetry::setup("oom_score_adj", true, &format!("canary {how}")),
        Err(e) => telemetry::setup("oom_score_adj", false, &format!("canary=-1000: {e}")),
    }
    // Absolute schedule: lateness does not accumulate into drift, and after a
    // stall the missed ticks are still emitted (with shrinking late_ms).
    let mut due = sys::monotonic();
    let mut seq: u64 = 0;
    loop {
        due = sys::add_ms(&due, period_ms);
        sys::sleep_until(&due);
        let now = sys::monotonic();
        seq += 1;
        telemetry::emit_at(
            sys::secs(&now),
            Event::Tick {
                seq,
                late_ms: sys::diff_ms(&now, &due),
            },
        );
    }
}
