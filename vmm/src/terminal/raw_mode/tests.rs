//! Raw mode on a real pseudo-terminal: set, and restored by drop, unwinding and the panic hook.
//! One test function for all of it, as the saved state is process-wide.

use super::*;
use rustix::pty::OpenptFlags;
use rustix::termios::{tcgetattr, LocalModes};

fn pty_pair() -> (OwnedFd, OwnedFd) {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags).unwrap();
    (master, slave)
}

fn is_cooked(fd: &OwnedFd) -> bool {
    let modes = tcgetattr(fd).unwrap().local_modes;
    modes.contains(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG)
}

fn settings(fd: &OwnedFd) -> String {
    format!("{:?}", tcgetattr(fd).unwrap())
}

#[test]
fn raw_mode_is_set_and_restored_on_every_way_out() {
    let (_master, slave) = pty_pair();
    let before = settings(&slave);
    assert!(is_cooked(&slave));

    // Drop.
    let guard = RawMode::enable(slave.as_fd()).unwrap();
    let raw = tcgetattr(&slave).unwrap().local_modes;
    assert!(!raw.intersects(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG));
    drop(guard);
    assert_eq!(settings(&slave), before);

    // Unwinding through the guard.
    let fd = slave.as_fd().try_clone_to_owned().unwrap();
    let unwound = std::panic::catch_unwind(move || {
        let _guard = RawMode::enable(fd.as_fd()).unwrap();
        panic!("test panic while raw");
    });
    assert!(unwound.is_err());
    assert_eq!(settings(&slave), before);

    // A panic on another thread while the guard still lives: the hook restores.
    let guard = RawMode::enable(slave.as_fd()).unwrap();
    assert!(!is_cooked(&slave));
    let panicked = std::thread::spawn(|| panic!("test panic on another thread")).join();
    assert!(panicked.is_err());
    assert_eq!(settings(&slave), before);
    drop(guard);
    assert_eq!(settings(&slave), before);

    // Without a guard, restore_terminal does nothing.
    restore_terminal();
    assert_eq!(settings(&slave), before);
}

#[test]
fn a_pipe_is_not_a_terminal() {
    let (reader, _writer) = std::io::pipe().unwrap();
    let fd: OwnedFd = reader.into();
    assert!(matches!(
        RawMode::enable(fd.as_fd()),
        Err(RawModeError::NotATerminal)
    ));
}

#[test]
fn window_size_reads_the_terminal() {
    let (master, slave) = pty_pair();
    assert_eq!(crate::terminal::window_size(&slave), None, "0x0 is unknown");
    let size = rustix::termios::Winsize {
        ws_row: 42,
        ws_col: 132,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, size).unwrap();
    assert_eq!(
        crate::terminal::window_size(&slave),
        Some(paddock_protocol::WindowSize {
            rows: 42,
            cols: 132
        })
    );
    let (reader, _writer) = std::io::pipe().unwrap();
    assert_eq!(crate::terminal::window_size(&reader), None);
}
