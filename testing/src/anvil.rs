//! A real Ethereum node for tests: `anvil` (npm `@foundry-rs/anvil-linux-amd64`, installed by
//! `scripts/tools.sh`) on a loopback port chosen at run time, and the example ERC-20
//! (`examples/erc20-balance/contracts/Token.sol`, compiled with solc-js) deployed on it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};

use crate::repo_root;

/// The npm tool directory `scripts/tools.sh` installs into.
pub fn npm_bin(tool: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache/zkcoproc/npm/node_modules/.bin").join(tool)
}

/// A running anvil; killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    /// its JSON-RPC URL
    pub url: String,
    http: reqwest::blocking::Client,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Anvil {
    /// Starts anvil (env `ZKCOPROC_ANVIL`, else the npm install) on a free loopback port.
    pub fn start() -> anyhow::Result<Anvil> {
        let bin = std::env::var_os("ZKCOPROC_ANVIL").map(PathBuf::from).unwrap_or_else(|| npm_bin("anvil"));
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} (run scripts/tools.sh)", bin.display()))?;
        let stdout = child.stdout.take().context("anvil stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.trim().strip_prefix("Listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| anyhow!("anvil did not start"))?;
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Anvil { child, url: format!("http://{addr}"), http })
    }

    /// One JSON-RPC call; errors on a JSON-RPC error.
    pub fn rpc(&self, method: &str, params: &Value) -> anyhow::Result<Value> {
        let resp: Value = self
            .http
            .post(&self.url)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()?
            .json()?;
        if let Some(e) = resp.get("error") {
            bail!("{method}: {e}");
        }
        Ok(resp["result"].clone())
    }

    /// The unlocked dev accounts.
    pub fn accounts(&self) -> anyhow::Result<Vec<String>> {
        let v = self.rpc("eth_accounts", &json!([]))?;
        Ok(v.as_array().context("accounts")?.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect())
    }

    /// The newest block number.
    pub fn block_number(&self) -> anyhow::Result<u64> {
        quantity(&self.rpc("eth_blockNumber", &json!([]))?)
    }

    /// The hash of block `n` (`0x…`).
    pub fn block_hash(&self, n: u64) -> anyhow::Result<String> {
        let b = self.rpc("eth_getBlockByNumber", &json!([format!("{n:#x}"), false]))?;
        Ok(b["hash"].as_str().context("block hash")?.to_owned())
    }

    /// `zkcoproc serve` flags that follow this node as the `ethereum` domain from its genesis
    /// block (the checkpoint), inserting blocks `confirmations` deep, polling every `interval_ms`,
    /// on the node's word (`--trust rpc`: anvil has no beacon chain).
    pub fn follow_args(&self, confirmations: u64, interval_ms: u64) -> anyhow::Result<Vec<String>> {
        let genesis = self.block_hash(0)?;
        Ok([
            "--domain".to_owned(),
            format!("ethereum={}", self.url),
            "--checkpoint".to_owned(),
            format!("ethereum=0:{genesis}"),
            "--confirmations".to_owned(),
            confirmations.to_string(),
            "--follow-interval-ms".to_owned(),
            interval_ms.to_string(),
            "--trust".to_owned(),
            "rpc".to_owned(),
        ]
        .to_vec())
    }

    /// Mines `n` empty blocks.
    pub fn mine(&self, n: u64) -> anyhow::Result<()> {
        self.rpc("anvil_mine", &json!([format!("{n:#x}")]))?;
        Ok(())
    }

    /// Sends a transaction from an unlocked account and waits for its receipt (anvil mines it
    /// at once); fails if it reverted.
    pub fn send(&self, from: &str, to: Option<&str>, data: &str) -> anyhow::Result<Value> {
        let mut tx = json!({"from": from, "data": data, "gas": "0x500000"});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        let hash = self.rpc("eth_sendTransaction", &json!([tx]))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let receipt = self.rpc("eth_getTransactionReceipt", &json!([hash]))?;
            if !receipt.is_null() {
                if receipt["status"] != "0x1" {
                    bail!("transaction reverted: {receipt}");
                }
                return Ok(receipt);
            }
            if Instant::now() > deadline {
                bail!("no receipt for {hash}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Deploys the example token with `supply` to `from`; returns its address.
    pub fn deploy_token(&self, from: &str, supply: u128) -> anyhow::Result<String> {
        let code = token_bytecode()?;
        let receipt = self.send(from, None, &format!("0x{code}{}", word(supply)))?;
        Ok(receipt["contractAddress"].as_str().context("contractAddress")?.to_owned())
    }

    /// Deploys creation bytecode `code` (hex, constructor arguments appended) from `from`;
    /// returns the contract's address.
    pub fn deploy(&self, from: &str, code: &str) -> anyhow::Result<String> {
        let receipt = self.send(from, None, &format!("0x{}", code.trim_start_matches("0x")))?;
        Ok(receipt["contractAddress"].as_str().context("contractAddress")?.to_owned())
    }

    /// `eth_call` of `data` (hex) to `to` at `block`: the return data, hex without `0x`.
    pub fn call(&self, to: &str, data: &str, block: u64) -> anyhow::Result<String> {
        let v = self.rpc("eth_call", &json!([{"to": to, "data": data}, format!("{block:#x}")]))?;
        Ok(v.as_str().context("eth_call result")?.trim_start_matches("0x").to_owned())
    }

    /// `token.transfer(to, amount)` from `from`; returns the block it landed in.
    pub fn transfer(&self, token: &str, from: &str, to: &str, amount: u128) -> anyhow::Result<u64> {
        let data = format!("0xa9059cbb{}{}", address_word(to)?, word(amount));
        let receipt = self.send(from, Some(token), &data)?;
        quantity(&receipt["blockNumber"])
    }

    /// `token.balanceOf(holder)` at block `block`.
    pub fn balance_of(&self, token: &str, holder: &str, block: u64) -> anyhow::Result<u128> {
        let data = format!("0x70a08231{}", address_word(holder)?);
        let v = self.rpc("eth_call", &json!([{"to": token, "data": data}, format!("{block:#x}")]))?;
        let hex = v.as_str().context("eth_call result")?.trim_start_matches("0x");
        if hex.len() != 64 || !hex[..32].bytes().all(|b| b == b'0') {
            bail!("balanceOf returned {hex}, not a u128 word");
        }
        Ok(u128::from_str_radix(&hex[32..], 16)?)
    }
}

/// Compiles `contract` of the Solidity file `source` with solc-js (npm `solc`, installed by
/// `scripts/tools.sh`, optimizer on) and returns its creation bytecode, hex.
pub fn compile(source: &std::path::Path, contract: &str) -> anyhow::Result<String> {
    let out = tempfile::tempdir()?;
    let dir = source.parent().context("source directory")?;
    let file = source.file_name().context("source file")?;
    let solcjs = std::env::var_os("ZKCOPROC_SOLCJS").map(PathBuf::from).unwrap_or_else(|| npm_bin("solcjs"));
    let status = Command::new(&solcjs)
        .current_dir(dir)
        .args(["--bin", "--optimize", "--base-path", ".", "-o"])
        .arg(out.path())
        .arg(file)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {} (run scripts/tools.sh)", solcjs.display()))?;
    if !status.success() {
        bail!("solcjs failed on {}", source.display());
    }
    // solc-js names outputs `<path with separators replaced>_<Contract>.bin`.
    for entry in std::fs::read_dir(out.path())? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(&format!("_{contract}.bin")) {
            return Ok(std::fs::read_to_string(&path)?.trim().to_owned());
        }
    }
    bail!("solcjs made no bytecode for {contract} in {}", source.display())
}

/// A 32-byte ABI word of `v`, hex.
pub fn word(v: u128) -> String {
    format!("{v:064x}")
}

/// The 32-byte ABI word of an address (`0x…`), hex.
pub fn address_word(a: &str) -> anyhow::Result<String> {
    let a = a.trim_start_matches("0x");
    if a.len() != 40 {
        bail!("bad address {a}");
    }
    Ok(format!("{:0>64}", a.to_lowercase()))
}

/// A JSON-RPC quantity as u64.
pub fn quantity(v: &Value) -> anyhow::Result<u64> {
    let s = v.as_str().context("quantity")?;
    Ok(u64::from_str_radix(s.trim_start_matches("0x"), 16)?)
}

/// The token's creation bytecode (hex), compiled once per process by
/// `examples/erc20-balance/contracts/build.sh`.
pub fn token_bytecode() -> anyhow::Result<String> {
    static CODE: OnceLock<Result<String, String>> = OnceLock::new();
    CODE.get_or_init(|| {
        let out = tempfile::tempdir().map_err(|e| e.to_string())?;
        let script = repo_root().join("examples/erc20-balance/contracts/build.sh");
        let status = Command::new("bash").arg(&script).arg(out.path()).stdout(Stdio::null()).status();
        match status {
            Ok(s) if s.success() => {}
            other => return Err(format!("{} failed: {other:?}", script.display())),
        }
        std::fs::read_to_string(out.path().join("Token.bin"))
            .map(|s| s.trim().to_owned())
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}
