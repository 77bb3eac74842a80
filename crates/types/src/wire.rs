//! The byte reader both wire formats of this crate (circuit input, state proof) decode with.

/// The bytes ended before the item being read.
pub(crate) struct Truncated;

/// Reads fixed-size items from the front of a byte slice.
pub(crate) struct Reader<'a> {
    /// what is left to read
    pub(crate) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if self.rest.len() < n {
            return Err(Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}
