//! `sluice.yaml` parsing and validation on arbitrary text: never a panic, a hang or a stack
//! overflow, and an error always lists at least one located problem.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sluice_config::Config;

fuzz_target!(|text: &str| {
    check(text, Path::new("fuzz-nonexistent-dir/sluice.yaml"));
});

fn check(text: &str, path: &Path) {
    if let Err(error) = Config::parse(text, path) {
        let shown = error.to_string();
        assert!(error.count() >= 1, "an error without problems: {shown}");
        assert!(!shown.is_empty());
    }
}
