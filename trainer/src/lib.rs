//! tinypoet-trainer: corpus preparation, pretraining with hand-written forward and backward
//! passes, checkpoints, export to the core's blob format, and host generation through
//! `tinypoet-core`.

pub mod cli;
pub mod corpus;
pub mod mt19937;
pub mod adamw;
pub mod init;
pub mod model;
pub mod ops;
pub mod params;
pub mod checkpoint;
pub mod evaluate;
pub mod export;
pub mod metrics;
pub mod plot;
pub mod train;
