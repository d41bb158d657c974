//! Record framing: Avro single-object encoding and the Confluent wire format.
use super::DecodeError;

/// How a record's datum was framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `C3 01` + fingerprint (little-endian CRC-64-AVRO).
    SingleObject { fingerprint: u64 },
    /// `00` + schema id (big-endian), as written by Confluent serializers.
    Confluent { schema_id: u32 },
}

/// The 10-byte single-object header for a schema fingerprint.
pub fn single_object_header(fingerprint: u64) -> [u8; 10] {
    let mut h = [0u8; 10];
    h[0] = 0xC3;
    h[1] = 0x01;
    h[2..].copy_from_slice(&fingerprint.to_le_bytes());
    h
}

/// Splits a record value into its framing and the Avro datum.
pub fn split_framing(payload: &[u8]) -> Result<(Framing, &[u8]), DecodeError> {
    match payload {
        [] => Err(DecodeError::Empty),
        [0xC3, 0x01, rest @ ..] => {
            if rest.len() < 8 {
                return Err(DecodeError::TruncatedHeader(payload.len()));
            }
            let fp = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
            Ok((Framing::SingleObject { fingerprint: fp }, &rest[8..]))
        }
        [0x00, rest @ ..] => {
            if rest.len() < 4 {
                return Err(DecodeError::TruncatedHeader(payload.len()));
            }
            let id = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
            Ok((Framing::Confluent { schema_id: id }, &rest[4..]))
        }
        [0xC3] => Err(DecodeError::TruncatedHeader(1)),
        [b, ..] => Err(DecodeError::UnknownMagic(*b)),
    }
}
