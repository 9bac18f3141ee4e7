//! Announces readiness: connect to the host's ready port and send one `Ready` frame. The moment
//! the host accepts that connection is boot-to-ready.

use crate::vsock::VsockStream;
use paddock_protocol::{write_frame, Response, HOST_CID, READY_PORT};
use std::io;
use std::time::{Duration, Instant};

/// Stop retrying after this long: nobody is listening for readiness.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// Sends `Ready`, retrying with backoff while the host is not listening yet.
pub fn announce_ready() -> io::Result<()> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(5);
    loop {
        match try_announce() {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() >= GIVE_UP_AFTER => return Err(e),
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    }
}

fn try_announce() -> io::Result<()> {
    let mut stream = VsockStream::connect(HOST_CID, READY_PORT)?;
    write_frame(&mut stream, &Response::Ready(crate::sysinfo::boot_info()))
        .map_err(io::Error::other)
}
