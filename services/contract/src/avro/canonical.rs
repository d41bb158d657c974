//! Parsing Canonical Form and the CRC-64-AVRO (Rabin) fingerprint, per the Avro
//! specification. Written here because `apache-avro` 0.21 renders a logical type's base
//! as `{"type":"long"}` instead of `"long"` in its canonical form, so its fingerprint of
//! any schema with a logical type differs from Java's, Python's (fastavro) and the spec's.
use serde_json::{Map, Value};

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of a schema given as JSON text.
pub fn parsing_canonical_form(schema_json: &str) -> Result<String, String> {
    let v: Value =
        serde_json::from_str(schema_json).map_err(|e| format!("schema is not JSON: {e}"))?;
    let mut out = String::new();
    write(&v, "", &mut out)?;
    Ok(out)
}

fn fullname(name: &str, ns: &str) -> String {
    if name.contains('.') || ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}.{name}")
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

fn write(v: &Value, ns: &str, out: &mut String) -> Result<(), String> {
    match v {
        Value::String(s) if PRIMITIVES.contains(&s.as_str()) => out.push_str(&quote(s)),
        Value::String(s) => out.push_str(&quote(&fullname(s, ns))),
        Value::Array(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(it, ns, out)?;
            }
            out.push(']');
        }
        Value::Object(o) => write_object(o, ns, out)?,
        other => return Err(format!("unexpected schema element {other}")),
    }
    Ok(())
}

fn write_object(o: &Map<String, Value>, ns: &str, out: &mut String) -> Result<(), String> {
    let ty = o.get("type").ok_or("schema object without type")?;
    let ty_str = match ty {
        Value::String(s) => s.as_str(),
        // {"type": {...}} or {"type": [...]}: the object only wraps another schema.
        other => return write(other, ns, out),
    };
    if PRIMITIVES.contains(&ty_str) {
        // [PRIMITIVES] and [STRIP]: logicalType and any other attribute go.
        out.push_str(&quote(ty_str));
        return Ok(());
    }
    match ty_str {
        "record" | "error" | "enum" | "fixed" => {
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .ok_or("named type without name")?;
            let own_ns = o.get("namespace").and_then(Value::as_str).unwrap_or(ns);
            let full = fullname(name, own_ns);
            // Nested names default to the namespace of the enclosing name.
            let inner_ns = full
                .rsplit_once('.')
                .map(|(n, _)| n)
                .unwrap_or("")
                .to_string();
            out.push_str(&format!(
                "{{\"name\":{},\"type\":{}",
                quote(&full),
                quote(ty_str)
            ));
            match ty_str {
                "enum" => {
                    let symbols = o.get("symbols").ok_or("enum without symbols")?;
                    out.push_str(&format!(
                        ",\"symbols\":{}",
                        serde_json::to_string(symbols).map_err(|e| e.to_string())?
                    ));
                }
                "fixed" => {
                    let size = o
                        .get("size")
                        .and_then(Value::as_u64)
                        .ok_or("fixed without size")?;
                    out.push_str(&format!(",\"size\":{size}"));
                }
                _ => {
                    out.push_str(",\"fields\":[");
                    let fields = o
                        .get("fields")
                        .and_then(Value::as_array)
                        .ok_or("record without fields")?;
                    for (i, f) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let fname = f
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or("field without name")?;
                        out.push_str(&format!("{{\"name\":{},\"type\":", quote(fname)));
                        write(f.get("type").ok_or("field without type")?, &inner_ns, out)?;
                        out.push('}');
                    }
                    out.push(']');
                }
            }
            out.push('}');
        }
        "array" => {
            out.push_str("{\"type\":\"array\",\"items\":");
            write(o.get("items").ok_or("array without items")?, ns, out)?;
            out.push('}');
        }
        "map" => {
            out.push_str("{\"type\":\"map\",\"values\":");
            write(o.get("values").ok_or("map without values")?, ns, out)?;
            out.push('}');
        }
        named => out.push_str(&quote(&fullname(named, ns))),
    }
    Ok(())
}

/// CRC-64-AVRO of `data`, as the specification's reference implementation computes it.
pub fn rabin(data: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & (0u64.wrapping_sub(fp & 1)));
            }
            *slot = fp;
        }
        t
    });
    let mut fp = EMPTY;
    for b in data {
        fp = (fp >> 8) ^ table[((fp ^ *b as u64) & 0xff) as usize];
    }
    fp
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::rabin::Rabin;

    fn apache_fp(schema: &str) -> u64 {
        let s = apache_avro::Schema::parse_str(schema).unwrap();
        u64::from_le_bytes(s.fingerprint::<Rabin>().bytes[..8].try_into().unwrap())
    }

    #[test]
    fn agrees_with_apache_avro_where_it_is_right() {
        // Without logical types apache-avro's canonical form follows the spec.
        for schema in [
            r#""string""#,
            r#"{"type":"int"}"#,
            r#"{"type":"record","name":"R","namespace":"a.b","doc":"x","fields":[
                {"name":"f","type":{"type":"array","items":{"type":"record","name":"I","fields":[{"name":"g","type":"long","default":1}]}}},
                {"name":"h","type":["null","I"],"default":null},
                {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
                {"name":"m","type":{"type":"map","values":{"type":"fixed","name":"F","size":4}}}]}"#,
        ] {
            let ours = parsing_canonical_form(schema).unwrap();
            let theirs = apache_avro::Schema::parse_str(schema)
                .unwrap()
                .canonical_form();
            assert_eq!(ours, theirs);
            assert_eq!(rabin(ours.as_bytes()), apache_fp(schema));
        }
    }

    #[test]
    fn logical_types_are_stripped_to_their_base() {
        let pcf =
            parsing_canonical_form(r#"{"type":"long","logicalType":"timestamp-millis"}"#).unwrap();
        assert_eq!(pcf, r#""long""#);
    }

    #[test]
    fn spec_vector_for_string() {
        // CRC-64-AVRO("\"string\"") from the Avro specification's test data.
        assert_eq!(rabin(br#""string""#) as i64, -8142146995180207161);
    }
}
