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
#   PORT=18181          port the server listens on (127.0.0.1 only)
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432
#                       PostgreSQL for the PostgreSQL rows; a scratch database is created there and
#                       dropped at exit. Set PG=0 to skip PostgreSQL, SQLITE=0 to skip SQLite.
#   BUILD=0             skip `cargo build --release -p shopkeep` and measure the binary already in
#                       target/release (e.g. when others are editing the tree)
#
# The server runs with SHOPKEEP_AUTH__BCRYPT_COST=4 so that registering and logging in CUSTOMERS
# customers takes seconds, not minutes. It changes only the cost of password hashing (registration
# and login), which no measured request does. The admin (root, platform admin, owner of the
# default shop, scope orders:admin) is created at start from ADMIN_USERNAME/ADMIN_PASSWORD.
#
# The PostgreSQL URL carries ?sslmode=disable, as in bench/auth.sh: with the default sslmode=prefer
# every new pooled connection negotiates TLS, and seeding aws-lc's RNG makes that cost 100-150 ms
# of CPU (see BENCHMARKS.md, "PostgreSQL misses because of TLS set-up"). The pool opens its
# connections lazily, under load, so that cost would land inside the measured runs.
#
# Everything talks to 127.0.0.1 only. The script starts and stops its own servers and removes the
# scratch data directories, the scratch database and the wrk scripts (which hold tokens) at exit.
set -euo pipefail
export LC_ALL=C # decimal point in $EPOCHREALTIME and printf

DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
CUSTOMERS=${CUSTOMERS:-200}
TARGET_ORDERS=${TARGET_ORDERS:-100000}
SEARCH=${SEARCH:-ER19}
EXPORT_RUNS=${EXPORT_RUNS:-2}
SYNC_DIAG=${SYNC_DIAG:-1}
PORT=${PORT:-18181}
PG=${PG:-1}
SQLITE=${SQLITE:-1}
BUILD=${BUILD:-1}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432}
READY_TIMEOUT_US=30000000 # give up waiting for /readyz after 30 s

# One password for the admin and every customer: URL-unreserved characters only (it goes into the
# form body as it is), and it passes the server's password policy.
PASSWORD=plum-Orchard-47-lantern
ADMIN_USER=root

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/shopkeep

# The server reads every SHOPKEEP_* variable (unknown ones are errors) and RUST_LOG overrides the
# log level: start from a clean slate so the measurement is of the documented settings.
for v in $(compgen -e); do
    case $v in SHOPKEEP_* | RUST_LOG | ADMIN_USERNAME | ADMIN_PASSWORD) unset "$v" ;; esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shopkeep-bench.XXXXXX")
SERVER_PID=""
WRK_PID=""
SAMPLER_PID=""
PG_DB=""

cleanup() {
    local rc=$?
    if [[ -n $WRK_PID ]]; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
    fi
    if [[ -n $SAMPLER_PID ]]; then
        kill -TERM "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
    fi
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n $PG_DB ]]; then
        dropdb --if-exists --maintenance-db="$PG_ADMIN_URL/postgres" "$PG_DB" 2>/dev/null ||
            echo "warning: could not drop database $PG_DB" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_us() { echo "${EPOCHREALTIME/./}"; } # microseconds; bash 5 builtin, no fork

# One GET over bash's /dev/tcp (no process start per poll). Succeeds only on an HTTP 200.
http_200() {
    local path=$1 line=""
    {
        printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$path" "$PORT" >&9
        IFS= read -r line <&9
    } 2>/dev/null 9<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    [[ $line == "HTTP/1."?" 200 "* ]]
}

