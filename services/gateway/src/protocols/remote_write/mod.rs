//! `POST /api/v1/write`: Prometheus remote write 1.0 — a snappy-compressed protobuf
//! `WriteRequest` (`Content-Type: application/x-protobuf`, `Content-Encoding: snappy`) —
//! and 2.0 ([`v2`], `Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request`),
//! told apart by the content type's `proto` parameter as the 2.0 specification says; any
//! other `proto` is answered 415.
//!
//! The request is read by a small zero-copy protobuf reader ([`wire`]) rather than the
//! prost types generated from `schemas/proto/remote.proto`: prost allocates two strings
//! per label, which was most of the gateway's CPU per sample. Labels stay borrowed from
//! the decompressed body until they are encoded into Avro. The prost types remain the
//! reference: the tests check this reader against them.
pub mod v2;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use bytes::Bytes;
use weir_contract::{MetricType, Sample};

use super::{content_type, no_content, serve, Call, Protocol};
use crate::error::{ApiError, ErrorStyle};
use crate::server::Gateway;
use weir_ingest::validate::{describe, LabelRef};
use weir_ingest::{BatchBuilder, Reservation};

pub const PROTOCOL: Protocol = Protocol {
    name: "remote_write",
    errors: ErrorStyle::Text,
    partial_success: false,
};

const V1_PROTO: &str = "prometheus.writerequest";
const V2_PROTO: &str = "io.prometheus.write.v2.request";

pub async fn handler(State(gw): State<Arc<Gateway>>, call: Call) -> Response {
    if proto_param(&call.headers).as_deref() == Some(V2_PROTO) {
        serve(gw, &v2::PROTOCOL, call, decode, v2::parse, v2::respond).await
    } else {
        serve(gw, &PROTOCOL, call, decode, parse, no_content).await
    }
}

/// The content type's `proto` parameter, lower-cased.
fn proto_param(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("proto")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    })
}

fn decode(
    raw: Bytes,
    headers: &HeaderMap,
    max: usize,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    match content_type(headers).as_deref() {
        Some("application/x-protobuf") => {}
        other => {
            return Err(ApiError::unsupported_media(format!(
                "remote write needs Content-Type: application/x-protobuf, got {}",
                other.unwrap_or("none")
            )))
        }
    }
    match proto_param(headers).as_deref() {
        None | Some(V1_PROTO) | Some(V2_PROTO) => {}
        Some(other) => {
            return Err(ApiError::unsupported_media(format!(
                "proto={other} is not supported: send prometheus.WriteRequest (remote write 1.0) or io.prometheus.write.v2.Request (2.0)"
            )))
        }
    }
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !enc.eq_ignore_ascii_case("snappy") {
        return Err(ApiError::unsupported_media(format!(
            "remote write needs Content-Encoding: snappy, got {}",
            if enc.is_empty() { "none" } else { enc }
        )));
    }
    crate::body::snappy(&raw, max, reservation).map(Bytes::from)
}

fn malformed(e: wire::WireError) -> ApiError {
    ApiError::bad_request(format!(
        "body is not a valid remote-write WriteRequest protobuf: {e}"
    ))
}

/// Feeds every series of a decoded (decompressed) `WriteRequest` to `batch`.
pub fn parse(plain: &[u8], batch: &mut BatchBuilder<'_>) -> Result<(), ApiError> {
    // Metadata (type, unit per metric family) usually comes in requests of its own;
    // collect it first in case it shares one with samples.
    let mut families: HashMap<&str, (MetricType, &str)> = HashMap::new();
    wire::for_each_metadata(plain, |m| {
        families.insert(m.family, (map_type(m.metric_type), m.unit));
    })
    .map_err(malformed)?;

    let mut labels: Vec<LabelRef<'_>> = Vec::with_capacity(16);
    let mut samples: Vec<Sample> = Vec::with_capacity(16);
    let mut result = Ok(());
    let mut series = 0usize;
    wire::for_each_series(plain, &mut labels, &mut samples, |ts, labels, samples| {
        series += 1;
        if result.is_err() {
            return;
        }
        if ts.histograms > 0 {
            batch.reject(ts.histograms, || {
                format!(
                    "series {}: native histograms are not supported",
                    describe(ts.name.unwrap_or(""), labels)
                )
            });
        }
        if samples.is_empty() {
            return;
        }
        if ts.duplicate_name {
            batch.reject(samples.len(), || {
                format!(
                    "series {}: __name__ given twice",
                    describe(ts.name.unwrap_or(""), labels)
                )
            });
            return;
        }
        let Some(name) = ts.name else {
            batch.reject(samples.len(), || {
                format!("series {}: no __name__ label", describe("", labels))
            });
            return;
        };
        let (t, unit) = family(&families, name).unwrap_or((MetricType::Unknown, ""));
        let unit = (!unit.is_empty()).then_some(unit);
        result = batch.add(name, labels, samples, t, unit);
    })
    .map_err(malformed)?;
    if series == 0 && families.is_empty() && !plain.is_empty() {
        // Remote write 2.0 reserves 1.0's field numbers: its Request reads as nothing.
        return Err(ApiError::bad_request(
            "body holds no prometheus.WriteRequest fields (a remote write 2.0 Request?); send it with Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request",
        ));
    }
    result
}

/// Metadata names families; samples carry `_total`, `_bucket`, `_sum`, `_count` suffixes.
fn family<'a>(
    types: &HashMap<&str, (MetricType, &'a str)>,
    name: &str,
) -> Option<(MetricType, &'a str)> {
    if types.is_empty() {
        return None;
    }
    if let Some(t) = types.get(name) {
        return Some(*t);
    }
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|sfx| name.strip_suffix(sfx).and_then(|f| types.get(f).copied()))
}

/// Prometheus' `MetricMetadata.MetricType` numbers.
fn map_type(t: u64) -> MetricType {
    match t {
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 | 4 => MetricType::Histogram,
        5 => MetricType::Summary,
        _ => MetricType::Unknown,
    }
}
