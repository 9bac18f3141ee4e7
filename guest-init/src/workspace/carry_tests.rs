//! Carrying a mount across a broken host connection, without a guest: SOCK_SEQPACKET pairs
//! stand in for `/dev/fuse`, Unix stream pairs for the host connections, and a channel of them
//! for the server that accepts (or does not, yet) a reconnection.

use super::kept::{error_reply, Kept, MAX_KEPT};
use super::link::{forward_requests, serve_replies, Link};
use super::notifier::Notifier;
use super::resume::{reconnect, ResumeError, Retry};
use super::status::{Settled, Status};
use super::tests::message_pair;
use super::*;
use paddock_protocol::workspace::{
    IN_HEADER_LEN, MAX_MESSAGE, NOT_RESUMED, RESUMED, RESUME_HELLO, SESSION_ID_LEN,
};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

const LOOKUP: u32 = 1;
const FORGET: u32 = 2;
const GETATTR: u32 = 3;
const READ: u32 = 15;
const SESSION: u64 = 0x1122_3344_5566_7788;

/// A request of `len` bytes with its header's opcode and unique.
fn request(opcode: u32, unique: u64, len: usize) -> Vec<u8> {
    let mut m = vec![0xAB; len];
    m[..4].copy_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
    m[4..8].copy_from_slice(&opcode.to_le_bytes());
    m[8..16].copy_from_slice(&unique.to_le_bytes());
    m
}

/// A successful reply of `len` bytes to request `unique`.
fn reply(unique: u64, len: usize) -> Vec<u8> {
    let mut m = vec![0xCD; len];
    m[..4].copy_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
    m[4..8].copy_from_slice(&0i32.to_le_bytes());
    m[8..16].copy_from_slice(&unique.to_le_bytes());
    m
}

/// Reads one whole request from the server's end of a connection.
fn read_request_at(server: &mut UnixStream) -> Vec<u8> {
    let mut header = [0u8; IN_HEADER_LEN];
    server.read_exact(&mut header).unwrap();
    let len = usize::try_from(u32::from_le_bytes(header[..4].try_into().unwrap())).unwrap();
    let mut m = header.to_vec();
    m.resize(len, 0);
    server.read_exact(&mut m[IN_HEADER_LEN..]).unwrap();
    m
}

/// Whether nothing more is waiting to be read on `socket` (within a moment).
fn nothing_more(socket: &impl AsFd) -> bool {
    std::thread::sleep(Duration::from_millis(50));
    let mut byte = 0u8;
    // SAFETY: `byte` is a valid one-byte buffer; the fd is open for the call.
    let n = unsafe {
        libc::recv(
            socket.as_fd().as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
}

/// Makes a read on `socket` fail after a while instead of hanging the test.
fn bounded<T: AsFd>(socket: T) -> T {
    let tv = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a valid timeval of the given size; the fd is open for the call.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::timeval>()).unwrap(),
        )
    };
    assert_eq!(ret, 0);
    socket
}

/// A relay under test: the kernel's end of its "/dev/fuse", the server's end of its first
/// connection, where to hand it later connections, and its threads.
struct Relay {
    kernel: File,
    server: UnixStream,
    accept: Sender<UnixStream>,
    connects: Arc<AtomicUsize>,
    link: Arc<Link<UnixStream>>,
    requests: JoinHandle<RelayEnd>,
    replies: JoinHandle<RelayEnd>,
}

