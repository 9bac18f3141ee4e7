//! Bounds of the engine state's texts on construction, encoding and decoding.

use super::*;
use crate::{encode_frame, read_frame, FrameError};
use std::io::Cursor;

/// The wire shape of [`EngineState`] without its bounds: what a hostile or buggy peer sends.
#[derive(Serialize)]
enum UnboundedEngineState {
    #[allow(dead_code)]
    Absent,
    Up {
        version: String,
    },
    Failed {
        stage: EngineStage,
        detail: String,
    },
}

#[test]
fn constructors_truncate_on_a_character_boundary() {
    let long = "é".repeat(MAX_ENGINE_DETAIL); // two bytes each
    let EngineState::Failed { stage, detail } = EngineState::failed(EngineStage::Dockerd, &long)
    else {
        panic!("not Failed");
    };
    assert_eq!(stage, EngineStage::Dockerd);
    assert_eq!(detail.len(), MAX_ENGINE_DETAIL);
    assert!(detail.chars().all(|c| c == 'é'));

    let odd = format!("x{}", "é".repeat(MAX_ENGINE_VERSION));
    let EngineState::Up { version } = EngineState::up(&odd) else {
        panic!("not Up");
    };
    // 1 + 2k bytes: the last whole character ends one byte before the limit.
    assert_eq!(version.len(), MAX_ENGINE_VERSION - 1);
    assert_eq!(
        EngineState::up("20.10.24"),
        EngineState::Up {
            version: "20.10.24".into()
        }
    );
}

#[test]
fn a_detail_at_the_limit_round_trips() {
    let state = EngineState::failed(EngineStage::Timeout, &"d".repeat(MAX_ENGINE_DETAIL));
    let frame = encode_frame(&state).unwrap();
    let back: EngineState = read_frame(&mut Cursor::new(frame)).unwrap();
    assert_eq!(back, state);
}

#[test]
fn an_oversized_detail_is_refused_on_encode() {
    let state = EngineState::Failed {
        stage: EngineStage::Root,
        detail: "d".repeat(MAX_ENGINE_DETAIL + 1),
    };
    assert!(matches!(encode_frame(&state), Err(FrameError::Encode(_))));
    let state = EngineState::Up {
        version: "v".repeat(MAX_ENGINE_VERSION + 1),
    };
    assert!(matches!(encode_frame(&state), Err(FrameError::Encode(_))));
}

#[test]
fn an_oversized_detail_or_version_is_refused_on_decode() {
    let sent = [
        UnboundedEngineState::Failed {
            stage: EngineStage::Cgroups,
            detail: "d".repeat(MAX_ENGINE_DETAIL + 1),
        },
        UnboundedEngineState::Up {
            version: "v".repeat(MAX_ENGINE_VERSION + 1),
        },
    ];
    for hostile in &sent {
        let frame = encode_frame(hostile).unwrap();
        let result = read_frame::<_, EngineState>(&mut Cursor::new(frame));
        assert!(matches!(result, Err(FrameError::Decode(_))), "{result:?}");
    }
    // The same shape within bounds decodes: the mirror matches the real wire format.
    let frame = encode_frame(&UnboundedEngineState::Up {
        version: "20.10".into(),
    })
    .unwrap();
    let back: EngineState = read_frame(&mut Cursor::new(frame)).unwrap();
    assert_eq!(back, EngineState::up("20.10"));
}
