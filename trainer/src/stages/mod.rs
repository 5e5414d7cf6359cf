//! Training stages over the one shared loop (`run::train_loop`): each stage is its batches, its
//! loss, its evaluation and log, and its checkpoint record, a
//! [`TrainStage`](crate::run::train_loop::TrainStage).
//!
//! * [`pretrain`]: random windows of the pretrain stream, cross-entropy;
//! * [`tune`]: finetune and align, sequential epochs of fixed batches from trained weights
//!   ([`start`]), with the masked cross-entropy ([`finetune`]) or the per-token preference loss
//!   against a frozen reference ([`align`]).

pub mod align;
pub mod finetune;
pub mod pretrain;
pub mod start;
pub mod tune;
