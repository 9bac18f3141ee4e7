//! `u64` to `usize` for the 64-bit hosts the VMM runs on (Firecracker's `u64_to_usize`): guest
//! addresses, sizes and file offsets are u64, buffers and host mappings are usize.

// usize is 64 bits wide on every supported host (KVM on x86_64), so the conversion below is
// lossless; a narrower target fails the build here.
const _: () = assert!(usize::BITS == 64);

/// `value` as a usize, losslessly.
#[allow(clippy::cast_possible_truncation)]
pub(crate) const fn u64_to_usize(value: u64) -> usize {
    // Bounded: usize is 64 bits wide (asserted at compile time above).
    value as usize
}
