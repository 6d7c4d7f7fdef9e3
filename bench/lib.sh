# Shared pieces of the benchmark scripts; sourced, not run. Every script but the oldest two
# (foundation.sh and auth.sh, which still carry their own copies) uses it.
#
# The sourcing script sets `set -euo pipefail` and its own knobs first, then calls bench_init.
# Knobs every script shares (defaults below):
#   PORT=18181      port the server listens on (127.0.0.1 only)
#   PG=1, SQLITE=1  0 skips that engine
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432
#                   PostgreSQL for the PostgreSQL rows; a scratch database is made there
#                   (pg_scratch_db) and dropped at exit
#   BUILD=1         0 skips `cargo build --release -p shopkeep` and measures the binary already in
#                   target/release
#
# What the library does at exit, including after Ctrl-C: stops wrk, the server and every pid in
# BG_PIDS (background helpers the script started), drops the scratch database and removes the
# scratch directory $WORK (which holds tokens and wrk scripts).
#
# The PostgreSQL URLs carry ?sslmode=disable: with the default sslmode=prefer every new pooled
# connection negotiates TLS, and seeding aws-lc's RNG makes that cost 100-150 ms of CPU (see
# BENCHMARKS.md, "PostgreSQL misses because of TLS set-up"). The pool opens connections lazily,
# under load, so that cost would land inside the measured runs.

export LC_ALL=C # decimal point in $EPOCHREALTIME and printf

PORT=${PORT:-18181}
PG=${PG:-1}
SQLITE=${SQLITE:-1}
BUILD=${BUILD:-1}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432}
READY_TIMEOUT_US=${READY_TIMEOUT_US:-30000000} # give up waiting for /readyz after 30 s

# One password for the admin: URL-unreserved characters only (it goes into a form body as it is),
# and it passes the server's password policy.
PASSWORD=plum-Orchard-47-lantern
ADMIN_USER=root

SERVER_PID=""
WRK_PID=""
BG_PIDS=()
PG_DB=""
PG_POSTMASTER=""
START_US=0

# bench_init: repository root as working directory, a clean SHOPKEEP_* environment, the scratch
# directory and the exit trap. Sets ROOT, BIN, WORK.
bench_init() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    ROOT=$PWD
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/shopkeep
    # The server reads every SHOPKEEP_* variable (unknown ones are errors) and RUST_LOG overrides
    # the log level: start from a clean slate so the measurement is of the documented settings.
    local v
    for v in $(compgen -e); do
        case $v in SHOPKEEP_* | RUST_LOG | ADMIN_USERNAME | ADMIN_PASSWORD) unset "$v" ;; esac
    done
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/shopkeep-bench.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local rc=$? p
    if [[ -n $WRK_PID ]]; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
    fi
    for p in "${BG_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
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

# start_server DATA_DIR DATABASE_URL [NAME=VALUE...]: starts the server in the background; an
# empty DATABASE_URL means SQLite in DATA_DIR. NAME=VALUE pairs go into its environment. Sets
# SERVER_PID and START_US (just before the fork). The working directory is the scratch area so a
# ./shopkeep.toml cannot change the settings. The log goes to $WORK/server.log.
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

# Polls /readyz over /dev/tcp until 200 (1 ms apart).
wait_ready() {
    until http_200 /readyz; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "error: the server exited before /readyz answered 200; its log:" >&2
            tail -n 20 "$WORK/server.log" >&2
            exit 1
        fi
        if (($(now_us) - START_US > READY_TIMEOUT_US)); then
            echo "error: /readyz did not answer 200 within $((READY_TIMEOUT_US / 1000000)) s; server log:" >&2
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

# --- CPU accounting -------------------------------------------------------------------------------
# Busy CPU ticks of the whole machine (all processes: user, nice, system, irq, softirq), from the
# first line of /proc/stat. Steal (time the hypervisor ran something else while this machine's
# CPUs had work) is counted apart: it is CPU this machine wanted and did not get.
machine_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
steal_ticks() { awk '/^cpu / { print $9; exit }' /proc/stat; }
# CPU ticks of this shell's finished, waited-for children (wrk, once it has exited).
children_ticks() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }
# How busy the machine is right now (all processes, 1 s sample): other work skews every number.
machine_busy_now() {
    local a b sa sb
    a=$(machine_busy_ticks)
    sa=$(steal_ticks)
    sleep 1
    b=$(machine_busy_ticks)
    sb=$(steal_ticks)
    awk -v d=$((b - a)) -v st=$((sb - sa)) -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
        'BEGIN { printf "%.2f of %d cores busy, %.2f stolen by the hypervisor", d / hz, n, st / hz }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime of the process
# CPU ticks of every thread of process $1: "tid name ticks" lines.
thread_ticks() {
    awk '{ c = $2; gsub(/[()]/, "", c); print $1, c, $14 + $15 }' "/proc/$1/task/"*/stat 2>/dev/null || true
}
# CPU ticks of the whole PostgreSQL server when it runs on this machine: the postmaster, its live
# children and, through the postmaster's cutime/cstime, children that exited and were reaped.
# 0 when PG_POSTMASTER is empty (SQLite runs inside the server process). Other clients of the same
# PostgreSQL server are counted too.
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
    dir=$(psql -X -d "$PG_ADMIN_URL/postgres" -Atc 'SHOW data_directory' 2>/dev/null) || return 0
    pid=$(head -n1 "$dir/postmaster.pid" 2>/dev/null) || return 0
    if [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]]; then echo "$pid"; fi
}

