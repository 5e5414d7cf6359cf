//! `tinypoet export`: placeholder until its issue lands.

use clap::Args;

#[derive(Args, Debug)]
pub struct ExportArgs {}

pub fn run(_args: ExportArgs) -> anyhow::Result<()> {
    anyhow::bail!("`tinypoet export` is not implemented yet")
}
