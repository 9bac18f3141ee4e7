//! After a snapshot restore or reset the guest must not trust its past: set the wall clock and
//! reseed the kernel RNG from values the host supplies.

use crate::sys::cvt;
use paddock_protocol::UnixTime;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

/// `RNDADDENTROPY` = `_IOW('R', 0x03, int[2])` from `<linux/random.h>` (not in the libc crate).
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG` = `_IO('R', 0x07)`: reseed the CRNG now instead of at its next interval.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Sets `CLOCK_REALTIME`.
pub fn set_wall_clock(time: UnixTime) -> io::Result<()> {
    if !time.is_valid() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nanoseconds out of range",
        ));
    }
    let spec = libc::timespec {
        tv_sec: libc::time_t::try_from(time.secs)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seconds out of range"))?,
        // Below 1e9 (checked above), so it fits every c_long.
        tv_nsec: libc::c_long::from(time.nanos),
    };
    // SAFETY: `spec` is a valid timespec for the duration of the call.
    cvt(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &spec) })?;
    Ok(())
}

/// Mixes `entropy` into the kernel pool, credited in full, then forces a CRNG reseed.
pub fn add_entropy(entropy: &[u8]) -> io::Result<()> {
    let request = rand_pool_info(entropy)?;
    let urandom = OpenOptions::new().write(true).open("/dev/urandom")?;
    // SAFETY: `request` is a correctly laid out `struct rand_pool_info` whose buf_size matches
    // the bytes that follow it; the kernel only reads it.
    cvt(unsafe { libc::ioctl(urandom.as_raw_fd(), RNDADDENTROPY, request.as_ptr()) })?;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    cvt(unsafe { libc::ioctl(urandom.as_raw_fd(), RNDRESEEDCRNG) })?;
    Ok(())
}

/// Lays out `struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }` in u32
/// words (for alignment): entropy credit in bits, size in bytes, then the bytes.
fn rand_pool_info(entropy: &[u8]) -> io::Result<Vec<u32>> {
    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "too much entropy");
    let size = i32::try_from(entropy.len()).map_err(|_| too_big())?;
    let bits = size.checked_mul(8).ok_or_else(too_big)?;
    let mut words = vec![0u32; 2 + entropy.len().div_ceil(4)];
    words[0] = u32::try_from(bits).map_err(|_| too_big())?;
    words[1] = u32::try_from(size).map_err(|_| too_big())?;
    for (word, chunk) in words[2..].iter_mut().zip(entropy.chunks(4)) {
        let mut bytes = [0u8; 4];
        bytes[..chunk.len()].copy_from_slice(chunk);
        *word = u32::from_ne_bytes(bytes);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rand_pool_info_layout_matches_the_kernel_struct() {
        let entropy: Vec<u8> = (1..=6).collect();
        let words = rand_pool_info(&entropy).unwrap();
        assert_eq!(words.len(), 4);
        assert_eq!(words[0], 48, "credit in bits");
        assert_eq!(words[1], 6, "size in bytes");
        let bytes: Vec<u8> = words[2..].iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(&bytes[..6], &entropy[..]);
        assert_eq!(&bytes[6..], &[0, 0]);
    }

    #[test]
    fn ioctl_numbers_match_linux_random_h() {
        // _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr
        let ioc = |dir: libc::c_ulong, nr: libc::c_ulong, size: libc::c_ulong| {
            dir << 30 | size << 16 | libc::c_ulong::from(b'R') << 8 | nr
        };
        assert_eq!(RNDADDENTROPY, ioc(1, 0x03, 2 * 4));
        assert_eq!(RNDRESEEDCRNG, ioc(0, 0x07, 0));
    }

    #[test]
    fn invalid_wall_clock_is_refused_before_any_syscall() {
        let err = set_wall_clock(UnixTime {
            secs: 1,
            nanos: 1_000_000_000,
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
