//! Guest files read through a stand-in guest (its commands run on the host): streamed as they
//! arrive, or into memory up to a cap.

use super::*;
use crate::client::fake_guest::fake_vm;
use paddock_protocol::MAX_STREAM_CHUNK;

/// Takes the bytes and remembers how many each write brought.
#[derive(Default)]
struct Writes {
    bytes: Vec<u8>,
    sizes: Vec<usize>,
}

impl Write for Writes {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(data);
        self.sizes.push(data.len());
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn bytes(len: u32) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect()
}

#[test]
fn a_guest_file_is_written_out_chunk_by_chunk_as_it_arrives() {
    let vm = fake_vm();
    let dir = tempfile::tempdir().unwrap();
    let content = bytes(1_000_000);
    std::fs::write(dir.path().join("a big file"), &content).unwrap();
    let mut out = Writes::default();
    guest_file_into(&vm.uds, dir.path(), b"a big file", &mut out).unwrap();
    assert!(out.bytes == content, "{} bytes came", out.bytes.len());
    assert!(out.sizes.len() > 1, "{:?}", out.sizes);
    assert!(
        out.sizes.iter().all(|&n| n <= MAX_STREAM_CHUNK),
        "{:?}",
        out.sizes
    );
}

#[test]
fn a_file_is_read_into_memory_only_up_to_the_limit() {
    let vm = fake_vm();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small"), bytes(1000)).unwrap();
    std::fs::write(dir.path().join("big"), bytes(300_000)).unwrap();
    assert_eq!(
        guest_file(&vm.uds, dir.path(), b"small", 1000).unwrap(),
        bytes(1000)
    );
    let err = guest_file(&vm.uds, dir.path(), b"big", 100_000).unwrap_err();
    assert!(
        matches!(err, GuestReadError::TooLarge { limit: 100_000 }),
        "{err}"
    );
}

#[test]
fn a_file_the_guest_cannot_read_fails_with_what_it_said() {
    let vm = fake_vm();
    let dir = tempfile::tempdir().unwrap();
    let err = guest_file(&vm.uds, dir.path(), b"not-there", MAX_PATCH_FILE).unwrap_err();
    assert!(
        matches!(&err, GuestReadError::Failed { status, stderr }
            if !status.success() && stderr.contains("not-there")),
        "{err}"
    );
}

#[test]
fn the_capped_buffer_never_holds_or_reserves_more_than_its_limit() {
    let mut buffer = CappedBuffer::new(1000);
    buffer.write_all(&[1; 3]).unwrap();
    for _ in 0..9 {
        buffer.write_all(&[2; 110]).unwrap();
        assert!(
            buffer.bytes.capacity() <= 1000,
            "{}",
            buffer.bytes.capacity()
        );
    }
    buffer.write_all(&[3; 7]).unwrap();
    assert_eq!(buffer.bytes.len(), 1000);
    assert!(!buffer.overflowed);
    let err = buffer.write_all(&[4]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
    assert!(buffer.overflowed);
    assert_eq!(buffer.bytes.len(), 1000);
    assert!(
        buffer.bytes.capacity() <= 1000,
        "{}",
        buffer.bytes.capacity()
    );
}

#[test]
fn a_guest_that_never_finishes_sending_is_cut_off_at_the_deadline() {
    let vm = fake_vm();
    let conn = client::connect(&vm.uds, CONTROL_PORT).unwrap();
    let request = ExecRequest {
        argv: vec!["sleep".into(), "5".into()],
        env: Vec::new(),
        cwd: None,
        stdin: false,
        tty: None,
    };
    let started = std::time::Instant::now();
    let closer = conn.closer().unwrap();
    let mut out = Writes::default();
    let result = within(Duration::from_millis(300), closer, || {
        conn.exec_streaming(&request, &[], &mut out)
    });
    assert!(
        matches!(result, Err(GuestReadError::TimedOut { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_read_within_its_deadline_is_untouched() {
    let vm = fake_vm();
    let conn = client::connect(&vm.uds, CONTROL_PORT).unwrap();
    let request = ExecRequest {
        argv: vec!["echo".into(), "quick".into()],
        env: Vec::new(),
        cwd: None,
        stdin: false,
        tty: None,
    };
    let closer = conn.closer().unwrap();
    let mut out = Writes::default();
    let done = within(Duration::from_secs(30), closer, || {
        conn.exec_streaming(&request, &[], &mut out)
    })
    .unwrap();
    assert!(done.status.success());
    assert_eq!(out.bytes, b"quick\n");
}
