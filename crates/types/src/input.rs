//! The circuit input: what the service writes to a circuit's stdin.
//!
//! Wire format v2 (all integers little-endian):
//!
//! ```text
//! magic "ZKCI" | version u16 = 2 | root [u8; 32] | count u32 | count × witness
//! witness = tag u8 | len u32 | len bytes    (tag 0 = data, 1 = state proof, 2 = EVM call)
//! ```
//!
//! v2 added the state-proof witness ([`StateProof`]); circuits are built from source with the
//! SDK of the service that feeds them, so only the current version is accepted. Tag 2, the
//! EVM-call witness ([`EvmCall`]), came later within v2: a circuit built before it refuses an
//! input that holds one (unknown tag), and reads every other input as before.
//!
//! Decoding is strict: unknown versions or tags, truncated or trailing bytes are errors, so a
//! circuit never runs on an input it does not fully understand.

use alloc::vec::Vec;
use core::fmt;

use crate::evm::{EvmCall, EvmDecodeError};
use crate::state::{StateDecodeError, StateProof};
use crate::wire::{Reader, Truncated};
use crate::Root;

const MAGIC: &[u8; 4] = b"ZKCI";
const VERSION: u16 = 2;
const TAG_DATA: u8 = 0;
const TAG_STATE_PROOF: u8 = 1;
const TAG_EVM_CALL: u8 = 2;

/// Upper bound on the number of witnesses in one input.
pub const MAX_WITNESSES: usize = 4096;

/// One item of a circuit's input, produced by the controller's `get-witnesses`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Witness {
    /// Opaque bytes that the circuit interprets.
    Data(Vec<u8>),
    /// An Ethereum account + storage proof; the guest SDK verifies it against the root before
    /// the application runs.
    StateProof(alloc::boxed::Box<StateProof>),
    /// An EVM view call with its result and state witness; the guest SDK verifies it against
    /// the root and executes it again before the application runs.
    EvmCall(alloc::boxed::Box<EvmCall>),
}

impl Witness {
    /// Encoded size of this witness's body.
    pub fn body_len(&self) -> usize {
        match self {
            Witness::Data(b) => b.len(),
            Witness::StateProof(sp) => sp.encoded_len(),
            Witness::EvmCall(call) => call.encoded_len(),
        }
    }

    /// Encoded size of this witness in the wire format.
    pub fn encoded_len(&self) -> usize {
        1 + 4 + self.body_len()
    }
}

/// Everything a circuit receives: the coprocessor root the task is pinned to and the
/// controller's witnesses, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitInput {
    /// Root the proof is bound to; the guest SDK commits it as the journal's first 32 bytes.
    pub root: Root,
    /// The controller's witnesses, in the order it returned them.
    pub witnesses: Vec<Witness>,
}

/// Why bytes are not a valid [`CircuitInput`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input does not start with the `ZKCI` magic.
    BadMagic,
    /// The input has a version this build does not know.
    UnsupportedVersion(u16),
    /// The input ended early.
    Truncated,
    /// A witness has an unknown tag.
    UnknownTag(u8),
    /// More witnesses than [`MAX_WITNESSES`].
    TooManyWitnesses(u32),
    /// Bytes left after the last witness.
    TrailingBytes(usize),
    /// A state-proof witness does not decode.
    StateProof(StateDecodeError),
    /// An EVM-call witness does not decode.
    EvmCall(EvmDecodeError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadMagic => f.write_str("circuit input: bad magic"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "circuit input: unsupported version {v}")
            }
            DecodeError::Truncated => f.write_str("circuit input: truncated"),
            DecodeError::UnknownTag(t) => write!(f, "circuit input: unknown witness tag {t}"),
            DecodeError::TooManyWitnesses(n) => {
                write!(f, "circuit input: {n} witnesses exceed the limit of {MAX_WITNESSES}")
            }
            DecodeError::TrailingBytes(n) => write!(f, "circuit input: {n} trailing bytes"),
            DecodeError::StateProof(e) => write!(f, "circuit input: {e}"),
            DecodeError::EvmCall(e) => write!(f, "circuit input: {e}"),
        }
    }
}

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

