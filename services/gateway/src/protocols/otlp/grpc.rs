//! OTLP/gRPC: `opentelemetry.proto.collector.metrics.v1.MetricsService/Export` on a
//! listener of its own (`gateway.otlp.grpc_listen`, 4317 by convention), HTTP/2 with
//! prior knowledge or over TLS (ALPN h2).
//!
//! Served by the gateway's own HTTP server and request flow rather than tonic's: a unary
//! gRPC call is one HTTP/2 POST whose body is a 5-byte frame header and the message, and
//! whose status travels in trailers. Those few lines keep auth (the `authorization`
//! metadata is an HTTP/2 header), tenant limits, admission and the ingest path exactly
//! those of every other protocol.
//!
//! Statuses: OK with an `ExportMetricsServiceResponse` (its `partial_success` as over
//! HTTP); INVALID_ARGUMENT for what no retry fixes; UNAVAILABLE, or RESOURCE_EXHAUSTED
//! with a `RetryInfo` detail, where the HTTP paths answer 503 or 429 with `Retry-After`
//! (OTLP clients retry RESOURCE_EXHAUSTED only when it carries `RetryInfo`).
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use prost::Message;

use super::parse;
use crate::error::{Answer, ApiError, ErrorStyle};
use crate::protocols::{serve, Call, Protocol};
use crate::server::Gateway;
use weir_ingest::{Reservation, Written};

pub const PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

const PROTOCOL: Protocol = Protocol {
    name: "otlp_grpc",
    errors: ErrorStyle::Grpc,
    partial_success: true,
};

/// The routes of the gRPC listener.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route(PATH, post(handler))
        .fallback(unimplemented)
        // Bodies are read with the gateway's own limits (see `body`).
        .layer(DefaultBodyLimit::disable())
        .with_state(gw)
}

async fn unimplemented() -> Response {
    status_only(12, "this gateway serves only MetricsService/Export", None)
}

async fn handler(State(gw): State<Arc<Gateway>>, call: Call) -> Response {
    let translation = gw.otlp.clone();
    serve(
        gw,
        &PROTOCOL,
        call,
        decode,
        move |plain, batch| parse(plain, false, &translation, batch),
        respond,
    )
    .await
}

fn decode(
    raw: Bytes,
    headers: &HeaderMap,
    max: usize,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !grpc {
        return Err(ApiError::unsupported_media(
            "OTLP/gRPC needs Content-Type: application/grpc",
        ));
    }
    if raw.len() < 5 {
        return Err(ApiError::bad_request(
            "a gRPC message needs its 5-byte frame header",
        ));
    }
    let compressed = raw[0];
    let len = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
    if raw.len() - 5 != len {
        return Err(ApiError::bad_request(format!(
            "the gRPC frame says {len} bytes, {} follow (a unary call carries one message)",
            raw.len() - 5
        )));
    }
    let message = raw.slice(5..);
    match compressed {
        0 => {
            if message.len() > max {
                return Err(ApiError::too_large(format!(
                    "message of {} bytes exceeds the limit of {max} bytes",
                    message.len()
                )));
            }
            Ok(message)
        }
        1 => {
            let enc = headers
                .get("grpc-encoding")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if enc != "gzip" {
                return Err(ApiError::unsupported_media(format!(
                    "grpc-encoding {enc:?} is not supported: send gzip or identity"
                )));
            }
            crate::body::gunzip(&message, max, reservation).map(Bytes::from)
        }
        f => Err(ApiError::bad_request(format!(
            "gRPC frame flag {f} (want 0 or 1)"
        ))),
    }
}

fn respond(w: &Written) -> Response {
    let partial_success = w
        .first_rejection
        .as_ref()
        .map(|m| ExportMetricsPartialSuccess {
            rejected_data_points: w.rejected as i64,
            error_message: m.clone(),
        });
    let message = ExportMetricsServiceResponse { partial_success }.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(message.len() as u32);
    frame.put_slice(&message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = axum::body::Body::new(Unary {
        data: Some(frame.freeze()),
        trailers: Some(trailers),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/grpc")],
        body,
    )
        .into_response()
}

/// A unary response body: the message, then the trailers.
struct Unary {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for Unary {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(d) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

/// The gRPC answer to a refused call: a trailers-only response. A content type other
/// than gRPC's gets HTTP 415, as the gRPC specification asks.
pub fn error_response(e: &ApiError) -> Response {
    if e.status == StatusCode::UNSUPPORTED_MEDIA_TYPE && e.message.contains("Content-Type") {
        return (e.status, format!("{}\n", e.message)).into_response();
    }
    let code = match e.status {
        // Retryable, and said so: OTLP clients retry RESOURCE_EXHAUSTED only with
        // RetryInfo, UNAVAILABLE always.
        StatusCode::TOO_MANY_REQUESTS if e.retry_after.is_some() => 8,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => 14,
        _ => e.grpc_code(),
    };
    status_only(code, &e.message, e.retry_after)
}

fn status_only(code: i32, message: &str, retry: Option<std::time::Duration>) -> Response {
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "application/grpc")]).into_response();
    let h = resp.headers_mut();
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        h.insert("grpc-message", v);
    }
    if let Some(after) = retry {
        let details = status_with_retry_info(code, message, after);
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(details);
        if let Ok(v) = HeaderValue::from_str(&b64) {
            h.insert("grpc-status-details-bin", v);
        }
    }
    resp
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// The three google.rpc / protobuf messages a RetryInfo detail needs; defined here rather
// than pulled in with a googleapis crate for these few fields.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

fn status_with_retry_info(code: i32, message: &str, after: std::time::Duration) -> Vec<u8> {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: after.as_secs().max(1) as i64,
            nanos: 0,
        }),
    };
    RpcStatus {
        code,
        message: message.to_string(),
        details: vec![Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: info.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(
            percent_encode("bad body: 100% € ok"),
            "bad body: 100%25 %E2%82%AC ok"
        );
    }

    #[test]
    fn a_throttled_call_says_when_to_retry() {
        let e = ApiError::retry(
            StatusCode::TOO_MANY_REQUESTS,
            "tenant acme is over its limit",
            std::time::Duration::from_secs(2),
        );
        let r = error_response(&e);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "8");
        let b64 = r.headers()["grpc-status-details-bin"].to_str().unwrap();
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .unwrap();
        let s = RpcStatus::decode(raw.as_slice()).unwrap();
        assert_eq!(
            s.details[0].type_url,
            "type.googleapis.com/google.rpc.RetryInfo"
        );
        let info = RetryInfo::decode(s.details[0].value.as_slice()).unwrap();
        assert_eq!(info.retry_delay.unwrap().seconds, 2);
        // Kafka away: UNAVAILABLE, which clients retry.
        let e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Kafka unreachable");
        assert_eq!(error_response(&e).headers()["grpc-status"], "14");
    }
}
