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

# A real Ethereum node (anvil) and solc-js for the domain tests: npm packages, pinned, installed
# under ~/.cache/zkcoproc/npm (the tests find them there).
NPM_DIR="$HOME/.cache/zkcoproc/npm"
ANVIL_VERSION=1.7.1
SOLC_VERSION=0.8.37
if ! "$NPM_DIR/node_modules/.bin/anvil" --version 2>/dev/null | grep -q "Version: $ANVIL_VERSION" \
    || ! "$NPM_DIR/node_modules/.bin/solcjs" --version 2>/dev/null | grep -q "^$SOLC_VERSION"; then
    if ! command -v npm >/dev/null; then
        echo "== installing nodejs and npm" >&2
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >&2
    fi
    echo "== installing anvil $ANVIL_VERSION and solc $SOLC_VERSION (npm)" >&2
    mkdir -p "$NPM_DIR"
    npm install --prefix "$NPM_DIR" --no-audit --no-fund --silent \
        "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION" "solc@$SOLC_VERSION" >&2
fi

# A real browser for the console test: Debian's Chromium, driven through npm's playwright-core
# (which never downloads a browser of its own).
PLAYWRIGHT_VERSION=1.65.1
if [ ! -x /usr/bin/chromium ]; then
    echo "== installing chromium (apt)" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
fi
if ! grep -qs "\"version\": \"$PLAYWRIGHT_VERSION\"" "$NPM_DIR/node_modules/playwright-core/package.json"; then
    echo "== installing playwright-core $PLAYWRIGHT_VERSION (npm)" >&2
    npm install --prefix "$NPM_DIR" --no-audit --no-fund --silent "playwright-core@$PLAYWRIGHT_VERSION" >&2
fi
export ZKCOPROC_REQUIRE_BROWSER=1

# A real PostgreSQL server (Debian's package) for the store suite on PostgreSQL and the replica
# test: a throwaway cluster on a loopback port, stopped and deleted when the tests end.
source "$REPO/scripts/postgres.sh"
pg_start
trap pg_stop EXIT
export ZKCOPROC_REQUIRE_POSTGRES=1

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
trap 'rm -f "$log"; pg_stop' EXIT
set +e
cargo test --workspace --no-fail-fast -- --test-threads 2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# API fuzzing (schemathesis against /openapi.json): no 5xx, no response outside the schema.
echo "== API fuzzing" >&2
set +e
bash "$REPO/scripts/api-fuzz.sh"
fuzz=$?
set -e
[ "$fuzz" -eq 0 ] && echo "api fuzzing: passed" || echo "api fuzzing: FAILED"
# cargo's last summary line is the last doc-test crate's (often "0 passed"): close with the total.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
[ "$status" -ne 0 ] && exit "$status"
exit "$fuzz"
