#![no_main]
//! Any bytes through the YAML + expression front end: never a panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for d in hangar_workflow::validate("fuzz.yml", text) {
            assert!(d.line >= 1 && d.column >= 1);
        }
        hangar_expr::fuzz_parse_and_eval(text);
    }
});
