//! Benchmark (not a timed test) for `oomlab analyze` (issue #3).
//!
//! Generates a log of `--size-mb` MiB (default 1024) of realistic kernel
//! noise with OOM reports (stack, Mem-Info, task tables) and kill storms in
//! a temp file, then measures, in the same run and on the same (page-cached)
//! file, `grep -c 'Killed process'` wall time versus the analyzer's, and the
//! analyzer's peak RSS (VmHWM of a child process that runs only the
//! analyzer).
//!
//! ```text
//! cargo run --release -p oomlab --example bench_analyze -- [--size-mb 1024] [--keep PATH] [--worst-case]
//! ```
//!
//! `--worst-case`: a log made only of OOM lines (reports with their task
//! tables, summaries, kills and reaper lines of several eras, storms of
//! ratelimited kills), where every line is a candidate and has to be
//! parsed: the analyzer's throughput in MB/s is what it reports.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use oomlab::analyze::{analyze_paths, AnalyzeOptions};

const NOISE: &[&str] = &[
    "IPv4: martian source 10.0.3.255 from 10.0.3.17, on dev eth0",
    "audit: type=1400 audit(1700000000.123:4242): apparmor=\"DENIED\" operation=\"open\" profile=\"snap.lxd\" name=\"/proc/1/environ\" pid=4242 comm=\"lxd\"",
    "EXT4-fs (vda1): re-mounted. Opts: errors=remount-ro",
    "TCP: request_sock_TCP: Possible SYN flooding on port 443. Sending cookies.  Check SNMP counters.",
    "usb 1-1: new high-speed USB device number 7 using xhci_hcd",
    "nf_conntrack: nf_conntrack: table full, dropping packet",
    "device veth3f2a1b entered promiscuous mode",
    "docker0: port 3(veth3f2a1b) entered forwarding state",
    "perf: interrupt took too long (2503 > 2500), lowering kernel.perf_event_max_sample_rate to 79750",
    "systemd-journald[312]: Data hash table of /var/log/journal/system.journal has a fill level at 75.0, suggesting rotation.",
    "[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56 SRC=203.0.113.7 DST=10.0.0.5 LEN=60 PROTO=TCP SPT=51234 DPT=22 WINDOW=29200 SYN URGP=0",
    "INFO: task kworker/u8:2:1234 blocked for more than 120 seconds.",
    "NFS: server nas01 not responding, still trying",
    "e1000e 0000:00:19.0 eth0: Reset adapter unexpectedly",
    "sd 2:0:0:0: [sda] tag#17 FAILED Result: hostbyte=DID_OK driverbyte=DRIVER_SENSE",
    "kauditd_printk_skb: 26 callbacks suppressed",
];

