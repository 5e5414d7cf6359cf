//! tinypoet-trainer: corpus preparation, pretraining with hand-written forward and backward
//! passes, checkpoints, export to the core's blob format, and host generation through
//! `tinypoet-core`.
//!
//! Layers, top down (a module imports only from layers below it; `docs/ARCHITECTURE.md`):
//! `cli` → `stages` → `run` → `io`, `data` → `nn` → `tinypoet_core`, with `io::fsx` a leaf.

pub mod cli;
pub mod data;
pub mod io;
pub mod nn;
pub mod run;
pub mod stages;
