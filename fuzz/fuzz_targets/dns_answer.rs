//! libFuzzer entry point of the `dns_answer` target; the body is `targets/dns_answer.rs`.
#![no_main]

#[path = "../targets/dns_answer.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
