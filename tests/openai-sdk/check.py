"""Drives DOL's OpenAI-compatible API with the official `openai` Python SDK.

Usage: python check.py <scenario>   (DOL_BASE_URL and DOL_API_KEY in the environment)

Scenarios:
  basic          models.list, a non-streamed and a streamed completion (usage included),
                 DOL's decision record, a 400 and a 401 surfaced as the SDK's exceptions
  broken-stream  a provider stream cut after its first bytes must raise openai.APIError
                 from the iterator, never end quietly as a success
  completions    completions.create (legacy): plain text, streamed text_completion chunks,
                 a 400 for several prompts
  responses      responses.create: plain text input, message items with instructions and
                 max_output_tokens, output_text, usage; streamed (raw events and the
                 responses.stream helper); a function tool round trip
                 (function_call item, function_call_output answered); streamed function calls
                 (raw events and the responses.stream helper's final response)
  tools          chat.completions.create with tools: a tool call (non-streamed and streamed
                 tool_call deltas), the tool result sent back and answered in text; a 400 for
                 a tool_choice naming an undeclared function
  embeddings     embeddings.create with float and base64 encodings (the SDK's default
                 asks for base64 and decodes it), a 400 and a 401 as the SDK's exceptions
  videos         videos.create + poll to completion + download_content, on an OpenAI-style
                 platform (bytes passed through) and a Runway-style one (a redirect the SDK
                 follows); input_reference (image-to-video) as the SDK's upload, a 400 for
                 a non-image and a 413 for one over 3 MiB; remix of the OpenAI-made video
                 (a 400 for the Runway one);
                 retrieve, list, a 400 for a bad size, delete
  images         images.generate: URLs and b64_json (a decodable PNG), n images, size and
                 quality, DOL's cost header; a 400 for a bad size and a 401 as the SDK's exceptions

Prints one line per check and exits non-zero on the first failure.
"""

import json
import os
import sys

import openai

BASE_URL = os.environ["DOL_BASE_URL"]
API_KEY = os.environ["DOL_API_KEY"]
PROMPT = "Explain how Rust ownership and borrowing prevent data races"


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def client(key=API_KEY):
    return openai.OpenAI(base_url=BASE_URL, api_key=key, max_retries=0, timeout=60)


def basic():
    c = client()
    ids = [m.id for m in c.models.list()]
    check("models.list includes the offline model", "dol-basic-offline" in ids, ids)

    r = c.chat.completions.create(model="auto", messages=[{"role": "user", "content": PROMPT}])
    text = r.choices[0].message.content
    check("non-streamed answer has text", bool(text), r)
    check("non-streamed usage", r.usage is not None and r.usage.total_tokens > 0, r.usage)
    dol = (r.model_extra or {}).get("dol")
    check("dol decision record", dol is not None and dol.get("tier") and dol.get("provider"), r.model_extra)

    raw = c.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": PROMPT + "?"}])
    check("x-dol-tier header", raw.headers.get("x-dol-tier") in ("comprehensive", "enhanced", "basic"), dict(raw.headers))

    stream = c.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": PROMPT + " in detail"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    check("streamed answer has text", len("".join(pieces)) > 0, pieces)
    check("streamed finish_reason", finish == "stop", finish)
    check("streamed usage chunk", usage is not None and usage.total_tokens > 0, usage)

    try:
        c.chat.completions.create(model="auto", messages=[])
        check("empty messages rejected", False, "no error")
    except openai.BadRequestError as e:
        check("empty messages rejected with 400", e.status_code == 400 and "messages" in str(e), str(e))

    try:
        client("dol_sk_00000000000000000000000000000000").chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}]
        )
        check("bad key rejected", False, "no error")
    except openai.AuthenticationError as e:
        check("bad key rejected with 401", e.status_code == 401, str(e))


def broken_stream():
    c = client()
    stream = c.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": PROMPT + " (broken)"}],
        stream=True,
        extra_headers={"cache-control": "no-cache"},
    )
    pieces = []
    try:
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    pieces.append(choice.delta.content)
        check("broken stream raises", False, f"stream ended quietly after {pieces!r}")
    except openai.APIError as e:
        check("broken stream raises openai.APIError", "stream" in str(e).lower(), str(e))
        check("some text arrived before the break", len(pieces) > 0, pieces)


