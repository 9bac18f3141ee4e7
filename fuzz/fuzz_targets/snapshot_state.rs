//! The snapshot state file's decoder, from any bytes (a corrupt or crafted snapshot): the
//! envelope (magic, version, length, CRC), the state behind it, and the memory file it names. Input: a flags byte (bit 0:
//! fix the CRC so the payload reaches bincode), then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_vmm::snapshot::format::{decode, HEADER_LEN};
use paddock_vmm::snapshot::state::SnapshotState;
use paddock_vmm::snapshot::store::read;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, file)) = data.split_first() else {
        return;
    };
    let mut file = file.to_vec();
    if flags & 1 == 1 && file.len() >= HEADER_LEN {
        let len = u64::from_le_bytes(file[12..20].try_into().unwrap_or_default());
        let end = usize::try_from(len)
            .map_or(file.len(), |len| HEADER_LEN.saturating_add(len))
            .min(file.len());
        let crc = crc32fast::hash(&file[HEADER_LEN..end]);
        file[20..24].copy_from_slice(&crc.to_le_bytes());
    }
    if let Ok(state) = decode::<SnapshotState>(&file) {
        let _ = state.memory();
    }
    // The same file as a snapshot directory's state, next to a memory file: the name the
    // state gives for its memory file never leads out of the directory.
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("state.bin"), &file).expect("state file");
    std::fs::write(dir.path().join("memory"), [0u8; 4096]).expect("memory file");
    if let Ok((_, memory)) = read::<SnapshotState>(dir.path(), SnapshotState::memory) {
        assert_eq!(memory.parent(), Some(dir.path()), "{}", memory.display());
    }
});
