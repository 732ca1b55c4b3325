#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the store tests and print the variable that enables them.
#
#   eval "$(bash scripts/ci_postgres.sh)"      # exports BOT_TEST_POSTGRES_URL
#   bash scripts/ci_postgres.sh stop           # stops the server (the data stays for next time)
#
# Installs PostgreSQL from the Debian packages when no initdb is found (needs root, which CI is).
# The cluster lives in $BOT_PG_DIR (default /tmp/bot-ci-postgres), listens on 127.0.0.1 only, on
# $BOT_PG_PORT (default 54329, away from a system cluster's 5432), with trust authentication and
# fsync off: test data only. Idempotent: a second run reuses the running server in well under a
# second. Only the export line goes to standard output; progress goes to standard error.
set -euo pipefail

PORT="${BOT_PG_PORT:-54329}"
DIR="${BOT_PG_DIR:-${TMPDIR:-/tmp}/bot-ci-postgres}"
DB="${BOT_PG_DB:-bot_test}"
DATA="$DIR/data"

log() { echo "ci_postgres: $*" >&2; }

find_bindir() {
    # Debian keeps the server binaries out of PATH, one directory per major version.
    local newest
    newest="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$newest" && -x "$newest/initdb" ]]; then
        echo "$newest"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
    fi
}

install_postgres() {
    if [[ "$(id -u)" != 0 ]]; then
        log "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
        exit 1
    fi
    log "installing PostgreSQL from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        postgresql postgresql-client </dev/null >&2
}

BINDIR="$(find_bindir)"
if [[ -z "$BINDIR" ]]; then
    install_postgres
    BINDIR="$(find_bindir)"
fi
if [[ -z "$BINDIR" ]]; then
    log "no initdb found after installing PostgreSQL"
    exit 1
fi

# The server refuses to run as root: run its tools as the postgres user (made by the package).
if [[ "$(id -u)" == 0 ]]; then
    as_owner() { runuser -u postgres -- "$@"; }
    OWNER=postgres
else
    as_owner() { "$@"; }
    OWNER="$(id -un)"
fi

pg_ctl_() { as_owner "$BINDIR/pg_ctl" -D "$DATA" "$@"; }

if [[ "${1:-}" == "stop" ]]; then
    if [[ -f "$DATA/PG_VERSION" ]] && pg_ctl_ status >/dev/null 2>&1; then
        pg_ctl_ stop -m fast -w >&2
    fi
    exit 0
fi

VERSION="$("$BINDIR/initdb" --version | awk '{print $3}')"  # "initdb (PostgreSQL) 15.18"
if [[ -f "$DATA/PG_VERSION" && "$(cat "$DATA/PG_VERSION")" != "${VERSION%%.*}" ]]; then
    # Left by another major version: throw it away (it only ever holds test data).
    log "discarding $DATA (made by PostgreSQL $(cat "$DATA/PG_VERSION"))"
    pg_ctl_ stop -m immediate >/dev/null 2>&1 || true
    rm -rf "$DATA"
fi

mkdir -p "$DIR"
chown "$OWNER" "$DIR"
chmod 700 "$DIR"

if [[ ! -f "$DATA/PG_VERSION" ]]; then
    log "creating a cluster in $DATA"
    as_owner "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C \
        --no-sync >/dev/null
fi

if ! pg_ctl_ status >/dev/null 2>&1; then
    log "starting PostgreSQL $VERSION on 127.0.0.1:$PORT"
    # The socket goes to $DIR: /var/run/postgresql may not exist outside the system cluster.
    opts="-p $PORT -k $DIR -c listen_addresses=127.0.0.1"
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    pg_ctl_ start -w -t 60 -l "$DIR/server.log" -o "$opts" >/dev/null \
        || { cat "$DIR/server.log" >&2; exit 1; }
fi

psql_() { as_owner "$BINDIR/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
if [[ "$(psql_ -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" postgres)" != 1 ]]; then
    log "creating database $DB"
    psql_ -c "CREATE DATABASE $DB" postgres >/dev/null
fi

echo "export BOT_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$PORT/$DB"
