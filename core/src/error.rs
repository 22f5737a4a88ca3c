//! The gateway's own error answers: one status and one OpenAI-shaped JSON body per kind.

use bytes::{BufMut, Bytes, BytesMut};

/// An error the gateway answers itself, rather than relaying a backend's response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Malformed request (bad framing, bad JSON).
    #[error("{0}")]
    BadRequest(String),
    /// The model or deployment maps to no pool.
    #[error("Invalid model or deployment-id: '{0}'")]
    UnknownModel(String),
    /// No such route.
    #[error("{0}")]
    NotFound(String),
    /// Request head too large or too many headers.
    #[error("{0}")]
    HeadTooLarge(String),
    /// Request body larger than `max_body_bytes`.
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(u64),
    /// Method not allowed on this route.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Could not connect to or talk with the backend.
    #[error("{0}")]
    BadGateway(String),
    /// No backend answered in time.
    #[error("the upstream did not answer within {0} ms")]
    GatewayTimeout(u64),
    /// Nothing available to serve the request; retry after the given seconds, if known.
    #[error("{message}")]
    Unavailable {
        /// Human text.
        message: String,
        /// Seconds until something is expected back.
        retry_after_secs: Option<u64>,
    },
    /// HTTP version other than 1.0/1.1.
    #[error("HTTP version not supported")]
    Version,
    /// No or an unknown key while consumers are configured.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this (model not allowed, quota spent).
    #[error("{message}")]
    Forbidden {
        /// Human text.
        message: String,
        /// OpenAI `code`.
        code: &'static str,
    },
    /// The caller's token rate limit is exhausted.
    #[error("Token limit is exceeded. Try again in {} seconds.", retry_after_ms.div_ceil(1000).max(1))]
    RateLimited {
        /// When the request would fit, in milliseconds.
        retry_after_ms: u64,
    },
    /// The request head or body did not arrive in time.
    #[error("the request did not arrive in time")]
    RequestTimeout,
    /// The caller's token quota is spent for this window: 403 (as APIM answers), with the seconds
    /// to the window's end when waiting helps.
    #[error("{message}")]
    QuotaExceeded {
        /// Human text.
        message: String,
        /// Seconds until the window ends; `None` when the request is larger than the whole quota.
        retry_after_secs: Option<u64>,
    },
    /// The request's reservation is larger than the caller's whole token bucket: it can never be
    /// admitted, so no `Retry-After` is offered.
    #[error("This request needs an estimated {requested} tokens (prompt plus max_tokens for each choice), more than the whole limit of {limit} tokens per minute: it can never be admitted. Lower max_tokens or n, or shorten the prompt.")]
    TooLargeForLimit {
        /// The reservation asked for.
        requested: u64,
        /// The bucket's capacity.
        limit: u64,
    },
    /// The gateway itself is out of a resource (buffered request bodies); retry in a second.
    #[error("{0}")]
    Busy(String),
    /// A Responses API request names a stored response the gateway cannot place: not created
    /// through it by this caller, or forgotten since. 404 for retrieve, delete, input items and
    /// cancel; 400 (`param: previous_response_id`) for a continuation, as OpenAI answers both.
    #[error("{message}")]
    UnknownResponse {
        /// Human text.
        message: String,
        /// It was the body's `previous_response_id`.
        previous: bool,
    },
    /// The client closed its connection before the answer (logged as nginx's 499; nothing is
    /// sent).
    #[error("the client closed the connection")]
    ClientClosed,
}

