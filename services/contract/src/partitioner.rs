//! Kafka's default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`,
//! the same as the Java client's and librdkafka's `murmur2_random` for non-empty keys.
//! A direct producer with the Java default partitioner (or librdkafka with
//! `partitioner=murmur2_random`) lands a series on the partition the gateway chooses.

/// Kafka's murmur2 (seed 0x9747b28c), as `org.apache.kafka.common.utils.Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a record with this key among `partitions` (> 0).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

/// For test data and load generators that place series on chosen partitions, as a
/// producer following the contract would find them: the first of the series keys
/// `candidate(0)`, `candidate(1)`, ... that hashes to `partition` of `partitions`.
pub fn first_key_in_partition(
    partition: u32,
    partitions: u32,
    mut candidate: impl FnMut(u32) -> String,
) -> String {
    assert!(
        partition < partitions,
        "partition {partition} of {partitions}"
    );
    (0..)
        .map(&mut candidate)
        .find(|k| partition_for_key(k.as_bytes(), partitions) == partition)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's own `UtilsTest.testMurmur2` (clients module).
    #[test]
    fn matches_kafka_murmur2_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (key, want) in cases {
            assert_eq!(
                murmur2(key),
                want,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn partition_is_positive_hash_modulo_count() {
        // toPositive(-973932308) = -973932308 & 0x7fffffff = 1173551340; % 4 = 0
        assert_eq!(partition_for_key(b"21", 4), 1173551340 % 4);
        assert_eq!(partition_for_key(b"abc", 7), 479470107 % 7);
        for n in 1..64 {
            assert!(partition_for_key(b"foobar", n) < n);
        }
    }
}
