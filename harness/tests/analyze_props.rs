//! Property tests: `analyze` never panics on arbitrary input, and its
//! counts do not depend on how the input is cut into reads.

use oomlab::analyze::{analyze_bytes, AnalyzeOptions};
use proptest::prelude::*;

const LINES: &[&str] = &[
    "[  1.000000] worker invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n",
    "[  1.000001] Tasks state (memory values in pages):\n",
    "[  1.000002] [  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name\n",
    "[  1.000003] [    100]     0   100     1000      200    40960        0             0 master\n",
    "[  1.000004] [    120]     0   120    60000    50000   450560        0             0 worker\n",
    "[  1.000005] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task=worker,pid=120,uid=0\n",
    "[  1.000006] Out of memory: Killed process 120 (worker) total-vm:240000kB, anon-rss:199600kB, file-rss:400kB, shmem-rss:0kB, UID:0 pgtables:440kB oom_score_adj:0\n",
    "[  2.000006] Out of memory: Killed process 121 (worker) total-vm:240000kB, anon-rss:199600kB, file-rss:400kB, shmem-rss:0kB, UID:0 pgtables:440kB oom_score_adj:0\n",
    "Jan 18 09:50:59 kernel: Out of memory: Kill process 8356 (nginx) score 5 or sacrifice child\n",
    "Jan 18 09:50:59 kernel: Killed process 8356, UID 2188, (nginx) total-vm:117136kB, anon-rss:45388kB, file-rss:4kB\n",
    "oom_reaper: reaped process 120 (worker), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB\n",
    "Tasks in /a are going to be killed due to memory.oom.group set\n",
    "Kernel panic - not syncing: System is deadlocked on memory\n",
    "Out of memory and no killable processes...\n",
    "{\"MESSAGE\":\"Out of memory: Killed process 9 (x) total-vm:1kB\",\"__MONOTONIC_TIMESTAMP\":\"5\"}\n",
    "{\"MESSAGE\":[255,0,1]}\n",
    "#012[ 1] 0 1 2 3 x#012\n",
    "\r\n",
    "...\n",
    "usb 1-1: new device\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = analyze_bytes(&b, &AnalyzeOptions::default());
    }

    #[test]
    fn shuffled_oom_lines_never_panic(
        picks in prop::collection::vec(prop::sample::select(LINES), 0..60),
        cut in 0usize..200,
        junk in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut b: Vec<u8> = picks.concat().into_bytes();
        let at = cut.min(b.len());
        b.splice(at..at, junk);
        let a = analyze_bytes(&b, &AnalyzeOptions { max_incidents: 3, ..AnalyzeOptions::default() });
        prop_assert!(a.incidents.len() <= 3);
        let _ = oomlab::analyze::render_human(&a);
        let _ = serde_json::to_string(&a).expect("serializable");
    }
}
