//! The network and its numerics: flat parameters and their shape, initialisation, the model's
//! forward and backward passes over the ops, AdamW with its learning-rate schedule, and the
//! torch-compatible MT19937 stream.

pub mod adamw;
pub mod init;
pub mod model;
pub mod mt19937;
#[cfg(feature = "op-times")]
pub mod op_times;
pub mod ops;
pub mod params;
