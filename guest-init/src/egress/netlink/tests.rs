//! The acknowledgement parser on made-up answers, and the requests against the real kernel in
//! a network namespace of the test's own.

use super::*;
use crate::egress::test_netns::{in_new_net_namespace, interface_kind};
use rustix::net::{SocketAddrV4, SocketFlags as Flags};

/// An `NLMSG_ERROR` message carrying `code`, as the kernel acknowledges (or refuses).
fn error_message(code: i32) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend_from_slice(&36u32.to_ne_bytes());
    message.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    message.extend_from_slice(&0u16.to_ne_bytes());
    message.extend_from_slice(&[0u8; 8]);
    message.extend_from_slice(&code.to_ne_bytes());
    message.extend_from_slice(&[0u8; 16]); // the request's header, echoed
    message
}

#[test]
fn acknowledgements_and_refusals_are_read() {
    assert!(matches!(
        acknowledgement(&error_message(0)),
        Ok(Some(Ok(())))
    ));
    let Ok(Some(Err(refused))) = acknowledgement(&error_message(-libc::EEXIST)) else {
        panic!("not a refusal");
    };
    assert!(refused.already_exists());
    let Ok(Some(Err(refused))) = acknowledgement(&error_message(-libc::EPERM)) else {
        panic!("not a refusal");
    };
    assert!(!refused.already_exists());
    // Another message first, then the acknowledgement.
    let mut two = vec![16, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    two[0..4].copy_from_slice(&16u32.to_ne_bytes());
    two.extend(error_message(0));
    assert!(matches!(acknowledgement(&two), Ok(Some(Ok(())))));
    // Nothing, or lengths that lie.
    assert!(matches!(acknowledgement(&[]), Ok(None)));
    let mut lying = error_message(0);
    lying[0..4].copy_from_slice(&1000u32.to_ne_bytes());
    assert!(matches!(
        acknowledgement(&lying),
        Err(NetlinkError::Malformed)
    ));
    let mut short = error_message(0);
    short[0..4].copy_from_slice(&4u32.to_ne_bytes());
    assert!(matches!(
        acknowledgement(&short),
        Err(NetlinkError::Malformed)
    ));
    assert!(matches!(
        acknowledgement(&error_message(0)[..18]),
        Err(NetlinkError::Malformed)
    ));
}

#[test]
fn names_are_checked_before_anything_is_sent() {
    for bad in ["", "sixteen-letters!", "a/b", "a\0b"] {
        assert!(
            matches!(add_link(bad, "dummy"), Err(NetlinkError::BadName(_))),
            "{bad:?}"
        );
    }
}

/// Connects a non-blocking TCP socket to an outside address: the error, and the local address.
fn connect_outside() -> (Option<rustix::io::Errno>, Option<std::net::SocketAddr>) {
    let socket = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        Flags::CLOEXEC | Flags::NONBLOCK,
        None,
    )
    .unwrap();
    let outside = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 80);
    let error = rustix::net::connect(&socket, &outside).err();
    let local = rustix::net::getsockname(&socket)
        .ok()
        .and_then(|addr| std::net::SocketAddr::try_from(addr).ok());
    (error, local)
}

#[test]
fn an_interface_with_an_address_and_the_default_route_takes_outside_connections() {
    in_new_net_namespace("netlink", || {
        let Some(kind) = interface_kind() else {
            println!("netlink: skipped (no dummy or ifb interfaces)");
            return;
        };
        let (error, _) = connect_outside();
        assert_eq!(
            error,
            Some(rustix::io::Errno::NETUNREACH),
            "a route already exists"
        );

        add_link("egress0", kind).unwrap();
        assert!(add_link("egress0", kind).unwrap_err().already_exists());
        let index = interface_index("egress0").unwrap();
        assert!(matches!(
            interface_index("absent0"),
            Err(NetlinkError::NoInterface { .. })
        ));
        let address = Ipv4Addr::new(192, 0, 0, 8);
        add_address(index, address, 32).unwrap();
        assert!(add_address(index, address, 32)
            .unwrap_err()
            .already_exists());
        add_default_route(index).unwrap();
        assert!(add_default_route(index).unwrap_err().already_exists());

        // connect() now starts (the packets go nowhere) from the interface's address.
        let (error, local) = connect_outside();
        assert_eq!(error, Some(rustix::io::Errno::INPROGRESS));
        assert_eq!(local.map(|addr| addr.ip()), Some(address.into()));
    });
}
