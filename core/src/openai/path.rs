//! Front-door path classification (OpenAI `/v1/...` and Azure `/openai/deployments/...`) and the
//! path a backend of either dialect is sent.

use crate::config::{Backend, Dialect};

/// Which client convention a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `/v1/{operation}` or `/openai/v1/{operation}`; the model is in the body.
    OpenAi,
    /// `/openai/deployments/{deployment}/{operation}?api-version=…`; model = deployment.
    Azure,
}

/// A classified front-door path; all strings borrow from the request target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiPath<'a> {
    /// The convention.
    pub style: Style,
    /// The operation, e.g. `chat/completions`, `embeddings`, `models`.
    pub operation: &'a str,
    /// The Azure deployment, when the path named one.
    pub deployment: Option<&'a str>,
    /// The query string (without `?`).
    pub query: &'a str,
}

impl ApiPath<'_> {
    /// The client's `api-version` query parameter, if any.
    pub fn api_version(&self) -> Option<&str> {
        query_param(self.query, "api-version")
    }

    /// Is this the model listing (`GET /v1/models`, `GET /openai/models`)?
    pub fn is_models_list(&self) -> bool {
        self.operation == "models" && self.deployment.is_none()
    }

    /// Is this a Responses API operation (`responses` and below, the segment in any case)?
    pub fn is_responses(&self) -> bool {
        let first = self.operation.split('/').next().unwrap_or("");
        first.eq_ignore_ascii_case("responses")
    }

    /// The stored response an operation is about: `responses/{id}` and everything below it
    /// (`input_items`, `cancel`: retrieve, delete, list input items, cancel), the `responses`
    /// segment in any case. Such a request names no model: it must reach the backend that created
    /// the response, for the caller that created it, and no other. Whatever a backend makes of
    /// an unknown sub-path, or of `Responses` (some match paths case-insensitively), a request
    /// that names a stored response never goes anywhere else. The Responses API's own
    /// operations below `responses/` (`input_tokens`, `compact`) are not stored responses.
    pub fn response_object(&self) -> Option<&str> {
        let op = self.operation;
        let head = op.get(..RESPONSES_SLASH.len())?;
        if !head.eq_ignore_ascii_case(RESPONSES_SLASH) {
            return None;
        }
        let rest = &op[RESPONSES_SLASH.len()..];
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if tail.is_empty() && RESPONSES_OPERATIONS.contains(&id) {
            return None;
        }
        Some(id)
    }
}

const RESPONSES_SLASH: &str = "responses/";

/// The Responses API's operations below `responses/` that name no stored response: token
/// counting (`POST responses/input_tokens`) and compaction (`POST responses/compact`). They
/// name their model in the body, and may name a `previous_response_id`, placed like a create's.
const RESPONSES_OPERATIONS: [&str; 2] = ["input_tokens", "compact"];

/// A path the gateway does not serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an OpenAI or Azure OpenAI path.
    #[error(
        "unknown path; use /v1/{{operation}} or /openai/deployments/{{deployment}}/{{operation}}"
    )]
    NotFound,
}

/// Classify a request target (path plus optional query).
///
/// `/openai/{operation}` without a deployment is the Azure style of the operations that name
/// their model in the body (the Responses API: `/openai/responses?api-version=…`).
///
/// # Errors
/// [`PathError::NotFound`] when the path fits neither style or has an empty segment.
pub fn classify(target: &str) -> Result<ApiPath<'_>, PathError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (style, deployment, operation) =
        if let Some(rest) = path.strip_prefix("/openai/deployments/") {
            let (dep, op) = rest.split_once('/').ok_or(PathError::NotFound)?;
            (Style::Azure, Some(dep), op)
        } else if let Some(op) = path
            .strip_prefix("/openai/v1/")
            .or_else(|| path.strip_prefix("/v1/"))
        {
            (Style::OpenAi, None, op)
        } else if let Some(op) = path.strip_prefix("/openai/") {
            (Style::Azure, None, op)
        } else {
            return Err(PathError::NotFound);
        };
    let operation = operation.trim_end_matches('/');
    // Every segment the gateway copies into a backend path is one plain segment: no `%2e%2e`
    // or `%2f` for a backend that decodes before it resolves dot segments.
    let bad = |s: &str| s.is_empty() || !s.split('/').all(crate::request::is_plain_segment);
    if bad(operation) || deployment.is_some_and(bad) {
        return Err(PathError::NotFound);
    }
    Ok(ApiPath {
        style,
        operation,
        deployment,
        query,
    })
}

