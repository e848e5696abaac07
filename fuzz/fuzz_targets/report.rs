//! libFuzzer entry point of the `report` target; the body is `targets/report.rs`.
#![no_main]

#[path = "../targets/report.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
