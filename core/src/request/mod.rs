//! The synchronous decisions of the request path, sans IO: what a request asks for (`on_body`),
//! whether the pool it resolves to can serve it (`route`), and the exact bytes sent to one backend
//! (`upstream_request`). The IO crate runs these as named phases around its awaits; the fuzz
//! target `request_path` runs them on arbitrary bytes.

mod affinity;
mod names;
mod routes;
#[cfg(test)]
mod routes_tests;
mod upstream;

use std::borrow::Cow;

pub use affinity::{backend_tag, pick_backend, Affinity, MAX_RESPONSE_ID_BYTES};
pub use names::{check_name, check_segment, is_plain_segment, NameError, MAX_NAME_BYTES};
pub use routes::{
    check_route_path, match_route, prefix_covers, route_request, route_target, RouteError,
    GATEWAY_PATHS, STATUS_PATH,
};
pub use upstream::{upstream_request, UpstreamRequest, COALESCE_MAX};

use crate::config::{Config, PoolId};
use crate::error::GatewayError;
use crate::http1::RequestHead;
use crate::openai::{model_in_body, multipart_field, peek, ApiPath};

/// What the body says, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected<'a> {
    /// The model or deployment the request is for ("" when it names none).
    pub model: Cow<'a, str>,
    /// The body names a model itself (JSON `model` or the multipart `model` field).
    pub model_in_body: bool,
    /// `"stream": true`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// The completion cap the client set.
    pub max_tokens: Option<u64>,
    /// Choices asked for (`n`), when given.
    pub n: Option<u64>,
    /// The Responses API's `previous_response_id`, when the body continues a stored response.
    pub previous_response_id: Option<Cow<'a, str>>,
}

/// `on_body`: read the body's model and stream flags and check the names.
///
/// An Azure-style path names the deployment; a body `model` that names another one is refused:
/// an OpenAI-dialect backend would run the body's model while limits, metrics and logs say the
/// deployment's.
///
/// # Errors
/// 400 for a body that claims JSON but is not, a name with control characters or too long, or a
/// body `model` that conflicts with the path's deployment.
pub fn inspect_body<'a>(
    path: &ApiPath<'a>,
    head: &'a RequestHead,
    body: &'a [u8],
) -> Result<Inspected<'a>, GatewayError> {
    let p = peek(body).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    // A Responses API body the gateway cannot read (a byte order mark, which Python's
    // `json.loads` of bytes skips; a `Content-Encoding`) could carry a `previous_response_id`
    // it must place: refused rather than forwarded unplaced to a backend that reads it.
    if path.is_responses() && !body.is_empty() && !p.object {
        return Err(GatewayError::BadRequest(
            "a Responses API request body must be a JSON object, as sent (no byte order mark, \
             no Content-Encoding)"
                .into(),
        ));
    }
    // Multipart calls (audio transcriptions, image edits) carry the model as a form field.
    let form = match (&p.model, head.header("content-type")) {
        (None, Some(ct)) => multipart_field(body, ct, "model")
            .map_err(|e| GatewayError::BadRequest(e.to_string()))?
            .map(Cow::Borrowed),
        _ => None,
    };
    let body_model = p.model.or(form);
    let bad = |e: NameError| GatewayError::BadRequest(e.to_string());
    if let Some(m) = &body_model {
        check_name(m).map_err(bad)?;
    }
    let model = match (path.deployment, &body_model) {
        (Some(dep), Some(m)) if m != dep => {
            return Err(GatewayError::BadRequest(format!(
                "the body's model '{}' conflicts with the deployment '{}' in the path; \
                 leave the body's model out or make them equal",
                m.escape_debug(),
                dep.escape_debug()
            )))
        }
        (Some(dep), _) => Cow::Borrowed(dep),
        (None, Some(m)) => m.clone(),
        (None, None) => Cow::Borrowed(""),
    };
    if path.deployment.is_some() {
        // A deployment is a path segment already; keep it one (no `%2e%2e` for the backend).
        check_segment(&model).map_err(bad)?;
    }
    Ok(Inspected {
        model,
        model_in_body: body_model.is_some(),
        stream: p.stream,
        include_usage: p.include_usage,
        max_tokens: p.max_tokens,
        n: p.n,
        previous_response_id: p.previous_response_id,
    })
}

/// `route`: the pool serving `model` for `operation`, checked against what every member needs
/// before any member is picked (a client error must never count against a backend's health).
///
/// # Errors
/// 400 when no pool serves the model, when an Azure-dialect member needs the model in its path
/// and none was given, or when the model cannot be a deployment path segment.
pub fn route(cfg: &Config, model: &str, operation: &str) -> Result<PoolId, GatewayError> {
    let pool = cfg
        .models
        .resolve(model)
        .ok_or_else(|| GatewayError::UnknownModel(model.escape_debug().to_string()))?;
    let in_path = cfg.pools[pool]
        .members
        .iter()
        .any(|m| !model_in_body(cfg.backends[m.backend].dialect, operation));
    if in_path {
        if model.is_empty() {
            return Err(GatewayError::BadRequest(
                "a model is required (in the body or as the deployment)".into(),
            ));
        }
        check_segment(model).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    }
    Ok(pool)
}

#[cfg(test)]
mod tests;
