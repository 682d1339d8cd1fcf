//! The streamed `POST /v1/responses` (issue 15): the pipeline's OpenAI chat
//! SSE stream — which every provider mapping produces, function calls
//! included as `delta.tool_calls` pieces — rewritten into the Responses
//! API's typed events.
//!
//! Output items open as they appear: text opens a `message` item
//! (`response.output_item.added`, `response.content_part.added`, then
//! `response.output_text.delta` …), each function call a `function_call`
//! item (`response.output_item.added` with `call_id`, `name` and empty
//! `arguments`, then `response.function_call_arguments.delta` …). An item is
//! finished (`response.output_text.done` + `response.content_part.done`, or
//! `response.function_call_arguments.done`; then
//! `response.output_item.done`) when the next one opens or the stream ends;
//! the last event is `response.completed` (or `response.incomplete`) whose
//! `output` lists every item in order. Every event has a `sequence_number`;
//! an error frame becomes an `error` event.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::providers::SseParser;
use super::responses_ingress::{Echo, Parts, build, hex_of, message_item, output_text};

/// One output item of the streamed answer.
#[derive(Debug)]
enum Item {
    /// A `message` item: its id suffix and its text so far.
    Message { hex: String, text: String },
    /// A `function_call` item.
    Call {
        call_id: String,
        name: Value,
        arguments: String,
    },
}

impl Item {
    fn id(&self) -> String {
        match self {
            Item::Message { hex, .. } => format!("msg_{hex}"),
            Item::Call { call_id, .. } => format!("fc_{call_id}"),
        }
    }

    fn value(&self, status: &str) -> Value {
        match self {
            Item::Message { hex, text } => message_item(hex, text, status),
            Item::Call {
                call_id,
                name,
                arguments,
            } => json!({"type": "function_call", "id": self.id(), "call_id": call_id,
                "name": name, "arguments": arguments, "status": status}),
        }
    }
}

/// Rewrites the pipeline's OpenAI SSE stream into the Responses API's typed
/// events (see the module documentation for their order).
#[derive(Debug)]
pub struct StreamTranslator {
    parser: SseParser,
    echo: Echo,
    sequence: u64,
    hex: String,
    created: Value,
    model: Value,
    items: Vec<Item>,
    /// The item still open (the last one), if any.
    open: Option<usize>,
    /// Output index per chat tool-call `index`.
    calls: BTreeMap<u64, usize>,
    finish: Option<String>,
    usage: Option<(u64, u64)>,
    dol: Option<Value>,
    started: bool,
    done: bool,
}

