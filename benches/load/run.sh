#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup and friends are reached through traps
# benches/load/run.sh: wrk against (a) a fixed nginx upstream, (b) nginx
# proxy_pass in front of it, (c) aigw in front of it; one markdown table out.
# See benches/load/README.md for what is measured and why.
#
# Environment knobs (defaults in brackets):
#   DURATION [10s]      wrk -d for each measured run (same for every target)
#   CONNECTIONS [64]    wrk -c (same for every target)
#   THREADS [2]         wrk -t
#   WARMUP [2s]         unmeasured wrk run before each measured run; 0 to skip
#   AIGW_BIN [target/release/aigw]  relative paths are taken from the repo root
#   AIGW_BUILD [1]      build the default AIGW_BIN with cargo if it is missing; 0 = never
#   PIN [1]             pin with taskset; 0 = let the scheduler place everything
#   PROXY_CPU [0]       CPU for the proxy under test (nginx proxy, aigw)
#   UPSTREAM_CPU [1]    CPU for the upstream nginx
#   LOADGEN_CPU [1]     CPU for wrk
#   UPSTREAM_KEEPALIVE [max(64, CONNECTIONS)]  nginx proxy's idle upstream connections
#   STARTUP_TIMEOUT [20] seconds to wait for a server to come up
#   OUT_DIR [benches/load/out]  where results.md and the logs go
#   KEEP_TMP [0]        1 = keep the generated nginx prefix dir for inspection
#   SYSCALLS [1]        count the proxy's system calls during each measured run (perf stat on the
#                       raw_syscalls:sys_enter tracepoint; skipped when perf cannot); 0 = off
#   FULL [1]            also measure (d): aigw with the full policy chain (a consumer key, a token
#                       limit with prompt estimation, token metrics by three dimensions, the
#                       access log to a file); 0 = skip
#   CACHE [1]           also measure (e) and (f): every request a semantic cache hit, exact (no
#                       embedder call) and semantic (`mode = "semantic"`: each request embeds its
#                       prompt through a mock embedder, `aigw mock` on the upstream's CPU); 0 = skip
#
# stdout carries only the markdown report (also written to $OUT_DIR/results.md);
# progress goes to stderr. Exit status: 0 = all three rows measured, 3 = the
# nginx rows were measured but the aigw row was not, 1 = anything else failed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2s}
AIGW_BIN=${AIGW_BIN:-target/release/aigw}
AIGW_BUILD=${AIGW_BUILD:-1}
PIN=${PIN:-1}
PROXY_CPU=${PROXY_CPU:-0}
UPSTREAM_CPU=${UPSTREAM_CPU:-1}
LOADGEN_CPU=${LOADGEN_CPU:-1}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-20}
OUT_DIR=${OUT_DIR:-$HERE/out}
KEEP_TMP=${KEEP_TMP:-0}
FULL=${FULL:-1}
SYSCALLS=${SYSCALLS:-1}
CACHE=${CACHE:-1}
EMBED_PORT=18084
# The consumer key of row (d), sent by chat.lua when set.
FULL_KEY=bench-consumer-key

UPSTREAM_PORT=18081
PROXY_PORT=18082
AIGW_PORT=18083
AIGW_ADMIN_PORT=18093
CHAT_PATH=/v1/chat/completions
LUA=$HERE/chat.lua
AIGW_CONFIG=$HERE/aigw.toml
REQ_BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
# The fixed answer of the upstream: a realistic non-streaming chat completion.
RESP_BODY='{"id":"chatcmpl-bench0001","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":9,"total_tokens":17},"system_fingerprint":"fp_bench"}'