impl CircuitInput {
    /// Encodes the input in the v1 wire format.
    pub fn encode(&self) -> Vec<u8> {
        let body: usize = self.witnesses.iter().map(Witness::encoded_len).sum();
        let mut out = Vec::with_capacity(4 + 2 + 32 + 4 + body);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&(self.witnesses.len() as u32).to_le_bytes());
        for w in &self.witnesses {
            match w {
                Witness::Data(bytes) => {
                    out.push(TAG_DATA);
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(bytes);
                }
                Witness::StateProof(sp) => {
                    out.push(TAG_STATE_PROOF);
                    out.extend_from_slice(&(sp.encoded_len() as u32).to_le_bytes());
                    sp.encode_into(&mut out);
                }
                Witness::EvmCall(call) => {
                    out.push(TAG_EVM_CALL);
                    out.extend_from_slice(&(call.encoded_len() as u32).to_le_bytes());
                    call.encode_into(&mut out);
                }
            }
        }
        out
    }

    /// Decodes an input in the v1 wire format, rejecting anything else.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.take(4)? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = u16::from_le_bytes(r.array()?);
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let root: Root = r.array()?;
        let count = u32::from_le_bytes(r.array()?);
        if count as usize > MAX_WITNESSES {
            return Err(DecodeError::TooManyWitnesses(count));
        }
        let mut witnesses = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let [tag] = r.array()?;
            let len = u32::from_le_bytes(r.array()?) as usize;
            let data = r.take(len)?;
            match tag {
                TAG_DATA => witnesses.push(Witness::Data(data.to_vec())),
                TAG_STATE_PROOF => witnesses.push(Witness::StateProof(
                    StateProof::decode(data).map_err(DecodeError::StateProof)?.into(),
                )),
                TAG_EVM_CALL => witnesses
                    .push(Witness::EvmCall(EvmCall::decode(data).map_err(DecodeError::EvmCall)?.into())),
                other => return Err(DecodeError::UnknownTag(other)),
            }
        }
        if !r.rest.is_empty() {
            return Err(DecodeError::TrailingBytes(r.rest.len()));
        }
        Ok(CircuitInput { root, witnesses })
    }
}

impl From<Truncated> for DecodeError {
    fn from(_: Truncated) -> Self {
        DecodeError::Truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> CircuitInput {
        CircuitInput {
            root: [7u8; 32],
            witnesses: vec![
                Witness::Data(vec![1, 2, 3]),
                Witness::StateProof(crate::state::tests::sample().into()),
                Witness::Data(vec![]),
                Witness::EvmCall(crate::evm::tests::sample().into()),
            ],
        }
    }

    #[test]
    fn round_trip() {
        let input = sample();
        assert_eq!(CircuitInput::decode(&input.encode()), Ok(input));
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(CircuitInput::decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
        }
    }

    #[test]
    fn trailing_bytes_bad_magic_version_and_tag_are_rejected() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert_eq!(CircuitInput::decode(&bytes), Err(DecodeError::TrailingBytes(1)));

        let mut bytes = sample().encode();
        bytes[0] = b'X';
        assert_eq!(CircuitInput::decode(&bytes), Err(DecodeError::BadMagic));

        let mut bytes = sample().encode();
        bytes[4] = 9;
        assert_eq!(CircuitInput::decode(&bytes), Err(DecodeError::UnsupportedVersion(9)));

        let mut bytes = sample().encode();
        bytes[4 + 2 + 32 + 4] = 5;

        assert_eq!(CircuitInput::decode(&bytes), Err(DecodeError::UnknownTag(5)));
    }

    mod props {
        extern crate std;
        use super::super::*;
        use alloc::vec::Vec;
        use proptest::prelude::*;

        fn input() -> impl Strategy<Value = CircuitInput> {
            (
                any::<[u8; 32]>(),
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
            )
                .prop_map(|(root, ws)| CircuitInput {
                    root,
                    witnesses: ws.into_iter().map(Witness::Data).collect(),
                })
        }

        proptest! {
            #[test]
            fn encode_then_decode_is_identity(input in input()) {
                prop_assert_eq!(CircuitInput::decode(&input.encode()), Ok(input));
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let _ = CircuitInput::decode(&bytes);
            }

            #[test]
            fn any_single_byte_change_is_caught_or_changes_the_value(
                input in input(),
                pos in any::<proptest::sample::Index>(),
                flip in 1u8..=255,
            ) {
                let mut bytes: Vec<u8> = input.encode();
                let i = pos.index(bytes.len());
                bytes[i] ^= flip;
                // Either rejected, or decodes to a different input: never silently the same.
                prop_assert_ne!(CircuitInput::decode(&bytes), Ok(input));
            }
        }
    }

    #[test]
    fn witness_count_is_bounded_before_allocating() {
        let mut bytes = sample().encode();
        bytes[38..42].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(CircuitInput::decode(&bytes), Err(DecodeError::TooManyWitnesses(u32::MAX)));
    }
}