# Starts the server in the background: start_server DATA_DIR DATABASE_URL [NAME=VALUE...]; an
# empty DATABASE_URL means SQLite in DATA_DIR. Extra NAME=VALUE pairs go into the server's
# environment. Sets SERVER_PID. The working directory is the scratch area so a ./shopkeep.toml
# cannot change the settings.
start_server() {
    local data_dir=$1 db_url=$2
    shift 2
    local -a env=(SHOPKEEP_LISTEN="127.0.0.1:$PORT" SHOPKEEP_DATA_DIR="$data_dir"
        SHOPKEEP_LOG__LEVEL=warn SHOPKEEP_AUTH__BCRYPT_COST=4
        ADMIN_USERNAME="$ADMIN_USER" ADMIN_PASSWORD="$PASSWORD" "$@")
    [[ -n $db_url ]] && env+=(SHOPKEEP_DATABASE_URL="$db_url")
    if http_200 /healthz; then
        echo "error: something already answers on 127.0.0.1:$PORT; set PORT" >&2
        exit 1
    fi
    START_US=$(now_us)
    (cd "$WORK" && exec env "${env[@]}" "$BIN" serve) >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
}

# Polls /readyz over /dev/tcp until 200 (1 ms apart: start time is not what is measured here).
wait_ready() {
    until http_200 /readyz; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "error: the server exited before /readyz answered 200; its log:" >&2
            tail -n 20 "$WORK/server.log" >&2
            exit 1
        fi
        if (($(now_us) - START_US > READY_TIMEOUT_US)); then
            echo "error: /readyz did not answer 200 within 30 s; server log:" >&2
            tail -n 20 "$WORK/server.log" >&2
            exit 1
        fi
        sleep 0.001
    done
}

stop_server() {
    kill -TERM "$SERVER_PID"
    local rc=0
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=""
    if ((rc != 0)); then
        echo "warning: the server exited with status $rc on SIGTERM" >&2
    fi
}

# Busy CPU ticks of the whole machine (all processes), from the first line of /proc/stat.
machine_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# CPU ticks of this shell's finished, waited-for children (wrk, once it has exited).
children_ticks() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }
# How busy the machine is right now (all processes, 1 s sample): other work skews every number.
machine_busy_now() {
    local a b
    a=$(machine_busy_ticks)
    sleep 1
    b=$(machine_busy_ticks)
    awk -v d=$((b - a)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f of %d cores busy", d / hz, '"$(nproc)"' }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime of the process

# --- HTTP helpers (curl, outside any timed run) ---------------------------------------------------
base() { echo "http://127.0.0.1:$PORT"; }

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

# --- wrk scripts ----------------------------------------------------------------------------------
# Every run uses a script whose done() prints one machine-readable RESULT line: wrk's own
# latency histogram (microseconds), request count, duration, and error counts. errors.status
# counts responses that are not 2xx/3xx; every run must have none.
wrk_done_lua() {
    cat <<'LUA'
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d mean_us=%.2f stdev_us=%.2f p50_us=%d p90_us=%d p99_us=%d max_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
        summary.requests, summary.duration, latency.mean, latency.stdev,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
        e.status, e.connect, e.read, e.write, e.timeout))
end
LUA
}

# CPU ticks of every thread of process $1: "tid name ticks" lines.
thread_ticks() {
    awk '{ c = $2; gsub(/[()]/, "", c); print $1, c, $14 + $15 }' "/proc/$1/task/"*/stat 2>/dev/null || true
}
# CPU ticks of the whole PostgreSQL server when it runs on this machine: the postmaster, its live
# children (backends, background workers) and, through the postmaster's cutime/cstime, children
# that exited and were reaped (the pool closes a connection whose query was cancelled, which wrk
# causes when it stops mid-request). PG_POSTMASTER is empty (0 ticks) for SQLite, whose engine runs
# inside the server process. Other clients of the same PostgreSQL server are counted too.
PG_POSTMASTER=""
db_ticks() {
    if [[ -z $PG_POSTMASTER ]]; then
        echo 0
        return
    fi
    local c
    {
        cat "/proc/$PG_POSTMASTER/stat"
        for c in $(pgrep -P "$PG_POSTMASTER"); do cat "/proc/$c/stat" 2>/dev/null || true; done
    } | awk 'NR == 1 { s = $14 + $15 + $16 + $17; next } { s += $14 + $15 } END { print s + 0 }'
}
# The postmaster's pid, if the server at PG_ADMIN_URL runs on this machine and its pid file can be
# read; empty otherwise.
find_postmaster() {
    local dir pid
    dir=$(psql -d "$PG_ADMIN_URL/postgres" -Atc 'SHOW data_directory' 2>/dev/null) || return 0
    pid=$(head -n1 "$dir/postmaster.pid" 2>/dev/null) || return 0
    if [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]]; then echo "$pid"; fi
}

