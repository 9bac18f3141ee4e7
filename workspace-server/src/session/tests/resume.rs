//! A mount carried across a "snapshot": its state saved, the connection ended, the state loaded
//! (into a fresh server, as a restore in a new process does, or the same one), and a resuming
//! connection that answers the old node ids and handles — or refuses them, never with another
//! file's data.

use super::*;
use paddock_protocol::workspace::{NOT_RESUMED, RESUMED, RESUME_HELLO};
use std::time::Instant;

const FORGET: u32 = 2;
const RENAME: u32 = 12;
const BATCH_FORGET: u32 = 42;
/// How long a resume waits for its state in these tests.
const SHORT_WAIT: Duration = Duration::from_millis(200);

fn server(ws: &Path) -> Arc<WorkspaceServer> {
    Arc::new(
        WorkspaceServer::new(ws, WorkspaceMode::Live, AGENT)
            .unwrap()
            .with_resume_wait(SHORT_WAIT),
    )
}

/// Connects with the resume hello for `session`: the guest (its server thread serving) and
/// the server's answer byte.
fn resume(server: Arc<WorkspaceServer>, session: u64) -> (Guest, u8) {
    let (mut stream, theirs) = UnixStream::pair().unwrap();
    let serving = std::thread::spawn(move || server.serve(theirs));
    stream.write_all(RESUME_HELLO).unwrap();
    stream.write_all(&session.to_le_bytes()).unwrap();
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).unwrap();
    let guest = Guest {
        stream,
        unique: 1000,
        server: serving,
        session,
        invalidated: Vec::new(),
        expired: Vec::new(),
    };
    (guest, answer[0])
}

/// Saves `guest`'s mount, ends its connection, and loads the state into `into`.
fn snapshot(from: &WorkspaceServer, guest: Guest, into: &WorkspaceServer) {
    let state = from.save_state();
    assert!(!state.is_empty());
    guest.hang_up().unwrap();
    into.load_state(&state).unwrap();
}

fn rename(guest: &mut Guest, from: &str, to: &str) -> i32 {
    let body = [
        &ROOT.to_le_bytes()[..],
        from.as_bytes(),
        &[0],
        to.as_bytes(),
        &[0],
    ];
    guest.ask(RENAME, ROOT, &body).error
}

#[test]
fn looked_up_nodes_and_open_handles_carry_on_in_a_new_server() {
    let (_root, ws) = host_tree();
    std::fs::create_dir(ws.join("dir")).unwrap();
    std::fs::write(ws.join("dir/inner"), b"deeper").unwrap();
    let before = server(&ws);
    let mut guest = Guest::to(before.clone());
    let file = guest.lookup(ROOT, "file").unwrap();
    let fh = guest.open(file, libc::O_RDONLY).unwrap();
    let dir = guest.lookup(ROOT, "dir").unwrap();
    let inner = guest.lookup(dir, "inner").unwrap();
    let inner_fh = guest.open(inner, libc::O_RDWR).unwrap();
    let session = guest.session;
    let after = server(&ws);
    snapshot(&before, guest, &after);

    let (mut guest, answer) = resume(after.clone(), session);
    assert_eq!(answer, RESUMED);
    let ino = |p: &str| std::fs::metadata(ws.join(p)).unwrap().ino();
    assert_eq!(guest.getattr(file), Ok(ino("file")));
    assert_eq!(guest.getattr(inner), Ok(ino("dir/inner")));
    assert_eq!(guest.read(file, fh, 4096), b"hello");
    assert_eq!(guest.read(inner, inner_fh, 4096), b"deeper");
    // Before anything else, the kernel was told to drop the attributes it cached of every
    // node the snapshot held (the host may have changed them since).
    let mut invalidated = guest.invalidated.clone();
    invalidated.sort_unstable();
    let mut held = vec![ROOT, file, dir, inner];
    held.sort_unstable();
    assert_eq!(invalidated, held);
    // And to expire every name they were known by (a name the host removed or replaced is
    // looked up again, not trusted until its timeout).
    let mut expired = guest.expired.clone();
    expired.sort_unstable();
    let mut names = vec![
        (ROOT, b"dir".to_vec()),
        (ROOT, b"file".to_vec()),
        (dir, b"inner".to_vec()),
    ];
    names.sort_unstable();
    assert_eq!(expired, names);
    // New lookups carry on with new ids, old nodes keep theirs.
    assert_eq!(guest.lookup(ROOT, "file"), Ok(file));
    let linked = guest.lookup(ROOT, "linked").unwrap();
    assert!(![ROOT, file, dir, inner].contains(&linked));
    // The session is the same: a save now gives the same id.
    let again = SavedState::decode(&after.save_state()).unwrap();
    assert_eq!(again.session, session);
    guest.hang_up().unwrap();
}

