//! Bearer API keys. Each key maps to a tenant; the tenant is written into every series
//! as a label (replacing any value the client sent) so tenants cannot spoof each other.
use std::collections::HashMap;

use axum::http::{header, HeaderMap};
use weir_runtime::config::AuthConfig;

use crate::error::ApiError;

#[derive(Debug, Clone)]
pub struct Auth {
    enabled: bool,
    tenant_label: String,
    keys: HashMap<String, String>,
}

impl Auth {
    pub fn from_config(c: &AuthConfig) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        for k in &c.keys {
            let key = k
                .resolve()
                .map_err(|e| anyhow::anyhow!("gateway.auth: {e}"))?;
            keys.insert(key, k.tenant.clone());
        }
        Ok(Self {
            enabled: c.enabled,
            tenant_label: c.tenant_label.clone(),
            keys,
        })
    }

    pub fn tenant_label(&self) -> &str {
        &self.tenant_label
    }

    /// The caller's tenant (`None` when auth is off), or 401.
    /// Accepts `Authorization: Bearer KEY` and InfluxDB's `Authorization: Token KEY`.
    pub fn tenant(&self, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        if !self.enabled {
            return Ok(None);
        }
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing Authorization header: send `Authorization: Bearer <api key>`",
                )
            })?
            .to_str()
            .map_err(|_| ApiError::unauthorized("Authorization header is not valid text"))?;
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("Token "))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "Authorization must be `Bearer <api key>` or `Token <api key>`",
                )
            })?
            .trim();
        self.keys
            .get(key)
            .map(|t| Some(t.clone()))
            .ok_or_else(|| ApiError::unauthorized("invalid API key"))
    }
}
