//! One plain-HTTP exchange on a dialed upstream: the checked head, then exactly the body its
//! framing announces, and nothing more from the guest — a pipelined second request, or bytes
//! after a refused upgrade, never reach the upstream. Only a `101 Switching Protocols` answer to
//! a WebSocket handshake turns the connection into a raw two-way splice.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::http::body::write_counted;
use crate::wire::http::{BodyError, BodyFraming, FramedReader, ResponseHeadError};

use super::splice::{splice, Spliced};

/// Size of one read of the upstream's answer.
const RELAY_CHUNK: usize = 16 * 1024;

/// The request to send: its rewritten head, the body bytes read with the head, and the body's
/// framing.
pub(crate) struct Request<'a> {
    pub(crate) head: &'a [u8],
    pub(crate) body_start: Vec<u8>,
    pub(crate) framing: BodyFraming,
}

/// Why an exchange ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// The guest's request body broke its framing, or copying it failed.
    #[error("request body")]
    RequestBody(#[source] BodyError),
    /// The upstream's answer to an upgrade could not be read.
    #[error("upstream response head")]
    ResponseHead(#[source] ResponseHeadError),
    /// The upstream's answer body broke its framing, or copying it failed.
    #[error("response body")]
    ResponseBody(#[source] BodyError),
    /// Relaying the answer, or the upgraded connection, failed.
    #[error("relaying")]
    Relay(#[source] io::Error),
}

/// Sends one request and relays the answer until the upstream closes. After the request's body
/// the guest is still read (so its close is seen) but what it sends is dropped.
pub(crate) async fn exchange_once<S: AsyncRead + AsyncWrite + Unpin>(
    guest: &mut S,
    upstream: &mut TcpStream,
    request: Request<'_>,
) -> (Spliced, Option<ExchangeError>) {
    let mut bytes_up = 0u64;
    let mut bytes_down = 0u64;
    let (guest_read, mut guest_write) = tokio::io::split(guest);
    let (mut upstream_read, mut upstream_write) = upstream.split();
    // The two directions borrow the counters; the block ends both before they are read.
    let error = {
        let send = async {
            write_counted(&mut upstream_write, request.head, &mut bytes_up).await?;
            let mut body = FramedReader::new(guest_read, request.body_start);
            body.copy_body(request.framing, &mut upstream_write, &mut bytes_up)
                .await?;
            let dropped = body.discard_rest().await?;
            if dropped > 0 {
                tracing::debug!(dropped, "dropped guest bytes after the request");
            }
            Ok::<(), BodyError>(())
        };
        let relay = async {
            let copied =
                copy_until_closed(&mut upstream_read, &mut guest_write, &mut bytes_down).await;
            let _ = guest_write.shutdown().await;
            copied
        };
        let mut send = std::pin::pin!(send);
        let mut relay = std::pin::pin!(relay);
        let mut sent = false;
        loop {
            tokio::select! {
                outcome = &mut send, if !sent => match outcome {
                    Ok(()) => sent = true,
                    Err(error) => break Some(ExchangeError::RequestBody(error)),
                },
                outcome = &mut relay => break outcome.err().map(ExchangeError::Relay),
            }
        }
    };
    (
        Spliced {
            bytes_up,
            bytes_down,
        },
        error,
    )
}

/// Sends a WebSocket handshake and reads the answer's head: on `101` the connection becomes a
/// raw splice; on anything else that one answer is relayed and the connection closed.
pub(crate) async fn exchange_upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    guest: &mut S,
    upstream: &mut TcpStream,
    request: Request<'_>,
) -> (Spliced, Option<ExchangeError>) {
    let mut counts = Spliced::default();
    let error = upgrade_steps(guest, upstream, request, &mut counts)
        .await
        .err();
    (counts, error)
}

async fn upgrade_steps<S: AsyncRead + AsyncWrite + Unpin>(
    guest: &mut S,
    upstream: &mut TcpStream,
    request: Request<'_>,
    counts: &mut Spliced,
) -> Result<(), ExchangeError> {
    write_counted(upstream, request.head, &mut counts.bytes_up)
        .await
        .map_err(ExchangeError::RequestBody)?;
    let mut body = FramedReader::new(&mut *guest, request.body_start);
    body.copy_body(request.framing, upstream, &mut counts.bytes_up)
        .await
        .map_err(ExchangeError::RequestBody)?;
    let (_, guest_ahead) = body.into_parts();

    let mut answer = FramedReader::new(&mut *upstream, Vec::new());
    let head = answer
        .read_response_head()
        .await
        .map_err(ExchangeError::ResponseHead)?;
    write_counted(guest, &head.bytes, &mut counts.bytes_down)
        .await
        .map_err(ExchangeError::ResponseBody)?;
    if head.status != 101 {
        // Not switched: this answer is the last thing on the connection.
        answer
            .copy_body(head.framing, guest, &mut counts.bytes_down)
            .await
            .map_err(ExchangeError::ResponseBody)?;
        let _ = guest.shutdown().await;
        return Ok(());
    }
    let (_, upstream_ahead) = answer.into_parts();
    write_counted(guest, &upstream_ahead, &mut counts.bytes_down)
        .await
        .map_err(ExchangeError::ResponseBody)?;
    write_counted(upstream, &guest_ahead, &mut counts.bytes_up)
        .await
        .map_err(ExchangeError::RequestBody)?;
    let (spliced, error) = splice(guest, upstream).await;
    counts.bytes_up = counts.bytes_up.saturating_add(spliced.bytes_up);
    counts.bytes_down = counts.bytes_down.saturating_add(spliced.bytes_down);
    match error {
        Some(error) => Err(ExchangeError::Relay(error)),
        None => Ok(()),
    }
}

/// Copies `reader` to `writer` until `reader` ends, counting what was written.
async fn copy_until_closed<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut R,
    writer: &mut W,
    count: &mut u64,
) -> io::Result<()> {
    let mut chunk = vec![0u8; RELAY_CHUNK];
    loop {
        let read = reader.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        writer
            .write_all(chunk.get(..read).unwrap_or_default())
            .await?;
        *count = count.saturating_add(read as u64);
    }
}
