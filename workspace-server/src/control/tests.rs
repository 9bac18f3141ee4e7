//! The control connection driven as the VMM would: save a session's state, load one, and
//! malformed input that ends only its own connection.

use super::*;
use crate::owner::Owner;
use crate::saved::SavedState;
use paddock_protocol::workspace::{HELLO, SESSION_ID_LEN};
use paddock_protocol::WorkspaceMode;

const AGENT: Owner = Owner {
    uid: 4242,
    gid: 4343,
};

fn server(dir: &std::path::Path) -> Arc<WorkspaceServer> {
    Arc::new(WorkspaceServer::new(dir, WorkspaceMode::Live, AGENT).unwrap())
}

/// Sends `request` on a control connection answered by `server` in this thread; gives the
/// answer's bytes and how the connection ended.
fn control(server: &WorkspaceServer, request: &[&[u8]]) -> (Vec<u8>, Result<(), ControlError>) {
    let (mut host, theirs) = UnixStream::pair().unwrap();
    host.write_all(&request.concat()).unwrap();
    host.shutdown(std::net::Shutdown::Write).unwrap();
    let ended = server.answer_control(theirs);
    (read_answer(&mut host), ended)
}

/// Everything the server wrote before it closed (a close with request bytes left unread
/// resets the connection: what came before still counts).
fn read_answer(host: &mut UnixStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match host.read(&mut chunk) {
            Ok(0) => return answer,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return answer,
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
}

fn save(server: &WorkspaceServer) -> Vec<u8> {
    let (answer, ended) = control(server, &[CONTROL_HELLO, &[SAVE_STATE]]);
    ended.unwrap();
    let len = u32::from_le_bytes(answer[..4].try_into().unwrap());
    assert_eq!(usize::try_from(len).unwrap(), answer.len() - 4);
    answer[4..].to_vec()
}

fn load(server: &WorkspaceServer, state: &[u8]) -> (Vec<u8>, Result<(), ControlError>) {
    let len = u32::try_from(state.len()).unwrap().to_le_bytes();
    control(server, &[CONTROL_HELLO, &[LOAD_STATE], &len, state])
}

/// A new mount's connection, served in a thread: the session id the server gave, and the
/// guest's end (closing it ends the session).
fn mount(server: &Arc<WorkspaceServer>) -> (u64, UnixStream, std::thread::JoinHandle<()>) {
    let (mut guest, theirs) = UnixStream::pair().unwrap();
    let serving = {
        let server = server.clone();
        std::thread::spawn(move || {
            let _ = server.serve(theirs);
        })
    };
    guest.write_all(HELLO).unwrap();
    let mut id = [0u8; SESSION_ID_LEN];
    guest.read_exact(&mut id).unwrap();
    (u64::from_le_bytes(id), guest, serving)
}

#[test]
fn a_save_with_no_session_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    assert!(save(&server(dir.path())).is_empty());
}

#[test]
fn a_save_during_a_session_is_its_state_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (session, guest, serving) = mount(&server);
    let state = save(&server);
    assert_eq!(SavedState::decode(&state).unwrap().session, session);
    drop(guest);
    serving.join().unwrap();
    assert!(save(&server).is_empty());
    let (answer, ended) = load(&server, &state);
    ended.unwrap();
    assert_eq!(answer, [STATE_LOADED]);
    assert!(server.has_loaded_state());
    // Length 0 forgets it: none comes.
    let (answer, ended) = load(&server, &[]);
    ended.unwrap();
    assert_eq!(answer, [STATE_LOADED]);
    assert!(!server.has_loaded_state());
}

#[test]
fn a_corrupt_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (_, guest, serving) = mount(&server);
    let mut state = save(&server);
    drop(guest);
    serving.join().unwrap();
    let last = state.len() - 1;
    state[last] ^= 0x01;
    let (answer, ended) = load(&server, &state);
    ended.unwrap();
    assert_eq!(answer, [STATE_REFUSED]);
    assert!(!server.has_loaded_state());
    let (answer, ended) = load(&server, b"not a state at all");
    ended.unwrap();
    assert_eq!(answer, [STATE_REFUSED]);
}

#[test]
fn malformed_control_input_ends_that_connection_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (answer, ended) = control(&server, &[b"PADDOCK-WORKSPACE/2\n", &[SAVE_STATE]]);
    assert!(answer.is_empty());
    assert!(matches!(ended, Err(ControlError::Hello)));
    let (answer, ended) = control(&server, &[CONTROL_HELLO, b"?"]);
    assert!(answer.is_empty());
    assert!(matches!(ended, Err(ControlError::Command(b'?'))));
    let too_big = u32::try_from(MAX_STATE_BYTES + 1).unwrap().to_le_bytes();
    let (answer, ended) = control(&server, &[CONTROL_HELLO, &[LOAD_STATE], &too_big]);
    assert_eq!(answer, [STATE_REFUSED]);
    assert!(matches!(ended, Err(ControlError::TooLarge(_))));
    let (answer, ended) = control(
        &server,
        &[CONTROL_HELLO, &[LOAD_STATE], &10u32.to_le_bytes(), b"short"],
    );
    assert!(answer.is_empty());
    assert!(matches!(ended, Err(ControlError::Io(_))));
}

#[test]
fn the_control_thread_answers_connection_after_connection() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let server = server(dir.path());
    server
        .start_control(UnixListener::bind(&socket).unwrap())
        .unwrap();
    let ask = |request: &[u8]| {
        let mut host = UnixStream::connect(&socket).unwrap();
        host.write_all(request).unwrap();
        host.shutdown(std::net::Shutdown::Write).unwrap();
        read_answer(&mut host)
    };
    assert!(ask(b"garbage").is_empty());
    let save = [&CONTROL_HELLO[..], &[SAVE_STATE]].concat();
    assert_eq!(ask(&save), 0u32.to_le_bytes());
    let clear = [&CONTROL_HELLO[..], &[LOAD_STATE], &[0; 4]].concat();
    assert_eq!(ask(&clear), [STATE_LOADED]);
}
