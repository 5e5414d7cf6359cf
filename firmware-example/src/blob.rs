//! The weight blob, embedded in flash and read in place.
//!
//! build.rs picks the file (`TINYPOET_BLOB`, default `models/tinypoet-tang-aligned.tpb`).
//! The bytes are placed in their own `.tinypoet_blob` section (so the size report
//! can separate weights from code) with 64-byte alignment, the blob format's tensor
//! alignment: tensors sit at 64-byte offsets from the blob's start, so each one is
//! 64-byte aligned in flash (the Cortex-M kernel needs 4). The core parses the blob
//! as a borrowed `&'static [u8]` and reads the f16 weights straight from flash.

#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

#[link_section = ".tinypoet_blob"]
static BLOB: Aligned<[u8; BLOB_LEN]> = Aligned(*include_bytes!(env!("TINYPOET_BLOB_FILE")));

const BLOB_LEN: usize = parse_usize(env!("TINYPOET_BLOB_LEN"));

/// File name of the embedded blob, for the banner.
pub const NAME: &str = env!("TINYPOET_BLOB_NAME");

/// The embedded blob.
pub fn bytes() -> &'static [u8] {
    &BLOB.0
}

const fn parse_usize(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n = 0usize;
    while i < b.len() {
        n = n * 10 + (b[i] - b'0') as usize;
        i += 1;
    }
    n
}
