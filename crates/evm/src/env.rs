//! The environment a call runs in, taken from the proven header: the fork (by chain and
//! timestamp) and the block's fields. Nothing here comes from the controller except the chain id,
//! which must agree with the header's fields.

use alloy_consensus::Header;
use revm::context::BlockEnv;
use revm::primitives::hardfork::SpecId;
use revm::primitives::U256;

/// Seconds per beacon-chain epoch (32 slots of 12 s): the execution forks since the Merge
/// activate at the timestamp of their consensus fork's first epoch.
const EPOCH_SECONDS: u64 = 32 * 12;

/// Timestamp of `epoch` on a chain whose beacon genesis was at `genesis`.
const fn at(genesis: u64, epoch: u64) -> u64 {
    genesis + epoch * EPOCH_SECONDS
}

/// The forks since the Merge, in order, with the fork activation times of the chains this build
/// knows: Shanghai (Capella), Cancun (Deneb), Prague (Electra), Osaka (Fulu). Derived from the
/// consensus configs (beacon genesis time + fork epoch × 384 s), as in `zkcoproc-lightclient`.
pub const FORKS: [SpecId; 4] = [SpecId::SHANGHAI, SpecId::CANCUN, SpecId::PRAGUE, SpecId::OSAKA];

/// `(chain id, activation times of FORKS)`: mainnet, Sepolia, Holesky, Hoodi.
pub const SCHEDULES: [(u64, [u64; 4]); 4] = {
    const fn schedule(genesis: u64, epochs: [u64; 4]) -> [u64; 4] {
        [at(genesis, epochs[0]), at(genesis, epochs[1]), at(genesis, epochs[2]), at(genesis, epochs[3])]
    }
    [
        (1, schedule(1_606_824_023, [194_048, 269_568, 364_032, 411_392])),
        (11_155_111, schedule(1_655_733_600, [56_832, 132_608, 222_464, 272_640])),
        (17_000, schedule(1_695_902_400, [256, 29_696, 115_968, 165_120])),
        (560_048, schedule(1_742_213_400, [0, 0, 2_048, 50_688])),
    ]
};

/// Why a header cannot give a call its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvError {
    /// A proof-of-work block: calls before the Merge are not supported.
    PreMerge,
    /// The header's fields do not belong to the fork the chain had at its timestamp.
    ForkMismatch {
        /// the chain id the call claims
        chain_id: u64,
        /// the fork the chain had then
        expected: SpecId,
    },
}

impl core::fmt::Display for EnvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EnvError::PreMerge => f.write_str("blocks before the Merge are not supported"),
            EnvError::ForkMismatch { chain_id, expected } => {
                write!(f, "the header's fields are not those of chain {chain_id} under {expected:?}")
            }
        }
    }
}

/// The newest fork a header's own fields show (they cannot tell Osaka from Prague: a header
/// with `requests_hash` counts as Osaka; one with Amsterdam's `block_access_list_hash` or
/// `slot_number` is Amsterdam's).
fn fork_of_fields(header: &Header) -> Result<SpecId, EnvError> {
    Ok(if header.block_access_list_hash.is_some() || header.slot_number.is_some() {
        SpecId::AMSTERDAM
    } else if header.requests_hash.is_some() {
        SpecId::OSAKA
    } else if header.excess_blob_gas.is_some() && header.parent_beacon_block_root.is_some() {
        SpecId::CANCUN
    } else if header.withdrawals_root.is_some() {
        SpecId::SHANGHAI
    } else if header.difficulty.is_zero() {
        SpecId::MERGE
    } else {
        return Err(EnvError::PreMerge);
    })
}

/// The fork a call at `header` runs under on chain `chain_id`: by the chain's schedule and the
/// header's timestamp for the chains in [`SCHEDULES`] (the header's fields must agree with it),
/// else the newest fork the header's fields show. The schedules end at Osaka: a header of one of
/// those chains after Osaka's activation that shows Amsterdam's fields runs as Amsterdam (the
/// proven header shows the chain activated it; the date is not known to this build).
pub fn spec(chain_id: u64, header: &Header) -> Result<SpecId, EnvError> {
    let by_fields = fork_of_fields(header)?;
    let Some((_, times)) = SCHEDULES.iter().find(|(id, _)| *id == chain_id) else { return Ok(by_fields) };
    let expected = FORKS
        .iter()
        .zip(times)
        .rev()
        .find(|(_, t)| header.timestamp >= **t)
        .map_or(SpecId::MERGE, |(s, _)| *s);
    // Osaka added no header field: a Prague header is an Osaka one by its fields.
    match (expected, by_fields) {
        (SpecId::PRAGUE, SpecId::OSAKA) => Ok(SpecId::PRAGUE),
        (SpecId::OSAKA, SpecId::AMSTERDAM) => Ok(SpecId::AMSTERDAM),
        (expected, fields) if expected == fields => Ok(expected),
        (expected, _) => Err(EnvError::ForkMismatch { chain_id, expected }),
    }
}

