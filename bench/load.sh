#!/usr/bin/env bash
# Load scenarios with shopkeep-load (bench/load) against the two deployments shopkeep supports:
#   sqlite    the all-in-one setup: one process, an SQLite file, no Redis;
#   postgres  PostgreSQL plus Redis (login limits, web sessions and live updates in Redis).
# For each setup, one server is started and these scenarios run against it in order:
#   1. the customer journey with each count in JOURNEY_USERS virtual users, all at once: register,
#      sign in, create ORDERS orders, list them; an admin signs in and approves every order;
#   2. single endpoints, closed loop with CONNS connections for DURATION after WARMUP:
#      healthz, me, create, list, and search (the admin's partial username search, after the
#      journeys left their orders in the shop).
# Each scenario prints the tool's table: per step count, errors, throughput, p50/p95/p99/max.
# Inbound webhook ingest and job throughput have their own scripts (bench/webhooks.sh,
# bench/jobs.sh); the fault and fuzz tools are described in README.md.
#
# Usage (from the repository root):   bench/load.sh
#   JOURNEY_USERS="100 1000"  journeys to run, by virtual users
#   ORDERS=5                  orders per virtual user
#   ENDPOINTS="healthz me create list search"
#   CONNS=64  DURATION=10s  WARMUP=2s
#   SETUPS="sqlite postgres"  REDIS_URL=redis://127.0.0.1:6379 (postgres setup; keys under a
#                             fresh prefix)
#   PORT, PG_ADMIN_URL, BUILD as in bench/lib.sh (BUILD=0 measures the binaries already built)
#   JSON_DIR=DIR              also keep each report as JSON in DIR
#
# The server runs with SHOPKEEP_AUTH__BCRYPT_COST=4, so the journey's register and sign-in steps
# measure shopkeep rather than bcrypt at cost 12 (about 250 ms of CPU per hash on this class of
# machine, which would make 1,000 sign-ins a two-minute CPU queue). Everything else is the
# default configuration. The load generator runs on the same CPUs as the server.
set -euo pipefail

JOURNEY_USERS=${JOURNEY_USERS:-100 1000}
ORDERS=${ORDERS:-5}
ENDPOINTS=${ENDPOINTS:-healthz me create list search}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
SETUPS=${SETUPS:-sqlite postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
JSON_DIR=${JSON_DIR:-}

source "$(dirname "$0")/lib.sh"
bench_init
LOAD=${CARGO_TARGET_DIR:-$ROOT/target}/release/shopkeep-load

print_machine
if [[ $BUILD == 1 ]]; then
    echo "== Build: cargo build --release -p shopkeep -p shopkeep-load"
    cargo build --release -p shopkeep -p shopkeep-load
fi
echo "  binaries: $BIN, $LOAD; $("$BIN" --version)"
echo

# load NAME ARGS...: runs shopkeep-load against the server; a run with errors is reported, not
# fatal (the table says which step failed and how).
load() {
    local name=$1 rc=0
    shift
    local -a json=()
    [[ -n $JSON_DIR ]] && mkdir -p "$JSON_DIR" && json=(--json "$JSON_DIR/$name.json")
    echo "-- $name: shopkeep-load $*"
    LOAD_ADMIN_PASSWORD=$PASSWORD "$LOAD" --url "$(base)" --admin-username "$ADMIN_USER" \
        "${json[@]}" "$@" | sed 's/^/    /' || rc=$?
    ((rc == 0)) || echo "    (exit status $rc: errors were counted, see above)"
    echo
}

run_setup() {
    local setup=$1 db_url="" data_dir="$WORK/$1"
    local -a env=()
    mkdir -p "$data_dir"
    case $setup in
    sqlite) ;;
    postgres)
        if ! pg_available; then
            echo "== postgres: skipped (PG=0 or no PostgreSQL at $PG_ADMIN_URL)"
            return
        fi
        pg_scratch_db "shopkeep_load_$$"
        db_url="$PG_ADMIN_URL/$PG_DB?sslmode=disable"
        env=(SHOPKEEP_REDIS_URL="$REDIS_URL" SHOPKEEP_REDIS_PREFIX="shopkeep-load-$$:")
        ;;
    *)
        echo "unknown setup $setup" >&2
        exit 2
        ;;
    esac
    echo "== Setup: $setup${env:+ (${env[*]})}"
    start_server "$data_dir" "$db_url" "${env[@]}"
    wait_ready
    local u
    for u in $JOURNEY_USERS; do
        load "$setup-journey-$u" journey --users "$u" --orders "$ORDERS"
    done
    local e
    for e in $ENDPOINTS; do
        local -a extra=()
        # The search looks for the journeys' customers: usernames start with "j".
        [[ $e == search ]] && extra=(--search j)
        load "$setup-$e" endpoint "$e" --connections "$CONNS" --duration "$DURATION" \
            --warmup "$WARMUP" "${extra[@]}"
    done
    stop_server
    if [[ -n $PG_DB ]]; then
        dropdb --maintenance-db="$PG_ADMIN_URL/postgres" "$PG_DB"
        PG_DB=""
    fi
}

for s in $SETUPS; do
    run_setup "$s"
done
