#!/usr/bin/env bash
# benches/load/streams.sh: gateway memory per in-flight stream whose client stopped reading.
#
# The upstream is `aigw mock` in its own process (so its memory is not the gateway's), answering
# every streamed chat completion with CHUNKS content chunks and no usage (the gateway counts the
# reply itself). For each setting of the message store (off, then on with its default 200 KiB
# limit) a fresh aigw (one worker) is started and warmed up with one whole stream; then
# stall.py starts STREAMS streams and stops reading each after its first 64 KiB. The gateway's
# RSS is sampled every second for HOLD seconds; then the clients disconnect and it is read again.
# The kernel's socket buffers are not in RSS: what grows is the gateway's own memory.
#
# Knobs: STREAMS [20], CHUNKS [200000], HOLD [10], AIGW_BIN [target/release/aigw],
# OUT_DIR [benches/load/out]. Markdown on stdout (also $OUT_DIR/streams.md).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT_DIR=${OUT_DIR:-$HERE/out}
LOG_TAG=streams
# shellcheck source=benches/load/lib.sh
source "$HERE/lib.sh"

STREAMS=${STREAMS:-20}
CHUNKS=${CHUNKS:-200000}
HOLD=${HOLD:-10}
MOCK_PORT=18301 AIGW_PORT=18303 AIGW_ADMIN=18313
STREAM_REQ='{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"warm up"}]}'
need_tools
ports_free $MOCK_PORT $AIGW_PORT $AIGW_ADMIN

"$AIGW_BIN" mock --listen 127.0.0.1:$MOCK_PORT --chunks "$CHUNKS" >"$OUT_DIR/streams-mock.log" 2>&1 &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
wait_post "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" "$MOCK_PID" '{"model":"m","messages":[]}' \
    || die "the mock did not come up"
MOCK_IDLE=$(rss_kb "$MOCK_PID")

declare -A BEFORE PEAK AFTER OK MOCK_PEAK
measure() { # measure KEY EXTRA_TOML
    local key=$1 extra=$2 fifo=$TMP/stall-$1.in out=$OUT_DIR/stall-$1.txt i v
    cat >"$TMP/aigw-$key.toml" <<EOF
[gateway]
listen = "127.0.0.1:$AIGW_PORT"
admin_listen = "127.0.0.1:$AIGW_ADMIN"
workers = 1

[log]
access = "off"
$extra

[backends.mock]
url = "http://127.0.0.1:$MOCK_PORT"

[pools.main]
members = [{ backend = "mock" }]

[models]
"*" = "main"
EOF
    start_aigw "$TMP/aigw-$key.toml" "$OUT_DIR/streams-aigw-$key.log"
    log "$key: warm-up: one whole stream of $CHUNKS chunks"
    curl -sN --max-time 120 -H 'content-type: application/json' --data "$STREAM_REQ" \
        "http://127.0.0.1:$AIGW_PORT/v1/chat/completions" | tail -c 200 | grep -q 'data: \[DONE\]' \
        || die "$key: the warm-up stream did not end with [DONE]"
    sleep 2
    BEFORE[$key]=$(rss_kb "$AIGW_PID")
    mkfifo "$fifo"
    python3 "$HERE/stall.py" --port $AIGW_PORT -n "$STREAMS" <"$fifo" >"$out" 2>"$OUT_DIR/stall-$key.err" &
    local stall=$!
    PIDS+=("$stall")
    exec 7>"$fifo"
    while ! grep -q '^STALLED' "$out"; do
        kill -0 "$stall" 2>/dev/null || die "stall.py ended early: $(cat "$OUT_DIR/stall-$key.err")"
        sleep 0.2
    done
    OK[$key]=$(sed -n 's/^STALLED n=[0-9]* ok=\([0-9]*\)/\1/p' "$out")
    PEAK[$key]=0 MOCK_PEAK[$key]=0
    for ((i = 0; i < HOLD; i++)); do
        sleep 1
        v=$(rss_kb "$AIGW_PID")
        ((v > PEAK[$key])) && PEAK[$key]=$v
        v=$(rss_kb "$MOCK_PID")
        ((v > MOCK_PEAK[$key])) && MOCK_PEAK[$key]=$v
        log "$key: t=$((i + 1))s gateway RSS $(rss_kb "$AIGW_PID") KiB, mock RSS $v KiB"
    done
    echo >&7
    exec 7>&-
    wait "$stall" || true
    sleep 3
    AFTER[$key]=$(rss_kb "$AIGW_PID")
    log "$key: RSS before ${BEFORE[$key]}, peak ${PEAK[$key]}, after disconnect ${AFTER[$key]} KiB"
    stop_pid "$AIGW_PID"
}

measure off ""
measure store "[log.messages]
path = \"$TMP/messages.jsonl\""

per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "n/a" }'; }
{
    echo "### Stalled streams ($(date -u +%Y-%m-%d), \`$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)\`)"
    echo
    echo "- Machine: $(machine)"
    echo "- $STREAMS streamed chat completions of $CHUNKS chunks each from \`aigw mock\` (its own process, no usage in the stream), each client stopping after 64 KiB; gateway RSS sampled every second for ${HOLD}s (peak shown), then read 3s after the clients disconnected"
    echo "- mock RSS: $MOCK_IDLE KiB idle"
    echo
    echo "| message store | streams | gateway RSS before (KiB) | peak (KiB) | KiB per stream | after disconnect (KiB) | mock RSS peak (KiB) |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for k in off store; do
        label=$([[ $k = off ]] && echo off || echo "on (200 KiB limit)")
        echo "| $label | ${OK[$k]} | ${BEFORE[$k]} | ${PEAK[$k]} | $(per "${BEFORE[$k]}" "${PEAK[$k]}" "${OK[$k]}") | ${AFTER[$k]} | ${MOCK_PEAK[$k]} |"
    done
} | tee "$OUT_DIR/streams.md"
