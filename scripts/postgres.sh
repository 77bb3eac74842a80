#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests and benchmarks, from Debian's packages.
#
#   source scripts/postgres.sh; pg_start   # sets ZKCOPROC_TEST_POSTGRES=postgres://zkcoproc@127.0.0.1:PORT
#   pg_stop                                # stops it and deletes its directory
#
# The cluster lives in a temporary directory, listens on loopback only and trusts local
# connections. PostgreSQL refuses to run as root, so as root it runs as a dedicated system user
# (`zkcoproc-pg`, created on first use).
set -euo pipefail

pg_bin() {
    local initdb
    initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1 || true)"
    if [ -z "$initdb" ]; then
        echo "== installing postgresql (apt)" >&2
        local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >&2
        initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)"
    fi
    dirname "$initdb"
}

pg_start() {
    local bin port dir as=()
    bin="$(pg_bin)"
    port="${ZKCOPROC_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
    dir="$(mktemp -d /tmp/zkcoproc-pg.XXXXXX)"
    if [ "$(id -u)" -eq 0 ]; then
        id zkcoproc-pg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin zkcoproc-pg
        chown zkcoproc-pg "$dir"
        as=(runuser -u zkcoproc-pg --)
    fi
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U zkcoproc --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=400 -c shared_buffers=256MB" >&2 \
        || { cat "$dir/server.log" >&2; return 1; }
    export ZKCOPROC_PG_DIR="$dir" ZKCOPROC_PG_BIN="$bin"
    export ZKCOPROC_TEST_POSTGRES="postgres://zkcoproc@127.0.0.1:$port"
    echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($dir)" >&2
}

pg_stop() {
    [ -n "${ZKCOPROC_PG_DIR:-}" ] || return 0
    local as=()
    [ "$(id -u)" -eq 0 ] && as=(runuser -u zkcoproc-pg --)
    "${as[@]}" "$ZKCOPROC_PG_BIN/pg_ctl" -D "$ZKCOPROC_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$ZKCOPROC_PG_DIR"
    unset ZKCOPROC_PG_DIR
}
