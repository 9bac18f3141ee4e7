//! End-to-end tests of terminal sessions: `paddock exec -it`, `paddock run` on a terminal,
//! detach and `paddock attach`, driven through a pseudo-terminal this test opens on the host
//! (the test plays the user's terminal emulator: it types into the master and reads from it).
//!
//! They need hardware KVM (natively, or inside the lab: `cargo xtask ci`); without it each test
//! says so and returns. Minimal profile (busybox guest). The same scenarios run without KVM
//! against a stand-in sandbox in `cli_terminal`.

mod common;
mod host_terminal;

use common::{e2e_available, Scratch};
use host_terminal::{scenarios, wait, Terminal};

/// Runs `scenario` against a fresh minimal sandbox `name`, then removes it.
fn in_sandbox(name: &str, scenario: fn(scenarios::Paddock, &str)) {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", name]);
    scenario(&|args: &[&str]| s.paddock_command(args), name);
    s.ok(&["rm", "--force", name]);
}

#[test]
fn exec_it_follows_the_window_passes_ctrl_c_and_ends_on_ctrl_d() {
    in_sandbox(
        "tty",
        scenarios::exec_it_follows_the_window_passes_ctrl_c_and_ends_on_ctrl_d,
    );
}

#[test]
fn detach_then_attach_returns_to_the_same_shell() {
    in_sandbox(
        "det",
        scenarios::detach_then_attach_returns_to_the_same_shell,
    );
}

#[test]
fn a_lone_ctrl_p_is_typed_through() {
    in_sandbox("ctlp", scenarios::a_lone_ctrl_p_is_typed_through);
}

#[test]
fn a_signal_to_paddock_hangs_the_session_up() {
    in_sandbox("sig", scenarios::a_signal_to_paddock_hangs_the_session_up);
}

#[test]
fn tty_without_interactive_signals_ctrl_c() {
    in_sandbox("tonly", scenarios::tty_without_interactive_signals_ctrl_c);
}

#[test]
fn a_missing_command_on_a_terminal_is_127() {
    in_sandbox("nocmd", scenarios::a_missing_command_on_a_terminal_is_127);
}

#[test]
fn without_a_terminal_pipes_keep_working() {
    in_sandbox("pipes", scenarios::without_a_terminal_pipes_keep_working);
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
