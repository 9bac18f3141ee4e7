//! What a user does with `paddock exec -it`, `paddock attach` and pipes, as scenarios that run
//! against any sandbox: a real one (`e2e_terminal`, needs KVM) or a stand-in serving the real
//! guest-init control service on the host (`cli_terminal`, runs everywhere). `paddock` builds
//! the command line for the sandbox called `name` (`paddock(&["exec", ...])`).
//!
//! Every expected text is computed on the other side (`$((1+1))`), so the terminal's own echo
//! of what was typed can never match it.

use super::{wait, Terminal, ANSWER};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Builds a `paddock` command line for the sandbox under test.
pub type Paddock<'a> = &'a dyn Fn(&[&str]) -> Command;

pub fn exec_it_follows_the_window_passes_ctrl_c_and_ends_on_ctrl_d(paddock: Paddock, name: &str) {
    let mut term = Terminal::new(30, 100);
    let before = term.settings();
    let mut child = term.spawn(paddock(&["exec", "-it", name, "--", "sh"]));

    term.send(b"stty size; echo TERM=$TERM-$((1+1))\r");
    term.expect("30 100");
    term.expect("TERM=xterm-256color-2");
    assert_ne!(
        term.settings(),
        before,
        "the host terminal is raw meanwhile"
    );

    term.resize(40, 120);
    // SIGWINCH is asynchronous: ask until the new size shows.
    let start = Instant::now();
    loop {
        term.send(b"echo size-$(stty size | tr ' ' x)-end\r");
        std::thread::sleep(Duration::from_millis(500));
        let shown = term.text();
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
    assert_eq!(wait(&mut child, &term), Some(0), "{}", term.text());
    assert_eq!(term.settings(), before, "the host terminal is restored");
}

pub fn detach_then_attach_returns_to_the_same_shell(paddock: Paddock, name: &str) {
    let mut term = Terminal::new(30, 100);
    let before = term.settings();
    let mut child = term.spawn(paddock(&["exec", "-it", name, "--", "sh"]));
    term.send(b"X=kept; echo set-$((2+2))\r");
    term.expect("set-4");
    // What the shell prints while detached is kept and shown on attach.
    term.send(b"(sleep 3; echo late-$((6*7))) &\r");
    term.send(b"\x10\x11");
    assert_eq!(wait(&mut child, &term), Some(0), "{}", term.text());
    term.expect("detached");
    assert_eq!(term.settings(), before, "the host terminal is restored");

    std::thread::sleep(Duration::from_secs(4));
    let mut again = Terminal::new(20, 60);
    let before = again.settings();
    let mut child = again.spawn(paddock(&["attach", name]));
    again.expect("late-42");
    again.send(b"echo var=$X-$((1+1))\r");
    again.expect("var=kept-2");
    again.send(b"stty size\r");
    again.expect("20 60");
    again.send(b"exit 3\r");
    assert_eq!(wait(&mut child, &again), Some(3), "{}", again.text());
    assert_eq!(again.settings(), before);

    // Nothing is left to attach to.
    let mut child = again.spawn(paddock(&["attach", name]));
    assert_eq!(
        wait(&mut child, &again),
        Some(paddock_vmm::exit_codes::PADDOCK_ERROR)
    );
    again.expect("no detached terminal session");
    assert_eq!(again.settings(), before);
}

pub fn a_lone_ctrl_p_is_typed_through(paddock: Paddock, name: &str) {
    let mut term = Terminal::new(24, 80);
    let script = "read -r line; [ \"$line\" = \"$(printf '\\020ab')\" ] && echo same-$((1+1))";
    let mut child = term.spawn(paddock(&["exec", "-it", name, "--", "sh", "-c", script]));
    term.send(b"\x10ab\r");
    term.expect("same-2");
    assert_eq!(wait(&mut child, &term), Some(0), "{}", term.text());
}

pub fn a_signal_to_paddock_hangs_the_session_up(paddock: Paddock, name: &str) {
    let mut term = Terminal::new(24, 80);
    let before = term.settings();
    let mut child = term.spawn(paddock(&["exec", "-it", name, "--", "sh"]));
    term.send(b"echo up-$((1+1))\r");
    term.expect("up-2");
    // SAFETY: plain syscall on a process this test started.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    assert_eq!(wait(&mut child, &term), Some(128 + libc::SIGTERM));
    term.expect("hung up");
    assert_eq!(term.settings(), before);
}

pub fn tty_without_interactive_signals_ctrl_c(paddock: Paddock, name: &str) {
    let mut term = Terminal::new(24, 80);
    let before = term.settings();
    let script = "stty size; echo ready-$((1+1)); sleep 1000";
    let mut child = term.spawn(paddock(&["exec", "-t", name, "--", "sh", "-c", script]));
    term.expect("24 80");
    term.expect("ready-2");
    assert_eq!(term.settings(), before, "no raw mode without -i");
    // The host terminal turns Ctrl-C into SIGINT for paddock, which forwards it.
    term.send(b"\x03");
    assert_eq!(
        wait(&mut child, &term),
        Some(128 + libc::SIGINT),
        "{}",
        term.text()
    );
}

pub fn a_missing_command_on_a_terminal_is_127(paddock: Paddock, name: &str) {
    let term = Terminal::new(24, 80);
    let before = term.settings();
    let mut child = term.spawn(paddock(&["exec", "-it", name, "--", "/nonexistent/cmd"]));
    assert_eq!(wait(&mut child, &term), Some(127), "{}", term.text());
    assert_eq!(term.settings(), before);
}

pub fn without_a_terminal_pipes_keep_working(paddock: Paddock, name: &str) {
    for tty in [&[][..], &["-it"][..]] {
        let mut args = vec!["exec"];
        args.extend_from_slice(tty);
        args.extend_from_slice(&[name, "--", "sh", "-c", "cat; echo err >&2"]);
        let mut child = paddock(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hi\n",
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr, "err\n", "{args:?}");
        assert_eq!(out.status.code(), Some(0));
    }
}