log() { printf '[load] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- validation
secs_of() { # wrk duration (10, 10s, 2m, 1h) -> whole seconds
    local d=$1
    [[ $d =~ ^([0-9]+)([smh]?)$ ]] || die "bad duration '$d' (use e.g. 10s, 2m)"
    local n=${BASH_REMATCH[1]}
    case ${BASH_REMATCH[2]} in
        m) echo $((n * 60)) ;;
        h) echo $((n * 3600)) ;;
        *) echo "$n" ;;
    esac
}
DURATION_S=$(secs_of "$DURATION")
((DURATION_S > 0)) || die "DURATION must be > 0"
WARMUP_S=$(secs_of "$WARMUP")
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "bad CONNECTIONS '$CONNECTIONS'"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "bad THREADS '$THREADS'"
((CONNECTIONS >= THREADS)) || die "CONNECTIONS ($CONNECTIONS) must be >= THREADS ($THREADS)"
UPSTREAM_KEEPALIVE=${UPSTREAM_KEEPALIVE:-$((CONNECTIONS > 64 ? CONNECTIONS : 64))}
[[ $AIGW_BIN = /* ]] || AIGW_BIN=$ROOT/$AIGW_BIN

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
cd "$ROOT"
# Drop the previous run's files so nothing stale is mistaken for this run's.
rm -f "$OUT_DIR"/results.md "$OUT_DIR"/wrk-*.txt "$OUT_DIR"/preflight-*.* "$OUT_DIR"/nginx-*.log \
    "$OUT_DIR"/*.error.log "$OUT_DIR"/aigw.log "$OUT_DIR"/aigw-build.log "$OUT_DIR"/aigw-threads.txt
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ----------------------------------------------------------- process handling
PIDS=()
TMP=$(mktemp -d /tmp/aigw-load.XXXXXX)
chmod 755 "$TMP" # nginx workers run as nobody when started by root

# shellcheck source=benches/load/common.sh
source "$HERE/common.sh"

# Long foreground steps (wrk, cargo) run in the background and are waited for,
# so that a signal to this script is acted on at once instead of after them.
FG_PID=""
fg_run() {
    "$@" &
    FG_PID=$!
    local rc=0
    wait "$FG_PID" || rc=$?
    FG_PID=""
    return "$rc"
}

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    [[ -n $FG_PID ]] && stop_pid "$FG_PID"
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    for i in "$TMP"/*.error.log; do
        [[ -e $i ]] && cp "$i" "$OUT_DIR/" 2>/dev/null
    done
    if [[ $KEEP_TMP = 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ------------------------------------------------------------------- tooling
find_nginx() { command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true; }
NGINX=$(find_nginx)
if [[ -z $NGINX ]] || ! command -v wrk >/dev/null 2>&1; then
    [[ $(id -u) = 0 ]] || die "nginx and wrk are needed: apt-get install -y nginx wrk (as root)"
    log "installing nginx and wrk with apt-get"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx wrk; } \
        >"$OUT_DIR/apt.log" 2>&1 || die "apt-get failed, see $OUT_DIR/apt.log"
    NGINX=$(find_nginx)
    [[ -n $NGINX ]] || die "nginx still missing after apt-get"
fi
command -v curl >/dev/null 2>&1 || die "curl is needed"

# Pinning: only when taskset exists and every requested CPU is usable.
if [[ $PIN = 1 ]]; then
    if ! command -v taskset >/dev/null 2>&1; then
        log "taskset not found: running unpinned"; PIN=0
    else
        for c in "$PROXY_CPU" "$UPSTREAM_CPU" "$LOADGEN_CPU"; do
            taskset -c "$c" true 2>/dev/null || { log "CPU $c not usable: running unpinned"; PIN=0; break; }
        done
    fi
fi
on_cpu() { # on_cpu CPU cmd... -> exec cmd pinned to CPU (or not, if PIN=0)
    local cpu=$1; shift
    if [[ $PIN = 1 ]]; then exec taskset -c "$cpu" "$@"; else exec "$@"; fi
}
LOADGEN_PFX=()
[[ $PIN = 1 ]] && LOADGEN_PFX=(taskset -c "$LOADGEN_CPU")

for p in $UPSTREAM_PORT $PROXY_PORT $AIGW_PORT $AIGW_ADMIN_PORT; do
    port_busy "$p" && die "127.0.0.1:$p is already in use; stop whatever listens there first"
done

# --------------------------------------------------------------------- aigw
# Build first, so no server sits idle (or competes) during a long compile.
AIGW_OK=1
AIGW_WHY=""
if [[ ! -x $AIGW_BIN ]]; then
    if [[ $AIGW_BIN = "$ROOT/target/release/aigw" && $AIGW_BUILD != 0 ]] && command -v cargo >/dev/null 2>&1; then
        log "building aigw: cargo build --release -p aigw (log: $OUT_DIR/aigw-build.log)"
        if ! fg_run cargo build --release -p aigw >"$OUT_DIR/aigw-build.log" 2>&1; then
            tail -n 15 "$OUT_DIR/aigw-build.log" >&2 || true
            AIGW_OK=0; AIGW_WHY="cargo build --release -p aigw failed (see out/aigw-build.log)"
        fi
    fi
    if [[ $AIGW_OK = 1 && ! -x $AIGW_BIN ]]; then
        AIGW_OK=0; AIGW_WHY="no aigw binary at $AIGW_BIN"
    fi
fi
[[ $AIGW_OK = 1 ]] || log "aigw unavailable: $AIGW_WHY (the nginx rows still run)"

# -------------------------------------------------------------- nginx setup
UPSTREAM_CONF=$(nginx_conf upstream $UPSTREAM_PORT "
        location / {
            default_type application/json;
            return 200 '$RESP_BODY';
        }")

PROXY_CONF=$(nginx_conf proxy $PROXY_PORT "
        location / {
            proxy_pass http://llm_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }" "
    upstream llm_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive $UPSTREAM_KEEPALIVE;
        keepalive_requests 1000000;
        keepalive_timeout 75s;
    }")

NGINX_E=()
"$NGINX" -h 2>&1 | grep -q -- '-e filename' && NGINX_E=(-e "$TMP/startup.error.log")

start_nginx() { # start_nginx NAME CPU CONF
    local name=$1 cpu=$2 conf=$3
    "$NGINX" -t -q -p "$TMP/$name" -c "$conf" "${NGINX_E[@]}" 2>"$OUT_DIR/nginx-$name.stderr.log" \
        || { cat "$OUT_DIR/nginx-$name.stderr.log" >&2; die "nginx config for $name is invalid"; }
    (on_cpu "$cpu" "$NGINX" -p "$TMP/$name" -c "$conf" "${NGINX_E[@]}" -g 'daemon off;') \
        >>"$OUT_DIR/nginx-$name.stderr.log" 2>&1 &
    PIDS+=($!)
}

# wait_http URL PID -> 0 once URL answers 2xx to the benchmark request
wait_post_ok() {
    local url=$1 pid=$2 deadline=$((SECONDS + STARTUP_TIMEOUT)) code
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 1
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
            -H 'content-type: application/json' --data "$REQ_BODY" "$url" || true)
        [[ $code = 2* ]] && return 0
        sleep 0.1
    done
    return 1
}

# preflight NAME URL -> checks status, content type and body of one request
preflight() {
    local name=$1 url=$2 hdr=$OUT_DIR/preflight-$1.headers body=$OUT_DIR/preflight-$1.body code
    code=$(curl -s -D "$hdr" -o "$body" -w '%{http_code}' --max-time 5 \
        -H 'content-type: application/json' ${AIGW_KEY:+-H "api-key: $AIGW_KEY"} --data "$REQ_BODY" "$url" || true)
    if [[ $code != 200 ]]; then
        log "$name preflight: HTTP ${code:-none} (body: $(head -c 300 "$body" 2>/dev/null || true))"
        return 1
    fi
    grep -qi '^content-type: *application/json' "$hdr" || log "$name preflight: WARNING: content-type is not application/json"
    grep -q '"chat.completion"' "$body" || log "$name preflight: WARNING: body is not the upstream's chat completion"
    return 0
}

# ----------------------------------------------------------------- wrk runs
declare -A RPS P50 P99 ERRS NOTE CPU_US SYS_PER
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # cpu_ticks PID -> utime+stime of PID and its direct children (nginx workers), all threads
    local total=0 p
    for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
run_wrk() { # run_wrk KEY URL [PID]: PID's CPU time over the measured run is reported per request
    local key=$1 url=$2 pid=${3:-} out=$OUT_DIR/wrk-$1.txt line t0=0
    local wrk_cmd=(wrk -t"$THREADS" -c"$CONNECTIONS" --timeout 5s -s "$LUA")
    if ((WARMUP_S > 0)); then
        log "$key: warm-up $WARMUP"
        fg_run timeout $((WARMUP_S + 30)) "${LOADGEN_PFX[@]}" "${wrk_cmd[@]}" -d"$WARMUP" "$url" >"$OUT_DIR/wrk-$key.warmup.txt" 2>&1 || true
    fi
    log "$key: wrk -t$THREADS -c$CONNECTIONS -d$DURATION $url"
    [[ -n $pid ]] && t0=$(cpu_ticks "$pid")
    local perf_pid="" perf_out=$OUT_DIR/syscalls-$key.txt
    if [[ -n $pid && $SYSCALLS = 1 ]] && command -v perf >/dev/null 2>&1; then
        # Every thread of the proxy and its direct children (nginx's worker).
        local pids; pids=$(printf '%s\n' "$pid" $(pgrep -P "$pid" 2>/dev/null || true) | paste -sd, -)
        perf stat -x, -e raw_syscalls:sys_enter -o "$perf_out" -p "$pids" >/dev/null 2>&1 &
        perf_pid=$!
        sleep 0.2
    fi
    if ! fg_run timeout $((DURATION_S + 60)) "${LOADGEN_PFX[@]}" "${wrk_cmd[@]}" -d"$DURATION" --latency "$url" >"$out" 2>&1; then
        [[ -n $perf_pid ]] && kill -INT "$perf_pid" 2>/dev/null
        NOTE[$key]="wrk failed (see out/wrk-$key.txt)"; log "$key: ${NOTE[$key]}"; return 1
    fi
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    line=$(grep '^WRK_RESULT' "$out" || true)
    [[ -n $line ]] || { NOTE[$key]="no WRK_RESULT line (see out/wrk-$key.txt)"; log "$key: ${NOTE[$key]}"; return 1; }
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    RPS[$key]=$(field rps); P50[$key]=$(field p50_ms); P99[$key]=$(field p99_ms)
    if [[ -n $pid ]]; then
        # CPU time per request is what the proxy itself costs, whoever the bottleneck of the run is.
        CPU_US[$key]=$(awk -v d="$(($(cpu_ticks "$pid") - t0))" -v hz="$CLK_TCK" -v n="$(field requests)" \
            'BEGIN { if (n > 0) printf "%.1f", d * 1e6 / hz / n; else print "n/a" }')
    fi
    if [[ -n $perf_pid ]]; then
        # The count covers the measured run (plus perf's 0.2 s head start, idle): per request.
        SYS_PER[$key]=$(awk -F, -v n="$(field requests)" '/raw_syscalls:sys_enter/ { c = $1 } END { if (n > 0 && c != "") printf "%.2f", c / n; else print "n/a" }' "$perf_out" 2>/dev/null || echo n/a)
    fi
    local sock=$(($(field err_connect) + $(field err_read) + $(field err_write) + $(field err_timeout)))
    local st; st=$(field err_status)
    ERRS[$key]="$sock / $st"
    log "$key: ${RPS[$key]} req/s, p50 ${P50[$key]} ms, p99 ${P99[$key]} ms, socket errors $sock, HTTP>=400 $st"
    [[ $sock = 0 && $st = 0 ]] || NOTE[$key]="errors during the run, see out/wrk-$key.txt"
    return 0
}

# ---------------------------------------------------------------- (a) + (b)
log "nginx prefix dir: $TMP; pinning: $([[ $PIN = 1 ]] && echo "proxy CPU $PROXY_CPU, upstream CPU $UPSTREAM_CPU, wrk CPU $LOADGEN_CPU" || echo off)"
start_nginx upstream "$UPSTREAM_CPU" "$UPSTREAM_CONF"
UPSTREAM_PID=${PIDS[-1]}
start_nginx proxy "$PROXY_CPU" "$PROXY_CONF"
PROXY_PID=${PIDS[-1]}
wait_post_ok "http://127.0.0.1:$UPSTREAM_PORT$CHAT_PATH" "$UPSTREAM_PID" || die "upstream nginx did not come up (see $OUT_DIR/nginx-upstream.stderr.log)"
wait_post_ok "http://127.0.0.1:$PROXY_PORT$CHAT_PATH" "$PROXY_PID" || die "nginx proxy did not come up (see $OUT_DIR/nginx-proxy.stderr.log)"
preflight upstream "http://127.0.0.1:$UPSTREAM_PORT$CHAT_PATH" || die "upstream preflight failed"
preflight nginx-proxy "http://127.0.0.1:$PROXY_PORT$CHAT_PATH" || die "nginx proxy preflight failed"

run_wrk upstream "http://127.0.0.1:$UPSTREAM_PORT$CHAT_PATH" || die "load on the upstream failed"
sleep 1
run_wrk nginx-proxy "http://127.0.0.1:$PROXY_PORT$CHAT_PATH" "$PROXY_PID" || die "load on the nginx proxy failed"
sleep 1

# ------------------------------------------------------------------------ (c)
AIGW_RSS_IDLE="" AIGW_RSS_AFTER="" AIGW_HWM="" AIGW_THREADS="" AIGW_CONF_USED=""
rss_of() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
kib_to_mib() { [[ -n $1 ]] && awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }' || echo "n/a"; }

start_aigw() { # start_aigw CONFIG -> 0 ready, 1 exited early, 2 timed out (left running)
    local conf=$1 deadline=$((SECONDS + STARTUP_TIMEOUT)) code=""
    log "starting aigw: $AIGW_BIN serve --config $conf (log: $OUT_DIR/aigw.log)"
    printf '==== %s serve --config %s\n' "$AIGW_BIN" "$conf" >>"$OUT_DIR/aigw.log"
    (export RUST_LOG=warn; on_cpu "$PROXY_CPU" "$AIGW_BIN" serve --config "$conf") >>"$OUT_DIR/aigw.log" 2>&1 &
    AIGW_PID=$!
    PIDS+=("$AIGW_PID")
    while ((SECONDS < deadline)); do
        if ! kill -0 "$AIGW_PID" 2>/dev/null; then
            wait "$AIGW_PID" 2>/dev/null && AIGW_RC=0 || AIGW_RC=$?
            return 1
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$AIGW_ADMIN_PORT/healthz" || true)
        if [[ $code = 2* ]] && port_busy "$AIGW_PORT"; then return 0; fi
        sleep 0.1
    done
    if port_busy "$AIGW_PORT"; then
        log "aigw: admin /healthz never answered 2xx (last: ${code:-none}) but $AIGW_PORT accepts; going on"
        return 0
    fi
    return 2
}

if [[ $AIGW_OK = 1 ]]; then
    # Access logs off if the config knows the option; else the plain file.
    cp "$AIGW_CONFIG" "$TMP/aigw-log-off.toml"
    printf '\n[log]\naccess = "off"\n' >>"$TMP/aigw-log-off.toml"
    : >"$OUT_DIR/aigw.log"
    AIGW_RC=""
    rc=0; start_aigw "$TMP/aigw-log-off.toml" || rc=$?
    if ((rc == 1)); then
        log "aigw exited (code $AIGW_RC) with [log] access = \"off\" added; retrying with $AIGW_CONFIG as is"
        rc=0; start_aigw "$AIGW_CONFIG" || rc=$?
        AIGW_CONF_USED="benches/load/aigw.toml"
    else
        AIGW_CONF_USED="benches/load/aigw.toml + [log] access = \"off\""
    fi
    case $rc in
        1) AIGW_OK=0; AIGW_WHY="aigw exited during start-up (code $AIGW_RC); last output: $(grep -v '^==== ' "$OUT_DIR/aigw.log" | tail -n 1 | cut -c1-200 || true)" ;;
        2) AIGW_OK=0; AIGW_WHY="aigw did not accept on 127.0.0.1:$AIGW_PORT within ${STARTUP_TIMEOUT}s" ;;
    esac
fi

if [[ $AIGW_OK = 1 ]]; then
    sleep 1 # let start-up allocations settle before sampling idle memory
    AIGW_RSS_IDLE=$(rss_of "$AIGW_PID" VmRSS)
    AIGW_THREADS=$(rss_of "$AIGW_PID" Threads)
    log "aigw pid $AIGW_PID: idle VmRSS $(kib_to_mib "$AIGW_RSS_IDLE"), threads: $AIGW_THREADS"
    for t in /proc/"$AIGW_PID"/task/*; do
        printf '%s cpus=%s\n' "$(cat "$t/comm" 2>/dev/null)" \
            "$(awk '$1 == "Cpus_allowed_list:" { print $2 }' "$t/status" 2>/dev/null)"
    done >"$OUT_DIR/aigw-threads.txt" 2>/dev/null || true
    if ! preflight aigw "http://127.0.0.1:$AIGW_PORT$CHAT_PATH"; then
        AIGW_OK=0; AIGW_WHY="aigw answered the preflight request with HTTP $(head -n 1 "$OUT_DIR/preflight-aigw.headers" 2>/dev/null | tr -d '\r' | cut -d' ' -f2-) (see out/preflight-aigw.*)"
    elif run_wrk aigw "http://127.0.0.1:$AIGW_PORT$CHAT_PATH" "$AIGW_PID"; then
        AIGW_RSS_AFTER=$(rss_of "$AIGW_PID" VmRSS)
        AIGW_HWM=$(rss_of "$AIGW_PID" VmHWM)
        if ! kill -0 "$AIGW_PID" 2>/dev/null; then
            NOTE[aigw]="aigw exited during the run"
        fi
    else
        AIGW_OK=0; AIGW_WHY=${NOTE[aigw]:-wrk failed}
        kill -0 "$AIGW_PID" 2>/dev/null || AIGW_WHY="aigw exited during the run; $AIGW_WHY"
    fi
fi
[[ $AIGW_OK = 1 ]] || log "aigw row: $AIGW_WHY"

# ------------------------------------------------------------------------ (d)
FULL_OK=0
if [[ $FULL = 1 && $AIGW_OK = 1 ]]; then
    stop_pid "$AIGW_PID"
    sleep 1
    cat "$AIGW_CONFIG" >"$TMP/aigw-full.toml"
    cat >>"$TMP/aigw-full.toml" <<EOF

[consumers.bench]
keys = ["$FULL_KEY"]

[token_limit]
tokens_per_minute = 1000000000
counter = "consumer"
estimate_prompt_tokens = true

[metrics]
dimensions = ["consumer", "model", "backend"]

[log]
access = "$TMP/access.log"
EOF
    rc=0; start_aigw "$TMP/aigw-full.toml" || rc=$?
    if [[ $rc = 0 ]]; then
        FULL_PID=$AIGW_PID
        export AIGW_KEY=$FULL_KEY
        if preflight aigw-full "http://127.0.0.1:$AIGW_PORT$CHAT_PATH" \
            && run_wrk aigw-full "http://127.0.0.1:$AIGW_PORT$CHAT_PATH" "$FULL_PID"; then
            FULL_OK=1
            FULL_LINES=$(wc -l <"$TMP/access.log" 2>/dev/null || echo 0)
        fi
        unset AIGW_KEY
    else
        NOTE[aigw-full]="aigw did not start with the full-chain config (see out/aigw.log)"
    fi
fi

# ------------------------------------------------------------------ (e), (f)
# Cache hits: the first requests of each run are a miss that stores the answer; every request
# after it is a hit answered without the upstream.
cache_row() { # cache_row KEY MODE
    local key=$1 mode=$2 conf=$TMP/aigw-$1.toml rc=0 pid i
    cat "$AIGW_CONFIG" >"$conf"
    cat >>"$conf" <<EOF

[backends.embedder]
url = "http://127.0.0.1:$EMBED_PORT"

[pools.embeddings]
members = [{ backend = "embedder" }]

[semantic_cache]
mode = "$mode"
similarity_threshold = 0.9
vary_by = []

[log]
access = "off"
EOF
    # An embedder only where one is called (the config refuses one in mode "exact").
    [[ $mode = exact ]] || printf '\n[semantic_cache.embedder]\npool = "embeddings"\ndimensions = 512\n' >>"$conf"
    start_aigw "$conf" || rc=$?
    if [[ $rc != 0 ]]; then
        NOTE[$key]="aigw did not start with the cache config (see out/aigw.log)"
        return
    fi
    pid=$AIGW_PID
    # The store is asynchronous: repeat the prompt until it is answered from the cache.
    for i in $(seq 50); do
        preflight "$key" "http://127.0.0.1:$AIGW_PORT$CHAT_PATH" || true
        grep -qi '^x-aigw-cache: hit' "$OUT_DIR/preflight-$key.headers" && break
        sleep 0.1
    done
    if grep -qi '^x-aigw-cache: hit' "$OUT_DIR/preflight-$key.headers"; then
        run_wrk "$key" "http://127.0.0.1:$AIGW_PORT$CHAT_PATH" "$pid" || true
    else
        NOTE[$key]="no cache hit after 50 tries (see out/preflight-$key.headers)"
    fi
    stop_pid "$pid"
    sleep 1
}
if [[ $CACHE = 1 && $AIGW_OK = 1 ]]; then
    [[ -n ${FULL_PID:-} ]] && stop_pid "$FULL_PID"
    [[ -n ${AIGW_PID:-} ]] && stop_pid "$AIGW_PID"
    (on_cpu "$UPSTREAM_CPU" "$AIGW_BIN" mock --listen "127.0.0.1:$EMBED_PORT") >"$OUT_DIR/embedder.log" 2>&1 &
    PIDS+=("$!")
    sleep 0.5
    cache_row cache-exact exact
    cache_row cache-semantic semantic
fi

# ------------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'; }
added_us() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "") printf "%.0f µs", (a - b) * 1000; else print "n/a" }'; }
# added KEY: what the proxy adds to the direct path's latency (meaningful at CONNECTIONS=1,
# where no request waits behind another).
added() { echo "| $2 | $(added_us "${P50[$1]:-}" "${P50[upstream]:-}") | $(added_us "${P99[$1]:-}" "${P99[upstream]:-}") |"; }
NGINX_VER=$("$NGINX" -v 2>&1 | sed 's/^nginx version: nginx\///' || true)
WRK_VER=$(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }' || true)
GIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
if [[ $PIN = 1 ]]; then
    PINNING="proxy under test (nginx proxy / aigw) on CPU $PROXY_CPU; upstream nginx on CPU $UPSTREAM_CPU; wrk on CPU $LOADGEN_CPU"
else
    PINNING="none (PIN=0)"
fi

row() { # row KEY LABEL
    local key=$1 label=$2
    if [[ -n ${RPS[$key]:-} ]]; then
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "${RPS[$key]}" "${P50[$key]}" "${P99[$key]}" "${CPU_US[$key]:-—}" "${SYS_PER[$key]:-—}" "${ERRS[$key]}"
    else
        printf '| %s | — | — | — | — | — | not run |\n' "$label"
    fi
}

{
    echo "### Load: aigw vs nginx ($(date -u +%Y-%m-%d), \`$GIT_REV\`)"
    echo
    echo "- Machine: $(nproc) CPUs (${CPU_MODEL:-unknown}), $(uname -sr); nginx $NGINX_VER; wrk $WRK_VER"
    echo "- Load: \`wrk -t$THREADS -c$CONNECTIONS -d$DURATION\` after a ${WARMUP} warm-up, each request \`POST $CHAT_PATH\` with a ${#REQ_BODY}-byte JSON body; the upstream answers a fixed ${#RESP_BODY}-byte chat completion"
    echo "- Pinning: $PINNING"
    echo "- nginx: 1 worker each; the proxy keeps up to $UPSTREAM_KEEPALIVE idle upstream connections (HTTP/1.1 keep-alive)"
    if [[ -n $AIGW_CONF_USED ]]; then
        AFF=$(awk '{ sub(/^.* cpus=/, ""); print }' "$OUT_DIR/aigw-threads.txt" 2>/dev/null | sort -u | paste -sd' ' - || true)
        echo "- aigw: 1 worker, \`RUST_LOG=warn\`, config $AIGW_CONF_USED; its threads may run on CPUs: ${AFF:-unknown}"
    fi
    echo
    echo "| target | req/s | p50 (ms) | p99 (ms) | proxy CPU µs/req | proxy syscalls/req | errors (socket / HTTP≥400) |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    row upstream "(a) nginx upstream, direct"
    row nginx-proxy "(b) nginx \`proxy_pass\`, keepalive, 1 worker"
    row aigw "(c) aigw, 1 worker"
    [[ $FULL = 1 ]] && row aigw-full "(d) aigw, 1 worker, full policy chain"
    if [[ $CACHE = 1 ]]; then
        row cache-exact "(e) aigw, 1 worker, every request an exact cache hit"
        row cache-semantic "(f) aigw, 1 worker, every request a semantic cache hit (one mock embeddings call each)"
    fi
    echo
    if [[ $AIGW_OK = 1 && -n ${RPS[aigw]:-} ]]; then
        echo "| aigw / nginx proxy | ratio |"
        echo "|---|---:|"
        echo "| throughput (req/s) | $(ratio "${RPS[aigw]}" "${RPS[nginx-proxy]}") |"
        echo "| p99 latency | $(ratio "${P99[aigw]}" "${P99[nginx-proxy]}") |"
        echo "| proxy CPU per request | $(ratio "${CPU_US[aigw]:-0}" "${CPU_US[nginx-proxy]:-0}") |"
        if [[ $FULL_OK = 1 ]]; then
            echo "| full chain: throughput (req/s) | $(ratio "${RPS[aigw-full]}" "${RPS[nginx-proxy]}") |"
            echo "| full chain: proxy CPU per request | $(ratio "${CPU_US[aigw-full]:-0}" "${CPU_US[nginx-proxy]:-0}") |"
            echo
            echo "Full chain: a consumer key, a token limit with prompt estimation, token metrics by consumer, model and backend, the access log to a file ($FULL_LINES lines written)."
        fi
        if [[ -n ${RPS[cache-exact]:-} || -n ${RPS[cache-semantic]:-} ]]; then
            echo
            echo "| cache hit / plain proxied request (c) | throughput | CPU per request |"
            echo "|---|---:|---:|"
            for k in cache-exact cache-semantic; do
                [[ -n ${RPS[$k]:-} ]] && echo "| $k | $(ratio "${RPS[$k]}" "${RPS[aigw]}") | $(ratio "${CPU_US[$k]:-0}" "${CPU_US[aigw]:-0}") |"
            done
        fi
        echo
        echo "aigw idle RSS (VmRSS after start, before load): **$(kib_to_mib "$AIGW_RSS_IDLE")**" \
            "(threads: ${AIGW_THREADS:-?}); after the run: $(kib_to_mib "$AIGW_RSS_AFTER"), peak VmHWM $(kib_to_mib "$AIGW_HWM")"
    else
        echo "**aigw was not measured:** $AIGW_WHY"
        if [[ -n $AIGW_RSS_IDLE ]]; then
            echo
            echo "aigw idle RSS (VmRSS after start, before load): **$(kib_to_mib "$AIGW_RSS_IDLE")** (threads: ${AIGW_THREADS:-?})"
        fi
    fi
    echo
    echo "| latency added over (a) | p50 | p99 |"
    echo "|---|---:|---:|"
    added nginx-proxy "(b) nginx proxy_pass"
    [[ -n ${P50[aigw]:-} ]] && added aigw "(c) aigw"
    [[ -n ${P50[aigw-full]:-} ]] && added aigw-full "(d) aigw, full chain"
    for k in upstream nginx-proxy aigw aigw-full cache-exact cache-semantic; do
        [[ -n ${NOTE[$k]:-} ]] && echo && echo "Note ($k): ${NOTE[$k]}"
    done
    true
} >"$OUT_DIR/results.md"

cat "$OUT_DIR/results.md"
log "report written to $OUT_DIR/results.md"
[[ $AIGW_OK = 1 ]] || exit 3
exit 0
