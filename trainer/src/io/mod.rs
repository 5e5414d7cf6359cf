//! File formats and file-system helpers: the core's blob (`export.rs`), PyTorch safetensors
//! (`interop.rs`), and the one atomic write and hex helper (`fsx.rs`, a leaf every layer may use).

pub mod export;
pub mod fsx;
pub mod interop;