#[test]
fn the_same_server_resumes_after_its_session_ended() {
    let (_root, ws) = host_tree();
    let server = server(&ws);
    let mut guest = Guest::to(server.clone());
    let file = guest.lookup(ROOT, "file").unwrap();
    let fh = guest.open(file, libc::O_RDONLY).unwrap();
    let session = guest.session;
    snapshot(&server, guest, &server);
    let (mut guest, answer) = resume(server, session);
    assert_eq!(answer, RESUMED);
    assert_eq!(guest.read(file, fh, 4096), b"hello");
    guest.hang_up().unwrap();
}

#[test]
fn a_file_deleted_on_the_host_meanwhile_is_gone() {
    let (_root, ws) = host_tree();
    std::fs::write(ws.join("doomed"), b"bye").unwrap();
    let before = server(&ws);
    let mut guest = Guest::to(before.clone());
    let doomed = guest.lookup(ROOT, "doomed").unwrap();
    let fh = guest.open(doomed, libc::O_RDONLY).unwrap();
    let session = guest.session;
    let after = server(&ws);
    snapshot(&before, guest, &after);
    std::fs::remove_file(ws.join("doomed")).unwrap();

    let (mut guest, answer) = resume(after, session);
    assert_eq!(answer, RESUMED);
    assert_eq!(guest.getattr(doomed), Err(libc::ESTALE));
    assert_eq!(guest.try_read(doomed, fh, 4096), Err(libc::ESTALE));
    assert_eq!(guest.lookup(doomed, "x"), Err(libc::ESTALE));
    assert_eq!(guest.lookup(ROOT, "doomed"), Err(libc::ENOENT));
    guest.hang_up().unwrap();
}

#[test]
fn a_file_replaced_on_the_host_is_stale_never_the_new_file() {
    let (_root, ws) = host_tree();
    let before = server(&ws);
    let mut guest = Guest::to(before.clone());
    let file = guest.lookup(ROOT, "file").unwrap();
    let fh = guest.open(file, libc::O_RDONLY).unwrap();
    let session = guest.session;
    let after = server(&ws);
    snapshot(&before, guest, &after);
    // Another file (another inode: the old one still exists when it is made) at the same path.
    std::fs::write(ws.join("new"), b"IMPOSTOR").unwrap();
    std::fs::rename(ws.join("new"), ws.join("file")).unwrap();

    let (mut guest, answer) = resume(after, session);
    assert_eq!(answer, RESUMED);
    assert_eq!(guest.getattr(file), Err(libc::ESTALE));
    assert_eq!(guest.try_read(file, fh, 4096), Err(libc::ESTALE));
    assert_eq!(guest.open(file, libc::O_RDONLY), Err(libc::ESTALE));
    // Looked up anew, the new file is a new node.
    let new = guest.lookup(ROOT, "file").unwrap();
    assert_ne!(new, file);
    let new_fh = guest.open(new, libc::O_RDONLY).unwrap();
    assert_eq!(guest.read(new, new_fh, 4096), b"IMPOSTOR");
    guest.hang_up().unwrap();
}

#[test]
fn a_node_the_guest_renamed_is_found_at_its_new_name() {
    let (_root, ws) = host_tree();
    let before = server(&ws);
    let mut guest = Guest::to(before.clone());
    let file = guest.lookup(ROOT, "file").unwrap();
    assert_eq!(rename(&mut guest, "file", "moved"), 0);
    let session = guest.session;
    let after = server(&ws);
    snapshot(&before, guest, &after);
    // Something else at the old name: found there, the node would be stale.
    std::fs::write(ws.join("file"), b"other").unwrap();

    let (mut guest, answer) = resume(after, session);
    assert_eq!(answer, RESUMED);
    let moved_ino = std::fs::metadata(ws.join("moved")).unwrap().ino();
    assert_eq!(guest.getattr(file), Ok(moved_ino));
    guest.hang_up().unwrap();
}

#[test]
fn a_node_goes_only_when_the_guest_forgot_every_lookup() {
    let (_root, ws) = host_tree();
    let server = server(&ws);
    let mut guest = Guest::to(server.clone());
    let file = guest.lookup(ROOT, "file").unwrap();
    assert_eq!(guest.lookup(ROOT, "file"), Ok(file));
    guest.tell(FORGET, file, &[&1u64.to_le_bytes()]);
    assert!(guest.getattr(file).is_ok());
    guest.tell(FORGET, file, &[&1u64.to_le_bytes()]);
    assert_eq!(guest.getattr(file), Err(libc::EBADF));
    // Carried across a resume, counts stay the guest's: two lookups, forgotten one at a time.
    let file = guest.lookup(ROOT, "file").unwrap();
    assert_eq!(guest.lookup(ROOT, "file"), Ok(file));
    let session = guest.session;
    snapshot(&server, guest, &server);
    let (mut guest, answer) = resume(server, session);
    assert_eq!(answer, RESUMED);
    let one = [
        &1u32.to_le_bytes()[..],
        &[0; 4],
        &file.to_le_bytes(),
        &1u64.to_le_bytes(),
    ];
    guest.tell(BATCH_FORGET, 0, &one);
    assert!(guest.getattr(file).is_ok());
    guest.tell(BATCH_FORGET, 0, &one);
    assert_eq!(guest.getattr(file), Err(libc::EBADF));
    guest.hang_up().unwrap();
}

