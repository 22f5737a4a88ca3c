#!/usr/bin/env bash
# benches/load/conns.sh: memory per idle keep-alive client connection, aigw next to nginx.
#
# For each proxy (nginx proxy_pass, then aigw; one worker each, in front of the same fixed nginx
# upstream): start it, send one request, read its RSS; then hold.py opens CONNS keep-alive
# connections, one request each (BATCH at a time), and holds them; RSS again; the difference
# divided by the connections is the memory one idle connection costs. Before the proxy is
# stopped, CHECK connections (spread over all) carry a second request.
#
# Knobs: CONNS [10000], BATCH [50], SETTLE [2] seconds before each reading, AIGW_BIN
# [target/release/aigw], OUT_DIR [benches/load/out]. Markdown on stdout (also
# $OUT_DIR/conns.md); progress on stderr.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT_DIR=${OUT_DIR:-$HERE/out}
LOG_TAG=conns
# shellcheck source=benches/load/lib.sh
source "$HERE/lib.sh"

CONNS=${CONNS:-10000}
BATCH=${BATCH:-50}
CHECK=${CHECK:-100}
SETTLE=${SETTLE:-2}
UPSTREAM_PORT=18181 PROXY_PORT=18182 AIGW_PORT=18183 AIGW_ADMIN=18193
REQ='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
RESP='{"id":"chatcmpl-mem","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":2,"total_tokens":10}}'

need_tools
ports_free $UPSTREAM_PORT $PROXY_PORT $AIGW_PORT $AIGW_ADMIN
((CONNS + 200 < $(ulimit -n))) || die "CONNS=$CONNS needs more descriptors than $(ulimit -n)"

start_nginx upstream "$(nginx_conf upstream $UPSTREAM_PORT "
        location / { default_type application/json; return 200 '$RESP'; }")"
UPSTREAM_PID=$NGINX_PID
wait_post "http://127.0.0.1:$UPSTREAM_PORT/v1/chat/completions" "$UPSTREAM_PID" "$REQ" \
    || die "the upstream nginx did not come up"

declare -A BEFORE AFTER OK ALIVE
measure() { # measure KEY PID PORT
    local key=$1 pid=$2 port=$3 fifo=$TMP/hold-$1.in out=$OUT_DIR/hold-$1.txt line
    curl -s -o /dev/null -H 'content-type: application/json' --data "$REQ" "http://127.0.0.1:$port/v1/chat/completions"
    sleep "$SETTLE"
    BEFORE[$key]=$(rss_kb "$pid")
    mkfifo "$fifo"
    python3 "$HERE/hold.py" --port "$port" -n "$CONNS" --batch "$BATCH" --check "$CHECK" <"$fifo" >"$out" 2>"$OUT_DIR/hold-$key.err" &
    local hold=$!
    PIDS+=("$hold")
    exec 7>"$fifo" # keeps hold.py waiting until the line below
    log "$key: opening $CONNS connections"
    while ! grep -q '^READY' "$out"; do
        kill -0 "$hold" 2>/dev/null || die "hold.py ended early: $(cat "$OUT_DIR/hold-$key.err")"
        sleep 0.5
    done
    sleep "$SETTLE"
    AFTER[$key]=$(rss_kb "$pid")
    line=$(grep '^READY' "$out")
    OK[$key]=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$line")
    log "$key: $line; RSS ${BEFORE[$key]} -> ${AFTER[$key]} KiB"
    echo >&7
    exec 7>&-
    wait "$hold" || true
    ALIVE[$key]=$(sed -n 's/^CHECK alive=\([0-9]*\) of=\([0-9]*\)/\1 of \2/p' "$out")
    log "$key: second request answered on ${ALIVE[$key]} sampled connections"
}

start_nginx proxy "$(nginx_conf proxy $PROXY_PORT "
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }" "
    upstream up { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }")"
PROXY_PID=$NGINX_PID
wait_post "http://127.0.0.1:$PROXY_PORT/v1/chat/completions" "$PROXY_PID" "$REQ" || die "nginx proxy did not come up"
measure nginx "$PROXY_PID" $PROXY_PORT
stop_pid "$PROXY_PID"

cat >"$TMP/aigw.toml" <<EOF
[gateway]
listen = "127.0.0.1:$AIGW_PORT"
admin_listen = "127.0.0.1:$AIGW_ADMIN"
workers = 1
idle_timeout = "600s"

[log]
access = "off"

[backends.nginx]
url = "http://127.0.0.1:$UPSTREAM_PORT"

[pools.main]
members = [{ backend = "nginx" }]

[models]
"*" = "main"
EOF
# Started with the usual soft limit of 1024 open files: aigw raises it to the hard limit itself.
AIGW_SOFT_NOFILE=1024 start_aigw "$TMP/aigw.toml" "$OUT_DIR/conns-aigw.log"
measure aigw "$AIGW_PID" $AIGW_PORT
FD_LINE=$(grep -m1 'open files' "$OUT_DIR/conns-aigw.log" | sed 's/\x1b\[[0-9;]*m//g' || true)
stop_pid "$AIGW_PID"

per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.2f", (b - a) / n; else print "n/a" }'; }
{
    echo "### Idle keep-alive connections ($(date -u +%Y-%m-%d), \`$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)\`)"
    echo
    echo "- Machine: $(machine); nginx $("$NGINX" -v 2>&1 | sed 's/^nginx version: nginx\///')"
    echo "- $CONNS connections, one request each ($BATCH at a time), then held; RSS (VmRSS, all processes of the proxy) read ${SETTLE}s after the one warm-up request and ${SETTLE}s after the last answer"
    [[ -n $FD_LINE ]] && echo "- aigw at start: \`${FD_LINE##*INFO }\`"
    echo
    echo "| proxy | connections held | RSS before (KiB) | RSS after (KiB) | KiB per connection | second request answered |"
    echo "|---|---:|---:|---:|---:|---:|"
    for k in nginx aigw; do
        echo "| $k | ${OK[$k]} | ${BEFORE[$k]} | ${AFTER[$k]} | $(per "${BEFORE[$k]}" "${AFTER[$k]}" "${OK[$k]}") | ${ALIVE[$k]} |"
    done
} | tee "$OUT_DIR/conns.md"
