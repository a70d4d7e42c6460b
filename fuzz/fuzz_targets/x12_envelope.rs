//! The X12 tokenizer and envelope pass over raw bytes (no file).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fmt = hubsync::parse::x12::X12Format::default();
    let _ = hubsync::parse::x12::validate_stream(data, &fmt, "fuzz.x12");
});
