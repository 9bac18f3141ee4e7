//! The control exchange against a stand-in server speaking the protocol's side.

use super::*;
use std::os::unix::net::UnixListener;

/// Serves one control connection on `socket`: checks the hello, hands the command and what
/// followed it to `answer`, and writes what it returns.
fn one_server(
    socket: &Path,
    answer: impl FnOnce(u8, &mut UnixStream) -> Vec<u8> + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut hello = [0u8; CONTROL_HELLO.len() + 1];
        stream.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[..CONTROL_HELLO.len()], CONTROL_HELLO);
        let reply = answer(hello[CONTROL_HELLO.len()], &mut stream);
        stream.write_all(&reply).unwrap();
    })
}

fn length_prefixed(bytes: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(bytes.len()).unwrap().to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

#[test]
fn save_reads_the_servers_state_and_an_empty_one_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let server = one_server(&socket, |command, _| {
        assert_eq!(command, SAVE_STATE);
        length_prefixed(b"nodes and handles")
    });
    assert_eq!(save(&socket).unwrap(), Some(b"nodes and handles".to_vec()));
    server.join().unwrap();
    std::fs::remove_file(&socket).unwrap();
    let server = one_server(&socket, |_, _| length_prefixed(b""));
    assert_eq!(save(&socket).unwrap(), None);
    server.join().unwrap();
}

#[test]
fn save_refuses_a_state_larger_than_any_server_makes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let server = one_server(&socket, |_, _| {
        (u32::try_from(MAX_STATE_BYTES).unwrap() + 1)
            .to_le_bytes()
            .to_vec()
    });
    assert!(matches!(save(&socket), Err(ControlError::TooLarge(_))));
    server.join().unwrap();
}

#[test]
fn load_sends_the_state_and_reports_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let server = one_server(&socket, |command, stream| {
        assert_eq!(command, LOAD_STATE);
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).unwrap();
        let mut state = vec![0u8; u32::from_le_bytes(len) as usize];
        stream.read_exact(&mut state).unwrap();
        assert_eq!(state, b"saved");
        vec![STATE_LOADED]
    });
    load(&socket, Some(b"saved")).unwrap();
    server.join().unwrap();
    std::fs::remove_file(&socket).unwrap();
    let server = one_server(&socket, |_, stream| {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).unwrap();
        assert_eq!(len, [0; 4], "no state is sent as length 0");
        vec![STATE_REFUSED]
    });
    assert!(matches!(load(&socket, None), Err(ControlError::Refused)));
    server.join().unwrap();
}

#[test]
fn without_a_server_there_is_nothing_to_keep() {
    let dir = tempfile::tempdir().unwrap();
    let paths = SandboxPaths::new(dir.path(), "a").unwrap();
    let companion = WorkspaceCompanion::new(&paths);
    assert_eq!(companion.save(), None);
    assert!(!companion.restore(Some(b"ignored")), "nothing to do");
    assert!(matches!(
        save(&socket(&paths)),
        Err(ControlError::Connect { .. })
    ));
}
