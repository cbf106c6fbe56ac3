//! One QEMU run: start it, read the console and the telemetry together, keep
//! both raw streams, enforce the caller's limits, and kill QEMU on every way
//! out. What the lines mean, and when a verdict allows stopping early, is
//! the caller's [`Watch`]: this layer runs a VM, nothing more.

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

/// What the runner tells its UI while a VM runs (one enum, one channel).
#[derive(Debug, Clone)]
pub enum Output {
    QemuStarted {
        pid: u32,
        accel: AccelKind,
    },
    /// One raw console line (kernel log).
    Console(String),
    /// A console line the watch understood.
    Kernel(KernelEvent),
    /// A telemetry line the watch understood.
    Telemetry(Telemetry),
    /// The watch saw the guest come up, this many wall seconds after QEMU
    /// started: the end of the boot stage.
    Booted {
        boot_s: f64,
    },
    /// Observation is over, for this reason.
    Stopping(StopReason),
}

/// Why the run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum StopReason {
    /// QEMU exited on its own (guest power-off, or reboot after a panic).
    QemuExited(Option<i32>),
    /// The watch said the outcome could not change any more.
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

/// What the caller makes of the guest's lines while the VM runs.
pub trait Watch {
    /// One kernel console line; what it meant, for the UI.
    fn console(&mut self, line: &str) -> Option<KernelEvent>;
    /// One telemetry line; what it meant, for the UI.
    fn telemetry(&mut self, line: &str) -> Option<Telemetry>;
    /// The guest is up (the boot limit no longer applies).
    fn booted(&self) -> bool;
    /// `Some(why)`: stop now, the outcome can no longer change.
    fn stop_early(&self) -> Option<String>;
}

/// The limits the caller sets, wall-clock seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopPolicy {
    /// From QEMU start until the watch says `booted`.
    pub boot_s: f64,
    /// After boot, neither stream printed anything for this long.
    pub hang_s: f64,
    /// The whole run, from QEMU start.
    pub wall_s: f64,
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
    /// Devices after the base line: network, disks (see `args`).
    pub devices: Vec<std::ffi::OsString>,
}

pub struct RunOutcome {
    pub stop: StopReason,
    /// Wall seconds from QEMU start to `booted`.
    pub boot_s: Option<f64>,
    pub wall_s: f64,
    pub argv: Vec<String>,
    /// What QEMU itself said (bad flags, KVM errors); empty when quiet.
    pub qemu_stderr: String,
    /// Not one line came on either stream: the guest never printed
    /// anything (with QEMU failing at once, the run could not happen).
    pub guest_silent: bool,
    /// Writing a kept log failed (disk full, ...): the evidence on disk is
    /// incomplete, whatever the in-memory record says.
    pub log_errors: Vec<String>,
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
    let mut argv = argv;
    argv.extend(cfg.devices.iter().cloned());
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

/// A kept raw log. The first write error is remembered (and writing stops):
/// a log that silently lost lines would be evidence that lies.
struct KeptLog {
    name: &'static str,
    file: Option<tokio::fs::File>,
    error: Option<String>,
}

impl KeptLog {
    async fn create(dir: Option<&Path>, name: &'static str) -> Result<KeptLog, VmError> {
        let file = match dir {
            Some(d) => Some(
                tokio::fs::File::create(d.join(name))
                    .await
                    .map_err(io(format!("create {}/{name}", d.display())))?,
            ),
            None => None,
        };
        Ok(KeptLog {
            name,
            file,
            error: None,
        })
    }

    async fn keep(&mut self, bytes: &[u8]) {
        if let Some(f) = &mut self.file {
            if let Err(e) = f.write_all(bytes).await {
                self.error = Some(format!("writing {} failed: {e}", self.name));
                self.file = None;
            }
        }
    }

    async fn close(mut self) -> Option<String> {
        if let Some(f) = &mut self.file {
            if let Err(e) = f.flush().await.and(f.sync_all().await) {
                self.error
                    .get_or_insert(format!("writing {} failed: {e}", self.name));
            }
        }
        self.error
    }
}

/// Send to an optional UI channel; a UI that went away is not an error.
pub fn tell<T>(ui: Option<&UnboundedSender<T>>, msg: T) {
    if let Some(tx) = ui {
        let _ = tx.send(msg);
    }
}

/// The two streams, their kept logs and the watch; one line path for live
/// reading and for draining.
struct Streams<'a, W: Watch> {
    watch: &'a mut W,
    console_log: KeptLog,
    telemetry_log: KeptLog,
    ui: Option<UnboundedSender<Output>>,
    lines_seen: usize,
}

