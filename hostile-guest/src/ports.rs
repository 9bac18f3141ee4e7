//! Port I/O from guest userspace (after `iopl(3)`): the VMM's legacy devices (the serial port,
//! the i8042) and ports nothing decodes, with random values.

use crate::rng::Rng;

/// Ports handled in the host's kernel (PIC, PIT, speaker, ELCR): random values there break
/// the guest's own timer and interrupts, which tests nothing of the VMM.
const IN_KERNEL: [std::ops::RangeInclusive<u16>; 5] = [
    0x20..=0x21,
    0x40..=0x43,
    0x61..=0x61,
    0xa0..=0xa1,
    0x4d0..=0x4d1,
];
/// Ports whose writes reset a PC (i8042 0xFE on 0x64, port 0x92, 0xcf9): tested elsewhere;
/// here they would only end the run early.
fn resets(port: u16, value: u8) -> bool {
    (port == 0x64 && (value == 0xfe || value == 0xd1)) || port == 0x92 || port == 0xcf9
}

fn outb(port: u16, value: u8) {
    // SAFETY: port output after iopl(3); it touches no memory of this process.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack))
    };
}

fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: port input after iopl(3); it touches no memory of this process.
    unsafe {
        std::arch::asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack))
    };
    value
}

/// Raises this process's I/O privilege to reach every port.
pub fn gain_access() -> std::io::Result<()> {
    // SAFETY: iopl takes a level and changes only this thread's I/O permission.
    if unsafe { libc::iopl(3) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// How the port phase ended.
pub enum PortPhase {
    /// Every access went through (the child reported them).
    Done,
    /// `iopl(3)` was granted but an access trapped (SIGSEGV). Seen only where KVM is nested
    /// under qemu TCG (whose I/O-permission check differs from a real CPU's).
    Trapped,
}

/// Runs [`hammer`] in a child process (its own name, `hostile-ports`, in the kernel's trap
/// report) so that a port access the guest's CPU refuses ends the phase, not the program.
pub fn hammer_in_child(rng: &mut Rng, rounds: u32) -> std::io::Result<PortPhase> {
    // SAFETY: this program is single-threaded here; the child only does port I/O, writes one
    // line and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"hostile-ports".as_ptr()) };
        let sum = hammer(rng, rounds);
        crate::say(&format!("ports: {rounds} accesses (reads summed {sum})"));
        // SAFETY: ends the child at once, without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is a valid out-pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(std::io::Error::last_os_error());
    }
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV {
        return Ok(PortPhase::Trapped);
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(std::io::Error::other(format!(
            "the port child ended with status {status:#x}"
        )));
    }
    // The child drew from its own copy of the generator; the run stays reproducible from the
    // seed, since the parent's draws do not depend on the child's.
    Ok(PortPhase::Done)
}

/// `rounds` random writes and reads on the serial port, the i8042 and undecoded ports, then
/// puts the serial port back as the console driver left it (8N1, divisor latch closed).
pub fn hammer(rng: &mut Rng, rounds: u32) -> u64 {
    let mut checksum = 0u64;
    for _ in 0..rounds {
        let port = match rng.below(4) {
            0 => 0x3f8 + rng.below(8) as u16,
            1 => [0x60u16, 0x64][rng.below(2) as usize],
            _ => rng.below(0x1000) as u16,
        };
        if IN_KERNEL.iter().any(|r| r.contains(&port)) {
            continue;
        }
        let value = rng.next_u32() as u8;
        if resets(port, value) {
            continue;
        }
        if rng.below(3) == 0 {
            checksum = checksum.wrapping_add(u64::from(inb(port)));
        } else {
            outb(port, value);
        }
    }
    // Serial back to 8N1 with divisor 1, FIFO on, interrupts as the driver wants them off.
    outb(0x3fb, 0x80);
    outb(0x3f8, 1);
    outb(0x3f9, 0);
    outb(0x3fb, 0x03);
    outb(0x3f9, 0);
    outb(0x3fc, 0x0b);
    checksum
}