/// The operations Azure's classic API serves under `/openai/deployments/{deployment}/` (the
/// list the official SDKs rewrite); every other operation names its model in the body there.
pub fn is_deployment_operation(operation: &str) -> bool {
    matches!(
        operation,
        "chat/completions"
            | "completions"
            | "embeddings"
            | "images/generations"
            | "images/edits"
            | "images/variations"
            | "audio/transcriptions"
            | "audio/translations"
            | "audio/speech"
    )
}

/// Does `dialect` read the model of `operation` from the body (rather than from the path)?
pub fn model_in_body(dialect: Dialect, operation: &str) -> bool {
    dialect != Dialect::Azure || !is_deployment_operation(operation)
}

/// The value of `name` in a query string (no percent-decoding: api-version values never need it).
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The query string without `api-key` (a client credential) and `api-version` (the OpenAI and
/// Azure v1 APIs take none; the classic Azure one is given it first, once).
fn forwarded_query(query: &str) -> impl Iterator<Item = &str> {
    query.split('&').filter(move |kv| {
        let k = kv.split_once('=').map_or(*kv, |(k, _)| k);
        !kv.is_empty() && k != "api-key" && k != "api-version"
    })
}

/// The path and query to send `backend` for a request of `path` about `model`.
pub fn backend_target(backend: &Backend, path: &ApiPath<'_>, model: &str) -> String {
    let mut out = String::with_capacity(64 + path.query.len());
    backend_target_into(&mut out, backend, path, model);
    out
}

/// [`backend_target`] appended to `out` (a buffer the caller reuses).
pub fn backend_target_into(out: &mut String, backend: &Backend, path: &ApiPath<'_>, model: &str) {
    out.push_str(&backend.base_path);
    let mut sep = '?';
    match backend.dialect {
        Dialect::OpenAi | Dialect::AzureV1 => {
            out.push_str(if backend.dialect == Dialect::OpenAi {
                "/v1/"
            } else {
                "/openai/v1/"
            });
            out.push_str(path.operation);
        }
        Dialect::Azure => {
            if is_deployment_operation(path.operation) {
                out.push_str("/openai/deployments/");
                out.push_str(model);
                out.push('/');
            } else {
                out.push_str("/openai/");
            }
            out.push_str(path.operation);
            out.push_str("?api-version=");
            out.push_str(path.api_version().unwrap_or(&backend.api_version));
            sep = '&';
        }
    }
    for kv in forwarded_query(path.query) {
        out.push(sep);
        out.push_str(kv);
        sep = '&';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(dialect: Dialect) -> Backend {
        Backend {
            name: "b".into(),
            url: "http://h".into(),
            tls: false,
            tls_options: None,
            host: "h".into(),
            port: 80,
            authority: "h".into(),
            addrs: vec![],
            base_path: String::new(),
            dialect,
            api_key: None,
            api_version: "2024-10-21".into(),
            circuit_breaker: None,
        }
    }

    #[test]
    fn classifies_both_styles() {
        let p = classify("/v1/chat/completions").unwrap();
        assert_eq!(
            (p.style, p.operation, p.deployment),
            (Style::OpenAi, "chat/completions", None)
        );
        let p = classify("/openai/v1/embeddings").unwrap();
        assert_eq!((p.style, p.operation), (Style::OpenAi, "embeddings"));
        let p = classify(
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-02-01&api-key=x",
        )
        .unwrap();
        assert_eq!(p.style, Style::Azure);
        assert_eq!(p.deployment, Some("gpt-4o"));
        assert_eq!(p.operation, "chat/completions");
        assert_eq!(p.api_version(), Some("2024-02-01"));
        assert!(classify("/v1/models").unwrap().is_models_list());
        assert!(classify("/openai/models?api-version=1")
            .unwrap()
            .is_models_list());
        for bad in [
            "/",
            "/v2/x",
            "/v1/",
            "/openai/deployments/x",
            "/v1/a//b",
            "/v1/../x",
            "/openai/deployments/gpt-4o/%2e%2e/%2e%2e/files/file-1",
            "/v1/chat/%2e%2e",
            "/v1/files/a%2fb",
            "/openai/deployments/..;/chat/completions",
        ] {
            assert_eq!(classify(bad), Err(PathError::NotFound), "{bad}");
        }
    }

    #[test]
    fn rewrites_for_each_dialect() {
        let az = classify(
            "/openai/deployments/m/chat/completions?api-version=2025-01-01&api-key=secret",
        )
        .unwrap();
        let oa = classify("/v1/chat/completions?api-key=secret").unwrap();
        assert_eq!(
            backend_target(&backend(Dialect::OpenAi), &az, "m"),
            "/v1/chat/completions"
        );
        assert_eq!(
            backend_target(&backend(Dialect::Azure), &oa, "gpt-4o"),
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            backend_target(&backend(Dialect::Azure), &az, "m"),
            "/openai/deployments/m/chat/completions?api-version=2025-01-01"
        );
    }

    /// Every path the current OpenAI and AzureOpenAI SDKs send, to each dialect.
    #[test]
    fn every_sdk_path_reaches_every_dialect() {
        let deployment_ops = [
            "chat/completions",
            "completions",
            "embeddings",
            "images/generations",
            "images/edits",
            "audio/transcriptions",
            "audio/translations",
            "audio/speech",
        ];
        for op in deployment_ops {
            let oa_target = format!("/v1/{op}");
            let az_target = format!("/openai/deployments/m/{op}?api-version=2025-03-01-preview");
            for target in [&oa_target, &az_target, &format!("/openai/v1/{op}")] {
                let p = classify(target).unwrap();
                assert_eq!(p.operation, op);
                assert!(!model_in_body(Dialect::Azure, op));
                assert_eq!(
                    backend_target(&backend(Dialect::OpenAi), &p, "m"),
                    format!("/v1/{op}")
                );
                assert_eq!(
                    backend_target(&backend(Dialect::AzureV1), &p, "m"),
                    format!("/openai/v1/{op}")
                );
                let version = p.api_version().unwrap_or("2024-10-21");
                assert_eq!(
                    backend_target(&backend(Dialect::Azure), &p, "m"),
                    format!("/openai/deployments/m/{op}?api-version={version}")
                );
            }
        }
        // The Responses API: the model travels in the body in every dialect.
        for (op, query) in [
            ("responses", ""),
            ("responses/resp_1", ""),
            ("responses/resp_1/input_items", "limit=2&order=asc"),
            ("responses/resp_1/cancel", ""),
        ] {
            assert!(model_in_body(Dialect::Azure, op));
            let amp = if query.is_empty() { "" } else { "&" };
            let q = if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            };
            let azure_sdk = format!("/openai/{op}?api-version=2025-03-01-preview{amp}{query}");
            for target in [
                format!("/v1/{op}{q}"),
                format!("/openai/v1/{op}{q}"),
                azure_sdk,
            ] {
                let p = classify(&target).unwrap();
                assert_eq!(p.operation, op, "{target}");
                assert_eq!(p.deployment, None);
                assert_eq!(
                    p.response_object(),
                    op.strip_prefix("responses/")
                        .map(|r| r.split('/').next().unwrap())
                );
                assert_eq!(
                    backend_target(&backend(Dialect::OpenAi), &p, "m"),
                    format!("/v1/{op}{q}")
                );
                assert_eq!(
                    backend_target(&backend(Dialect::AzureV1), &p, "m"),
                    format!("/openai/v1/{op}{q}")
                );
                let version = p.api_version().unwrap_or("2024-10-21");
                assert_eq!(
                    backend_target(&backend(Dialect::Azure), &p, "m"),
                    format!("/openai/{op}?api-version={version}{amp}{query}")
                );
            }
        }
        // Anything below a stored response, in any case, is about that response; the API's own
        // operations below `responses/` are not.
        for (target, object) in [
            ("/v1/responses/r/other", Some("r")),
            ("/v1/responses/r/input_items/x", Some("r")),
            ("/v1/Responses/r", Some("r")),
            ("/openai/RESPONSES/r/cancel?api-version=1", Some("r")),
            ("/v1/responses/input_tokens", None),
            ("/openai/v1/responses/compact", None),
            ("/v1/responses/compact/x", Some("compact")),
            ("/v1/responses", None),
            ("/v1/responsesx/r", None),
            ("/v1/chat/completions", None),
        ] {
            assert_eq!(
                classify(target).unwrap().response_object(),
                object,
                "{target}"
            );
        }
    }
}
