//! A pseudo-terminal on the host standing in for the user's terminal emulator: the tests type
//! into its master, read what it shows, resize it, and compare its settings before and after.
#![allow(dead_code)]

pub mod scenarios;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Device status report 6: "where is the cursor?".
const CURSOR_QUERY: &[u8] = b"\x1b[6n";

/// How long the other side may take to answer (the lab is slow).
pub const ANSWER: Duration = Duration::from_secs(60);

/// A pseudo-terminal on the host, standing in for the user's terminal emulator.
pub struct Terminal {
    master: File,
    slave: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
    /// How much of the output `expect` has consumed.
    seen: usize,
}

impl Terminal {
    pub fn new(rows: u16, cols: u16) -> Self {
        use rustix::pty::OpenptFlags;
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = rustix::pty::openpt(flags).expect("openpt");
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags).expect("slave");
        let master = File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let mut answerer = master.try_clone().unwrap();
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut scanned = 0;
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut output = sink.lock().unwrap();
                output.extend_from_slice(&buf[..n]);
                // A line editor (busybox ash's, on SIGWINCH) asks where the cursor is and
                // waits for the answer: answer as a terminal emulator does.
                let from = scanned.min(output.len());
                let queries = output[from..]
                    .windows(CURSOR_QUERY.len())
                    .filter(|w| *w == CURSOR_QUERY)
                    .count();
                scanned = output.len().saturating_sub(CURSOR_QUERY.len() - 1);
                drop(output);
                for _ in 0..queries {
                    let _ = answerer.write_all(b"\x1b[1;1R");
                }
            }
        });
        let terminal = Self {
            master,
            slave,
            output,
            seen: 0,
        };
        terminal.resize(rows, cols);
        terminal
    }

    /// Changes the window size, as a terminal emulator does: the kernel sends SIGWINCH to the
    /// foreground process group (paddock).
    pub fn resize(&self, rows: u16, cols: u16) {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.master, size).unwrap();
    }

    /// Starts `cmd` with this terminal as its controlling terminal and stdin, stdout, stderr,
    /// and `TERM=xterm-256color` as a terminal emulator would set it.
    pub fn spawn(&self, mut cmd: Command) -> Child {
        let stdio = || Stdio::from(self.slave.try_clone().unwrap());
        cmd.stdin(stdio()).stdout(stdio()).stderr(stdio());
        cmd.env("TERM", "xterm-256color");
        // SAFETY: runs in the forked child before exec, after std put the slave on fds 0-2;
        // only two raw system calls (setsid, ioctl TIOCSCTTY), async-signal-safe and
        // allocation-free.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid()?;
                // SAFETY: fd 0 is open (the slave) for this call.
                rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(0))?;
                Ok(())
            });
        }
        cmd.spawn().expect("spawn paddock")
    }

    /// Types `keys`.
    pub fn send(&self, keys: &[u8]) {
        (&self.master).write_all(keys).unwrap();
    }

    /// Waits until the output after what was already consumed contains `needle`, and consumes
    /// it.
    pub fn expect(&mut self, needle: &str) {
        let needle = needle.as_bytes();
        let start = Instant::now();
        loop {
            {
                let output = self.output.lock().unwrap();
                let fresh = &output[self.seen..];
                if let Some(at) = fresh.windows(needle.len()).position(|w| w == needle) {
                    self.seen += at + needle.len();
                    return;
                }
                assert!(
                    start.elapsed() < ANSWER,
                    "no {:?} on the terminal; it shows {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(fresh)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the terminal showed.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// The terminal's settings, to compare before and after paddock.
    pub fn settings(&self) -> String {
        format!(
            "{:?}",
            rustix::termios::tcgetattr(self.slave.as_fd()).unwrap()
        )
    }
}

/// Waits for `child` to exit (at most [`ANSWER`]); returns its exit code.
pub fn wait(child: &mut Child, terminal: &Terminal) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > ANSWER {
            let _ = child.kill();
            panic!(
                "paddock did not exit; the terminal shows {:?}",
                terminal.text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
