#!/usr/bin/env bash
# Background-job benchmarks for shopkeep, on SQLite and on PostgreSQL, with the built-in
# `shopkeep.noop` job (queue `default`; it does nothing, so what is measured is the queue itself:
# enqueue, claim, completion bookkeeping):
#   1. enqueue, one job per request: wrk -t2 -cCONNS POST /api/v1/jobs {"kind":"shopkeep.noop"}
#      against a server with SHOPKEEP_ROLES=api (no workers), after an unreported warm-up;
#   2. enqueue in batches: BATCH_JOBS / BATCH_SIZE requests POST /api/v1/jobs/batch with BATCH_SIZE
#      jobs each, from one curl process (curl -Z --parallel-max BATCH_CONNS, connections reused),
#      same server: jobs/s = jobs / wall time of the curl run; latency percentiles from curl's
#      time_total per request. A fixed count rather than wrk's fixed duration, so that this run
#      also builds the backlog of run 3 without overshooting it;
#   3. processing: with at least BACKLOG queued jobs (what 1 and 2 left, topped up with batch
#      requests by curl when short), a worker-only server (SHOPKEEP_ROLES=worker,
#      SHOPKEEP_JOBS__QUEUES=default=N, SHOPKEEP_JOBS__CLAIM_BATCH=CLAIM_BATCH) is started, and the
#      script polls the database (sqlite3 or psql, every POLL seconds) until no job is queued or
#      running. Reported: jobs/s over the wall clock (fork of the server to the first poll that
#      sees nothing left) and over the database's own times (min(started_at) to max(finished_at)
#      of the jobs this server ran), the server's and PostgreSQL's CPU per job, the jobs per claim
#      statement and per completion transaction (rows share started_at per claim and finished_at
#      per completion), and any job that needed a second attempt. One run per N in CONCURRENCY;
#      each later run is topped up to BACKLOG again;
#   4. enqueue-to-start latency: one server with every role (the default), wrk -t1 -cC POST
#      /api/v1/jobs for DURATION for each C in LAT_CONNS, then, once the queue is empty, the
#      exact per-job started_at - run_at of every job enqueued during the run, read from the
#      database (p50, p90, p99, max); plus the server's own shopkeep_jobs_wait_seconds histogram
#      from /metrics (the time the handler really started, bucketed). The enqueue rate the
#      latency was measured at is printed with it;
# On PostgreSQL, before each processing and latency phase (no server running), a "claim probe" runs
# the claim's inner SELECT under EXPLAIN ANALYZE (rolled back) and prints its time, the buffers it
# touched and the table's live and dead row counts: claimed and finished jobs leave dead entries at
# the front of the jobs_ready index until VACUUM, and every claim walks past them. When the
# PostgreSQL server has autovacuum off (PG_VACUUM=auto), the script runs VACUUM jobs before each of
# those phases instead, as autovacuum would have between them; within a phase nothing vacuums.
# Every timed phase prints the CPU split (server, PostgreSQL, this script's children: wrk, curl,
# sqlite3 or psql, everything else, and the time the hypervisor withheld: steal), the server's CPU
# per request or job and its CPU by thread name, and warns when other processes or steal took CPU.
#
# Note on started_at: the worker stores the claim's timestamp, taken just before the claim
# statement (and before it waits for the SQLite writer lock), as started_at. The handler starts
# after the claim returns, so started_at - run_at understates the wait (by several milliseconds on
# SQLite under load, where the claim queues for the writer); the /metrics histogram measures up to
# the handler's start.
#
# Usage (from the repository root):   bench/jobs.sh
#   DURATION=15s        wrk duration of the single-enqueue run and of each latency run
#   WARMUP=3s           unreported single-enqueue run before the measured one ("0" skips it)
#   CONNS=64            connections of the single-enqueue run
#   BATCH_CONNS=4       parallel requests (connections) of the batch run and of the top-ups
#   BATCH_SIZE=1000     jobs per batch request (the API takes 1-1000)
#   BATCH_JOBS=BACKLOG  jobs the batch run enqueues (rounded up to whole requests)
#   BACKLOG=200000      queued jobs at least before each processing run
#   CONCURRENCY="64 256 1000"  worker concurrency of the default queue, one processing run each
#   CLAIM_BATCH=500     SHOPKEEP_JOBS__CLAIM_BATCH of the worker server (1-1000)
#   LAT_CONNS=4         connections of the latency run(s); a list ("1 4") runs each
#   LAT_QUEUES=         SHOPKEEP_JOBS__QUEUES of the latency server; empty keeps the server's
#                       default (every queue at jobs.default_concurrency, 10)
#   PG_VACUUM=auto      VACUUM jobs before each processing and latency phase: auto = only when the
#                       PostgreSQL server has autovacuum off; 1 = always; 0 = never
#   POLL=0.1            seconds between the database polls that detect an empty queue (one psql or
#                       sqlite3 client stays open for the whole run, so a poll starts no process)
#   DRAIN_TIMEOUT=900   seconds a processing run may take before the script gives up
#   PROC_SQL=           SQL run on the engine's database before each processing phase (no server
#                       running), for comparisons, e.g. recreating an index an older schema had
#   SERVER_ENV=         extra NAME=VALUE pairs (space-separated) for every server started, e.g.
#                       SERVER_ENV=SHOPKEEP_DATABASE__MAX_CONNECTIONS=32 for a diagnostic
#   PORT, PG, SQLITE, PG_ADMIN_URL, BUILD   as in bench/lib.sh: port (18181), 0 skips PostgreSQL or
#                       SQLite, the PostgreSQL server for the scratch database, 0 skips the build
#
# The servers run with SHOPKEEP_AUTH__BCRYPT_COST=4 (only the admin's one login per server start
# hashes a password) and SHOPKEEP_LOG__LEVEL=warn. The admin (root, platform admin, scope
# platform:admin) is created at start from ADMIN_USERNAME/ADMIN_PASSWORD. One data directory (and
# one scratch PostgreSQL database) per engine is used throughout, so finished jobs stay in the
# `jobs` table as they would in a deployment (kept for jobs.keep_finished, 7 days).
#
# Everything talks to 127.0.0.1 only. The script starts and stops its own servers and removes the
# scratch data directories, the scratch database and the wrk and curl files (which hold tokens) at
# exit.
set -euo pipefail

DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-64}
BATCH_CONNS=${BATCH_CONNS:-4}
BATCH_SIZE=${BATCH_SIZE:-1000}
BACKLOG=${BACKLOG:-200000}
BATCH_JOBS=${BATCH_JOBS:-$BACKLOG}
CONCURRENCY=${CONCURRENCY:-64 256 1000}
CLAIM_BATCH=${CLAIM_BATCH:-500}
LAT_CONNS=${LAT_CONNS:-4}
LAT_QUEUES=${LAT_QUEUES:-}
POLL=${POLL:-0.1}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-900}
PG_VACUUM=${PG_VACUUM:-auto}
SERVER_ENV=${SERVER_ENV:-}
PROC_SQL=${PROC_SQL:-}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init

read -r -a EXTRA_ENV <<<"$SERVER_ENV"
SUMMARY="$WORK/summary.txt"
: >"$SUMMARY"
NOOP_BODY='{"kind":"shopkeep.noop"}'
BATCH_REQUESTS=$(((BATCH_JOBS + BATCH_SIZE - 1) / BATCH_SIZE))

# --- the engine under test ------------------------------------------------------------------------
ENGINE=""   # sqlite | postgres
DATA_DIR="" # the server's data directory (the SQLite database is DATA_DIR/shopkeep.db)
DB_URL=""   # empty for SQLite

