//! Where the time of a restore or a reset goes: named spans, each the time since the previous
//! one, as `paddock restore|reset|fork --timings` reports them (docs/BENCHMARKS.md explains
//! each span).

use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One span of an operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// What was done in it.
    pub span: String,
    /// How long it took, in milliseconds.
    pub ms: f64,
}

/// Takes spans one after another: each lap closes the span since the previous lap.
#[derive(Debug)]
pub struct SpanClock {
    last: Instant,
    spans: Vec<Span>,
}

impl SpanClock {
    /// A clock whose first span starts at `from`.
    pub fn starting_at(from: Instant) -> Self {
        Self {
            last: from,
            spans: Vec::new(),
        }
    }

    /// Closes the span `name` now.
    pub fn lap(&mut self, name: &str) {
        let now = Instant::now();
        self.spans.push(Span {
            span: name.to_string(),
            ms: now.duration_since(self.last).as_secs_f64() * 1e3,
        });
        self.last = now;
    }

    /// Appends spans measured elsewhere that end now (the next lap starts now).
    pub fn extend(&mut self, spans: Vec<Span>) {
        self.spans.extend(spans);
        self.last = Instant::now();
    }

    /// The spans so far.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// The spans, ending the clock.
    pub fn into_spans(self) -> Vec<Span> {
        self.spans
    }
}

/// Spans as aligned lines with their total, for a terminal.
pub fn describe(spans: &[Span]) -> String {
    let width = spans.iter().map(|s| s.span.len()).max().unwrap_or(0);
    let mut out = String::new();
    for s in spans {
        out.push_str(&format!("  {:<width$}  {:>9.2} ms\n", s.span, s.ms));
    }
    let total: f64 = spans.iter().map(|s| s.ms).sum();
    out.push_str(&format!("  {:<width$}  {:>9.2} ms\n", "total", total));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_follow_each_other_and_sum_to_the_whole() {
        let start = Instant::now();
        let mut clock = SpanClock::starting_at(start);
        std::thread::sleep(std::time::Duration::from_millis(5));
        clock.lap("first");
        clock.lap("second");
        let whole = start.elapsed().as_secs_f64() * 1e3;
        let spans = clock.into_spans();
        assert_eq!(spans.len(), 2);
        assert!(spans[0].ms >= 5.0);
        let sum: f64 = spans.iter().map(|s| s.ms).sum();
        assert!(sum <= whole + 1e-6);
        let text = describe(&spans);
        assert!(text.contains("first") && text.contains("total"), "{text}");
    }
}
