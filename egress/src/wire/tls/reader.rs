//! A bounds-checked cursor over ClientHello bytes: every read either fits or is an error naming
//! the field, never a panic.

use super::{HelloField, MalformedHello};

/// Reads big-endian integers and length-prefixed vectors from a byte slice.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `len` bytes.
    pub(super) fn take(
        &mut self,
        len: usize,
        field: HelloField,
    ) -> Result<&'a [u8], MalformedHello> {
        let (taken, rest) = self
            .rest
            .split_at_checked(len)
            .ok_or(MalformedHello::Truncated { field })?;
        self.rest = rest;
        Ok(taken)
    }

    pub(super) fn u8(&mut self, field: HelloField) -> Result<u8, MalformedHello> {
        match self.take(1, field)? {
            [byte] => Ok(*byte),
            _ => Err(MalformedHello::Truncated { field }),
        }
    }

    pub(super) fn u16(&mut self, field: HelloField) -> Result<u16, MalformedHello> {
        match self.take(2, field)? {
            [high, low] => Ok(u16::from_be_bytes([*high, *low])),
            _ => Err(MalformedHello::Truncated { field }),
        }
    }

    /// A vector with a one-byte length prefix, as a reader of its own.
    pub(super) fn vec_u8(&mut self, field: HelloField) -> Result<Reader<'a>, MalformedHello> {
        let len = self.u8(field)?;
        self.take(usize::from(len), field).map(Reader::new)
    }

    /// A vector with a two-byte length prefix, as a reader of its own.
    pub(super) fn vec_u16(&mut self, field: HelloField) -> Result<Reader<'a>, MalformedHello> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field).map(Reader::new)
    }

    /// Errs if anything is left.
    pub(super) fn finish(&self, field: HelloField) -> Result<(), MalformedHello> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(MalformedHello::TrailingBytes { field })
        }
    }

    /// Everything left.
    pub(super) fn remaining(&self) -> &'a [u8] {
        self.rest
    }
}
