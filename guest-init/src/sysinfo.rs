//! Facts about the running guest reported to the host (`Ready`, `Resumed`).

use paddock_protocol::{BootInfo, EngineState};
use std::ffi::CStr;
use std::io;

/// Builds the [`BootInfo`] for this moment, with the engine in state `engine`.
pub fn boot_info(engine: EngineState) -> BootInfo {
    BootInfo {
        uptime_ns: uptime_ns().unwrap_or(0),
        kernel_release: kernel_release().unwrap_or_else(|_| "unknown".into()),
        init_version: env!("CARGO_PKG_VERSION").into(),
        engine,
    }
}

/// `CLOCK_BOOTTIME` in nanoseconds: time since the kernel started, including suspend.
pub fn uptime_ns() -> io::Result<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-pointer for the duration of the call.
    crate::sys::cvt(unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) })?;
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// The kernel release string (`uname -r`).
pub fn kernel_release() -> io::Result<String> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid out-pointer for the duration of the call.
    crate::sys::cvt(unsafe { libc::uname(&mut uts) })?;
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .map(|&c| u8::from_ne_bytes(c.to_ne_bytes()))
        .collect();
    let release = CStr::from_bytes_until_nul(&bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "unterminated release"))?;
    Ok(release.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_info_matches_this_kernel() {
        let info = boot_info(EngineState::Absent);
        let proc_release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(info.kernel_release, proc_release.trim());
        assert_eq!(info.init_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.engine, EngineState::Absent);
        let first = uptime_ns().unwrap();
        assert!(first > 0);
        assert!(uptime_ns().unwrap() >= first);
    }
}
