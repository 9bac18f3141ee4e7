//! The container engine's state as guest-init reports it in [`crate::BootInfo`].
//!
//! Errors crossing the wire carry a kind ([`EngineStage`]); the text next to it is only for
//! humans and bounded: constructors truncate it, and encoding or decoding an over-long text is
//! refused so a peer can never make the other side hold more than the bound.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest [`EngineState::Failed`] detail, in bytes.
pub const MAX_ENGINE_DETAIL: usize = 1024;
/// Longest [`EngineState::Up`] version, in bytes.
pub const MAX_ENGINE_VERSION: usize = 64;

/// Whether the guest runs a container engine, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineState {
    /// No engine in this profile (minimal guest, or `paddock.engine=none`).
    Absent,
    /// The engine answers on its socket.
    Up {
        /// The server version dockerd reports (at most [`MAX_ENGINE_VERSION`] bytes).
        #[serde(
            serialize_with = "serialize_version",
            deserialize_with = "deserialize_version"
        )]
        version: String,
    },
    /// The engine is not available; the sandbox still serves execs.
    Failed {
        stage: EngineStage,
        /// Why, for humans (at most [`MAX_ENGINE_DETAIL`] bytes).
        #[serde(
            serialize_with = "serialize_detail",
            deserialize_with = "deserialize_detail"
        )]
        detail: String,
    },
}

/// Where bringing the engine up failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineStage {
    /// The agent root image could not be mounted or switched to.
    Root,
    /// cgroup v2 could not be prepared for the engine.
    Cgroups,
    /// containerd could not be started or kept running.
    Containerd,
    /// dockerd could not be started, answered wrongly, or kept dying.
    Dockerd,
    /// The engine did not answer within `paddock.engine_timeout`.
    Timeout,
}

impl EngineState {
    /// `Up` with `version` cut to [`MAX_ENGINE_VERSION`] bytes.
    pub fn up(version: &str) -> Self {
        Self::Up {
            version: truncate(version, MAX_ENGINE_VERSION),
        }
    }

    /// `Failed` with `detail` cut to [`MAX_ENGINE_DETAIL`] bytes.
    pub fn failed(stage: EngineStage, detail: &str) -> Self {
        Self::Failed {
            stage,
            detail: truncate(detail, MAX_ENGINE_DETAIL),
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn serialize_bounded<S: Serializer>(text: &str, max: usize, s: S) -> Result<S::Ok, S::Error> {
    if text.len() > max {
        return Err(serde::ser::Error::custom(format_args!(
            "text of {} bytes exceeds the {max}-byte limit",
            text.len()
        )));
    }
    s.serialize_str(text)
}

fn deserialize_bounded<'de, D: Deserializer<'de>>(max: usize, d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text.len() > max {
        return Err(serde::de::Error::invalid_length(
            text.len(),
            &"a text within the protocol's limit",
        ));
    }
    Ok(text)
}

fn serialize_version<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    serialize_bounded(text, MAX_ENGINE_VERSION, s)
}

fn deserialize_version<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    deserialize_bounded(MAX_ENGINE_VERSION, d)
}

fn serialize_detail<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    serialize_bounded(text, MAX_ENGINE_DETAIL, s)
}

fn deserialize_detail<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    deserialize_bounded(MAX_ENGINE_DETAIL, d)
}

#[cfg(test)]
mod tests;
