//! Just enough rtnetlink to give the guest a way "out" that leads nowhere: create an interface
//! (up), give it an address, and route everything else to it. Requests are built as bytes and
//! sent over a `NETLINK_ROUTE` socket; each waits for the kernel's acknowledgement.

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{sockopt, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::time::Duration;

// Message types and flags (linux/netlink.h, linux/rtnetlink.h).
const RTM_NEWLINK: u16 = libc::RTM_NEWLINK;
const RTM_NEWADDR: u16 = libc::RTM_NEWADDR;
const RTM_NEWROUTE: u16 = libc::RTM_NEWROUTE;
const NLMSG_ERROR: u16 = narrow_u16(libc::NLMSG_ERROR);
const NLM_F_REQUEST: u16 = narrow_u16(libc::NLM_F_REQUEST);
const NLM_F_ACK: u16 = narrow_u16(libc::NLM_F_ACK);
const NLM_F_EXCL: u16 = narrow_u16(libc::NLM_F_EXCL);
const NLM_F_CREATE: u16 = narrow_u16(libc::NLM_F_CREATE);
// Address families, as the one-byte family fields of ifinfomsg, ifaddrmsg and rtmsg.
const AF_UNSPEC: u8 = narrow_u8(libc::AF_UNSPEC);
const AF_INET: u8 = narrow_u8(libc::AF_INET);
// Attributes.
const IFLA_IFNAME: u16 = libc::IFLA_IFNAME;
const IFLA_LINKINFO: u16 = libc::IFLA_LINKINFO;
const IFLA_INFO_KIND: u16 = libc::IFLA_INFO_KIND;
const IFA_ADDRESS: u16 = libc::IFA_ADDRESS;
const IFA_LOCAL: u16 = libc::IFA_LOCAL;
const RTA_OIF: u16 = libc::RTA_OIF;
/// A libc constant (a `c_int`) narrowed to a 16-bit netlink field. Only used for constants: the
/// range check runs at compile time, where a value that does not fit fails the build.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const fn narrow_u16(value: libc::c_int) -> u16 {
    assert!(value >= 0 && value <= 0xffff);
    // Bounded: checked just above.
    value as u16
}

/// Like [`narrow_u16`], for one-byte fields.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const fn narrow_u8(value: libc::c_int) -> u8 {
    assert!(value >= 0 && value <= 0xff);
    // Bounded: checked just above.
    value as u8
}

/// Length of `struct nlmsghdr`.
const HEADER_LEN: usize = 16;
/// Longest interface name, without its NUL (IFNAMSIZ - 1).
pub const MAX_INTERFACE_NAME: usize = 15;
/// How long the kernel may take to acknowledge.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages read while waiting for the acknowledgement.
const MAX_REPLIES: usize = 16;

