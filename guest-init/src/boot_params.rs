//! paddock's parameters on the kernel command line (`/proc/cmdline`).
//!
//! - `paddock.root=DEVICE`: boot the agent profile, with the erofs image on `DEVICE` as the
//!   read-only lower layer of the root. Absent: the minimal profile (stay in the initramfs).
//! - `paddock.engine=docker|none`: whether to start the container engine; `docker` by default
//!   when `paddock.root` is given, `none` otherwise.
//! - `paddock.engine_timeout=SECS`: how long the engine may take to answer (default 180).

use std::io;
use std::time::Duration;

/// Where the kernel command line is read from.
pub const CMDLINE_PATH: &str = "/proc/cmdline";
/// How long the engine may take to answer when `paddock.engine_timeout` is absent: generous,
/// since the test lab emulates the CPU in software.
pub const DEFAULT_ENGINE_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest accepted `paddock.engine_timeout` (a day): keeps the deadline arithmetic sane.
const MAX_ENGINE_TIMEOUT_SECS: u64 = 24 * 60 * 60;
/// Longest accepted value of any parameter, in bytes.
const MAX_VALUE_LEN: usize = 256;

/// Which container engine guest-init starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    Docker,
    None,
}

/// paddock's boot parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// Block device holding the agent root image (`paddock.root`).
    pub root: Option<String>,
    pub engine: EngineChoice,
    pub engine_timeout: Duration,
}

/// A parameter that was present but unusable; parsing goes on with the default.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootParamError {
    #[error("paddock.engine={value:?} is neither docker nor none")]
    UnknownEngine { value: String },
    #[error("paddock.engine_timeout={value:?} is not a number of seconds in 1..={MAX_ENGINE_TIMEOUT_SECS}")]
    BadEngineTimeout { value: String },
    #[error("paddock.root needs a device path (e.g. /dev/vda), got {value:?}")]
    BadRoot { value: String },
    #[error("{name} has a value longer than {MAX_VALUE_LEN} bytes")]
    TooLong { name: &'static str },
}

/// Parses `cmdline`; unusable parameters are returned next to the result, which then holds
/// their defaults. Words after `--` are arguments for init, not parameters, and are ignored.
pub fn parse(cmdline: &str) -> (BootParams, Vec<BootParamError>) {
    let mut root = None;
    let mut engine = None;
    let mut engine_timeout = DEFAULT_ENGINE_TIMEOUT;
    let mut errors = Vec::new();
    for word in cmdline.split_whitespace().take_while(|word| *word != "--") {
        let Some((name, value)) = word.split_once('=') else {
            continue;
        };
        let name = match name {
            "paddock.root" => "paddock.root",
            "paddock.engine" => "paddock.engine",
            "paddock.engine_timeout" => "paddock.engine_timeout",
            _ => continue,
        };
        if value.len() > MAX_VALUE_LEN {
            errors.push(BootParamError::TooLong { name });
            continue;
        }
        match name {
            "paddock.root" if value.starts_with('/') => root = Some(value.to_string()),
            "paddock.root" => errors.push(BootParamError::BadRoot {
                value: value.into(),
            }),
            "paddock.engine" => match value {
                "docker" => engine = Some(EngineChoice::Docker),
                "none" => engine = Some(EngineChoice::None),
                _ => errors.push(BootParamError::UnknownEngine {
                    value: value.into(),
                }),
            },
            _ => match value.parse::<u64>() {
                Ok(secs @ 1..=MAX_ENGINE_TIMEOUT_SECS) => {
                    engine_timeout = Duration::from_secs(secs)
                }
                _ => errors.push(BootParamError::BadEngineTimeout {
                    value: value.into(),
                }),
            },
        }
    }
    let engine = engine.unwrap_or(if root.is_some() {
        EngineChoice::Docker
    } else {
        EngineChoice::None
    });
    let params = BootParams {
        root,
        engine,
        engine_timeout,
    };
    (params, errors)
}

/// Reads and parses the running kernel's command line.
pub fn read() -> io::Result<(BootParams, Vec<BootParamError>)> {
    let cmdline = std::fs::read_to_string(CMDLINE_PATH)?;
    Ok(parse(&cmdline))
}

#[cfg(test)]
mod tests;
