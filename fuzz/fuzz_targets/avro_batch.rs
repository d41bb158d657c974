//! The metrics.raw record decoder in both framings (single-object, Confluent), as the
//! consumers read direct producers' records. What decodes must encode to a record that
//! decodes to the same batch, and the borrowing visitor must agree with the decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_contract::avro::{current, single_object_header, BatchEncoder, Decoder};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let mut payload = Vec::with_capacity(body.len() + 10);
    match mode % 3 {
        0 => payload.extend_from_slice(&single_object_header(current().fingerprint)),
        1 => payload.extend_from_slice(&[0, 0, 0, 0, 7]),
        _ => {}
    }
    payload.extend_from_slice(body);
    let decoder = Decoder::new().with_confluent_id(7, current());
    let Ok(batch) = decoder.decode(&payload) else {
        return;
    };
    let mut visited = 0usize;
    decoder
        .visit(&payload, |s| visited += s.samples.len())
        .expect("the visitor reads what the decoder read");
    let samples: usize = batch.series.iter().map(|s| s.samples.len()).sum();
    assert_eq!(visited, samples);
    let again = Decoder::new()
        .decode(&BatchEncoder::encode(&batch))
        .expect("re-encoded batch decodes");
    // NaN payloads compare unequal: compare bit patterns.
    assert_eq!(again.series.len(), batch.series.len());
    for (a, b) in again.series.iter().zip(&batch.series) {
        assert_eq!((&a.name, &a.labels, a.metric_type, &a.unit, &a.tenant), (&b.name, &b.labels, b.metric_type, &b.unit, &b.tenant));
        let bits = |s: &weir_contract::Series| -> Vec<(i64, u64)> {
            s.samples.iter().map(|x| (x.timestamp_ms, x.value.to_bits())).collect()
        };
        assert_eq!(bits(a), bits(b));
    }
});
