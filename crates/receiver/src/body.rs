//! Reading a request body within the size limit and the time limit.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};

use crate::answer::Refusal;

/// What the body will cost at most, judged from the head alone: nothing
/// for a request without a body, its declared length, or `limit` when it
/// declares none (chunked, or HTTP/2 without `content-length`). A declared
/// length over `limit` is refused (413) before a byte is read.
pub(crate) fn expected(
    body: &Incoming,
    headers: &HeaderMap,
    limit: usize,
) -> Result<usize, Refusal> {
    // A request without a body (the providers' GET callbacks) costs nothing.
    if body.is_end_stream() {
        return Ok(0);
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(Refusal::BodyTooLarge { limit }),
        Some(n) => Ok(usize::try_from(n).unwrap_or(limit)),
        None => Ok(limit),
    }
}

/// The whole body, or why not: larger than `limit` (413), not complete
/// within `timeout` (408), or broken off (400). The first poll is what makes
/// hyper answer `Expect: 100-continue`, so this runs only once the head has
/// been judged.
pub(crate) async fn read(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Refusal> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Refusal::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Refusal::BodyTooLarge { limit })
        }
        Ok(Err(_)) => Err(Refusal::BodyUnreadable),
    }
}
