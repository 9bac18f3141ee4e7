//! Minimal AF_VSOCK stream sockets over libc (std has none).

use crate::service::Transport;
use crate::sys::{cvt, cvt_retry};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A listening vsock stream socket.
#[derive(Debug)]
pub struct VsockListener {
    fd: OwnedFd,
}

/// A connected vsock stream.
#[derive(Debug)]
pub struct VsockStream {
    // `File` gives plain read(2)/write(2) on the socket fd.
    file: File,
}

fn vsock_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall creating a new fd.
    let fd =
        cvt(unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: the fd was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn vsock_addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = cid;
    addr.svm_port = port;
    addr
}

// Bounded: AF_VSOCK is 40, within sa_family_t.
#[allow(clippy::cast_possible_truncation)]
const AF_VSOCK: libc::sa_family_t = libc::AF_VSOCK as libc::sa_family_t;

// Bounded: sockaddr_vm is 16 bytes.
#[allow(clippy::cast_possible_truncation)]
const VSOCK_ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;

impl VsockListener {
    /// Listens on `port` for connections from any context id.
    pub fn bind(port: u32) -> io::Result<Self> {
        let fd = vsock_socket()?;
        let addr = vsock_addr(libc::VMADDR_CID_ANY, port);
        // SAFETY: `addr` is a valid sockaddr_vm of VSOCK_ADDR_LEN bytes for the call.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_vm).cast(),
                VSOCK_ADDR_LEN,
            )
        })?;
        // SAFETY: plain syscall on our socket.
        cvt(unsafe { libc::listen(fd.as_raw_fd(), 64) })?;
        Ok(Self { fd })
    }

    /// Waits for the next connection.
    pub fn accept(&self) -> io::Result<VsockStream> {
        // SAFETY: null address pointers are allowed when the peer address is not wanted.
        let fd = cvt_retry(|| unsafe {
            libc::accept4(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        })?;
        // SAFETY: accept4 just returned this fd and nothing else owns it.
        Ok(VsockStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

impl VsockStream {
    /// Connects to `port` on context id `cid` (the host is `VMADDR_CID_HOST` = 2).
    pub fn connect(cid: u32, port: u32) -> io::Result<Self> {
        let fd = vsock_socket()?;
        let addr = vsock_addr(cid, port);
        // SAFETY: `addr` is a valid sockaddr_vm of VSOCK_ADDR_LEN bytes for the call.
        cvt(unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_vm).cast(),
                VSOCK_ADDR_LEN,
            )
        })?;
        Ok(Self::from(fd))
    }
}

impl From<OwnedFd> for VsockStream {
    fn from(fd: OwnedFd) -> Self {
        Self {
            file: File::from(fd),
        }
    }
}

impl AsFd for VsockStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for VsockStream {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Read for VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for VsockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for VsockStream {
    fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            file: self.file.try_clone()?,
        })
    }

    fn shutdown(&self) -> io::Result<()> {
        // SAFETY: plain syscall on our socket.
        cvt(unsafe { libc::shutdown(self.file.as_raw_fd(), libc::SHUT_RDWR) })?;
        Ok(())
    }
}
