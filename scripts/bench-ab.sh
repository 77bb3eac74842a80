#!/usr/bin/env bash
# P2 (end-to-end dev-mode tasks/s and the store's raw durable transactions/s, on SQLite and on
# PostgreSQL) for two revisions side by side on this machine: the working tree and REV, built
# from the same Cargo.lock into the shared target directory, run alternately ROUNDS times on one
# PostgreSQL server, so both see the same machine at the same time.
#
#   bash scripts/bench-ab.sh REV [ROUNDS] [TASKS]    # e.g. bash scripts/bench-ab.sh 86bf858 3 200
#
# About 4 minutes a round warm, plus the first build of REV's own crates.
source "$(dirname "$0")/env.sh"
cd "$REPO"
REV="${1:?usage: bench-ab.sh REV [ROUNDS]}"
ROUNDS="${2:-3}"
TASKS="${3:-200}"
WORK="$(mktemp -d)"
source "$REPO/scripts/postgres.sh"
cleanup() {
    pg_stop || true
    # The working tree's next build must not pick up REV's artifacts.
    find "$REPO/crates" "$REPO/bench" "$REPO/testing" -name '*.rs' -exec touch {} +
    git -C "$REPO" worktree remove --force "$WORK/rev" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

build() { # source dir, binaries dir
    # Both sides share the target directory, where cargo names a workspace crate's artifacts
    # without its path, and does not copy a fresh binary to target/debug again: touching every
    # source of this side makes cargo build (and copy) this side's crates, not reuse the other's.
    find "$1/crates" "$1/bench" "$1/testing" -name '*.rs' -exec touch {} +
    (cd "$1" && cargo build -p zkcoproc-cli -p zkcoproc-bench >&2)
    mkdir -p "$2"
    cp "$CARGO_TARGET_DIR/debug/zkcoproc" "$CARGO_TARGET_DIR/debug/zkcoproc-bench" "$2/"
}
git worktree add --detach "$WORK/rev" "$REV" >&2
build "$WORK/rev" "$WORK/before"
build "$REPO" "$WORK/after"
pg_start
for round in $(seq 1 "$ROUNDS"); do
    for side in before after; do
        echo "== $side ($([ $side = before ] && echo "$REV" || echo "working tree")), round $round, $(date -u +%H:%M:%S)"
        "$WORK/$side/zkcoproc-bench" throughput --tasks "$TASKS" | grep -E '^\| (SQLite|PostgreSQL)'
    done
done
