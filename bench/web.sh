#!/usr/bin/env bash
# Web page benchmarks for shopkeep, on SQLite and on PostgreSQL:
#   1. the admin dashboard with ORDERS orders in the shop (cards, chart, first page of the
#      table): wrk -t1 -c1 GET /dashboard with a signed-in session cookie, so each request has the
#      server to itself and the latency is the server's time plus loopback; p50/p95/p99;
#   2. the same page with -c4 for throughput (requests/s) once both cores are busy;
#   3. the table fragment HTMX fetches while an admin types in the search box:
#      GET /dashboard/orders?username=cust (partial, case-insensitive), -c1;
#   4. a customer's "My orders" page (tabs with counts, 20 rows), -c1;
#   5. bytes a browser transfers for the first page load: the sign-in page and every stylesheet,
#      script and icon it names, gzip-compressed as a browser asks for them (headers included).
# Seeding (not timed): CUSTOMERS customers register through the JSON API and place ORDERS orders
# between them; the admin approves every third and rejects every fifth, so the cards and chart
# have something to compute.
#
# Usage (from the repository root):   bench/web.sh
#   DURATION=10s   wrk duration of each run
#   ORDERS=1000    orders in the shop
#   CUSTOMERS=10   customers placing them
#   PORT, PG, SQLITE, PG_ADMIN_URL, BUILD   as in bench/lib.sh
#
# Everything talks to 127.0.0.1 only; the script removes its scratch data, database and cookie
# files at exit.
set -euo pipefail

DURATION=${DURATION:-10s}
ORDERS=${ORDERS:-1000}
CUSTOMERS=${CUSTOMERS:-10}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init
print_machine
build_binary

# p95 is the number this benchmark is judged by; wrk's own summary has no p95.
cat >"$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d p50_us=%d p95_us=%d p99_us=%d max_us=%d non2xx=%d connect=%d read=%d timeout=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
        latency:percentile(99), latency.max, e.status, e.connect, e.read, e.timeout))
end
LUA

