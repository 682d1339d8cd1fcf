"""Drives DOL's Anthropic Messages entry point with the official `anthropic` Python SDK.

Usage: python check.py <scenario>   (DOL_BASE_URL and DOL_API_KEY in the environment;
DOL_BASE_URL is the host root: the SDK appends /v1/messages)

Scenarios:
  messages   messages.create plain, messages.stream (text_stream and the final message),
             create(stream=True) event order, a 400 and a 401 as the SDK's exceptions

Prints one line per check and exits non-zero on the first failure.
"""

import os
import sys

import anthropic

BASE_URL = os.environ["DOL_BASE_URL"]
API_KEY = os.environ["DOL_API_KEY"]
PROMPT = "Explain how Rust ownership and borrowing prevent data races"


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def client(key=API_KEY):
    return anthropic.Anthropic(base_url=BASE_URL, api_key=key, max_retries=0, timeout=60)


def messages():
    c = client()
    r = c.messages.create(
        model="auto",
        max_tokens=256,
        system="You are concise.",
        messages=[{"role": "user", "content": PROMPT}],
        stop_sequences=["\n\n\n"],
    )
    check("create: a message", r.type == "message" and r.role == "assistant", r)
    check("create: text content", r.content and r.content[0].type == "text" and r.content[0].text, r.content)
    check("create: stop_reason", r.stop_reason in ("end_turn", "max_tokens", "stop_sequence"), r.stop_reason)
    check("create: usage", r.usage.input_tokens > 0 and r.usage.output_tokens > 0, r.usage)
    check("create: msg_ id", r.id.startswith("msg_"), r.id)

    with c.messages.stream(
        model="auto",
        max_tokens=256,
        messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT + " in detail"}]}],
        extra_headers={"cache-control": "no-cache"},
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    check("stream: text arrived", len(text) > 0, text)
    check("stream: final message text matches", final.content[0].text == text, (final.content, text))
    check("stream: final stop_reason", final.stop_reason == "end_turn", final.stop_reason)
    check("stream: output tokens", final.usage.output_tokens > 0, final.usage)

    events = c.messages.create(
        model="auto",
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT + " briefly"}],
        stream=True,
    )
    kinds = [e.type for e in events]
    check("raw stream: starts with message_start", kinds[0] == "message_start", kinds)
    check("raw stream: ends with message_delta, message_stop", kinds[-2:] == ["message_delta", "message_stop"], kinds)
    check("raw stream: text deltas", "content_block_delta" in kinds, kinds)

    try:
        c.messages.create(model="auto", max_tokens=10, messages=[])
        check("empty messages rejected", False, "no error")
    except anthropic.BadRequestError as e:
        check("empty messages rejected with 400", e.status_code == 400 and "messages" in str(e), str(e))

    try:
        client("dol_sk_00000000000000000000000000000000").messages.create(
            model="auto", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        check("bad key rejected", False, "no error")
    except anthropic.AuthenticationError as e:
        check("bad key rejected with 401", e.status_code == 401, str(e))


if __name__ == "__main__":
    {"messages": messages}[sys.argv[1]]()
    print("all checks passed")