# One psql or sqlite3 client for the whole engine run, fed through two FIFOs (fds 7 and 8), so
# that polling every POLL seconds does not start a process and, on PostgreSQL, a backend each time.
DB_CLIENT_PID=""
db_open() {
    rm -f "$WORK/db.in" "$WORK/db.out"
    mkfifo "$WORK/db.in" "$WORK/db.out"
    if [[ -n $DB_URL ]]; then
        psql -X -qAt -d "$DB_URL" <"$WORK/db.in" >"$WORK/db.out" 2>&1 &
    else
        sqlite3 -batch -noheader -cmd '.timeout 10000' "$DATA_DIR/shopkeep.db" <"$WORK/db.in" >"$WORK/db.out" 2>&1 &
    fi
    DB_CLIENT_PID=$!
    BG_PIDS+=("$DB_CLIENT_PID")
    exec 7>"$WORK/db.in" 8<"$WORK/db.out"
}
db_close() {
    exec 7>&- 8<&-
    wait "$DB_CLIENT_PID" 2>/dev/null || true
    DB_CLIENT_PID=""
}
# sql QUERY: runs QUERY on the engine's database; unaligned rows, columns separated by "|".
sql() {
    local line out="" marker
    [[ -n $DB_URL ]] && marker='\echo __END__' || marker='.print __END__'
    printf '%s;\n%s\n' "$1" "$marker" >&7
    while IFS= read -r line <&8; do
        if [[ $line == __END__ ]]; then
            if [[ $out == *ERROR:* || $out == *"Error:"* || $out == *"Parse error"* ]]; then
                echo "error: the query failed: $1: $out" >&2
                exit 1
            fi
            [[ -n $out ]] && printf '%s\n' "$out"
            return 0
        fi
        out+=${out:+$'\n'}$line
    done
    echo "error: the database client exited (query: $1)" >&2
    exit 1
}
queued_count() { sql "SELECT count(*) FROM jobs WHERE state = 'queued'"; }
# open_jobs: 1 while any job is queued or running, else 0.
open_jobs() {
    sql "SELECT CASE WHEN EXISTS (SELECT 1 FROM jobs WHERE state = 'queued') OR EXISTS (SELECT 1 FROM jobs WHERE state = 'running') THEN 1 ELSE 0 END"
}

server() { start_server "$DATA_DIR" "$DB_URL" "${EXTRA_ENV[@]}" "$@"; }

# post_check PATH BODY_FILE: one curl POST that must answer 201 (so no run measures errors).
post_check() {
    local code
    code=$(curl -s -o "$WORK/check.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' --data-binary "@$2" "$(base)$1")
    if [[ $code != 201 ]]; then
        echo "error: POST $1 answered $code: $(head -c 300 "$WORK/check.json")" >&2
        exit 1
    fi
}

# write_scripts: the request bodies and wrk scripts for the current TOKEN.
write_scripts() {
    printf '%s' "$NOOP_BODY" >"$WORK/single.json"
    {
        printf '{"jobs":['
        local i
        for ((i = 1; i <= BATCH_SIZE; i++)); do
            ((i > 1)) && printf ','
            printf '%s' "$NOOP_BODY"
        done
        printf ']}'
    } >"$WORK/batch.json"
    {
        echo 'wrk.method = "POST"'
        echo 'wrk.headers["Content-Type"] = "application/json"'
        printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$TOKEN"
        printf 'wrk.body = %s\n' "'$NOOP_BODY'"
        wrk_done_lua
    } >"$WORK/single.lua"
}

# batch_config N: a curl config (-K) with N batch POSTs; each prints "code time_total".
batch_config() {
    local i
    for ((i = 1; i <= $1; i++)); do
        ((i > 1)) && echo next
        echo "url = \"$(base)/api/v1/jobs/batch\""
        echo "data-binary = \"@$WORK/batch.json\""
        echo "header = \"Authorization: Bearer $TOKEN\""
        echo 'header = "Content-Type: application/json"'
        echo 'output = "/dev/null"'
        echo 'silent'
        echo 'write-out = "%{http_code} %{time_total}\n"'
    done
}

# post_batches N OUT: N batch requests, BATCH_CONNS at a time, from one curl process; one
# "code seconds" line per request in OUT. Fails unless every request answered 201.
post_batches() {
    batch_config "$1" >"$WORK/batch.curl"
    curl -s -Z --parallel-max "$BATCH_CONNS" --parallel-immediate -K "$WORK/batch.curl" >"$2" 2>"$WORK/curl.err" || true
    if [[ $(grep -c '^201 ' "$2") != "$1" ]]; then
        echo "error: not every batch request answered 201: $(cut -d' ' -f1 "$2" | sort | uniq -c | tr '\n' ' ') $(head -c 300 "$WORK/curl.err")" >&2
        exit 1
    fi
}

# login: a fresh admin token for the running server, and the scripts that carry it.
login() {
    TOKEN=$(token "$ADMIN_USER")
    write_scripts
}

# top_up TARGET: posts batches with curl (BATCH_CONNS in parallel) until at least TARGET jobs are
# queued. Needs a running server without workers.
top_up() {
    local target=$1 have need
    have=$(queued_count)
    ((have >= target)) && return 0
    need=$(((target - have + BATCH_SIZE - 1) / BATCH_SIZE))
    echo "     topping up: $have queued, posting $need batches of $BATCH_SIZE (curl, $BATCH_CONNS in parallel)"
    post_batches "$need" "$WORK/topup.out"
}

# wait_drained TIMEOUT_S: polls until no job is queued or running; prints the wall time (us) when
# it first saw that. Fails when the server exits or TIMEOUT_S passes.
wait_drained() {
    local deadline=$(($(now_us) + $1 * 1000000))
    while [[ $(open_jobs) != 0 ]]; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "error: the server exited while jobs were left; its log:" >&2
            tail -n 20 "$WORK/server.log" >&2
            exit 1
        fi
        if (($(now_us) > deadline)); then
            echo "error: jobs were still queued or running after $1 s: $(sql "SELECT state, count(*) FROM jobs GROUP BY state" | tr '\n' ' ')" >&2
            exit 1
        fi
        sleep "$POLL"
    done
    now_us
}

# metric_wait QUEUE: "le=count ..." of shopkeep_jobs_wait_seconds for QUEUE from /metrics, plus
# count=N; empty when the endpoint or the metric is missing.
metric_wait() {
    curl -s -H "Authorization: Bearer $TOKEN" "$(base)/metrics" 2>/dev/null | awk -v q="queue=\"$1\"" '
        index($0, "shopkeep_jobs_wait_seconds_bucket{") == 1 && index($0, q) {
            match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); printf "%s=%s ", le, $NF }
        index($0, "shopkeep_jobs_wait_seconds_count{") == 1 && index($0, q) { printf "count=%s ", $NF }'
}

