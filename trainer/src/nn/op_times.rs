//! Wall time per operation of the model's forward and backward, for `tinypoet bench train --ops`.
//! Only in builds with the `op-times` feature: without it the model's `timed!` calls are the bare
//! kernel calls.

use std::time::Instant;

/// The operations [`OpTimes`] tells apart (forward and backward separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Embedding,
    LayerNorm,
    QkvLinear,
    Attention,
    ProjLinear,
    Fc1Linear,
    Fc2Linear,
    /// LM head + cross-entropy, forward and backward fused.
    HeadCe,
    LayerNormBwd,
    QkvLinearBwd,
    AttentionBwd,
    ProjLinearBwd,
    Fc1LinearBwd,
    Fc2LinearBwd,
    EmbeddingBwd,
}

impl Op {
    pub const ALL: [Op; 15] = [
        Op::Embedding,
        Op::LayerNorm,
        Op::QkvLinear,
        Op::Attention,
        Op::ProjLinear,
        Op::Fc1Linear,
        Op::Fc2Linear,
        Op::HeadCe,
        Op::LayerNormBwd,
        Op::QkvLinearBwd,
        Op::AttentionBwd,
        Op::ProjLinearBwd,
        Op::Fc1LinearBwd,
        Op::Fc2LinearBwd,
        Op::EmbeddingBwd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Embedding => "embedding",
            Op::LayerNorm => "layernorm",
            Op::QkvLinear => "qkv linear",
            Op::Attention => "attention",
            Op::ProjLinear => "proj linear",
            Op::Fc1Linear => "fc1 linear",
            Op::Fc2Linear => "fc2 linear",
            Op::HeadCe => "head+CE fwd+bwd",
            Op::LayerNormBwd => "layernorm bwd",
            Op::QkvLinearBwd => "qkv linear bwd",
            Op::AttentionBwd => "attention bwd",
            Op::ProjLinearBwd => "proj linear bwd",
            Op::Fc1LinearBwd => "fc1 linear bwd",
            Op::Fc2LinearBwd => "fc2 linear bwd",
            Op::EmbeddingBwd => "embedding bwd",
        }
    }
}

/// Accumulated wall time per [`Op`] over the forward/backward calls since the last reset. Off
/// until `enabled` is set (then each operation costs one branch); it never allocates.
#[derive(Clone, Debug, Default)]
pub struct OpTimes {
    pub enabled: bool,
    pub ns: [u64; Op::ALL.len()],
}

impl OpTimes {
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        self.enabled.then(Instant::now)
    }

    #[inline]
    pub(crate) fn stop(&mut self, op: Op, t0: Option<Instant>) {
        if let Some(t0) = t0 {
            self.ns[op as usize] += t0.elapsed().as_nanos() as u64;
        }
    }

    pub fn reset(&mut self) {
        self.ns = [0; Op::ALL.len()];
    }
}
