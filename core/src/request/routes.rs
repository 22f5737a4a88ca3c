//! Routes (`[routes.NAME]`): which route a path belongs to, and the exact request its backend is
//! sent. Matched before the LLM paths are classified; config loading keeps route prefixes off
//! the gateway's own paths, so the two never compete for a path.
//!
//! What crosses to the backend is checked here like an LLM request's names: every segment after
//! the prefix is one plain segment (no `..`, no `%2e%2e`, no `%2f`: the backend would resolve or
//! decode what the gateway did not check), and the encoder refuses anything that would break
//! framing, whoever built it.

use bytes::{Bytes, BytesMut};

use super::{is_plain_segment, UpstreamRequest};
use crate::config::{Backend, Route, RouteId};
use crate::error::GatewayError;
use crate::http1::{RequestHead, UpstreamHead};

/// APIM's health probe path, answered 200 without a key (load balancers in front of APIM probe
/// it; aigw answers it so they can be pointed at aigw unchanged).
pub const STATUS_PATH: &str = "/status-0123456789abcdef";

/// The gateway's own path prefixes (and what they serve): no route may overlap them.
pub const GATEWAY_PATHS: [(&str, &str); 3] = [
    ("/v1", "OpenAI-style API calls"),
    ("/openai", "Azure OpenAI-style API calls"),
    (STATUS_PATH, "APIM's health probe"),
];

/// Why a route's request cannot be forwarded (answered as 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A segment after the prefix is empty, a dot segment, or holds a byte a plain segment
    /// cannot (`%`, `;`, spaces…).
    #[error("every path segment after the route prefix must be plain: letters, digits and - . _ ~ : only, not '.' or '..', no percent-encoding")]
    Segment,
}

impl From<RouteError> for GatewayError {
    fn from(e: RouteError) -> Self {
        GatewayError::BadRequest(e.to_string())
    }
}

/// The route whose prefix covers `path` (the target without its query) on whole segments.
pub fn match_route(routes: &[Route], path: &str) -> Option<RouteId> {
    // Prefixes never overlap (config), so the first match is the only one.
    routes.iter().position(|r| prefix_covers(&r.prefix, path))
}

/// Does `prefix` cover `path` on whole segments (equal, or `path` lies below it)?
pub fn prefix_covers(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Check what follows the prefix in `path`: plain segments, with at most one trailing `/`
/// (`/search/` and `/search/a/` keep it: some APIs tell the two forms apart).
///
/// # Errors
/// [`RouteError::Segment`], also for a `path` the route does not cover.
pub fn check_route_path(route: &Route, path: &str) -> Result<(), RouteError> {
    if !prefix_covers(&route.prefix, path) {
        return Err(RouteError::Segment);
    }
    let Some(rest) = path[route.prefix.len()..].strip_prefix('/') else {
        return Ok(()); // the prefix itself
    };
    if rest.is_empty() {
        return Ok(());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.split('/').all(is_plain_segment) {
        Ok(())
    } else {
        Err(RouteError::Segment)
    }
}

/// The path and query `backend` is sent for `target` (a path already matched to `route`): the
/// backend's base path, the path (without the prefix when `strip_prefix`, `/` at least), and the
/// query without `api-key` (a client credential).
///
/// # Errors
/// [`RouteError::Segment`] when the path after the prefix is not plain segments.
pub fn route_target(route: &Route, backend: &Backend, target: &str) -> Result<String, RouteError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    check_route_path(route, path)?;
    let path = if route.strip_prefix {
        &path[route.prefix.len()..] // checked: the prefix covers the path
    } else {
        path
    };
    let mut out = String::with_capacity(backend.base_path.len() + path.len() + query.len() + 2);
    out.push_str(&backend.base_path);
    out.push_str(path);
    if out.is_empty() {
        out.push('/');
    }
    let mut sep = '?';
    for kv in query.split('&') {
        let key = kv.split_once('=').map_or(kv, |(k, _)| k);
        if kv.is_empty() || key == "api-key" {
            continue;
        }
        out.push(sep);
        out.push_str(kv);
        sep = '&';
    }
    Ok(out)
}

/// The request `backend` is sent for a route's request: method and body as the client sent
/// them, the client's credentials dropped and the backend's (`auth`) set, `x-request-id`, and
/// the client's `Accept-Encoding` kept (nothing is accounted, so nothing needs decoding).
///
/// # Errors
/// 400 for a path that is not plain segments after the prefix, or a head the encoder refuses.
pub fn route_request(
    route: &Route,
    backend: &Backend,
    auth: Option<(&str, &str)>,
    head: &RequestHead,
    body: &Bytes,
    request_id: &str,
) -> Result<UpstreamRequest, GatewayError> {
    let target = std::str::from_utf8(&head.target)
        .map_err(|_| GatewayError::BadRequest("the request target is not UTF-8".into()))?;
    let target = route_target(route, backend, target)?;
    // A body the client framed (even an empty one) keeps a Content-Length; a bodiless GET or
    // DELETE is sent without one, as it came.
    let framed =
        head.header("content-length").is_some() || head.header("transfer-encoding").is_some();
    let up = UpstreamHead {
        method: &head.method,
        target: &target,
        host: &backend.authority,
        auth,
        request_id,
        content_length: (framed || !body.is_empty()).then_some(body.len() as u64),
        client_headers: &head.headers,
        identity_encoding: false,
    };
    UpstreamRequest::encode(BytesMut::new(), &up, body.clone())
}
