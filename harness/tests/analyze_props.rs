//! Property tests: `analyze` never panics on arbitrary input, and its
//! analysis (all of it, not only the counts) does not depend on how the
//! input is cut into reads.

use std::io::{self, Read};

use oomlab::analyze::{analyze_bytes, analyze_reader, AnalyzeOptions};
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

/// Hands `data` over in reads of the given sizes, cycled; a size of 0 is
/// an `Interrupted` error, which the caller must retry.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: &'a [usize],
    i: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let want = self.sizes[self.i % self.sizes.len()];
        self.i += 1;
        if want == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = want.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The whole analysis of `data` read in pieces of `sizes`, as text (Debug
/// shows every field, also those `--json` leaves out).
fn read_in_pieces(data: &[u8], sizes: &[usize], opts: &AnalyzeOptions) -> String {
    let r = Pieces { data, sizes, i: 0 };
    let a = analyze_reader(r, "<memory>", opts).expect("reading a slice cannot fail");
    format!("{a:?}")
}

/// Lines longer than the read buffer (1 MiB) are cut the same way whatever
/// the read sizes.
#[test]
fn long_lines_read_in_any_pieces() {
    let mut data = LINES[..8].concat().into_bytes();
    data.extend(std::iter::repeat_n(b'x', (1 << 20) + 100));
    data.extend(b" Killed process 7 (cut)\n");
    data.extend(LINES[6].as_bytes());
    data.extend(std::iter::repeat_n(b'y', 1 << 20));
    data.extend(LINES[7].as_bytes());
    let opts = AnalyzeOptions::default();
    let whole = format!("{:?}", analyze_bytes(&data, &opts));
    assert!(whole.contains("killed: 3"), "{whole}");
    for sizes in [
        &[7][..],
        &[4096],
        &[1 << 20],
        &[(1 << 20) + 1],
        &[3, 0, 1 << 19],
        &[usize::MAX],
    ] {
        assert_eq!(
            read_in_pieces(&data, sizes, &opts),
            whole,
            "reads of {sizes:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn read_sizes_do_not_change_the_analysis(
        picks in prop::collection::vec(prop::sample::select(LINES), 0..60),
        cut in 0usize..200,
        junk in prop::collection::vec(any::<u8>(), 0..8),
        sizes in prop::collection::vec(0usize..300, 1..16)
            .prop_filter("some read must move", |v| v.iter().any(|&x| x > 0)),
    ) {
        let mut b: Vec<u8> = picks.concat().into_bytes();
        let at = cut.min(b.len());
        b.splice(at..at, junk);
        let opts = AnalyzeOptions::default();
        let whole = format!("{:?}", analyze_bytes(&b, &opts));
        prop_assert_eq!(read_in_pieces(&b, &sizes, &opts), whole);
    }

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
