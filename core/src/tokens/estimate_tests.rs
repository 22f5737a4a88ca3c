//! The borrowing estimate against the `Value`-tree one it replaced, on chosen and generated bodies.

use serde_json::{json, Value};

use super::super::{encoding_for, estimate_value};
use super::*;

/// The estimate as it was computed before: parse a `Value`, walk it.
fn old(model: &str, body: &[u8]) -> usize {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => estimate_value(encoding_for(model), &v),
        Err(_) => 0,
    }
}

#[track_caller]
fn same(model: &str, body: &str) -> usize {
    let (new, was) = (
        estimate_prompt(model, body.as_bytes()),
        old(model, body.as_bytes()),
    );
    assert_eq!(new, was, "{model}: {body}");
    new
}

const BODIES: &[&str] = &[
    // Chat: string content, names, array parts, null and object content, odd messages.
    r#"{"model":"gpt-4o","messages":[{"role":"system","content":"You are terse."},{"role":"user","name":"bob","content":"hello world"}]}"#,
    r#"{"messages":[{"role":"user","content":[{"type":"text","text":"hello world"},{"type":"image_url","image_url":{"url":"https://x.invalid/a.png","detail":"low"}},"a bare string part",7,null,[1,2],{"type":"text"},{"text":null},{"text":{"b":1,"a":[true,false]}}]}]}"#,
    r#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"22C"}]}"#,
    r#"{"messages":[{"role":"user","content":{"simulation":{"default":{"response_status_code":429}}}}]}"#,
    r#"{"messages":[7,"text",null,true,[1,"a"],{"content":true},{"content":1.5e3},{"name":null}]}"#,
    r#"{"messages":"hello world"}"#,
    r#"{"messages":{"z":1,"a":2}}"#,
    r#"{"messages":42}"#,
    r#"{"messages":[]}"#,
    r#"{"messages":null}"#,
    // Tools and functions, counted as their JSON (keys sorted, a string with its quotes).
    r#"{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather \"now\" in a city\n","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["city"]}}}],"tool_choice":"auto"}"#,
    r#"{"functions":[{"name":"f","parameters":{}}],"messages":[{"role":"user","content":"x"}]}"#,
    r#"{"tools":null,"functions":"just a string"}"#,
    r#"{"tools":{"zeta":-0.0,"alpha":1e-7,"mid":18446744073709551615,"neg":-9223372036854775808,"big":1e300,"int_as_float":2.0}}"#,
    r#"{"tools":[1,-1,0.1,true,false,null,"\u00e9\u0000\u001f\/","emoji 😀",{}]}"#,
    // Repeated keys: the last one counts, once.
    r#"{"messages":[{"role":"user","content":"first"}],"messages":[{"role":"user","content":"second, longer text here"}]}"#,
    r#"{"messages":[{"role":"user","content":"a","content":"bb bb bb","name":"x","name":"yy"}]}"#,
    r#"{"tools":[{"b":1,"a":2,"b":3,"a":{"y":1,"x":2,"y":[3]}}]}"#,
    r#"{"messages":[{"content":[{"text":"one","text":"two three"}]}]}"#,
    // Escaped keys and values.
    r#"{"mess\u0061ges":[{"r\u006fle":"user","n\u0061me":"b\u00f6b","content":"tab\there \"quoted\" \\ back"}]}"#,
    // Completions, embeddings, Responses.
    r#"{"model":"gpt-3.5-turbo-instruct","prompt":"hello world"}"#,
    r#"{"prompt":["hello world","hello world"]}"#,
    r#"{"prompt":[[1,2,3],[4,5]],"input":[1,2,3,4]}"#,
    r#"{"input":["hello world",7,[1,[2,3],"x"],{"role":"user","content":"hi"},null,true,2.5]}"#,
    r#"{"model":"gpt-4.1","input":"Tell me a three sentence bedtime story about a unicorn."}"#,
    r#"{"model":"gpt-4.1","instructions":"Be brief.","input":[{"role":"user","content":[{"type":"input_text","text":"what is in this image?"},{"type":"input_image","image_url":"https://x.invalid/b.jpg"}]}],"tools":[{"type":"web_search_preview"}]}"#,
    r#"{"input":{"b":"x","a":null}}"#,
    r#"{"input":12}"#,
    r#"{"prompt":false}"#,
    // Not objects, not JSON, trailing bytes.
    r#"[1,2]"#,
    r#""a string""#,
    r#"null"#,
    r#""#,
    r#"not json"#,
    r#"{"messages":[{"role":"user","content":"hi"}]} trailing"#,
    r#"{"messages":[{"role":"user","content":"hi"}]}   "#,
    r#"{"messages":[{"role":"user","content":"hi"}"#,
    r#"{"messages":[{"role":"user","content":"\ud800"}]}"#,
];

