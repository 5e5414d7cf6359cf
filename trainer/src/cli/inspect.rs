//! `tinypoet inspect`: placeholder until its issue lands.

use clap::Args;

#[derive(Args, Debug)]
pub struct InspectArgs {}

pub fn run(_args: InspectArgs) -> anyhow::Result<()> {
    anyhow::bail!("`tinypoet inspect` is not implemented yet")
}
