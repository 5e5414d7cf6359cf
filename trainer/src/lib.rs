//! tinypoet-trainer: corpus preparation, pretraining with hand-written forward and backward
//! passes, checkpoints, export to the core's blob format, and host generation through
//! `tinypoet-core`.

pub mod adamw;
pub mod checkpoint;
pub mod cli;
pub mod corpus;
pub mod evaluate;
pub mod export;
pub mod init;
pub mod interop;
pub mod metrics;
pub mod model;
pub mod mt19937;
pub mod ops;
pub mod params;
pub mod plot;
pub mod stage_batch;
pub mod stage_meta;
pub mod stages;
pub mod train;
