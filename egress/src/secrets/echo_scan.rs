//! Watching a response stream for a secret echoed back: a Knuth-Morris-Pratt matcher per
//! secret carried across reads, so the stream is never buffered. The only bytes held back are
//! a tail that could be the start of a secret (at most its length less one); since secrets are
//! visible ASCII, a tail ending in a line break (a finished server-sent event) is never held.

use std::fmt;

/// A secret of the host appeared in what the host sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the response carried the {service} secret")]
pub struct SecretEchoed {
    /// The service whose secret it was.
    pub service: String,
}

/// One secret being looked for.
struct Pattern {
    service: String,
    secret: Vec<u8>,
    /// `fallback[i]`: the length of the longest proper prefix of `secret[..=i]` that is also
    /// its suffix (the Knuth-Morris-Pratt failure function).
    fallback: Vec<usize>,
    /// How many bytes of `secret` the stream ends with so far.
    matched: usize,
}

/// Scans a response stream for the secrets a host was sent. `Debug` shows services only.
pub struct EchoScanner {
    patterns: Vec<Pattern>,
    /// The stream's last bytes, not yet released: they could be the start of a secret.
    held: Vec<u8>,
}

impl EchoScanner {
    /// A scanner for these secrets (empty ones are ignored).
    pub(crate) fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let patterns = secrets
            .into_iter()
            .filter(|(_, secret)| !secret.is_empty())
            .map(|(service, secret)| Pattern {
                service: service.to_owned(),
                secret: secret.to_vec(),
                fallback: fallback_table(secret),
                matched: 0,
            })
            .collect();
        EchoScanner {
            patterns,
            held: Vec::new(),
        }
    }

    /// Takes the next bytes of the stream. Appends to `release` what may go on now (bytes held
    /// from before, then `chunk`, less a new tail that could start a secret); or refuses the
    /// stream if a secret is now complete in it.
    pub fn scan(&mut self, chunk: &[u8], release: &mut Vec<u8>) -> Result<(), SecretEchoed> {
        for pattern in &mut self.patterns {
            if pattern.advance(chunk) {
                return Err(SecretEchoed {
                    service: pattern.service.clone(),
                });
            }
        }
        let hold = self
            .patterns
            .iter()
            .map(|pattern| pattern.matched)
            .max()
            .unwrap_or(0);
        self.held.extend_from_slice(chunk);
        let keep_from = self.held.len().saturating_sub(hold);
        release.extend(self.held.drain(..keep_from));
        Ok(())
    }

    /// The end of the stream: appends the held bytes (not a whole secret) to `release`.
    pub fn finish(&mut self, release: &mut Vec<u8>) {
        release.append(&mut self.held);
        for pattern in &mut self.patterns {
            pattern.matched = 0;
        }
    }

    /// How many bytes are held back now.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }
}

impl Pattern {
    /// Runs the matcher over `chunk`; true when the whole secret has been seen.
    fn advance(&mut self, chunk: &[u8]) -> bool {
        for &byte in chunk {
            loop {
                if self.secret.get(self.matched) == Some(&byte) {
                    self.matched += 1;
                    break;
                }
                if self.matched == 0 {
                    break;
                }
                self.matched = self.fallback.get(self.matched - 1).copied().unwrap_or(0);
            }
            if self.matched == self.secret.len() {
                return true;
            }
        }
        false
    }
}

/// The Knuth-Morris-Pratt failure function of `pattern`.
fn fallback_table(pattern: &[u8]) -> Vec<usize> {
    let mut table = vec![0; pattern.len()];
    let mut length = 0;
    for (index, &byte) in pattern.iter().enumerate().skip(1) {
        while length > 0 && pattern.get(length) != Some(&byte) {
            length = table.get(length - 1).copied().unwrap_or(0);
        }
        if pattern.get(length) == Some(&byte) {
            length += 1;
        }
        if let Some(slot) = table.get_mut(index) {
            *slot = length;
        }
    }
    table
}

impl fmt::Debug for EchoScanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoScanner")
            .field(
                "services",
                &self
                    .patterns
                    .iter()
                    .map(|pattern| &pattern.service)
                    .collect::<Vec<_>>(),
            )
            .field("held", &self.held.len())
            .finish()
    }
}
