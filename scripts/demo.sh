#!/usr/bin/env bash
# The demo: builds what it needs, starts `zkcoproc serve` on its embedded default (SQLite in a
# fresh data directory), deploys examples/hello, proves it with the real CPU prover, verifies the
# proof locally, prints the journal and timings, and stops the service.
source "$(dirname "$0")/env.sh"
cd "$REPO"
N="${N:-100}"

echo "== building zkcoproc" >&2
cargo build -p zkcoproc-cli --bin zkcoproc >&2
ZK="$CARGO_TARGET_DIR/debug/zkcoproc"

echo "== building examples/hello (controller -> wasm component, circuit -> RISC Zero program)" >&2
OUT="$("$ZK" build examples/hello | tail -n 1)"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== starting zkcoproc serve (prover: cpu, data: $WORK/data)" >&2
"$ZK" serve --listen 127.0.0.1:0 --data "$WORK/data" --prover cpu >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 1 600); do
    URL="$(sed -n 's/^zkcoproc listening on //p' "$WORK/serve.out")"
    [ -n "$URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { echo "service did not start" >&2; cat "$WORK/serve.log" >&2; exit 1; }
export ZKCOPROC_SERVER="$URL"
echo "   listening on $URL" >&2

echo "== deploying" >&2
PROGRAM="$("$ZK" deploy "$OUT" | tail -n 1)"

echo "== proving {\"n\": $N} with the real CPU prover (about a minute on 2 cores)" >&2
"$ZK" prove "$PROGRAM" --args "{\"n\": $N}" --wait >"$WORK/task.json"
TASK="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/task.json")"

echo "== verifying locally (the service only supplies the receipt)" >&2
"$ZK" verify --task "$TASK"

echo "== the controller stored the receipt in the program's FAT-16 volume" >&2
"$ZK" fs ls "$PROGRAM" /var/share/proofs

python3 - "$WORK/task.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
print()
print(f"task      {t['id']}  status {t['status']}  receipt {t['receipt_kind']}  cycles {t['user_cycles']}")
print(f"journal   {t['journal']}")
print(f"          = root {t['journal'][:64]}")
print(f"          ‖ output {t['output']}")
print(f"result    {json.dumps(t['result'])}")
d = t["durations_ms"]
print("timings   " + "  ".join(f"{k} {d[k]/1000:.2f}s" for k in ["witnessing", "proving", "verifying", "delivering", "total"] if k in d))
PY
