//! One QEMU run: start it, read the console and the telemetry together, keep
//! both raw streams, enforce every limit, and kill QEMU on every way out.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedSender;

use super::args::{self, AccelKind};
use crate::events::kernel::KernelEvent;
use crate::events::telemetry::Telemetry;
use crate::scenario::{Limits, Verdict};
use crate::verdict::RunRecord;

/// What the runner tells its UI while a VM runs (one enum, one channel).
#[derive(Debug, Clone)]
pub enum Output {
    QemuStarted { pid: u32, accel: AccelKind },
    Console(String),
    Kernel(KernelEvent),
    Telemetry(Telemetry),
    Ready { boot_s: f64 },
    Stopping(StopReason),
}

/// Why the run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum StopReason {
    /// QEMU exited on its own (guest power-off, or reboot after a panic).
    QemuExited(Option<i32>),
    /// The verdict could not change any more.
    EarlyVerdict(String),
    BootLimit,
    HangLimit,
    WallLimit,
    /// The harness got this signal (SIGINT, SIGTERM).
    Interrupted(i32),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::QemuExited(Some(code)) => write!(f, "QEMU exited with status {code}"),
            StopReason::QemuExited(None) => write!(f, "QEMU was killed by a signal"),
            StopReason::EarlyVerdict(why) => write!(f, "early verdict: {why}"),
            StopReason::BootLimit => write!(f, "boot limit reached"),
            StopReason::HangLimit => write!(f, "hang limit reached"),
            StopReason::WallLimit => write!(f, "wall-clock limit reached"),
            StopReason::Interrupted(sig) => write!(f, "interrupted by signal {sig}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("QEMU not found ({0}); install it (Debian: apt-get install qemu-system-x86) or set OOMLAB_QEMU")]
    QemuMissing(String),
    #[error("cannot start QEMU {qemu}: {source}")]
    Spawn {
        qemu: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

pub struct VmConfig {
    pub qemu: PathBuf,
    pub accel: AccelKind,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    pub cmdline: String,
    /// Per-run scratch (the telemetry socket); removed by its owner.
    pub scratch: PathBuf,
    /// Where console.log and telemetry.jsonl are kept; `None` = not kept.
    pub keep_logs: Option<PathBuf>,
}

pub struct RunOutcome {
    pub record: RunRecord,
    pub stop: StopReason,
    pub boot_s: Option<f64>,
    pub wall_s: f64,
    pub argv: Vec<String>,
    /// What QEMU itself said (bad flags, KVM errors); empty when quiet.
    pub qemu_stderr: String,
}

/// Resolves to the number of a signal that should end the run.
pub type Cancel = Pin<Box<dyn Future<Output = i32> + Send>>;

/// The QEMU binary: `$OOMLAB_QEMU`, else `qemu-system-x86_64` on PATH.
pub fn find_qemu() -> Result<PathBuf, VmError> {
    if let Some(p) = std::env::var_os("OOMLAB_QEMU") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
        .ok_or_else(|| VmError::QemuMissing("qemu-system-x86_64 is not on PATH".into()))
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

fn spawn_qemu(cfg: &VmConfig, socket: &Path) -> Result<(Child, Vec<String>), VmError> {
    let argv = args::qemu_args(
        cfg.accel,
        cfg.memory_mib,
        cfg.cpus,
        &cfg.kernel,
        &cfg.initrd,
        &cfg.cmdline,
        socket,
    );
    let mut cmd = Command::new(&cfg.qemu);
    cmd.args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropping the Child (error, panic unwinding) kills QEMU.
        .kill_on_drop(true)
        // Own process group: a terminal's Ctrl-C reaches the harness, which
        // then stops QEMU in order, instead of racing it.
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and
    // exec. PDEATHSIG kills QEMU even if the harness is SIGKILLed.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            VmError::QemuMissing(format!("{} not found", cfg.qemu.display()))
        } else {
            VmError::Spawn {
                qemu: cfg.qemu.clone(),
                source,
            }
        }
    })?;
    let mut shown = vec![cfg.qemu.display().to_string()];
    shown.extend(argv.iter().map(|a| a.to_string_lossy().into_owned()));
    Ok((child, shown))
}

