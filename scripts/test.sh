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
for app in examples/*/; do
    for crate in controller circuit; do
        cargo fmt --manifest-path "$app$crate/Cargo.toml" -- --check
    done
done

echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test" >&2
# Example apps are built by the tests themselves (zkcoproc-build), into $CARGO_TARGET_DIR.
cargo test --workspace -- --test-threads 2
