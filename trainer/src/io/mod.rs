//! File formats and file-system helpers: the core's blob (`export.rs`), PyTorch safetensors
//! (`interop.rs`), the one atomic write and hex helper (`fsx.rs`, a leaf every layer may use),
//! and printing that survives a closed pipe (`console.rs`, `outln!`/`errln!`, also a leaf).

pub mod console;
pub mod export;
pub mod fsx;
pub mod interop;
