//! Runs the lab machine: qemu (TCG, `-cpu max` for emulated AMD-V, `-M microvm`), its serial console
//! streamed through the [`ConsoleFilter`] to our stdout, bounded by an overall timeout.

use super::clock;
use super::console::{ConsoleFilter, Markers, Step};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Guest RAM of the lab: room for the initramfs (which carries the agent root image, 1.5 GiB
/// with the coding agents, and briefly its cpio copy while it unpacks), the templates and
/// snapshots the tests keep on the lab's tmpfs, and nested guests of 2 GiB each (qemu
/// allocates it lazily; the build machines have 24 GiB).
const LAB_MEMORY_MIB: u32 = 12288;
/// `tsc=reliable` keeps the clock fine-grained with multi-threaded TCG (else 4 ms jiffies);
/// `quiet loglevel=0` hides the boot log; `panic=-1` turns a panic into a reboot, which
/// `-no-reboot` turns into qemu exiting.
const LAB_CMDLINE: &str = "console=ttyS0 tsc=reliable panic=-1 rdinit=/init";
const QUIET: &str = "quiet loglevel=0";
/// How long the lab may take to power off after the command finished.
const POWEROFF_GRACE: Duration = Duration::from_secs(30);
/// Lines longer than this are passed on in pieces (binary output without newlines).
const MAX_LINE: usize = 1 << 20;
/// Bytes of an overlong line held back, more than any marker line.
const MARKER_ROOM: usize = 256;
/// Bound on the qemu stderr kept for error reports.
const MAX_STDERR: usize = 64 << 10;
/// The lab reaches its /init in about 3 s; one that has not after this long hung while booting
/// (it happens to qemu TCG now and then) and is worth starting again.
const BOOT_LIMIT: Duration = Duration::from_secs(120);
/// A lab whose console (its heartbeat every [`super::script::HEARTBEAT_SECS`] included) has been
/// quiet this long has stalled.
const STALL_LIMIT: Duration = Duration::from_secs(150);

/// How the lab machine itself failed, in a way a fresh lab may not repeat.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DownKind {
    /// It hung before its /init ran: nothing of the command ran.
    BootHang,
    /// It went down (its kernel panicked, or qemu died) before the command finished. paddock
    /// runs as a user process in the lab, so this is the lab's own failure (KVM nested under
    /// qemu's emulated AMD-V), not a result of the command.
    Crash,
    /// Its console went quiet, heartbeat included, for [`STALL_LIMIT`]: its emulated CPUs
    /// stopped (seen with nested KVM under qemu TCG), so no watchdog inside it could report.
    Stall,
}

/// The lab machine went down before the command finished.
#[derive(Debug)]
pub struct LabDown {
    pub kind: DownKind,
    /// What happened, with the last console lines.
    pub report: String,
    /// The steps the command reported done before (see [`super::console::Markers::done`]).
    pub progress: Vec<String>,
}

impl std::fmt::Display for LabDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.report)
    }
}

impl std::error::Error for LabDown {}

/// The result of a lab run.
#[derive(Debug)]
pub struct LabOutcome {
    /// The command's exit status.
    pub status: i32,
    /// Guest uptime (seconds) when the lab's /init started, i.e. the lab kernel's boot time.
    pub init_uptime: Option<f64>,
    /// Host wall clock from spawning qemu to /init starting.
    pub init_wall: Option<Duration>,
    /// Host wall clock from spawning qemu to the command's exit status.
    pub wall: Duration,
}

/// Messages from the console reader thread.
enum Event {
    Init {
        uptime: f64,
        at: Instant,
    },
    Exited(i32),
    Progress(String),
    LabError(String),
    /// The console closed (qemu exited) without an exit marker.
    Eof,
}

