#!/usr/bin/env bash
# Webhook benchmarks, on SQLite and on PostgreSQL:
#   1. inbound: wrk -t2 -cCONNS -dDURATION POST /webhooks/shopify with a correctly signed
#      orders/create body for a linked shop, every request with its own X-Shopify-Event-Id (the
#      signature covers the body only, so one body serves every request). Each request verifies
#      the HMAC, stores the receipt and enqueues its processing job in one transaction, then
#      answers. The server runs with SHOPKEEP_ROLES=api (no workers), so this is ingest alone.
#      Receipts per second and ack latency (p50/p99) are wrk's; the stored receipt count is
#      checked against wrk's count of 200s.
#   2. outbound: DELIVERIES order events are written straight into the outbox (SQL, before the
#      timed part), one endpoint points at bench/receiver.py (a keep-alive asyncio server that
#      answers 204), and a worker-only server is started with the `webhooks` queue at
#      DELIVERY_CONCURRENCY. Timed from the server's start to the poll that finds every delivery
#      `delivered`: this includes the dispatcher turning events into deliveries, each signed
#      POST, and recording each attempt.
#
# Usage (from the repository root):   bench/webhooks.sh
#   DURATION=15s            wrk duration of the inbound run (a 3 s unreported warm-up precedes it)
#   CONNS=64                wrk connections of the inbound run
#   DELIVERIES=40000        order events delivered in the outbound run
#   DELIVERY_CONCURRENCY=256 concurrency of the webhooks queue in the outbound run (the built-in one)
#   RECV_PORT=18182         port of the receiver
#   PORT, PG, SQLITE, PG_ADMIN_URL, BUILD as in bench/lib.sh
#
# Needs wrk, curl, openssl, base64, python3, sqlite3, and for PostgreSQL createdb, dropdb, psql.
# Everything talks to 127.0.0.1 only; the script removes its scratch data and database at exit.
set -euo pipefail

DURATION=${DURATION:-15s}
CONNS=${CONNS:-64}
DELIVERIES=${DELIVERIES:-40000}
DELIVERY_CONCURRENCY=${DELIVERY_CONCURRENCY:-256}
RECV_PORT=${RECV_PORT:-18182}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

SUMMARY="$WORK/summary.txt"
: >"$SUMMARY"
CLIENT_SECRET=bench-client-secret-0123456789
SHOP_DOMAIN=bench.myshopify.com
BODY='{"id":820982911946154508,"currency":"USD","total_price":"25.00","line_items":[{"title":"Mug","quantity":2,"price":"12.50","product_id":11,"variant_id":12}]}'
SIGNATURE=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$CLIENT_SECRET" -binary | base64)

ENGINE=""
DATA_DIR=""
DB_URL=""

# sql QUERY: one statement on the engine's database (outside every timed phase except the
# drain polls, which run one client each 0.25 s).
sql() {
    if [[ -n $DB_URL ]]; then
        psql -X -qAt -d "$DB_URL" -c "$1"
    else
        sqlite3 -batch -noheader -cmd '.timeout 10000' "$DATA_DIR/shopkeep.db" "$1"
    fi
}

record() { echo "$ENGINE $*" >>"$SUMMARY"; }

server() { start_server "$DATA_DIR" "$DB_URL" SHOPKEEP_SHOPIFY__CLIENT_SECRET="$CLIENT_SECRET" \
    SHOPKEEP_WEBHOOKS__ALLOW_NETWORKS=127.0.0.1/32 "$@"; }

inbound_lua() {
    cat <<LUA
local counter = 0
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("prefix", "bench-" .. threads .. "-" .. os.time() .. "-")
end
function request()
    counter = counter + 1
    return wrk.format("POST", "/webhooks/shopify", {
        ["Content-Type"] = "application/json",
        ["X-Shopify-Topic"] = "orders/create",
        ["X-Shopify-Shop-Domain"] = "$SHOP_DOMAIN",
        ["X-Shopify-Hmac-Sha256"] = "$SIGNATURE",
        ["X-Shopify-Event-Id"] = prefix .. counter,
    }, '$BODY')
end
LUA
    wrk_done_lua
}

