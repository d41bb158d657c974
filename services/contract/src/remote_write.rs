//! Prometheus remote write 1.0 messages, generated from `schemas/proto/remote.proto`.
#![allow(clippy::all, missing_docs)]
include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
