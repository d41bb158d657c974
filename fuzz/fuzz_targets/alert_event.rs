//! Alert events as `weir tail` and the tests read them from alerts.triggered.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_contract::avro::{alert_event_fingerprint, decode_alert_event, single_object_header};

fuzz_target!(|data: &[u8]| {
    let _ = decode_alert_event(data);
    let mut framed = single_object_header(alert_event_fingerprint()).to_vec();
    framed.extend_from_slice(data);
    let _ = decode_alert_event(&framed);
});
