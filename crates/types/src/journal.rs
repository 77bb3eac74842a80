//! The journal layout every zkcoproc circuit commits: `root (32 bytes) ‖ application output`.
//!
//! The guest SDK writes the root before the application runs, so no application can produce a
//! journal that does not start with the root its input was pinned to.

use alloc::vec::Vec;

use crate::{Root, ROOT_LEN};

/// Splits a journal into the root it is bound to and the application's output.
/// Returns `None` when the journal is shorter than a root.
pub fn split(journal: &[u8]) -> Option<(Root, &[u8])> {
    if journal.len() < ROOT_LEN {
        return None;
    }
    let (root, output) = journal.split_at(ROOT_LEN);
    let mut r = [0u8; ROOT_LEN];
    r.copy_from_slice(root);
    Some((r, output))
}

/// Builds the journal bytes for `root` and `output` (what the guest SDK commits).
pub fn join(root: &Root, output: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ROOT_LEN + output.len());
    out.extend_from_slice(root);
    out.extend_from_slice(output);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_inverts_join() {
        let root = [3u8; 32];
        let journal = join(&root, b"out");
        assert_eq!(split(&journal), Some((root, &b"out"[..])));
        assert_eq!(split(&journal[..31]), None);
        assert_eq!(split(&root), Some((root, &b""[..])));
    }
}
