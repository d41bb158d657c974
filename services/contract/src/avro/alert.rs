//! Avro on `alerts.triggered`: one record per firing or resolved alert, in schema
//! `schemas/avro/alert_event.v1.avsc`, single-object encoded.
use std::sync::OnceLock;

use super::canonical::{parsing_canonical_form, rabin};
use super::codec::{put_double, put_long, put_str};
use super::framing::single_object_header;

pub const ALERT_EVENT_V1_AVSC: &str = include_str!("../../../../schemas/avro/alert_event.v1.avsc");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// An alert event; labels and annotations sorted by name.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent<'a> {
    pub status: AlertStatus,
    pub alertname: &'a str,
    pub labels: &'a [(String, String)],
    pub annotations: &'a [(String, String)],
    pub value: f64,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub fingerprint: &'a str,
    pub episode: &'a str,
    pub group: &'a str,
    pub expr: &'a str,
}

/// The schema's CRC-64-AVRO fingerprint.
pub fn alert_event_fingerprint() -> u64 {
    static F: OnceLock<u64> = OnceLock::new();
    *F.get_or_init(|| {
        let pcf = parsing_canonical_form(ALERT_EVENT_V1_AVSC)
            .expect("schemas/avro/alert_event.v1.avsc is part of the build and valid");
        rabin(pcf.as_bytes())
    })
}

fn put_map(b: &mut Vec<u8>, m: &[(String, String)]) {
    if !m.is_empty() {
        put_long(b, m.len() as i64);
        for (k, v) in m {
            put_str(b, k);
            put_str(b, v);
        }
    }
    put_long(b, 0);
}

/// Single-object encoding of one event.
pub fn encode_alert_event(e: &AlertEvent<'_>) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(&single_object_header(alert_event_fingerprint()));
    put_long(
        &mut b,
        match e.status {
            AlertStatus::Firing => 0,
            AlertStatus::Resolved => 1,
        },
    );
    put_str(&mut b, e.alertname);
    put_map(&mut b, e.labels);
    put_map(&mut b, e.annotations);
    put_double(&mut b, e.value);
    put_long(&mut b, e.starts_at);
    match e.ends_at {
        None => put_long(&mut b, 0),
        Some(t) => {
            put_long(&mut b, 1);
            put_long(&mut b, t);
        }
    }
    for s in [e.fingerprint, e.episode, e.group, e.expr] {
        put_str(&mut b, s);
    }
    b
}

/// An event read back from `alerts.triggered`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DecodedAlertEvent {
    /// `firing` or `resolved`.
    pub status: String,
    pub alertname: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub value: f64,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub fingerprint: String,
    pub episode: String,
    pub group: String,
    pub expr: String,
}

/// Why an alert event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AlertDecodeError {
    #[error("not a single-object encoded alert_event.v1 record (header or fingerprint differs)")]
    Header,
    #[error("alert_event.v1: {0}")]
    Avro(String),
    #[error("alert_event.v1: field {0} missing or of another type")]
    Field(&'static str),
}

/// Reads an event written by [`encode_alert_event`]. Hand-rolled on the bounded reader
/// of `codec` rather than apache-avro's generic decoder, which reserves what a map's
/// block count claims before reading it (fuzzing found a 30-byte record asking for
/// 2.7 GB); the test below checks it against apache-avro.
pub fn decode_alert_event(b: &[u8]) -> Result<DecodedAlertEvent, AlertDecodeError> {
    use std::collections::BTreeMap;
    let header = single_object_header(alert_event_fingerprint());
    let body = b
        .strip_prefix(&header[..])
        .ok_or(AlertDecodeError::Header)?;
    let avro = |e: super::DecodeError| AlertDecodeError::Avro(e.to_string());
    let mut r = super::codec::Reader::new(body);
    let status = match r.long().map_err(avro)? {
        0 => "firing",
        1 => "resolved",
        _ => return Err(AlertDecodeError::Field("status")),
    };
    let alertname = r.string().map_err(avro)?;
    let map =
        |r: &mut super::codec::Reader<'_>| -> Result<BTreeMap<String, String>, AlertDecodeError> {
            let mut m = BTreeMap::new();
            r.blocks(2, |r, n| {
                for _ in 0..n {
                    let k = r.string()?;
                    m.insert(k, r.string()?);
                }
                Ok(())
            })
            .map_err(avro)?;
            Ok(m)
        };
    let labels = map(&mut r)?;
    let annotations = map(&mut r)?;
    let value = r.double().map_err(avro)?;
    let starts_at = r.long().map_err(avro)?;
    let ends_at = match r.long().map_err(avro)? {
        0 => None,
        1 => Some(r.long().map_err(avro)?),
        _ => return Err(AlertDecodeError::Field("ends_at")),
    };
    let fingerprint = r.string().map_err(avro)?;
    let episode = r.string().map_err(avro)?;
    let group = r.string().map_err(avro)?;
    let expr = r.string().map_err(avro)?;
    r.end().map_err(avro)?;
    Ok(DecodedAlertEvent {
        status: status.to_string(),
        alertname,
        labels,
        annotations,
        value,
        starts_at,
        ends_at,
        fingerprint,
        episode,
        group,
        expr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;

    #[test]
    fn apache_avro_reads_what_is_written() {
        let labels = vec![
            ("alertname".to_string(), "Hot".to_string()),
            ("device".to_string(), "d-1".to_string()),
        ];
        let ann = vec![("summary".to_string(), "d-1 is hot".to_string())];
        for (status, ends_at) in [
            (AlertStatus::Firing, None),
            (AlertStatus::Resolved, Some(1_700_000_300_000)),
        ] {
            let e = AlertEvent {
                status,
                alertname: "Hot",
                labels: &labels,
                annotations: &ann,
                value: 85.5,
                starts_at: 1_700_000_000_000,
                ends_at,
                fingerprint: "00112233aabbccdd",
                episode: "00112233aabbccdd-1700000000000",
                group: "fleet",
                expr: "temp > 80",
            };
            let bytes = encode_alert_event(&e);
            assert_eq!(&bytes[..2], &[0xC3, 0x01]);
            assert_eq!(&bytes[2..10], &alert_event_fingerprint().to_le_bytes());
            let schema = apache_avro::Schema::parse_str(ALERT_EVENT_V1_AVSC).unwrap();
            let v = apache_avro::from_avro_datum(&schema, &mut &bytes[10..], None).unwrap();
            let Value::Record(fields) = v else { panic!() };
            let get = |n: &str| fields.iter().find(|f| f.0 == n).unwrap().1.clone();
            let Value::Map(m) = get("labels") else {
                panic!()
            };
            assert_eq!(m.get("device"), Some(&Value::String("d-1".into())));
            assert_eq!(get("value"), Value::Double(85.5));
            assert_eq!(get("starts_at"), Value::TimestampMillis(e.starts_at));
            match ends_at {
                None => assert_eq!(get("ends_at"), Value::Union(0, Box::new(Value::Null))),
                Some(t) => assert_eq!(
                    get("ends_at"),
                    Value::Union(1, Box::new(Value::TimestampMillis(t)))
                ),
            }
            assert_eq!(get("expr"), Value::String("temp > 80".into()));
            let d = decode_alert_event(&bytes).unwrap();
            assert_eq!(d.labels.get("device").map(String::as_str), Some("d-1"));
            assert_eq!(
                (d.starts_at, d.ends_at, d.value),
                (e.starts_at, ends_at, 85.5)
            );
            assert_eq!(
                d.status,
                if ends_at.is_some() {
                    "resolved"
                } else {
                    "firing"
                }
            );
        }
    }
}
