#!/usr/bin/env bash
# The benchmarks P1–P8 in one run, written to bench/RESULTS.md: a real CPU proof through the
# service vs bare risc0_zkvm, dev-mode throughput on SQLite and PostgreSQL vs each store's raw
# transaction rate, get-witnesses wasm vs native, 1/2/4 remote workers, tree openings under a
# root 100 000 inserts old vs the current root, the light client, an EVM view call vs the slot
# path, and volume writes on a 1 GiB vs a 16 MiB volume.
source "$(dirname "$0")/env.sh"
cd "$REPO"
source "$REPO/scripts/postgres.sh"
pg_start
trap pg_stop EXIT
cargo build -p zkcoproc-cli -p zkcoproc-bench
"$CARGO_TARGET_DIR/debug/zkcoproc-bench" report --out "$REPO/bench/RESULTS.md" "$@"
