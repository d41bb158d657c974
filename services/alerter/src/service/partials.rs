//! Records on the repartition topic (`alerts.partials`).
//!
//! For every step and every metrics.raw partition it owns, stage one writes exactly one
//! record to *each* partition of the repartition topic: the partials of that step whose
//! rule and group key hash to that partition (often none). One record per (source
//! partition, step, destination) makes a step's contribution atomic — stage two either
//! has all of a source partition's partials for a step or none — and doubles as the
//! per-partition step marker that tells stage two how far each source has come.
//!
//! A destination's share larger than [`MAX_RECORD_BYTES`] (many series on one partition
//! under a per-series rule) would be refused by the broker and stall stage one, so it
//! goes as several chunks: `chunk` of `chunks`, all with one `send` id. Stage two takes a
//! source's partials of a step once every chunk of one send is in, in any order, and
//! never mixes chunks of two sends (a re-send after a restart may be computed from other
//! samples). Chunked partials are sorted first, so the same partials always make the
//! same chunks.
use serde::{Deserialize, Serialize};

use crate::evaluate::Partial;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The metrics.raw partition these partials were computed from.
    pub part: u32,
    /// The evaluation step, event-time milliseconds.
    pub step: i64,
    /// Which computation of the step this is, to keep chunks of two sends apart.
    pub send: u64,
    /// This record's place among the `chunks` that carry the destination's partials.
    pub chunk: u32,
    pub chunks: u32,
    /// (rule index, partial).
    pub partials: Vec<(u32, Partial)>,
}

/// The most bytes of one encoded record: half the broker's and the producer's default
/// `message.max.bytes` (1 MB), leaving room for the batch framing and compression that
/// does not help.
pub const MAX_RECORD_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("undecodable record on the partials topic: {0}")]
pub struct DecodeError(#[from] bincode::Error);

impl StepRecord {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        bincode::serialize(self).unwrap_or_default()
    }

    pub fn encoded_len(&self) -> usize {
        bincode::serialized_size(self).map_or(usize::MAX, |n| n as usize)
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        Ok(super::decode_bounded(b)?)
    }

    /// The record key: source partition and step (for reading the topic by eye; the
    /// destination partition is chosen by [`route`]).
    pub fn key(&self) -> String {
        if self.chunks > 1 {
            format!(
                "{}/{}/{}of{}",
                self.part,
                self.step,
                self.chunk + 1,
                self.chunks
            )
        } else {
            format!("{}/{}", self.part, self.step)
        }
    }
}

/// The repartition-topic partition of a rule's partial: by rule and group key (the
/// series' labels for per-series rules), so every partial of one group meets in one
/// place whichever source partition computed it.
pub fn route(rule: u32, p: &Partial, partitions: u32) -> u32 {
    let key = p.key().map_or(0, |k| k.fingerprint());
    let h = key ^ (u64::from(rule) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // Mix the high bits in: fingerprints of similar label sets differ in few bits.
    let h = h ^ (h >> 29);
    (h % u64::from(partitions.max(1))) as u32
}

/// Splits one source partition's partials of a step into the records for each
/// destination: one per destination, or several chunks (see the module docs) where one
/// would exceed `max_bytes`. Returns (destination, record).
pub fn split(
    part: u32,
    step: i64,
    partials: Vec<(u32, Partial)>,
    partitions: u32,
    max_bytes: usize,
) -> Vec<(u32, StepRecord)> {
    let mut by_dest: Vec<Vec<(u32, Partial)>> =
        (0..partitions.max(1)).map(|_| Vec::new()).collect();
    for (rule, p) in partials {
        let q = route(rule, &p, partitions) as usize;
        by_dest[q].push((rule, p));
    }
    let send = rand::random::<u64>();
    let mut out = Vec::with_capacity(by_dest.len());
    for (q, partials) in by_dest.into_iter().enumerate() {
        let q = q as u32;
        let one = StepRecord {
            part,
            step,
            send,
            chunk: 0,
            chunks: 1,
            partials,
        };
        if one.encoded_len() <= max_bytes {
            out.push((q, one));
            continue;
        }
        let mut partials = one.partials;
        partials.sort_by_cached_key(|(rule, p)| (*rule, p.key().map_or(0, |k| k.fingerprint())));
        let mut chunks: Vec<Vec<(u32, Partial)>> = vec![Vec::new()];
        let mut size = 0;
        for x in partials {
            let n = bincode::serialized_size(&x).map_or(0, |n| n as usize);
            // Room for the record's own fields and the list's length.
            let full = chunks.last().is_some_and(|c| !c.is_empty())
                && size + n > max_bytes.saturating_sub(64);
            if full {
                chunks.push(Vec::new());
                size = 0;
            }
            size += n;
            if let Some(c) = chunks.last_mut() {
                c.push(x);
            }
        }
        let total = chunks.len() as u32;
        out.extend(chunks.into_iter().enumerate().map(|(i, partials)| {
            (
                q,
                StepRecord {
                    part,
                    step,
                    send,
                    chunk: i as u32,
                    chunks: total,
                    partials,
                },
            )
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::Acc;
    use crate::labels::Labels;

    #[test]
    fn a_group_meets_in_one_partition_and_records_round_trip() {
        let g = Labels::from_strs(&[("service", "api")]);
        let a = Partial::Group {
            group: g.clone(),
            acc: Acc::of(1.0),
        };
        let b = Partial::Group {
            group: g,
            acc: Acc::of(f64::NAN),
        };
        assert_eq!(route(3, &a, 8), route(3, &b, 8));
        let recs = split(
            2,
            60_000,
            vec![(3, a), (3, b), (1, Partial::Present)],
            8,
            MAX_RECORD_BYTES,
        );
        assert_eq!(recs.len(), 8);
        assert_eq!(recs.iter().map(|r| r.1.partials.len()).sum::<usize>(), 3);
        for (_, r) in &recs {
            let back = StepRecord::decode(&r.encode()).unwrap();
            assert_eq!(back.partials.len(), r.partials.len());
            assert_eq!((back.part, back.step), (2, 60_000));
        }
        assert!(StepRecord::decode(b"\x01").is_err());
    }

    #[test]
    fn a_share_larger_than_a_record_goes_in_chunks_each_within_the_limit() {
        let partials: Vec<(u32, Partial)> = (0..5_000)
            .map(|i| {
                let labels =
                    Labels::from_strs(&[("host", &format!("host-{i:05}-{}", "x".repeat(40)))]);
                (
                    0,
                    Partial::Element {
                        labels,
                        value: i as f64,
                    },
                )
            })
            .collect();
        let max = 64 * 1024;
        let recs = split(1, 5_000, partials.clone(), 1, max);
        assert!(recs.len() > 2, "{} records", recs.len());
        let mut back = Vec::new();
        for (i, (q, r)) in recs.iter().enumerate() {
            assert_eq!((*q, r.chunk, r.chunks), (0, i as u32, recs.len() as u32));
            assert!(
                r.encode().len() <= max,
                "chunk {i}: {} bytes",
                r.encode().len()
            );
            back.extend(StepRecord::decode(&r.encode()).unwrap().partials);
        }
        assert_eq!(back.len(), partials.len());
        // The same partials in another order make the same chunks.
        let mut reversed = partials;
        reversed.reverse();
        let again = split(1, 5_000, reversed, 1, max);
        let contents =
            |rs: &[(u32, StepRecord)]| rs.iter().map(|r| r.1.partials.clone()).collect::<Vec<_>>();
        assert_eq!(contents(&recs), contents(&again));
    }
}
