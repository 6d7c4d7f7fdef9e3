#!/usr/bin/env bash
# Accounts and tokens benchmarks for shopkeep, on SQLite and on PostgreSQL:
#   1.  authenticated GET /api/v1/me throughput and latency (wrk -t2 -c64);
#   1b. diagnostic: GET /api/v1/auth/verify at 64 connections (token verification, no database);
#   2.  password logins per second at the default bcrypt cost (12) with 64 connections, and the
#       server's CPU use (utime+stime from /proc/PID/stat, as cores);
#   2b. diagnostic: the same login with one connection (one login's service time);
#   3.  the cost of verifying one access token: mean latency of GET /api/v1/auth/verify with a
#       valid token minus that of GET /healthz, one connection each (wrk -t1 -c1), with two
#       cross-checks (the median difference, and /verify with a same-length non-JWT string).
# Every run also prints the CPU split (server, wrk, PostgreSQL, everything else), the server's CPU
# time per request and its CPU by thread name, and warns when other processes took CPU.
#
# Usage (from the repository root):   bench/auth.sh
#   DURATION=30s        wrk duration of the /api/v1/me run
#   LOGIN_DURATION=20s  wrk duration of the login run
#   VERIFY_DURATION=10s wrk duration of each run in 1b, 2b and 3
#   WARMUP=3s           unreported /api/v1/me run before the measured one (opens the pool's
#                       connections; "0" skips it)
#   PORT=18181          port the server listens on (127.0.0.1 only)
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432
#                       PostgreSQL for the PostgreSQL rows; a scratch database is created there and
#                       dropped at exit. Set PG=0 to skip PostgreSQL, SQLITE=0 to skip SQLite.
#   BUILD=0             skip `cargo build --release -p shopkeep` and measure the binary already in
#                       target/release (e.g. when others are editing the tree)
#
# The PostgreSQL URL carries ?sslmode=disable. With the default sslmode=prefer every new pooled
# connection negotiates TLS, and seeding aws-lc's RNG makes that cost 100-150 ms of CPU (see
# BENCHMARKS.md, "PostgreSQL misses because of TLS set-up"). The pool opens its connections
# lazily, under load, so that cost would land inside the measured run. A database on the same
# host is the case measured here.
#
# Everything talks to 127.0.0.1 only. The script starts and stops its own servers, registers one
# user per server (correct passwords only: failed logins are rate limited), and removes the
# scratch data directory, the scratch database and the wrk scripts (which hold a token) at exit.
set -euo pipefail
export LC_ALL=C # decimal point in $EPOCHREALTIME and printf

DURATION=${DURATION:-30s}
LOGIN_DURATION=${LOGIN_DURATION:-20s}
VERIFY_DURATION=${VERIFY_DURATION:-10s}
WARMUP=${WARMUP:-3s}
PORT=${PORT:-18181}
PG=${PG:-1}
SQLITE=${SQLITE:-1}
BUILD=${BUILD:-1}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432}
READY_TIMEOUT_US=30000000 # give up waiting for /readyz after 30 s

# The benchmark account. The password uses only URL-unreserved characters so it can go into the
# form body as it is, and passes the server's password policy.
BENCH_USER=benchuser
BENCH_PASSWORD=Quartz-meadow-93-lantern

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/shopkeep

# The server reads every SHOPKEEP_* variable (unknown ones are errors), RUST_LOG overrides the
# log level, and ADMIN_USERNAME/ADMIN_PASSWORD create an admin at start (one more bcrypt hash):
# start from a clean slate so the measurement is of the documented settings.
for v in $(compgen -e); do
    case $v in SHOPKEEP_* | RUST_LOG | ADMIN_USERNAME | ADMIN_PASSWORD) unset "$v" ;; esac
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

# One GET over bash's /dev/tcp (no process start per poll). Succeeds only on an HTTP 200.
http_200() {
    local path=$1 line=""
    {
        printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$path" "$PORT" >&9
        IFS= read -r line <&9
    } 2>/dev/null 9<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    [[ $line == "HTTP/1."?" 200 "* ]]
}

