//! Shared by the fuzz target and the seed generator: blob surgery ([`blob_parts`]), the seed
//! corpus ([`seeds`]) and what the target does with one input ([`exercise`]).
use std::ops::ControlFlow;

use tinypoet_core::{state_words, Decoder, GenerateSettings, KvPrecision, Model};

pub mod blob_parts;
pub mod seeds;

pub use blob_parts::reseal;

/// Parse; if the blob is valid, run it a little (the decoder must not panic either).
pub fn exercise(data: &[u8]) {
    let mut buf = data.to_vec();
    reseal(&mut buf);
    let Ok(model) = Model::load(&buf) else { return };
    let words = state_words(model.config(), KvPrecision::F16);
    if words > 1 << 20 {
        return;
    }
    let mut state = vec![0f32; words];
    let Ok(mut dec) = Decoder::new(&model, &mut state, KvPrecision::F16) else {
        panic!("valid blob but Decoder::new failed")
    };
    let tok = model.tokenizer();
    let prompt: String = tok.chars().skip(1).take(2).collect();
    let settings = GenerateSettings {
        max_new_chars: 4,
        ..GenerateSettings::default()
    };
    if !prompt.is_empty() {
        // Valid weights can still overflow f32 in the activations (f16 values near 65504): that
        // is a typed error, anything else is a bug.
        match dec.generate(&prompt, &settings, |_| ControlFlow::Continue(())) {
            Ok(_) | Err(tinypoet_core::Error::NonFiniteLogits) => {}
            Err(e) => panic!("generate on a valid blob: {e:?}"),
        }
    }
}
