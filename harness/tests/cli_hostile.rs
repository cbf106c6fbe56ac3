//! Hostile input and faults, through the real `oomlab` binary: special
//! files as scenarios, files that are not kernels, a QEMU that fails at
//! once, evidence that cannot be written, two runs on one folder, control
//! sequences meant for the terminal. The VM side is the fake QEMU
//! (`examples/fake_qemu.rs`) with a fake boot image, so nothing boots and
//! no kernel or payload is needed; `tests/faults.rs` in the end-to-end
//! crate repeats the QEMU failure with the real kernel.

mod common;
use common::fake_qemu;
use common::root;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `oomlab` with `args`, killed (and the test failed) if it takes longer
/// than `secs`: a hang is the bug some of these tests are about.
fn oomlab(args: &[&str], env: &[(&str, &Path)], dir: &Path, secs: u64) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oomlab"));
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start oomlab");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.expect("wait for oomlab"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("oomlab {args:?} did not finish within {secs} s");
        }
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A 4 KiB file with a valid x86 boot header, good enough for the fake QEMU.
fn fake_kernel(dir: &Path) -> PathBuf {
    let mut b = vec![0u8; 0x1000];
    b[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    b[0x1F4..0x1F8].copy_from_slice(&96u32.to_le_bytes());
    let p = dir.join("vmlinuz-fake");
    std::fs::write(&p, b).unwrap();
    p
}

/// A private world for fake runs: temp dir, fake QEMU, fake kernel, and a
/// scenario that picks the fake QEMU's `script`.
struct Fake {
    dir: tempfile::TempDir,
    kernel: PathBuf,
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let kernel = fake_kernel(dir.path());
        Fake { dir, kernel }
    }

    fn scenario(&self, script: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{script}.yaml"));
        std::fs::write(
            &p,
            format!(
                "name: fake-{script}\nvm:\n  kernel: {}\n  cmdline: [fake.script={script}]\n\
                 limits:\n  duration_s: 4\n  settle_s: 1\n  hang_s: 2\n  boot_s: 5\n  wall_s: 20\n",
                self.kernel.display()
            ),
        )
        .unwrap();
        p
    }

    fn run(&self, qemu: &Path, args: &[&str]) -> Output {
        let d = self.dir.path();
        oomlab(
            &[&["run", "--accel", "tcg"][..], args].concat(),
            &[
                ("OOMLAB_QEMU", qemu),
                // Any file will do: the fake QEMU never reads it.
                ("OOMLAB_PAYLOAD", &self.kernel),
                ("OOMLAB_CACHE", &d.join("cache")),
                ("TMPDIR", d),
            ],
            d,
            60,
        )
    }
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Item 2: a FIFO used to hang `check` (opened a second time for line
/// numbers); it is read once now.
#[test]
fn check_reads_a_fifo_once() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("seed.yaml");
    mkfifo(&fifo);
    let content = std::fs::read(root().join("scenarios/seed-livelock.yaml")).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, content).unwrap())
    };
    let o = oomlab(&["check", fifo.to_str().unwrap()], &[], &root(), 30);
    writer.join().unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("ok (seed-livelock)"), "{}", text(&o));
}

