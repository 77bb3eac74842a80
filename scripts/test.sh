#!/usr/bin/env bash
# The whole test suite (what CI runs): formatting, lints, then every test of the workspace,
# including end-to-end tests with real `zkcoproc serve` processes and one real CPU proof.
source "$(dirname "$0")/env.sh"
cd "$REPO"

# Independent FAT readers the VFS tests check images with (dosfstools: fsck.fat, mtools: mtype).
if ! command -v fsck.fat >/dev/null || ! command -v mtype >/dev/null; then
    echo "== installing dosfstools and mtools" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dosfstools mtools >&2
fi

echo "== cargo fmt" >&2
cargo fmt --all -- --check
# The example and test apps are workspaces of their own.
for manifest in examples/*/*/Cargo.toml testing/apps/*/*/Cargo.toml; do
    cargo fmt --manifest-path "$manifest" -- --check
done

echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test" >&2
# Example apps are built by the tests themselves (zkcoproc-build), into $CARGO_TARGET_DIR.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace -- --test-threads 2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# cargo's last summary line is the last doc-test crate's (often "0 passed"): close with the total.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