fn generate(path: &Path, size: u64) -> std::io::Result<u64> {
    let f = std::fs::File::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut written: u64 = 0;
    let mut t = 100.0f64;
    let mut line_no: u64 = 0;
    let mut last_oom: u64 = 0;
    let mut pid: u32 = 20_000;
    let mut kills: u64 = 0;
    let mut buf = String::with_capacity(512);
    use std::fmt::Write as _;
    while written < size {
        line_no += 1;
        t += 0.000_37;
        buf.clear();
        if line_no - last_oom == 200_000 {
            last_oom = line_no;
            // An OOM report: header, stack, Mem-Info, table, summary, kill,
            // then a storm of ratelimited kills of respawned workers.
            let _ = writeln!(buf, "[{t:12.6}] worker invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0");
            let _ = writeln!(buf, "[{t:12.6}] CPU: 1 PID: {pid} Comm: worker Not tainted 5.15.0-91-generic #101-Ubuntu");
            let _ = writeln!(buf, "[{t:12.6}] Call Trace:");
            for fnname in [
                "dump_stack_lvl+0x4a/0x63",
                "dump_header+0x4a/0x1f4",
                "oom_kill_process.cold+0xb/0x10",
                "out_of_memory+0x106/0x2e0",
                "__alloc_pages_slowpath.constprop.0+0x97a/0xa40",
            ] {
                let _ = writeln!(buf, "[{t:12.6}]  {fnname}");
            }
            let _ = writeln!(buf, "[{t:12.6}] Mem-Info:");
            let _ = writeln!(
                buf,
                "[{t:12.6}] active_anon:1960022 inactive_anon:41210 isolated_anon:0"
            );
            let _ = writeln!(
                buf,
                "[{t:12.6}] Node 0 Normal free:44828kB min:44968kB low:56208kB high:67448kB"
            );
            task_table(&mut buf, t, 200);
            let _ = writeln!(buf, "[{t:12.6}] [{:7}]  1000  {:5}    20000     5000   200704        0             0 master", 900, 900);
            let _ = writeln!(buf, "[{t:12.6}] [{pid:7}]  1000 {pid:5}   300000   250000  2101248        0             0 worker");
            let _ = writeln!(buf, "[{t:12.6}] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/app.service,task=worker,pid={pid},uid=1000");
            for _ in 0..50 {
                let _ = writeln!(buf, "[{t:12.6}] Out of memory: Killed process {pid} (worker) total-vm:1200000kB, anon-rss:1000000kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:2052kB oom_score_adj:0");
                let _ = writeln!(buf, "[{t:12.6}] oom_reaper: reaped process {pid} (worker), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB");
                pid += 3;
                kills += 1;
                t += 0.08;
            }
        } else {
            let n = NOISE[(line_no.wrapping_mul(2_654_435_761) % NOISE.len() as u64) as usize];
            let _ = writeln!(buf, "[{t:12.6}] {n}");
        }
        w.write_all(buf.as_bytes())?;
        written += buf.len() as u64;
    }
    w.flush()?;
    Ok(kills)
}

/// A log made only of OOM lines: every line is parsed.
fn generate_worst(path: &Path, size: u64) -> std::io::Result<u64> {
    use std::fmt::Write as _;
    let f = std::fs::File::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut written: u64 = 0;
    let mut t = 100.0f64;
    let mut pid: u32 = 20_000;
    let mut kills: u64 = 0;
    let mut round: u64 = 0;
    let mut buf = String::with_capacity(1 << 16);
    while written < size {
        buf.clear();
        round += 1;
        t += 0.05;
        if round.is_multiple_of(2) {
            // 5.4+ dmesg: header, table, summary, kill, reaper
            let _ = writeln!(buf, "[{t:12.6}] worker invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0");
            task_table(&mut buf, t, 40);
            let _ = writeln!(buf, "[{t:12.6}] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/app.service,task=worker,pid={pid},uid=1000");
            for _ in 0..20 {
                let _ = writeln!(buf, "[{t:12.6}] Out of memory: Killed process {pid} (worker) total-vm:1200000kB, anon-rss:1000000kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:2052kB oom_score_adj:0");
                let _ = writeln!(buf, "[{t:12.6}] oom_reaper: reaped process {pid} (worker), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB");
                pid += 3;
                kills += 1;
                t += 0.08;
            }
        } else {
            // RHEL 6 syslog: selection and kill pairs after a table
            let _ = writeln!(buf, "Jan 18 09:50:59 web01 kernel: nginx invoked oom-killer: gfp_mask=0x201da, order=0, oom_adj=0, oom_score_adj=0");
            let _ = writeln!(buf, "Jan 18 09:50:59 web01 kernel: [ pid ]   uid  tgid total_vm      rss cpu oom_adj oom_score_adj name");
            for i in 0..40u32 {
                let p = 3000 + i * 5;
                let _ = writeln!(buf, "Jan 18 09:50:59 web01 kernel: [{p:5}] {:5} {p:5} {:8} {:8} {:3}     {:3}         {:5} nginx", 2188, 29284, 4840 + i, i % 4, 0, 0);
            }
            for _ in 0..20 {
                let _ = writeln!(buf, "Jan 18 09:50:59 web01 kernel: Out of memory: Kill process {pid} (nginx) score 5 or sacrifice child");
                let _ = writeln!(buf, "Jan 18 09:50:59 web01 kernel: Killed process {pid}, UID 2188, (nginx) total-vm:117136kB, anon-rss:45388kB, file-rss:4kB");
                pid += 3;
                kills += 1;
            }
        }
        w.write_all(buf.as_bytes())?;
        written += buf.len() as u64;
    }
    w.flush()?;
    Ok(kills)
}

