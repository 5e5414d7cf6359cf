//! `tinypoet generate`: placeholder until its issue lands.

use clap::Args;

#[derive(Args, Debug)]
pub struct GenerateArgs {}

pub fn run(_args: GenerateArgs) -> anyhow::Result<()> {
    anyhow::bail!("`tinypoet generate` is not implemented yet")
}
