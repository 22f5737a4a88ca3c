-- wrk script for benches/load/run.sh.
--
-- Every request is a small, non-streaming OpenAI chat completion:
--   POST /v1/chat/completions
--   Content-Type: application/json
--   {"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}
--
-- done() prints one machine-parsable line (space-separated key=value pairs,
-- latencies in milliseconds) that run.sh greps for:
--   WRK_RESULT requests=N duration_s=S rps=R p50_ms=.. p90_ms=.. p99_ms=.. max_ms=..
--              err_connect=.. err_read=.. err_write=.. err_status=.. err_timeout=..
-- err_status counts responses with status >= 400 (wrk's own definition).

wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
-- run.sh's full-chain row (d) calls as a consumer.
local key = os.getenv("AIGW_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["api-key"] = key
end

local function ms(us)
  return string.format("%.3f", us / 1000.0)
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local rps = 0
  if secs > 0 then
    rps = summary.requests / secs
  end
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%s p90_ms=%s p99_ms=%s max_ms=%s " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, secs, rps,
    ms(latency:percentile(50)), ms(latency:percentile(90)),
    ms(latency:percentile(99)), ms(latency.max),
    e.connect, e.read, e.write, e.status, e.timeout))
end
