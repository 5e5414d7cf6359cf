//! `tinypoet`: the command-line front end. Each subcommand lives in `cli/<name>.rs`.

use std::process::ExitCode;

use clap::Parser;
use tinypoet_trainer::cli::{Cli, Command};
use tinypoet_trainer::errln;
use tinypoet_trainer::io::console;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Prepare(args) => tinypoet_trainer::cli::prepare::run(args),
        Command::Train(args) => tinypoet_trainer::cli::train::run(args),
        Command::Finetune(args) => tinypoet_trainer::cli::stage::run(
            args,
            tinypoet_trainer::run::stage_record::Stage::Finetune,
        ),
        Command::Align(args) => tinypoet_trainer::cli::stage::run(
            args,
            tinypoet_trainer::run::stage_record::Stage::Align,
        ),
        Command::Eval(args) => tinypoet_trainer::cli::eval::run(args),
        Command::Export(args) => tinypoet_trainer::cli::export::run(args),
        Command::Import(args) => tinypoet_trainer::cli::import::run(args),
        Command::Inspect(args) => tinypoet_trainer::cli::inspect::run(args),
        Command::Generate(args) => tinypoet_trainer::cli::generate::run(args),
        Command::MeasureTitles(args) => tinypoet_trainer::cli::measure::run(args),
        Command::RhymeTable(args) => tinypoet_trainer::cli::rhyme_table::run(args),
        Command::Bench(args) => tinypoet_trainer::cli::bench::run(args),
        Command::Serve(args) => tinypoet_trainer::cli::serve::run(args),
    };
    // A reader that closed stdout early is not an error (`tinypoet inspect m.tpb | head -1`);
    // any other failed write to stdout is.
    let result = result.and_then(|()| match console::stdout_error() {
        Some(e) => Err(anyhow::anyhow!("writing to stdout: {e}")),
        None => Ok(()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One clear line for the user; causes joined with ": ".
            errln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
