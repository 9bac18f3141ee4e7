//! The lab console protocol: marker lines the lab's /init prints, and the filter that turns the raw
//! serial stream into the command's output plus its exit status.
//!
//! Every marker carries a per-run nonce, so nothing the command prints can fake one. Everything
//! before the start marker is boot noise: hidden, but kept in the tail for error reports.

use std::collections::VecDeque;

/// How many console lines are kept for error reports.
const TAIL_LINES: usize = 40;

/// The marker strings of one lab run.
#[derive(Clone, Debug)]
pub struct Markers {
    nonce: String,
}

impl Markers {
    pub fn new(nonce: &str) -> Self {
        Self {
            nonce: nonce.to_owned(),
        }
    }

    /// Followed by the guest uptime in seconds when /init starts.
    pub fn init(&self) -> String {
        format!("PADDOCK-LAB-INIT-{}=", self.nonce)
    }

    /// Printed right before the command runs.
    pub fn start(&self) -> String {
        format!("PADDOCK-LAB-START-{}", self.nonce)
    }

    /// Followed by the command's exit status.
    pub fn exit(&self) -> String {
        format!("PADDOCK-LAB-EXIT-{}=", self.nonce)
    }

    /// Followed by a message when the lab itself failed (module load, missing /dev/kvm).
    pub fn error(&self) -> String {
        format!("PADDOCK-LAB-ERROR-{}=", self.nonce)
    }

    /// The lab's heartbeat, printed every few seconds while it runs: a lab whose console goes
    /// quiet for long has stalled (its emulated CPUs stopped), whatever the command is doing.
    pub fn alive(&self) -> String {
        format!("PADDOCK-LAB-ALIVE-{}", self.nonce)
    }

    /// Followed by a label the command reports when one of its steps is done (the test suite:
    /// one per test binary), so that a lab that goes down can be resumed after that step.
    pub fn done(&self) -> String {
        format!("PADDOCK-LAB-DONE-{}=", self.nonce)
    }
}

/// What one console line means for the host.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing to show (boot noise, a marker).
    Hide,
    /// Command output: these bytes, followed by a newline when `newline`.
    Show { bytes: Vec<u8>, newline: bool },
    /// /init started at this guest uptime (seconds).
    InitReached(f64),
    /// The command exited; `before` is output that preceded the marker on the same line.
    Exited { status: i32, before: Vec<u8> },
    /// The command reported a step done; `before` is output that preceded the marker.
    Progress { label: String, before: Vec<u8> },
    /// The lab itself failed.
    LabError(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Boot,
    Command,
    Done,
}

/// Classifies console lines; keeps the last lines for error reports.
pub struct ConsoleFilter {
    markers: Markers,
    phase: Phase,
    tail: VecDeque<String>,
}

impl ConsoleFilter {
    pub fn new(markers: Markers) -> Self {
        Self {
            markers,
            phase: Phase::Boot,
            tail: VecDeque::with_capacity(TAIL_LINES),
        }
    }

    /// Feeds one line without its `\n`; a trailing `\r` (the tty's ONLCR) is dropped.
    pub fn line(&mut self, raw: &[u8]) -> Step {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        // The heartbeat is written in one piece ending the line, and may land in the middle of
        // the command's own line: what preceded it is that line's beginning, shown as it is.
        if let Some(partial) = line.strip_suffix(self.markers.alive().as_bytes()) {
            return match self.phase {
                Phase::Command if !partial.is_empty() => Step::Show {
                    bytes: partial.to_vec(),
                    newline: false,
                },
                _ => Step::Hide,
            };
        }
        let text = String::from_utf8_lossy(line);
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text.clone().into_owned());

        if let Some(message) = after(&text, &self.markers.error()) {
            self.phase = Phase::Done;
            return Step::LabError(message.trim().to_owned());
        }
        match self.phase {
            Phase::Boot => {
                if let Some(uptime) = after(&text, &self.markers.init()) {
                    return uptime.trim().parse().map_or(Step::Hide, Step::InitReached);
                }
                if text.contains(&self.markers.start()) {
                    self.phase = Phase::Command;
                }
                Step::Hide
            }
            Phase::Command => {
                let done = self.markers.done();
                if let Some(at) = find(line, done.as_bytes()) {
                    return Step::Progress {
                        label: String::from_utf8_lossy(&line[at + done.len()..])
                            .trim()
                            .to_owned(),
                        before: line[..at].to_vec(),
                    };
                }
                let exit = self.markers.exit();
                let Some(at) = find(line, exit.as_bytes()) else {
                    return Step::Show {
                        bytes: line.to_vec(),
                        newline: true,
                    };
                };
                self.phase = Phase::Done;
                let status_text = String::from_utf8_lossy(&line[at + exit.len()..]);
                match status_text.trim().parse() {
                    Ok(status) => Step::Exited {
                        status,
                        before: line[..at].to_vec(),
                    },
                    Err(_) => Step::LabError(format!("unreadable exit status {status_text:?}")),
                }
            }
            Phase::Done => Step::Hide,
        }
    }

    /// Feeds a piece of an overlong line (no marker can be in it: the caller holds back enough
    /// bytes); shown as-is while the command runs, hidden otherwise.
    pub fn fragment(&mut self, raw: &[u8]) -> Step {
        match self.phase {
            Phase::Command => Step::Show {
                bytes: raw.to_vec(),
                newline: false,
            },
            Phase::Boot | Phase::Done => Step::Hide,
        }
    }

    /// The last console lines, for error messages.
    pub fn tail(&self) -> String {
        self.tail.iter().map(|l| format!("  | {l}\n")).collect()
    }
}

