//! Starting and stopping: the socket is private, a second proxy on a live socket is refused,
//! the socket goes away on stop, and the proxy stops by itself when the VMM is gone.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use super::harness::*;
use crate::proxy::serve::run_until;
use crate::proxy::{serve, ListenError, ServeError};

const ALLOW: &str = r#"{"preset": "locked", "allow": ["allowed.test"]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_private_unique_and_removed_on_stop() {
    let proxy = Setup::new(ALLOW, &[]).start().await;
    let mode = std::fs::metadata(&proxy.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let mut second = Setup::new(ALLOW, &[]);
    second.config.listen = proxy.socket.clone();
    let refused = serve(second.config, std::future::pending::<()>()).await;
    assert!(matches!(
        refused,
        Err(ServeError::Listen(ListenError::Live { .. }))
    ));

    let socket = proxy.socket.clone();
    proxy.stop().await.unwrap();
    assert!(!socket.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_file_stops_the_start() {
    let setup = Setup::new(ALLOW, &[]);
    std::fs::write(&setup.config.global_policy, b"{ not json").unwrap();
    let socket = setup.config.listen.clone();
    let refused = serve(setup.config, std::future::pending::<()>()).await;
    assert!(matches!(refused, Err(ServeError::Policy(_))));
    assert!(!socket.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_stops_when_the_vmm_is_gone() {
    let mut vmm = Command::new("sleep").arg("0.3").spawn().unwrap();
    let mut setup = Setup::new(ALLOW, &[]);
    setup.config.exit_when_pid_gone = Some(vmm.id());
    setup.config.limits.pid_poll_interval = Duration::from_millis(50);
    let socket = setup.config.listen.clone();
    let served = tokio::time::timeout(WAIT, serve(setup.config, std::future::pending::<()>()));
    served.await.expect("the proxy outlived its VMM").unwrap();
    assert!(!socket.exists());
    vmm.wait().unwrap();
}

#[test]
fn a_runtime_of_its_own_serves_until_the_vmm_is_gone() {
    let mut vmm = Command::new("sleep").arg("1").spawn().unwrap();
    let mut setup = Setup::new(ALLOW, &[("allowed.test", localhost())]);
    setup.config.exit_when_pid_gone = Some(vmm.id());
    setup.config.limits.pid_poll_interval = Duration::from_millis(50);
    let socket = setup.config.listen.clone();
    let config = setup.config;
    // `run` itself would install signal handlers in the test process: same runtime, no signals.
    let proxy = std::thread::spawn(move || run_until(config, || Ok(std::future::pending::<()>())));
    // It answers while the VMM lives.
    let deadline = std::time::Instant::now() + WAIT;
    let mut stream = loop {
        if let Ok(stream) = std::os::unix::net::UnixStream::connect(&socket) {
            break stream;
        }
        assert!(std::time::Instant::now() < deadline, "never served");
        std::thread::sleep(Duration::from_millis(10));
    };
    let hello = paddock_protocol::egress::EgressHello::Resolve("allowed.test".into());
    stream.write_all(&hello.encode()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"A 198."), "{answer:?}");
    vmm.wait().unwrap();
    proxy.join().unwrap().unwrap();
    assert!(!socket.exists());
    drop(setup.dir);
}
