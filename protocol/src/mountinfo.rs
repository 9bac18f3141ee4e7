//! Reading `/proc/<pid>/mountinfo` lines (guest-init and xtask both look for mounts there).

/// The fields of one mountinfo line that paddock reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine<'a> {
    /// Where the mount is (the 5th field), its escapes undone.
    pub mount_point: Vec<u8>,
    /// The file system type (the first field after the ` - ` separator).
    pub fs_type: &'a str,
    /// The mount's source (the second field after the separator), as the table has it.
    pub source: &'a str,
}

/// The mount point, type and source of a mountinfo line; `None` for a line that lacks them.
pub fn parse_line(line: &str) -> Option<MountLine<'_>> {
    let (fields, rest) = line.split_once(" - ")?;
    let mount_point = fields.split(' ').nth(4)?;
    let mut rest = rest.split(' ');
    let fs_type = rest.next()?;
    let source = rest.next()?;
    Some(MountLine {
        mount_point: unescape_octal(mount_point),
        fs_type,
        source,
    })
}

/// A mountinfo field with the kernel's octal escapes (`\040` for a space, `\011` a tab, `\012`
/// a newline, `\134` a backslash) undone. A backslash not followed by three octal digits that
/// make a byte stays as it is.
pub fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match escaped_byte(&bytes[i..]) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The byte `\ooo` at the start of `bytes` stands for, if it starts with one.
fn escaped_byte(bytes: &[u8]) -> Option<u8> {
    let (&b'\\', digits) = bytes.split_first()? else {
        return None;
    };
    let digits = digits.get(..3)?;
    if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u32, |value, d| value * 8 + u32::from(d - b'0'));
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_undone_and_anything_else_is_kept() {
        assert_eq!(unescape_octal("/tmp/my\\040project"), b"/tmp/my project");
        assert_eq!(unescape_octal("a\\134b\\011c\\012d"), b"a\\b\tc\nd");
        // Too short, not octal, or more than a byte: kept as is.
        assert_eq!(unescape_octal("a\\09"), b"a\\09");
        assert_eq!(unescape_octal("x\\04"), b"x\\04");
        assert_eq!(unescape_octal("\\777\\400"), b"\\777\\400");
        assert_eq!(unescape_octal("\\377\\"), b"\xff\\");
        assert_eq!(unescape_octal(""), b"");
    }

    #[test]
    fn a_line_gives_its_mount_point_type_and_source() {
        let line =
            "40 22 0:40 / /tmp/my\\040project rw,nosuid shared:5 - fuse paddock-workspace rw";
        assert_eq!(
            parse_line(line),
            Some(MountLine {
                mount_point: b"/tmp/my project".to_vec(),
                fs_type: "fuse",
                source: "paddock-workspace",
            })
        );
        for bad in [
            "",
            "40 22 0:40 / /tmp rw",
            "40 22 0:40 / - fuse x",
            "1 2 3 4 5 - fuse",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }
}