record() { echo "$ENGINE $*" >>"$SUMMARY"; }

# claim_probe LABEL: PostgreSQL only, with no server running: the claim's inner SELECT (the first 64
# due jobs of `default`, FOR UPDATE SKIP LOCKED) under EXPLAIN ANALYZE in a transaction that is
# rolled back. Prints its time and the buffers it touched, which grow with the dead entries that
# claimed and finished jobs leave at the front of the jobs_ready index until VACUUM removes them,
# and the table's live and dead row counts.
claim_probe() {
    [[ -n $DB_URL ]] || return 0
    local plan stats t0
    if [[ $PG_VACUUM == 1 || ($PG_VACUUM == auto && $(sql "SHOW autovacuum") == off) ]]; then
        t0=$(now_us)
        sql "VACUUM jobs" >/dev/null
        echo "     VACUUM jobs ($(awk -v d=$(($(now_us) - t0)) 'BEGIN { printf "%.1f s", d / 1e6 }'); PG_VACUUM=$PG_VACUUM, autovacuum is $(sql "SHOW autovacuum"))"
    fi
    plan=$(sql "BEGIN; EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id FROM jobs WHERE state = 'queued' AND queue = 'default' AND run_at <= $(now_us) ORDER BY priority, run_at, id LIMIT 64 FOR UPDATE SKIP LOCKED; ROLLBACK")
    stats=$(sql "SELECT 'live=' || n_live_tup || ' dead=' || n_dead_tup || ' autovacuums=' || autovacuum_count || ' vacuums=' || vacuum_count FROM pg_stat_user_tables WHERE relname = 'jobs'")
    echo "     claim probe ($1): $(awk '/Buffers: shared/ && !b { sub(/^ */, ""); b = $0 } /Execution Time/ { sub(/^ */, ""); t = $0 } END { print t "; " b }' <<<"$plan"); jobs table: $stats"
    record "probe_$1 $(awk '/Execution Time/ { print "ms=" $3 }' <<<"$plan") $(awk '/Buffers: shared/ { split($0, a, "hit="); split(a[2], b, " "); print "buffers=" b[1]; exit }' <<<"$plan") $stats"
}

