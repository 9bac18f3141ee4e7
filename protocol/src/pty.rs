//! Terminal (PTY) sessions: what the host asks for when it wants a terminal in the guest.
//!
//! An [`crate::ExecRequest`] whose `tty` is set runs its command on a pseudo-terminal in the
//! guest: input is [`crate::Request::Stdin`], output (stdout and stderr merged, as a terminal
//! shows them) is [`crate::Response::Stdout`], [`crate::Request::Resize`] changes the window
//! size, [`crate::Request::Detach`] leaves the session running without the host and
//! [`crate::Request::Attach`] comes back to it. Every field is bounded: a `TERM` name is at most
//! [`MAX_TERM_LEN`] bytes of `[A-Za-z0-9._+-]`, refused on encode and on decode otherwise.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest `TERM` value accepted, in bytes.
pub const MAX_TERM_LEN: usize = 64;
/// Bytes of a detached session's most recent output the guest keeps for the next attach.
pub const DETACHED_OUTPUT_BUFFER: usize = 64 * 1024;

/// A terminal window size in character cells (`struct winsize` without the pixel fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

impl WindowSize {
    /// The classic 24x80, for when the real size is unknown.
    pub const FALLBACK: WindowSize = WindowSize { rows: 24, cols: 80 };
}

/// How to set up the terminal of a PTY exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyConfig {
    /// The window size at start.
    pub size: WindowSize,
    /// `TERM` for the command (at most [`MAX_TERM_LEN`] bytes of `[A-Za-z0-9._+-]`).
    #[serde(
        serialize_with = "serialize_term",
        deserialize_with = "deserialize_term"
    )]
    pub term: String,
}

/// Errors of [`PtyConfig::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PtyConfigError {
    #[error("TERM is empty")]
    EmptyTerm,
    #[error("TERM of {0} bytes exceeds the {MAX_TERM_LEN}-byte limit")]
    TermTooLong(usize),
    #[error("TERM may only hold letters, digits and . _ + -")]
    TermCharacters,
}

impl PtyConfig {
    /// A configuration with a validated `term`.
    pub fn new(size: WindowSize, term: &str) -> Result<Self, PtyConfigError> {
        check_term(term)?;
        Ok(Self {
            size,
            term: term.to_string(),
        })
    }
}

/// Whether `term` is an acceptable `TERM` value.
pub fn check_term(term: &str) -> Result<(), PtyConfigError> {
    if term.is_empty() {
        return Err(PtyConfigError::EmptyTerm);
    }
    if term.len() > MAX_TERM_LEN {
        return Err(PtyConfigError::TermTooLong(term.len()));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-');
    if !term.chars().all(allowed) {
        return Err(PtyConfigError::TermCharacters);
    }
    Ok(())
}

fn serialize_term<S: Serializer>(term: &str, s: S) -> Result<S::Ok, S::Error> {
    check_term(term).map_err(serde::ser::Error::custom)?;
    s.serialize_str(term)
}

fn deserialize_term<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    // The frame's bincode limit already bounds the allocation; the length check then keeps
    // what is held to MAX_TERM_LEN.
    let term = String::deserialize(d)?;
    check_term(&term).map_err(serde::de::Error::custom)?;
    Ok(term)
}

#[cfg(test)]
mod tests;