/// The block environment of a call at `header`, under `spec`: every field from the header.
pub fn block_env(header: &Header, spec: SpecId, blob_fraction: u64) -> BlockEnv {
    let mut block = BlockEnv {
        number: U256::from(header.number),
        beneficiary: header.beneficiary,
        timestamp: U256::from(header.timestamp),
        gas_limit: header.gas_limit,
        basefee: header.base_fee_per_gas.unwrap_or(0),
        difficulty: header.difficulty,
        prevrandao: spec.is_enabled_in(SpecId::MERGE).then_some(header.mix_hash),
        slot_num: header.slot_number.unwrap_or(0),
        ..BlockEnv::default()
    };
    block.blob_excess_gas_and_price = None;
    if let Some(excess) = header.excess_blob_gas {
        block.set_blob_excess_gas_and_price(excess, blob_fraction);
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;

    fn header(timestamp: u64) -> Header {
        Header { timestamp, ..Header::default() }
    }

    #[test]
    fn mainnet_forks_follow_the_schedule_and_the_fields_must_agree() {
        let mut h = header(1_746_612_311 - 1);
        h.withdrawals_root = Some(B256::ZERO);
        h.excess_blob_gas = Some(0);
        h.blob_gas_used = Some(0);
        h.parent_beacon_block_root = Some(B256::ZERO);
        assert_eq!(spec(1, &h), Ok(SpecId::CANCUN));
        h.timestamp += 1;
        // Prague's timestamp with a Cancun header: the claimed chain is not this header's.
        assert_eq!(spec(1, &h), Err(EnvError::ForkMismatch { chain_id: 1, expected: SpecId::PRAGUE }));
        h.requests_hash = Some(B256::ZERO);
        assert_eq!(spec(1, &h), Ok(SpecId::PRAGUE));
        h.timestamp = 1_764_798_551;
        assert_eq!(spec(1, &h), Ok(SpecId::OSAKA));
        // An unknown chain goes by the fields.
        assert_eq!(spec(31_337, &h), Ok(SpecId::OSAKA));
        // Amsterdam's fields after Osaka: Amsterdam (the schedule does not know its date), with
        // the header's slot for `SLOTNUM`; before Osaka they are not this chain's.
        h.block_access_list_hash = Some(B256::ZERO);
        h.slot_number = Some(13_000_000);
        assert_eq!(spec(1, &h), Ok(SpecId::AMSTERDAM));
        assert_eq!(spec(31_337, &h), Ok(SpecId::AMSTERDAM));
        assert_eq!(block_env(&h, SpecId::AMSTERDAM, 5_007_716).slot_num, 13_000_000);
        h.timestamp = 1_764_798_551 - 1;
        assert_eq!(spec(1, &h), Err(EnvError::ForkMismatch { chain_id: 1, expected: SpecId::PRAGUE }));
        let mut pow = header(0);
        pow.difficulty = U256::from(1);
        assert_eq!(spec(31_337, &pow), Err(EnvError::PreMerge));
    }

    #[test]
    fn the_schedules_are_the_light_clients_networks() {
        use zkcoproc_lightclient::{ChainSpec, Fork};
        for (name, chain_id) in
            [("mainnet", 1), ("sepolia", 11_155_111), ("holesky", 17_000), ("hoodi", 560_048)]
        {
            let net = ChainSpec::named(name).expect("a named network");
            let (_, times) = SCHEDULES.iter().find(|(id, _)| *id == chain_id).expect("a schedule");
            assert_eq!(net.chain_id, Some(chain_id));
            for (fork, t) in [Fork::Capella, Fork::Deneb, Fork::Electra, Fork::Fulu].into_iter().zip(times) {
                let epoch = net
                    .forks
                    .iter()
                    .find(|(f, _, _)| *f == fork)
                    .map(|(_, _, e)| *e)
                    .expect("the fork is scheduled");
                assert_eq!(*t, net.genesis_time.expect("genesis time") + epoch * 384, "{name} {fork:?}");
            }
        }
    }
}