impl Relay {
    fn start() -> Self {
        let (kernel, fuse) = message_pair();
        let (host, server) = UnixStream::pair().unwrap();
        let (accept, pending): (Sender<UnixStream>, Receiver<UnixStream>) = channel();
        let pending = Mutex::new(pending);
        let connects = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connects);
        // The server is there once the test handed a connection over; refused till then.
        let connect = move || {
            counted.fetch_add(1, Ordering::SeqCst);
            pending
                .lock()
                .unwrap()
                .try_recv()
                .map_err(|_| io::Error::from_raw_os_error(libc::ECONNREFUSED))
        };
        let link = Arc::new(Link::new(host.try_clone().unwrap(), SESSION, "/test"));
        let fuse_in = fuse.try_clone().unwrap();
        let requests = {
            let link = Arc::clone(&link);
            std::thread::spawn(move || forward_requests(&link, fuse_in))
        };
        let replies = {
            let link = Arc::clone(&link);
            let retry = Retry {
                every: Duration::from_millis(5),
                total: Duration::from_secs(10),
            };
            let notifier = Notifier::start(fuse.try_clone().unwrap()).unwrap();
            std::thread::spawn(move || serve_replies(link, host, (fuse, notifier), connect, retry))
        };
        Self {
            kernel: bounded(kernel),
            server: bounded(server),
            accept,
            connects,
            link,
            requests,
            replies,
        }
    }

    /// The kernel sends `message`.
    fn send(&mut self, message: &[u8]) {
        self.kernel.write_all(message).unwrap();
    }

    /// The next reply the kernel gets.
    fn kernel_reads(&mut self) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = self.kernel.read(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// The host side drops the connection (a restore reset it); the relay's next connection
    /// is `next`'s relay end. The server's old end is returned to read what reached it.
    fn break_connection(&mut self) -> UnixStream {
        let (relay_end, server_end) = UnixStream::pair().unwrap();
        let server_end = bounded(server_end);
        self.accept.send(relay_end).unwrap();
        self.server.shutdown(std::net::Shutdown::Write).unwrap();
        std::mem::replace(&mut self.server, server_end)
    }

    /// The server reads the resume hello on the new connection and answers `answer`.
    fn server_resumes(&mut self, answer: u8) {
        let mut hello = [0u8; RESUME_HELLO.len() + SESSION_ID_LEN];
        self.server.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[..RESUME_HELLO.len()], RESUME_HELLO);
        assert_eq!(hello[RESUME_HELLO.len()..], SESSION.to_le_bytes());
        self.server.write_all(&[answer]).unwrap();
    }

    /// The kernel unmounts; both directions end.
    fn unmount(self) -> (RelayEnd, RelayEnd) {
        drop(self.kernel);
        (join_soon(self.requests), join_soon(self.replies))
    }
}

/// `thread`'s result, failing the test if it does not end within a while.
fn join_soon<T>(thread: JoinHandle<T>) -> T {
    let start = Instant::now();
    while !thread.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the thread does not end"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    thread.join().unwrap()
}

