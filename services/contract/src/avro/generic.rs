//! Decoding through `apache-avro` with schema resolution: for writer versions other than
//! the current one (older producers, Confluent-framed records), and as the reference the
//! fast codec is tested against.
use apache_avro::types::Value;
use apache_avro::Schema;

use super::{current, DecodeError};
use crate::model::{Label, MetricType, MetricsBatch, Sample, Series};

/// Decodes a datum written with `writer`, resolved to the current schema.
pub fn decode_with_apache_avro(writer: &Schema, datum: &[u8]) -> Result<MetricsBatch, DecodeError> {
    super::limit_allocations();
    let mut reader = datum;
    let value = apache_avro::from_avro_datum(writer, &mut reader, Some(&current().schema))
        .map_err(|e| DecodeError::Avro(e.to_string()))?;
    if !reader.is_empty() {
        return Err(DecodeError::Corrupt {
            at: datum.len() - reader.len(),
            what: format!("{} trailing bytes after the batch", reader.len()),
        });
    }
    batch_from_value(value)
}

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError::Avro(what.into())
}

fn fields(v: Value, what: &str) -> Result<Vec<(String, Value)>, DecodeError> {
    match v {
        Value::Record(f) => Ok(f),
        other => Err(bad(format!("{what}: expected a record, got {other:?}"))),
    }
}

fn array(v: Value, what: &str) -> Result<Vec<Value>, DecodeError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(bad(format!("{what}: expected an array, got {other:?}"))),
    }
}

fn string(v: Value, what: &str) -> Result<String, DecodeError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(bad(format!("{what}: expected a string, got {other:?}"))),
    }
}

fn opt_string(v: Value, what: &str) -> Result<Option<String>, DecodeError> {
    match v {
        Value::Union(_, inner) => match *inner {
            Value::Null => Ok(None),
            other => string(other, what).map(Some),
        },
        Value::Null => Ok(None),
        other => string(other, what).map(Some),
    }
}

fn batch_from_value(v: Value) -> Result<MetricsBatch, DecodeError> {
    let mut series = Vec::new();
    for (name, value) in fields(v, "MetricsBatch")? {
        if name == "series" {
            for s in array(value, "series")? {
                series.push(series_from_value(s)?);
            }
        }
    }
    Ok(MetricsBatch { series })
}

fn series_from_value(v: Value) -> Result<Series, DecodeError> {
    let mut s = Series::default();
    for (name, value) in fields(v, "Series")? {
        match name.as_str() {
            "name" => s.name = string(value, "Series.name")?,
            "labels" => {
                for l in array(value, "Series.labels")? {
                    let mut label = Label::new("", "");
                    for (n, v) in fields(l, "Label")? {
                        match n.as_str() {
                            "name" => label.name = string(v, "Label.name")?,
                            "value" => label.value = string(v, "Label.value")?,
                            _ => {}
                        }
                    }
                    s.labels.push(label);
                }
            }
            "samples" => {
                for x in array(value, "Series.samples")? {
                    let mut sample = Sample::new(0, 0.0);
                    for (n, v) in fields(x, "Sample")? {
                        match (n.as_str(), v) {
                            ("timestamp", Value::TimestampMillis(t) | Value::Long(t)) => {
                                sample.timestamp_ms = t
                            }
                            ("value", Value::Double(d)) => sample.value = d,
                            (n, v) => return Err(bad(format!("Sample.{n}: unexpected {v:?}"))),
                        }
                    }
                    s.samples.push(sample);
                }
            }
            "type" => {
                s.metric_type = match value {
                    Value::Enum(_, sym) => MetricType::from_symbol(&sym)
                        .ok_or_else(|| bad(format!("Series.type: unknown symbol {sym}")))?,
                    other => {
                        return Err(bad(format!("Series.type: expected an enum, got {other:?}")))
                    }
                }
            }
            "unit" => s.unit = opt_string(value, "Series.unit")?,
            "tenant" => s.tenant = opt_string(value, "Series.tenant")?,
            _ => {}
        }
    }
    Ok(s)
}
