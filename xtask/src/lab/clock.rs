//! The host's TSC frequency, handed to the lab kernel as `tsc_early_khz`.
//!
//! Under TCG the guest's TSC is the host's. The lab kernel otherwise calibrates it against the
//! emulated PIT, which fails when the host is busy (the vCPU thread gets descheduled mid-loop):
//! the kernel then marks the TSC unstable and hangs in early boot (seen in 4 of 25 runs here).

use std::time::{Duration, Instant};

/// How long to count TSC ticks; the error is about (clock read jitter / this), well under 0.01 %.
const MEASURE_FOR: Duration = Duration::from_millis(100);

/// The host TSC frequency in kHz, measured against the monotonic clock; `None` where there is no
/// x86 TSC or the result is implausible.
pub fn host_tsc_khz() -> Option<u64> {
    let (start, ticks_start) = (Instant::now(), read_tsc()?);
    std::thread::sleep(MEASURE_FOR);
    let (end, ticks_end) = (Instant::now(), read_tsc()?);
    let nanos = end.duration_since(start).as_nanos();
    let khz = u128::from(ticks_end.checked_sub(ticks_start)?) * 1_000_000 / nanos.max(1);
    // Anything outside 100 MHz..20 GHz is not a real TSC.
    u64::try_from(khz)
        .ok()
        .filter(|khz| (100_000..20_000_000).contains(khz))
}

#[cfg(target_arch = "x86_64")]
fn read_tsc() -> Option<u64> {
    // SAFETY: RDTSC only reads the time-stamp counter; every x86_64 CPU has it and it has no
    // memory effects.
    Some(unsafe { core::arch::x86_64::_rdtsc() })
}

#[cfg(not(target_arch = "x86_64"))]
fn read_tsc() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn measurements_agree() {
        let first = host_tsc_khz().expect("x86_64 hosts have a TSC");
        let second = host_tsc_khz().expect("x86_64 hosts have a TSC");
        let diff = first.abs_diff(second);
        assert!(
            diff * 1000 < first,
            "{first} kHz vs {second} kHz differ by more than 0.1 %"
        );
    }
}
