//! # tinypoet-core
//!
//! The `#![no_std]`, allocation-free inference engine of tinypoet: it parses and writes the
//! weight blob, runs the TutorialLLM character-level GPT (pre-LayerNorm, learned positions,
//! ReLU FFN, untied LM head) with a KV cache in a caller-provided buffer, and tokenizes,
//! samples and streams text. The same code runs on the host (the trainer's evaluation and
//! `tinypoet generate`) and on a Cortex-M4 (the firmware example).
//!
//! ## Usage
//!
//! ```
//! use core::ops::ControlFlow;
//! use tinypoet_core::blob::{self, BlobInput, Manifest, WeightDtype};
//! use tinypoet_core::{state_words, tensor_specs, Config, Decoder, GenerateSettings, Generator};
//! use tinypoet_core::{KvPrecision, Model, Prompt, StopReason};
//!
//! # fn main() -> Result<(), tinypoet_core::Error> {
//! // A tiny model with deterministic weights (the trainer passes its real parameters).
//! let cfg = Config { vocab_size: 4, dim: 8, n_heads: 2, n_layers: 1, context: 16,
//!                    ffn_dim: 16, ln_eps: 1e-5, attn_scale: 0.35 };
//! let vocab = ['\0', '\n', '春', '𠀀'];          // sorted by code point, '\0' first
//! let data: Vec<Vec<f32>> = tensor_specs(&cfg)    // canonical order, PyTorch shapes
//!     .map(|s| (0..s.shape.numel()).map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0).collect())
//!     .collect();
//! let tensors: Vec<&[f32]> = data.iter().map(|t| t.as_slice()).collect();
//! let input = BlobInput { config: cfg, vocab: &vocab, manifest: Manifest::EMPTY,
//!                         dtype: WeightDtype::F16, tensors: &tensors };
//! let mut bytes = vec![0u8; blob::encoded_len(&input)?];
//! blob::write(&input, &mut bytes)?;
//!
//! // Load (borrows `bytes`, copies no weights) and run with a fixed-size state buffer.
//! let model = Model::load(&bytes)?;
//! let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
//! let mut dec = Decoder::new(&model, &mut state, KvPrecision::F16)?;
//! let logits = dec.feed(2)?;                     // token id of '春'
//! assert_eq!(logits.len(), 4);
//!
//! // Pull one character at a time (the CLI, the firmware console and the web page all do).
//! let settings = GenerateSettings::default();     // seed 2024, stop at a blank line or '\0'
//! let mut gen = Generator::new(&mut dec, Prompt::Text("春"), &settings)?;
//! let mut text = String::new();
//! while let Some(c) = gen.next_char()? {
//!     text.push(c);                              // each character as soon as it is certain
//! }
//! let summary = gen.summary();
//! assert_eq!(summary.emitted_chars, text.chars().count());
//! assert_eq!(gen.stop_reason(), Some(summary.reason));
//!
//! // The same text through the callback form (a loop over `next_char`).
//! let mut again = String::new();
//! dec.generate("春", &settings, |c| {
//!     again.push(c);
//!     ControlFlow::Continue(())
//! })?;
//! assert_eq!(again, text);
//! # let _ = StopReason::EndOfText;
//! # Ok(()) }
//! ```
//!
//! A finetuned model takes a title: `Prompt::Title("春夜喜雨")` prefills
//! `<INS>請用以下題目寫一首詩<INP>春夜喜雨<RES>` ([`prompt`]; [`instruction_prompt_tokens`]
//! writes the ids into a caller buffer) and the poem ends at end-of-text. A
//! [`Constraint`] ([`Generator::with_constraint`]) masks logits before each sample.
//!
//! On a device the blob is a `&'static [u8]` in flash (`include_bytes!` wrapped in an aligned
//! struct) and the state a `static mut [f32; state_words(&Config::TANG, KvPrecision::F16)]`.
//!
//! ## Model and tensors
//!
//! [`Config`] holds the hyper-parameters ([`Config::TANG`]: V 8548, C 64, 4 heads of 16,
//! 4 layers, T 256, F 256, eps 1e-5, attention scale 0.125). [`tensor_specs`] lists the
//! canonical tensors (names, PyTorch shapes, order of docs/ARCHITECTURE.md); there are
//! `2 + 13 L + 4` of them and [`Config::param_count`] is 1,318,372 for the Tang model.
//!
//! ## Blob format v1
//!
//! All integers little-endian. Offsets are from the start of the blob.
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `TINYPOET` |
//! | 8..12 | format version, u32 = 1 |
//! | 12..16 | `header_len`, u32 |
//! | 16..24 | `total_len`, u64: the whole blob including the checksum (must equal the slice length) |
//! | 24..32 | `data_offset`, u64, multiple of 64, >= 32 + `header_len` |
//! | 32..32+header_len | header: postcard values (below) |
//! | ..data_offset | zero padding |
//! | data_offset..total_len-4 | tensor data, each tensor at `data_offset + entry.offset` (offset multiple of 64), zero padding between |
//! | total_len-4..total_len | CRC-32 (zlib/`binascii.crc32`: reflected poly 0xEDB88320, init and final xor 0xFFFFFFFF) of bytes `0..total_len-4` |
//!
//! The header is the postcard encoding of `HeaderHead { config: Config, vocab: &[u8],
//! manifest: Manifest, n_tensors: u32 }` followed by exactly `n_tensors` postcard
//! [`blob::TensorEntry`] values `{ name: &str, dtype: Dtype, layout: Layout, shape: Shape,
//! offset: u64, nbytes: u64 }`, then the optional sections (below) and nothing else. `Config` is 6 varint `usize` then `ln_eps`
//! and `attn_scale` as f32. `vocab` is a byte string of `4 V` bytes: the code points as u32 LE,
//! strictly increasing, entry 0 = U+0000 (id = index). [`blob::Manifest`] is `steps: u64`,
//! `eval_loss: f32` (f32 checkpoint; NaN = not measured), `eval_loss_blob: f32` (this blob as
//! the core runs it; NaN = not measured), `corpus_sha256: [u8; 32]` (zeros = unknown) and
//! `recipe: &str`. Losses must be NaN or finite and >= 0.
//!
//! Tensors follow the canonical order. [`blob::Dtype`]: `F32` (reserved), `F16` and
//! `Q8 { group_size, scale }` (int8, below). [`blob::WeightDtype`] selects what the writer
//! produces: all f16, or int8 matrices with f16 vectors.
//!
//! **Physical layout** ([`blob::Layout`]) of f16 tensors: embeddings and vectors are stored as
//! their logical shape (`tok_emb` `[V, C]`, `pos_emb` `[T, C]` row-major). Every Linear weight,
//! including the LM head, is stored **transposed**, `[in, out]` row-major
//! (`Layout::Transposed`), so that each output of a mat-vec is a sequential sum over
//! `k = 0..in` and SIMD runs across outputs. The writer takes `[out, in]` tensors and
//! transposes; nobody else needs to know.
//!
//! **Optional sections.** After the directory the header may hold postcard values of the enum
//! `Section` (variant index as a varint, then its fields), each kind at most once; a blob
//! without them is unchanged v1 and loads as before. Variant 0 is the **rhyme table**
//! ([`blob::RhymeTable`], [`Blob::rhyme`](blob::Blob::rhyme)) that the verse constraint's rhyme mask reads
//! ([`constrain`]): `source: &str` (where the groups come from, licence), `n_groups: u8`
//! (`1..=128`), `group_names: &str` (`n_groups` names joined by `'\n'`), `level_groups:
//! [u8; 16]` (the level-tone 平 groups as a u128 LE bit mask), `token_sets: &[u8]` (`2 V`
//! bytes: per token id the u16 LE index of its group set; 0 = no group) and `sets: &[u8]`
//! (the distinct group sets, 16 bytes each, u128 LE bit masks over the groups; set 0 empty).
//! A character with several readings has a set with several bits. The parser checks all of it
//! ([`blob::RhymeTable::validate`]: counts, lengths, indices, bits below `n_groups`).
//! Token classes (Han character, punctuation, newline, end-of-text) are **not** stored: they
//! follow from the vocabulary ([`constrain::TokenClass`]), so forms without rhyme work with any
//! blob. [`blob::with_rhyme_table`] rewrites a blob with the section added, replaced or removed,
//! keeping the tensor directory and data region byte for byte (`tinypoet rhyme-table`). The
//! bundled blobs carry the 平水韻 table (106 groups, 6,739 of the 8,548 tokens, 679 distinct
//! sets; 30,080 bytes).
//!
//! ## int8 weights (`Dtype::Q8`)
//!
//! An int8 blob ([`blob::WeightDtype::INT8`], `tinypoet export --dtype int8`) stores every
//! matrix (`tok_emb`, `pos_emb`, `attn.wq/wk/wv/proj.weight`, `ffn.fc1/fc2.weight`,
//! `head.weight`) as `Q8 { group_size: 32, scale: F16 }` and every vector (biases, LayerNorm)
//! as f16. A Q8 tensor is `numel` i8 values, zero padding to a multiple of 4 bytes, then
//! `numel / 32` f16 scales; matrices are stored **row-major as their logical shape**
//! (`Layout::RowMajor`: Linear weights `[out, in]`, the PyTorch order, not transposed), so a
//! group is 32 consecutive inputs of one output (the dot-product dimension, as in llama2.c's
//! `runq.c` and GGUF's Q8_0): value `[r][c]` = `q[r*cols + c] * scale[r*cols/32 + c/32]`. The
//! writer quantizes per group, symmetric: `scale = max|w| / 127` rounded to f16, then
//! `q = round(w / scale)` (half away from zero, clamped to ±127) with the *stored* scale, so
//! `|w - q*scale| <= scale/2`. The Tang model's int8 blob is about 1,447,500 bytes (the
//! manifest's text moves it by a few bytes), of which 1,411,304 are tensors (1 + 1/16 byte per
//! matrix value, 2 per vector value), against about 2,672,900 for f16.
//!
//! At run time each int8 mat-vec first quantizes its input vector per group of 32 (llama2.c's
//! `quantize`: `scale = max|x|/127`, `q = round(x/scale)`, here half to even), then every
//! output sums exact i32 dot products per group and adds `isum * (w_scale * x_scale)` in f32,
//! group by group ([`kernels`], "int8"); embedding rows are dequantized. The loader also runs
//! other group sizes (a multiple of 4 in `4..=1024` dividing every row, one size per blob),
//! f32 scales and f16/int8 mixes; int8 vectors or int8 Linear weights stored transposed are
//! valid v1 but not run ([`Error::UnsupportedTensor`]).
//!
//! The parser ([`blob::parse`], [`Model::load`]) borrows from any `&'a [u8]`, never copies
//! weights, never panics, and returns a typed [`Error`] for every malformed blob: truncated,
//! trailing bytes, bad magic, unknown version, checksum mismatch, bad layout, undecodable
//! header, invalid config or manifest, vocabulary of the wrong size / not a scalar value /
//! not strictly sorted / no `'\0'`, wrong tensor count / name / shape / size / layout,
//! misaligned, overlapping or out-of-bounds tensors, and non-finite f16/f32 values or int8
//! scales (any i8 value is valid).
//!
//! ## Memory
//!
//! [`Decoder`] keeps all run state in one caller buffer of exactly [`state_words`] f32 words
//! (a wrong length is [`Error::BufferSize`]): activations (`6 C + F + H T`), logits (`V`, reused
//! as probabilities by the sampler), the int8 activation scratch (`3 max(C, F) / 4` words: the
//! quantized input of an int8 mat-vec; reserved for f16 models too, so the size does not depend
//! on the blob), the KV cache (`2 L T C` values, f16 by default or f32), the token history
//! (`T` u16) and the sampler index scratch (`V` u16). For the Tang model with an f16 cache that
//! is [`TANG_STATE_BYTES`] = 321,368 bytes (313.8 KiB); a compile-time assertion keeps it
//! <= 320 KiB. Nothing else is allocated. A [`Model`] (the weight table,
//! wherever the caller keeps it) is at most 3,488 bytes on a 32-bit target; [`Model::load_in`]
//! maps it in place in a [`ModelSlot`], where [`Model::load`], returning it by value, also
//! builds it in a frame of its own while loading; decoding and sampling use
//! well under 1 KiB of stack (the generator's stop-sequence buffer is 128 bytes); the blob
//! writer, a host-side tool, builds the tensor names in about 7 KiB of stack (plus 1 KiB for
//! an int8 group).
//!
//! ## Decoding and the context
//!
//! [`Decoder::feed`] runs one position and returns the logits of the next token;
//! [`Decoder::prefill`] (or [`Decoder::prefill_iter`], straight from a tokenizer) feeds many
//! and runs the LM head only for the last; [`Decoder::logits_mut`] lets a constraint mask the
//! logits and [`Decoder::sample_with`] draws from them with the context as repetition history;
//! [`Decoder::reset`] starts over; [`Decoder::window_nll`] is the evaluation fast path (feed a
//! window one token at a time and sum the f64 negative log-likelihood of the targets), which
//! is how the trainer measures a blob's loss. That public API is all the [`Generator`] uses.
//! When the context (T positions) is full, the next feed **slides**: the last
//! [`Decoder::slide_keep`] tokens (default T/2) are re-prefilled at positions `0..keep` and the
//! new token follows, so generation can run for any length.
//!
//! ## Determinism
//!
//! Guaranteed: for the same (blob, prompt, settings, seed) every backend and target produces
//! bit-identical logits and therefore identical text (tested on the host: scalar, AVX2 + F16C
//! and AVX-512 give identical logits over 300 positions including context slides, for f16 and
//! for int8 blobs). How:
//! * every f16 mat-vec (Linear layers, LM head, attention scores over positions, attention
//!   output over positions) uses one order: `y[o] = init; for k in 0..n { y[o] = y[o] + w*x }`
//!   with a separate multiply and add (no FMA; see [`kernels`]); SIMD lanes are outputs;
//! * an int8 mat-vec's integer dot products are exact (any order), and its float steps run in
//!   one order per output (group by group); the activation quantization is one portable body;
//! * LayerNorm (two-pass mean/variance) and residual adds run in index order; softmax uses
//!   `libm::expf` (the AVX-512 path evaluates libm's algorithm lane by lane and is tested bit
//!   for bit against it), 16 lane partial sums combined in lane order, then a division
//!   ([`kernels::scalar::softmax`]); `libm::sqrtf`; no `std` float functions anywhere;
//! * the attention output of all heads is one pass over positions per layer, each output a
//!   sequential sum ([`kernels::attn_values_f16`]), equal to one mat-vec per head;
//! * f16 <-> f32 conversions are exact / round-to-nearest-even on every path;
//! * the sampler draws from the documented [`Rng`] (PCG32) in a documented way.
//!
//! Not guaranteed: equality with PyTorch (different summation order; within ~1e-5 in f32);
//! identical results on a non-IEEE or flush-to-zero FPU configuration (the Cortex-M4 default
//! FPSCR is IEEE; the firmware must not enable flush-to-zero).
//!
//! ## Sampling and generation
//!
//! [`sampler`] documents the pipeline (greedy, temperature, top-k, top-p, repetition
//! penalty) and the PRNG. A [`Generator`] prefills the prompt, then samples, returning each
//! character from [`Generator::next_char`] as soon as it cannot be part of a stop sequence;
//! [`Decoder::generate`] is the same loop with a callback. It stops on a stop sequence
//! (default `"\n\n"`, not emitted), on id 0 (end-of-text, not emitted), at `max_new_chars`,
//! when the [`Constraint`] is finished, or when the callback breaks.
//!
//! ## Verse forms
//!
//! [`constrain::Verse`] is the constraint for a [`constrain::FormSpec`]: 五絕/七絕/五律/七律 in
//! the corpus's layout (`XXXXX，XXXXX。` a couplet per line, `\n` between, end-of-text after the
//! last), 藏頭 acrostic (character `i` opens verse line `i`) and rhyme (the even verse lines end
//! in one group of the blob's rhyme table). It masks logits to `-inf` before the sampler, so
//! every sampler setting works and the text stays deterministic; state is a few counters and a
//! 128-bit group set (no allocation). On a device:
//!
//! ```
//! # use tinypoet_core::{constrain::FormSpec, Decoder, GenerateSettings, Generator, Model, Prompt};
//! # fn poem(model: &Model<'_>, dec: &mut Decoder<'_>) -> Result<(), tinypoet_core::Error> {
//! let spec = FormSpec::parse("七絕 acrostic=春夜喜雨 rhyme")?;   // or "qijue", "五律,rhyme"
//! let verse = model.verse(&spec)?;                             // typed errors: see Verse::new
//! let settings = GenerateSettings::default();
//! let mut gen = Generator::with_constraint(dec, Prompt::Text("春夜喜雨\n"), &settings, verse)?;
//! while let Some(c) = gen.next_char()? {
//!     // print c
//! #   let _ = c;
//! }
//! # Ok(()) }
//! ```
//!
//! ## Features and kernels
//!
//! Default: `no_std`, scalar kernels unless the target enables `avx512f,avx512bw,avx512vl` or
//! `avx2,f16c` at compile time. `std`: runtime CPU detection of those on x86-64, and
//! `std::error::Error` for [`Error`]. On `thumbv7em`/`thumbv8m` (`target_os = "none"`) the
//! [`kernels::Backend::CortexM`] hook is used.
#![no_std]
#![deny(missing_docs)]
// Unsafe code is confined to the kernels: the x86 intrinsics, and on Arm the Cortex-M
// `global_asm!` mat-vec (kernels/cortex_m.rs, which alone allows it; deny elsewhere).
#![cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "arm")),
    forbid(unsafe_code)
)]
#![cfg_attr(target_arch = "arm", deny(unsafe_code))]

#[cfg(feature = "std")]
extern crate std;

#[cfg(target_endian = "big")]
compile_error!("tinypoet-core assumes a little-endian target");

pub mod blob;
pub mod config;
pub mod constrain;
pub mod crc32;
mod decoder;
pub mod dtype;
mod error;
pub mod generate;
pub mod kernels;
pub mod kv_cache;
mod model;
pub mod prompt;
pub mod sampler;
pub mod simplified;
mod tokenizer;

pub use blob::Manifest;
pub use config::{tensor_spec, tensor_specs, Config, Shape, TensorKind, TensorSpec, Token};
pub use constrain::{Constraint, NoConstraint};
pub use decoder::{state_bytes, state_words, Decoder, KvPrecision, TANG_STATE_BYTES};
pub use error::Error;
pub use generate::{GenerateSettings, Generation, Generator, StopReason};
pub use model::{Layer, Mat, Model, ModelSlot};
pub use prompt::{instruction_prompt_tokens, Prompt};
pub use sampler::{Rng, Sampler, SamplerSettings};
pub use tokenizer::{Tokenizer, Unknown};
