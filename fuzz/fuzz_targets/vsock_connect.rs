//! What host peers and the guest put in front of vsock data: the host side's `CONNECT <port>`
//! line, and the 44-byte packet header copied out of guest memory, from any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_vmm::devices::virtio::vsock::packet::Header;
use paddock_vmm::devices::virtio::vsock::parse_connect;

fuzz_target!(|data: &[u8]| {
    if let Some(port) = parse_connect(data) {
        assert_eq!(
            parse_connect(format!("CONNECT {port}\n").as_bytes()),
            Some(port)
        );
    }
    if let Some(header) = Header::from_bytes(data) {
        assert_eq!(&header.to_bytes()[..], &data[..44]);
        let _ = header.reset_reply();
    }
});
