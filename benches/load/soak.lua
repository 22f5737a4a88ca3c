-- benches/load/soak.lua: the mixed request stream of soak.sh, in a fixed rotation per connection.
-- Answers of every kind: non-streamed and streamed chats (with and without usage), the Responses
-- API streamed, embeddings, a wrong key (401), an operation the backend does not know (relayed,
-- 404), a body that is not JSON (400), and a model served only by soak.sh's failing backend
-- (500s, and 503s while its breaker is open; elsewhere its failures are retried). SOAK_DELAY_MS (env, default 5) paces each
-- connection.

local key = { ["content-type"] = "application/json", ["api-key"] = "soak-key" }
local function with(extra)
  local h = {}
  for k, v in pairs(key) do h[k] = v end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end
local chat = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}'
local stream = '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"tell me more"}]}'
local stream_usage = '{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},'
  .. '"messages":[{"role":"user","content":"and more"}]}'
local responses = '{"model":"gpt-4o-mini","stream":true,"input":"write a line"}'
local flaky = '{"model":"flaky","messages":[{"role":"user","content":"hello there"}]}'
local embed = '{"model":"text-embedding-3-small","input":"a few words to embed"}'

local mix = {
  wrk.format("POST", "/v1/chat/completions", key, chat),
  wrk.format("POST", "/v1/chat/completions", key, stream),
  wrk.format("POST", "/v1/chat/completions", key, stream_usage),
  wrk.format("POST", "/v1/responses", key, responses),
  wrk.format("POST", "/v1/embeddings", key, embed),
  wrk.format("POST", "/v1/chat/completions", { ["content-type"] = "application/json", ["api-key"] = "wrong" }, chat),
  wrk.format("POST", "/v1/nothing/here", key, chat),
  wrk.format("POST", "/v1/chat/completions", key, "{not json"),
  wrk.format("POST", "/v1/chat/completions", with({ ["x-user-id"] = "soak-user" }), stream),
  wrk.format("POST", "/v1/chat/completions", key, flaky),
}

local pace = tonumber(os.getenv("SOAK_DELAY_MS") or "5")
local counter = 0

function init(args)
  counter = math.random(#mix)
end

function request()
  counter = counter % #mix + 1
  return mix[counter]
end

function delay()
  return pace
end

function done(summary, latency, requests)
  io.write(string.format("SOAK_RESULT requests=%d duration_s=%.1f rps=%.1f errors=%d timeouts=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout))
end