#[test]
fn equals_the_value_tree_estimate_on_chosen_bodies() {
    for model in ["gpt-4o", "gpt-4", "text-embedding-3-small"] {
        for body in BODIES {
            same(model, body);
        }
    }
    // Something is actually counted (the comparison is not 0 == 0 everywhere).
    assert!(same("gpt-4o", BODIES[0]) > 10);
    assert!(same("gpt-4o", BODIES[10]) > 30);
    assert_eq!(same("gpt-4o", r#"{"input":[[1,2,3],[4,5]]}"#), 5);
}

/// A small deterministic generator (xorshift64*), so the corpus is the same on every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    /// Any JSON value, `depth` levels at most, with keys that matter to the estimate.
    fn value(&mut self, depth: u32) -> Value {
        let keys = [
            "content", "text", "name", "role", "type", "a", "b", "tools", "input",
        ];
        let words = [
            "hello",
            "world",
            "é\"\\/\n",
            "",
            "tool",
            "😀 x",
            "<|endoftext|>",
        ];
        match self.next() % if depth == 0 { 5 } else { 7 } {
            0 => Value::Null,
            1 => json!(self.next().is_multiple_of(2)),
            2 => match self.next() % 3 {
                0 => json!(self.next() % 1000),
                1 => json!(-((self.next() % 1000) as i64)),
                _ => json!((self.next() % 10_000) as f64 / 7.0),
            },
            3 | 4 => json!(self.pick(&words)),
            5 => Value::Array(
                (0..self.next() % 4)
                    .map(|_| self.value(depth - 1))
                    .collect(),
            ),
            _ => {
                let mut text = String::from("{");
                for i in 0..self.next() % 5 {
                    if i > 0 {
                        text.push(',');
                    }
                    let k = self.pick(&keys);
                    let v = self.value(depth - 1);
                    text += &format!("{}:{}", json!(k), text_of(&v));
                }
                text.push('}');
                // Kept as text: a parsed map would drop the repeated keys this may hold.
                Value::String(format!("\u{1}{text}"))
            }
        }
    }
}

/// Serialize, expanding the `\u{1}`-marked raw objects (which may repeat keys).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) if s.starts_with('\u{1}') => s[1..].to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(text_of).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

#[test]
fn equals_the_value_tree_estimate_on_generated_bodies() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let tops = [
        "messages",
        "tools",
        "functions",
        "prompt",
        "input",
        "model",
        "stream",
    ];
    let (mut counted, mut repeated) = (0, 0);
    for _ in 0..400 {
        let mut body = String::from("{");
        for i in 0..1 + g.next() % 4 {
            if i > 0 {
                body.push(',');
            }
            let k = g.pick(&tops);
            let v = if k == "messages" && !g.next().is_multiple_of(3) {
                let msgs: Vec<String> = (0..g.next() % 4).map(|_| text_of(&g.value(3))).collect();
                format!("[{}]", msgs.join(","))
            } else {
                text_of(&g.value(3))
            };
            body += &format!("{}:{v}", json!(k));
        }
        body.push('}');
        counted += usize::from(same("gpt-4o", &body) > 0);
        let parsed = serde_json::from_str::<Value>(&body).unwrap();
        repeated += usize::from(parsed.to_string().len() < body.len());
    }
    // The corpus exercises the counting paths and repeated keys, not just zeros.
    assert!(
        counted > 300 && repeated > 50,
        "{counted} counted, {repeated} with repeats"
    );
}
