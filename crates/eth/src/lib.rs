//! The Ethereum domain: what the service asks an Ethereum JSON-RPC node, and how it checks the
//! answers before trusting them.
//!
//! - [`RpcClient`]: JSON-RPC over HTTP with a timeout and a cap on every response body; the node
//!   is outside the trust boundary, so every answer is size-bounded and parsed strictly.
//! - [`CheckedHeader`]: a header whose hash was recomputed from its fields (keccak of the RLP) and
//!   compared with what the node claimed; [`CheckedHeader::check_child`] checks a parent link.
//! - [`RpcClient::get_proof`]: `eth_getProof`, batched at most [`MAX_KEYS_PER_CALL`] storage keys
//!   per call, returned as a [`StateProof`] without header and opening (the service attaches
//!   those).
//!
//! Nothing returned here is *proven*: the circuit re-verifies every state proof against the
//! coprocessor root. These checks decide what the service inserts into its tree and fail bad
//! answers early with a clear error.
//!
//! Start from [`RpcClient::new`].

use std::time::Duration;

use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, B256, U256, U64};
use alloy_rlp::Decodable as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use zkcoproc_types::state::{MAX_HEADER_LEN, MAX_NODE_LEN, MAX_PROOF_NODES, MAX_SLOTS};
use zkcoproc_types::{Account, StateProof, StorageSlot};

/// Most storage keys in one `eth_getProof` call.
pub const MAX_KEYS_PER_CALL: usize = 1024;
/// Largest JSON-RPC response body accepted.
pub const MAX_RESPONSE_BYTES: usize = 32 << 20;
/// Most headers requested in one JSON-RPC batch.
pub const MAX_BATCH: usize = 100;

/// Why a request to the node failed or its answer was rejected.
#[derive(Debug, thiserror::Error)]
pub enum EthError {
    /// The node could not be reached or answered with an HTTP error.
    #[error("rpc transport: {0}")]
    Transport(String),
    /// The node answered with a JSON-RPC error.
    #[error("rpc error {code}: {message}")]
    Rpc {
        /// JSON-RPC error code
        code: i64,
        /// its message
        message: String,
    },
    /// The answer is malformed, too large or inconsistent.
    #[error("bad rpc response: {0}")]
    BadResponse(String),
    /// The block does not exist (yet) on the node.
    #[error("block {0} not found")]
    BlockNotFound(u64),
    /// No block with that hash on the node.
    #[error("block {0} not found")]
    HashNotFound(B256),
    /// A header's fields do not hash to the hash the node claimed.
    #[error("header {number}: fields hash to {computed}, node claims {claimed}")]
    HeaderHash {
        /// block number
        number: u64,
        /// keccak of the RLP
        computed: B256,
        /// what the node said
        claimed: B256,
    },
    /// A header does not link to its parent.
    #[error("header {number} does not link: parent hash {parent_hash}, expected {expected} (reorg?)")]
    Unlinked {
        /// block number
        number: u64,
        /// the header's parent hash
        parent_hash: B256,
        /// the hash of the block it should follow
        expected: B256,
    },
    /// A header is not well-formed RLP.
    #[error("malformed header: {0}")]
    BadHeader(String),
    /// The request is over a limit.
    #[error("{0}")]
    TooLarge(String),
}

/// A header whose hash the service recomputed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedHeader {
    /// block number
    pub number: u64,
    /// keccak-256 of `rlp`
    pub hash: B256,
    /// the parent's hash
    pub parent_hash: B256,
    /// the state root
    pub state_root: B256,
    /// the RLP encoding
    pub rlp: Vec<u8>,
}

impl CheckedHeader {
    /// Builds a checked header from consensus fields.
    pub fn from_header(header: &Header) -> Result<Self, EthError> {
        let rlp = alloy_rlp::encode(header);
        if rlp.len() > MAX_HEADER_LEN {
            return Err(EthError::BadHeader(format!("{} bytes exceed {MAX_HEADER_LEN}", rlp.len())));
        }
        Ok(CheckedHeader {
            number: header.number,
            hash: header.hash_slow(),
            parent_hash: header.parent_hash,
            state_root: header.state_root,
            rlp,
        })
    }

