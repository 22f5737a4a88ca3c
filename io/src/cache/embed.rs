//! The embeddings call of a semantic lookup: an ordinary request to the embedder's pool (member
//! pick, failover on 429/5xx, credentials, breakers), built by the gateway itself, read whole and
//! checked into a unit vector. Bounded by the embedder's `timeout` and by the client: a client
//! that hangs up cancels it.

use std::time::{Duration, Instant};

use aigw_core::cache::index::{unit, Unit};
use aigw_core::config::CacheEmbedder;
use aigw_core::http1::{decode_request_head, BodyFraming, HeadLimits};
use aigw_core::openai::classify;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use crate::conn::Conn;
use crate::failover::{attempt, Ask, Tried};
use crate::peer::ClientIo;
use crate::pipeline::RequestCtx;
use crate::server::Request;
use crate::whole::{read_whole, Whole};

/// Largest embeddings answer read: 8,192 floats as JSON text with room to spare.
const MAX_ANSWER: usize = 1 << 20;

/// Why there is no vector (the lookup then fails open).
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// No answer within the embedder's timeout.
    #[error("the embedder did not answer within {0:?}")]
    Timeout(Duration),
    /// The pool gave no answer (every member failed or none was available).
    #[error("the embedder's pool failed: {0}")]
    Pool(String),
    /// The answer was not a 200.
    #[error("the embedder answered {0}")]
    Status(u16),
    /// The body could not be read or was not an embeddings list of the configured size.
    #[error("the embedder's answer is unusable: {0}")]
    Answer(String),
    /// The client hung up while its prompt was being embedded (not the embedder's failure).
    #[error("the client closed the connection")]
    ClientGone,
    /// The request could not be built (not reached with a checked config).
    #[error("cannot build the embeddings request: {0}")]
    Request(String),
}

/// The unit vector of `text` from the embedder.
///
/// # Errors
/// See [`EmbedError`]; every one of them is a cache error, never the client's.
pub async fn vector<S: ClientIo>(
    ctx: &mut RequestCtx<'_>,
    conn: &Conn<S>,
    emb: &CacheEmbedder,
    text: &str,
) -> Result<Unit, EmbedError> {
    let req = request(ctx, emb, text)?;
    let call = call(ctx, emb, &req);
    let timed = monoio::time::timeout(emb.timeout, call);
    let raw = match crate::pipeline::watched(conn, async { Ok(timed.await) }).await {
        Ok(Ok(r)) => r?,
        Ok(Err(_elapsed)) => return Err(EmbedError::Timeout(emb.timeout)),
        // The client left: the request ends anyway, with nothing to embed for.
        Err(_) => return Err(EmbedError::ClientGone),
    };
    unit(raw, emb.dimensions).map_err(|e| EmbedError::Answer(e.to_string()))
}

/// The embeddings request, as if a client had sent it to `/v1/embeddings`.
fn request(ctx: &RequestCtx<'_>, emb: &CacheEmbedder, text: &str) -> Result<Request, EmbedError> {
    let body = serde_json::to_vec(&serde_json::json!({
        "model": emb.model,
        "input": text,
        "dimensions": emb.dimensions,
        // Little-endian f32s in base64: a fraction of the bytes and of the parsing of decimal
        // floats. An embedder that ignores it and answers floats is read as well.
        "encoding_format": "base64",
    }))
    .map_err(|e| EmbedError::Request(e.to_string()))?;
    let mut head = BytesMut::with_capacity(128);
    head.extend_from_slice(b"POST /v1/embeddings HTTP/1.1\r\nhost: aigw\r\ncontent-type: application/json\r\ncontent-length: ");
    head.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    let head = decode_request_head(&mut head, &HeadLimits::default())
        .ok()
        .flatten()
        .ok_or_else(|| EmbedError::Request("head".into()))?;
    Ok(Request::internal(head, Bytes::from(body), ctx.req.peer))
}