# --- 1 and 2: enqueue rates -------------------------------------------------------------------------
enqueue_runs() {
    local out before after n
    server SHOPKEEP_ROLES=api
    wait_ready
    db_open # the server has created (SQLite) or migrated the database by now
    login
    post_check /api/v1/jobs "$WORK/single.json"
    post_check /api/v1/jobs/batch "$WORK/batch.json"
    grep -q '"items":\[' "$WORK/check.json" || { echo "error: the batch answer has no items" >&2; exit 1; }
    echo "  server pid $SERVER_PID (SHOPKEEP_ROLES=api: HTTP, no workers) ready; one single and one batch enqueue checked (201)"

    if [[ $WARMUP != 0 ]]; then
        wrk -t2 -c"$CONNS" -d"$WARMUP" -s "$WORK/single.lua" "$(base)/api/v1/jobs" >/dev/null 2>&1
    fi
    before=$(queued_count)
    echo
    echo "  -- 1. enqueue one job per request: wrk -t2 -c$CONNS -d$DURATION --latency, POST /api/v1/jobs $NOOP_BODY"
    echo "     ($WARMUP unreported warm-up first; $before jobs queued before the run)"
    echo "     Machine CPU just before: $(machine_busy_now)"
    out="$WORK/$ENGINE-single"
    run_wrk "$out" -t2 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/single.lua" "$(base)/api/v1/jobs"
    after=$(queued_count)
    n=$(field "$out.result" requests)
    echo "     jobs queued after: $after (+$((after - before)); wrk counted $n responses; requests cut off when wrk stops may also have committed)"
    record "single rps=$(rps "$out.result") p50_ms=$(ms "$out.result" p50_us) p99_ms=$(ms "$out.result" p99_us) $(cut -d' ' -f2- "$out.result") added=$((after - before))"

    before=$after
    echo
    echo "  -- 2. enqueue in batches of $BATCH_SIZE: $BATCH_REQUESTS requests POST /api/v1/jobs/batch ($((BATCH_REQUESTS * BATCH_SIZE)) jobs),"
    echo "     curl -Z --parallel-max $BATCH_CONNS (one process, $BATCH_CONNS connections)"
    echo "     Machine CPU just before: $(machine_busy_now)"
    out="$WORK/$ENGINE-batch"
    local t0 t1
    cpu_mark b0
    t0=$(now_us)
    post_batches "$BATCH_REQUESTS" "$out.txt"
    t1=$(now_us)
    cpu_mark b1
    n=$BATCH_REQUESTS
    echo "$(awk -v n="$n" -v d=$((t1 - t0)) '{ print $2 * 1e6 }' "$out.txt" | sort -n | awk -v n="$n" -v d=$((t1 - t0)) '
        { v[NR] = $1; s += $1 }
        END { printf "RESULT requests=%d duration_us=%d mean_us=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d non2xx=0 connect=0 read=0 write=0 timeout=0",
            n, d, s / NR, v[int(NR * 0.5 + 0.999999)], v[int(NR * 0.9 + 0.999999)], v[int(NR * 0.99 + 0.999999)], v[NR] }') $(cpu_split b0 b1 "$n")" >"$out.result"
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { printf "    %d requests in %.2f s: %.1f requests/s; latency (curl time_total) mean %.1f ms, p50 %.1f, p90 %.1f, p99 %.1f, max %.1f ms\n",
            v["requests"], v["duration_us"] / 1e6, v["requests"] / (v["duration_us"] / 1e6), v["mean_us"] / 1e3, v["p50_us"] / 1e3, v["p90_us"] / 1e3, v["p99_us"] / 1e3, v["max_us"] / 1e3 }' "$out.result"
    print_cpu "$out.result" request
    echo "    $(thread_split b0 b1)"
    after=$(queued_count)
    awk -v n="$n" -v d="$(field "$out.result" duration_us)" -v b="$BATCH_SIZE" -v s="$(field "$out.result" server_cpu_us_per)" \
        -v db="$(field "$out.result" db_cpu_us_per)" -v pg="$PG_POSTMASTER" 'BEGIN {
            printf "     => %.0f jobs/s (%d requests x %d jobs in %.2f s); server CPU %.2f us per job", n * b / (d / 1e6), n, b, d / 1e6, s / b
            if (pg != "") printf ", PostgreSQL %.2f us per job", db / b
            printf "\n" }'
    echo "     jobs queued after: $after (+$((after - before)))"
    record "batch jobs_per_s=$(awk -v n="$n" -v d="$(field "$out.result" duration_us)" -v b="$BATCH_SIZE" 'BEGIN { printf "%.0f", n * b / (d / 1e6) }') p50_ms=$(ms "$out.result" p50_us) p99_ms=$(ms "$out.result" p99_us) $(cut -d' ' -f2- "$out.result") added=$((after - before))"

    # Diagnostic: the operator's queue list with a large backlog (one request, curl's time).
    local t
    t=$(curl -s -o "$WORK/queues.json" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" "$(base)/api/v1/jobs/queues")
    echo
    echo "  -- GET /api/v1/jobs/queues with $after queued jobs: $(awk -v t="$t" 'BEGIN { printf "%.1f ms", t * 1000 }'): $(head -c 300 "$WORK/queues.json")"
    stop_server
}