# Starts the server in the background: start_server DATA_DIR [DATABASE_URL]; sets SERVER_PID.
# The working directory is the scratch area so a ./shopkeep.toml cannot change the settings.
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

register_user() {
    local code
    code=$(curl -s -o "$WORK/register.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "{\"username\": \"$BENCH_USER\", \"password\": \"$BENCH_PASSWORD\"}" \
        "$(base)/api/v1/auth/register")
    if [[ $code != 201 ]]; then
        echo "error: registering $BENCH_USER answered $code: $(cat "$WORK/register.json")" >&2
        exit 1
    fi
}

# Prints a fresh access token for the benchmark user (one password login).
access_token() {
    local code token
    code=$(curl -s -o "$WORK/token.json" -w '%{http_code}' \
        --data-urlencode grant_type=password --data-urlencode "username=$BENCH_USER" \
        --data-urlencode "password=$BENCH_PASSWORD" "$(base)/api/v1/auth/token")
    token=$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' "$WORK/token.json")
    if [[ $code != 200 || -z $token ]]; then
        echo "error: the token request answered $code: $(cat "$WORK/token.json")" >&2
        exit 1
    fi
    echo "$token"
}

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

# bearer_script FILE TOKEN: GET with Authorization: Bearer TOKEN.
bearer_script() {
    {
        printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$2"
        wrk_done_lua
    } >"$1"
}

plain_script() { wrk_done_lua >"$1"; }

login_script() {
    {
        echo 'wrk.method = "POST"'
        printf 'wrk.body = "grant_type=password&username=%s&password=%s"\n' "$BENCH_USER" "$BENCH_PASSWORD"
        echo 'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"'
        wrk_done_lua
    } >"$1"
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

# --- one engine -----------------------------------------------------------------------------------
SUMMARY="$WORK/summary.txt"
: >"$SUMMARY"

bench_engine() {
    local engine=$1 data_dir=$2 db_url=${3:-} token bad out
    echo "== $engine"
    start_server "$data_dir" "$db_url"
    wait_ready
    register_user
    echo "  server pid $SERVER_PID ready; registered $BENCH_USER (customer of the default shop)"

    # 1. GET /api/v1/me
    token=$(access_token)
    expect_get /api/v1/me 200 "\"username\":\"$BENCH_USER\"" "$token"
    bearer_script "$WORK/me.lua" "$token"
    if [[ $WARMUP != 0 ]]; then
        wrk -t2 -c64 -d"$WARMUP" -s "$WORK/me.lua" "$(base)/api/v1/me" >/dev/null 2>&1
    fi
    echo
    echo "  -- 1. GET /api/v1/me with a bearer token: wrk -t2 -c64 -d$DURATION --latency"
    echo "     (one token from a curl login just before; ${WARMUP} unreported warm-up run first)"
    echo "     Machine CPU just before: $(machine_busy_now)"
    out="$WORK/$engine-me"
    run_wrk "$out" -t2 -c64 -d"$DURATION" --latency -s "$WORK/me.lua" "$(base)/api/v1/me"
    printf '%s me rps=%s p50_ms=%s p99_ms=%s %s\n' "$engine" "$(rps "$out.result")" \
        "$(ms "$out.result" p50_us)" "$(ms "$out.result" p99_us)" "$(cut -d' ' -f2- "$out.result")" >>"$SUMMARY"

    # 1b and 3: a fresh token; both run before the login runs, which leave queued work behind.
    token=$(access_token)
    bad=$(printf '%*s' "${#token}" '' | tr ' ' x)
    expect_get /api/v1/auth/verify 200 '"active":true' "$token"
    bearer_script "$WORK/verify.lua" "$token"
    # Diagnostic: the same 64 connections on an endpoint that verifies the token and reads nothing
    # from the database: the ceiling for any endpoint that verifies a token, on this machine.
    echo
    echo "  -- 1b. GET /api/v1/auth/verify with a bearer token (diagnostic: verification without database reads): wrk -t2 -c64 -d$VERIFY_DURATION --latency"
    echo "     Machine CPU just before: $(machine_busy_now)"
    out="$WORK/$engine-verify64"
    run_wrk "$out" -t2 -c64 -d"$VERIFY_DURATION" --latency -s "$WORK/verify.lua" "$(base)/api/v1/auth/verify"
    printf '%s verify64 rps=%s p50_ms=%s p99_ms=%s %s\n' "$engine" "$(rps "$out.result")" \
        "$(ms "$out.result" p50_us)" "$(ms "$out.result" p99_us)" "$(cut -d' ' -f2- "$out.result")" >>"$SUMMARY"
    expect_get /healthz 200 .
    expect_get /api/v1/auth/verify 200 '"active":false' "$bad"
    plain_script "$WORK/plain.lua"
    # 3. Diagnostic control: the same endpoint with a bearer string of the same length that is not
    # a JWT (decode_header fails at once; the answer is 200 {"active":false}).
    bearer_script "$WORK/verify-bad.lua" "$bad"
    echo
    echo "  -- 3. token verification cost: single connection (wrk -t1 -c1 -d$VERIFY_DURATION) mean latencies"
    echo "     Machine CPU just before: $(machine_busy_now)"
    echo "   GET /api/v1/auth/verify, valid token (signature, claims, deny-list; no database):"
    run_wrk "$WORK/$engine-verify" -t1 -c1 -d"$VERIFY_DURATION" --latency -s "$WORK/verify.lua" "$(base)/api/v1/auth/verify"
    echo "   GET /healthz (no token, no database):"
    run_wrk "$WORK/$engine-healthz" -t1 -c1 -d"$VERIFY_DURATION" --latency -s "$WORK/plain.lua" "$(base)/healthz"
    echo "   GET /api/v1/auth/verify, same-length non-JWT bearer string (diagnostic control):"
    run_wrk "$WORK/$engine-verifybad" -t1 -c1 -d"$VERIFY_DURATION" --latency -s "$WORK/verify-bad.lua" "$(base)/api/v1/auth/verify"
    local k line="$engine verify"
    for k in verify healthz verifybad; do
        line+=" ${k}_mean_us=$(field "$WORK/$engine-$k.result" mean_us)"
        line+=" ${k}_p50_us=$(field "$WORK/$engine-$k.result" p50_us)"
        line+=" ${k}_cpu_us=$(field "$WORK/$engine-$k.result" server_cpu_us_per_req)"
    done
    echo "$line" >>"$SUMMARY"
    awk '{ for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END {
            printf "   mean latency (us): verify %.1f, healthz %.1f, verify(non-JWT) %.1f\n", v["verify_mean_us"], v["healthz_mean_us"], v["verifybad_mean_us"]
            printf "   verification cost = mean(verify) - mean(healthz) = %.1f us\n", v["verify_mean_us"] - v["healthz_mean_us"]
            printf "   cross-checks: median difference %d us; mean(verify) - mean(non-JWT) %.1f us; server CPU per request %.1f - %.1f = %.1f us\n",
                v["verify_p50_us"] - v["healthz_p50_us"], v["verify_mean_us"] - v["verifybad_mean_us"],
                v["verify_cpu_us"], v["healthz_cpu_us"], v["verify_cpu_us"] - v["healthz_cpu_us"]
        }' <<<"$line"

    # 2. password logins at the default bcrypt cost. 64 connections against 2 hashing permits:
    # most of a request's latency is waiting for a permit, so wrk's timeout is raised from its
    # 2 s default (a timed-out request would be dropped from the latency histogram).
    login_script "$WORK/login.lua"
    echo
    echo "  -- 2. password logins, bcrypt cost 12 (default): wrk -t2 -c64 -d$LOGIN_DURATION --latency --timeout 60s"
    echo "     POST /api/v1/auth/token grant_type=password for $BENCH_USER (correct password)"
    echo "     Machine CPU just before: $(machine_busy_now)"
    out="$WORK/$engine-login"
    run_wrk "$out" -t2 -c64 -d"$LOGIN_DURATION" --latency --timeout 60s -s "$WORK/login.lua" "$(base)/api/v1/auth/token"
    printf '%s login rps=%s p50_ms=%s p99_ms=%s %s\n' "$engine" "$(rps "$out.result")" \
        "$(ms "$out.result" p50_us)" "$(ms "$out.result" p99_us)" "$(cut -d' ' -f2- "$out.result")" >>"$SUMMARY"
    # wrk has closed its connections, but the server may still be working through queued logins:
    # wait until one login answers within a second again (time_total compared as a string: any
    # value of 1 s or more sorts after "1") before the single-connection run.
    local t0
    t0=$(now_us)
    until [[ $(curl -s -o /dev/null -w '%{time_total}' -d grant_type=password -d "username=$BENCH_USER" \
        -d "password=$BENCH_PASSWORD" "$(base)/api/v1/auth/token") < 1 ]]; do
        (($(now_us) - t0 < 60000000)) || break
    done
    echo
    echo "  -- 2b. the same with one connection (diagnostic: one login's service time, no queueing): wrk -t1 -c1 -d$VERIFY_DURATION"
    echo "     Machine CPU just before: $(machine_busy_now)"
    out="$WORK/$engine-login1"
    run_wrk "$out" -t1 -c1 -d"$VERIFY_DURATION" --latency -s "$WORK/login.lua" "$(base)/api/v1/auth/token"
    printf '%s login1 rps=%s p50_ms=%s mean_ms=%s %s\n' "$engine" "$(rps "$out.result")" \
        "$(ms "$out.result" p50_us)" "$(ms "$out.result" mean_us)" "$(cut -d' ' -f2- "$out.result")" >>"$SUMMARY"
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
    PG_DB="shopkeep_bench_auth_$$"
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
echo "== Summary (goals: /me >= 30,000 req/s and p99 < 10 ms per engine; login >= 7/s using both cores)"
awk '
    { delete v; for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    $2 == "me" {
        printf "  %-8s GET /api/v1/me (c64)     %8.1f req/s  p50 %6.2f ms  p99 %6.2f ms  non-2xx %d | cores: server %.2f, wrk %.2f, postgres %.2f; server CPU %.0f us/req\n",
            $1, v["rps"], v["p50_ms"], v["p99_ms"], v["non2xx"], v["server_cores"], v["wrk_cores"], v["db_cores"], v["server_cpu_us_per_req"]
    }
    $2 == "verify64" {
        printf "  %-8s GET /auth/verify (c64)   %8.1f req/s  p50 %6.2f ms  p99 %6.2f ms  non-2xx %d | cores: server %.2f, wrk %.2f; server CPU %.0f us/req (diagnostic)\n",
            $1, v["rps"], v["p50_ms"], v["p99_ms"], v["non2xx"], v["server_cores"], v["wrk_cores"], v["server_cpu_us_per_req"]
    }
    $2 == "verify" {
        printf "  %-8s verification cost         %6.1f us = mean %.1f (verify) - %.1f (healthz), c1; median diff %d us; vs non-JWT %.1f us; server CPU diff %.1f us\n",
            $1, v["verify_mean_us"] - v["healthz_mean_us"], v["verify_mean_us"], v["healthz_mean_us"],
            v["verify_p50_us"] - v["healthz_p50_us"], v["verify_mean_us"] - v["verifybad_mean_us"], v["verify_cpu_us"] - v["healthz_cpu_us"]
    }
    $2 == "login" {
        printf "  %-8s login, bcrypt 12 (c64)   %8.2f /s     p50 %6.0f ms  p99 %6.0f ms  non-2xx %d | cores: server %.2f, wrk %.2f, postgres %.2f; server CPU %.0f ms/login\n",
            $1, v["rps"], v["p50_ms"], v["p99_ms"], v["non2xx"], v["server_cores"], v["wrk_cores"], v["db_cores"], v["server_cpu_us_per_req"] / 1000
    }
    $2 == "login1" {
        printf "  %-8s login, bcrypt 12 (c1)    %8.2f /s     mean %5.0f ms                     | server CPU %.0f ms/login\n",
            $1, v["rps"], v["mean_ms"], v["server_cpu_us_per_req"] / 1000
    }' "$SUMMARY"
echo
if grep -q . "$WORK/server.log"; then
    echo "== Server log (warn and above)"
    sed 's/^/  /' "$WORK/server.log" | tail -n 20
fi
echo "done."
