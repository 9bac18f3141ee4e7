//! Moving bytes: [`Prefixed`] replays bytes the proxy already read from the guest (the rest of
//! the hello read, a peeked ClientHello) in front of the stream, and [`splice`] copies both ways
//! between guest and upstream, counting, without ever buffering a whole response.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose first reads return `prefix`, then the stream's own bytes; writes go straight
/// to the stream.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    consumed: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` read first.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            consumed: 0,
            inner,
        }
    }

    /// The bytes of the prefix not read yet.
    pub fn unread_prefix(&self) -> &[u8] {
        self.prefix.get(self.consumed..).unwrap_or_default()
    }

    /// Puts `bytes` back in front of whatever is still unread.
    pub fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut prefix = Vec::with_capacity(bytes.len() + self.unread_prefix().len());
        prefix.extend_from_slice(bytes);
        prefix.extend_from_slice(self.unread_prefix());
        self.prefix = prefix;
        self.consumed = 0;
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let unread = this.prefix.get(this.consumed..).unwrap_or_default();
        if unread.is_empty() {
            if !this.prefix.is_empty() {
                this.prefix = Vec::new();
                this.consumed = 0;
            }
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let taken = unread.len().min(buf.remaining());
        buf.put_slice(unread.get(..taken).unwrap_or_default());
        this.consumed += taken;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bytes moved by a [`splice`], counted even when it ended in an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spliced {
    /// Guest to upstream.
    pub bytes_up: u64,
    /// Upstream to guest.
    pub bytes_down: u64,
}

/// Counts the bytes read from and written to a stream.
struct Metered<'a, S> {
    inner: &'a mut S,
    read: u64,
    written: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.read += (buf.filled().len() - before) as u64;
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut *self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            self.written += written as u64;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// Copies guest → upstream and upstream → guest until both directions end (each end's EOF is
/// passed on as a write shutdown) or one fails. Returns the counts and the error, if any.
pub async fn splice<G, U>(guest: &mut G, upstream: &mut U) -> (Spliced, Option<io::Error>)
where
    G: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut metered = Metered {
        inner: guest,
        read: 0,
        written: 0,
    };
    let outcome = tokio::io::copy_bidirectional(&mut metered, upstream).await;
    let counts = Spliced {
        bytes_up: metered.read,
        bytes_down: metered.written,
    };
    (counts, outcome.err())
}

#[cfg(test)]
mod tests;