/// Kills qemu if we leave early (error, timeout, panic).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Boots `vmlinuz` with `initrd`, streams the command's output, returns its status.
/// With `verbose`, the kernel logs normally and every hidden console line is copied to stderr.
pub fn run(
    vmlinuz: &Path,
    initrd: &Path,
    markers: &Markers,
    timeout: Duration,
    verbose: bool,
) -> Result<LabOutcome> {
    let started = Instant::now();
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args([
            "-M",
            "microvm",
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-smp",
            "2",
        ])
        .args(["-m", &LAB_MEMORY_MIB.to_string()])
        .args(["-display", "none", "-nodefaults", "-no-reboot"])
        // The console on stdio; stdin is /dev/null, so qemu never touches the user's terminal.
        .args([
            "-chardev",
            "stdio,id=console,signal=off",
            "-serial",
            "chardev:console",
        ])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(kernel_cmdline(verbose))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ChildGuard(command.spawn().context("starting qemu-system-x86_64")?);
    let stdout = child.0.stdout.take().context("qemu stdout")?;
    let stderr = child.0.stderr.take().context("qemu stderr")?;

    let filter = Arc::new(Mutex::new(ConsoleFilter::new(markers.clone())));
    let (events, received) = mpsc::channel();
    let last_output = Arc::new(Mutex::new(Instant::now()));
    let reader = {
        let filter = Arc::clone(&filter);
        let last_output = Arc::clone(&last_output);
        std::thread::spawn(move || read_console(stdout, &filter, &events, &last_output, verbose))
    };
    let qemu_stderr = Arc::new(Mutex::new(Vec::new()));
    let stderr_reader = {
        let qemu_stderr = Arc::clone(&qemu_stderr);
        std::thread::spawn(move || collect_bounded(stderr, &qemu_stderr))
    };
    let report = |what: &str| {
        let tail = filter.lock().map(|f| f.tail()).unwrap_or_default();
        let stderr = qemu_stderr
            .lock()
            .map(|e| String::from_utf8_lossy(&e).into_owned())
            .unwrap_or_default();
        let tail = if tail.is_empty() {
            "  (no console output)\n".to_owned()
        } else {
            tail
        };
        let stderr = if stderr.trim().is_empty() {
            String::new()
        } else {
            format!("qemu stderr:\n{stderr}")
        };
        format!("{what}; last console lines:\n{tail}{stderr}")
    };

    let deadline = started + timeout;
    let boot_deadline = started + BOOT_LIMIT.min(timeout);
    let (mut init_uptime, mut init_wall) = (None, None);
    let mut progress = Vec::new();
    let down = |kind, report: String, progress: &mut Vec<String>| -> anyhow::Error {
        LabDown {
            kind,
            report,
            progress: std::mem::take(progress),
        }
        .into()
    };
    loop {
        let quiet_since = last_output.lock().map_or_else(|_| Instant::now(), |at| *at);
        let until = if init_wall.is_none() {
            boot_deadline
        } else {
            deadline.min(quiet_since + STALL_LIMIT)
        };
        let remaining = until.saturating_duration_since(Instant::now());
        match received.recv_timeout(remaining) {
            Ok(Event::Init { uptime, at }) => {
                init_uptime = Some(uptime);
                init_wall = Some(at - started);
            }
            Ok(Event::Progress(label)) => progress.push(label),
            Ok(Event::Exited(status)) => {
                let wall = started.elapsed();
                wait_for_poweroff(&mut child.0);
                let _ = reader.join();
                return Ok(LabOutcome {
                    status,
                    init_uptime,
                    init_wall,
                    wall,
                });
            }
            Ok(Event::LabError(message)) => {
                bail!("{}", report(&format!("the lab failed: {message}")))
            }
            Ok(Event::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.0.wait()?;
                let _ = stderr_reader.join();
                let what =
                    format!("the lab crashed: qemu exited ({status}) before the command finished");
                return Err(down(DownKind::Crash, report(&what), &mut progress));
            }
            Err(mpsc::RecvTimeoutError::Timeout) if init_wall.is_none() && timeout > BOOT_LIMIT => {
                let what = format!(
                    "the lab machine did not reach its /init within {} s",
                    BOOT_LIMIT.as_secs()
                );
                return Err(down(DownKind::BootHang, report(&what), &mut progress));
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => bail!(
                "{}",
                report(&format!(
                    "the lab timed out after {} s (PADDOCK_LAB_TIMEOUT)",
                    timeout.as_secs()
                ))
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let quiet = last_output.lock().map_or(Duration::ZERO, |at| at.elapsed());
                if quiet >= STALL_LIMIT {
                    let what = format!(
                        "the lab stalled: its console, heartbeat included, was quiet for {} s",
                        quiet.as_secs()
                    );
                    return Err(down(DownKind::Stall, report(&what), &mut progress));
                }
            }
        }
    }
}

/// The lab kernel's command line (`PADDOCK_LAB_CMDLINE` appends parameters).
fn kernel_cmdline(verbose: bool) -> String {
    let mut cmdline = LAB_CMDLINE.to_owned();
    if let Some(khz) = clock::host_tsc_khz() {
        cmdline.push_str(&format!(" tsc_early_khz={khz}"));
    }
    if !verbose {
        cmdline.push_str(&format!(" {QUIET}"));
    }
    // Extra lab kernel parameters, for experiments (e.g. `clearcpuid=…`).
    if let Ok(extra) = std::env::var("PADDOCK_LAB_CMDLINE") {
        cmdline.push(' ');
        cmdline.push_str(extra.trim());
    }
    cmdline
}

/// Reads the console, prints the command's output as it arrives, reports markers.
fn read_console(
    mut console: impl Read,
    filter: &Mutex<ConsoleFilter>,
    events: &mpsc::Sender<Event>,
    last_output: &Mutex<Instant>,
    verbose: bool,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match console.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Ok(mut at) = last_output.lock() {
            *at = Instant::now();
        }
        pending.extend_from_slice(&buf[..n]);
        let mut consumed = 0;
        while let Some(end) = pending[consumed..].iter().position(|&b| b == b'\n') {
            let line = &pending[consumed..consumed + end];
            handle_line(line, filter, events, verbose);
            consumed += end + 1;
        }
        pending.drain(..consumed);
        if pending.len() > MAX_LINE {
            // Pass most of an overlong line on; keep a tail so a marker is never split.
            let keep = pending.split_off(pending.len() - MARKER_ROOM);
            let step = filter.lock().map(|mut f| f.fragment(&pending));
            if let Ok(Step::Show { bytes, .. }) = step {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&bytes).and_then(|()| out.flush());
            }
            pending = keep;
        }
    }
    if !pending.is_empty() {
        handle_line(&pending, filter, events, verbose);
    }
    let _ = events.send(Event::Eof);
}