# cpu_mark NAME: remembers the server's, PostgreSQL's, this shell's children's and the machine's
# CPU ticks, the server's per-thread ticks and the wall clock under $WORK/NAME.mark.
cpu_mark() {
    thread_ticks "$SERVER_PID" >"$WORK/$1.threads"
    echo "$(cpu_ticks "$SERVER_PID") $(db_ticks) $(children_ticks) $(machine_busy_ticks) $(now_us) $(steal_ticks)" >"$WORK/$1.mark"
}

# cpu_split FROM TO COUNT: from two cpu_mark's, prints "server_cores=.. db_cores=.. child_cores=..
# other_cores=.. machine_cores=.. steal_cores=.. wall_s=.. server_cpu_us_per=.. db_cpu_us_per=.."
# where _per is per COUNT (requests or jobs).
cpu_split() {
    local s0 d0 c0 m0 w0 t0 s1 d1 c1 m1 w1 t1
    read -r s0 d0 c0 m0 w0 t0 <"$WORK/$1.mark"
    read -r s1 d1 c1 m1 w1 t1 <"$WORK/$2.mark"
    awk -v s=$((s1 - s0)) -v d=$((d1 - d0)) -v c=$((c1 - c0)) -v m=$((m1 - m0)) -v st=$((t1 - t0)) \
        -v hz="$(getconf CLK_TCK)" -v w=$((w1 - w0)) -v n="$3" 'BEGIN {
            w /= 1e6
            o = m - s - c - d
            if (o < 0) o = 0 # process ticks and machine ticks are sampled a moment apart
            printf "server_cores=%.2f db_cores=%.2f child_cores=%.2f other_cores=%.2f machine_cores=%.2f steal_cores=%.2f wall_s=%.2f server_cpu_us_per=%.1f db_cpu_us_per=%.1f",
                s / hz / w, d / hz / w, c / hz / w, o / hz / w, m / hz / w, st / hz / w, w,
                (n > 0 ? s / hz * 1e6 / n : 0), (n > 0 ? d / hz * 1e6 / n : 0)
        }'
}

# thread_split FROM TO: the server's CPU by thread name between two cpu_mark's, in cores. A thread
# that exited in between is not seen; what it used shows as "exited threads".
thread_split() {
    local s0 s1 w0 w1 x
    read -r s0 x x x w0 x <"$WORK/$1.mark"
    read -r s1 x x x w1 x <"$WORK/$2.mark"
    awk -v hz="$(getconf CLK_TCK)" -v w=$((w1 - w0)) -v total=$((s1 - s0)) '
        NR == FNR { a[$1] = $3; next }
        { d = $3 - (($1 in a) ? a[$1] : 0); byname[$2] += d; seen += d }
        END {
            line = ""
            for (k in byname) if (byname[k] > 0) line = line sprintf(" %s %.2f,", k, byname[k] / hz / (w / 1e6))
            if (total - seen > 0) line = line sprintf(" exited threads %.2f,", (total - seen) / hz / (w / 1e6))
            sub(/,$/, "", line)
            print "server threads (cores):" line
        }' "$WORK/$1.threads" "$WORK/$2.threads"
}

# --- wrk ------------------------------------------------------------------------------------------
# A done() that prints one machine-readable RESULT line: wrk's latency histogram (microseconds),
# request count, duration and error counts. errors.status counts responses that are not 2xx/3xx.
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