# --- 3: processing rate -----------------------------------------------------------------------------
processing_run() {
    local n=$1 queued t0 t1 stats jobs minstart maxfin claims completes retried states per_s
    queued=$(queued_count)
    if ((queued < BACKLOG)); then
        server SHOPKEEP_ROLES=api
        wait_ready
        login
        top_up "$BACKLOG"
        stop_server
        queued=$(queued_count)
    fi
    if [[ -n $PROC_SQL ]]; then
        echo "  -- PROC_SQL: $PROC_SQL"
        sql "$PROC_SQL" >/dev/null
    fi
    echo
    claim_probe "before-proc$n"
    echo "  -- 3. processing $queued queued noop jobs: SHOPKEEP_ROLES=worker SHOPKEEP_JOBS__QUEUES=default=$n SHOPKEEP_JOBS__CLAIM_BATCH=$CLAIM_BATCH"
    echo "     ($(sql "SELECT count(*) FROM jobs") rows in the jobs table; the database is polled every $POLL s until nothing is queued or running)"
    echo "     Machine CPU just before: $(machine_busy_now)"
    server SHOPKEEP_ROLES=worker SHOPKEEP_JOBS__QUEUES="default=$n" SHOPKEEP_JOBS__CLAIM_BATCH="$CLAIM_BATCH"
    t0=$START_US
    cpu_mark p0
    t1=$(wait_drained "$DRAIN_TIMEOUT")
    cpu_mark p1
    stop_server
    stats=$(sql "SELECT count(*), min(started_at), max(finished_at), count(DISTINCT started_at), count(DISTINCT finished_at),
        sum(CASE WHEN attempt > 1 THEN 1 ELSE 0 END) FROM jobs WHERE started_at >= $t0")
    IFS='|' read -r jobs minstart maxfin claims completes retried <<<"$stats"
    states=$(sql "SELECT state || '=' || count(*) FROM jobs WHERE started_at >= $t0 GROUP BY state ORDER BY state" | tr '\n' ' ')
    echo "$(cpu_split p0 p1 "$jobs")" >"$WORK/$ENGINE-proc$n.result"
    awk -v q="$queued" -v j="$jobs" -v t0="$t0" -v t1="$t1" -v a="$minstart" -v b="$maxfin" -v c="$claims" -v k="$completes" 'BEGIN {
        printf "     => wall clock (server fork to first empty poll): %.2f s, %.0f jobs/s\n", (t1 - t0) / 1e6, q / ((t1 - t0) / 1e6)
        printf "     => database (min started_at to max finished_at of the %d jobs this server ran): %.2f s, %.0f jobs/s\n", j, (b - a) / 1e6, j / ((b - a) / 1e6)
        printf "        first claim %.0f ms after the fork; last completion %.0f ms before the empty poll\n", (a - t0) / 1e3, (t1 - b) / 1e3
        printf "        %d claim statements (%.1f jobs each), %d completion transactions (%.1f jobs each)\n", c, j / c, k, j / k }'
    echo "        states of those jobs: $states; jobs that needed more than one attempt: $retried"
    print_cpu "$WORK/$ENGINE-proc$n.result" job
    echo "    $(thread_split p0 p1)"
    per_s=$(sql "SELECT count(*) FROM jobs WHERE started_at >= $t0 GROUP BY (finished_at - $minstart) / 1000000 ORDER BY (finished_at - $minstart) / 1000000" | tr '\n' ' ')
    echo "        jobs completed per second since the first claim: $per_s"
    record "proc$n queued=$queued jobs=$jobs wall_s=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e6 }') wall_jobs_per_s=$(awk -v q="$queued" -v d=$((t1 - t0)) 'BEGIN { printf "%.0f", q / (d / 1e6) }') db_s=$(awk -v d=$((maxfin - minstart)) 'BEGIN { printf "%.2f", d / 1e6 }') db_jobs_per_s=$(awk -v j="$jobs" -v d=$((maxfin - minstart)) 'BEGIN { printf "%.0f", j / (d / 1e6) }') claims=$claims completes=$completes retried=$retried $(cat "$WORK/$ENGINE-proc$n.result")"
}

