# Sourced by the demo and test scripts: installs what they need and sets the shared build cache.
# Idempotent; every install step of the project lives here.
set -euo pipefail

# One toolchain for host, controllers and circuits, pinned in rust-toolchain.toml (the circuit
# image id depends on the compiler). rust-src is needed for -Zbuild-std of the zkVM guest target.
TOOLCHAIN=1.95.0
if ! command -v rustup >/dev/null; then
    echo "rustup is required (https://rustup.rs)" >&2
    exit 1
fi
rustup toolchain install "$TOOLCHAIN" --profile minimal \
    --component rust-src,rustfmt,clippy --target wasm32-wasip2 >&2

# Builds live outside the clone so CI runs and later sessions reuse them (the RISC Zero prover
# takes ~25 min to build cold on 2 cores).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zkcoproc/target}"
mkdir -p "$CARGO_TARGET_DIR"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO
