#!/usr/bin/env bash
# Foundation benchmarks for shopkeep: start-up time to /readyz, idle memory, /healthz throughput.
#
# Usage (from the repository root):   bench/foundation.sh
#   DURATION=30s   wrk duration for the /healthz throughput run (e.g. DURATION=5s for a quick run)
#   RUNS=10        start-up repetitions per scenario
#   PORT=18181     port the server listens on (127.0.0.1 only)
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432
#                  PostgreSQL used for the PostgreSQL start-up scenario; a scratch database is
#                  created there and dropped at exit. Set PG=0 to skip that scenario.
#   BUILD=0        skip `cargo build --release -p shopkeep` and measure the binary already in
#                  target/release (e.g. when others are editing the tree and a rebuild is unwanted)
#
# Everything talks to 127.0.0.1 only. Builds the release binary once (cargo is a no-op when it
# is already up to date), starts and stops its own servers, and removes what it created.
set -euo pipefail
export LC_ALL=C # decimal point in $EPOCHREALTIME and printf

DURATION=${DURATION:-30s}
RUNS=${RUNS:-10}
PORT=${PORT:-18181}
PG=${PG:-1}
BUILD=${BUILD:-1}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432}
READY_TIMEOUT_US=30000000 # give up waiting for /readyz after 30 s

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/shopkeep

# The server reads every SHOPKEEP_* variable (unknown ones are errors) and RUST_LOG overrides
# the log level: start from a clean slate so the measurement is of the documented settings.
for v in $(compgen -e); do
    case $v in SHOPKEEP_* | RUST_LOG) unset "$v" ;; esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shopkeep-bench.XXXXXX")
SERVER_PID=""
WRK_PID=""
PG_DB=""

