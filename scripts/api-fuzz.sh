#!/usr/bin/env bash
# API fuzzing: schemathesis (PyPI, pinned) against the OpenAPI document a dev-mode service serves
# at /openapi.json, for a bounded number of generated cases. Fails on any 5xx and on any response
# that violates the documented schema. Expects the zkcoproc binary to be built (scripts/test.sh).
source "$(dirname "$0")/env.sh"
cd "$REPO"

SCHEMATHESIS_VERSION=4.32.5
VENV="$HOME/.cache/zkcoproc/venv"
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        echo "== installing python3-venv (apt)" >&2
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >&2
    fi
    echo "== installing schemathesis $SCHEMATHESIS_VERSION (PyPI)" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi

tmp="$(mktemp -d)"
"$CARGO_TARGET_DIR/debug/zkcoproc" serve --listen 127.0.0.1:0 --prover dev --data "$tmp/data" \
    >"$tmp/out" 2>"$tmp/log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$tmp"' EXIT
url=""
for _ in $(seq 1 600); do
    url="$(sed -n 's/^zkcoproc listening on //p' "$tmp/out")"
    [ -n "$url" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$tmp/log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "the service did not start" >&2; cat "$tmp/log" >&2; exit 1; }
# A deployed program gives the generated requests something real to reach.
built="$("$CARGO_TARGET_DIR/debug/zkcoproc" build examples/hello 2>>"$tmp/log")"
program="$("$CARGO_TARGET_DIR/debug/zkcoproc" deploy "$built" --server "$url")"
echo "== deployed examples/hello as $program" >&2

# Operations on a program get the deployed one, so their bodies (controller arguments, receipt
# kinds, roots) reach the controller and the queue instead of stopping at a 404.
cat >"$tmp/schemathesis.toml" <<TOML
[[operations]]
include-tag = "programs"
parameters = { id = "$program" }

[[operations]]
include-name = "POST /v1/programs/{id}/proofs"
parameters = { id = "$program" }
TOML

# `GET /v1/events` is left out: it streams for as long as the client reads (a fuzzer reads to the
# end); crates/cli/tests/console.rs tests it.
# One worker: with several threads, hypothesis' `ast.parse` of schemathesis' own sources races
# on CPython 3.11 ("AST constructor recursion depth mismatch"), an error of the fuzzer, not ours.
echo "== schemathesis against $url/openapi.json" >&2
"$VENV/bin/schemathesis" --config-file "$tmp/schemathesis.toml" run "$url/openapi.json" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples "${ZKCOPROC_FUZZ_EXAMPLES:-30}" --workers 1 --no-color \
    --exclude-name "GET /v1/events"
if ! kill -0 "$server" 2>/dev/null; then
    echo "the service died under fuzzing" >&2
    cat "$tmp/log" >&2
    exit 1
fi
