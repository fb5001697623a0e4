//! The configuration parser under libFuzzer: whatever the text, no panic, and every error a
//! diagnostic located inside the text (the same judgement as tests/config_fuzz.rs, there on
//! a bounded deterministic run in CI, here open-ended and coverage-guided).

#![no_main]

use std::path::Path;

use ccscope::config::{ConfigError, ConfigSource, parse_config};
use libfuzzer_sys::fuzz_target;

/// The parser is fed files, not streams; the bounded run uses the same cap.
const MAX_LEN: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_LEN {
        return;
    }
    // Bytes that are not UTF-8 are refused before the parser (tests/config_fuzz.rs covers
    // that refusal).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let diagnostics =
        match parse_config(text, ConfigSource::File("fuzz.toml".into()), Path::new("/")) {
            Ok(_) => return,
            Err(ConfigError::Invalid { diagnostics }) => diagnostics,
            Err(other) => panic!("an error that is not about the text: {other}"),
        };
    assert!(!diagnostics.is_empty(), "invalid, with no diagnostic");
    let lines: Vec<&str> = text.split('\n').collect();
    for d in &diagnostics {
        let l = &d.location;
        assert_eq!(l.file, "fuzz.toml", "{d}");
        assert!(
            l.line >= 1 && l.column >= 1,
            "{d}: line and column start at 1"
        );
        let line = lines
            .get(l.line - 1)
            .unwrap_or_else(|| panic!("{d}: past the last line ({})", lines.len()));
        assert!(
            l.column <= line.chars().count() + 1,
            "{d}: past the end of line {}",
            l.line
        );
        assert!(!d.message.trim().is_empty(), "{l}: an empty message");
    }
});
