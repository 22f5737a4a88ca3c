//! `on_head`: the path and the caller's identity, decided on the head alone. A caller that fails
//! here is answered without its body being buffered or parsed (the front door drops a small one
//! and closes the connection on anything else).

use aigw_core::auth::{identify, Identity};
use aigw_core::error::GatewayError;
use aigw_core::http1::{is_safe_target, RequestHead};
use aigw_core::openai::classify;

use crate::shard::Snapshot;

/// APIM's health probe path, answered 200 without a key (load balancers in front of APIM
/// probe it; aigw answers it so they can be pointed at aigw unchanged).
pub(super) const STATUS_PATH: &str = "/status-0123456789abcdef";

/// What the head decided.
pub(super) enum HeadOutcome {
    /// Read the body and go on, as this caller.
    Proceed(Identity),
    /// The APIM status probe.
    Status,
    /// Answer this, without reading the body.
    Refuse(GatewayError),
}

/// Classify the path and identify the caller.
pub(super) fn on_head(snap: &Snapshot, head: &RequestHead) -> HeadOutcome {
    // httparse admits bytes 0x80-0xFF in a target; nothing the gateway forwards may carry them.
    if !is_safe_target(&head.target) {
        return HeadOutcome::Refuse(GatewayError::BadRequest(
            "the request target must be visible ASCII (percent-encode anything else)".into(),
        ));
    }
    let target = std::str::from_utf8(&head.target).unwrap_or("");
    let path = match classify(target) {
        Ok(p) => p,
        Err(_) if head.path() == STATUS_PATH => return HeadOutcome::Status,
        Err(e) => return HeadOutcome::Refuse(GatewayError::NotFound(e.to_string())),
    };
    let cfg = &snap.cfg;
    match identify(&snap.policy.keys, &cfg.consumers, &head.headers, path.query) {
        Ok(id) => HeadOutcome::Proceed(id),
        Err(e) => HeadOutcome::Refuse(GatewayError::Unauthorized(e.to_string())),
    }
}
