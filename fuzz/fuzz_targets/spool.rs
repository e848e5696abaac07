//! libFuzzer entry point of the `spool` target; the body is `targets/spool.rs`.
#![no_main]

#[path = "../targets/spool.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
