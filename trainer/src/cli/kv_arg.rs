//! `--kv f16|f32|int8`: the KV cache precision of the commands that run the core
//! (`generate`, `eval`, `bench decode`), so the host can run exactly what a board runs.

/// KV cache precision on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvArg {
    /// f16 (the default; 256 KiB for the Tang model).
    #[default]
    F16,
    /// f32 (512 KiB).
    F32,
    /// int8 rows with one f32 scale per key/value vector (136 KiB; the RP2040 build's cache).
    Int8,
}

impl From<KvArg> for tinypoet_core::KvPrecision {
    fn from(k: KvArg) -> Self {
        match k {
            KvArg::F16 => tinypoet_core::KvPrecision::F16,
            KvArg::F32 => tinypoet_core::KvPrecision::F32,
            KvArg::Int8 => tinypoet_core::KvPrecision::Q8,
        }
    }
}