/// Waits until the relay is in `phase`.
fn wait_phase(link: &Link<UnixStream>, phase: status::Phase) {
    let start = Instant::now();
    while link.status.now().0 != phase {
        assert!(start.elapsed() < Duration::from_secs(5), "never {phase:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `kept` has `n` requests.
fn wait_kept(link: &Link<UnixStream>, n: usize) {
    let start = Instant::now();
    while link.lock_kept().len() != n {
        assert!(start.elapsed() < Duration::from_secs(5), "never {n} kept");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_reply_drops_its_kept_request_and_one_without_reply_is_not_kept() {
    let mut relay = Relay::start();
    relay.send(&request(LOOKUP, 2, 60));
    relay.send(&request(FORGET, 4, 48));
    assert_eq!(read_request_at(&mut relay.server), request(LOOKUP, 2, 60));
    assert_eq!(read_request_at(&mut relay.server), request(FORGET, 4, 48));
    assert_eq!(relay.link.lock_kept().uniques(), [2]);
    assert_eq!(relay.link.lock_kept().len(), 1);
    relay.server.write_all(&reply(2, 30)).unwrap();
    assert_eq!(relay.kernel_reads(), reply(2, 30));
    wait_kept(&relay.link, 0);
    let (requests, replies) = relay.unmount();
    assert!(matches!(requests, RelayEnd::Unmounted), "{requests:?}");
    assert!(matches!(replies, RelayEnd::Ended), "{replies:?}");
}

#[test]
fn after_a_break_the_unanswered_requests_go_again_in_order_before_new_ones() {
    let mut relay = Relay::start();
    let sent = [
        request(LOOKUP, 2, 60),
        request(READ, 4, 80),
        request(FORGET, 6, 48),
        request(GETATTR, 8, 56),
    ];
    for m in &sent {
        relay.send(m);
    }
    for m in &sent {
        assert_eq!(&read_request_at(&mut relay.server), m);
    }
    relay.server.write_all(&reply(4, 20)).unwrap();
    assert_eq!(relay.kernel_reads(), reply(4, 20));
    wait_kept(&relay.link, 2);

    let old = relay.break_connection();
    wait_phase(&relay.link, status::Phase::Resuming);
    // Requests the kernel sends while the relay reconnects wait for the resent ones (a
    // forget too, though it is not kept).
    relay.send(&request(LOOKUP, 10, 44));
    relay.send(&request(FORGET, 12, 48));
    std::thread::sleep(Duration::from_millis(20));
    relay.server_resumes(RESUMED);
    assert_eq!(read_request_at(&mut relay.server), sent[0]);
    assert_eq!(read_request_at(&mut relay.server), sent[3]);
    assert_eq!(read_request_at(&mut relay.server), request(LOOKUP, 10, 44));
    assert_eq!(read_request_at(&mut relay.server), request(FORGET, 12, 48));
    assert!(nothing_more(&relay.server));
    // Nothing reached the old connection after the break.
    let mut after = Vec::new();
    let _ = (&old).read_to_end(&mut after);
    assert!(
        after.is_empty(),
        "{} bytes on the old connection",
        after.len()
    );

    // The new connection carries both ways.
    relay.server.write_all(&reply(8, 24)).unwrap();
    assert_eq!(relay.kernel_reads(), reply(8, 24));
    relay.send(&request(GETATTR, 14, 40));
    assert_eq!(read_request_at(&mut relay.server), request(GETATTR, 14, 40));
    assert_eq!(relay.link.status.now(), (status::Phase::Connected, 1));
    relay.unmount();
}

#[test]
fn a_server_that_cannot_carry_on_ends_the_relay_and_every_kept_request_is_answered() {
    let mut relay = Relay::start();
    relay.send(&request(LOOKUP, 2, 60));
    relay.send(&request(FORGET, 4, 48));
    relay.send(&request(READ, 6, 64));
    for _ in 0..3 {
        read_request_at(&mut relay.server);
    }
    let mut old = relay.break_connection();
    relay.server_resumes(NOT_RESUMED);
    // Each unanswered request gets ENOTCONN, in order; the forgotten one nothing.
    assert_eq!(relay.kernel_reads(), error_reply(2, libc::ENOTCONN));
    assert_eq!(relay.kernel_reads(), error_reply(6, libc::ENOTCONN));
    assert!(nothing_more(&relay.kernel));
    assert!(relay.link.status.is_dead());
    // A request after death is forwarded nowhere.
    relay.send(&request(LOOKUP, 8, 40));
    let (requests, replies) = (join_soon(relay.requests), join_soon(relay.replies));
    assert!(matches!(requests, RelayEnd::Ended), "{requests:?}");
    assert!(
        matches!(replies, RelayEnd::Lost(ResumeError::NotResumed)),
        "{replies:?}"
    );
    let mut after = Vec::new();
    let _ = old.read_to_end(&mut after);
    assert!(
        after.is_empty(),
        "{} bytes forwarded after death",
        after.len()
    );
    let mut after = Vec::new();
    let _ = relay.server.read_to_end(&mut after);
    assert!(
        after.is_empty(),
        "{} bytes forwarded after death",
        after.len()
    );
}

#[test]
fn reconnecting_retries_until_the_server_is_there() {
    let relay = Relay::start();
    let (relay_end, server_end) = UnixStream::pair().unwrap();
    let mut server_end = bounded(server_end);
    relay.server.shutdown(std::net::Shutdown::Write).unwrap();
    // The server comes back only after some refused attempts.
    let start = Instant::now();
    while relay.connects.load(Ordering::SeqCst) < 5 {
        assert!(start.elapsed() < Duration::from_secs(5), "no retries");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(relay.link.status.now().0, status::Phase::Resuming);
    relay.accept.send(relay_end).unwrap();
    let mut hello = [0u8; RESUME_HELLO.len() + SESSION_ID_LEN];
    server_end.read_exact(&mut hello).unwrap();
    server_end.write_all(&[RESUMED]).unwrap();
    assert_eq!(
        relay.link.status.settle(Duration::from_secs(5)),
        Settled::Connected
    );
    assert_eq!(relay.link.status.now().1, 1);
    relay.unmount();
}

#[test]
fn reconnecting_gives_up_when_the_time_is_out() {
    let attempts = AtomicUsize::new(0);
    let connect = || -> io::Result<UnixStream> {
        attempts.fetch_add(1, Ordering::SeqCst);
        Err(io::Error::from_raw_os_error(libc::ECONNRESET))
    };
    let retry = Retry {
        every: Duration::from_millis(5),
        total: Duration::from_millis(60),
    };
    let start = Instant::now();
    let result = reconnect(&connect, SESSION, retry, || false);
    assert!(
        matches!(&result, Err(ResumeError::GaveUp(e)) if e.raw_os_error() == Some(libc::ECONNRESET)),
        "{result:?}"
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(attempts.load(Ordering::SeqCst) > 3);
    // A relay that ended meanwhile stops at once.
    let result = reconnect(&connect, SESSION, retry, || true);
    assert!(matches!(result, Err(ResumeError::Ended)), "{result:?}");
}

#[test]
fn requests_past_the_bound_are_not_kept_but_still_awaited() {
    let mut kept = Kept::default();
    for unique in 0..=u64::try_from(MAX_KEPT).unwrap() {
        kept.record(&request(LOOKUP, unique, 40));
    }
    assert_eq!(kept.uniques().len(), MAX_KEPT);
    assert_eq!(kept.len(), MAX_KEPT + 1);
    kept.answered(&reply(0, 16));
    assert!(kept.get(0).is_none());
    assert_eq!(kept.take_unkept(), [u64::try_from(MAX_KEPT).unwrap()]);
    assert_eq!(kept.take_all().len(), MAX_KEPT - 1);
    assert_eq!(kept.len(), 0);
    assert_eq!(
        error_reply(9, libc::ENOTCONN),
        [
            16u32.to_le_bytes().as_slice(),
            (-libc::ENOTCONN).to_le_bytes().as_slice(),
            9u64.to_le_bytes().as_slice()
        ]
        .concat()
        .as_slice()
    );
}

#[test]
fn a_connected_relay_settles_at_once_and_a_reconnecting_one_when_it_is_back() {
    let status = Arc::new(Status::new(None));
    assert_eq!(status.settle(Duration::ZERO), Settled::Connected);
    status.resuming();
    assert_eq!(
        status.settle(Duration::from_millis(30)),
        Settled::StillResuming
    );
    let back = {
        let status = Arc::clone(&status);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            assert!(status.carried_on(None));
        })
    };
    assert_eq!(status.settle(Duration::from_secs(5)), Settled::Connected);
    back.join().unwrap();
    status.resuming();
    let gone = {
        let status = Arc::clone(&status);
        std::thread::spawn(move || status.die())
    };
    assert_eq!(status.settle(Duration::from_secs(5)), Settled::Dead);
    assert!(gone.join().unwrap());
    assert!(!status.carried_on(None), "a dead relay came back");
}

#[test]
fn a_relay_connected_over_a_reset_connection_settles_once_it_reconnected() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let status = Arc::new(Status::new(Some(
        ours.as_fd().try_clone_to_owned().unwrap(),
    )));
    // Live: nothing to wait for.
    assert_eq!(status.settle(Duration::ZERO), Settled::Connected);
    // Reset before the relay noticed: waits for the next connection.
    drop(theirs);
    assert_eq!(
        status.settle(Duration::from_millis(30)),
        Settled::StillResuming
    );
    let back = {
        let status = Arc::clone(&status);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            status.resuming();
            status.carried_on(None)
        })
    };
    assert_eq!(status.settle(Duration::from_secs(5)), Settled::Connected);
    assert!(back.join().unwrap());
    assert_eq!(status.now().1, 1);
}

/// Serves `path` with a relay whose status is `status` (no device: `mount` only looks).
fn pretend_served(path: &str, id: u32, status: Arc<Status>) {
    lock_served().insert(
        path.to_string(),
        Served {
            id,
            mode: WorkspaceMode::Live,
            layers: None,
            status,
        },
    );
}

#[test]
fn mounting_a_served_path_carries_it_on_or_replaces_a_dead_one() {
    // Nothing served: a fresh mount.
    assert!(matches!(
        carried_at("/carry-test/none", Duration::ZERO),
        Ok(None)
    ));

    // Reconnecting, then connected: carried.
    let status = Arc::new(Status::new(None));
    status.resuming();
    pretend_served("/carry-test/back", 901, Arc::clone(&status));
    let back = {
        let status = Arc::clone(&status);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            status.carried_on(None);
        })
    };
    assert!(matches!(
        carried_at("/carry-test/back", Duration::from_secs(5)),
        Ok(Some(Mounted::Carried))
    ));
    back.join().unwrap();
    assert!(served_at("/carry-test/back").is_some());
    assert!(matches!(
        mount("/carry-test/back", WorkspaceMode::Live),
        Ok(Mounted::Carried)
    ));

    // Dead: forgotten, to be mounted afresh.
    let status = Arc::new(Status::new(None));
    status.die();
    pretend_served("/carry-test/dead", 902, status);
    assert!(matches!(
        carried_at("/carry-test/dead", Duration::from_secs(5)),
        Ok(None)
    ));
    assert!(served_at("/carry-test/dead").is_none());

    // Still reconnecting when the wait is out: an error, and still served.
    let status = Arc::new(Status::new(None));
    status.resuming();
    pretend_served("/carry-test/slow", 903, status);
    assert!(matches!(
        carried_at("/carry-test/slow", Duration::from_millis(20)),
        Err(MountError::StillResuming(_))
    ));
    assert!(served_at("/carry-test/slow").is_some());
}
