//! The scrape's exposition parsers (text 0.0.4 and OpenMetrics) on any body a target
//! may send: no panic, every sample's name a valid metric name.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_scrape::exposition::{Format, Line, Parser};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Text, Format::OpenMetrics] {
        let mut p = Parser::new(body, format);
        let mut line = Line::default();
        while let Ok(true) = p.next_into(&mut line) {
            assert!(weir_contract::names::is_valid_metric_name(line.name), "{:?}", line.name);
            for (k, _) in &line.labels {
                assert!(!k.is_empty());
            }
        }
    }
});
