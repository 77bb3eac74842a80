//! An Ethereum consensus light client: the sync-committee protocol of the consensus specs
//! (Altair, with the Capella, Deneb, Electra and Gloas changes), verified natively.
//!
//! - [`config`]: chain parameters, from a named network or a consensus-spec `config.yaml`.
//! - [`types`]: the light-client containers for every fork, from SSZ or the beacon API's JSON,
//!   and their `hash_tree_root`s.
//! - [`protocol`]: [`LightClientStore`]: bootstrap from a trusted block root, update validation
//!   (BLS aggregate signature with `blst`, participation, finality, next-committee and
//!   execution branches), store updates, period rollover, forced updates.
//! - [`beacon`]: a bounded beacon-API client for the light-client endpoints.
//! - [`replay`]: runs a consensus-spec-tests `light_client/sync` case.
//! - `testkit` (feature `testkit`): a made-up beacon chain with real BLS committees, for tests.
//!
//! What a finalized header here means: the sync committee of its period (reached from the
//! trusted block root through committee hand-overs, each signed by a supermajority of the
//! previous committee) signed a header whose state names it finalized. Its execution payload
//! header (block number, hash, state root) is bound to it by a Merkle branch; from Gloas on, only
//! an execution block hash (the one its payload bid builds on) is.

pub mod beacon;
pub mod config;
pub mod protocol;
pub mod replay;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod types;

pub use config::{ChainSpec, Fork, Preset};
pub use protocol::{LightClientStore, UpdateError};
pub use types::{
    BeaconBlockHeader, ExecutionPayloadHeader, LightClientBootstrap, LightClientFinalityUpdate,
    LightClientHeader, LightClientOptimisticUpdate, LightClientUpdate, SyncAggregate, SyncCommittee,
};

/// Errors of the light client.
#[derive(Debug, thiserror::Error)]
pub enum LightClientError {
    /// The chain configuration is unusable.
    #[error("config: {0}")]
    Config(String),
    /// SSZ or JSON that does not decode.
    #[error("decode: {0}")]
    Decode(String),
    /// An update or bootstrap the protocol refuses.
    #[error("{0}")]
    Update(String),
    /// The beacon node could not be reached or answered with an error.
    #[error("beacon node: {0}")]
    Beacon(String),
}