impl<W: Watch> Streams<'_, W> {
    fn send(&self, o: Output) {
        tell(self.ui.as_ref(), o);
    }

    /// Keep one console line, feed it to the watch, show it; clear `buf`.
    async fn console_line(&mut self, buf: &mut Vec<u8>) {
        self.lines_seen += 1;
        self.console_log.keep(buf).await;
        let text = String::from_utf8_lossy(buf);
        let line = text.trim_end_matches(['\n', '\r']);
        if let Some(ev) = self.watch.console(line) {
            self.send(Output::Kernel(ev));
        }
        self.send(Output::Console(line.to_string()));
        buf.clear();
    }

    /// Keep one telemetry line, feed it to the watch, show it; clear `buf`.
    async fn telemetry_line(&mut self, buf: &mut Vec<u8>) {
        self.lines_seen += 1;
        self.telemetry_log.keep(buf).await;
        if let Some(tel) = self.watch.telemetry(&String::from_utf8_lossy(buf)) {
            self.send(Output::Telemetry(tel));
        }
        buf.clear();
    }
}

/// Run one VM to its end, feeding every line to `watch`.
pub async fn run<W: Watch>(
    cfg: &VmConfig,
    policy: StopPolicy,
    watch: &mut W,
    ui: Option<UnboundedSender<Output>>,
    mut cancel: Cancel,
) -> Result<RunOutcome, VmError> {
    let socket = cfg.scratch.join("telemetry.sock");
    let listener = UnixListener::bind(&socket).map_err(io(format!("bind {}", socket.display())))?;
    let keep = cfg.keep_logs.as_deref();
    let mut s = Streams {
        console_log: KeptLog::create(keep, "console.log").await?,
        telemetry_log: KeptLog::create(keep, "telemetry.jsonl").await?,
        watch,
        ui,
        lines_seen: 0,
    };

    let started = Instant::now();
    let (mut child, argv) = spawn_qemu(cfg, &socket)?;
    s.send(Output::QemuStarted {
        pid: child.id().unwrap_or(0),
        accel: cfg.accel,
    });
    let mut console = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // QEMU's own complaints (bad flags, KVM errors) are kept for the report.
    let stderr_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
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
    let wall_limit = Duration::from_secs_f64(policy.wall_s);

    while stop.is_none() {
        tokio::select! {
            got = next_line(&mut console, &mut cbuf), if console_open => match got {
                Some(()) => {
                    last_progress = Instant::now();
                    s.console_line(&mut cbuf).await;
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
                    s.telemetry_line(&mut tbuf).await;
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
                    stop = Some(StopReason::WallLimit);
                } else if !s.watch.booted() && elapsed.as_secs_f64() >= policy.boot_s {
                    stop = Some(StopReason::BootLimit);
                } else if s.watch.booted() && last_progress.elapsed().as_secs_f64() >= policy.hang_s {
                    stop = Some(StopReason::HangLimit);
                } else if let Some(why) = s.watch.stop_early() {
                    stop = Some(StopReason::EarlyVerdict(why));
                }
            },
        }
        if boot_s.is_none() && s.watch.booted() {
            let b = started.elapsed().as_secs_f64();
            boot_s = Some(b);
            s.send(Output::Booted { boot_s: b });
        }
        if let Some(code) = exited {
            if telemetry.is_none() && telemetry_open {
                // QEMU connected and left before we accepted: its lines
                // are still queued on the connection.
                match tokio::time::timeout(Duration::from_millis(200), listener.accept()).await {
                    Ok(Ok((stream, _))) => telemetry = Some(BufReader::new(stream)),
                    _ => telemetry_open = false,
                }
            }
            if !console_open && (!telemetry_open || telemetry.is_none()) {
                stop = Some(StopReason::QemuExited(code));
            } else if stop.is_none() {
                // QEMU is gone: drain what is buffered, briefly.
                let drain = async {
                    while console_open {
                        match next_line(&mut console, &mut cbuf).await {
                            Some(()) => s.console_line(&mut cbuf).await,
                            None => console_open = false,
                        }
                    }
                    if let Some(t) = telemetry.as_mut() {
                        while let Some(()) = next_line(t, &mut tbuf).await {
                            s.telemetry_line(&mut tbuf).await;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                stop = Some(StopReason::QemuExited(code));
            }
        }
    }
    let stop = stop.expect("loop ends with a reason");
    if boot_s.is_none() && s.watch.booted() {
        // `ready` came in the last drain, after QEMU had exited.
        let b = started.elapsed().as_secs_f64();
        boot_s = Some(b);
        s.send(Output::Booted { boot_s: b });
    }
    s.send(Output::Stopping(stop.clone()));
    if exited.is_none() {
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }
    let log_errors: Vec<String> = [s.console_log.close().await, s.telemetry_log.close().await]
        .into_iter()
        .flatten()
        .collect();
    let qemu_stderr = tokio::time::timeout(Duration::from_secs(2), stderr_task)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    Ok(RunOutcome {
        stop,
        boot_s,
        wall_s: started.elapsed().as_secs_f64(),
        argv,
        qemu_stderr: qemu_stderr.trim().to_string(),
        guest_silent: s.lines_seen == 0,
        log_errors,
    })
}
