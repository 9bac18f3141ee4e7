//! Splicing real sockets: a TCP connection on the program side, a Unix socket pair standing in
//! for the vsock connection on the host side.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

use super::*;
use std::net::{Shutdown as NetShutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// A program connection and a host connection, spliced on a thread.
struct SplicedPair {
    program: TcpStream,
    host: UnixStream,
    splicer: JoinHandle<Result<Spliced, SpliceError>>,
}

fn start() -> SplicedPair {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let program = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    let (mut guest_end, host) = UnixStream::pair().unwrap();
    let splicer = std::thread::spawn(move || splice(&mut accepted, &mut guest_end));
    program
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    host.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    SplicedPair {
        program,
        host,
        splicer,
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn read_all(mut stream: impl Read) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    all
}

#[test]
fn a_mebibyte_each_way_at_once_arrives_intact() {
    let SplicedPair {
        program,
        host,
        splicer,
    } = start();
    let up = pattern(MIB, 1);
    let down = pattern(MIB, 2);
    // Both sides write everything before reading anything: only a splice that keeps both
    // directions moving independently gets through.
    let program_writer = {
        let (mut program, up) = (program.try_clone().unwrap(), up.clone());
        std::thread::spawn(move || {
            program.write_all(&up).unwrap();
            program.shutdown(NetShutdown::Write).unwrap();
        })
    };
    let host_writer = {
        let (mut host, down) = (host.try_clone().unwrap(), down.clone());
        std::thread::spawn(move || {
            host.write_all(&down).unwrap();
            host.shutdown(NetShutdown::Write).unwrap();
        })
    };
    let host_reader = std::thread::spawn(move || read_all(host));
    assert!(read_all(program) == down, "program side got other bytes");
    assert!(
        host_reader.join().unwrap() == up,
        "host side got other bytes"
    );
    program_writer.join().unwrap();
    host_writer.join().unwrap();
    let totals = splicer.join().unwrap().unwrap();
    assert_eq!(
        totals,
        Spliced {
            to_host: MIB as u64,
            to_program: MIB as u64
        }
    );
}

#[test]
fn the_programs_eof_reaches_the_host_while_the_answer_still_flows() {
    let SplicedPair {
        mut program,
        mut host,
        splicer,
    } = start();
    program.write_all(b"request").unwrap();
    program.shutdown(NetShutdown::Write).unwrap();
    // The host sees EOF after the request, and only then answers.
    let mut request = Vec::new();
    host.read_to_end(&mut request).unwrap();
    assert_eq!(request, b"request");
    host.write_all(b"answer after eof").unwrap();
    host.shutdown(NetShutdown::Write).unwrap();
    assert_eq!(read_all(&mut program), b"answer after eof");
    assert!(splicer.join().unwrap().is_ok());
}

#[test]
fn the_hosts_eof_reaches_the_program_while_it_still_sends() {
    let SplicedPair {
        mut program,
        mut host,
        splicer,
    } = start();
    host.write_all(b"greeting").unwrap();
    host.shutdown(NetShutdown::Write).unwrap();
    assert_eq!(read_all(&mut program), b"greeting");
    let late = pattern(300_000, 7);
    program.write_all(&late).unwrap();
    program.shutdown(NetShutdown::Write).unwrap();
    assert!(read_all(&mut host) == late);
    let totals = splicer.join().unwrap().unwrap();
    assert_eq!(totals.to_host, late.len() as u64);
    assert_eq!(totals.to_program, 8);
}

#[test]
fn a_host_that_goes_away_ends_the_splice() {
    let SplicedPair {
        mut program,
        host,
        splicer,
    } = start();
    drop(host);
    // The program sees the host's end; its further writes fail or vanish, never hang.
    assert_eq!(read_all(&mut program), b"");
    let started = Instant::now();
    for _ in 0..64 {
        if program.write_all(&[0u8; 16 * 1024]).is_err() {
            break;
        }
    }
    let _ = program.shutdown(NetShutdown::Write);
    let outcome = splicer.join().unwrap();
    assert!(
        matches!(
            outcome,
            Ok(_)
                | Err(SpliceError::Write {
                    side: Side::Host,
                    ..
                })
        ),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
