//! Records on the repartition topic (`alerts.partials`).
//!
//! For every step and every metrics.raw partition it owns, stage one writes exactly one
//! record to *each* partition of the repartition topic: the partials of that step whose
//! rule and group key hash to that partition (often none). One record per (source
//! partition, step, destination) makes a step's contribution atomic — stage two either
//! has all of a source partition's partials for a step or none — and doubles as the
//! per-partition step marker that tells stage two how far each source has come.
use serde::{Deserialize, Serialize};

use crate::evaluate::Partial;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The metrics.raw partition these partials were computed from.
    pub part: u32,
    /// The evaluation step, event-time milliseconds.
    pub step: i64,
    /// (rule index, partial).
    pub partials: Vec<(u32, Partial)>,
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable record on the partials topic: {0}")]
pub struct DecodeError(#[from] bincode::Error);

impl StepRecord {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        bincode::serialize(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        Ok(super::decode_bounded(b)?)
    }

    /// The record key: source partition and step (for reading the topic by eye; the
    /// destination partition is chosen by [`route`]).
    pub fn key(&self) -> String {
        format!("{}/{}", self.part, self.step)
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

/// Splits one source partition's partials of a step into one record per destination.
pub fn split(
    part: u32,
    step: i64,
    partials: Vec<(u32, Partial)>,
    partitions: u32,
) -> Vec<StepRecord> {
    let mut out: Vec<StepRecord> = (0..partitions.max(1))
        .map(|_| StepRecord {
            part,
            step,
            partials: Vec::new(),
        })
        .collect();
    for (rule, p) in partials {
        let q = route(rule, &p, partitions) as usize;
        out[q].partials.push((rule, p));
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
        let recs = split(2, 60_000, vec![(3, a), (3, b), (1, Partial::Present)], 8);
        assert_eq!(recs.len(), 8);
        assert_eq!(recs.iter().map(|r| r.partials.len()).sum::<usize>(), 3);
        for r in &recs {
            let back = StepRecord::decode(&r.encode()).unwrap();
            assert_eq!(back.partials.len(), r.partials.len());
            assert_eq!((back.part, back.step), (2, 60_000));
        }
        assert!(StepRecord::decode(b"\x01").is_err());
    }
}