/// Why a netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("interface name {0:?} is empty or longer than {MAX_INTERFACE_NAME} bytes")]
    BadName(String),
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot send to the kernel: {0}")]
    Send(#[source] io::Error),
    #[error("no acknowledgement from the kernel: {0}")]
    Receive(#[source] io::Error),
    #[error("the kernel's answer is malformed")]
    Malformed,
    #[error("the kernel refused: {0}")]
    Refused(#[source] io::Error),
    #[error("no interface {name}: {source}")]
    NoInterface { name: String, source: io::Error },
}

impl NetlinkError {
    /// The kernel refused because the thing already exists (a second run).
    pub fn already_exists(&self) -> bool {
        matches!(self, NetlinkError::Refused(e) if e.raw_os_error() == Some(libc::EEXIST))
    }
}

/// Creates interface `name` of `kind` (`dummy`, ...), up.
pub fn add_link(name: &str, kind: &str) -> Result<(), NetlinkError> {
    check_name(name)?;
    let flags = libc::IFF_UP as u32;
    let mut request = Request::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    // struct ifinfomsg: family, pad, type, index, flags, change.
    request.bytes(&[AF_UNSPEC, 0]);
    request.bytes(&0u16.to_ne_bytes());
    request.bytes(&0i32.to_ne_bytes());
    request.bytes(&flags.to_ne_bytes());
    request.bytes(&flags.to_ne_bytes());
    request.attribute(IFLA_IFNAME, &nul_terminated(name));
    let link_info = request.start_nested(IFLA_LINKINFO);
    request.attribute(IFLA_INFO_KIND, kind.as_bytes());
    request.end_nested(link_info);
    send(request)
}

/// The index of interface `name`.
pub fn interface_index(name: &str) -> Result<u32, NetlinkError> {
    check_name(name)?;
    let no_interface = |source: io::Error| NetlinkError::NoInterface {
        name: name.to_string(),
        source,
    };
    let socket = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| NetlinkError::Socket(e.into()))?;
    rustix::net::netdevice::name_to_index(&socket, name).map_err(|e| no_interface(e.into()))
}

/// Gives interface `index` the address `address/prefix_len`.
pub fn add_address(index: u32, address: Ipv4Addr, prefix_len: u8) -> Result<(), NetlinkError> {
    let mut request = Request::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    // struct ifaddrmsg: family, prefix length, flags, scope (universe), index.
    request.bytes(&[AF_INET, prefix_len.min(32), 0, 0]);
    request.bytes(&index.to_ne_bytes());
    request.attribute(IFA_LOCAL, &address.octets());
    request.attribute(IFA_ADDRESS, &address.octets());
    send(request)
}

/// Routes every IPv4 destination without a more specific route to interface `index`.
pub fn add_default_route(index: u32) -> Result<(), NetlinkError> {
    let mut request = Request::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    request.bytes(&[
        AF_INET,
        0,
        0,
        0,
        libc::RT_TABLE_MAIN,
        libc::RTPROT_BOOT,
        libc::RT_SCOPE_LINK,
        libc::RTN_UNICAST,
    ]);
    request.bytes(&0u32.to_ne_bytes());
    request.attribute(RTA_OIF, &index.to_ne_bytes());
    send(request)
}

fn check_name(name: &str) -> Result<(), NetlinkError> {
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME || name.contains(['\0', '/']) {
        return Err(NetlinkError::BadName(name.to_string()));
    }
    Ok(())
}

fn nul_terminated(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// A request being built: the header (its length filled in by [`Request::finish`]), the
/// family's fixed struct, then attributes, each padded to four bytes.
struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(message_type: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&message_type.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        Self { buf }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attribute(&mut self, kind: u16, data: &[u8]) {
        self.pad();
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// Starts a nested attribute; returns where its header is.
    fn start_nested(&mut self, kind: u16) -> usize {
        self.pad();
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    fn end_nested(&mut self, at: usize) {
        let len = u16::try_from(self.buf.len().saturating_sub(at)).unwrap_or(u16::MAX);
        if let Some(field) = self.buf.get_mut(at..at + 2) {
            field.copy_from_slice(&len.to_ne_bytes());
        }
        self.pad();
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        if let Some(field) = self.buf.get_mut(..4) {
            field.copy_from_slice(&len.to_ne_bytes());
        }
        self.buf
    }
}

/// Sends `request` and waits for the kernel's acknowledgement.
fn send(request: Request) -> Result<(), NetlinkError> {
    let socket = route_socket()?;
    let message = request.finish();
    rustix::net::sendto(
        &socket,
        &message,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )
    .map_err(|e| NetlinkError::Send(e.into()))?;
    let mut buf = vec![0u8; 8192];
    for _ in 0..MAX_REPLIES {
        let (_, len) = rustix::net::recv(&socket, &mut buf[..], RecvFlags::empty())
            .map_err(|e| NetlinkError::Receive(e.into()))?;
        if let Some(outcome) = acknowledgement(buf.get(..len).ok_or(NetlinkError::Malformed)?)? {
            return outcome;
        }
    }
    Err(NetlinkError::Malformed)
}

fn route_socket() -> Result<OwnedFd, NetlinkError> {
    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| NetlinkError::Socket(e.into()))?;
    sockopt::set_socket_timeout(&socket, sockopt::Timeout::Recv, Some(ACK_TIMEOUT))
        .map_err(|e| NetlinkError::Socket(e.into()))?;
    Ok(socket)
}

/// The outcome carried by the first `NLMSG_ERROR` message in `datagram` (error 0 is the
/// acknowledgement); `None` when the datagram holds none.
fn acknowledgement(datagram: &[u8]) -> Result<Option<Result<(), NetlinkError>>, NetlinkError> {
    let mut rest = datagram;
    while rest.len() >= HEADER_LEN {
        let len = read_u32(rest, 0).ok_or(NetlinkError::Malformed)? as usize;
        let message_type = read_u16(rest, 4).ok_or(NetlinkError::Malformed)?;
        if len < HEADER_LEN || len > rest.len() {
            return Err(NetlinkError::Malformed);
        }
        if message_type == NLMSG_ERROR {
            // nlmsgerr's `error` is a C int: reinterpret the bits.
            let code = read_u32(rest, HEADER_LEN)
                .ok_or(NetlinkError::Malformed)?
                .cast_signed();
            return Ok(Some(match code {
                0 => Ok(()),
                negative => Err(NetlinkError::Refused(io::Error::from_raw_os_error(
                    negative.saturating_neg(),
                ))),
            }));
        }
        let aligned = len.saturating_add(3) & !3;
        rest = rest.get(aligned.min(rest.len())..).unwrap_or_default();
    }
    Ok(None)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(field.try_into().ok()?))
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let field = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes(field.try_into().ok()?))
}

#[cfg(test)]
mod tests;
