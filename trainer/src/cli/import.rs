//! `tinypoet import`: placeholder until its issue lands.

use clap::Args;

#[derive(Args, Debug)]
pub struct ImportArgs {}

pub fn run(_args: ImportArgs) -> anyhow::Result<()> {
    anyhow::bail!("`tinypoet import` is not implemented yet")
}
