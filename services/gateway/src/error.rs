//! How the gateway answers an [`ApiError`] (the shared ingest path's error) in the style
//! each protocol's clients expect.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
pub use weir_ingest::ApiError;

/// How a protocol's clients expect errors to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// Plain text (Prometheus logs the body of a failed remote write).
    Text,
    /// `{"code": "...", "message": "..."}` as InfluxDB v2 and JSON clients expect.
    Json,
    /// OTLP/HTTP: a `google.rpc.Status`, protobuf-encoded.
    OtlpProtobuf,
    /// OTLP/HTTP: a `google.rpc.Status` in OTLP's JSON.
    OtlpJson,
    /// OTLP/gRPC: a trailers-only gRPC status.
    Grpc,
}

/// `google.rpc.Status` without details: what OTLP/HTTP answers a failed request with.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An [`ApiError`] as an HTTP answer.
pub trait Answer {
    /// The gRPC status code of this error (OTLP's `Status.code`).
    fn grpc_code(&self) -> i32;
    fn into_response_with(self, style: ErrorStyle) -> Response;
}

impl Answer for ApiError {
    fn grpc_code(&self) -> i32 {
        match self.status {
            StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
            StatusCode::UNAUTHORIZED => 16,        // UNAUTHENTICATED
            StatusCode::FORBIDDEN => 7,            // PERMISSION_DENIED
            StatusCode::TOO_MANY_REQUESTS => 8,    // RESOURCE_EXHAUSTED
            StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
            _ => 13,                               // INTERNAL
        }
    }

    fn into_response_with(self, style: ErrorStyle) -> Response {
        let mut resp = match style {
            ErrorStyle::Text => (self.status, format!("{}\n", self.message)).into_response(),
            ErrorStyle::Json => {
                let code = match self.status {
                    StatusCode::BAD_REQUEST => "invalid",
                    StatusCode::UNAUTHORIZED => "unauthorized",
                    StatusCode::PAYLOAD_TOO_LARGE => "request too large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported media type",
                    StatusCode::TOO_MANY_REQUESTS => "too many requests",
                    _ => "unavailable",
                };
                (
                    self.status,
                    axum::Json(serde_json::json!({"code": code, "message": self.message})),
                )
                    .into_response()
            }
            ErrorStyle::OtlpProtobuf => {
                let body = prost::Message::encode_to_vec(&RpcStatus {
                    code: self.grpc_code(),
                    message: self.message.clone(),
                });
                (
                    self.status,
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    body,
                )
                    .into_response()
            }
            ErrorStyle::Grpc => return crate::protocols::otlp::grpc::error_response(&self),
            ErrorStyle::OtlpJson => (
                self.status,
                axum::Json(serde_json::json!({"code": self.grpc_code(), "message": self.message})),
            )
                .into_response(),
        };
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"weir\""),
            );
        }
        resp
    }
}
