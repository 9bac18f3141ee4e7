//! The running test server: a listener on `bind:0` served by a thread of its own with a
//! current-thread tokio runtime, one task per connection, stopped (listener closed, connections
//! dropped, thread joined) when the [`Upstream`] is dropped.

use std::future::Future;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// A running test server. Dropping it stops the server: new connections are refused and open
/// ones are closed.
#[derive(Debug)]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where a test server listens: an address (any free port), or an address and port (e.g.
/// `127.0.0.1:443`, for clients that cannot be told the port).
pub trait Bind {
    /// The socket address to bind.
    fn socket_addr(self) -> SocketAddr;
}

impl Bind for IpAddr {
    fn socket_addr(self) -> SocketAddr {
        SocketAddr::new(self, 0)
    }
}

impl Bind for SocketAddr {
    fn socket_addr(self) -> SocketAddr {
        self
    }
}

/// Listens on `bind` and hands every accepted connection to `on_connection`, each as a task of
/// the server's own runtime.
///
/// # Panics
/// If the address cannot be bound or the thread or runtime cannot be started.
pub(crate) fn spawn_server<F, Fut>(name: &str, bind: impl Bind, on_connection: F) -> Upstream
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = StdTcpListener::bind(bind.socket_addr()).expect("bind the test upstream");
    listener
        .set_nonblocking(true)
        .expect("make the test upstream's listener non-blocking");
    let addr = listener.local_addr().expect("the listener's address");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the test upstream's runtime");
    let (stop, stopped) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("upstream-{name}"))
        .spawn(move || {
            runtime.block_on(accept_until_stopped(listener, on_connection, stopped));
            // Dropping the runtime here cancels the connection tasks, closing their sockets.
        })
        .expect("start the test upstream's thread");
    Upstream {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    }
}

async fn accept_until_stopped<F, Fut>(
    listener: StdTcpListener,
    on_connection: F,
    mut stopped: oneshot::Receiver<()>,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "test upstream: cannot register the listener");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(on_connection(stream));
                }
                Err(error) => {
                    tracing::warn!(%error, "test upstream: accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
}
