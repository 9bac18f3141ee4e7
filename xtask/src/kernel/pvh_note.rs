//! Finds the PVH entry point a vmlinux advertises: the `XEN_ELFNOTE_PHYS32_ENTRY` note (type 18,
//! owner "Xen") in a `PT_NOTE` segment, which is what linux-loader uses to boot it through PVH.
//! A kernel built without CONFIG_PVH lacks it, and the VMM could not boot it the way we intend.

use anyhow::{bail, ensure, Context, Result};

/// Note type of the 32-bit physical entry point (xen/include/public/elfnote.h).
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const PT_NOTE: u32 = 4;

/// The PVH entry address of an ELF64 little-endian image, `None` when it has no such note.
pub fn pvh_entry(elf: &[u8]) -> Result<Option<u64>> {
    ensure!(
        elf.get(..4) == Some(b"\x7fELF".as_slice()),
        "not an ELF file"
    );
    ensure!(
        elf.get(4) == Some(&2) && elf.get(5) == Some(&1),
        "not a 64-bit little-endian ELF"
    );
    let phoff = read_u64(elf, 0x20)?;
    let phentsize = u64::from(read_u16(elf, 0x36)?);
    let phnum = u64::from(read_u16(elf, 0x38)?);
    ensure!(
        phentsize >= 0x38,
        "program header entries of {phentsize} bytes are too small"
    );
    for index in 0..phnum {
        let header = to_usize(
            phoff
                .checked_add(index * phentsize)
                .context("header overflows")?,
        )?;
        if read_u32(elf, header)? != PT_NOTE {
            continue;
        }
        let offset = to_usize(read_u64(elf, header + 0x08)?)?;
        let size = to_usize(read_u64(elf, header + 0x20)?)?;
        let end = offset.checked_add(size).context("note segment overflows")?;
        let notes = elf
            .get(offset..end)
            .context("note segment lies outside the file")?;
        if let Some(entry) = find_phys32_entry(notes)? {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// Walks one note segment: each note is namesz, descsz, type, then name and desc, 4-byte aligned.
fn find_phys32_entry(mut notes: &[u8]) -> Result<Option<u64>> {
    while notes.len() >= 12 {
        let name_size = to_usize(u64::from(read_u32(notes, 0)?))?;
        let desc_size = to_usize(u64::from(read_u32(notes, 4)?))?;
        let kind = read_u32(notes, 8)?;
        let name_end = 12usize
            .checked_add(name_size)
            .context("note name overflows")?;
        let desc_start = align4(name_end)?;
        let desc_end = desc_start
            .checked_add(desc_size)
            .context("note desc overflows")?;
        let name = notes.get(12..name_end).context("note name truncated")?;
        let desc = notes
            .get(desc_start..desc_end)
            .context("note desc truncated")?;
        if name == b"Xen\0" && kind == XEN_ELFNOTE_PHYS32_ENTRY {
            return match *desc {
                [a, b, c, d] => Ok(Some(u64::from(u32::from_le_bytes([a, b, c, d])))),
                [a, b, c, d, e, f, g, h] => Ok(Some(u64::from_le_bytes([a, b, c, d, e, f, g, h]))),
                _ => bail!("PVH entry note has a {}-byte descriptor", desc.len()),
            };
        }
        notes = notes.get(align4(desc_end)?..).unwrap_or_default();
    }
    Ok(None)
}

fn align4(n: usize) -> Result<usize> {
    Ok(n.checked_add(3).context("note overflows")? & !3)
}

fn to_usize(n: u64) -> Result<usize> {
    usize::try_from(n).context("offset does not fit in memory")
}

fn bytes<const N: usize>(data: &[u8], at: usize) -> Result<[u8; N]> {
    let end = at.checked_add(N).context("offset overflows")?;
    let slice = data
        .get(at..end)
        .with_context(|| format!("ELF truncated at byte {at}"))?;
    Ok(slice.try_into().expect("slice has exactly N bytes"))
}

fn read_u16(data: &[u8], at: usize) -> Result<u16> {
    bytes(data, at).map(u16::from_le_bytes)
}

fn read_u32(data: &[u8], at: usize) -> Result<u32> {
    bytes(data, at).map(u32::from_le_bytes)
}

fn read_u64(data: &[u8], at: usize) -> Result<u64> {
    bytes(data, at).map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&u32::try_from(desc.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(name);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(desc);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    /// A minimal ELF64 image: header, one PT_LOAD and one PT_NOTE program header, then the notes.
    fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
        let mut elf = vec![0u8; 0x40 + 2 * 0x38];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD, ignored
        let note_header = 0x40 + 0x38;
        let notes_at = elf.len() as u64;
        elf[note_header..note_header + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        elf[note_header + 0x08..note_header + 0x10].copy_from_slice(&notes_at.to_le_bytes());
        elf[note_header + 0x20..note_header + 0x28]
            .copy_from_slice(&(notes.len() as u64).to_le_bytes());
        elf.extend_from_slice(notes);
        elf
    }

    #[test]
    fn finds_the_entry_after_other_notes() {
        let mut notes = note(b"GNU\0", 3, &[0xaa; 20]);
        notes.extend(note(b"Xen\0", 6, b"linux\0"));
        notes.extend(note(
            b"Xen\0",
            XEN_ELFNOTE_PHYS32_ENTRY,
            &0x0100_0460u64.to_le_bytes(),
        ));
        assert_eq!(
            pvh_entry(&elf_with_notes(&notes)).unwrap(),
            Some(0x0100_0460)
        );
    }

    #[test]
    fn accepts_a_four_byte_descriptor() {
        let notes = note(
            b"Xen\0",
            XEN_ELFNOTE_PHYS32_ENTRY,
            &0x0100_0000u32.to_le_bytes(),
        );
        assert_eq!(
            pvh_entry(&elf_with_notes(&notes)).unwrap(),
            Some(0x0100_0000)
        );
    }

    #[test]
    fn no_pvh_note_means_none() {
        let mut notes = note(b"GNU\0", 3, &[0xaa; 20]);
        notes.extend(note(b"Linux\0", XEN_ELFNOTE_PHYS32_ENTRY, &[1, 2, 3, 4]));
        assert_eq!(pvh_entry(&elf_with_notes(&notes)).unwrap(), None);
    }

    #[test]
    fn rejects_malformed_images() {
        assert!(pvh_entry(b"MZ not an elf").is_err());
        assert!(pvh_entry(b"\x7fELF\x01\x01").is_err(), "32-bit ELF");
        let notes = note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0; 8]);
        let elf = elf_with_notes(&notes);
        assert!(
            pvh_entry(&elf[..elf.len() - 4]).is_err(),
            "note segment past end of file"
        );
        let mut lying = note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0; 8]);
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes()); // descsz far past the segment
        assert!(pvh_entry(&elf_with_notes(&lying)).is_err());
    }
}
