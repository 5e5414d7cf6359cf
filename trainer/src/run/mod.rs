//! The machinery a training stage runs on: options, the shared step loop, evaluation,
//! checkpoints, metrics, the loss plot and samples through the core.

pub mod checkpoint;
pub mod evaluate;
pub mod lock;
pub mod metrics;
pub mod options;
pub mod plot;
pub mod sample;
pub mod stage_record;
pub mod train_loop;
