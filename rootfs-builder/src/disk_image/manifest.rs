//! The agent manifest a paddock image's trailer carries: which coding agents the image holds,
//! the command each runs as and the version it reported when the image was built, so the host
//! lists them (`paddock agents`) without booting a VM.
//!
//! Encoding: UTF-8 lines `<name> <command> <version>\n`, in order, at most
//! [`MAX_MANIFEST_LEN`] bytes. Names are `[a-z0-9-]`, commands `[A-Za-z0-9._+-]`, versions any
//! printable ASCII without spaces; names are unique.

/// The most bytes a manifest takes in the trailer.
pub const MAX_MANIFEST_LEN: usize = 3968;
/// The longest name, command or version.
pub const MAX_FIELD_LEN: usize = 64;

/// One agent of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentEntry {
    /// What users pick it by (`claude`, `shell`).
    pub name: String,
    /// The program it runs in the guest (`claude`, `bash`).
    pub command: String,
    /// The version the program reported when the image was built.
    pub version: String,
}

/// The agents of an image, in order. Every entry is valid and the whole fits a trailer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentManifest {
    entries: Vec<AgentEntry>,
}

/// Which field of an entry is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestField {
    Name,
    Command,
    Version,
}

impl std::fmt::Display for ManifestField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ManifestField::Name => "name",
            ManifestField::Command => "command",
            ManifestField::Version => "version",
        })
    }
}

/// Why a manifest (or an entry added to one) is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("agent manifest of {len} bytes is longer than {MAX_MANIFEST_LEN}")]
    TooLong { len: usize },
    #[error("agent manifest is not UTF-8")]
    NotUtf8,
    #[error("agent manifest line {line} is not `<name> <command> <version>` ended by a newline")]
    Malformed { line: usize },
    #[error("agent {field} {value:?} is empty, longer than {MAX_FIELD_LEN} bytes or has a character it may not")]
    BadField { field: ManifestField, value: String },
    #[error("agent {name:?} is listed twice")]
    Duplicate { name: String },
}

impl AgentManifest {
    /// An empty manifest (an image without agents, e.g. a test image).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an agent; refuses invalid fields, a repeated name, or growing past the limit.
    pub fn push(&mut self, name: &str, command: &str, version: &str) -> Result<(), ManifestError> {
        check_field(ManifestField::Name, name, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        })?;
        check_field(ManifestField::Command, command, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')
        })?;
        check_field(ManifestField::Version, version, |c| c.is_ascii_graphic())?;
        if self.get(name).is_some() {
            return Err(ManifestError::Duplicate {
                name: name.to_owned(),
            });
        }
        let len = self.encoded_len() + name.len() + command.len() + version.len() + 3;
        if len > MAX_MANIFEST_LEN {
            return Err(ManifestError::TooLong { len });
        }
        self.entries.push(AgentEntry {
            name: name.to_owned(),
            command: command.to_owned(),
            version: version.to_owned(),
        });
        Ok(())
    }

    /// The agents, in order.
    pub fn entries(&self) -> &[AgentEntry] {
        &self.entries
    }

    /// The agent called `name`.
    pub fn get(&self, name: &str) -> Option<&AgentEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The encoding (see the module documentation); at most [`MAX_MANIFEST_LEN`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.encoded_len());
        for e in &self.entries {
            out.push_str(&format!("{} {} {}\n", e.name, e.command, e.version));
        }
        out.into_bytes()
    }

    /// Decodes and validates an encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(ManifestError::TooLong { len: bytes.len() });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
        let mut manifest = Self::new();
        if text.is_empty() {
            return Ok(manifest);
        }
        let Some(body) = text.strip_suffix('\n') else {
            return Err(ManifestError::Malformed {
                line: text.lines().count(),
            });
        };
        for (index, line) in body.split('\n').enumerate() {
            let fields: Vec<&str> = line.split(' ').collect();
            let [name, command, version] = fields[..] else {
                return Err(ManifestError::Malformed { line: index + 1 });
            };
            manifest.push(name, command, version)?;
        }
        Ok(manifest)
    }

    fn encoded_len(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.name.len() + e.command.len() + e.version.len() + 3)
            .sum()
    }
}

fn check_field(
    field: ManifestField,
    value: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), ManifestError> {
    if value.is_empty() || value.len() > MAX_FIELD_LEN || !value.chars().all(allowed) {
        return Err(ManifestError::BadField {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}
