//! Round trips of every message through the frame codec.

use super::*;
use crate::EngineStage;
use crate::{encode_frame, read_frame};
use std::io::Cursor;

fn round_trip<T>(msg: &T) -> T
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let frame = encode_frame(msg).unwrap();
    let mut cursor = Cursor::new(frame);
    let back = read_frame(&mut cursor).unwrap();
    assert_eq!(
        usize::try_from(cursor.position()).unwrap(),
        cursor.get_ref().len()
    );
    back
}

fn boot_info(engine: EngineState) -> BootInfo {
    BootInfo {
        uptime_ns: 123_456_789,
        kernel_release: "6.1.0-paddock".into(),
        init_version: "0.1.0".into(),
        engine,
    }
}

fn every_engine_state() -> Vec<EngineState> {
    let mut states = vec![EngineState::Absent, EngineState::up("20.10.24+dfsg1")];
    for stage in [
        EngineStage::Root,
        EngineStage::Cgroups,
        EngineStage::Containerd,
        EngineStage::Dockerd,
        EngineStage::Timeout,
    ] {
        states.push(EngineState::failed(stage, "dockerd exited with code 1"));
    }
    states
}

#[test]
fn every_request_round_trips() {
    let requests = [
        Request::Ping {
            nonce: 0xDEAD_BEEF_0000_0001,
        },
        Request::Exec(ExecRequest {
            argv: vec!["sh".into(), "-c".into(), "echo ü $X".into()],
            env: vec![("X".into(), "1".into()), ("EMPTY".into(), String::new())],
            cwd: Some("/tmp".into()),
            stdin: true,
            tty: None,
        }),
        Request::Exec(ExecRequest {
            argv: vec!["true".into()],
            ..ExecRequest::default()
        }),
        Request::Stdin {
            data: (0..=255).collect(),
        },
        Request::Stdin { data: Vec::new() },
        Request::StdinClose,
        Request::Signal { signal: 15 },
        Request::Shutdown {
            action: ShutdownAction::PowerOff,
        },
        Request::Shutdown {
            action: ShutdownAction::Reboot,
        },
        Request::Resume {
            wall_clock: UnixTime {
                secs: 1_700_000_000,
                nanos: 999_999_999,
            },
            entropy: vec![0x5A; RESUME_ENTROPY_MAX],
        },
        Request::MountWorkspace {
            path: "/home/me/project".into(),
            mode: crate::workspace::WorkspaceMode::Cow,
        },
        Request::WorkspaceChanges {
            path: "/home/me/project".into(),
        },
    ];
    for request in &requests {
        assert_eq!(&round_trip(request), request);
    }
}

#[test]
fn every_response_round_trips() {
    let responses = [
        Response::Pong { nonce: u64::MAX },
        Response::Started { pid: 1 },
        Response::Stdout {
            data: vec![7; MAX_STREAM_CHUNK],
        },
        Response::Stderr {
            data: b"oops\n".to_vec(),
        },
        Response::Exited {
            status: ExitStatus::Code(-1),
        },
        Response::Exited {
            status: ExitStatus::Signal(9),
        },
        Response::Error {
            kind: ErrorKind::Other,
            message: "no such file".into(),
        },
        Response::Error {
            kind: ErrorKind::NoDetachedSession,
            message: "no detached terminal session".into(),
        },
        Response::ShuttingDown,
        Response::Detached { pid: 9 },
        Response::Attached { pid: 9 },
        Response::WorkspaceMounted { carried: true },
        Response::WorkspaceChanges {
            changes: vec![
                crate::workspace::WorkspaceChange {
                    path: b"src/bad\xffname".to_vec(),
                    kind: crate::workspace::ChangeKind::Added,
                    node: crate::workspace::ChangedNode::File {
                        mode: 0o644,
                        size: 12,
                    },
                },
                crate::workspace::WorkspaceChange {
                    path: b"link".to_vec(),
                    kind: crate::workspace::ChangeKind::Deleted,
                    node: crate::workspace::ChangedNode::Symlink {
                        target: b"/etc".to_vec(),
                    },
                },
            ],
            more: true,
        },
        Response::Error {
            kind: ErrorKind::Workspace,
            message: "cannot reach the workspace server".into(),
        },
    ];
    for response in &responses {
        assert_eq!(&round_trip(response), response);
    }
}

#[test]
fn boot_info_round_trips_with_every_engine_state() {
    for engine in every_engine_state() {
        for response in [
            Response::Ready(boot_info(engine.clone())),
            Response::Resumed(boot_info(engine.clone())),
        ] {
            assert_eq!(round_trip(&response), response);
        }
    }
}

#[test]
fn byte_payloads_are_encoded_compactly() {
    // A 64 KiB chunk costs the chunk plus a few bytes of tag and length, not a byte per element.
    let frame = encode_frame(&Response::Stdout {
        data: vec![0xFF; MAX_STREAM_CHUNK],
    })
    .unwrap();
    assert!(
        frame.len() <= crate::FRAME_HEADER_LEN + MAX_STREAM_CHUNK + 8,
        "{}",
        frame.len()
    );
}

#[test]
fn exit_status_helpers() {
    assert!(ExitStatus::Code(0).success());
    assert!(!ExitStatus::Code(1).success());
    assert!(!ExitStatus::Signal(9).success());
    assert_eq!(ExitStatus::Code(7).shell_code(), 7);
    assert_eq!(ExitStatus::Signal(9).shell_code(), 137);
}

#[test]
fn unix_time_now_is_valid_and_recent() {
    let now = UnixTime::now();
    assert!(now.is_valid());
    assert!(now.secs > 1_600_000_000);
    assert!(!UnixTime {
        secs: 0,
        nanos: 1_000_000_000
    }
    .is_valid());
}
