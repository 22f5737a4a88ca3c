//! The whole request path, sans IO: arbitrary client bytes in; whatever the gateway would send a
//! backend must parse as exactly one well-formed request (nothing after it), with the method the
//! client used, the backend's credential exactly once and no client credential, a target that is
//! the backend's dialect path, and the client's body (or, when the gateway adds the model for a
//! backend that reads the model from the body, the client's JSON with that model).
#![no_main]

use aigw_core::config::{parse_str, Config, Dialect};
use aigw_core::http1::{decode_request_head, BodyFraming, ChunkedDecoder, HeadLimits};
use aigw_core::openai::{classify, is_deployment_operation, model_in_body};
use aigw_core::request::{inspect_body, route, upstream_request};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

const CFG: &str = r#"
[backends.oa]
url = "http://127.0.0.1:9"
dialect = "openai"
api_key = "oa-key"

[backends.az]
url = "http://127.0.0.1:9/base"
dialect = "azure"
api_key = "az-key"

[backends.v1]
url = "http://127.0.0.1:9/v1base"
dialect = "azure-v1"
api_key = "v1-key"

[pools.mixed]
members = [{ backend = "az" }, { backend = "oa" }, { backend = "v1" }]

[pools.oa_only]
members = [{ backend = "oa" }]

[models]
"meta-llama/Llama-3.1-8B-Instruct" = "oa_only"
"*" = "mixed"
"#;

thread_local! {
    static CONFIG: Config = parse_str(CFG, None).expect("fuzz config");
}

/// The client's body as the front door would hand it over, if the input holds a whole one.
fn client_body(framing: BodyFraming, rest: &[u8]) -> Option<Bytes> {
    match framing {
        BodyFraming::Empty => Some(Bytes::new()),
        BodyFraming::Length(n) => {
            let n = usize::try_from(n).ok()?;
            (rest.len() >= n).then(|| Bytes::copy_from_slice(&rest[..n]))
        }
        BodyFraming::Chunked => {
            let mut out = Vec::new();
            let p = ChunkedDecoder::new()
                .feed(rest, |d| out.extend_from_slice(d))
                .ok()?;
            p.done.then(|| Bytes::from(out))
        }
        BodyFraming::UntilClose => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let Ok(Some(head)) = decode_request_head(&mut buf, &HeadLimits::default()) else {
        return;
    };
    let Some(body) = client_body(head.framing, &buf) else {
        return;
    };
    let Ok(target) = std::str::from_utf8(&head.target) else {
        return;
    };
    let Ok(path) = classify(target) else { return };
    let Ok(inspected) = inspect_body(&path, &head, &body) else {
        return;
    };
    CONFIG.with(|cfg| {
        let Ok(pool) = route(cfg, &inspected.model, path.operation) else {
            return;
        };
        for m in &cfg.pools[pool].members {
            let backend = &cfg.backends[m.backend];
            let cred = match backend.dialect {
                Dialect::Azure | Dialect::AzureV1 => ("api-key", "az-key"),
                Dialect::OpenAi => ("authorization", "Bearer oa-key"),
            };
            let Ok(up) = upstream_request(
                bytes::BytesMut::new(),
                backend,
                Some(cred),
                &path,
                &inspected.model,
                inspected.model_in_body,
                &head,
                &body,
                "rid",
            ) else {
                continue;
            };
            let mut wire = BytesMut::from(&up.head[..]);
            wire.extend_from_slice(&up.body);
            let sent = decode_request_head(&mut wire, &HeadLimits { max_head_bytes: 1 << 20, max_headers: 1000 })
                .expect("the upstream head must parse")
                .expect("the upstream head must be complete");
            assert_eq!(sent.method, head.method, "method changed");
            let n = match sent.framing {
                BodyFraming::Length(n) => n as usize,
                BodyFraming::Empty => 0,
                f => panic!("upstream framing {f:?}"),
            };
            assert_eq!(n, wire.len(), "bytes after the one request: smuggling");
            assert_eq!(&wire[..], &up.body[..]);
            if up.body != body {
                // Only the model may have been added, for a backend that reads it from the body.
                assert!(model_in_body(backend.dialect, path.operation));
                assert!(!inspected.model_in_body);
                assert!(up.body.starts_with(b"{\"model\":"));
            }
            let t = std::str::from_utf8(&sent.target).expect("ASCII target");
            let want = match backend.dialect {
                Dialect::OpenAi => format!("/v1/{}", path.operation),
                Dialect::AzureV1 => format!("/v1base/openai/v1/{}", path.operation),
                Dialect::Azure if is_deployment_operation(path.operation) => format!(
                    "/base/openai/deployments/{}/{}?",
                    inspected.model, path.operation
                ),
                Dialect::Azure => format!("/base/openai/{}?", path.operation),
            };
            assert!(t.starts_with(&want), "{t} vs {want}");
            // Nothing past the operation but the query: no second path, no fragment.
            let rest = &t[want.len()..];
            assert!(rest.is_empty() || rest.starts_with('?') || want.ends_with('?'), "{t}");
            let creds: Vec<_> = sent
                .headers
                .iter()
                .filter(|h| {
                    ["api-key", "authorization", "ocp-apim-subscription-key"]
                        .iter()
                        .any(|c| h.name.eq_ignore_ascii_case(c.as_bytes()))
                })
                .collect();
            assert_eq!(creds.len(), 1, "credentials: {creds:?}");
            assert_eq!(&creds[0].value[..], cred.1.as_bytes());
        }
    });
});
