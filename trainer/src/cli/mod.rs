//! Command-line interface: one module per subcommand, each with its clap `Args` and `run`.
//!
//! Exit codes: 0 success, 1 runtime error (one line on stderr), 2 usage error (clap).

use clap::{Parser, Subcommand};

pub mod bench;
pub mod bench_decode;
#[cfg(feature = "crash-test")]
pub mod crash_test;
pub mod eval;
pub mod export;
pub mod generate;
pub mod import;
pub mod inspect;
pub mod kv_arg;
pub mod measure;
pub mod prepare;
pub mod rhyme_table;
pub mod serve;
pub mod simplified;
pub mod stage;
pub mod train;

/// tinypoet: a tiny character-level GPT that writes Tang poems, trained on a desktop and run on a
/// microcontroller.
#[derive(Parser, Debug)]
#[command(name = "tinypoet", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build the prepared dataset from the chinese-poetry package, a JSON poem list or plain text.
    Prepare(prepare::PrepareArgs),
    /// Pretrain the model on a prepared dataset.
    Train(train::TrainArgs),
    /// Instruction finetuning from pretrained weights (the reference's second stage).
    Finetune(stage::StageArgs),
    /// Alignment from finetuned weights (the reference's third stage).
    Align(stage::StageArgs),
    /// Compute the deterministic eval loss of a checkpoint or of a blob.
    Eval(eval::EvalArgs),
    /// Export a checkpoint to a weight blob, or to PyTorch safetensors.
    Export(export::ExportArgs),
    /// Import weights from a PyTorch safetensors file.
    Import(import::ImportArgs),
    /// Print a blob's config, sizes, manifest and checksum status.
    Inspect(inspect::InspectArgs),
    /// Write a poem with a model blob (the bundled model by default).
    Generate(generate::GenerateArgs),
    /// Measure a model's poems for titles: end-of-text and five-character shares.
    MeasureTitles(measure::MeasureArgs),
    /// Add a rhyme table to a model blob (for `generate --rhyme`), weights unchanged.
    RhymeTable(rhyme_table::RhymeTableArgs),
    /// Benchmarks: training throughput and decoding speed.
    Bench(bench::BenchArgs),
    /// Serve the browser page (WebAssembly engine and int8 model) on a local address.
    Serve(serve::ServeArgs),
}
