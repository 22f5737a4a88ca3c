#!/usr/bin/env bash
# benches/load/soak.sh: a long mixed run against one aigw worker, its memory sampled throughout.
#
# `aigw mock` processes are the backends (one answers 500 to a tenth of its requests, and alone
# serves model "flaky", whose callers see those errors and the 503s of its open breaker); aigw
# (one worker, one consumer with a token limit, access log to /dev/null, message store with
# rotation) serves at once:
# - wrk with soak.lua: streams (with and without usage, chat and Responses API), embeddings and
#   errors of every kind (401, 404, 400; upstream 500s, retried elsewhere or, for "flaky",
#   answered, and the 503s of its open breaker);
# - IDLE keep-alive connections held for the whole run (asked again at the end);
# - every 30 s, STALLS streams of 200,000 chunks (a third mock) whose client stops reading after
#   64 KiB, dropped 5 s later;
# - every RELOAD seconds, the config rewritten (weights and token limit toggled) and SIGHUP.
# Every SAMPLE seconds: RSS, descriptors and the threads' count. Growth is judged after WARMUP.
#
# Knobs: DURATION [600] s, SAMPLE [10] s, RELOAD [10] s, WARMUP [60] s, CONNS [16] wrk
# connections, SOAK_DELAY_MS [5] pause per wrk request, IDLE [1000], STALLS [5], CHUNKS [200],
# AIGW_BIN, OUT_DIR. Markdown on stdout (also $OUT_DIR/soak.md), samples in $OUT_DIR/soak.csv.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT_DIR=${OUT_DIR:-$HERE/out}
LOG_TAG=soak
# shellcheck source=benches/load/lib.sh
source "$HERE/lib.sh"

DURATION=${DURATION:-600} SAMPLE=${SAMPLE:-10} RELOAD=${RELOAD:-10} WARMUP=${WARMUP:-60}
CONNS=${CONNS:-16} IDLE=${IDLE:-1000} STALLS=${STALLS:-5} CHUNKS=${CHUNKS:-200}
export SOAK_DELAY_MS=${SOAK_DELAY_MS:-5}
OK_PORT=18401 BAD_PORT=18402 LONG_PORT=18404 AIGW_PORT=18403 AIGW_ADMIN=18413
need_tools wrk
ports_free $OK_PORT $BAD_PORT $LONG_PORT $AIGW_PORT $AIGW_ADMIN

"$AIGW_BIN" mock --listen 127.0.0.1:$OK_PORT --region ok --chunks "$CHUNKS" >"$OUT_DIR/soak-mock-ok.log" 2>&1 &
PIDS+=($!)
"$AIGW_BIN" mock --listen 127.0.0.1:$BAD_PORT --region bad --chunks "$CHUNKS" \
    --fail-status 500 --fail-rate 0.1 >"$OUT_DIR/soak-mock-bad.log" 2>&1 &
PIDS+=($!)
# The stalled streams' backend: model "long-story", 200,000 chunks an answer.
"$AIGW_BIN" mock --listen 127.0.0.1:$LONG_PORT --region long --chunks 200000 >"$OUT_DIR/soak-mock-long.log" 2>&1 &
PIDS+=($!)
for p in $OK_PORT $BAD_PORT $LONG_PORT; do
    wait_post "http://127.0.0.1:$p/v1/embeddings" "${PIDS[-1]}" '{"input":"x"}' || die "mock on $p did not come up"
done

config() { # config WEIGHT TOKENS_PER_MINUTE
    cat <<EOF
[gateway]
listen = "127.0.0.1:$AIGW_PORT"
admin_listen = "127.0.0.1:$AIGW_ADMIN"
workers = 1
idle_timeout = "$((DURATION + 300))s"

[log]
access = "stdout"
[log.messages]
path = "$TMP/messages.jsonl"
max_file_bytes = 4194304
keep_files = 1

[backends.ok]
url = "http://127.0.0.1:$OK_PORT"
[backends.bad]
url = "http://127.0.0.1:$BAD_PORT"
dialect = "azure"
circuit_breaker = { failures = 5, window = "10s", open_for = "2s", status = ["500-599"] }

[backends.long]
url = "http://127.0.0.1:$LONG_PORT"

[pools.long]
members = [{ backend = "long" }]

[pools.flaky]
members = [{ backend = "bad" }]

[pools.main]
members = [{ backend = "ok", weight = $1 }, { backend = "bad", weight = 1 }]
retry_on = [429, "500-599"]
bench_for = "1s"

[models]
"long-story" = "long"
"flaky" = "flaky"
"*" = "main"

[consumers.soak]
keys = ["soak-key"]
tokens_per_minute = $2
EOF
}
config 3 50000000 >"$TMP/aigw.toml"
# The access log goes to stdout: /dev/null here (its writer runs; the disk does not fill).
AIGW_STDOUT=/dev/null start_aigw "$TMP/aigw.toml" "$OUT_DIR/soak-aigw.log"
STREAM='{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"warm up"}]}'
curl -sf -o /dev/null -H 'api-key: soak-key' -H 'content-type: application/json' --data "$STREAM" \
    "http://127.0.0.1:$AIGW_PORT/v1/chat/completions" || die "the first request failed"

# Idle keep-alive connections held through the run.
mkfifo "$TMP/idle.in"
python3 "$HERE/hold.py" --port $AIGW_PORT -n "$IDLE" --batch 50 --check 100 --header 'api-key: soak-key' \
    --body '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' \
    <"$TMP/idle.in" >"$OUT_DIR/soak-idle.txt" 2>"$OUT_DIR/soak-idle.err" &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
