# shellcheck shell=bash disable=SC2317 # cleanup is reached through a trap
# benches/load/lib.sh: what the memory scripts (conns.sh, streams.sh, soak.sh) share: process
# handling with cleanup on exit, tool checks, nginx configs in a temp dir, aigw start-up, and
# memory readings. Sourced, never run. The caller sets OUT_DIR (created here) and may set
# KEEP_TMP=1, STARTUP_TIMEOUT (seconds) and AIGW_BIN (relative to the repo root).

LIB_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LIB_HERE/../.." && pwd)
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-20}
KEEP_TMP=${KEEP_TMP:-0}
AIGW_BIN=${AIGW_BIN:-target/release/aigw}
[[ $AIGW_BIN = /* ]] || AIGW_BIN=$ROOT/$AIGW_BIN
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

# shellcheck source=benches/load/common.sh
source "$LIB_HERE/common.sh"
NGINX_KEEPALIVE=600s
NGINX_NOFILE=$(ulimit -Hn)

log() { printf '[%s] %s\n' "${LOG_TAG:-load}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Every descriptor the kernel allows: 10,000 held connections need more than the usual 1,024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIDS=()
TMP=$(mktemp -d /tmp/aigw-mem.XXXXXX)
chmod 755 "$TMP" # nginx workers run as nobody when started by root

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    if [[ $KEEP_TMP = 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

need_tools() { # need_tools [wrk]: nginx, curl and python3 (and wrk), installing nginx/wrk if root
    local want_wrk=${1:-}
    NGINX=$(command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true)
    if [[ -z $NGINX ]] || { [[ -n $want_wrk ]] && ! command -v wrk >/dev/null 2>&1; }; then
        [[ $(id -u) = 0 ]] || die "nginx and wrk are needed: apt-get install -y nginx wrk (as root)"
        log "installing nginx and wrk with apt-get"
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx wrk; } \
            >"$OUT_DIR/apt.log" 2>&1 || die "apt-get failed, see $OUT_DIR/apt.log"
        NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
    fi
    command -v curl >/dev/null 2>&1 || die "curl is needed"
    command -v python3 >/dev/null 2>&1 || die "python3 is needed"
    [[ -x $AIGW_BIN ]] || die "no aigw binary at $AIGW_BIN (cargo build --release -p aigw)"
}

ports_free() { local p; for p in "$@"; do port_busy "$p" && die "127.0.0.1:$p is in use"; done; true; }

rss_kb() { # rss_kb PID -> VmRSS of PID plus its direct children (nginx master + workers), in KiB
    local total=0 p v
    for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        v=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

start_nginx() { # start_nginx NAME CONF [CPU] -> its pid in NGINX_PID
    local name=$1 conf=$2 cpu=${3:-}
    "$NGINX" -t -q -p "$TMP/$name" -c "$conf" 2>"$OUT_DIR/nginx-$name.log" \
        || { cat "$OUT_DIR/nginx-$name.log" >&2; die "nginx config for $name is invalid"; }
    local pin=()
    [[ -n $cpu ]] && pin=(taskset -c "$cpu")
    "${pin[@]}" "$NGINX" -p "$TMP/$name" -c "$conf" -g 'daemon off;' >>"$OUT_DIR/nginx-$name.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
}

wait_post() { # wait_post URL PID BODY -> 0 once URL answers 200 to a POST of BODY
    local url=$1 pid=$2 body=$3 deadline=$((SECONDS + STARTUP_TIMEOUT)) code
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 1
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            -H 'content-type: application/json' --data "$body" "$url" || true)
        [[ $code = 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

start_aigw() { # start_aigw CONFIG LOGFILE [CPU] -> its pid in AIGW_PID, once /healthz answers
    local conf=$1 logf=$2 cpu=${3:-} deadline=$((SECONDS + STARTUP_TIMEOUT)) admin
    admin=$(sed -n 's/^admin_listen *= *"\(.*\)"/\1/p' "$conf")
    local pin=()
    [[ -n $cpu ]] && pin=(taskset -c "$cpu")
    # AIGW_SOFT_NOFILE: start aigw with this soft limit of open files (it raises it itself).
    # AIGW_STDOUT: where its stdout (an access log to "stdout") goes; else with its log.
    : >"$logf"
    RUST_LOG=${AIGW_LOG:-info} "${pin[@]}" bash -c 'ulimit -Sn "$1"; shift; exec "$@"' _ \
        "${AIGW_SOFT_NOFILE:-$(ulimit -Sn)}" "$AIGW_BIN" serve --config "$conf" \
        >>"${AIGW_STDOUT:-$logf}" 2>>"$logf" &
    AIGW_PID=$!
    PIDS+=("$AIGW_PID")
    while ((SECONDS < deadline)); do
        kill -0 "$AIGW_PID" 2>/dev/null || die "aigw exited at start-up: $(tail -n 3 "$logf")"
        curl -sf -o /dev/null --max-time 1 "http://$admin/healthz" && return 0
        sleep 0.1
    done
    die "aigw did not come up within ${STARTUP_TIMEOUT}s (see $logf)"
}

machine() { # one line: CPUs, lscpu model name, kernel
    local model
    model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
    echo "$(nproc) CPUs (${model:-unknown}), $(uname -sr)"
}
