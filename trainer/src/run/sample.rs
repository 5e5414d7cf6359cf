//! Samples through the core from in-memory parameters (the trainer's eval-time samples).

use std::ops::ControlFlow;

use anyhow::anyhow;
use tinypoet_core::{state_words, Decoder, GenerateSettings, KvPrecision, Model, SamplerSettings};

use crate::io::export::{blob_bytes, ManifestInfo};
use crate::nn::params::Params;

/// Generate up to `max_new` characters after `prompt` through the core: export `params` to a
/// blob in memory, parse it from that buffer, and run the core's decoder and sampler with the
/// reference's settings (temperature 1, no top-k/top-p/penalty, no stop sequence; stops early
/// only when it samples id 0). Returns prompt + continuation.
pub fn sample_through_core(
    params: &Params,
    vocab: &[char],
    prompt: &str,
    max_new: usize,
    seed: u64,
) -> anyhow::Result<String> {
    let bytes = blob_bytes(params, vocab, &ManifestInfo::unknown())?;
    let model = Model::load(&bytes).map_err(|e| anyhow!("the exported blob does not load: {e}"))?;
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let mut dec = Decoder::new(&model, &mut state, KvPrecision::F16)
        .map_err(|e| anyhow!("core decoder: {e}"))?;
    let settings = GenerateSettings {
        sampler: SamplerSettings::DEFAULT,
        seed,
        max_new_chars: max_new,
        stop: &[],
        stop_at_end_of_text: true,
    };
    let mut out = String::from(prompt);
    dec.generate(prompt, &settings, |c| {
        out.push(c);
        ControlFlow::Continue(())
    })
    .map_err(|e| anyhow!("sampling through the core: {e}"))?;
    Ok(out)
}