exec 8>"$TMP/idle.in"
until grep -q '^READY' "$OUT_DIR/soak-idle.txt"; do
    kill -0 "$IDLE_PID" 2>/dev/null || die "hold.py failed: $(cat "$OUT_DIR/soak-idle.err")"
    sleep 0.5
done

log "soak: ${DURATION}s, wrk -c$CONNS, $IDLE idle connections, $STALLS stalled streams every 30s, reload every ${RELOAD}s"
timeout $((DURATION + 60)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$HERE/soak.lua" \
    "http://127.0.0.1:$AIGW_PORT" >"$OUT_DIR/soak-wrk.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")

echo "t_s,rss_kib,fds,threads" >"$OUT_DIR/soak.csv"
sample() {
    printf '%s,%s,%s,%s\n' "$1" "$(rss_kb "$AIGW_PID")" "$(find "/proc/$AIGW_PID/fd" -mindepth 1 | wc -l)" \
        "$(awk '$1 == "Threads:" { print $2 }' "/proc/$AIGW_PID/status")" >>"$OUT_DIR/soak.csv"
}
RELOADS=0 STALL_PID=""
start=$SECONDS
for ((t = 0; t <= DURATION; t++)); do
    kill -0 "$AIGW_PID" 2>/dev/null || die "aigw exited during the soak"
    ((t % SAMPLE == 0)) && sample "$t"
    if ((t > 0 && t % RELOAD == 0 && t < DURATION)); then
        config $((t / RELOAD % 2 ? 1 : 3)) $((t / RELOAD % 2 ? 40000000 : 50000000)) >"$TMP/aigw.toml.new"
        mv "$TMP/aigw.toml.new" "$TMP/aigw.toml"
        kill -HUP "$AIGW_PID" && RELOADS=$((RELOADS + 1))
    fi
    if ((t % 30 == 5 && t + 10 < DURATION)); then
        python3 "$HERE/stall.py" --port $AIGW_PORT -n "$STALLS" --header 'api-key: soak-key' --model long-story \
            < <(sleep 5; echo) >/dev/null 2>>"$OUT_DIR/soak-stall.err" &
        STALL_PID=$!
    fi
    # Next second on the clock, whatever the steps above took.
    sleep "$(awk -v n=$((start + t + 1)) -v s=$SECONDS 'BEGIN { d = n - s; print (d > 0 ? d : 0) }')"
done
[[ -n $STALL_PID ]] && wait "$STALL_PID" 2>/dev/null || true
wait "$WRK_PID" || true
echo >&8
exec 8>&-
wait "$IDLE_PID" || true

STATUS=$(curl -s "http://127.0.0.1:$AIGW_ADMIN/metrics" | awk '/^aigw_requests_total\{/ {
    s = $0; sub(/.*status="/, "", s); sub(/".*/, "", s); n[s] += $NF }
    END { for (s in n) printf "%s: %d, ", s, n[s] }' | sed 's/, $//')
RELOADED=$(grep -c 'config reloaded' "$OUT_DIR/soak-aigw.log" || true)
RESULT=$(grep '^SOAK_RESULT' "$OUT_DIR/soak-wrk.txt" || echo "SOAK_RESULT missing")
ALIVE=$(sed -n 's/^CHECK alive=\([0-9]*\) of=\([0-9]*\)/\1 of \2/p' "$OUT_DIR/soak-idle.txt")
stop_pid "$AIGW_PID"

awk -F, -v warm="$WARMUP" -v every=60 -v machine="$(machine)" -v result="$RESULT" -v status="$STATUS" \
    -v reloads="$RELOADS ($RELOADED confirmed in the log)" -v alive="$ALIVE" -v day="$(date -u +%Y-%m-%d)" -v idle="$IDLE" -v rev="$(git -C "$ROOT" describe --always --dirty 2>/dev/null)" '
NR == 1 { next }
{ t[NR] = $1; r[NR] = $2; f[NR] = $3; n = NR }
END {
    printf "### Soak (%s, `%s`)\n\n- Machine: %s\n- wrk: %s\n", day, rev, machine, result
    printf "- Answers by status (aigw_requests_total): %s\n- Reloads: %s; idle connections held throughout: %d, answering again at the end: %s\n\n", status, reloads, idle, alive
    printf "| t (s) | RSS (KiB) | descriptors |\n|---:|---:|---:|\n"
    for (i = 2; i <= n; i++) if (t[i] % every == 0 || i == n) printf "| %d | %d | %d |\n", t[i], r[i], f[i]
    # Least-squares slope of RSS over time after the warm-up, and the spread there.
    for (i = 2; i <= n; i++) if (t[i] >= warm) {
        k++; sx += t[i]; sy += r[i]; sxx += t[i] * t[i]; sxy += t[i] * r[i]
        if (!lo || r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i]; if (!first) first = r[i]; last = r[i]
    }
    slope = (k > 1) ? (k * sxy - sx * sy) / (k * sxx - sx * sx) : 0
    printf "\nAfter the %d s warm-up (%d samples): RSS from %d to %d KiB (min %d, max %d), least-squares slope %.1f KiB/min.\n", warm, k, first, last, lo, hi, slope * 60
}' "$OUT_DIR/soak.csv" | tee "$OUT_DIR/soak.md"