# run_wrk OUT_PREFIX WRK_ARGS...: runs wrk in the foreground of this shell (so its CPU time is
# counted in this shell's children), prints its output indented and the CPU split of the run, and
# leaves in OUT_PREFIX.result: "RESULT ... server_cores=S wrk_cores=W db_cores=D other_cores=O
# server_cpu_us_per_req=U".
run_wrk() {
    local out=$1
    shift
    local hz s0 c0 d0 m0 w0 s1 c1 d1 m1 w1 rc=0
    hz=$(getconf CLK_TCK)
    thread_ticks "$SERVER_PID" >"$out.threads0"
    s0=$(cpu_ticks "$SERVER_PID")
    d0=$(db_ticks)
    c0=$(children_ticks)
    m0=$(machine_busy_ticks)
    w0=$(now_us)
    # In the background and waited for, so that an interrupt stops it at once (cleanup kills it).
    wrk "$@" >"$out.txt" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    w1=$(now_us)
    m1=$(machine_busy_ticks)
    c1=$(children_ticks)
    d1=$(db_ticks)
    s1=$(cpu_ticks "$SERVER_PID")
    thread_ticks "$SERVER_PID" >"$out.threads1"
    sed 's/^/    /' "$out.txt"
    if ((rc != 0)) || ! grep -q '^RESULT ' "$out.txt"; then
        echo "error: wrk failed (status $rc)" >&2
        exit 1
    fi
    local split requests
    requests=$(awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "requests") print kv[2] } }' "$out.txt")
    split=$(awk -v s=$((s1 - s0)) -v c=$((c1 - c0)) -v d=$((d1 - d0)) -v m=$((m1 - m0)) -v hz="$hz" \
        -v w=$((w1 - w0)) -v n="$requests" 'BEGIN {
            w /= 1e6
            printf "server_cores=%.2f wrk_cores=%.2f db_cores=%.2f other_cores=%.2f machine_cores=%.2f wall_s=%.1f server_cpu_us_per_req=%.1f",
                s / hz / w, c / hz / w, d / hz / w, (m - s - c - d) / hz / w, m / hz / w, w, (n > 0 ? s / hz * 1e6 / n : 0)
        }')
    echo "$(grep '^RESULT ' "$out.txt") $split" >"$out.result"
    awk -v db="${PG_POSTMASTER:+ | PostgreSQL server (all its processes) %.2f}" \
        '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END {
            printf "    CPU during the run (cores busy on average over %.1f s): server %.2f | wrk %.2f", v["wall_s"], v["server_cores"], v["wrk_cores"]
            if (db != "") printf db, v["db_cores"]
            printf " | everything else %.2f | machine total %.2f of %d\n", v["other_cores"], v["machine_cores"], '"$(nproc)"'
            printf "    server CPU per request: %.1f us\n", v["server_cpu_us_per_req"]
        }' "$out.result"
    # The server's CPU by thread name. A thread that exited during the run is not seen; what it
    # used shows as "exited threads" (the process total minus the threads still alive).
    awk -v hz="$hz" -v w=$((w1 - w0)) -v total=$((s1 - s0)) '
        NR == FNR { a[$1] = $3; next }
        { d = $3 - (($1 in a) ? a[$1] : 0); byname[$2] += d; seen += d }
        END {
            line = ""
            for (k in byname) if (byname[k] > 0) line = line sprintf(" %s %.2f,", k, byname[k] / hz / (w / 1e6))
            if (total - seen > 0) line = line sprintf(" exited threads %.2f,", (total - seen) / hz / (w / 1e6))
            sub(/,$/, "", line)
            print "    server threads (cores):" line
        }' "$out.threads0" "$out.threads1"
    if awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { exit !(v["other_cores"] > 0.15) }' "$out.result"; then
        echo "    WARNING: other processes used $(field "$out.result" other_cores) cores during this run; rerun on a quiet machine"
    fi
    if ! awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { exit !(v["non2xx"] == 0 && v["connect"] == 0 && v["read"] == 0 && v["write"] == 0 && v["timeout"] == 0) }' \
        "$out.result"; then
        echo "    WARNING: this run had non-2xx responses or socket errors (see the RESULT line); its numbers are not valid"
    fi
}