fn handle_line(
    line: &[u8],
    filter: &Mutex<ConsoleFilter>,
    events: &mpsc::Sender<Event>,
    verbose: bool,
) {
    let step = match filter.lock() {
        Ok(mut filter) => filter.line(line),
        Err(_) => return,
    };
    let mut out = std::io::stdout().lock();
    match step {
        Step::Hide => {
            if verbose {
                eprintln!("lab| {}", String::from_utf8_lossy(line).trim_end());
            }
        }
        Step::Show { bytes, newline } => {
            let _ = out.write_all(&bytes);
            if newline {
                let _ = out.write_all(b"\n");
            }
            let _ = out.flush();
        }
        Step::InitReached(uptime) => {
            let _ = events.send(Event::Init {
                uptime,
                at: Instant::now(),
            });
        }
        Step::Exited { status, before } => {
            let _ = out.write_all(&before).and_then(|()| out.flush());
            let _ = events.send(Event::Exited(status));
        }
        Step::Progress { label, before } => {
            let _ = out.write_all(&before).and_then(|()| out.flush());
            let _ = events.send(Event::Progress(label));
        }
        Step::LabError(message) => {
            let _ = events.send(Event::LabError(message));
        }
    }
}

/// Keeps at most `MAX_STDERR` bytes of `stream`.
fn collect_bounded(mut stream: impl Read, into: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        if let Ok(mut kept) = into.lock() {
            let room = MAX_STDERR.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
    }
}

/// Gives the lab time to power off after the command finished, then kills it.
fn wait_for_poweroff(child: &mut Child) {
    let deadline = Instant::now() + POWEROFF_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
}