#[test]
fn a_resume_of_another_session_is_refused() {
    let (_root, ws) = host_tree();
    let server = server(&ws);
    let mut guest = Guest::to(server.clone());
    guest.lookup(ROOT, "file").unwrap();
    let session = guest.session;
    snapshot(&server, guest, &server);
    let (guest, answer) = resume(server.clone(), session ^ 1);
    assert_eq!(answer, NOT_RESUMED);
    assert!(matches!(guest.hang_up(), Err(SessionError::NotResumed(_))));
    // The state was taken by that attempt: the right id finds none now.
    let (guest, answer) = resume(server, session);
    assert_eq!(answer, NOT_RESUMED);
    assert!(matches!(guest.hang_up(), Err(SessionError::NotResumed(_))));
}

#[test]
fn a_resume_with_no_state_loaded_is_refused_after_the_wait() {
    let (_root, ws) = host_tree();
    let started = Instant::now();
    let (guest, answer) = resume(server(&ws), 42);
    assert_eq!(answer, NOT_RESUMED);
    assert!(started.elapsed() >= SHORT_WAIT);
    assert!(matches!(guest.hang_up(), Err(SessionError::NotResumed(42))));
}

#[test]
fn a_resume_waits_for_the_state_being_loaded() {
    let (_root, ws) = host_tree();
    let before = server(&ws);
    let mut guest = Guest::to(before.clone());
    let file = guest.lookup(ROOT, "file").unwrap();
    let session = guest.session;
    let state = before.save_state();
    guest.hang_up().unwrap();
    let after = Arc::new(
        WorkspaceServer::new(&ws, WorkspaceMode::Live, AGENT)
            .unwrap()
            .with_resume_wait(Duration::from_secs(10)),
    );
    let loader = {
        let after = after.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            after.load_state(&state).unwrap();
        })
    };
    let (mut guest, answer) = resume(after, session);
    assert_eq!(answer, RESUMED);
    assert!(guest.getattr(file).is_ok());
    loader.join().unwrap();
    guest.hang_up().unwrap();
}

#[test]
fn a_state_of_the_other_mode_is_refused() {
    let (_root, ws) = host_tree();
    let live = server(&ws);
    let mut guest = Guest::to(live.clone());
    guest.lookup(ROOT, "file").unwrap();
    let state = live.save_state();
    guest.hang_up().unwrap();
    let cow = WorkspaceServer::new(&ws, WorkspaceMode::Cow, AGENT).unwrap();
    assert!(matches!(
        cow.load_state(&state),
        Err(LoadError::Mode(false))
    ));
}

#[test]
fn a_writable_handle_is_not_reopened_on_a_file_linked_meanwhile() {
    let (root, ws) = host_tree();
    let before = server(&ws);
    let mut guest = Guest::to(before.clone());
    let file = guest.lookup(ROOT, "file").unwrap();
    let reader = guest.open(file, libc::O_RDONLY).unwrap();
    let writer = guest.open(file, libc::O_WRONLY).unwrap();
    let session = guest.session;
    let after = server(&ws);
    snapshot(&before, guest, &after);
    std::fs::hard_link(ws.join("file"), root.path().join("outside-link")).unwrap();

    let (mut guest, answer) = resume(after, session);
    assert_eq!(answer, RESUMED);
    assert_eq!(guest.read(file, reader, 4096), b"hello");
    let write = guest.ask(
        16,
        file,
        &[
            &writer.to_le_bytes(),
            &[0; 8],
            &1u32.to_le_bytes(),
            &[0; 20],
            b"X",
        ],
    );
    assert_eq!(write.error, -libc::ESTALE);
    guest.hang_up().unwrap();
    assert_eq!(std::fs::read(ws.join("file")).unwrap(), b"hello");
}

#[test]
fn an_unknown_node_or_handle_is_ebadf() {
    let (_root, ws) = host_tree();
    let mut guest = Guest::to(server(&ws));
    assert_eq!(guest.getattr(999), Err(libc::EBADF));
    assert_eq!(guest.lookup(999, "file"), Err(libc::EBADF));
    let file = guest.lookup(ROOT, "file").unwrap();
    assert_eq!(guest.try_read(file, 999, 10), Err(libc::EBADF));
    guest.hang_up().unwrap();
}
