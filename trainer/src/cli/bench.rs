//! `tinypoet bench`: placeholder until its issue lands.

use clap::Args;

#[derive(Args, Debug)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("`tinypoet bench` is not implemented yet")
}