# --- 4: enqueue-to-start latency ----------------------------------------------------------------------
latency_run() {
    local c=$1 suffix=$2 out t0 t1 m0 m1 rate lat
    out="$WORK/$ENGINE-lat$c$suffix"
    echo
    echo "  -- 4. enqueue-to-start latency: every role in one server${LAT_QUEUES:+, SHOPKEEP_JOBS__QUEUES=$LAT_QUEUES}; wrk -t1 -c$c -d$DURATION --latency POST /api/v1/jobs"
    echo "     Machine CPU just before: $(machine_busy_now)"
    m0=$(metric_wait default)
    : >"$WORK/hist.p50"
    t0=$(now_us)
    run_wrk "$out" -t1 -c"$c" -d"$DURATION" --latency -s "$WORK/single.lua" "$(base)/api/v1/jobs"
    t1=$(now_us)
    wait_drained 120 >/dev/null
    m1=$(metric_wait default)
    rate=$(rps "$out.result")
    sql "SELECT started_at - run_at FROM jobs WHERE created_at >= $t0 AND created_at <= $t1 AND started_at IS NOT NULL" |
        sort -n >"$WORK/$ENGINE-lat$c.us"
    lat=$(awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "n=0"; exit }
            p = "n=" NR
            split("50 90 99 99.9", ps, " ")
            for (i = 1; i <= 4; i++) { k = int(NR * ps[i] / 100 + 0.999999); if (k < 1) k = 1; p = p sprintf(" p%s_ms=%.3f", ps[i], v[k] / 1000) }
            printf "%s max_ms=%.3f\n", p, v[NR] / 1000 }' "$WORK/$ENGINE-lat$c.us")
    echo "     => enqueued at $rate jobs/s (wrk); started_at - run_at over every job enqueued in the run (from the database): $lat"
    if [[ -n $m1 ]]; then
        echo "        /metrics shopkeep_jobs_wait_seconds{queue=\"default\"} during the run (handler start - due time; jobs at or under each bound):"
        awk -v a="$m0" -v b="$m1" 'BEGIN {
            na = split(a, x, " "); for (i = 1; i <= na; i++) { split(x[i], kv, "="); before[kv[1]] = kv[2] }
            nb = split(b, y, " "); for (i = 1; i <= nb; i++) { split(y[i], kv, "="); after[kv[1]] = kv[2]; order[i] = kv[1] }
            total = after["count"] - before["count"]; line = "        n=" total
            prev_le = 0; prev_n = 0; p50 = ""
            for (i = 1; i <= nb; i++) { k = order[i]; if (k == "count" || k == "+Inf") continue
                n = after[k] - before[k]
                if (p50 == "" && total > 0 && n >= total / 2)
                    p50 = sprintf("%.1f", 1000 * (prev_le + (k - prev_le) * (total / 2 - prev_n) / (n - prev_n > 0 ? n - prev_n : 1)))
                prev_le = k; prev_n = n
                if (k + 0 > 0.1) continue
                line = line sprintf(" <=%gms %.1f%%", k * 1000, total > 0 ? 100 * n / total : 0) }
            print line "; p50 about " p50 " ms (linear within its bucket)"
            printf "hist_p50_ms=%s\n", p50 > "/dev/stderr" }' 2>"$WORK/hist.p50"
    fi
    record "lat$c$suffix enqueue_rps=$rate $lat $(cat "$WORK/hist.p50" 2>/dev/null) wrk_p50_ms=$(ms "$out.result" p50_us) wrk_p99_ms=$(ms "$out.result" p99_us) $(cut -d' ' -f2- "$out.result")"
}

# latency_phase SUFFIX: a server with every role, one latency run per LAT_CONNS value.
latency_phase() {
    local c
    echo
    claim_probe "before-lat$1"
    server ${LAT_QUEUES:+SHOPKEEP_JOBS__QUEUES="$LAT_QUEUES"}
    wait_ready
    login
    echo "  server pid $SERVER_PID (every role) ready"
    for c in $LAT_CONNS; do
        latency_run "$c" "$1"
    done
    stop_server
}