    /// Decodes an RLP header (what an authenticated feeder posts); its hash is computed here.
    pub fn decode_rlp(rlp: &[u8]) -> Result<Self, EthError> {
        if rlp.len() > MAX_HEADER_LEN {
            return Err(EthError::BadHeader(format!("{} bytes exceed {MAX_HEADER_LEN}", rlp.len())));
        }
        let mut buf = rlp;
        let header = Header::decode(&mut buf).map_err(|e| EthError::BadHeader(e.to_string()))?;
        if !buf.is_empty() {
            return Err(EthError::BadHeader(format!("{} trailing bytes", buf.len())));
        }
        let checked = Self::from_header(&header)?;
        // Re-encoding must give the same bytes, so the hash is the hash of what was posted.
        if checked.rlp != rlp {
            return Err(EthError::BadHeader("non-canonical RLP".into()));
        }
        Ok(checked)
    }

    /// Checks that `child` is the next block after `self`.
    pub fn check_child(&self, child: &CheckedHeader) -> Result<(), EthError> {
        if child.number != self.number + 1 || child.parent_hash != self.hash {
            return Err(EthError::Unlinked {
                number: child.number,
                parent_hash: child.parent_hash,
                expected: self.hash,
            });
        }
        Ok(())
    }
}

/// A block header as JSON-RPC returns it: the consensus fields plus the node's claimed hash.
#[derive(Deserialize)]
struct RpcHeader {
    hash: B256,
    #[serde(flatten)]
    inner: Header,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcProof {
    address: Address,
    balance: U256,
    code_hash: B256,
    nonce: U64,
    storage_hash: B256,
    account_proof: Vec<Bytes>,
    storage_proof: Vec<RpcStorageProof>,
}

#[derive(Deserialize)]
struct RpcStorageProof {
    value: U256,
    proof: Vec<Bytes>,
}

/// A JSON-RPC client for one node.
#[derive(Clone, Debug)]
pub struct RpcClient {
    url: String,
    http: reqwest::Client,
}

impl RpcClient {
    /// A client for `url` with a per-request `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, EthError> {
        // Redirects are not followed: a node (or whatever answers at its address) must not send
        // the service's requests elsewhere.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| EthError::Transport(e.to_string()))?;
        Ok(RpcClient { url: url.to_owned(), http })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn post(&self, body: &Value) -> Result<Value, EthError> {
        let mut resp = self
            .http
            .post(&self.url)
            .json(body)
            .send()
            .await
            .map_err(|e| EthError::Transport(e.without_url().to_string()))?;
        if resp.status().is_redirection() {
            return Err(EthError::Transport(format!(
                "HTTP {}: the node redirects, and redirects are not followed",
                resp.status()
            )));
        }
        if !resp.status().is_success() {
            return Err(EthError::Transport(format!("HTTP {}", resp.status())));
        }
        let mut buf = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| EthError::Transport(e.without_url().to_string()))?
        {
            if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(EthError::BadResponse(format!("response over {MAX_RESPONSE_BYTES} bytes")));
            }
            buf.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&buf).map_err(|e| EthError::BadResponse(format!("not JSON: {e}")))
    }

    /// One JSON-RPC call.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, EthError> {
        let resp = self.post(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})).await?;
        result_of(resp)
    }

    /// `eth_chainId`
    pub async fn chain_id(&self) -> Result<u64, EthError> {
        let id: U64 = self.call("eth_chainId", json!([])).await?;
        Ok(id.to())
    }

    /// The node's latest block number.
    pub async fn block_number(&self) -> Result<u64, EthError> {
        let n: U64 = self.call("eth_blockNumber", json!([])).await?;
        Ok(n.to::<u64>())
    }

    /// Headers `from..from+count` (at most [`MAX_BATCH`]), in order, each hash-checked. Stops
    /// at the first block the node does not have.
    pub async fn headers(&self, from: u64, count: usize) -> Result<Vec<CheckedHeader>, EthError> {
        let count = count.min(MAX_BATCH);
        let batch: Vec<Value> = (0..count)
            .map(|i| {
                json!({"jsonrpc": "2.0", "id": i, "method": "eth_getBlockByNumber",
                       "params": [format!("{:#x}", from + i as u64), false]})
            })
            .collect();
        let resp = self.post(&Value::Array(batch)).await?;
        let Value::Array(items) = resp else {
            return Err(EthError::BadResponse("batch answer is not an array".into()));
        };
        if items.len() != count {
            return Err(EthError::BadResponse(format!("{} answers to {count} requests", items.len())));
        }
        let mut by_id: Vec<Option<Value>> = vec![None; count];
        for item in items {
            let id = item.get("id").and_then(Value::as_u64).filter(|&i| (i as usize) < count);
            let Some(id) = id else {
                return Err(EthError::BadResponse("batch answer with an unknown id".into()));
            };
            by_id[id as usize] = Some(item);
        }
        let mut out = Vec::with_capacity(count);
        for (i, item) in by_id.into_iter().enumerate() {
            let number = from + i as u64;
            let item = item.ok_or_else(|| EthError::BadResponse(format!("no answer for block {number}")))?;
            let header: Option<RpcHeader> = result_of(item)?;
            let Some(header) = header else { break };
            out.push(check_rpc_header(number, &header)?);
        }
        Ok(out)
    }

    /// The header of block `number`, hash-checked.
    pub async fn header(&self, number: u64) -> Result<CheckedHeader, EthError> {
        let header: Option<RpcHeader> =
            self.call("eth_getBlockByNumber", json!([format!("{number:#x}"), false])).await?;
        let header = header.ok_or(EthError::BlockNotFound(number))?;
        check_rpc_header(number, &header)
    }

    /// The header of the block with hash `hash`, hash-checked: its fields must hash to `hash`
    /// (so its number is as trustworthy as the hash).
    pub async fn header_by_hash(&self, hash: B256) -> Result<CheckedHeader, EthError> {
        let header: Option<RpcHeader> = self.call("eth_getBlockByHash", json!([hash, false])).await?;
        let header = header.ok_or(EthError::HashNotFound(hash))?;
        let checked = check_rpc_header(header.inner.number, &header)?;
        if checked.hash != hash {
            let number = checked.number;
            return Err(EthError::HeaderHash { number, computed: checked.hash, claimed: hash });
        }
        Ok(checked)
    }

    /// `eth_getProof` of `address` and `slots` at block `number`, in as many calls as
    /// [`MAX_KEYS_PER_CALL`] requires. The storage proofs come back in the order of `slots`.
    pub async fn get_proof(
        &self,
        address: [u8; 20],
        slots: &[[u8; 32]],
        number: u64,
    ) -> Result<StateProof, EthError> {
        if slots.len() > MAX_SLOTS {
            return Err(EthError::TooLarge(format!("{} slots exceed the limit of {MAX_SLOTS}", slots.len())));
        }
        let addr = Address::from(address);
        let block = format!("{number:#x}");
        let mut account = None;
        let mut storage = Vec::with_capacity(slots.len());
        let chunks: Vec<&[[u8; 32]]> =
            if slots.is_empty() { vec![&[]] } else { slots.chunks(MAX_KEYS_PER_CALL).collect() };
        for chunk in chunks {
            let keys: Vec<B256> = chunk.iter().map(|k| B256::from(*k)).collect();
            let proof: RpcProof = self.call("eth_getProof", json!([addr, keys, block])).await?;
            if proof.address != addr {
                return Err(EthError::BadResponse(format!("proof is for {}, not {addr}", proof.address)));
            }
            if proof.storage_proof.len() != chunk.len() {
                return Err(EthError::BadResponse(format!(
                    "{} storage proofs for {} keys",
                    proof.storage_proof.len(),
                    chunk.len()
                )));
            }
            let this = Account {
                nonce: proof.nonce.to::<u64>(),
                balance: proof.balance.to_be_bytes(),
                storage_root: proof.storage_hash.0,
                code_hash: proof.code_hash.0,
            };
            let account_nodes = nodes(proof.account_proof, "account proof")?;
            match &account {
                None => account = Some((this, account_nodes)),
                Some((first, _)) if *first != this => {
                    return Err(EthError::BadResponse("account changed between batched calls".into()))
                }
                Some(_) => {}
            }
            for (key, sp) in chunk.iter().zip(proof.storage_proof) {
                storage.push(StorageSlot {
                    key: *key,
                    value: sp.value.to_be_bytes(),
                    proof: nodes(sp.proof, "storage proof")?,
                });
            }
        }
        let (account, account_proof) =
            account.ok_or_else(|| EthError::BadResponse("no eth_getProof answer".into()))?;
        Ok(StateProof {
            domain: String::new(),
            block: number,
            address,
            account,
            account_proof,
            storage,
            header: Vec::new(),
            opening: None,
        })
    }
}

