//! `weir import`'s line parsers: export JSON lines and text exposition sample lines.
//! Whatever the bytes, each gives a series that passes the data contract or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_runtime::import::{detect, text, vm_json, Format};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = detect(s);
    for line in s.lines() {
        for parsed in [
            vm_json::parse_line(line).ok().flatten(),
            text::parse_line(line, Format::OpenMetrics).ok().flatten().map(|l| l.parsed),
            text::parse_line(line, Format::PrometheusText).ok().flatten().map(|l| l.parsed),
        ]
        .into_iter()
        .flatten()
        {
            assert!(weir_contract::names::check_series(
                &parsed.name,
                parsed.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))
            )
            .is_ok());
        }
    }
});