fn vm_hwm_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

fn child(path: &Path) {
    let t0 = Instant::now();
    let a = analyze_paths(&[path.to_path_buf()], &AnalyzeOptions::default()).expect("analyze");
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "{dt} {} {} {} {}",
        vm_hwm_kb().unwrap_or(0),
        a.totals.killed,
        a.loop_found,
        a.totals.task_table_rows
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(Path::new(&args[i + 1]));
        return;
    }
    let size_mb: u64 = args
        .iter()
        .position(|a| a == "--size-mb")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let keep = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let worst = args.iter().any(|a| a == "--worst-case");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = keep.unwrap_or_else(|| dir.path().join("bench.log"));
    let t0 = Instant::now();
    let expected = if worst {
        generate_worst(&path, size_mb << 20)
    } else {
        generate(&path, size_mb << 20)
    }
    .expect("generate");
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "generated {} ({:.0} MiB, {expected} kills) in {:.1} s",
        path.display(),
        bytes as f64 / 1048576.0,
        t0.elapsed().as_secs_f64()
    );
    let grep = |quiet: bool| {
        let t = Instant::now();
        let out = Command::new("grep")
            .args(["-c", "Killed process"])
            .arg(&path)
            .output()
            .expect("grep");
        let dt = t.elapsed().as_secs_f64();
        if !quiet {
            println!(
                "grep -c 'Killed process': {} in {dt:.3} s ({:.0} MiB/s)",
                String::from_utf8_lossy(&out.stdout).trim(),
                bytes as f64 / 1048576.0 / dt
            );
        }
        dt
    };
    grep(true); // warm the page cache
    let exe = std::env::current_exe().expect("exe");
    let mut best_grep = f64::MAX;
    let mut best_an = f64::MAX;
    let mut hwm = 0u64;
    for round in 0..3 {
        best_grep = best_grep.min(grep(false));
        let t = Instant::now();
        let out = Command::new(&exe)
            .arg("--child")
            .arg(&path)
            .output()
            .expect("child");
        let wall = t.elapsed().as_secs_f64();
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let f: Vec<&str> = s.split_whitespace().collect();
        let h: u64 = f.get(1).and_then(|x| x.parse().ok()).unwrap_or(0);
        hwm = hwm.max(h);
        best_an = best_an.min(wall);
        println!(
            "round {round}: analyzer: {wall:.3} s wall incl. process start ({:.0} MiB/s), peak RSS (VmHWM) {:.1} MiB, killed {}, loop {}, task rows {}",
            bytes as f64 / 1048576.0 / wall,
            h as f64 / 1024.0,
            f.get(2).unwrap_or(&"?"),
            f.get(3).unwrap_or(&"?"),
            f.get(4).unwrap_or(&"?")
        );
    }
    println!(
        "RESULT{} size={:.0}MiB grep_best={best_grep:.3}s analyzer_best={best_an:.3}s ratio={:.2}x peak_rss={:.1}MiB analyzer={:.0}MB/s",
        if worst { " worst-case" } else { "" },
        bytes as f64 / 1048576.0,
        best_an / best_grep,
        hwm as f64 / 1024.0,
        bytes as f64 / 1e6 / best_an
    );
}

/// A 5.x task table of `rows` rows at time `t`.
fn task_table(buf: &mut String, t: f64, rows: u32) {
    use std::fmt::Write as _;
    let _ = writeln!(buf, "[{t:12.6}] Tasks state (memory values in pages):");
    let _ = writeln!(
        buf,
        "[{t:12.6}] [  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name"
    );
    for i in 0..rows {
        let p = 1000 + i * 7;
        let _ = writeln!(
            buf,
            "[{t:12.6}] [{p:7}] {:5} {p:5} {:8} {:8} {:8} {:8}         {:5} {}",
            i % 3 * 1000,
            10_000 + i,
            500 + i,
            65536,
            0,
            0,
            if i % 2 == 0 { "systemd" } else { "bash" }
        );
    }
}