impl StreamTranslator {
    /// A translator for a request that echoes `echo`.
    pub fn new(echo: Echo) -> Self {
        Self {
            parser: SseParser::new(),
            echo,
            sequence: 0,
            hex: String::new(),
            created: Value::Null,
            model: Value::Null,
            items: Vec::new(),
            open: None,
            calls: BTreeMap::new(),
            finish: None,
            usage: None,
            dol: None,
            started: false,
            done: false,
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, name: &str, mut data: Value) {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.extend(format!("event: {name}\ndata: {data}\n\n").into_bytes());
    }

    fn response(&self, finished: bool) -> Value {
        let text: String = self
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Message { text, .. } => Some(text.as_str()),
                Item::Call { .. } => None,
            })
            .collect();
        let mut r = build(
            &Parts {
                hex: &self.hex,
                created: &self.created,
                model: &self.model,
                text: finished.then_some(text.as_str()),
                calls: Vec::new(),
                finish: self.finish.as_deref(),
                usage: self.usage,
                dol: self.dol.as_ref(),
            },
            &self.echo,
        );
        // The items in the order they were streamed (text may follow calls).
        r["output"] = if finished {
            self.items.iter().map(|i| i.value("completed")).collect()
        } else {
            json!([])
        };
        r
    }

    fn text_ids(&self, index: usize) -> Value {
        json!({"item_id": self.items[index].id(), "output_index": index, "content_index": 0})
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        self.started = true;
        self.hex = hex_of(chunk["id"].as_str().unwrap_or_default()).to_owned();
        self.created = chunk["created"].clone();
        self.model = chunk["model"].clone();
        let r = self.response(false);
        self.emit(out, "response.created", json!({"response": r}));
        self.emit(out, "response.in_progress", json!({"response": r}));
    }

    /// Finishes the open item, then adds `item` and opens it.
    fn open_item(&mut self, item: Item, out: &mut Vec<u8>) -> usize {
        self.close_open(out);
        let index = self.items.len();
        let added = item.value("in_progress");
        let is_message = matches!(item, Item::Message { .. });
        self.items.push(item);
        self.open = Some(index);
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        );
        if is_message {
            let mut part = self.text_ids(index);
            part["part"] = output_text("");
            self.emit(out, "response.content_part.added", part);
        }
        index
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        let Some(index) = self.open.take() else {
            return;
        };
        let ids = self.text_ids(index);
        match &self.items[index] {
            Item::Message { text, .. } => {
                let text = text.clone();
                let mut done = ids.clone();
                done["text"] = json!(text);
                done["logprobs"] = json!([]);
                self.emit(out, "response.output_text.done", done);
                let mut part = ids;
                part["part"] = output_text(&text);
                self.emit(out, "response.content_part.done", part);
            }
            Item::Call { arguments, .. } => {
                let done = json!({"item_id": ids["item_id"], "output_index": index,
                    "arguments": arguments});
                self.emit(out, "response.function_call_arguments.done", done);
            }
        }
        let item = self.items[index].value("completed");
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }

    fn text_delta(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Some(i) if matches!(self.items[i], Item::Message { .. }) => i,
            _ => {
                // The first message keeps the plain id; a later one (text
                // after a call) gets its output index as a suffix.
                let hex = if self.items.is_empty() {
                    self.hex.clone()
                } else {
                    format!("{}_{}", self.hex, self.items.len())
                };
                let item = Item::Message {
                    hex,
                    text: String::new(),
                };
                self.open_item(item, out)
            }
        };
        if let Item::Message { text: t, .. } = &mut self.items[index] {
            t.push_str(text);
        }
        let mut delta = self.text_ids(index);
        delta["delta"] = json!(text);
        delta["logprobs"] = json!([]);
        self.emit(out, "response.output_text.delta", delta);
    }

    /// One OpenAI `delta.tool_calls` piece: the first piece of a call
    /// (`id`, `function.name`) opens its item, argument text is a delta.
    fn call_delta(&mut self, call: &Value, out: &mut Vec<u8>) {
        let n = call["index"].as_u64().unwrap_or(0);
        let index = match self.calls.get(&n) {
            Some(i) => *i,
            None => {
                // A provider that gives no id still needs a stable call_id.
                let call_id = call["id"]
                    .as_str()
                    .map_or_else(|| format!("call_{}_{n}", self.hex), str::to_owned);
                let item = Item::Call {
                    call_id,
                    name: call["function"]["name"].clone(),
                    arguments: String::new(),
                };
                let i = self.open_item(item, out);
                self.calls.insert(n, i);
                i
            }
        };
        let Some(piece) = call["function"]["arguments"]
            .as_str()
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        if let Item::Call { arguments, .. } = &mut self.items[index] {
            arguments.push_str(piece);
        }
        let delta = json!({"item_id": self.items[index].id(), "output_index": index,
            "delta": piece});
        self.emit(out, "response.function_call_arguments.delta", delta);
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started {
            self.start(&json!({}), out);
        }
        if self.items.is_empty() {
            // An empty answer is still one (empty) message, as unstreamed.
            let item = Item::Message {
                hex: self.hex.clone(),
                text: String::new(),
            };
            self.open_item(item, out);
        }
        self.close_open(out);
        self.done = true;
        let r = self.response(true);
        let name = if r["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(out, name, json!({"response": r}));
    }

    /// Consumes bytes the pipeline sent; returns the events to send.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in self.parser.feed(bytes) {
            if self.done {
                break;
            }
            if ev.data.trim() == "[DONE]" {
                self.end(&mut out);
                continue;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(&ev.data) else {
                continue;
            };
            if let Some(e) = chunk.get("error") {
                self.done = true;
                let message = e["message"].as_str().unwrap_or("stream failed").to_owned();
                // `error` also carries the object the OpenAI SDKs raise on.
                let data = json!({"code": e["code"], "message": message, "param": null,
                    "error": {"message": message, "type": e["type"]}});
                self.emit(&mut out, "error", data);
                continue;
            }
            if !self.started {
                self.start(&chunk, &mut out);
            }
            let choice = &chunk["choices"][0];
            if let Some(text) = choice["delta"]["content"]
                .as_str()
                .filter(|t| !t.is_empty())
            {
                self.text_delta(text, &mut out);
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                self.call_delta(call, &mut out);
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                self.finish = Some(f.to_owned());
            }
            if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
                self.usage = Some((
                    u["prompt_tokens"].as_u64().unwrap_or(0),
                    u["completion_tokens"].as_u64().unwrap_or(0),
                ));
            }
            if let Some(d) = chunk.get("dol").filter(|d| !d.is_null()) {
                self.dol = Some(d.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(delta: Value, finish: Option<&str>) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-x", "created": 9, "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    }

    fn chunk(text: &str, finish: Option<&str>) -> String {
        frame(json!({"content": text}), finish)
    }

    fn call(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> Value {
        let mut c = json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["type"] = json!("function");
        }
        if let Some(name) = name {
            c["function"]["name"] = json!(name);
        }
        json!({"tool_calls": [c]})
    }

    const USAGE: &[u8] = b"data: {\"id\":\"chatcmpl-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,\"total_tokens\":5}}\n\n";

    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let mut p = SseParser::new();
        p.feed(bytes)
            .into_iter()
            .map(|e| {
                (
                    e.event.unwrap_or_default(),
                    serde_json::from_str(&e.data).unwrap(),
                )
            })
            .collect()
    }

    fn names(ev: &[(String, Value)]) -> Vec<&str> {
        ev.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn assert_sequenced(ev: &[(String, Value)]) {
        for (i, (name, data)) in ev.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], i);
        }
    }

    #[test]
    fn streams_typed_events_in_order_with_sequence_numbers() {
        let mut t = StreamTranslator::new(Echo::default());
        let mut out = t.feed(chunk("Hel", None).as_bytes());
        out.extend(t.feed(chunk("lo", Some("stop")).as_bytes()));
        out.extend(t.feed(USAGE));
        out.extend(t.feed(b"data: [DONE]\n\n"));
        let ev = events(&out);
        assert_eq!(
            names(&ev),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_sequenced(&ev);
        let done = &ev[9].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["usage"]["total_tokens"], 5);
        assert_eq!(ev[0].1["response"]["status"], "in_progress");
        assert_eq!(ev[0].1["response"]["output"], json!([]));
        assert_eq!(ev[4].1["item_id"], "msg_x");
    }

    #[test]
    fn streamed_function_calls_become_function_call_items_with_argument_deltas() {
        let stream = [
            frame(call(0, Some("call_1"), Some("get_weather"), ""), None),
            frame(call(0, None, None, "{\"city\":"), None),
            frame(call(0, None, None, "\"Oslo\"}"), None),
            frame(
                call(1, Some("call_2"), Some("get_time"), "{}"),
                Some("tool_calls"),
            ),
        ]
        .concat();
        let mut t = StreamTranslator::new(Echo::default());
        let mut out = t.feed(stream.as_bytes());
        out.extend(t.feed(USAGE));
        out.extend(t.feed(b"data: [DONE]\n\n"));
        let ev = events(&out);
        assert_eq!(
            names(&ev),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_sequenced(&ev);
        assert_eq!(
            ev[2].1["item"],
            json!({"type": "function_call", "id": "fc_call_1", "call_id": "call_1",
                "name": "get_weather", "arguments": "", "status": "in_progress"})
        );
        assert_eq!(ev[2].1["output_index"], 0);
        assert_eq!(
            (
                &ev[3].1["item_id"],
                &ev[3].1["output_index"],
                &ev[3].1["delta"]
            ),
            (&json!("fc_call_1"), &json!(0), &json!("{\"city\":"))
        );
        assert_eq!(ev[5].1["arguments"], "{\"city\":\"Oslo\"}");
        assert_eq!(ev[6].1["item"]["status"], "completed");
        assert_eq!(ev[6].1["item"]["arguments"], "{\"city\":\"Oslo\"}");
        assert_eq!(ev[7].1["output_index"], 1);
        assert_eq!(ev[9].1["item_id"], "fc_call_2");
        let done = &ev[11].1["response"];
        assert_eq!(done["status"], "completed");
        let output = done["output"].as_array().unwrap();
        assert_eq!(output.len(), 2, "no empty message beside the calls");
        assert_eq!(output[0]["call_id"], "call_1");
        assert_eq!(output[1]["name"], "get_time");
        assert_eq!(output[1]["arguments"], "{}");
    }

    #[test]
    fn text_then_a_call_are_two_items_in_order() {
        let stream = [
            chunk("Let me check.", None),
            frame(call(0, Some("call_9"), Some("w"), "{}"), Some("tool_calls")),
            chunk("", None),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        let ev = events(&StreamTranslator::new(Echo::default()).feed(stream.as_bytes()));
        assert_eq!(
            names(&ev)[2..],
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let output = &ev.last().unwrap().1["response"]["output"];
        assert_eq!(output[0]["type"], "message");
        assert_eq!(output[0]["content"][0]["text"], "Let me check.");
        assert_eq!(output[1]["type"], "function_call");
        assert_eq!(ev[8].1["output_index"], 1);
    }

    #[test]
    fn a_call_without_an_id_gets_a_stable_one() {
        let stream = [
            frame(call(0, None, Some("w"), "{}"), Some("tool_calls")),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        let ev = events(&StreamTranslator::new(Echo::default()).feed(stream.as_bytes()));
        assert_eq!(ev[2].1["item"]["call_id"], "call_x_0");
        assert_eq!(
            ev.last().unwrap().1["response"]["output"][0]["call_id"],
            "call_x_0"
        );
    }

    #[test]
    fn an_empty_answer_is_one_empty_message() {
        let stream = [chunk("", Some("stop")), "data: [DONE]\n\n".to_owned()].concat();
        let ev = events(&StreamTranslator::new(Echo::default()).feed(stream.as_bytes()));
        assert_eq!(ev.len(), 8, "{:?}", names(&ev));
        assert_eq!(ev[7].1["response"]["output"][0]["content"][0]["text"], "");
    }

    #[test]
    fn a_cut_answer_is_incomplete_and_an_error_frame_an_error_event() {
        let mut t = StreamTranslator::new(Echo::default());
        let mut out = t.feed(chunk("a", Some("length")).as_bytes());
        out.extend(t.feed(b"data: [DONE]\n\n"));
        assert_eq!(events(&out).last().unwrap().0, "response.incomplete");
        let mut t = StreamTranslator::new(Echo::default());
        let mut out = t.feed(chunk("a", None).as_bytes());
        out.extend(
            t.feed(b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n"),
        );
        let (name, data) = events(&out).pop().unwrap();
        assert_eq!(
            (name.as_str(), data["message"].as_str()),
            ("error", Some("boom"))
        );
    }

    proptest! {
        #[test]
        fn split_streams_translate_the_same(cut in 1usize..600) {
            let mut all = chunk("Hello there", None);
            all.push_str(&frame(call(0, Some("call_1"), Some("w"), "{\"a\":"), None));
            all.push_str(&frame(call(0, None, None, "1}"), Some("tool_calls")));
            all.push_str("data: [DONE]\n\n");
            let whole = StreamTranslator::new(Echo::default()).feed(all.as_bytes());
            let bytes = all.as_bytes();
            let cut = cut.min(bytes.len());
            let mut t = StreamTranslator::new(Echo::default());
            let mut parts = t.feed(&bytes[..cut]);
            parts.extend(t.feed(&bytes[cut..]));
            prop_assert_eq!(whole, parts);
        }
    }
}
