#!/usr/bin/env bash
# Compiles Token.sol with solc-js (npm `solc`, pinned by scripts/tools.sh) into
# OUT_DIR/Token.bin (creation bytecode, hex). The tests run this; nothing built is committed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
solcjs="${ZKCOPROC_SOLCJS:-$HOME/.cache/zkcoproc/npm/node_modules/.bin/solcjs}"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$here" && "$solcjs" --bin --optimize --base-path . -o "$tmp" Token.sol >/dev/null)
cp "$tmp"/*Token.bin "$out/Token.bin"
echo "$out/Token.bin"