# field FILE KEY: one value from a "RESULT k=v ..." or "k=v ..." line.
field() { awk -v k="$2" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$1"; }
rps() { awk -v n="$(field "$1" requests)" -v d="$(field "$1" duration_us)" 'BEGIN { printf "%.2f", n / (d / 1e6) }'; }
ms() { awk -v u="$(field "$1" "$2")" 'BEGIN { printf "%.2f", u / 1000 }'; }

# run_wrk OUT_PREFIX WRK_ARGS...: runs wrk in the foreground of this shell (so its CPU time is
# counted in this shell's children), prints its output indented and the CPU split of the run, and
# leaves in OUT_PREFIX.result the RESULT line followed by the cpu_split fields (child_cores is
# wrk's share).
run_wrk() {
    local out=$1 rc=0 requests
    shift
    cpu_mark wrk0
    # In the background and waited for, so that an interrupt stops it at once (cleanup kills it).
    wrk "$@" >"$out.txt" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    cpu_mark wrk1
    sed 's/^/    /' "$out.txt"
    if ((rc != 0)) || ! grep -q '^RESULT ' "$out.txt"; then
        echo "error: wrk failed (status $rc)" >&2
        exit 1
    fi
    requests=$(field <(grep '^RESULT ' "$out.txt") requests)
    echo "$(grep '^RESULT ' "$out.txt") $(cpu_split wrk0 wrk1 "$requests")" >"$out.result"
    print_cpu "$out.result" request
    echo "    $(thread_split wrk0 wrk1)"
    if ! awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { exit !(v["non2xx"] == 0 && v["connect"] == 0 && v["read"] == 0 && v["write"] == 0 && v["timeout"] == 0) }' \
        "$out.result"; then
        echo "    WARNING: this run had non-2xx responses or socket errors (see the RESULT line); its numbers are not valid"
    fi
}

# print_cpu FILE UNIT: the CPU split of a .result file, and a warning when other processes used CPU.
print_cpu() {
    awk -v pg="$PG_POSTMASTER" -v unit="$2" -v ncpu="$(nproc)" \
        '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END {
            printf "    CPU (cores busy on average over %.1f s): server %.2f", v["wall_s"], v["server_cores"]
            if (v["child_cores"] > 0.005) printf " | children of this script (wrk, curl, sqlite3, psql) %.2f", v["child_cores"]
            if (pg != "") printf " | PostgreSQL server (all its processes) %.2f", v["db_cores"]
            printf " | everything else %.2f | machine total %.2f of %d | stolen by the hypervisor %.2f\n", v["other_cores"], v["machine_cores"], ncpu, v["steal_cores"]
            printf "    server CPU per %s: %.1f us", unit, v["server_cpu_us_per"]
            if (pg != "") printf "; PostgreSQL CPU per %s: %.1f us", unit, v["db_cpu_us_per"]
            printf "\n"
            if (v["other_cores"] > 0.15) printf "    WARNING: other processes used %.2f cores during this run; rerun on a quiet machine\n", v["other_cores"]
            if (v["steal_cores"] > 0.15) printf "    WARNING: the hypervisor withheld %.2f cores during this run (steal); the numbers are low by about that share\n", v["steal_cores"]
        }' "$1"
}

# --- HTTP helpers (curl, outside any timed run) ---------------------------------------------------
base() { echo "http://127.0.0.1:$PORT"; }

# token USERNAME: prints a fresh access token (one password login with $PASSWORD).
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

# --- machine, build, PostgreSQL -------------------------------------------------------------------
print_machine() {
    echo "== Machine"
    echo "  date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "  commit:    $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (working tree has changes)')"
    echo "  nproc:     $(nproc)"
    echo "  cpu:       $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "  memory:    $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "  kernel:    $(uname -sr)"
    echo "  load avg:  $(cut -d' ' -f1-3 /proc/loadavg) (before the run); CPU now: $(machine_busy_now)"
    echo "  scratch:   $WORK ($(df -PT "$WORK" | awk 'NR == 2 { print $2 }'))"
    echo "  tools:     $(rustc --version 2>/dev/null || echo 'rustc ?'); $(if command -v wrk >/dev/null; then wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2; else echo 'wrk not installed'; fi); $(curl --version | head -n1 | cut -d' ' -f1-2)"
    echo "  note:      wrk and curl run on the same $(nproc) CPUs as the server"
    echo
}

build_binary() {
    if [[ $BUILD == 1 ]]; then
        echo "== Build: cargo build --release -p shopkeep"
        cargo build --release -p shopkeep
    else
        echo "== Build: skipped (BUILD=0); measuring the existing binary, built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M:%S UTC')"
    fi
    echo "  binary: $BIN ($(du -h "$BIN" | cut -f1)); $("$BIN" --version)"
    echo
}

# pg_available: PG=1 and the server at PG_ADMIN_URL accepts connections.
pg_available() { [[ $PG == 1 ]] && pg_isready -q -d "$PG_ADMIN_URL/postgres"; }

# pg_scratch_db NAME: creates the scratch database NAME (dropped at exit), sets PG_DB and
# PG_POSTMASTER, prints what it found and echoes nothing else. The URL for the server is
# "$PG_ADMIN_URL/$PG_DB?sslmode=disable".
pg_scratch_db() {
    PG_DB=$1
    createdb --maintenance-db="$PG_ADMIN_URL/postgres" "$PG_DB"
    PG_POSTMASTER=$(find_postmaster)
    local note
    if [[ -n $PG_POSTMASTER ]]; then
        note="postmaster pid $PG_POSTMASTER on this machine (its CPU is reported)"
    else
        note="not on this machine or its pid file is not readable (its CPU is not reported)"
    fi
    echo "== PostgreSQL: $(psql -X -d "$PG_ADMIN_URL/postgres" -Atc 'SELECT version()' | cut -d, -f1); $note"
}