cleanup() {
    local rc=$?
    if [[ -n $WRK_PID ]]; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
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

# One GET over bash's /dev/tcp: no process is started, so polling costs microseconds, not the
# few milliseconds a curl start-up costs. Succeeds only on an HTTP 200.
http_200() {
    local path=$1 line=""
    {
        printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$path" "$PORT" >&9
        IFS= read -r line <&9
    } 2>/dev/null 9<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    [[ $line == "HTTP/1."?" 200 "* ]]
}

# Starts the server in the background: start_server DATA_DIR [DATABASE_URL]. Sets SERVER_PID
# and START_US (the moment just before the fork). The working directory is the scratch area so
# a ./shopkeep.toml in the caller's directory cannot change the configuration.
start_server() {
    local data_dir=$1 db_url=${2:-}
    if http_200 /healthz; then
        echo "error: something already answers on 127.0.0.1:$PORT; set PORT" >&2
        exit 1
    fi
    START_US=$(now_us)
    if [[ -n $db_url ]]; then
        (cd "$WORK" && SHOPKEEP_LISTEN=127.0.0.1:$PORT SHOPKEEP_DATA_DIR=$data_dir \
            SHOPKEEP_DATABASE_URL=$db_url SHOPKEEP_LOG__LEVEL=warn exec "$BIN" serve) \
            >>"$WORK/server.log" 2>&1 &
    else
        (cd "$WORK" && SHOPKEEP_LISTEN=127.0.0.1:$PORT SHOPKEEP_DATA_DIR=$data_dir \
            SHOPKEEP_LOG__LEVEL=warn exec "$BIN" serve) \
            >>"$WORK/server.log" 2>&1 &
    fi
    SERVER_PID=$!
}

# Tight poll (no sleep) of /readyz until 200 with the given prober; sets READY_MS, the elapsed
# milliseconds since START_US. Runs in the main shell: no fork between the start and the poll.
wait_ready() {
    local prober=${1:-http_200} t
    while :; do
        if "$prober" /readyz; then
            t=$(now_us)
            break
        fi
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
    done
    printf -v READY_MS '%d.%03d' $(((t - START_US) / 1000)) $(((t - START_US) % 1000))
}

# The curl-based prober, for comparison: one curl process per attempt.
curl_200() {
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT$1") == 200 ]]
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

# Prints "min / median / max ms" for the numbers on stdin.
summary() {
    sort -n | awk '{ v[NR] = $1 }
        END {
            if (NR == 0) { print "no samples"; exit }
            med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "min %.1f / median %.1f / max %.1f ms  (n=%d)\n", v[1], med, v[NR], NR
        }'
}

# startup_series LABEL PREPARE_FN [DATABASE_URL] [PROBER]: RUNS timed starts, then the summary.
# PREPARE_FN prints the data directory to use for the next run.
startup_series() {
    local label=$1 prepare=$2 db_url=${3:-} prober=${4:-http_200} samples="" dir i
    for ((i = 1; i <= RUNS; i++)); do
        dir=$($prepare)
        start_server "$dir" "$db_url"
        wait_ready "$prober"
        stop_server
        samples+="$READY_MS"$'\n'
    done
    printf '  %-52s %s\n' "$label" "$(printf '%s' "$samples" | summary)"
    printf '    samples (ms): %s\n' "$(printf '%s' "$samples" | tr '\n' ' ')"
}

fresh_dir() {
    local d
    d=$(mktemp -u "$WORK/fresh.XXXXXX") # does not exist yet: the server creates it
    echo "$d"
}
existing_dir() { echo "$WORK/existing"; }
pg_dir() { echo "$WORK/pg-data"; }

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

proc_field() { awk -v k="$2:" '$1 == k { print $2, $3 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime of the process

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

# --- a. start to /readyz --------------------------------------------------------------------------
echo "== Start to first /readyz 200 ($RUNS runs each; process fork to first 200, polled with no sleep)"
echo "   Prober: one HTTP/1.1 GET over bash /dev/tcp per attempt (no process start per attempt)."
echo "   Machine CPU just before: $(machine_busy_now)"
"$BIN" --version >/dev/null # binary into the page cache before anything is timed

startup_series "SQLite, fresh data directory (creates, migrates)" fresh_dir

# Warm-up run creates and migrates the existing directory; it is not counted.
start_server "$(existing_dir)"
wait_ready
stop_server
startup_series "SQLite, existing (migrated) data directory" existing_dir

# The same, polled with curl: shows what a process start per poll adds.
start_server "$(existing_dir)"
wait_ready
hyperfine -N --warmup 20 --runs 200 --export-json "$WORK/curl.json" \
    "curl -s -o /dev/null http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1
stop_server
curl_cost=$(awk -F: '/"mean"/ { gsub(/[ ,]/, "", $2); printf "%.2f", $2 * 1000; exit }' "$WORK/curl.json")
startup_series "SQLite, existing data directory, polled with curl" existing_dir "" curl_200
echo "    (one curl invocation against a ready server: ${curl_cost} ms mean, hyperfine -N, 200 runs)"

if [[ $PG == 1 ]] && pg_isready -q -d "$PG_ADMIN_URL/postgres"; then
    PG_DB="shopkeep_bench_$$"
    createdb --maintenance-db="$PG_ADMIN_URL/postgres" "$PG_DB"
    pg_url="$PG_ADMIN_URL/$PG_DB"
    start_server "$(pg_dir)" "$pg_url" # warm-up: migrates the new database, not counted
    wait_ready
    stop_server
    startup_series "PostgreSQL, existing (migrated) database" pg_dir "$pg_url"
    # Diagnostic: the default sslmode (prefer) negotiates TLS when the server offers it.
    ssl=$(psql -d "$pg_url" -Atc 'show ssl' 2>/dev/null || echo '?')
    startup_series "PostgreSQL, existing database, ?sslmode=disable" pg_dir "$pg_url?sslmode=disable"
    echo "    (server ssl=$ssl; the first PostgreSQL row uses the URL as given, sslmode=prefer by default)"
else
    echo "  PostgreSQL: skipped (PG=$PG or $PG_ADMIN_URL is not accepting connections)"
fi
echo

# --- b. idle RSS ------------------------------------------------------------------------------------
echo "== Idle memory (SQLite, existing data directory, 2 s after the first /readyz 200)"
start_server "$(existing_dir)"
wait_ready
sleep 2
echo "  VmRSS:  $(proc_field "$SERVER_PID" VmRSS)"
echo "  VmHWM:  $(proc_field "$SERVER_PID" VmHWM) (peak)"
echo "  threads: $(proc_field "$SERVER_PID" Threads | cut -d' ' -f1)"
echo

# --- c. /healthz throughput ---------------------------------------------------------------------
echo "== /healthz throughput: wrk -t2 -c64 -d$DURATION --latency (same server, SHOPKEEP_LOG__LEVEL=warn)"
echo "   wrk and the server share the same $(nproc) CPUs."
echo "   Machine CPU just before: $(machine_busy_now)"
hz=$(getconf CLK_TCK)
server_before=$(cpu_ticks "$SERVER_PID")
children_before=$(children_ticks)
machine_before=$(machine_busy_ticks)
wall_before=$(now_us)
# In the background and waited for, so that an interrupt stops it at once (cleanup kills it).
wrk -t2 -c64 -d"$DURATION" --latency "http://127.0.0.1:$PORT/healthz" &
WRK_PID=$!
wait "$WRK_PID"
WRK_PID=""
wall_after=$(now_us)
machine_after=$(machine_busy_ticks)
children_after=$(children_ticks)
server_after=$(cpu_ticks "$SERVER_PID")
awk -v s=$((server_after - server_before)) -v c=$((children_after - children_before)) \
    -v m=$((machine_after - machine_before)) -v hz="$hz" -v w=$((wall_after - wall_before)) \
    'BEGIN {
        w /= 1e6
        printf "  CPU during the run (cores busy on average over %.1f s):\n", w
        printf "    server %.2f | wrk %.2f | everything else (other processes, softirq) %.2f | machine total %.2f of %d\n",
            s / hz / w, c / hz / w, (m - s - c) / hz / w, m / hz / w, '"$(nproc)"'
    }'
echo "  server VmRSS after load: $(proc_field "$SERVER_PID" VmRSS); peak VmHWM: $(proc_field "$SERVER_PID" VmHWM)"
stop_server
echo
if grep -q . "$WORK/server.log"; then
    echo "== Server log (warn and above)"
    sed 's/^/  /' "$WORK/server.log" | tail -n 20
fi
echo "done."