# field FILE KEY: one value from a .result file.
field() { awk -v k="$2" '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$1"; }
rps() { awk -v n="$(field "$1" requests)" -v d="$(field "$1" duration_us)" 'BEGIN { printf "%.2f", n / (d / 1e6) }'; }
ms() { awk -v u="$(field "$1" "$2")" 'BEGIN { printf "%.2f", u / 1000 }'; }

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

# token USERNAME: prints a fresh access token (one password login).
token() {
    local code tok
    code=$(curl -s -o "$WORK/token.json" -w '%{http_code}' \
        --data-urlencode grant_type=password --data-urlencode "username=$1" \
        --data-urlencode "password=$PASSWORD" "$(base)/api/v1/auth/token")
    tok=$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' "$WORK/token.json")
    if [[ $code != 200 || -z $tok ]]; then
        echo "error: the token request for $1 answered $code: $(cat "$WORK/token.json")" >&2
        exit 1
    fi
    echo "$tok"
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
    SAMPLER_PID=$!
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
    kill -TERM "$SAMPLER_PID"
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
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

# --- machine facts --------------------------------------------------------------------------------
echo "== Machine"
echo "  date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "  commit:    $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (working tree has changes)')"
echo "  nproc:     $(nproc)"
echo "  cpu:       $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "  memory:    $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "  kernel:    $(uname -sr)"
echo "  load avg:  $(cut -d' ' -f1-3 /proc/loadavg) (before the run); CPU now: $(machine_busy_now)"
echo "  scratch:   $WORK ($(df -PT "$WORK" | awk 'NR == 2 { print $2 }'))"
echo "  tools:     $(rustc --version 2>/dev/null || echo 'rustc ?'); $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2); $(curl --version | head -n1 | cut -d' ' -f1-2)"
echo "  note:      wrk runs on the same $(nproc) CPUs as the server"
echo

# --- build ------------------------------------------------------------------------------------------
if [[ $BUILD == 1 ]]; then
    echo "== Build: cargo build --release -p shopkeep"
    cargo build --release -p shopkeep
else
    echo "== Build: skipped (BUILD=0); measuring the existing binary, built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M:%S UTC')"
fi
echo "  binary: $BIN ($(du -h "$BIN" | cut -f1)); $("$BIN" --version)"
echo

# --- runs -------------------------------------------------------------------------------------------
if [[ $SQLITE == 1 ]]; then
    bench_engine sqlite "$WORK/sqlite-data"
fi

if [[ $PG == 1 ]] && pg_isready -q -d "$PG_ADMIN_URL/postgres"; then
    PG_DB="shopkeep_bench_orders_$$"
    createdb --maintenance-db="$PG_ADMIN_URL/postgres" "$PG_DB"
    PG_POSTMASTER=$(find_postmaster)
    if [[ -n $PG_POSTMASTER ]]; then
        pg_note="postmaster pid $PG_POSTMASTER on this machine (its CPU is reported)"
    else
        pg_note="not on this machine or its pid file is not readable (its CPU is not reported)"
    fi
    echo "== PostgreSQL: $(psql -d "$PG_ADMIN_URL/postgres" -Atc 'SELECT version()' | cut -d, -f1); $pg_note"
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
            $1, $2, v["rps"], v["p50_ms"], v["p99_ms"], v["non2xx"], v["server_cores"], v["wrk_cores"], v["db_cores"], v["server_cpu_us_per_req"]
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
