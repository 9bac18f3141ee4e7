//! The control service's accept loop on the guest's vsock port: one thread per connection.

use crate::service::ControlService;
use crate::vsock::VsockListener;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Consecutive accept failures after which the listening socket is recreated (e.g. after a
/// the vsock device was reset and left it unusable).
const REBIND_AFTER_FAILURES: u32 = 20;

/// Accepts connections forever, serving each on its own thread.
pub fn serve_forever(listener: VsockListener, port: u32, service: Arc<ControlService>) -> ! {
    let mut listener = Some(listener);
    loop {
        let current = match listener.take() {
            Some(current) => current,
            None => match VsockListener::bind(port) {
                Ok(fresh) => fresh,
                Err(e) => {
                    crate::console_log!("cannot listen on vsock port {port}: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        let error = accept_until_broken(&current, &service);
        crate::console_log!("accept keeps failing ({error}); listening again");
        // The old socket must be closed before the port can be bound again.
        drop(current);
    }
}

/// Serves connections until accept fails [`REBIND_AFTER_FAILURES`] times in a row.
fn accept_until_broken(listener: &VsockListener, service: &Arc<ControlService>) -> io::Error {
    let mut failures = 0u32;
    loop {
        match listener.accept() {
            Ok(stream) => {
                failures = 0;
                let service = Arc::clone(service);
                let spawned = std::thread::Builder::new()
                    .name("control".into())
                    .spawn(move || {
                        if let Err(e) = service.serve(stream) {
                            crate::console_log!("control connection: {e}");
                        }
                    });
                if let Err(e) = spawned {
                    crate::console_log!("cannot start a control connection thread: {e}");
                }
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => {
                failures += 1;
                if failures >= REBIND_AFTER_FAILURES {
                    return e;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Errors where the next accept may well succeed (the peer gave up first, a signal, ...).
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::ECONNRESET)
    )
}
