//! `tinypoet prepare`: placeholder until its issue lands.

use clap::Args;

#[derive(Args, Debug)]
pub struct PrepareArgs {}

pub fn run(_args: PrepareArgs) -> anyhow::Result<()> {
    anyhow::bail!("`tinypoet prepare` is not implemented yet")
}