# web_session USERNAME: signs in through the sign-in page (CSRF token and all) and prints the
# session cookie's value.
web_session() {
    local jar="$WORK/jar.$1" csrf code
    rm -f "$jar"
    csrf=$(curl -s -c "$jar" -b "$jar" "$(base)/login" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -n1)
    code=$(curl -s -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" \
        --data-urlencode "csrf=$csrf" --data-urlencode "username=$1" \
        --data-urlencode "password=$PASSWORD" "$(base)/login")
    if [[ $code != 303 ]]; then
        echo "error: web sign-in of $1 answered $code" >&2
        exit 1
    fi
    awk '$6 == "shopkeep_session" { print $7 }' "$jar"
}

seed() {
    local admin i c tok id n=0
    admin=$(token "$ADMIN_USER")
    : >"$WORK/ids"
    for ((c = 1; c <= CUSTOMERS; c++)); do
        curl -s -o /dev/null -H 'content-type: application/json' \
            -d "{\"username\":\"cust$c\",\"password\":\"$PASSWORD\"}" "$(base)/api/v1/auth/register"
    done
    for ((c = 1; c <= CUSTOMERS; c++)); do
        tok=$(token "cust$c")
        : >"$WORK/orders.cfg"
        for ((i = 0; i < ORDERS / CUSTOMERS; i++)); do
            printf 'url = "%s/api/v1/orders"\nheader = "authorization: Bearer %s"\nheader = "content-type: application/json"\ndata = "{\\"item_name\\":\\"poster %d\\",\\"quantity\\":%d,\\"notes\\":\\"seeded\\"}"\nwrite-out = "%%{http_code}\\n"\noutput = "/dev/null"\nnext\n' \
                "$(base)" "$tok" "$i" $((i % 9 + 1)) >>"$WORK/orders.cfg"
        done
        sed -i '$d' "$WORK/orders.cfg" # a trailing "next" would start an entry without a URL
        curl -s -Z --parallel-max 4 -K "$WORK/orders.cfg" 2>/dev/null >"$WORK/codes"
        if grep -qv '^201$' "$WORK/codes"; then
            echo "error: some seeded orders were refused: $(sort "$WORK/codes" | uniq -c | tr '\n' ' ')" >&2
            exit 1
        fi
    done
    # Decide some: every third approved, every fifth rejected (first pages of the admin list).
    local cursor="" page
    : >"$WORK/decide.cfg"
    for ((page = 0; page < ORDERS / 100; page++)); do
        curl -s -H "authorization: Bearer $admin" "$(base)/api/v1/admin/orders?limit=100${cursor:+&cursor=$cursor}" >"$WORK/page.json"
        for id in $(grep -o '"id":"[^"]*"' "$WORK/page.json" | cut -d'"' -f4); do
            n=$((n + 1))
            if ((n % 3 == 0)); then
                printf 'url = "%s/api/v1/orders/%s/approve"\nrequest = "POST"\nheader = "authorization: Bearer %s"\noutput = "/dev/null"\nnext\n' "$(base)" "$id" "$admin" >>"$WORK/decide.cfg"
            elif ((n % 5 == 0)); then
                printf 'url = "%s/api/v1/orders/%s/reject"\nrequest = "POST"\nheader = "authorization: Bearer %s"\noutput = "/dev/null"\nnext\n' "$(base)" "$id" "$admin" >>"$WORK/decide.cfg"
            fi
        done
        cursor=$(sed -n 's/.*"next_cursor":"\([^"]*\)".*/\1/p' "$WORK/page.json")
        [[ -z $cursor ]] && break
    done
    sed -i '$d' "$WORK/decide.cfg"
    curl -s -Z --parallel-max 4 -K "$WORK/decide.cfg" 2>/dev/null
    echo "  seeded: $CUSTOMERS customers, $ORDERS orders, $(grep -c '^url' "$WORK/decide.cfg") decided"
}

# page_run NAME CONNS PATH COOKIE [HEADER]
page_run() {
    local name=$1 conns=$2 path=$3 cookie=$4 extra=${5:-}
    local -a h=(-H "Cookie: shopkeep_session=$cookie")
    [[ -n $extra ]] && h+=(-H "$extra")
    echo "  -- $name (wrk -t1 -c$conns -d$DURATION GET $path)"
    run_wrk "$WORK/$name" -t1 -c"$conns" -d"$DURATION" -s "$WORK/report.lua" "${h[@]}" "$(base)$path"
    awk -v name="$name" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { printf "  RESULT %s: %.0f req/s, p50 %.2f ms, p95 %.2f ms, p99 %.2f ms\n", name,
              v["requests"] / (v["duration_us"] / 1e6), v["p50_us"] / 1000, v["p95_us"] / 1000, v["p99_us"] / 1000 }' \
        "$WORK/$name.result"
}

first_load_bytes() {
    local total=0 url bytes
    bytes=$(curl -s -o "$WORK/login.html" --compressed -w '%{size_download} %{size_header}' "$(base)/login" | awk '{ print $1 + $2 }')
    total=$bytes
    echo "    /login: $bytes bytes"
    for url in $(grep -o '/assets/[^"]*' "$WORK/login.html" | sort -u); do
        bytes=$(curl -s -o /dev/null --compressed -w '%{size_download} %{size_header}' "$(base)$url" | awk '{ print $1 + $2 }')
        echo "    $url: $bytes bytes"
        total=$((total + bytes))
    done
    echo "  RESULT first page load: $total bytes ($(awk -v t="$total" 'BEGIN { printf "%.1f", t / 1024 }') KiB) transferred, gzip"
}

run_engine() {
    local label=$1 data=$2 url=$3 admin_cookie cust_cookie
    echo "== $label"
    start_server "$data" "$url"
    wait_ready
    seed
    admin_cookie=$(web_session "$ADMIN_USER")
    cust_cookie=$(web_session cust1)
    page_run "$label-dashboard-c1" 1 /dashboard "$admin_cookie"
    page_run "$label-dashboard-c4" 4 /dashboard "$admin_cookie"
    page_run "$label-search-c1" 1 "/dashboard/orders?username=cust" "$admin_cookie" "HX-Request: true"
    page_run "$label-my-orders-c1" 1 /orders "$cust_cookie"
    [[ $label == sqlite ]] && first_load_bytes
    stop_server
    echo
}

if [[ $SQLITE == 1 ]]; then
    mkdir -p "$WORK/sqlite"
    run_engine sqlite "$WORK/sqlite" ""
fi
if pg_available; then
    pg_scratch_db "shopkeep_bench_web_$$"
    mkdir -p "$WORK/pg"
    run_engine postgres "$WORK/pg" "$PG_ADMIN_URL/$PG_DB?sslmode=disable"
fi
