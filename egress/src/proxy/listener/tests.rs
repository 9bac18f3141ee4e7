//! Tests of `listener`.
use std::os::unix::fs::PermissionsExt;

use super::*;

#[tokio::test]
async fn socket_is_private_and_removed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vsock.sock_1080");
    let bound = BoundSocket::bind(&path).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let client = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (accepted, _) = bound.listener().accept().await.unwrap();
    drop((client, accepted));
    drop(bound);
    assert!(!path.exists());
    // Only the socket is left behind in the directory, never a temporary name.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn live_socket_is_refused_and_stale_one_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vsock.sock_1080");
    let first = BoundSocket::bind(&path).unwrap();
    assert!(matches!(
        BoundSocket::bind(&path),
        Err(ListenError::Live { .. })
    ));
    drop(first);
    // A socket file nobody listens on any more (a proxy that was killed).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let second = BoundSocket::bind(&path).unwrap();
    tokio::net::UnixStream::connect(&path).await.unwrap();
    drop(second);
    assert!(!path.exists());
}

#[tokio::test]
async fn a_replaced_socket_is_left_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vsock.sock_1080");
    let old = BoundSocket::bind(&path).unwrap();
    fs::remove_file(&path).unwrap();
    let new = BoundSocket::bind(&path).unwrap();
    drop(old);
    assert!(
        path.exists(),
        "the old proxy removed its successor's socket"
    );
    drop(new);
    assert!(!path.exists());
}

#[test]
fn a_file_that_is_not_a_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vsock.sock_1080");
    fs::write(&path, b"").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    assert!(matches!(
        BoundSocket::bind(&path),
        Err(ListenError::NotASocket { .. })
    ));
    assert!(path.exists());
}

#[tokio::test]
async fn a_private_directory_left_by_an_earlier_attempt_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vsock.sock_1080");
    let leftover = dir
        .path()
        .join(format!("vsock.sock_1080.b{}", std::process::id()));
    fs::create_dir(&leftover).unwrap();
    fs::write(leftover.join("s"), b"").unwrap();
    let bound = BoundSocket::bind(&path).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!leftover.exists());
    drop(bound);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn the_private_directory_is_closed_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private");
    make_private_dir(&private).unwrap();
    let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[tokio::test]
async fn socket_in_a_directory_shared_with_a_vmm_user_is_open_to_it() {
    // A sandbox directory whose VMM runs as its own user: set-group-ID, rwxrwx---; the socket
    // is open to all, the directory keeps out everyone but root and the VMM's group.
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o2770)).unwrap();
    let path = dir.path().join("vsock.sock_1080");
    let bound = BoundSocket::bind(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o666
    );
    drop(bound);
    // Open to others too, the directory is no shared one: the socket stays private.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o2775)).unwrap();
    let bound = BoundSocket::bind(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(bound);
}

/// Socket activation: a connection made after the starter bound the socket and before the
/// proxy took it over waits in the backlog and is accepted once the proxy serves.
#[tokio::test]
async fn a_socket_bound_by_the_starter_queues_connections_until_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vsock.sock_1080");
    let listening = bind_listening(&path).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let early = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let adopted = BoundSocket::adopt(listening, &path).unwrap();
    let (mut accepted, _) = adopted.listener().accept().await.unwrap();
    let mut early = early;
    std::io::Write::write_all(&mut early, b"x").unwrap();
    let mut byte = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut accepted, &mut byte)
        .await
        .unwrap();
    assert_eq!(&byte, b"x");
    drop(adopted);
    assert!(!path.exists(), "the proxy removes the socket it adopted");
}
