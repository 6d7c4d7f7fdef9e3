#!/usr/bin/env bash
# Orders benchmarks for shopkeep, on SQLite and on PostgreSQL:
#   1.  POST /api/v1/orders (create), wrk -t2 -c64, round robin over CUSTOMERS customer tokens;
#   1b. diagnostic, SQLite only: the same with SHOPKEEP_DATABASE__SQLITE_SYNCHRONOUS=normal
#       (commits not fsynced; the default is full);
#   2.  GET /api/v1/orders (a customer's own orders, first page of 20), round robin over the tokens;
#   3.  growth to TARGET_ORDERS orders with more create runs (counted with GET
#       /api/v1/admin/orders/stats, field total), then GET /api/v1/admin/orders?username=SEARCH
#       (partial, case-insensitive username search) with the admin token;
#   4.  GET /api/v1/admin/orders/export.csv of all those orders with curl: rows/s, and the server's
#       VmRSS sampled every 100 ms before, during and after the export.
# Every wrk run also prints the CPU split (server, wrk, PostgreSQL, everything else), the server's
# CPU time per request and its CPU by thread name, and warns when other processes took CPU.
#
# Usage (from the repository root):   bench/orders.sh
#   DURATION=20s        wrk duration of each measured run (create, list, search)
#   WARMUP=3s           unreported create run before the measured one ("0" skips it)
#   CUSTOMERS=200       customers registered per server; creates and lists cycle through them
#   TARGET_ORDERS=100000  orders in the shop before the search and the export
#   SEARCH=ER19         the partial username for the search (customers are buyer001..buyer200,
#                       so ER19 matches the 10 customers buyer190..buyer199 when CUSTOMERS=200)
#   EXPORT_RUNS=2       exports measured per engine
#   SYNC_DIAG=1         0 skips the SQLite synchronous=normal diagnostic
#   PORT, PG, SQLITE, PG_ADMIN_URL, BUILD as in bench/lib.sh
#
# The server runs with SHOPKEEP_AUTH__BCRYPT_COST=4 so that registering and logging in CUSTOMERS
# customers takes seconds, not minutes. It changes only the cost of password hashing (registration
# and login), which no measured request does. The admin (root, platform admin, owner of the
# default shop, scope orders:admin) is created at start from ADMIN_USERNAME/ADMIN_PASSWORD.
#
# Everything talks to 127.0.0.1 only. The script starts and stops its own servers and removes the
# scratch data directories, the scratch database and the wrk scripts (which hold tokens) at exit.
set -euo pipefail

DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
CUSTOMERS=${CUSTOMERS:-200}
TARGET_ORDERS=${TARGET_ORDERS:-100000}
SEARCH=${SEARCH:-ER19}
EXPORT_RUNS=${EXPORT_RUNS:-2}
SYNC_DIAG=${SYNC_DIAG:-1}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

# expect_get PATH CODE BODY_PATTERN [TOKEN]: one curl GET that must answer CODE with a body
# matching BODY_PATTERN, so that a run cannot silently measure error responses.
expect_get() {
    local path=$1 want=$2 pattern=$3 token=${4:-} code
    local -a auth=()
    [[ -n $token ]] && auth=(-H "Authorization: Bearer $token")
    code=$(curl -s -o "$WORK/check.json" -w '%{http_code}' "${auth[@]}" "$(base)$path")
    if [[ $code != "$want" ]] || ! grep -q -- "$pattern" "$WORK/check.json"; then
        echo "error: GET $path answered $code, expected $want matching '$pattern': $(head -c 300 "$WORK/check.json")" >&2
        exit 1
    fi
}

