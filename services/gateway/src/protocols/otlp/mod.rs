//! `POST /v1/metrics`: OTLP/HTTP metrics — an `ExportMetricsServiceRequest` as protobuf
//! (`Content-Type: application/x-protobuf`) or as OTLP's JSON (`application/json`),
//! optionally gzip-compressed. Translated to series as Prometheus' OTLP receiver does
//! ([`translate`], [`names`]).
//!
//! Answers follow the OTLP/HTTP specification: 200 with an `ExportMetricsServiceResponse`
//! in the request's encoding, whose `partial_success` counts what was refused and says
//! why (delta temporality, exponential histograms, series the data contract refuses);
//! 400 with a `google.rpc.Status` for a body no retry can fix; 429 or 503 with
//! `Retry-After` for what a retry can.
pub mod grpc;
pub mod names;
pub mod translate;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;

use super::{content_type, serve, Call, Protocol};
use crate::error::{ApiError, ErrorStyle};
use crate::server::Gateway;
pub use translate::Translation;
use weir_ingest::{BatchBuilder, Reservation, Written};

const PROTOBUF: Protocol = Protocol {
    name: "otlp",
    errors: ErrorStyle::OtlpProtobuf,
    partial_success: true,
};

const JSON: Protocol = Protocol {
    name: "otlp",
    errors: ErrorStyle::OtlpJson,
    partial_success: true,
};

pub async fn handler(State(gw): State<Arc<Gateway>>, call: Call) -> Response {
    let json = content_type(&call.headers).as_deref() == Some("application/json");
    let translation = gw.otlp.clone();
    serve(
        gw,
        if json { &JSON } else { &PROTOBUF },
        call,
        decode,
        move |plain, batch| parse(plain, json, &translation, batch),
        move |w| respond(w, json),
    )
    .await
}

fn decode(
    raw: Bytes,
    headers: &HeaderMap,
    max: usize,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    match content_type(headers).as_deref() {
        Some("application/x-protobuf" | "application/json") => {
            crate::body::decode_content(raw, headers, max, reservation)
        }
        other => Err(ApiError::unsupported_media(format!(
            "OTLP/HTTP needs Content-Type: application/x-protobuf or application/json, got {}",
            other.unwrap_or("none")
        ))),
    }
}

/// Decodes a request body (protobuf or OTLP JSON).
pub fn decode_request(plain: &[u8], json: bool) -> Result<ExportMetricsServiceRequest, ApiError> {
    if json {
        serde_json::from_slice(plain).map_err(|e| {
            ApiError::bad_request(format!(
                "body is not a valid OTLP JSON ExportMetricsServiceRequest: {e}"
            ))
        })
    } else {
        ExportMetricsServiceRequest::decode(plain).map_err(|e| {
            ApiError::bad_request(format!(
                "body is not a valid OTLP ExportMetricsServiceRequest protobuf: {e}"
            ))
        })
    }
}

/// Feeds every data point of a (decompressed) request body to `batch`.
pub fn parse(
    plain: &[u8],
    json: bool,
    t: &Translation,
    batch: &mut BatchBuilder<'_>,
) -> Result<(), ApiError> {
    let req = decode_request(plain, json)?;
    translate::translate(&req, t, batch)
}

fn respond(w: &Written, json: bool) -> Response {
    let partial_success = w
        .first_rejection
        .as_ref()
        .map(|m| ExportMetricsPartialSuccess {
            rejected_data_points: w.rejected as i64,
            error_message: m.clone(),
        });
    let resp = ExportMetricsServiceResponse { partial_success };
    if json {
        // An empty response is `{}`, not `{"partialSuccess": null}`.
        let body = match resp.partial_success {
            None => serde_json::json!({}),
            Some(_) => serde_json::to_value(&resp).unwrap_or_else(|_| serde_json::json!({})),
        };
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            resp.encode_to_vec(),
        )
            .into_response()
    }
}
