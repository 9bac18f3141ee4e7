//! End-to-end tests of terminal sessions: `paddock exec -it`, `paddock run` on a terminal,
//! detach and `paddock attach`, driven through a pseudo-terminal this test opens on the host
//! (the test plays the user's terminal emulator: it types into the master and reads from it).
//!
//! They need hardware KVM (natively, or inside the lab: `cargo xtask ci`); without it each test
//! says so and returns. Minimal profile (busybox guest). Every expected text is computed by the
//! guest (`$((1+1))`), so the terminal's own echo of what was typed can never match it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{e2e_available, text, Scratch};

/// How long the guest may take to answer (the lab is slow).
const ANSWER: Duration = Duration::from_secs(60);

/// A pseudo-terminal on the host, standing in for the user's terminal emulator.
struct Terminal {
    master: File,
    slave: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
    /// How much of the output `expect` has consumed.
    seen: usize,
}

impl Terminal {
    fn new(rows: u16, cols: u16) -> Self {
        use rustix::pty::OpenptFlags;
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = rustix::pty::openpt(flags).expect("openpt");
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags).expect("slave");
        let master = File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
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
    fn resize(&self, rows: u16, cols: u16) {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.master, size).unwrap();
    }

    /// Starts `cmd` with this terminal as its controlling terminal and stdin, stdout, stderr.
    fn spawn(&self, mut cmd: Command) -> Child {
        let stdio = || Stdio::from(self.slave.try_clone().unwrap());
        cmd.stdin(stdio()).stdout(stdio()).stderr(stdio());
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
    fn send(&self, keys: &[u8]) {
        (&self.master).write_all(keys).unwrap();
    }

    /// Waits until the output after what was already consumed contains `needle`.
    fn expect(&mut self, needle: &str) {
        let start = Instant::now();
        loop {
            {
                let output = self.output.lock().unwrap();
                let fresh = String::from_utf8_lossy(&output[self.seen..]).into_owned();
                if let Some(at) = fresh.find(needle) {
                    // Byte offsets of the lossy text match the bytes for ASCII needles.
                    self.seen += at + needle.len();
                    return;
                }
                assert!(
                    start.elapsed() < ANSWER,
                    "no {needle:?} on the terminal; it shows {fresh:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the terminal showed.
    fn text(&self) -> String {
        text(&self.output.lock().unwrap())
    }

    /// The terminal's settings, to compare before and after paddock.
    fn settings(&self) -> String {
        format!(
            "{:?}",
            rustix::termios::tcgetattr(self.slave.as_fd()).unwrap()
        )
    }
}

/// Waits for `child` to exit (at most [`ANSWER`]); returns its exit code.
fn wait(child: &mut Child, terminal: &Terminal) -> Option<i32> {
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

/// Starts a minimal sandbox `name`.
fn sandbox(name: &str) -> Scratch {
    let s = Scratch::new();
    s.ok(&["start", "--name", name]);
    s
}

#[test]
fn exec_it_follows_the_window_passes_ctrl_c_and_ends_on_ctrl_d() {
    if !e2e_available() {
        return;
    }
    let s = sandbox("tty");
    let mut term = Terminal::new(30, 100);
    let before = term.settings();
    let mut paddock = term.spawn(s.paddock_command(&["exec", "-it", "tty", "--", "sh"]));

    term.send(b"stty size; echo TERM=$TERM-$((1+1))\r");
    term.expect("30 100");
    term.expect("-2");
    assert_ne!(
        term.settings(),
        before,
        "the host terminal is in raw mode meanwhile"
    );

    term.resize(40, 120);
    // SIGWINCH is asynchronous: ask until the new size shows.
    let start = Instant::now();
    loop {
        term.send(b"echo size-$(stty size | tr ' ' x)-end\r");
        let shown = {
            std::thread::sleep(Duration::from_millis(500));
            term.text()
        };
        if shown.contains("size-40x120-end") {
            break;
        }
        assert!(
            start.elapsed() < ANSWER,
            "the size never changed: {shown:?}"
        );
    }

    // Ctrl-C stops the foreground command; the shell stays.
    term.send(b"sleep 1000\r");
    std::thread::sleep(Duration::from_secs(1));
    term.send(b"\x03");
    term.send(b"echo alive-$((20+1))\r");
    term.expect("alive-21");

    // Ctrl-D at the prompt ends the shell, with status 0.
    term.send(b"\x04");
    assert_eq!(wait(&mut paddock, &term), Some(0), "{}", term.text());
    assert_eq!(term.settings(), before, "the host terminal is restored");
    s.ok(&["rm", "--force", "tty"]);
}

#[test]
fn detach_then_attach_returns_to_the_same_shell() {
    if !e2e_available() {
        return;
    }
    let s = sandbox("det");
    let mut term = Terminal::new(30, 100);
    let before = term.settings();
    let mut paddock = term.spawn(s.paddock_command(&["exec", "-it", "det", "--", "sh"]));
    term.send(b"X=kept; echo set-$((2+2))\r");
    term.expect("set-4");
    // Output printed while detached is kept and shown on attach.
    term.send(b"(sleep 3; echo late-$((6*7))) &\r");
    term.send(b"\x10\x11");
    assert_eq!(wait(&mut paddock, &term), Some(0), "{}", term.text());
    term.expect("detached");
    assert_eq!(
        term.settings(),
        before,
        "the host terminal is restored after detaching"
    );

    std::thread::sleep(Duration::from_secs(4));
    let mut again = Terminal::new(20, 60);
    let before = again.settings();
    let mut paddock = again.spawn(s.paddock_command(&["attach", "det"]));
    again.expect("late-42");
    again.send(b"echo var=$X-$((1+1))\r");
    again.expect("var=kept-2");
    again.send(b"stty size\r");
    again.expect("20 60");
    again.send(b"exit 3\r");
    assert_eq!(wait(&mut paddock, &again), Some(3), "{}", again.text());
    assert_eq!(again.settings(), before);

    // Nothing is left to attach to.
    let out = s.cli(&["attach", "det"]);
    assert_eq!(
        out.status.code(),
        Some(paddock_vmm::exit_codes::PADDOCK_ERROR)
    );
    s.ok(&["rm", "--force", "det"]);
}

#[test]
fn a_lone_ctrl_p_is_typed_through() {
    if !e2e_available() {
        return;
    }
    let s = sandbox("ctlp");
    let mut term = Terminal::new(24, 80);
    let script = "read -r line; [ \"$line\" = \"$(printf '\\020ab')\" ] && echo same-$((1+1))";
    let mut paddock =
        term.spawn(s.paddock_command(&["exec", "-it", "ctlp", "--", "sh", "-c", script]));
    term.send(b"\x10ab\r");
    term.expect("same-2");
    assert_eq!(wait(&mut paddock, &term), Some(0), "{}", term.text());
    s.ok(&["rm", "--force", "ctlp"]);
}

#[test]
fn a_signal_to_paddock_hangs_the_session_up_and_restores_the_terminal() {
    if !e2e_available() {
        return;
    }
    let s = sandbox("sig");
    let mut term = Terminal::new(24, 80);
    let before = term.settings();
    let mut paddock = term.spawn(s.paddock_command(&["exec", "-it", "sig", "--", "sh"]));
    term.send(b"echo up-$((1+1))\r");
    term.expect("up-2");
    // SAFETY: plain syscall on a process this test started.
    unsafe { libc::kill(paddock.id() as i32, libc::SIGTERM) };
    assert_eq!(wait(&mut paddock, &term), Some(128 + libc::SIGTERM));
    assert_eq!(term.settings(), before);
    s.ok(&["rm", "--force", "sig"]);
}

#[test]
fn without_a_terminal_pipes_keep_working() {
    if !e2e_available() {
        return;
    }
    let s = sandbox("pipes");
    for args in [
        &["exec", "pipes", "--", "cat"][..],
        &["exec", "-it", "pipes", "--", "cat"][..],
    ] {
        let mut child = s
            .paddock_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(text(&out.stdout), "hi\n", "{args:?}: {}", text(&out.stderr));
        assert_eq!(out.status.code(), Some(0));
    }
    s.ok(&["rm", "--force", "pipes"]);
}

#[test]
fn run_on_a_terminal_gets_one_unless_told_otherwise() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let mut term = Terminal::new(25, 90);
    let before = term.settings();
    let mut cmd = s.paddock();
    cmd.args(["run", "--", "sh", "-c", "stty size; tty; exit 5"]);
    let mut paddock = term.spawn(cmd);
    assert_eq!(wait(&mut paddock, &term), Some(5), "{}", term.text());
    term.expect("25 90");
    term.expect("/dev/pts/");
    assert_eq!(term.settings(), before);

    let mut cmd = s.paddock();
    cmd.args(["run", "-T", "--", "sh", "-c", "tty || echo no-tty-$((1+1))"]);
    let mut paddock = term.spawn(cmd);
    assert_eq!(wait(&mut paddock, &term), Some(0), "{}", term.text());
    term.expect("no-tty-2");
    s.assert_clean();
}
