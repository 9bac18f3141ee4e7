//! The relay and the path rules, without a guest: SOCK_SEQPACKET pairs stand in for `/dev/fuse`.

use super::*;
use paddock_protocol::workspace::{IN_HEADER_LEN, MAX_MESSAGE, OUT_HEADER_LEN};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// A connected pair of SOCK_SEQPACKET sockets: like `/dev/fuse`, every read returns one whole
/// message and every write sends one.
pub(super) fn message_pair() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair returns.
    let ret = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
    assert_eq!(ret, 0);
    // SAFETY: socketpair succeeded: both descriptors are open and ours.
    unsafe {
        (
            File::from(OwnedFd::from_raw_fd(fds[0])),
            File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

fn message(len: usize, fill: u8) -> Vec<u8> {
    let mut m = vec![fill; len];
    m[..4].copy_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
    m
}

#[test]
fn requests_go_to_the_host_whole_and_in_order() {
    let (mut kernel, fuse) = message_pair();
    let (host_side, mut host) = UnixStream::pair().unwrap();
    let relay = std::thread::spawn(move || relay_requests(fuse, host_side));
    let (a, b) = (message(IN_HEADER_LEN, 1), message(70_000, 2));
    kernel.write_all(&a).unwrap();
    kernel.write_all(&b).unwrap();
    let mut got = vec![0u8; a.len() + b.len()];
    host.read_exact(&mut got).unwrap();
    assert_eq!(got, [a, b].concat());
    drop(kernel);
    assert!(matches!(relay.join().unwrap(), RelayEnd::Unmounted));
}

#[test]
fn a_request_shorter_than_its_header_ends_the_relay() {
    let (mut kernel, fuse) = message_pair();
    let (host_side, _host) = UnixStream::pair().unwrap();
    let relay = std::thread::spawn(move || relay_requests(fuse, host_side));
    let mut bad = message(IN_HEADER_LEN, 0);
    bad[..4].copy_from_slice(&8u32.to_le_bytes());
    kernel.write_all(&bad).unwrap();
    assert!(matches!(relay.join().unwrap(), RelayEnd::BadLength(_)));
}

#[test]
fn replies_are_cut_at_their_lengths_and_written_one_each() {
    let (mut kernel, fuse) = message_pair();
    let (mut host, host_side) = UnixStream::pair().unwrap();
    let notifier = Notifier::start(fuse.try_clone().unwrap()).unwrap();
    let relay = std::thread::spawn(move || relay_replies(host_side, fuse, notifier));
    let (a, b, c) = (
        message(OUT_HEADER_LEN, 7),
        message(100_000, 8),
        message(20, 9),
    );
    // One stream write holding three replies, the last split in two.
    host.write_all(&[a.clone(), b.clone(), c[..10].to_vec()].concat())
        .unwrap();
    host.write_all(&c[10..]).unwrap();
    let mut buf = vec![0u8; MAX_MESSAGE];
    for want in [&a, &b, &c] {
        let n = kernel.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], &want[..]);
    }
    drop(host);
    assert!(matches!(relay.join().unwrap(), RelayEnd::HostClosed));
}

#[test]
fn an_oversized_reply_from_the_host_ends_the_relay_unread() {
    let (_kernel, fuse) = message_pair();
    let (mut host, host_side) = UnixStream::pair().unwrap();
    let notifier = Notifier::start(fuse.try_clone().unwrap()).unwrap();
    let relay = std::thread::spawn(move || relay_replies(host_side, fuse, notifier));
    let mut header = [0u8; OUT_HEADER_LEN];
    header[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    host.write_all(&header).unwrap();
    assert!(matches!(relay.join().unwrap(), RelayEnd::BadLength(_)));
}

#[test]
fn only_plain_absolute_paths_are_mounted() {
    for good in ["/home/me/project", "/a", "/tmp/x y/ws"] {
        assert!(is_plain_absolute(good), "{good}");
    }
    for bad in [
        "", "/", "relative", "/a/../b", "/a/./b", "/a//b", "/a/", "/a\0b",
    ] {
        assert!(!is_plain_absolute(bad), "{bad:?}");
        assert!(
            matches!(mount(bad, WorkspaceMode::Live), Err(MountError::Path(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn the_topmost_mount_at_a_path_is_read_from_mountinfo() {
    let table = "\
22 1 0:21 / /tmp rw - tmpfs tmpfs rw
40 22 0:40 / /tmp/my\\040project rw - fuse paddock-workspace rw
41 40 0:41 / /tmp/my\\040project rw - overlay paddock-workspace rw
42 22 0:42 / /tmp/other rw - fuse something-else rw
";
    assert_eq!(mounted_here(table, Path::new("/tmp")), Some("tmpfs"));
    assert_eq!(
        mounted_here(table, Path::new("/tmp/my project")),
        Some("paddock-workspace")
    );
    assert_eq!(
        mounted_here(table, Path::new("/tmp/other")),
        Some("something-else")
    );
    assert_eq!(mounted_here(table, Path::new("/nowhere")), None);
}

/// A `/dev/fuse` stand-in whose writes wait until the test lets each one through.
struct Held {
    fuse: File,
    go: std::sync::mpsc::Receiver<()>,
}

impl Write for Held {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.go.recv();
        self.fuse.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_notification_the_kernel_holds_up_does_not_hold_up_replies() {
    let (mut kernel, fuse) = message_pair();
    let (mut host, host_side) = UnixStream::pair().unwrap();
    let (go, held) = std::sync::mpsc::channel();
    let notifier = Notifier::start(Held {
        fuse: fuse.try_clone().unwrap(),
        go: held,
    })
    .unwrap();
    let relay = std::thread::spawn(move || relay_replies(host_side, fuse, notifier));
    // A notification (unique 0), then a reply (unique 0x0909...).
    let (notification, reply) = (message(OUT_HEADER_LEN + 24, 0), message(OUT_HEADER_LEN, 9));
    host.write_all(&[notification.clone(), reply.clone()].concat())
        .unwrap();
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = kernel.read(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &reply[..],
        "the reply passes the held notification"
    );
    go.send(()).unwrap();
    let n = kernel.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], &notification[..]);
    drop(host);
    assert!(matches!(relay.join().unwrap(), RelayEnd::HostClosed));
}
