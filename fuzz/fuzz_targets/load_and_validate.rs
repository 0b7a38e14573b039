//! Bytes of one desired-state file through the same decoding, YAML parsing and schema
//! validation as `incidentops validate`. A crash, a panic or a diagnostic without a position
//! is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    for diagnostic in incidentops::source::check_file("incidents/fuzz.yaml", bytes) {
        // Every rejection must be reportable as `file:line:col: message`.
        assert!(
            diagnostic.pos.line >= 1 && diagnostic.pos.column >= 1,
            "diagnostic without a position: {diagnostic:?}"
        );
        assert!(
            !diagnostic.message.is_empty(),
            "empty message: {diagnostic:?}"
        );
    }
});