/// Read one `\n`-terminated line as bytes (serial output need not be
/// UTF-8) into `buf`, which the caller clears after using the line.
///
/// Used inside `select!`: a cancelled `read_until` leaves the bytes it had
/// read in `buf`, so `buf` must not be cleared here, or the start of a line
/// read across a cancellation is lost.
async fn next_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>, buf: &mut Vec<u8>) -> Option<()> {
    match r.read_until(b'\n', buf).await {
        Ok(0) if buf.is_empty() => None,
        Ok(_) => Some(()),
        Err(_) => None,
    }
}

async fn keep(file: &mut Option<tokio::fs::File>, bytes: &[u8]) {
    if let Some(f) = file {
        if f.write_all(bytes).await.is_err() {
            *file = None;
        }
    }
}

/// Send to an optional UI channel; a UI that went away is not an error.
pub fn tell<T>(ui: Option<&UnboundedSender<T>>, msg: T) {
    if let Some(tx) = ui {
        let _ = tx.send(msg);
    }
}

/// Keep one console line, feed it to the record, show it; clear `buf`.
async fn console_line(
    record: &mut RunRecord,
    log: &mut Option<tokio::fs::File>,
    buf: &mut Vec<u8>,
    send: &impl Fn(Output),
) {
    keep(log, buf).await;
    let text = String::from_utf8_lossy(buf);
    let line = text.trim_end_matches(['\n', '\r']);
    if let Some(ev) = record.ingest_console(line) {
        send(Output::Kernel(ev));
    }
    send(Output::Console(line.to_string()));
    buf.clear();
}

/// Keep one telemetry line, feed it to the record, show it; clear `buf`.
async fn telemetry_line(
    record: &mut RunRecord,
    log: &mut Option<tokio::fs::File>,
    buf: &mut Vec<u8>,
    send: &impl Fn(Output),
) {
    keep(log, buf).await;
    if let Some(tel) = record.ingest_telemetry_line(&String::from_utf8_lossy(buf)) {
        send(Output::Telemetry(tel));
    }
    buf.clear();
}