inbound_run() {
    server SHOPKEEP_ROLES=api
    wait_ready
    local token code out n stored
    token=$(token "$ADMIN_USER")
    code=$(curl -s -o "$WORK/link.json" -w '%{http_code}' -X PUT -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d "{\"account\":\"$SHOP_DOMAIN\"}" "$(base)/api/v1/integrations/shopify")
    [[ $code == 200 ]] || { echo "error: linking the shop answered $code: $(cat "$WORK/link.json")" >&2; exit 1; }
    inbound_lua >"$WORK/inbound.lua"
    code=$(curl -s -o "$WORK/probe.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        -H 'X-Shopify-Topic: orders/create' -H "X-Shopify-Shop-Domain: $SHOP_DOMAIN" \
        -H "X-Shopify-Hmac-Sha256: $SIGNATURE" -H 'X-Shopify-Event-Id: probe' --data-binary "$BODY" "$(base)/webhooks/shopify")
    grep -q '"status":"queued"' "$WORK/probe.json" || { echo "error: the probe webhook answered $code: $(cat "$WORK/probe.json")" >&2; exit 1; }
    wrk -t2 -c"$CONNS" -d3s -s "$WORK/inbound.lua" "$(base)/" >/dev/null 2>&1
    local before
    before=$(sql "SELECT count(*) FROM webhook_receipts")
    echo "  -- 1. inbound: wrk -t2 -c$CONNS -d$DURATION, signed Shopify orders/create, a new event id per request"
    echo "     Machine CPU just before: $(machine_busy_now)"
    out="$WORK/$ENGINE-inbound"
    run_wrk "$out" -t2 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/inbound.lua" "$(base)/"
    n=$(field "$out.result" requests)
    stored=$(($(sql "SELECT count(*) FROM webhook_receipts") - before))
    echo "     receipts stored during the run: $stored (wrk counted $n answers; requests cut off when wrk stops may also have committed)"
    record "inbound rps=$(rps "$out.result") p50_ms=$(ms "$out.result" p50_us) p99_ms=$(ms "$out.result" p99_us) stored=$stored $(cut -d' ' -f2- "$out.result")"
    stop_server
    # The processing jobs of these receipts would compete with the deliveries below.
    sql "DELETE FROM jobs" >/dev/null
    echo
}

outbound_run() {
    local token code shop t0 t1 delivered deadline
    python3 "$ROOT/bench/receiver.py" "$RECV_PORT" "$WORK/received" &
    BG_PIDS+=($!)
    server SHOPKEEP_ROLES=api
    wait_ready
    token=$(token "$ADMIN_USER")
    code=$(curl -s -o "$WORK/ep.json" -w '%{http_code}' -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"url\":\"http://127.0.0.1:$RECV_PORT/hook\",\"event_types\":[\"order.*\"]}" "$(base)/api/v1/webhooks/endpoints")
    [[ $code == 201 ]] || { echo "error: creating the endpoint answered $code: $(cat "$WORK/ep.json")" >&2; exit 1; }
    stop_server
    if [[ -n $DB_URL ]]; then
        sql "INSERT INTO outbox (id, shop_id, event_type, resource_id, payload, created_at)
             SELECT gen_random_uuid(), (SELECT id FROM shops WHERE is_default), 'order.created', 'o' || i,
                    '{\"type\":\"order.created\",\"order\":' || i || '}', (extract(epoch FROM now()) * 1000000)::bigint
             FROM generate_series(1, $DELIVERIES) AS i" >/dev/null
    else
        sql "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $DELIVERIES)
             INSERT INTO outbox (id, shop_id, event_type, resource_id, payload, created_at)
             SELECT randomblob(16), (SELECT id FROM shops WHERE is_default), 'order.created', 'o' || i,
                    '{\"type\":\"order.created\",\"order\":' || i || '}', CAST(strftime('%s', 'now') AS INTEGER) * 1000000 FROM n" >/dev/null
    fi
    shop=$(sql "SELECT count(*) FROM outbox WHERE published_at IS NULL")
    echo "  -- 2. outbound: $shop unpublished order events, one endpoint (bench/receiver.py on 127.0.0.1:$RECV_PORT),"
    echo "     worker-only server with SHOPKEEP_JOBS__QUEUES=webhooks=$DELIVERY_CONCURRENCY"
    echo "     Machine CPU just before: $(machine_busy_now)"
    server SHOPKEEP_ROLES=worker "SHOPKEEP_JOBS__QUEUES=webhooks=$DELIVERY_CONCURRENCY"
    t0=$START_US
    cpu_mark o0
    deadline=$(($(now_us) + 900 * 1000000))
    while :; do
        delivered=$(sql "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
        ((delivered >= DELIVERIES)) && break
        if (($(now_us) > deadline)) || ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "error: $delivered of $DELIVERIES delivered; server log:" >&2
            tail -n 20 "$WORK/server.log" >&2
            exit 1
        fi
        sleep 0.25
    done
    t1=$(now_us)
    cpu_mark o1
    echo "RESULT requests=$DELIVERIES duration_us=$((t1 - t0)) $(cpu_split o0 o1 "$DELIVERIES")" >"$WORK/$ENGINE-out.result"
    awk -v n="$DELIVERIES" -v d=$((t1 - t0)) 'BEGIN { printf "    %d deliveries in %.2f s: %.0f deliveries/s\n", n, d / 1e6, n / (d / 1e6) }'
    print_cpu "$WORK/$ENGINE-out.result" delivery
    echo "    $(thread_split o0 o1)"
    echo "    receiver counted $(cat "$WORK/received") requests; attempts that failed: $(sql "SELECT count(*) FROM webhook_attempts WHERE status_code IS NULL OR status_code >= 300")"
    record "outbound per_s=$(awk -v n="$DELIVERIES" -v d=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (d / 1e6) }') $(cut -d' ' -f2- "$WORK/$ENGINE-out.result")"
    stop_server
    kill -TERM "${BG_PIDS[-1]}"
    wait "${BG_PIDS[-1]}" 2>/dev/null || true
    unset 'BG_PIDS[-1]'
    echo
}

bench_engine() {
    ENGINE=$1
    DATA_DIR=$2
    DB_URL=${3:-}
    mkdir -p "$DATA_DIR"
    echo "== $ENGINE"
    inbound_run
    outbound_run
}

print_machine
build_binary
: >"$WORK/server.log"

if [[ $SQLITE == 1 ]]; then
    bench_engine sqlite "$WORK/sqlite-data"
fi
if pg_available; then
    pg_scratch_db "shopkeep_bench_webhooks_$$"
    bench_engine postgres "$WORK/pg-data" "$PG_ADMIN_URL/$PG_DB?sslmode=disable"
else
    echo "== postgres: skipped (PG=$PG or $PG_ADMIN_URL is not accepting connections)"
fi

echo "== Summary (goals: inbound >= 10,000 receipts/s with ack p99 < 20 ms on SQLite; outbound >= 5,000 deliveries/s)"
awk '
    { delete v; for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    $2 == "inbound" { printf "  %-8s inbound  %7.0f receipts/s  p50 %6.2f ms  p99 %6.2f ms  non-2xx %d  stored %d | server %.2f cores, %.0f us/request; postgres %.2f cores; steal %.2f\n",
        $1, v["rps"], v["p50_ms"], v["p99_ms"], v["non2xx"], v["stored"], v["server_cores"], v["server_cpu_us_per"], v["db_cores"], v["steal_cores"] }
    $2 == "outbound" { printf "  %-8s outbound %7.0f deliveries/s (%d in %.2f s) | server %.2f cores, %.0f us/delivery; postgres %.2f cores; others (receiver, polls) %.2f; steal %.2f\n",
        $1, v["per_s"], v["requests"], v["wall_s"], v["server_cores"], v["server_cpu_us_per"], v["db_cores"], v["other_cores"] + v["child_cores"], v["steal_cores"] }
' "$SUMMARY"
echo "done."