# --- accounts and tokens (curl, outside any timed run) -------------------------------------------
# register USERNAME: a customer of the default shop.
register() {
    local code
    code=$(curl -s -o "$WORK/register.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "{\"username\": \"$1\", \"password\": \"$PASSWORD\"}" "$(base)/api/v1/auth/register")
    if [[ $code != 201 ]]; then
        echo "error: registering $1 answered $code: $(cat "$WORK/register.json")" >&2
        exit 1
    fi
}

customer() { printf 'buyer%03d' "$1"; }

# order_total ADMIN_TOKEN: the shop's order count (GET /api/v1/admin/orders/stats, field total).
order_total() {
    expect_get /api/v1/admin/orders/stats 200 '"total":' "$1"
    grep -o '"total":[0-9]*' "$WORK/check.json" | head -n1 | cut -d: -f2
}

# rr_script FILE METHOD PATH [BODY]: a wrk script that cycles through the customer tokens in
# $WORK/tokens.txt, one request each in turn. The requests are formatted once, in init(); the two
# wrk threads start half-way apart in the list.
rr_script() {
    local file=$1 method=$2 path=$3 body=${4:-}
    {
        echo 'local tokens = {'
        sed 's/.*/    "&",/' "$WORK/tokens.txt"
        echo '}'
        printf 'local method, path, body = "%s", "%s", %s\n' "$method" "$path" \
            "$( [[ -n $body ]] && printf "'%s'" "$body" || echo nil)"
        cat <<'LUA'
local reqs, i = {}, 0
local threads = 0
setup = function(thread)
    thread:set("tid", threads)
    threads = threads + 1
end
init = function(args)
    local headers = { ["Content-Type"] = "application/json" }
    for k, t in ipairs(tokens) do
        headers["Authorization"] = "Bearer " .. t
        reqs[k] = wrk.format(method, path, headers, body)
    end
    i = (tid or 0) * math.floor(#reqs / 2)
end
request = function()
    i = i % #reqs + 1
    return reqs[i]
end
LUA
        wrk_done_lua
    } >"$file"
}

# bearer_script FILE TOKEN: GET with Authorization: Bearer TOKEN.
bearer_script() {
    {
        printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$2"
        wrk_done_lua
    } >"$1"
}

SUMMARY="$WORK/summary.txt"
: >"$SUMMARY"

# record ENGINE NAME RESULT_FILE [EXTRA...]: one summary line for a wrk run.
record() {
    local engine=$1 name=$2 out=$3
    shift 3
    printf '%s %s rps=%s p50_ms=%s p99_ms=%s %s %s\n' "$engine" "$name" "$(rps "$out")" \
        "$(ms "$out" p50_us)" "$(ms "$out" p99_us)" "$(cut -d' ' -f2- "$out")" "$*" >>"$SUMMARY"
}

# create_run ENGINE NAME LABEL: the measured create run (64 connections, DURATION).
create_run() {
    local engine=$1 name=$2 label=$3 admin=$4 before after out
    before=$(order_total "$admin")
    if [[ $WARMUP != 0 ]]; then
        wrk -t2 -c64 -d"$WARMUP" -s "$WORK/create.lua" "$(base)/api/v1/orders" >/dev/null 2>&1
    fi
    echo
    echo "  -- $label: wrk -t2 -c64 -d$DURATION --latency, POST /api/v1/orders round robin over $CUSTOMERS customers"
    echo "     (${WARMUP} unreported warm-up run first; $before orders in the shop before it)"
    echo "     Machine CPU just before: $(machine_busy_now)"
    out="$WORK/$engine-$name"
    run_wrk "$out" -t2 -c64 -d"$DURATION" --latency -s "$WORK/create.lua" "$(base)/api/v1/orders"
    after=$(order_total "$admin")
    echo "     orders in the shop after: $after"
    record "$engine" "$name" "$out.result" "orders_after=$after"
}

# sample_rss FILE: prints "microseconds VmRSS_kB" for the server every 100 ms until killed.
sample_rss() {
    local k v rest
    while :; do
        while read -r k v rest; do
            [[ $k == VmRSS: ]] && echo "$(now_us) $v"
        done <"/proc/$SERVER_PID/status"
        sleep 0.1
    done >"$1"
}

# export_run ENGINE N ADMIN_TOKEN TOTAL: one timed CSV export with curl, RSS sampled throughout.
export_run() {
    local engine=$1 n=$2 admin=$3 total=$4 t0 t1 s0 s1 d0 d1 lines code size ttfb ttotal rows
    local hz
    hz=$(getconf CLK_TCK)
    sample_rss "$WORK/rss.$engine.$n" &
    BG_PIDS+=($!)
    sleep 1 # at least ten "before" samples
    s0=$(cpu_ticks "$SERVER_PID")
    d0=$(db_ticks)
    t0=$(now_us)
    curl -sS -H "Authorization: Bearer $admin" \
        -w '%{stderr}%{http_code} %{size_download} %{time_starttransfer} %{time_total}\n' \
        "$(base)/api/v1/admin/orders/export.csv" 2>"$WORK/export.meta" | wc -l >"$WORK/export.lines"
    t1=$(now_us)
    s1=$(cpu_ticks "$SERVER_PID")
    d1=$(db_ticks)
    sleep 1 # at least ten "after" samples
    kill -TERM "${BG_PIDS[-1]}"
    wait "${BG_PIDS[-1]}" 2>/dev/null || true
    unset 'BG_PIDS[-1]'
    read -r code size ttfb ttotal <"$WORK/export.meta"
    lines=$(cat "$WORK/export.lines")
    rows=$((lines - 1)) # the header line
    if [[ $code != 200 ]]; then
        echo "error: the export answered $code" >&2
        exit 1
    fi
    [[ $rows == "$total" ]] || echo "    WARNING: the export had $rows data lines, but the shop has $total orders"
    awk -v t0="$t0" -v t1="$t1" -v rows="$rows" -v size="$size" -v ttfb="$ttfb" -v tt="$ttotal" \
        -v s=$((s1 - s0)) -v d=$((d1 - d0)) -v hz="$hz" -v engine="$engine" -v n="$n" -v total="$total" '
        { if ($1 < t0) before = $2; else if ($1 <= t1) { if ($2 > peak) peak = $2; during++ } else if (after == "") after = $2; last = $2 }
        END {
            w = (t1 - t0) / 1e6
            printf "    export %d: HTTP 200, %d data rows (%d orders in the shop), %.1f MB in %.3f s (first byte after %.3f s): %.0f rows/s\n",
                n, rows, total, size / 1e6, tt, ttfb, rows / tt
            printf "    CPU during the export (cores): server %.2f, PostgreSQL %.2f; server CPU %.2f s\n", s / hz / w, d / hz / w, s / hz
            printf "    server VmRSS: before %d kB | peak during %d kB (%d samples, 100 ms apart) | 1 s after %d kB\n", before, peak, during, last
            printf "%s export%d rows=%d total=%d bytes=%d seconds=%.3f ttfb=%.3f rows_per_s=%.0f server_cores=%.2f db_cores=%.2f rss_before_kb=%d rss_peak_kb=%d rss_after_kb=%d samples=%d\n",
                engine, n, rows, total, size, tt, ttfb, rows / tt, s / hz / w, d / hz / w, before, peak, last, during >> "'"$SUMMARY"'"
        }' "$WORK/rss.$engine.$n"
}

# --- one engine -----------------------------------------------------------------------------------
bench_engine() {
    local engine=$1 data_dir=$2 db_url=${3:-} admin total i out rate secs
    echo "== $engine"
    start_server "$data_dir" "$db_url"
    wait_ready
    admin=$(token "$ADMIN_USER")
    : >"$WORK/tokens.txt"
    for ((i = 1; i <= CUSTOMERS; i++)); do
        register "$(customer "$i")"
        token "$(customer "$i")" >>"$WORK/tokens.txt"
    done
    echo "  server pid $SERVER_PID ready; registered $(customer 1)..$(customer "$CUSTOMERS") and logged each in once"
    rr_script "$WORK/create.lua" POST /api/v1/orders '{"item_name":"Widget","quantity":1}'
    rr_script "$WORK/list.lua" GET /api/v1/orders

    # 1. create (and its synchronous=normal diagnostic on SQLite).
    create_run "$engine" create "1. create orders" "$admin"
    if [[ $engine == sqlite && $SYNC_DIAG == 1 ]]; then
        stop_server
        start_server "$data_dir" "$db_url" SHOPKEEP_DATABASE__SQLITE_SYNCHRONOUS=normal
        wait_ready
        create_run "$engine" create_sync_normal \
            "1b. create orders, SHOPKEEP_DATABASE__SQLITE_SYNCHRONOUS=normal (diagnostic: commits not fsynced)" "$admin"
        stop_server
        start_server "$data_dir" "$db_url"
        wait_ready
    fi

    # 2. list own orders (first page; every customer has more than 20 by now).
    expect_get /api/v1/orders 200 '"next_cursor":"' "$(head -n1 "$WORK/tokens.txt")"
    echo
    echo "  -- 2. list own orders (first page of 20): wrk -t2 -c64 -d$DURATION --latency, GET /api/v1/orders round robin over $CUSTOMERS customers"
    echo "     Machine CPU just before: $(machine_busy_now)"
    out="$WORK/$engine-list"
    run_wrk "$out" -t2 -c64 -d"$DURATION" --latency -s "$WORK/list.lua" "$(base)/api/v1/orders"
    record "$engine" list "$out.result"

    # 3. grow to TARGET_ORDERS with more create runs, then the admin search.
    total=$(order_total "$admin")
    rate=$(rps "$WORK/$engine-create.result")
    echo
    echo "  -- 3. growing the shop to $TARGET_ORDERS orders (now $total) with unreported create runs"
    while ((total < TARGET_ORDERS)); do
        secs=$(awk -v need=$((TARGET_ORDERS - total)) -v r="$rate" 'BEGIN { s = int(need / (r > 500 ? r : 500) * 1.1) + 2; print (s > 300 ? 300 : s) }')
        wrk -t2 -c64 -d"${secs}s" -s "$WORK/create.lua" "$(base)/api/v1/orders" >"$WORK/grow.txt" 2>&1
        if [[ $(field <(grep '^RESULT ' "$WORK/grow.txt") non2xx) != 0 ]]; then
            echo "error: a growth run had non-2xx responses: $(grep '^RESULT ' "$WORK/grow.txt")" >&2
            exit 1
        fi
        total=$(order_total "$admin")
        echo "     ${secs} s of creates: $total orders"
    done
    admin=$(token "$ADMIN_USER") # a fresh token (15 minutes) for the rest
    expect_get "/api/v1/admin/orders?username=$SEARCH" 200 '"customer_username":"buyer' "$admin"
    bearer_script "$WORK/search.lua" "$admin"
    echo
    echo "  -- 3. admin username search over $total orders: wrk -t2 -c64 -d$DURATION --latency --timeout 30s, GET /api/v1/admin/orders?username=$SEARCH"
    echo "     ($SEARCH matches $(for ((i = 1; i <= CUSTOMERS; i++)); do customer "$i"; echo; done | grep -ci -- "$SEARCH") of the $CUSTOMERS customers)"
    echo "     Machine CPU just before: $(machine_busy_now)"
    out="$WORK/$engine-search"
    run_wrk "$out" -t2 -c64 -d"$DURATION" --latency --timeout 30s -s "$WORK/search.lua" \
        "$(base)/api/v1/admin/orders?username=$SEARCH"
    record "$engine" search "$out.result" "orders=$total"

    # 4. CSV export. Counted again: creates that were in flight when the last wrk run stopped
    # commit after it, so the count taken then can be a few orders short.
    total=$(order_total "$admin")
    echo
    echo "  -- 4. CSV export of all $total orders: curl GET /api/v1/admin/orders/export.csv | wc -l, $EXPORT_RUNS runs"
    echo "     Machine CPU just before: $(machine_busy_now)"
    for ((i = 1; i <= EXPORT_RUNS; i++)); do
        export_run "$engine" "$i" "$admin" "$total"
    done
    stop_server
    echo
}

print_machine
build_binary

# --- runs -------------------------------------------------------------------------------------------
if [[ $SQLITE == 1 ]]; then
    bench_engine sqlite "$WORK/sqlite-data"
fi

if pg_available; then
    pg_scratch_db "shopkeep_bench_orders_$$"
    bench_engine postgres "$WORK/pg-data" "$PG_ADMIN_URL/$PG_DB?sslmode=disable"
else
    echo "== postgres: skipped (PG=$PG or $PG_ADMIN_URL is not accepting connections)"
    echo
fi

# --- summary ----------------------------------------------------------------------------------------
echo "== Summary (goals: create >= 5,000 req/s SQLite, >= 3,000 PostgreSQL, p99 < 20 ms; list >= 20,000 req/s;"
echo "   search over 100k orders p99 < 20 ms; export >= 200,000 rows/s with flat memory)"
awk '
    { delete v; for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    $2 ~ /^(create|create_sync_normal|list|search)$/ {
        printf "  %-8s %-19s %8.1f req/s  p50 %6.2f ms  p99 %6.2f ms  non-2xx %d | cores: server %.2f, wrk %.2f, postgres %.2f; server CPU %.0f us/req\n",
            $1, $2, v["rps"], v["p50_ms"], v["p99_ms"], v["non2xx"], v["server_cores"], v["child_cores"], v["db_cores"], v["server_cpu_us_per"]
    }
    $2 ~ /^export/ {
        printf "  %-8s %-19s %8.0f rows/s (%d rows, %.2f s) | server %.2f cores, postgres %.2f | VmRSS before %d kB, peak %d kB, after %d kB\n",
            $1, $2, v["rows_per_s"], v["rows"], v["seconds"], v["server_cores"], v["db_cores"], v["rss_before_kb"], v["rss_peak_kb"], v["rss_after_kb"]
    }' "$SUMMARY"
echo
if grep -q . "$WORK/server.log"; then
    echo "== Server log (warn and above): $(wc -l <"$WORK/server.log") lines, $(grep -c 'slow statement' "$WORK/server.log" || true) of them slow-statement warnings; the last 5, cut to 300 characters:"
    tail -n 5 "$WORK/server.log" | cut -c1-300 | sed 's/^/  /'
fi
echo "done."
