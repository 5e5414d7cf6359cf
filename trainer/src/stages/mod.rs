//! Training stages over the one shared loop (`run::train_loop`): each stage is its batches,
//! its loss and its evaluation, an [`Objective`](crate::run::train_loop::Objective).
//! Pretraining today; finetune and alignment stages go beside it.

pub mod pretrain;