# --- one engine -------------------------------------------------------------------------------------
bench_engine() {
    ENGINE=$1 DATA_DIR=$2 DB_URL=${3:-}
    local n c log0
    log0=$(wc -l <"$WORK/server.log" 2>/dev/null || echo 0)
    echo "== $ENGINE"
    enqueue_runs
    for n in $CONCURRENCY; do
        processing_run "$n"
    done
    latency_phase ""
    echo
    echo "  jobs table at the end: $(sql "SELECT state || '=' || count(*) FROM jobs GROUP BY state ORDER BY state" | tr '\n' ' ')"
    echo "  job_attempts rows (failed attempts): $(sql "SELECT count(*) FROM job_attempts")"
    if [[ -z $DB_URL ]]; then
        echo "  database files: $(du -ch "$DATA_DIR"/shopkeep.db* | tail -n1 | cut -f1)"
    else
        echo "  database size: $(sql "SELECT pg_size_pretty(pg_database_size(current_database()))")"
    fi
    db_close
    local lines
    lines=$(($(wc -l <"$WORK/server.log") - log0))
    if ((lines > 0)); then
        echo "  server log (warn and above): $lines lines for this engine; the most frequent messages:"
        tail -n "$lines" "$WORK/server.log" |
            jq -Rr '(fromjson? // null) as $j | if $j then "\($j.level // "") \($j.target // ""): \($j.fields.message // $j.message // "")" else . end' |
            cut -c1-200 | sort | uniq -c | sort -rn | head -n 5 | sed 's/^/    /'
    fi
    echo
}

# --- run ----------------------------------------------------------------------------------------------
print_machine
build_binary
: >"$WORK/server.log"

if [[ $SQLITE == 1 ]]; then
    bench_engine sqlite "$WORK/sqlite-data"
fi

if pg_available; then
    pg_scratch_db "shopkeep_bench_jobs_$$"
    bench_engine postgres "$WORK/pg-data" "$PG_ADMIN_URL/$PG_DB?sslmode=disable"
else
    echo "== postgres: skipped (PG=$PG or $PG_ADMIN_URL is not accepting connections)"
    echo
fi

# --- summary ------------------------------------------------------------------------------------------
echo "== Summary (goals: >= 20,000 jobs/s processed on each engine; p50 enqueue-to-start < 5 ms)"
awk '
    { delete v; for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    $2 == "single" {
        printf "  %-8s enqueue, 1 job/request     %8.0f req/s   p50 %6.2f ms  p99 %7.2f ms  non-2xx %d | server %.2f cores, %.0f us/job; postgres %.2f cores, %.0f us/job\n",
            $1, v["rps"], v["p50_ms"], v["p99_ms"], v["non2xx"], v["server_cores"], v["server_cpu_us_per"], v["db_cores"], v["db_cpu_us_per"] }
    $2 == "batch" {
        printf "  %-8s enqueue, batches           %8.0f jobs/s  p50 %6.2f ms  p99 %7.2f ms  non-2xx %d | server %.2f cores; postgres %.2f cores (per request of '"$BATCH_SIZE"')\n",
            $1, v["jobs_per_s"], v["p50_ms"], v["p99_ms"], v["non2xx"], v["server_cores"], v["db_cores"] }
    $2 ~ /^proc/ {
        printf "  %-8s process, concurrency %-5s %8.0f jobs/s  (wall %.2f s for %d; database %.0f jobs/s) | server %.2f cores, %.1f us/job; postgres %.2f cores, %.1f us/job; steal %.2f; retried %d\n",
            $1, substr($2, 5), v["wall_jobs_per_s"], v["wall_s"], v["queued"], v["db_jobs_per_s"], v["server_cores"], v["server_cpu_us_per"], v["db_cores"], v["db_cpu_us_per"], v["steal_cores"], v["retried"] }
    $2 ~ /^probe_/ {
        printf "  %-8s claim probe, %-17s %7.2f ms, %s buffers (%s %s)\n", $1, substr($2, 7), v["ms"], v["buffers"], $5, $6 }
    $2 ~ /^lat/ {
        printf "  %-8s latency, %-14s at %6.0f jobs/s: started_at - run_at p50 %.2f ms, p90 %.2f, p99 %.2f, max %.2f (n=%d); handler start (/metrics) p50 about %s ms\n",
            $1, substr($2, 4) " conns", v["enqueue_rps"], v["p50_ms"], v["p90_ms"], v["p99_ms"], v["max_ms"], v["n"], v["hist_p50_ms"] }
' "$SUMMARY"
echo "done."
