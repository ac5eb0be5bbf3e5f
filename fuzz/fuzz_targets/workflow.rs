#![no_main]
//! Any bytes through the YAML + expression front end: never a panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let diags = hangar_workflow::validate("fuzz.yml", text);
        for d in &diags {
            assert!(d.line >= 1 && d.column >= 1);
        }
        // A workflow that validates converts (what `validate --template` prints).
        if diags.is_empty() {
            let opts = hangar_workflow::template::Options::default();
            let _ = hangar_workflow::template::convert("fuzz.yml", text, &|_: &str| None, &opts);
        }
        hangar_expr::fuzz_parse_and_eval(text);
    }
});
