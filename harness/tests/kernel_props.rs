//! Property tests: the kernel-log parser never panics, whatever it is fed,
//! and its fast rejection never rejects a line it would parse.

use oomlab::events::kernel::{self, Parser};
use proptest::prelude::*;

const PIECES: &[&str] = &[
    "Killed process ",
    "Kill process ",
    "kill process ",
    ", UID ",
    "(",
    ")",
    ") ",
    " total-vm:",
    "kB, ",
    "anon-rss:",
    "UID:",
    "oom_score_adj:",
    "-",
    "1",
    "42",
    "99999999999999999999",
    " ",
    "[",
    "]",
    "[ pid ]",
    " uid tgid total_vm rss name",
    "oom-kill:",
    "constraint=CONSTRAINT_MEMCG",
    ",task=",
    ",pid=",
    ",uid=",
    ",task_memcg=",
    "invoked oom-killer",
    "gfp_mask=",
    "order=",
    "oom_reaper: reaped process ",
    "unable to reap pid:",
    "Tasks in ",
    " are going to be killed due to memory.oom.group",
    "Task in ",
    " killed as a result of limit of ",
    "memory: usage ",
    "limit ",
    "failcnt ",
    "Kernel panic - not syncing",
    ":",
    "OOM victim ",
    " is already exiting",
    "é",
    "\u{fffd}",
    "<6>",
    "Jan 18 09:50:59 ",
    "kernel: ",
    "[  12.5] ",
    "[Thu Dec  7 00:05:15 2017] ",
    "2017-12-07T00:05:15+0100 ",
    "Would have killed process ",
    "OOM killed process ",
    " sharing same memory",
    "Memory limit reached of cgroup ",
    "Out of memory and no killable processes",
    "---[ end Kernel panic - not syncing",
    "memory+swap: usage ",
];

fn structured() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_strings_never_panic(s in ".*") {
        let l = kernel::split_prefix(&s);
        let _ = kernel::parse_message(l.msg);
        let _ = kernel::parse_message(&s);
        let _ = kernel::parse_task_row(&s, None);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..400)) {
        let s = String::from_utf8_lossy(&b);
        let mut p = Parser::new();
        let _ = p.parse_line(&s);
        let _ = p.parse_line("[ pid ]   uid  tgid total_vm      rss cpu oom_adj name");
        let _ = p.parse_line(&s);
    }

    #[test]
    fn fast_reject_only_rejects_what_would_not_parse(s in structured()) {
        let msg = kernel::split_prefix(&s).msg;
        if !kernel::maybe_oom(msg) {
            prop_assert_eq!(kernel::parse_message(msg), None);
        }
        if kernel::parse_message(msg).is_some() && !msg.trim_start().starts_with('[') {
            prop_assert!(kernel::keywords().iter().any(|k| msg.contains(k)));
        }
    }

    #[test]
    fn structured_fragments_never_panic(s in structured()) {
        let mut p = Parser::new();
        let (l, _) = p.parse_line(&s);
        let _ = kernel::parse_message(l.msg);
        let _ = p.parse(&s);
    }
}
