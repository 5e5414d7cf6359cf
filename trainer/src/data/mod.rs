//! Data: the corpus and its prepared dataset (`corpus/`), and the batches built from it
//! (`batch.rs`).

pub mod batch;
pub mod corpus;
