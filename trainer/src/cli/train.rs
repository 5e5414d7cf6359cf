//! `tinypoet train`: placeholder until its issue lands.

use clap::Args;

#[derive(Args, Debug)]
pub struct TrainArgs {}

pub fn run(_args: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("`tinypoet train` is not implemented yet")
}
