//! Reading request bodies within limits: the size as sent, then the size after
//! decompression, checked before and while decompressing so a small bomb cannot expand
//! into memory.
use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::error::ApiError;
use weir_ingest::Reservation;

#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_body: usize,
    pub max_decompressed: usize,
    /// The whole body must have arrived within this (slow or stalled senders).
    pub read_timeout: Duration,
}

/// The body length the client declared, if any.
pub fn declared_len(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// Reads the whole body, refusing more than `max_body` bytes with 413 and a body that
/// does not arrive within `read_timeout` with 408. Every chunk is charged to the
/// request's reservation before it is kept, so a body the gateway has no room for is
/// refused while it arrives, not after.
pub async fn read(
    body: Body,
    headers: &HeaderMap,
    limits: BodyLimits,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    let declared = declared_len(headers);
    if let Some(len) = declared {
        if len > limits.max_body {
            return Err(too_big(len, limits.max_body));
        }
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
            if buf.len() + chunk.len() > limits.max_body {
                return Err(ApiError::too_large(format!(
                    "request body exceeds the limit of {} bytes",
                    limits.max_body
                )));
            }
            // The declared length was reserved at admission.
            if buf.len() + chunk.len() > reservation.bytes() {
                reservation.grow(buf.len() + chunk.len() - reservation.bytes())?;
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body did not arrive within {:?} (gateway.limits.body_read_timeout)",
                limits.read_timeout
            ),
        )),
    }
}

/// The most of a refused request's body [`discard`] reads, and how long it waits for it.
const DISCARD_MAX: usize = 1 << 20;
const DISCARD_WAIT: Duration = Duration::from_secs(1);

/// Reads and drops a small body the gateway refused before reading it (auth, rate,
/// admission), so the refusal reaches the client as an answer. Unread, the body's
/// stream is reset: HTTP/2 allows that (RST_STREAM NO_ERROR after the response), but
/// clients still uploading (curl is one) report a framing error in place of the 401/403,
/// and HTTP/1.1 loses the kept-alive connection. A body declared larger than
/// `DISCARD_MAX`, or still arriving after `DISCARD_WAIT`, is left to the reset: a
/// refused client is not worth more reading than that.
pub async fn discard(body: Body, headers: &HeaderMap) {
    if declared_len(headers).is_some_and(|n| n > DISCARD_MAX) {
        return;
    }
    let drain = async {
        let mut stream = body.into_data_stream();
        let mut seen = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DISCARD_MAX {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_WAIT, drain).await;
}

fn too_big(len: usize, max: usize) -> ApiError {
    ApiError::too_large(format!(
        "request body of {len} bytes exceeds the limit of {max} bytes"
    ))
}

/// Snappy block format, as Prometheus remote write sends it. The block states its
/// length up front: checked against the limit and reserved before anything is inflated.
pub fn snappy(body: &[u8], max: usize, reservation: &mut Reservation) -> Result<Vec<u8>, ApiError> {
    let len = snap::raw::decompress_len(body).map_err(|e| {
        ApiError::bad_request(format!("body is not valid snappy (block format): {e}"))
    })?;
    if len > max {
        return Err(ApiError::too_large(format!(
            "snappy body decompresses to {len} bytes, over the limit of {max} bytes"
        )));
    }
    reservation.grow(len)?;
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| ApiError::bad_request(format!("body is not valid snappy (block format): {e}")))
}

/// Decodes the body per `Content-Encoding` (`gzip` or none).
pub fn decode_content(
    body: Bytes,
    headers: &HeaderMap,
    max: usize,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match enc.as_str() {
        "" | "identity" => {
            if body.len() > max {
                return Err(ApiError::too_large(format!(
                    "body of {} bytes exceeds the limit of {max} bytes",
                    body.len()
                )));
            }
            Ok(body)
        }
        "gzip" | "x-gzip" => gunzip(&body, max, reservation).map(Bytes::from),
        other => Err(ApiError::unsupported_media(format!(
            "unsupported Content-Encoding {other:?}: send gzip or no encoding"
        ))),
    }
}

/// Inflates in steps, charging the buffer's capacity to the reservation before each,
/// so neither a bomb nor a run of large honest bodies takes more memory than the budget.
pub(crate) fn gunzip(
    body: &[u8],
    max: usize,
    reservation: &mut Reservation,
) -> Result<Vec<u8>, ApiError> {
    const STEP: usize = 256 << 10;
    let mut out: Vec<u8> = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    let mut dec = flate2::read::MultiGzDecoder::new(body).take(max as u64 + 1);
    let base = reservation.bytes();
    loop {
        if out.capacity() - out.len() < STEP {
            // Doubling keeps the copies linear; the cap keeps the buffer near the limit.
            let target = (out.len() * 2).max(STEP).min(max + 1 + STEP);
            out.reserve_exact(target.saturating_sub(out.len()).max(STEP.min(max + 1)));
        }
        let charged = reservation.bytes() - base;
        if out.capacity() > charged {
            reservation.grow(out.capacity() - charged)?;
        }
        let got = (&mut dec)
            .take(STEP as u64)
            .read_to_end(&mut out)
            .map_err(|e| ApiError::bad_request(format!("body is not valid gzip: {e}")))?;
        if out.len() > max {
            return Err(ApiError::too_large(format!(
                "gzip body decompresses to more than the limit of {max} bytes"
            )));
        }
        if got == 0 {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_bomb_is_refused_without_inflating_it() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b'a'; 50 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 100 << 10);
        let err = gunzip(&bomb, 1 << 20, &mut Reservation::standalone(8 << 20)).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn gzip_charges_what_it_inflates_and_stops_when_the_budget_is_used() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let plain: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        enc.write_all(&plain).unwrap();
        let gz = enc.finish().unwrap();
        let mut r = Reservation::standalone(16 << 20);
        assert_eq!(gunzip(&gz, 8 << 20, &mut r).unwrap(), plain);
        assert!(r.bytes() >= plain.len() && r.bytes() < 2 * plain.len() + (1 << 20));
        // A budget of 1 MiB cannot hold 3 MB: refused, not an allocation past it.
        let err = gunzip(&gz, 8 << 20, &mut Reservation::standalone(1 << 20)).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        // Another request holding the budget: 429, a retry can pass.
        let mut other = Reservation::standalone(4 << 20);
        let mut this = other.sharing();
        other.grow(3 << 20).unwrap();
        let err = gunzip(&gz, 8 << 20, &mut this).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn snappy_claims_are_checked_before_decompressing() {
        let big = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; 2 << 20])
            .unwrap();
        assert_eq!(
            snappy(&big, 1 << 20, &mut Reservation::standalone(8 << 20))
                .unwrap_err()
                .status,
            axum::http::StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            snappy(
                b"\xff\xff\xff\xff\xff\xff",
                1 << 20,
                &mut Reservation::standalone(8 << 20)
            )
            .unwrap_err()
            .status,
            axum::http::StatusCode::BAD_REQUEST
        );
    }
}
