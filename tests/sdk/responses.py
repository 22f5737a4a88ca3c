"""The official OpenAI Python SDK's Responses API through aigw, in every client style.

Usage: python responses.py GATEWAY_URL MODEL...   (prints one line per check; exits non-zero on
the first failure). Run by tests/sdk.rs with the SDK that scripts/test installs.
"""

import sys

from openai import AzureOpenAI, OpenAI

URL = sys.argv[1].rstrip("/")
MODELS = sys.argv[2:]
KEY = "sdk-client-key"

CLIENTS = {
    "openai": OpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=0),
    "azure-v1": OpenAI(base_url=f"{URL}/openai/v1", api_key=KEY, max_retries=0),
    "azure": AzureOpenAI(
        azure_endpoint=URL, api_key=KEY, api_version="2025-03-01-preview", max_retries=0
    ),
}


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


for style, client in CLIENTS.items():
    for model in MODELS:
        where = f"{style} {model}"
        # Not streamed.
        r = client.responses.create(model=model, input="Say hello", instructions="Be brief.")
        check(r.status == "completed", f"{where}: status {r.status}")
        check(r.output_text.startswith("Mock response from"), f"{where}: text {r.output_text!r}")
        check(r.usage.input_tokens > 0 and r.usage.output_tokens > 0, f"{where}: usage {r.usage}")
        check(r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, where)

        # Streamed: the typed events, text deltas, usage in response.completed.
        deltas, completed, kinds = [], None, []
        for event in client.responses.create(model=model, input="Say hello", stream=True):
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.completed":
                completed = event.response
        check(kinds[0] == "response.created", f"{where}: first event {kinds[0]}")
        check(completed is not None, f"{where}: no response.completed in {kinds}")
        check("".join(deltas) == completed.output_text, f"{where}: deltas vs final text")
        check(completed.usage.total_tokens > 0, f"{where}: stream usage")

        # The stream helper of the SDK.
        with client.responses.stream(model=model, input="Say hello") as s:
            final = s.get_final_response()
        check(final.output_text == completed.output_text, f"{where}: stream helper text")

        # The stored response: retrieve, input items, continue, delete.
        got = client.responses.retrieve(r.id)
        check(got.id == r.id and got.output_text == r.output_text, f"{where}: retrieve")
        items = client.responses.input_items.list(r.id)
        check(len(items.data) == 1, f"{where}: input items {items.data}")
        follow = client.responses.create(model=model, input="And again", previous_response_id=r.id)
        check(follow.previous_response_id == r.id, f"{where}: previous_response_id")
        client.responses.delete(r.id)
        try:
            client.responses.retrieve(r.id)
            check(False, f"{where}: a deleted response was still served")
        except Exception as e:  # the SDK raises NotFoundError
            check(type(e).__name__ == "NotFoundError", f"{where}: after delete {e!r}")

        # Chat through the same client, for contrast.
        chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        check(chat.choices[0].message.content.startswith("Mock response from"), f"{where}: chat")
        print(f"ok {where}")
print("all ok")
