//! Fuzz the blob parser (and, for inputs that turn out valid, the decoder and generator).
//! Every input is re-sealed (length field + CRC-32) before parsing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tinypoet_core_fuzz::exercise(data);
});