/// The text after `marker` in `text`, if it occurs.
fn after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.find(marker).map(|at| &text[at + marker.len()..])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> (ConsoleFilter, Markers) {
        let markers = Markers::new("n0nce");
        (ConsoleFilter::new(markers.clone()), markers)
    }

    #[test]
    fn boot_noise_is_hidden_and_output_shown_until_the_exit_marker() {
        let (mut f, m) = filter();
        assert_eq!(f.line(b"[    0.000000] Linux version 6.1\r"), Step::Hide);
        assert_eq!(
            f.line(format!("{}2.46\r", m.init()).as_bytes()),
            Step::InitReached(2.46)
        );
        assert_eq!(f.line(b"still boot noise\r"), Step::Hide);
        assert_eq!(f.line(format!("{}\r", m.start()).as_bytes()), Step::Hide);
        assert_eq!(
            f.line(b"hello\r"),
            Step::Show {
                bytes: b"hello".to_vec(),
                newline: true
            }
        );
        assert_eq!(
            f.line(b""),
            Step::Show {
                bytes: vec![],
                newline: true
            }
        );
        assert_eq!(
            f.line(format!("{}3\r", m.exit()).as_bytes()),
            Step::Exited {
                status: 3,
                before: vec![]
            }
        );
        assert_eq!(f.line(b"reboot: Power down\r"), Step::Hide);
    }

    #[test]
    fn output_without_final_newline_keeps_its_text() {
        let (mut f, m) = filter();
        f.line(m.start().as_bytes());
        let step = f.line(format!("partial{}0", m.exit()).as_bytes());
        assert_eq!(
            step,
            Step::Exited {
                status: 0,
                before: b"partial".to_vec()
            }
        );
    }

    #[test]
    fn markers_with_another_nonce_are_plain_output() {
        let (mut f, m) = filter();
        f.line(m.start().as_bytes());
        let forged = b"PADDOCK-LAB-EXIT-other=0";
        assert_eq!(
            f.line(forged),
            Step::Show {
                bytes: forged.to_vec(),
                newline: true
            }
        );
    }

    #[test]
    fn exit_marker_before_start_is_ignored() {
        let (mut f, m) = filter();
        assert_eq!(f.line(format!("{}0", m.exit()).as_bytes()), Step::Hide);
    }

    #[test]
    fn lab_errors_and_bad_statuses_are_reported() {
        let (mut f, m) = filter();
        let step = f.line(format!("{}insmod kvm.ko failed\r", m.error()).as_bytes());
        assert_eq!(step, Step::LabError("insmod kvm.ko failed".into()));
        let (mut f, m) = filter();
        f.line(m.start().as_bytes());
        assert!(matches!(
            f.line(format!("{}x", m.exit()).as_bytes()),
            Step::LabError(_)
        ));
    }

    #[test]
    fn fragments_show_only_while_the_command_runs() {
        let (mut f, m) = filter();
        assert_eq!(f.fragment(b"boot"), Step::Hide);
        f.line(m.start().as_bytes());
        assert_eq!(
            f.fragment(b"data"),
            Step::Show {
                bytes: b"data".to_vec(),
                newline: false
            }
        );
    }

    #[test]
    fn heartbeats_are_hidden_and_the_line_they_cut_is_kept() {
        let (mut f, m) = filter();
        assert_eq!(f.line(format!("{}\r", m.alive()).as_bytes()), Step::Hide);
        f.line(m.start().as_bytes());
        assert_eq!(f.line(m.alive().as_bytes()), Step::Hide);
        assert_eq!(
            f.line(format!("test a ... {}\r", m.alive()).as_bytes()),
            Step::Show {
                bytes: b"test a ... ".to_vec(),
                newline: false
            }
        );
        assert_eq!(
            f.line(b"ok\r"),
            Step::Show {
                bytes: b"ok".to_vec(),
                newline: true
            }
        );
        // Another run's heartbeat is plain output.
        let forged = b"PADDOCK-LAB-ALIVE-other";
        assert!(matches!(f.line(forged), Step::Show { newline: true, .. }));
    }

    #[test]
    fn progress_labels_are_reported_with_what_preceded_them() {
        let (mut f, m) = filter();
        assert_eq!(f.line(format!("{}0:0", m.done()).as_bytes()), Step::Hide);
        f.line(m.start().as_bytes());
        assert_eq!(
            f.line(format!("tail{}2:101\r", m.done()).as_bytes()),
            Step::Progress {
                label: "2:101".into(),
                before: b"tail".to_vec()
            }
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let (mut f, _) = filter();
        for i in 0..100 {
            f.line(format!("line {i}").as_bytes());
        }
        let tail = f.tail();
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.ends_with("  | line 99\n") && !tail.contains("line 59\n"));
    }
}