fn nodes(proof: Vec<Bytes>, what: &str) -> Result<Vec<Vec<u8>>, EthError> {
    if proof.len() > MAX_PROOF_NODES || proof.iter().any(|n| n.len() > MAX_NODE_LEN) {
        return Err(EthError::BadResponse(format!("{what} over the limits")));
    }
    Ok(proof.into_iter().map(Vec::from).collect())
}

fn check_rpc_header(number: u64, header: &RpcHeader) -> Result<CheckedHeader, EthError> {
    if header.inner.number != number {
        return Err(EthError::BadResponse(format!("asked for block {number}, got {}", header.inner.number)));
    }
    let checked = CheckedHeader::from_header(&header.inner)?;
    if checked.hash != header.hash {
        return Err(EthError::HeaderHash { number, computed: checked.hash, claimed: header.hash });
    }
    Ok(checked)
}

fn result_of<T: DeserializeOwned>(mut resp: Value) -> Result<T, EthError> {
    if let Some(err) = resp.get("error").filter(|e| !e.is_null()) {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = err.get("message").and_then(Value::as_str).unwrap_or("").chars().take(1000).collect();
        return Err(EthError::Rpc { code, message });
    }
    let result = resp.get_mut("result").map(Value::take).unwrap_or(Value::Null);
    serde_json::from_value(result).map_err(|e| EthError::BadResponse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(number: u64, parent_hash: B256) -> Header {
        Header { number, parent_hash, state_root: B256::repeat_byte(number as u8), ..Default::default() }
    }

    #[test]
    fn rlp_round_trip_keeps_the_hash() {
        let h = header(7, B256::repeat_byte(1));
        let checked = CheckedHeader::from_header(&h).expect("header");
        assert_eq!(checked.hash, h.hash_slow());
        assert_eq!(CheckedHeader::decode_rlp(&checked.rlp).expect("decode"), checked);
        let mut trailing = checked.rlp.clone();
        trailing.push(0);
        assert!(CheckedHeader::decode_rlp(&trailing).is_err());
        assert!(CheckedHeader::decode_rlp(&checked.rlp[..checked.rlp.len() - 1]).is_err());
    }

    #[test]
    fn parent_links_are_checked() {
        let parent = CheckedHeader::from_header(&header(7, B256::ZERO)).expect("parent");
        let child = CheckedHeader::from_header(&header(8, parent.hash)).expect("child");
        assert!(parent.check_child(&child).is_ok());
        let stranger = CheckedHeader::from_header(&header(8, B256::repeat_byte(9))).expect("stranger");
        assert!(matches!(parent.check_child(&stranger), Err(EthError::Unlinked { .. })));
        let gap = CheckedHeader::from_header(&header(9, parent.hash)).expect("gap");
        assert!(parent.check_child(&gap).is_err());
    }

    #[test]
    fn a_header_whose_claimed_hash_lies_is_rejected() {
        let h = header(3, B256::ZERO);
        let lie = RpcHeader { hash: B256::repeat_byte(0xaa), inner: h.clone() };
        assert!(matches!(check_rpc_header(3, &lie), Err(EthError::HeaderHash { .. })));
        let wrong_number = RpcHeader { hash: h.hash_slow(), inner: h };
        assert!(check_rpc_header(4, &wrong_number).is_err());
    }

    /// A header of a chain past Amsterdam (EIP-7928's `blockAccessListHash`, EIP-7843's
    /// `slotNumber`) as a node returns it: its hash is that of the RLP of all 23 fields, in order,
    /// computed here field by field.
    #[test]
    fn an_amsterdam_header_hashes_with_its_new_fields() {
        use alloy_primitives::{keccak256, Address, Bloom, Bytes, B64, U256};
        use alloy_rlp::Encodable as _;
        let (bal, slot) = (B256::repeat_byte(0x1d), 13_000_000u64);
        let fields: Vec<Box<dyn alloy_rlp::Encodable>> = vec![
            Box::new(B256::repeat_byte(1)),
            Box::new(B256::repeat_byte(2)),
            Box::new(Address::repeat_byte(3)),
            Box::new(B256::repeat_byte(4)),
            Box::new(B256::repeat_byte(5)),
            Box::new(B256::repeat_byte(6)),
            Box::new(Bloom::repeat_byte(7)),
            Box::new(U256::ZERO),
            Box::new(24_000_000u64),
            Box::new(60_000_000u64),
            Box::new(21_000u64),
            Box::new(1_790_000_000u64),
            Box::new(Bytes::from_static(b"zkcoproc")),
            Box::new(B256::repeat_byte(8)),
            Box::new(B64::ZERO),
            Box::new(7u64),
            Box::new(B256::repeat_byte(9)),
            Box::new(131_072u64),
            Box::new(0u64),
            Box::new(B256::repeat_byte(10)),
            Box::new(B256::repeat_byte(11)),
            Box::new(bal),
            Box::new(slot),
        ];
        let payload: usize = fields.iter().map(|f| f.length()).sum();
        let mut rlp = Vec::new();
        alloy_rlp::Header { list: true, payload_length: payload }.encode(&mut rlp);
        fields.iter().for_each(|f| f.encode(&mut rlp));
        let hash = keccak256(&rlp);

        let json = serde_json::json!({
            "hash": hash, "parentHash": B256::repeat_byte(1), "sha3Uncles": B256::repeat_byte(2),
            "miner": Address::repeat_byte(3), "stateRoot": B256::repeat_byte(4),
            "transactionsRoot": B256::repeat_byte(5), "receiptsRoot": B256::repeat_byte(6),
            "logsBloom": Bloom::repeat_byte(7), "difficulty": "0x0", "number": "0x16e3600",
            "gasLimit": "0x3938700", "gasUsed": "0x5208", "timestamp": "0x6ab13b80",
            "extraData": "0x7a6b636f70726f63", "mixHash": B256::repeat_byte(8), "nonce": "0x0000000000000000",
            "baseFeePerGas": "0x7", "withdrawalsRoot": B256::repeat_byte(9), "blobGasUsed": "0x20000",
            "excessBlobGas": "0x0", "parentBeaconBlockRoot": B256::repeat_byte(10),
            "requestsHash": B256::repeat_byte(11), "blockAccessListHash": bal, "slotNumber": "0xc65d40",
        });
        let header: RpcHeader = serde_json::from_value(json).expect("rpc header");
        let checked = check_rpc_header(24_000_000, &header).expect("the node's hash is the header's");
        assert_eq!((checked.hash, &checked.rlp), (hash, &rlp));
        assert_eq!(CheckedHeader::decode_rlp(&rlp).expect("fed as RLP"), checked);
    }

    /// Answers every connection on `listener` with `response`.
    async fn answer_forever(listener: tokio::net::TcpListener, response: String) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut socket, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let (elsewhere, node) = (bind().await.expect("bind"), bind().await.expect("bind"));
        let (elsewhere_addr, node_addr) =
            (elsewhere.local_addr().expect("addr"), node.local_addr().expect("addr"));
        let body = r#"{"jsonrpc":"2.0","id":1,"result":"0x10"}"#;
        let ok = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tokio::spawn(answer_forever(elsewhere, ok));
        let redirect = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{elsewhere_addr}/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        tokio::spawn(answer_forever(node, redirect));
        // The place redirected to does answer:
        let direct =
            RpcClient::new(&format!("http://{elsewhere_addr}/"), Duration::from_secs(5)).expect("client");
        assert_eq!(direct.block_number().await.expect("direct"), 16);
        // but a node that redirects there is an error.
        let client = RpcClient::new(&format!("http://{node_addr}/"), Duration::from_secs(5)).expect("client");
        let err = client.block_number().await.expect_err("a redirect was followed");
        assert!(err.to_string().contains("redirect"), "{err}");
    }
}
