//! Reading request bodies within limits: the size as sent, then the size after
//! decompression, checked before and while decompressing so a small bomb cannot expand
//! into memory.
use std::io::Read;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_body: usize,
    pub max_decompressed: usize,
}

/// Reads the whole body, refusing more than `max_body` bytes with 413.
pub async fn read(body: Body, headers: &HeaderMap, limits: BodyLimits) -> Result<Bytes, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limits.max_body {
            return Err(too_big(len, limits.max_body));
        }
    }
    axum::body::to_bytes(body, limits.max_body)
        .await
        .map_err(|e| {
            // The only error besides a broken connection is the length limit.
            let msg = e.to_string();
            if msg.contains("length limit") {
                ApiError::too_large(format!(
                    "request body exceeds the limit of {} bytes",
                    limits.max_body
                ))
            } else {
                ApiError::bad_request(format!("cannot read request body: {msg}"))
            }
        })
}

fn too_big(len: usize, max: usize) -> ApiError {
    ApiError::too_large(format!(
        "request body of {len} bytes exceeds the limit of {max} bytes"
    ))
}

/// Snappy block format, as Prometheus remote write sends it.
pub fn snappy(body: &[u8], max: usize) -> Result<Vec<u8>, ApiError> {
    let len = snap::raw::decompress_len(body).map_err(|e| {
        ApiError::bad_request(format!("body is not valid snappy (block format): {e}"))
    })?;
    if len > max {
        return Err(ApiError::too_large(format!(
            "snappy body decompresses to {len} bytes, over the limit of {max} bytes"
        )));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| ApiError::bad_request(format!("body is not valid snappy (block format): {e}")))
}

/// Decodes the body per `Content-Encoding` (`gzip` or none).
pub fn decode_content(body: Bytes, headers: &HeaderMap, max: usize) -> Result<Bytes, ApiError> {
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
        "gzip" | "x-gzip" => gunzip(&body, max).map(Bytes::from),
        other => Err(ApiError::unsupported_media(format!(
            "unsupported Content-Encoding {other:?}: send gzip or no encoding"
        ))),
    }
}

fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity((body.len() * 4).min(max));
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    let mut dec = flate2::read::MultiGzDecoder::new(body).take(max as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request(format!("body is not valid gzip: {e}")))?;
    if out.len() > max {
        return Err(ApiError::too_large(format!(
            "gzip body decompresses to more than the limit of {max} bytes"
        )));
    }
    Ok(out)
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
        let err = gunzip(&bomb, 1 << 20).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn snappy_claims_are_checked_before_decompressing() {
        let big = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; 2 << 20])
            .unwrap();
        assert_eq!(
            snappy(&big, 1 << 20).unwrap_err().status,
            axum::http::StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            snappy(b"\xff\xff\xff\xff\xff\xff", 1 << 20)
                .unwrap_err()
                .status,
            axum::http::StatusCode::BAD_REQUEST
        );
    }
}
