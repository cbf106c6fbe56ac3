//! A stand-in for `qemu-system-x86_64` in the VM runner's tests: it speaks
//! the two streams a real guest does (kernel console on stdout, telemetry
//! on the unix socket named by `-chardev socket,...,path=P`), following a
//! script named on the kernel command line (`-append "... fake.script=NAME
//! fake.pace_ms=N"`), so tests need no environment variables.
//!
//! Scripts: `loop` (a kill/respawn loop, then `done` and exit 0), `endless`
//! (the loop, never ending), `hang` (ready, then silence), `noboot` (console
//! chatter, never ready), `fail` (complains on stderr, exits 1 at once),
//! `panic` (ready, then a kernel panic, exit 0), `hostile` (ready, then
//! console lines and a killed process name carrying terminal control
//! sequences, then `done`).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use oomlab_protocol::{Event, Role, Telemetry};

struct Guest {
    t: f64,
    pace: Duration,
    telemetry: Option<UnixStream>,
}

impl Guest {
    fn console(&mut self, msg: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "[{:12.6}] {msg}", self.t);
        let _ = out.flush();
    }

    fn tel(&mut self, ev: Event) {
        let line = Telemetry { t: self.t, ev }.line();
        if let Some(s) = &mut self.telemetry {
            let _ = s.write_all(line.as_bytes());
        }
    }

    fn step(&mut self) {
        self.t += 0.2;
        std::thread::sleep(self.pace);
    }

    fn boot(&mut self) {
        self.console("Linux version 6.1.0-fake (fake@qemu) #1 SMP");
        self.console("Run /init as init process");
        self.tel(Event::Ready {
            name: "fake".into(),
            kernel: "6.1.0-fake".into(),
            mem_total_kib: Some(230_000),
            payload: Some("fake".into()),
        });
        self.tel(Event::Spawn {
            pid: 10,
            ppid: Some(1),
            role: Role::Master,
        });
        for pid in 11..15 {
            self.tel(Event::Spawn {
                pid,
                ppid: Some(10),
                role: Role::Worker,
            });
        }
    }

    /// One round of the loop: a kill, its reaping, the re-fork, a tick.
    fn kill_round(&mut self, victim: u32, next: u32) {
        self.console(&format!(
            "Out of memory: Killed process {victim} (nginx) total-vm:65000kB, anon-rss:60000kB, \
             file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:160kB oom_score_adj:0"
        ));
        self.tel(Event::Exit {
            pid: victim,
            role: Role::Worker,
            signal: Some(9),
            status: None,
        });
        self.tel(Event::Spawn {
            pid: next,
            ppid: Some(10),
            role: Role::Worker,
        });
        self.tel(Event::Tick {
            seq: u64::from(next),
            late_ms: 1.0,
        });
        self.step();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg_after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_default()
    };
    let append = arg_after("-append");
    let word = |key: &str| {
        append
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
    };
    let script = word("fake.script=").unwrap_or_else(|| "loop".into());
    let pace_ms: u64 = word("fake.pace_ms=")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let socket = args.iter().find_map(|a| {
        a.strip_prefix("socket,id=telemetry,path=")
            .map(std::path::PathBuf::from)
    });
    if script == "fail" {
        eprintln!("qemu-system-x86_64: -accel kvm: failed to initialize kvm: Permission denied");
        std::process::exit(1);
    }
    let mut g = Guest {
        t: 1.0,
        pace: Duration::from_millis(pace_ms),
        telemetry: socket.and_then(|p| UnixStream::connect(p).ok()),
    };
    match script.as_str() {
        "noboot" => loop {
            g.console("random: crng init done");
            g.t += 0.1;
            std::thread::sleep(Duration::from_millis(100));
        },
        "hang" => {
            g.boot();
            std::thread::sleep(Duration::from_secs(3600));
        }
        "panic" => {
            g.boot();
            g.step();
            g.console(
                "Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled",
            );
            g.console("---[ end Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled ]---");
        }
        "hostile" => {
            g.boot();
            g.step();
            g.console("\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[31m cleared your screen \u{202e}gpj.exe");
            g.console(
                "Out of memory: Killed process 11 (ev\u{1b}[8mil\u{202e}) total-vm:65000kB, \
                 anon-rss:60000kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:160kB oom_score_adj:0",
            );
            g.step();
            g.tel(Event::Done {
                reason: "duration".into(),
            });
        }
        "loop" | "endless" => {
            g.boot();
            g.step();
            let mut victim = 11;
            let mut next = 15;
            for _ in 0..20 {
                g.kill_round(victim, next);
                victim = next - 3;
                next += 1;
            }
            if script == "endless" {
                loop {
                    g.kill_round(victim, next);
                    victim = next - 3;
                    next += 1;
                }
            }
            g.tel(Event::Done {
                reason: "duration".into(),
            });
        }
        other => {
            eprintln!("fake_qemu: unknown script {other}");
            std::process::exit(2);
        }
    }
}
