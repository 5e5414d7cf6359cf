//! tinypoet-core in your own program: the README's example, compiled by `cargo test`
//! (`tests/tests/readme.rs` checks that the README shows this file's code).
//!
//! `cargo run --release -p tinypoet-core --example embed`
//!
//! Nothing here allocates: the blob is a `&'static [u8]` (on a board, in flash), the run
//! state one static buffer whose size is a `const fn` of the model's shape, and each
//! character is pulled as it is sampled. On a microcontroller replace `print!` with your
//! UART write; the rest stays as it is.
use tinypoet_core::constrain::FormSpec;
use tinypoet_core::{state_words, Config, Decoder, Error, GenerateSettings, Generator};
use tinypoet_core::{KvPrecision, Model, Prompt};

/// The weights, 64-byte aligned so that the f16/int8 views are read in place.
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);
static BLOB: &Aligned<[u8]> = &Aligned(*include_bytes!(
    "../../models/tinypoet-tang-aligned-int8.tpb"
));

/// All run state (KV cache, activations, logits): 313.9 KiB for the Tang model.
const WORDS: usize = state_words(&Config::TANG, KvPrecision::F16);
static mut STATE: [f32; WORDS] = [0.0; WORDS];

fn main() -> Result<(), Error> {
    // Checks the CRC and every tensor, copies nothing.
    let model = Model::load(&BLOB.0)?;
    // SAFETY: the only reference to STATE, taken once.
    let state = unsafe { &mut *core::ptr::addr_of_mut!(STATE) };
    let mut dec = Decoder::new(&model, state, KvPrecision::F16)?;
    // A 五言絕句 (four lines of five) for a title, its even lines rhyming.
    let verse = model.verse(&FormSpec::parse("五絕 rhyme")?)?;
    let settings = GenerateSettings {
        seed: 7,
        ..GenerateSettings::default()
    };
    let mut gen =
        Generator::with_constraint(&mut dec, Prompt::Title("春夜喜雨"), &settings, verse)?;
    while let Some(c) = gen.next_char()? {
        print!("{c}"); // each character as soon as it is sampled
    }
    println!();
    Ok(())
}
