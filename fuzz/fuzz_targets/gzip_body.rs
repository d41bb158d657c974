//! Content-Encoding: gzip bodies: bounded by the decompressed limit and the budget
//! whatever the stream claims.
#![no_main]
use axum::http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use weir_ingest::Reservation;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let limit = 1 << 20;
    if let Ok(out) = weir_gateway::body::decode_content(
        bytes::Bytes::copy_from_slice(data),
        &headers,
        limit,
        &mut Reservation::standalone(8 << 20),
    ) {
        assert!(out.len() <= limit);
    }
});
