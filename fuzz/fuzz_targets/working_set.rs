//! A snapshot's working-set record, from any bytes (a corrupt or crafted file beside a snapshot):
//! the decoder never panics, every run it accepts lies inside the guest RAM it names, and
//! populating an accepted record touches only that RAM. Input: a flags byte (bit 0: fix the
//! CRC so the payload reaches the run checks), then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_vmm::snapshot::working_set::WorkingSet;

/// Header length: magic, version, payload length, CRC32.
const HEADER_LEN: usize = 24;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, file)) = data.split_first() else {
        return;
    };
    let mut file = file.to_vec();
    if flags & 1 == 1 && file.len() >= HEADER_LEN {
        let crc = crc32fast::hash(&file[HEADER_LEN..]);
        file[20..24].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(set) = WorkingSet::decode(&file) else {
        return;
    };
    let pages = set.memory_bytes / 4096;
    for &(first, n) in &set.runs {
        assert!(
            n > 0 && first + n <= pages,
            "run ({first}, {n}) of {pages} pages"
        );
    }
    assert_eq!(WorkingSet::decode(&set.encode()).ok().as_ref(), Some(&set));
    // Populate a small accepted record into guest RAM of its size (sparse: nothing is read).
    if set.memory_bytes <= 64 << 20
        && set.memory_bytes >= 1 << 20
        && set.memory_bytes % (1 << 20) == 0
    {
        let file = tempfile::tempfile().expect("memory file");
        file.set_len(set.memory_bytes).expect("sizing");
        let memory = paddock_vmm::vstate::memory::map_guest_ram(
            &file,
            set.memory_bytes,
            libc::MAP_PRIVATE | libc::MAP_NORESERVE,
        )
        .expect("mapping");
        assert_eq!(set.populate(&memory).expect("populating"), set.pages());
    }
});