/// Run one VM to its end, filling `record` (made by the caller for its
/// workload); the record is judged by the caller.
pub async fn run(
    cfg: &VmConfig,
    limits: &Limits,
    mut record: RunRecord,
    ui: Option<UnboundedSender<Output>>,
    mut cancel: Cancel,
) -> Result<RunOutcome, VmError> {
    let send = |o: Output| tell(ui.as_ref(), o);
    let socket = cfg.scratch.join("telemetry.sock");
    let listener = UnixListener::bind(&socket).map_err(io(format!("bind {}", socket.display())))?;
    let (mut console_log, mut telemetry_log) = match &cfg.keep_logs {
        Some(dir) => (
            Some(
                tokio::fs::File::create(dir.join("console.log"))
                    .await
                    .map_err(io(format!("create {}/console.log", dir.display())))?,
            ),
            Some(
                tokio::fs::File::create(dir.join("telemetry.jsonl"))
                    .await
                    .map_err(io(format!("create {}/telemetry.jsonl", dir.display())))?,
            ),
        ),
        None => (None, None),
    };

    let started = Instant::now();
    let (mut child, argv) = spawn_qemu(cfg, &socket)?;
    send(Output::QemuStarted {
        pid: child.id().unwrap_or(0),
        accel: cfg.accel,
    });
    let mut console = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // QEMU's own complaints (bad flags, KVM errors) are kept for the report.
    let stderr_task = tokio::spawn(async move {
        let mut s = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut s).await;
        String::from_utf8_lossy(&s).into_owned()
    });

    let mut telemetry: Option<BufReader<tokio::net::UnixStream>> = None;
    let mut cbuf = Vec::with_capacity(512);
    let mut tbuf = Vec::with_capacity(512);
    let mut console_open = true;
    let mut telemetry_open = true;
    let mut exited: Option<Option<i32>> = None;
    let mut stop: Option<StopReason> = None;
    let mut boot_s = None;
    let mut last_progress = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let wall_limit = Duration::from_secs_f64(limits.wall_limit_s());

    while stop.is_none() {
        tokio::select! {
            got = next_line(&mut console, &mut cbuf), if console_open => match got {
                Some(()) => {
                    last_progress = Instant::now();
                    console_line(&mut record, &mut console_log, &mut cbuf, &send).await;
                }
                None => console_open = false,
            },
            conn = listener.accept(), if telemetry.is_none() && telemetry_open => match conn {
                Ok((stream, _)) => telemetry = Some(BufReader::new(stream)),
                Err(_) => telemetry_open = false,
            },
            got = async { next_line(telemetry.as_mut().expect("guarded"), &mut tbuf).await },
                if telemetry.is_some() && telemetry_open => match got {
                Some(()) => {
                    last_progress = Instant::now();
                    let was_ready = record.ready_t.is_some();
                    telemetry_line(&mut record, &mut telemetry_log, &mut tbuf, &send).await;
                    if !was_ready && record.ready_t.is_some() {
                        let b = started.elapsed().as_secs_f64();
                        boot_s = Some(b);
                        send(Output::Ready { boot_s: b });
                    }
                }
                None => telemetry_open = false,
            },
            status = child.wait(), if exited.is_none() => {
                exited = Some(status.ok().and_then(|s| s.code()));
            },
            sig = &mut cancel => stop = Some(StopReason::Interrupted(sig)),
            _ = tick.tick() => {
                let elapsed = started.elapsed();
                if elapsed >= wall_limit {
                    record.boot_timed_out = record.ready_t.is_none();
                    stop = Some(StopReason::WallLimit);
                } else if record.ready_t.is_none() && elapsed.as_secs_f64() >= limits.boot_s {
                    record.boot_timed_out = true;
                    stop = Some(StopReason::BootLimit);
                } else if record.ready_t.is_some()
                    && last_progress.elapsed().as_secs_f64() >= limits.hang_s
                {
                    record.hung = true;
                    stop = Some(StopReason::HangLimit);
                } else if limits.early_verdict {
                    if let Some((v, why)) = record.early_verdict(limits) {
                        // A panic's last lines still arrive; QEMU exits by
                        // itself (panic=-1, -no-reboot) right after.
                        if v != Verdict::Panic {
                            stop = Some(StopReason::EarlyVerdict(why));
                        }
                    }
                }
            },
        }
        if let Some(code) = exited {
            if !console_open && (!telemetry_open || telemetry.is_none()) {
                stop = Some(StopReason::QemuExited(code));
            } else if stop.is_none() {
                // QEMU is gone: drain what is buffered, briefly.
                let drain = async {
                    while console_open {
                        match next_line(&mut console, &mut cbuf).await {
                            Some(()) => {
                                console_line(&mut record, &mut console_log, &mut cbuf, &send).await
                            }
                            None => console_open = false,
                        }
                    }
                    if let Some(t) = telemetry.as_mut() {
                        while let Some(()) = next_line(t, &mut tbuf).await {
                            telemetry_line(&mut record, &mut telemetry_log, &mut tbuf, &send).await;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                stop = Some(StopReason::QemuExited(code));
            }
        }
    }
    let stop = stop.expect("loop ends with a reason");
    match &stop {
        StopReason::EarlyVerdict(_) => record.stopped_early = true,
        StopReason::QemuExited(_) | StopReason::WallLimit
            if record.ready_t.is_some() && record.done_t.is_none() && record.panic.is_none() =>
        {
            let guest = record.last_guest_t - record.ready_t.unwrap_or(0.0);
            record.cut_short = Some(format!(
                "{stop} after {guest:.1} s of the {} s window, before the payload's `done`",
                limits.duration_s
            ));
        }
        StopReason::WallLimit => record.cut_short = Some(stop.to_string()),
        _ => {}
    }
    send(Output::Stopping(stop.clone()));
    if exited.is_none() {
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }
    if let Some(f) = console_log.as_mut() {
        let _ = f.flush().await;
    }
    if let Some(f) = telemetry_log.as_mut() {
        let _ = f.flush().await;
    }
    let qemu_stderr = tokio::time::timeout(Duration::from_secs(2), stderr_task)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    Ok(RunOutcome {
        record,
        stop,
        boot_s,
        wall_s: started.elapsed().as_secs_f64(),
        argv,
        qemu_stderr: qemu_stderr.trim().to_string(),
    })
}