/// Item 1: inputs that used to take minutes or gigabytes are refused at
/// once, with exit 2 and the limit named.
#[test]
fn endless_huge_and_deep_inputs_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let deep = d.path().join("deep.yaml");
    std::fs::write(
        &deep,
        format!(
            "name: t\nvm: {{cmdline: {}{}}}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    )
    .unwrap();
    let bomb = d.path().join("bomb.yaml");
    std::fs::write(
        &bomb,
        format!(
            "name: t\ndescription: &a \"{}\"\nvm:\n  cmdline: [{}]\n",
            "x".repeat(200_000),
            vec!["*a"; 2000].join(",")
        ),
    )
    .unwrap();
    for (file, want) in [
        (PathBuf::from("/dev/zero"), "file size limit"),
        (PathBuf::from("/dev/urandom"), "file size limit"),
        (deep, "deep.yaml:2: nesting depth limit"),
        (bomb, "bomb.yaml: expanded text limit"),
    ] {
        let o = oomlab(&["check", file.to_str().unwrap()], &[], &root(), 30);
        assert_eq!(code(&o), 2, "{}: {}", file.display(), text(&o));
        assert!(text(&o).contains(want), "{}: {}", file.display(), text(&o));
    }
}

/// Item 3: a file that is not a kernel is bad input for `check` and for
/// `run` (exit 2 before QEMU starts), not a BOOT-FAILURE with exit 0.
#[test]
fn files_that_are_not_kernels_are_bad_input() {
    let f = Fake::new();
    let passwd = f.dir.path().join("passwd.yaml");
    std::fs::write(&passwd, "name: t\nvm:\n  kernel: /etc/passwd\n").unwrap();
    let o = oomlab(&["check", passwd.to_str().unwrap()], &[], &root(), 30);
    assert_eq!(code(&o), 2, "{}", text(&o));
    for want in [
        "passwd.yaml:3: field `vm.kernel`",
        "`/etc/passwd` is not an x86 Linux boot image",
    ] {
        assert!(text(&o).contains(want), "{}", text(&o));
    }
    // A cut image: the header promises more than the file has.
    let cut = f.dir.path().join("vmlinuz-cut");
    let mut img = std::fs::read(&f.kernel).unwrap();
    img[0x1F4..0x1F8].copy_from_slice(&(14_000_000u32 / 16).to_le_bytes());
    std::fs::write(&cut, img).unwrap();
    // The QEMU given would fail with exit 3 if it were ever started.
    let o = f.run(
        Path::new("/nonexistent/qemu"),
        &[
            f.scenario("loop").to_str().unwrap(),
            "--kernel",
            cut.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("--kernel: `") && text(&o).contains("truncated: the header says"),
        "{}",
        text(&o)
    );
    let o = f.run(Path::new("/nonexistent/qemu"), &[passwd.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", text(&o));
}

/// Item 4: QEMU ending before the guest printed a line is "the run could
/// not happen" (exit 3) with QEMU's own words, not a guest BOOT-FAILURE.
#[test]
fn a_qemu_that_fails_at_once_cannot_run() {
    let f = Fake::new();
    let o = f.run(&fake_qemu(), &[f.scenario("fail").to_str().unwrap()]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    for want in [
        "QEMU failed before the guest printed anything",
        "failed to initialize kvm: Permission denied",
    ] {
        assert!(text(&o).contains(want), "{}", text(&o));
    }
    assert!(!text(&o).contains("BOOT-FAILURE"), "{}", text(&o));
    let o = f.run(
        Path::new("/bin/false"),
        &[f.scenario("loop").to_str().unwrap()],
    );
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        text(&o)
            .contains("QEMU failed before the guest printed anything (QEMU exited with status 1)"),
        "{}",
        text(&o)
    );
}

/// Item 5: a kept log that cannot be written makes the run fail with exit
/// 3 and EVIDENCE INCOMPLETE, in the terminal and in report.json.
#[test]
fn evidence_that_cannot_be_written_fails_the_run() {
    let f = Fake::new();
    let out = f.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink("/dev/full", out.join("console.log")).unwrap();
    let o = f.run(
        &fake_qemu(),
        &[
            f.scenario("loop").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 3, "{}", text(&o));
    let all = text(&o);
    assert!(
        all.contains("[EVIDENCE INCOMPLETE: no verdict is claimed]"),
        "{all}"
    );
    assert!(all.contains("writing console.log failed"), "{all}");
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(
        report.contains("\"evidence_errors\"") && report.contains("console.log"),
        "{report}"
    );
}

/// Item 6: a folder another run holds is refused (exit 3, naming the folder
/// and the pid), and nothing in it is touched; once free, it is used.
#[test]
fn one_run_per_output_folder() {
    use std::os::unix::io::AsRawFd;
    let f = Fake::new();
    let out = f.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("report.json"), "the other run's report").unwrap();
    let mut lock = std::fs::File::create(out.join(".oomlab.lock")).unwrap();
    writeln!(lock, "4242").unwrap();
    // SAFETY: flock on a file this test owns.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let scenario = f.scenario("loop");
    let args = [scenario.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let o = f.run(&fake_qemu(), &args);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "output folder {} is in use by another oomlab run (pid 4242)",
            out.display()
        )),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("report.json")).unwrap(),
        "the other run's report"
    );
    assert!(!out.join("console.log").exists());
    drop(lock);
    let o = f.run(&fake_qemu(), &args);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(std::fs::read_to_string(out.join("report.json"))
        .unwrap()
        .contains("\"verdict\""));
}

/// Item 6 with two real runs: while the first (a guest that goes quiet
/// until the hang limit) holds the folder, the second is refused with the
/// first one's pid.
#[test]
fn two_concurrent_runs_never_share_a_folder() {
    let f = Fake::new();
    let out = f.dir.path().join("out");
    let scenario = f.scenario("hang");
    let d = f.dir.path();
    let mut first = Command::new(env!("CARGO_BIN_EXE_oomlab"))
        .args(["run", "--accel", "tcg", scenario.to_str().unwrap(), "--out"])
        .arg(&out)
        .env("OOMLAB_QEMU", fake_qemu())
        .env("OOMLAB_PAYLOAD", &f.kernel)
        .env("OOMLAB_CACHE", d.join("cache"))
        .env("TMPDIR", d)
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first run has its folder once its console log exists.
    let started = std::time::Instant::now();
    while !out.join("console.log").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "first run never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = f.run(
        &fake_qemu(),
        &[scenario.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    let status = first.wait().unwrap();
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "in use by another oomlab run (pid {})",
            first.id()
        )),
        "{}",
        text(&o)
    );
    // The first run finished on its own, its report whole.
    assert!(status.code().is_some(), "{status:?}");
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(report.contains("\"hang\""), "{report}");
}

/// Item 9: control sequences in a scenario's file name, in the guest's
/// console and in a killed process's name reach the terminal escaped.
#[test]
fn the_terminal_never_gets_raw_control_characters() {
    let f = Fake::new();
    let evil = f.dir.path().join("ev\u{1b}[2Jil\u{202e}.yaml");
    std::fs::copy(root().join("scenarios/seed-livelock.yaml"), &evil).unwrap();
    let o = oomlab(&["check", evil.to_str().unwrap()], &[], &root(), 30);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let raw = [o.stdout.as_slice(), o.stderr.as_slice()].concat();
    assert!(!raw.contains(&0x1b), "{}", text(&o));
    assert!(
        text(&o).contains("ev\\x1b[2Jil\\u{202e}.yaml: ok"),
        "{}",
        text(&o)
    );

    let o = f.run(
        &fake_qemu(),
        &[f.scenario("hostile").to_str().unwrap(), "--verbose"],
    );
    let all = text(&o);
    assert!(all.contains("\\x1b]0;owned\\x07"), "{all}");
    assert!(all.contains("(ev\\x1b[8mil\\u{202e})"), "{all}");
    let raw = [o.stdout.as_slice(), o.stderr.as_slice()].concat();
    assert!(!raw.contains(&0x1b) && !raw.contains(&0x07), "{all}");
    assert!(!all.contains('\u{202e}'), "{all}");
}
