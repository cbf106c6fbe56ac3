//! `worker_die_with_master`: when the master dies, its workers get SIGKILL
//! (PR_SET_PDEATHSIG) instead of living on as orphans.

mod common;
use common::{field, selftest, PAYLOAD};

fn run(die_with_master: bool) -> Vec<String> {
    let conf = format!(
        "name=dwm\nduration_ms=2500\nworkers=2\nworker_mem_kib=512\ncanary_ms=50\n\
         worker_die_with_master={}\n",
        u8::from(die_with_master)
    );
    let mut master = None;
    let mut workers = 0;
    let tag = format!("dwm-{die_with_master}");
    let (ok, lines) = selftest(
        PAYLOAD.as_ref(),
        &tag,
        &conf,
        |_| {},
        |line, _| {
            if !line.contains("\"ev\":\"spawn\"") {
                return;
            }
            let pid: i32 = field(line, "pid").unwrap().parse().unwrap();
            if line.contains("\"role\":\"master\"") {
                master = Some(pid);
            } else if line.contains("\"role\":\"worker\"") {
                workers += 1;
                // The master's own spawn line is PID 1's and can come after
                // its workers' (lines from several processes): a worker's
                // ppid is its master.
                if master.is_none() {
                    master = field(line, "ppid").and_then(|p| p.parse().ok());
                }
                if workers == 2 {
                    // Give the second worker a moment to set its death signal.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    // SAFETY: plain kill of the master the payload reported.
                    unsafe { libc::kill(master.expect("master first"), libc::SIGKILL) };
                }
            }
        },
    );
    assert!(ok, "{}", lines.join("\n"));
    lines
}

#[test]
fn workers_die_with_their_master() {
    let lines = run(true);
    let all = lines.join("\n");
    let orphan_kills = lines
        .iter()
        .filter(|l| l.contains("\"role\":\"orphan\"") && l.contains("\"signal\":9"))
        .count();
    assert_eq!(orphan_kills, 2, "{all}");
    assert!(
        all.contains("\"what\":\"worker_die_with_master\",\"ok\":true"),
        "{all}"
    );
    // Without the option the orphans live on until the run's end.
    let lines = run(false);
    let early: Vec<&String> = lines
        .iter()
        .take_while(|l| !l.contains("\"ev\":\"done\""))
        .filter(|l| l.contains("\"role\":\"orphan\""))
        .collect();
    // They are only killed by the self-test's own clean-up at the end, after
    // the window: no orphan exit with a signal before the last ticks.
    let last_tick = lines
        .iter()
        .rposition(|l| l.contains("\"ev\":\"tick\""))
        .unwrap();
    let orphan_exit_before_end = lines[..last_tick]
        .iter()
        .any(|l| l.contains("\"role\":\"orphan\"") && l.contains("\"ev\":\"exit\""));
    assert!(!orphan_exit_before_end, "{early:?}\n{}", lines.join("\n"));
}
