//! What the ingest path answers when it does not write: a status (the HTTP status a
//! gateway client gets; other callers read it as a class: 413 never succeeds on retry,
//! 429/503 do), a message naming the problem, and when to try again.
use std::time::Duration;

use http::StatusCode;

/// An error answer: status, a message naming the problem, and Retry-After when the
/// client should try again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// The client should retry after `after` (full queues, Kafka unavailable).
    pub fn retry(status: StatusCode, message: impl Into<String>, after: Duration) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: Some(after),
        }
    }

    /// Whether the same write can succeed later (a full budget or queue, Kafka away).
    pub fn is_retryable(&self) -> bool {
        self.retry_after.is_some()
    }
}
