//! The way out: a fresh connection to the host's egress proxy for every guest connection (vsock
//! host port [`EGRESS_PORT`]), opened with its hello line. Injectable, so tests put a fake host
//! on a Unix socket in its place.

use crate::vsock::VsockStream;
use paddock_protocol::{EgressHello, EGRESS_PORT, HOST_CID};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// Opens connected streams to the host's egress proxy.
pub trait Upstream: Send + Sync + 'static {
    type Stream: Read + Write + AsFd + Send + 'static;

    /// A new connection, nothing sent yet.
    fn connect(&self) -> io::Result<Self::Stream>;
}

impl<S, F> Upstream for F
where
    F: Fn() -> io::Result<S> + Send + Sync + 'static,
    S: Read + Write + AsFd + Send + 'static,
{
    type Stream = S;

    fn connect(&self) -> io::Result<S> {
        self()
    }
}

/// The real way out: vsock to the host's egress proxy.
pub fn host_proxy() -> io::Result<VsockStream> {
    VsockStream::connect(HOST_CID, EGRESS_PORT)
}

/// Why a connection to the host's egress proxy could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot connect to the host's egress proxy: {0}")]
    Connect(#[source] io::Error),
    #[error("cannot send the hello line to the host's egress proxy: {0}")]
    Hello(#[source] io::Error),
}

/// Connects and sends `hello`; whatever follows is the connection's own bytes.
pub fn open<U: Upstream + ?Sized>(
    upstream: &U,
    hello: &EgressHello,
) -> Result<U::Stream, OpenError> {
    let mut stream = upstream.connect().map_err(OpenError::Connect)?;
    stream
        .write_all(&hello.encode())
        .map_err(OpenError::Hello)?;
    Ok(stream)
}

/// Whether the host's egress proxy could be reached lately: one console line when it stops
/// answering and one when it answers again, however many connections fail in between.
#[derive(Debug, Default)]
pub struct HostLink {
    failing: AtomicBool,
}

impl HostLink {
    /// A connection was opened.
    pub fn opened(&self) {
        if self.failing.swap(false, Ordering::SeqCst) {
            crate::console_log!("egress: the host's egress proxy answers again");
        }
    }

    /// A connection could not be opened.
    pub fn failed(&self, error: &OpenError) {
        if !self.failing.swap(true, Ordering::SeqCst) {
            crate::console_log!("egress: {error}");
        }
    }

    /// Whether the last attempt failed.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// [`open`], noting the outcome.
    pub fn open<U: Upstream + ?Sized>(
        &self,
        upstream: &U,
        hello: &EgressHello,
    ) -> Result<U::Stream, OpenError> {
        let opened = open(upstream, hello);
        match &opened {
            Ok(_) => self.opened(),
            Err(error) => self.failed(error),
        }
        opened
    }
}