def embeddings():
    c = client()
    texts = ["alpha beta", "gamma"]
    f = c.embeddings.create(model="text-embedding-3-small", input=texts, dimensions=4, encoding_format="float")
    check("float: one vector per input", len(f.data) == 2 and [d.index for d in f.data] == [0, 1], f)
    check("float: dimensions honoured", all(len(d.embedding) == 4 for d in f.data), f.data)
    check("float: usage", f.usage.prompt_tokens > 0 and f.usage.total_tokens == f.usage.prompt_tokens, f.usage)
    check("float: model named", f.model == "text-embedding-3-small", f.model)

    b = c.embeddings.create(model="text-embedding-3-small", input=texts, dimensions=4, encoding_format="base64")
    raw = b.data[0].embedding
    if isinstance(raw, str):
        import base64, struct
        data = base64.b64decode(raw)
        raw = list(struct.unpack("<%df" % (len(data) // 4), data))
    check("base64 decodes to the same vector", [round(x, 6) for x in raw] == [round(x, 6) for x in f.data[0].embedding], (raw, f.data[0].embedding))

    d = c.embeddings.create(model="text-embedding-3-small", input="one text", dimensions=4)
    check("SDK default (base64 under the hood) decodes to floats", len(d.data[0].embedding) == 4 and all(isinstance(x, float) for x in d.data[0].embedding), d.data)

    try:
        c.embeddings.create(model="text-embedding-3-small", input="")
        check("empty input rejected", False, "no error")
    except openai.BadRequestError as e:
        check("empty input rejected with 400", e.status_code == 400 and "input" in str(e), str(e))

    try:
        client("dol_sk_00000000000000000000000000000000").embeddings.create(model="auto", input="x")
        check("bad key rejected", False, "no error")
    except openai.AuthenticationError as e:
        check("bad key rejected with 401", e.status_code == 401, str(e))


def videos():
    c = client()
    v = c.videos.create(prompt="a red fox crossing fresh snow", model="sora-2", seconds="4", size="1280x720")
    check("videos.create answers a video object", v.object == "video" and v.status in ("queued", "in_progress"), v)
    done = c.videos.poll(v.id, poll_interval_ms=20)
    check("videos.poll ends completed", done.status == "completed" and done.progress == 100, done)
    check("completed_at and seconds", done.completed_at is not None and str(done.seconds) == "4", done)
    dol = (done.model_extra or {}).get("dol") or {}
    check("DOL names the platform", dol.get("platform") == "openai", done.model_extra)
    data = c.videos.download_content(v.id).content
    check("download_content passes the platform's bytes", data.startswith(b"MOCKMP4"), data[:40])

    # Image-to-video: the SDK uploads input_reference as a multipart file.
    png = b"\x89PNG\r\n\x1a\n" + b"SDKIMAGE" * 8
    i = c.videos.create(prompt="the fox from this picture", model="sora-2", input_reference=("ref.png", png, "image/png"))
    i = c.videos.poll(i.id, poll_interval_ms=20)
    check("videos.create with input_reference completes", i.status == "completed", i)
    try:
        c.videos.create(prompt="x", input_reference=("notes.txt", b"hello", "text/plain"))
        check("a non-image input_reference rejected", False, "no error")
    except openai.BadRequestError as e:
        check("a non-image input_reference rejected with 400", e.status_code == 400 and e.param == "input_reference", str(e))
    try:
        c.videos.create(prompt="x", input_reference=("big.png", png + b"\0" * (3 * 1024 * 1024), "image/png"))
        check("an oversized input_reference rejected", False, "no error")
    except openai.APIStatusError as e:
        check("an oversized input_reference rejected with 413", e.status_code == 413 and "input_reference" in str(e), str(e))

    r = c.videos.create(prompt="waves at dusk", model="veo3.1_fast", seconds="4")
    r = c.videos.poll(r.id, poll_interval_ms=20)
    check("a Runway-style job completes", r.status == "completed", r)
    data = c.videos.download_content(r.id).content
    check("download_content follows the redirect to the platform's file", data.startswith(b"MOCKMP4"), data[:40])

    m = c.videos.remix(v.id, prompt="the same fox at night")
    check("videos.remix makes a new video from its source", m.remixed_from_video_id == v.id and m.id != v.id, m)
    m = c.videos.poll(m.id, poll_interval_ms=20)
    check("the remix completes", m.status == "completed", m)
    try:
        c.videos.remix(r.id, prompt="x")
        check("a Runway video's remix rejected", False, "no error")
    except openai.BadRequestError as e:
        check("a Runway video's remix rejected with 400", e.status_code == 400 and e.param == "video_id" and "runway" in str(e), str(e))

    check("videos.retrieve", c.videos.retrieve(v.id).id == v.id)
    page = c.videos.list(limit=1)
    check("videos.list pages by one", len(page.data) == 1 and page.has_more, page)
    ids = [x.id for x in c.videos.list(limit=1)]
    check("auto-pagination walks both", set(ids) >= {v.id, r.id}, ids)

    try:
        c.videos.create(prompt="x", size="huge")
        check("bad size rejected", False, "no error")
    except openai.BadRequestError as e:
        check("bad size rejected with 400", e.status_code == 400 and "size" in str(e), str(e))

    d = c.videos.delete(v.id)
    check("videos.delete", d.deleted and d.id == v.id, d)
    try:
        c.videos.retrieve(v.id)
        check("deleted video gone", False, "no error")
    except openai.NotFoundError as e:
        check("deleted video is a 404", e.status_code == 404, str(e))


def images():
    import base64

    c = client()
    r = c.images.generate(model="dall-e-2", prompt="a lighthouse at dawn", n=2, size="512x512")
    check("images: two images", len(r.data) == 2, r)
    check("images: URLs by default", all(d.url and d.url.startswith("https://") for d in r.data), r.data)
    check("images: created", r.created > 0, r.created)

    raw = c.images.with_raw_response.generate(model="dall-e-3", prompt="a fox", quality="hd",
                                              response_format="b64_json")
    r = raw.parse()
    png = base64.b64decode(r.data[0].b64_json)
    check("images: b64_json decodes to a PNG", png[:8] == b"\x89PNG\r\n\x1a\n", png[:8])
    check("images: revised_prompt", bool(r.data[0].revised_prompt), r.data[0])
    check("images: priced per image (hd 1024x1024 = $0.08)", raw.headers.get("x-dol-cost-micros") == "80000",
          dict(raw.headers))

    try:
        c.images.generate(model="dall-e-2", prompt="p", size="9x9")
        check("images: bad size rejected", False, "no error")
    except openai.BadRequestError as e:
        check("images: bad size rejected with 400", e.status_code == 400 and "size" in str(e), str(e))

    try:
        client("dol_sk_00000000000000000000000000000000").images.generate(prompt="p")
        check("images: bad key rejected", False, "no error")
    except openai.AuthenticationError as e:
        check("images: bad key rejected with 401", e.status_code == 401, str(e))


def completions():
    c = client()
    r = c.completions.create(model="auto", prompt=PROMPT, max_tokens=200)
    check("completions: a text_completion", r.object == "text_completion" and r.id.startswith("cmpl-"), r)
    check("completions: text", len(r.choices[0].text) > 0, r.choices)
    check("completions: finish_reason", r.choices[0].finish_reason in ("stop", "length"), r.choices)
    check("completions: usage", r.usage is not None and r.usage.total_tokens > 0, r.usage)

    pieces = []
    for chunk in c.completions.create(model="auto", prompt=PROMPT + " in detail", stream=True):
        check("completions: chunk object", chunk.object == "text_completion", chunk)
        pieces.extend(ch.text for ch in chunk.choices if ch.text)
    check("completions: streamed text", len("".join(pieces)) > 0, pieces)

    try:
        c.completions.create(model="auto", prompt=["one", "two"])
        check("completions: several prompts rejected", False, "no error")
    except openai.BadRequestError as e:
        check("completions: several prompts rejected with 400", e.status_code == 400 and "prompt" in str(e), str(e))


def responses():
    c = client()
    r = c.responses.create(model="auto", input=PROMPT)
    check("responses: a response object", r.object == "response" and r.id.startswith("resp_"), r)
    check("responses: output_text", len(r.output_text) > 0, r.output)
    check("responses: completed", r.status == "completed", r.status)
    check("responses: usage", r.usage.input_tokens > 0 and r.usage.output_tokens > 0, r.usage)

    r = c.responses.create(
        model="auto",
        instructions="Answer briefly.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": PROMPT + "?"}]}],
        max_output_tokens=300,
        metadata={"run": "sdk"},
    )
    check("responses: items and instructions", len(r.output_text) > 0 and r.instructions == "Answer briefly.", r)
    check("responses: metadata echoed", r.metadata == {"run": "sdk"}, r.metadata)

    events = c.responses.create(model="auto", input=PROMPT + " streamed", stream=True)
    kinds, deltas, final = [], [], None
    for e in events:
        kinds.append(e.type)
        if e.type == "response.output_text.delta":
            deltas.append(e.delta)
        if e.type == "response.completed":
            final = e.response
    check("raw stream: created first", kinds[:2] == ["response.created", "response.in_progress"], kinds)
    check("raw stream: completed last", kinds[-1] == "response.completed", kinds)
    check("raw stream: text matches", final is not None and final.output_text == "".join(deltas), (final, deltas))

    with c.responses.stream(model="auto", input=PROMPT + " via the helper", extra_headers={"cache-control": "no-cache"}) as s:
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        done = s.get_final_response()
    check("stream helper: text arrived", len(text) > 0, text)
    check("stream helper: final response", done.output_text == text and done.usage.output_tokens > 0, done)

    weather = [{"type": "function", "name": "get_weather", "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    question = [{"role": "user", "content": "What is the weather in Paris today?"}]
    r = c.responses.create(model="auto", input=question, tools=weather)
    calls = [o for o in r.output if o.type == "function_call"]
    check("tools: a function_call item", len(calls) == 1 and calls[0].name == "get_weather", r.output)
    check("tools: arguments with the city", "city" in json.loads(calls[0].arguments), calls[0].arguments)
    follow = question + [calls[0].model_dump(exclude_none=True),
                         {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 degrees"}]
    r = c.responses.create(model="auto", input=follow, tools=weather)
    check("tools: the output is answered in text", len(r.output_text) > 0, r.output)

    events = list(c.responses.create(model="auto", input=question, tools=weather, stream=True))
    kinds = [e.type for e in events]
    added = [e.item for e in events if e.type == "response.output_item.added"]
    check("streamed tools: a function_call item added", added and added[0].type == "function_call", kinds)
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    check("streamed tools: argument deltas add up", done and done[0].arguments == deltas
          and "city" in json.loads(deltas), (deltas, kinds))
    check("streamed tools: completed last", kinds[-1] == "response.completed", kinds)

    with c.responses.stream(model="auto", input=question, tools=weather,
                            extra_headers={"cache-control": "no-cache"}) as s:
        for _ in s:
            pass
        final = s.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    check("stream helper with tools: the call in the final response",
          len(calls) == 1 and calls[0].name == "get_weather" and "city" in json.loads(calls[0].arguments), final.output)


TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]


def tools():
    import json

    c = client()
    question = [{"role": "user", "content": "What is the weather in Paris today?"}]
    r = c.chat.completions.create(model="auto", messages=question, tools=TOOLS)
    choice = r.choices[0]
    check("tools: finish_reason tool_calls", choice.finish_reason == "tool_calls", choice)
    calls = choice.message.tool_calls or []
    check("tools: one call of get_weather", len(calls) == 1 and calls[0].function.name == "get_weather", calls)
    args = json.loads(calls[0].function.arguments)
    check("tools: arguments are a JSON object with the city", isinstance(args.get("city"), str), args)

    stream = c.chat.completions.create(model="auto", messages=question, tools=TOOLS, stream=True,
                                       extra_headers={"cache-control": "no-cache"})
    names, arguments, finish = [], "", None
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            for tc in delta.tool_calls or []:
                if tc.function and tc.function.name:
                    names.append(tc.function.name)
                if tc.function and tc.function.arguments:
                    arguments += tc.function.arguments
            finish = chunk.choices[0].finish_reason or finish
    check("tools: streamed tool_call deltas", names == ["get_weather"] and "city" in json.loads(arguments), (names, arguments))
    check("tools: streamed finish_reason tool_calls", finish == "tool_calls", finish)

    follow = question + [
        {"role": "assistant", "content": None, "tool_calls": [calls[0].model_dump()]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "18 degrees and sunny"},
    ]
    r = c.chat.completions.create(model="auto", messages=follow, tools=TOOLS)
    check("tools: the tool result is answered in text", r.choices[0].finish_reason == "stop" and r.choices[0].message.content, r)

    try:
        c.chat.completions.create(model="auto", messages=question, tools=TOOLS,
                                  tool_choice={"type": "function", "function": {"name": "nope"}})
        check("tools: undeclared tool_choice rejected", False, "no error")
    except openai.BadRequestError as e:
        check("tools: undeclared tool_choice rejected with 400", e.status_code == 400 and "tool_choice" in str(e), str(e))


if __name__ == "__main__":
    {"basic": basic, "broken-stream": broken_stream, "completions": completions, "embeddings": embeddings,
     "images": images, "responses": responses, "tools": tools, "videos": videos}[sys.argv[1]]()
    print("all checks passed")
