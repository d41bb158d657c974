//! One module per push protocol. Each turns a request body into [`Parsed`] series and
//! hands them to the shared [`Ingest`]; everything else (auth, limits, validation,
//! partitioning, Kafka) is done once, here and in `ingest`.
pub mod influx;
pub mod json_push;
pub mod remote_write;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use weir_contract::Series;

use crate::error::{ApiError, ErrorStyle};
use crate::ingest::{BatchBuilder, Written};
use crate::server::Gateway;
use crate::validate::Rejections;

/// What a protocol that builds owned series (line protocol, JSON) parsed.
#[derive(Debug, Default)]
pub struct Parsed {
    pub series: Vec<Series>,
    /// Samples the protocol refused before validation (e.g. unparseable lines).
    pub rejected: Rejections,
}

impl Parsed {
    pub fn into_batch(self, b: &mut BatchBuilder<'_>) -> Result<(), ApiError> {
        if let Some(first) = self.rejected.first {
            b.reject(self.rejected.samples, || first);
        }
        b.add_owned(self.series)
    }
}

/// How one protocol is served.
pub struct Protocol {
    /// Metrics label and log field.
    pub name: &'static str,
    pub errors: ErrorStyle,
}

/// The content type without parameters, lower-cased.
pub(crate) fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// The common request flow: auth → read body (limits) → decode → admit → parse → write.
/// `decode` turns the raw body into the protocol's plain bytes (decompression);
/// `parse` feeds the series it finds to the batch builder.
pub(crate) async fn serve(
    gw: Arc<Gateway>,
    proto: &Protocol,
    headers: HeaderMap,
    body: Body,
    decode: impl FnOnce(Bytes, &HeaderMap, usize) -> Result<Bytes, ApiError>,
    parse: impl FnOnce(&[u8], &mut BatchBuilder<'_>) -> Result<(), ApiError>,
    ok: impl FnOnce(&Written) -> Response,
) -> Response {
    let started = Instant::now();
    let result = async {
        let tenant = gw.auth.tenant(&headers)?;
        let raw = crate::body::read(body, &headers, gw.body_limits).await?;
        metrics::counter!("weir_gateway_received_bytes_total", "protocol" => proto.name)
            .increment(raw.len() as u64);
        let plain = decode(raw, &headers, gw.body_limits.max_decompressed)?;
        let _permit = gw.ingest.admit(plain.len())?;
        let encoded = {
            let mut batch = gw.ingest.batch(tenant.as_deref(), plain.len());
            parse(&plain, &mut batch)?;
            batch.finish()
        };
        drop(plain);
        gw.ingest.write(proto.name, encoded).await
    }
    .await;
    let resp = match result {
        Ok(w) => ok(&w),
        Err(e) => {
            if e.status.is_server_error() || e.status == StatusCode::TOO_MANY_REQUESTS {
                tracing::warn!(protocol = proto.name, status = %e.status, error = %e.message, "request not written");
            } else {
                tracing::debug!(protocol = proto.name, status = %e.status, error = %e.message, "request refused");
            }
            e.into_response_with(proto.errors)
        }
    };
    let code = resp.status().as_u16().to_string();
    metrics::counter!("weir_gateway_requests_total", "protocol" => proto.name, "code" => code)
        .increment(1);
    metrics::histogram!("weir_gateway_request_duration_seconds", "protocol" => proto.name)
        .record(started.elapsed().as_secs_f64());
    resp
}

pub(crate) fn no_content(_: &Written) -> Response {
    StatusCode::NO_CONTENT.into_response()
}