/// One call through the pool, read whole.
async fn call(
    ctx: &mut RequestCtx<'_>,
    emb: &CacheEmbedder,
    req: &Request,
) -> Result<Vec<f32>, EmbedError> {
    let path = classify("/v1/embeddings").map_err(|_| EmbedError::Request("path".into()))?;
    let ask = Ask {
        req,
        path: &path,
        model: &emb.model,
        model_in_body: true,
        request_id: &ctx.rec.request_id,
        pin: None,
    };
    let mut wait = Duration::ZERO;
    let mut tried = Tried::default();
    let t0 = Instant::now();
    let won = attempt(ctx.shard, ctx.snap, emb.pool, &ask, &mut wait, &mut tried).await;
    let mut won = won.map_err(|e| EmbedError::Pool(e.to_string()))?;
    let g = &ctx.snap.cfg.gateway;
    if won.resp.status != 200 {
        // Dropped with its connection: an unread error body must not go back to the pool.
        return Err(EmbedError::Status(won.resp.status));
    }
    if won
        .resp
        .header("content-encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case(b"identity"))
    {
        // Nothing asked for compression; an answer in one anyway is not worth decoding here.
        return Err(EmbedError::Answer("a compressed answer".into()));
    }
    let framing: BodyFraming = won.resp.framing;
    let body = match read_whole(
        &mut won.up,
        framing,
        MAX_ANSWER,
        g.upstream_timeout,
        &mut wait,
    )
    .await
    {
        Whole::Body(b) => b,
        Whole::Relay => return Err(EmbedError::Answer("too large or unframed".into())),
        Whole::Failed(why) => return Err(EmbedError::Answer(why.into())),
    };
    if won.resp.keep_alive && won.up.conn.buf.is_empty() {
        ctx.shard.pools.put(
            &ctx.snap.backend_keys[won.backend],
            won.up,
            g.max_idle_per_backend,
        );
    }
    ctx.waited(t0.elapsed());
    parse(&body)
}

#[derive(Deserialize)]
struct List {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vector,
}

/// A vector as sent: base64 of little-endian `f32`s, or a list of numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum Vector {
    Base64(String),
    Floats(Vec<f32>),
}

/// The first vector of an embeddings list.
fn parse(body: &[u8]) -> Result<Vec<f32>, EmbedError> {
    use base64::Engine as _;
    let list: List = serde_json::from_slice(body).map_err(|e| EmbedError::Answer(e.to_string()))?;
    let first = list
        .data
        .into_iter()
        .next()
        .ok_or_else(|| EmbedError::Answer("no vector in \"data\"".into()))?;
    match first.embedding {
        Vector::Floats(v) => Ok(v),
        Vector::Base64(text) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| EmbedError::Answer(format!("base64: {e}")))?;
            if bytes.len() % 4 != 0 {
                return Err(EmbedError::Answer(format!(
                    "base64 vector of {} bytes is not a list of f32s",
                    bytes.len()
                )));
            }
            Ok(bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_vector_is_base64_f32s_or_a_list_of_numbers() {
        assert_eq!(
            parse(br#"{"data":[{"embedding":[0.5,-1]}]}"#).unwrap(),
            [0.5, -1.0]
        );
        // 0.5 and -1.0 as little-endian f32s: 00 00 00 3f, 00 00 80 bf.
        assert_eq!(
            parse(br#"{"data":[{"embedding":"AAAAPwAAgL8="}]}"#).unwrap(),
            [0.5, -1.0]
        );
        for bad in [
            &br#"{"data":[]}"#[..],
            br#"{"data":[{"embedding":"AAA"}]}"#,
            br#"{"data":[{"embedding":"AAAAAAA="}]}"#,
            br#"{"data":[{"embedding":"not base64!"}]}"#,
            br#"{"data":[{"embedding":[1,"x"]}]}"#,
            br#"{"error":{"message":"no"}}"#,
            b"[",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
