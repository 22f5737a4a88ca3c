#!/usr/bin/env bash
# benches/load/flags.sh: aigw's CPU per request under each io_uring setup flag set, runs
# interleaved (flag sets alternate within every repetition, so drift on a shared machine hits
# them alike), the median over REPS reported per set.
#
#   REPS [7]  DURATION [3]  CONNECTIONS [64]  SETS ["none single_issuer coop_taskrun coop_taskrun,defer_taskrun"]
#
# The upstream is `aigw mock` on CPU 1 with wrk; the aigw under test runs on CPU 0 (bare config,
# access log off). Needs wrk; builds nothing (uses target/release/aigw).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
AIGW=${AIGW_BIN:-$ROOT/target/release/aigw}
REPS=${REPS:-7}
DURATION=${DURATION:-3}
CONNECTIONS=${CONNECTIONS:-64}
SETS=${SETS:-none single_issuer coop_taskrun coop_taskrun,defer_taskrun}
TMP=$(mktemp -d /tmp/aigw-flags.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

cat >"$TMP/gw.toml" <<CONF
[gateway]
listen = "127.0.0.1:18183"
admin_listen = "127.0.0.1:18193"
workers = 1
[backends.mock]
url = "http://127.0.0.1:18181"
[pools.main]
members = [{ backend = "mock" }]
[models]
"*" = "main"
[log]
access = "off"
CONF

taskset -c 1 "$AIGW" mock --listen 127.0.0.1:18181 --region bench >"$TMP/mock.log" 2>&1 &
PIDS+=($!)
sleep 0.5
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
declare -A RESULTS
for ((rep = 1; rep <= REPS; rep++)); do
    for set in $SETS; do
        AIGW_URING_SETUP=$set AIGW_DRIVER=uring RUST_LOG=warn taskset -c 0 "$AIGW" serve --config "$TMP/gw.toml" >"$TMP/gw.log" 2>&1 &
        gw=$!
        for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18193/healthz && break; sleep 0.1; done
        taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d1s -s "$HERE/chat.lua" http://127.0.0.1:18183/v1/chat/completions >/dev/null
        t0=$(ticks "$gw")
        out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$HERE/chat.lua" http://127.0.0.1:18183/v1/chat/completions)
        t1=$(ticks "$gw")
        kill "$gw"; wait "$gw" 2>/dev/null || true
        n=$(sed -n 's/.*WRK_RESULT requests=\([0-9]*\).*/\1/p' <<<"$out")
        us=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.1f", d * 1e6 / hz / n }')
        RESULTS[$set]+="$us "
        printf 'rep %d %-28s %s µs/req (%s requests)\n' "$rep" "$set" "$us" "$n" >&2
    done
done
echo "| AIGW_URING_SETUP | aigw CPU µs/req, median of $REPS | runs |"
echo "|---|---:|---|"
for set in $SETS; do
    med=$(tr ' ' '\n' <<<"${RESULTS[$set]}" | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    echo "| \`$set\` | $med | ${RESULTS[$set]}|"
done
