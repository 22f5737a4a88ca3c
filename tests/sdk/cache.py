"""The official OpenAI Python SDK reads the semantic cache's replayed streams as real ones.

Usage: python cache.py GATEWAY_URL ADMIN_URL MODEL   (prints one line per check; exits non-zero on
the first failure). Run by tests/cache/sdk.rs with the SDK that scripts/test installs, against a
gateway whose [semantic_cache] serves chat/completions and responses to everyone (vary_by = []).

Each prompt is streamed twice: the first stream (x-aigw-cache: miss) is stored once it ends, the
second (hit-exact or hit-semantic) is synthesised by the gateway from what was stored; the SDK must
parse both into the same text, finish reason and usage.
"""

import json
import sys
import time
import urllib.request

from openai import OpenAI

URL, ADMIN, MODEL = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/"), sys.argv[3]
client = OpenAI(base_url=f"{URL}/v1", api_key="sdk-client-key", max_retries=0)


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def entries():
    with urllib.request.urlopen(f"{ADMIN}/cache", timeout=5) as r:
        return json.load(r)["entries"]


def wait_entries(n, what):
    """Stores are asynchronous: poll GET /cache (admin port) for up to 5 s."""
    deadline = time.monotonic() + 5
    while entries() < n:
        check(time.monotonic() < deadline, f"{what}: never stored (GET /cache entries < {n})")
        time.sleep(0.02)


def chat_stream(prompt):
    """One streamed chat call: (x-aigw-cache, text, finish_reason, usage chunk)."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    verdict = raw.headers.get("x-aigw-cache")
    text, finish, usage, roles = [], None, None, []
    for chunk in raw.parse():
        check(chunk.object == "chat.completion.chunk", f"chunk object {chunk.object}")
        if chunk.usage is not None:
            check(chunk.choices == [], f"usage chunk with choices: {chunk}")
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            text.append(choice.delta.content or "")
            if choice.finish_reason:
                finish = choice.finish_reason
    check(roles == ["assistant"], f"roles {roles}")
    return verdict, "".join(text), finish, usage


def responses_stream(prompt):
    """One streamed Responses API call: (x-aigw-cache, deltas joined, the completed response, kinds)."""
    raw = client.responses.with_raw_response.create(model=MODEL, input=prompt, stream=True)
    verdict = raw.headers.get("x-aigw-cache")
    deltas, completed, kinds = [], None, []
    for event in raw.parse():
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            completed = event.response
    return verdict, "".join(deltas), completed, kinds


# Chat: a stream stored after [DONE], replayed to a stream, then to a plain call.
PROMPT = "please explain how to brew a perfect cup of coffee at home"
v1, text1, finish1, usage1 = chat_stream(PROMPT)
check(v1 == "miss", f"first chat stream: x-aigw-cache {v1}")
check(text1.startswith("Mock response from"), f"first chat stream text {text1!r}")
check(finish1 == "stop" and usage1 is not None, f"first chat stream: {finish1} {usage1}")
wait_entries(1, "the chat stream")
v2, text2, finish2, usage2 = chat_stream(PROMPT)
check(v2 in ("hit-exact", "hit-semantic"), f"second chat stream: x-aigw-cache {v2}")
check(text2 == text1, f"replayed text {text2!r} != {text1!r}")
check(finish2 == "stop", f"replayed finish_reason {finish2}")
check(usage2 is not None, "replayed stream without its usage chunk")
check(usage2.total_tokens == usage1.total_tokens, f"replayed usage {usage2} != {usage1}")
print(f"ok chat stream replay ({v2})")

raw = client.chat.completions.with_raw_response.create(
    model=MODEL, messages=[{"role": "user", "content": PROMPT}]
)
plain = raw.parse()
check(raw.headers.get("x-aigw-cache", "").startswith("hit-"), f"plain call: {raw.headers}")
check(plain.choices[0].message.content == text1, f"plain call text {plain.choices[0].message}")
check(plain.choices[0].finish_reason == "stop", f"plain call finish {plain.choices[0]}")
check(plain.usage.total_tokens == usage1.total_tokens, f"plain call usage {plain.usage}")
print("ok chat plain call served from the stored stream")

# A paraphrase, streamed: a semantic hit replayed (cos 0.928 under the mock embedder).
v3, text3, finish3, usage3 = chat_stream(PROMPT.replace("home", "work"))
check(v3 == "hit-semantic", f"paraphrase stream: x-aigw-cache {v3}")
check(text3 == text1 and finish3 == "stop" and usage3 is not None, "paraphrase replay")
print("ok chat paraphrase stream replay")

# Responses API: the typed event stream, stored and replayed.
RPROMPT = "what is the tallest mountain in south america"
before = entries()
rv1, rtext1, done1, kinds1 = responses_stream(RPROMPT)
check(rv1 == "miss", f"first responses stream: x-aigw-cache {rv1}")
check(done1 is not None and done1.output_text == rtext1, f"first responses stream {kinds1}")
wait_entries(before + 1, "the responses stream")
rv2, rtext2, done2, kinds2 = responses_stream(RPROMPT)
check(rv2 in ("hit-exact", "hit-semantic"), f"second responses stream: x-aigw-cache {rv2}")
check(kinds2[0] == "response.created", f"replayed events start with {kinds2[0]}")
check(kinds2[-1] == "response.completed", f"replayed events end with {kinds2[-1]}")
check(rtext2 == rtext1, f"replayed deltas {rtext2!r} != {rtext1!r}")
check(done2.status == "completed" and done2.output_text == rtext1, f"replayed response {done2}")
check(done2.usage is not None and done2.usage.total_tokens > 0, f"replayed usage {done2.usage}")
print("ok responses stream replay")

# The SDK's stream helper over a replay.
with client.responses.stream(model=MODEL, input=RPROMPT) as s:
    final = s.get_final_response()
check(final.output_text == rtext1, f"stream helper over a replay: {final.output_text!r}")
print("ok responses stream helper over a replay")
print("all ok")