impl GatewayError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::BadRequest(_)
            | GatewayError::UnknownModel(_)
            | GatewayError::TooLargeForLimit { .. } => 400,
            GatewayError::Unauthorized(_) => 401,
            GatewayError::Forbidden { .. } | GatewayError::QuotaExceeded { .. } => 403,
            GatewayError::RateLimited { .. } => 429,
            GatewayError::NotFound(_) => 404,
            GatewayError::UnknownResponse { previous, .. } => {
                if *previous {
                    400
                } else {
                    404
                }
            }
            GatewayError::MethodNotAllowed => 405,
            GatewayError::RequestTimeout => 408,
            GatewayError::ClientClosed => 499,
            GatewayError::Busy(_) => 503,
            GatewayError::BodyTooLarge(_) => 413,
            GatewayError::HeadTooLarge(_) => 431,
            GatewayError::BadGateway(_) => 502,
            GatewayError::Unavailable { .. } => 503,
            GatewayError::GatewayTimeout(_) => 504,
            GatewayError::Version => 505,
        }
    }

    /// OpenAI's `type` field.
    pub fn error_type(&self) -> &'static str {
        match self.status() {
            401 => "authentication_error",
            429 => "tokens",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// OpenAI's `code` field.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::Unauthorized(_) => "invalid_api_key",
            GatewayError::Forbidden { code, .. } => code,
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::UnknownModel(_) => "DeploymentNotFound",
            GatewayError::NotFound(_) => "not_found",
            GatewayError::MethodNotAllowed => "method_not_allowed",
            GatewayError::BodyTooLarge(_) => "request_too_large",
            GatewayError::HeadTooLarge(_) => "request_header_fields_too_large",
            GatewayError::BadGateway(_) => "bad_gateway",
            GatewayError::Unavailable { .. } => "no_backend_available",
            GatewayError::GatewayTimeout(_) => "upstream_timeout",
            GatewayError::Version => "http_version_not_supported",
            GatewayError::RequestTimeout => "request_timeout",
            GatewayError::ClientClosed => "client_closed_request",
            GatewayError::Busy(_) => "gateway_busy",
            GatewayError::TooLargeForLimit { .. } => "tokens_exceed_limit",
            GatewayError::QuotaExceeded { .. } => "quota_exceeded",
            GatewayError::UnknownResponse { previous: true, .. } => "previous_response_not_found",
            GatewayError::UnknownResponse {
                previous: false, ..
            } => "not_found",
        }
    }

    /// The `Retry-After` seconds to send, if any.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::Unavailable {
                retry_after_secs, ..
            } => *retry_after_secs,
            GatewayError::RateLimited { retry_after_ms } => {
                Some(retry_after_ms.div_ceil(1000).max(1))
            }
            GatewayError::Busy(_) => Some(1),
            GatewayError::QuotaExceeded {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        }
    }

    /// The `retry-after-ms` value to send, if any.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            GatewayError::RateLimited { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        }
    }

    /// OpenAI's `param` field: the request field at fault, when one is.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            GatewayError::UnknownResponse { previous: true, .. } => Some("previous_response_id"),
            _ => None,
        }
    }

    /// The OpenAI-style body `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> Bytes {
        error_body_with(
            &self.to_string(),
            self.error_type(),
            self.param(),
            self.code(),
        )
    }
}

impl From<crate::http1::DecodeError> for GatewayError {
    fn from(e: crate::http1::DecodeError) -> Self {
        match e.status() {
            431 => GatewayError::HeadTooLarge(e.to_string()),
            505 => GatewayError::Version,
            _ => GatewayError::BadRequest(e.to_string()),
        }
    }
}

/// Build `{"error":{"message":…,"type":…,"param":null,"code":…}}` (OpenAI's one error shape)
/// with proper JSON escaping.
pub fn error_body(message: &str, error_type: &str, code: &str) -> Bytes {
    error_body_with(message, error_type, None, code)
}

/// [`error_body`] with a `param`.
pub fn error_body_with(message: &str, error_type: &str, param: Option<&str>, code: &str) -> Bytes {
    let v = serde_json::json!({
        "error": {"message": message, "type": error_type, "param": param, "code": code}
    });
    Bytes::from(v.to_string())
}

/// Reason phrase for the statuses the gateway itself produces.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A complete response the gateway writes itself: JSON body with Content-Length.
pub fn simple_response(
    out: &mut BytesMut,
    status: u16,
    extra_headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
    close: bool,
) {
    let mut n = itoa::Buffer::new();
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(n.format(status).as_bytes());
    out.put_u8(b' ');
    out.put_slice(reason(status).as_bytes());
    out.put_slice(b"\r\ncontent-type: ");
    out.put_slice(content_type.as_bytes());
    out.put_slice(b"\r\ncontent-length: ");
    out.put_slice(n.format(body.len()).as_bytes());
    out.put_slice(b"\r\n");
    for (k, v) in extra_headers {
        crate::http1::put_header(out, k.as_bytes(), v.as_bytes());
    }
    if close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped_and_escaped() {
        let e = GatewayError::UnknownModel("a\"b".into());
        assert_eq!(e.status(), 400);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            v["error"]["message"],
            "Invalid model or deployment-id: 'a\"b'"
        );
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "DeploymentNotFound");
    }

    #[test]
    fn rate_limited_says_when() {
        let e = GatewayError::RateLimited {
            retry_after_ms: 1500,
        };
        assert_eq!(
            (e.status(), e.retry_after(), e.retry_after_ms()),
            (429, Some(2), Some(1500))
        );
        assert_eq!(
            e.to_string(),
            "Token limit is exceeded. Try again in 2 seconds."
        );
    }

    #[test]
    fn simple_response_frames_body() {
        let mut out = BytesMut::new();
        simple_response(
            &mut out,
            503,
            &[("retry-after", "2")],
            "application/json",
            b"{}",
            true,
        );
        let s = std::str::from_utf8(&out).unwrap();
        assert!(s.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(s.contains("content-length: 2\r\nretry-after: 2\r\nconnection: close\r\n\r\n{}"));
    }
}
