//! A fake host egress proxy for tests: a Unix socket server that reads each connection's hello
//! line like the real proxy and then behaves by it:
//! - `RESOLVE name`: answers from its table (NXDOMAIN if absent); `slow.test` is never
//!   answered; `garbage.test` gets a line that is not an answer;
//! - `PROXY` and `TRANSPARENT` to any port but the ones below: echoes until EOF, then
//!   half-closes;
//! - `TRANSPARENT x:9` (discard, then report): reads to EOF, then writes `got N\n`;
//! - `TRANSPARENT x:13` (greet, then count): writes `greeting\n`, half-closes, reads to EOF
//!   and records how much it read.

use super::upstream::Upstream;
use paddock_protocol::egress::MAX_HELLO_LINE;
use paddock_protocol::{EgressHello, ResolveAnswer};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// What the fake host saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub hellos: Vec<EgressHello>,
    /// Bytes read by `x:13` connections.
    pub counted: Vec<usize>,
}

pub struct FakeHost {
    dir: PathBuf,
    path: PathBuf,
    seen: Arc<Mutex<Seen>>,
}

impl FakeHost {
    pub fn start(names: &[(&str, ResolveAnswer)]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "guest-init-egress-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("egress.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let names: Arc<HashMap<String, ResolveAnswer>> = Arc::new(
            names
                .iter()
                .map(|(name, answer)| (name.to_string(), *answer))
                .collect(),
        );
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (names, seen) = (Arc::clone(&names), Arc::clone(&shared));
                std::thread::spawn(move || serve(stream, &names, &seen));
            }
        });
        Self { dir, path, seen }
    }

    /// Connects to this fake host.
    pub fn upstream(&self) -> impl Upstream<Stream = UnixStream> + Clone {
        let path = self.path.clone();
        move || UnixStream::connect(&path)
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A way out that never works (the host's proxy is down).
pub fn unreachable_host() -> impl Upstream<Stream = UnixStream> + Clone {
    || Err(io::Error::from(io::ErrorKind::ConnectionRefused))
}

fn read_hello(stream: &mut UnixStream) -> Option<EgressHello> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < MAX_HELLO_LINE {
        stream.read_exact(&mut byte).ok()?;
        line.push(byte[0]);
        if byte[0] == b'\n' {
            return EgressHello::decode(&line).ok();
        }
    }
    None
}

fn serve(mut stream: UnixStream, names: &HashMap<String, ResolveAnswer>, seen: &Mutex<Seen>) {
    let Some(hello) = read_hello(&mut stream) else {
        return;
    };
    seen.lock().unwrap().hellos.push(hello.clone());
    match hello {
        EgressHello::Resolve(name) => match name.as_str() {
            "slow.test" => std::thread::sleep(Duration::from_secs(3)),
            "garbage.test" => {
                let _ = stream.write_all(b"MAYBE\n");
            }
            _ => {
                let answer = names.get(&name).copied().unwrap_or(ResolveAnswer::NxDomain);
                let _ = stream.write_all(&answer.encode());
            }
        },
        EgressHello::Transparent(addr) if addr.port() == 9 => {
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all);
            let _ = stream.write_all(format!("got {}\n", all.len()).as_bytes());
        }
        EgressHello::Transparent(addr) if addr.port() == 13 => {
            let _ = stream.write_all(b"greeting\n");
            let _ = stream.shutdown(Shutdown::Write);
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all);
            seen.lock().unwrap().counted.push(all.len());
        }
        EgressHello::Proxy | EgressHello::Transparent(_) => {
            let mut reader = stream.try_clone().unwrap();
            let _ = io::copy(&mut reader, &mut stream);
            let _ = stream.shutdown(Shutdown::Write);
        }
    }
}
