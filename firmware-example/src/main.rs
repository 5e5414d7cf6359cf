//! tinypoet on a Cortex-M: writes a Tang poem from f16 or int8 weights in flash.
//!
//! * The weight blob is embedded in flash (`blob.rs`) and parsed in place: the core reads every
//!   weight straight from flash, f16 converted in registers by the `vcvtb`/`vcvtt` kernel, or
//!   int8 (an int8 blob, `TINYPOET_BLOB=../models/tinypoet-tang-int8.tpb`) multiplied by the
//!   `SXTB16`/`SMLAD` kernel, both in `tinypoet-core`'s `kernels/cortex_m.rs`; nothing is
//!   expanded to f32.
//! * All run state (activations, f16 KV cache, logits, token history, sampler scratch) is one
//!   `static` buffer of `state_words(&Config::TANG, F16)` words (313.8 KiB); the linker's RAM
//!   region is 320 KiB (QEMU, Pico 2), so the budget is enforced at link time.
//! * By default the firmware is a serial console (`tinypoet-console`, `console/`): a person
//!   types a title with optional settings and the poem is streamed back character by
//!   character, over CMSDK UART0 under QEMU (`uart.rs`, `-serial stdio`) and USB CDC-ACM on
//!   the Pico 2 and the Teensy 4.1 (`boards/`). Under QEMU, Ctrl-D on an empty line ends it
//!   and QEMU exits 0 (semihosting).
//! * With the `oneshot` feature it writes one poem over semihosting instead: prompt (default
//!   春夜喜雨), seed (default: the core's `GenerateSettings` default) and length fixed at build
//!   time (`TINYPOET_PROMPT`, `TINYPOET_SEED`, `TINYPOET_MAX_CHARS`), the core's default
//!   sampler; QEMU then exits 0, or 1 with a message on any error.
//! * With the `measure` feature the firmware instead reports instruction counts (`measure.rs`).
#![no_std]
#![no_main]

mod blob;
mod boards;
mod clock;
mod console;
#[cfg(feature = "measure")]
mod measure;
#[cfg(all(feature = "rtt", not(any(feature = "measure", feature = "oneshot"))))]
mod rtt;
#[cfg(all(
    any(feature = "board-mps2-an386", feature = "board-mps2-an385"),
    not(any(feature = "measure", feature = "oneshot", feature = "rtt"))
))]
mod uart;

use cortex_m_rt::entry;
#[cfg(not(any(feature = "measure", feature = "oneshot")))]
use tinypoet_core::Decoder;
use tinypoet_core::{state_words, Config, GenerateSettings, KvPrecision, Model, ModelSlot};

/// KV cache precision, fixed at build time (feature `kv-int8`, on for the ARMv6-M boards).
pub const KV: KvPrecision = if cfg!(feature = "kv-int8") {
    KvPrecision::Q8
} else {
    KvPrecision::F16
};

/// Name of [`KV`] for the banner.
pub const KV_NAME: &str = if cfg!(feature = "kv-int8") {
    "int8"
} else {
    "f16"
};

/// Run-state words reserved: enough for the default Tang model with the [`KV`] cache.
const STATE_WORDS: usize = state_words(&Config::TANG, KV);

/// The whole run state of the decoder (KV cache, activations, logits, sampler scratch).
static mut STATE: [f32; STATE_WORDS] = [0.0; STATE_WORDS];

/// Prompt baked in at build time.
pub const PROMPT: &str = match option_env!("TINYPOET_PROMPT") {
    Some(p) => p,
    None => "春夜喜雨",
};

/// Seed baked in at build time (`None`: the core's default).
const SEED: Option<u64> = match option_env!("TINYPOET_SEED") {
    Some(s) => Some(parse_u64(s)),
    None => None,
};

/// Maximum characters baked in at build time (`None`: the core's default).
const MAX_CHARS: Option<u64> = match option_env!("TINYPOET_MAX_CHARS") {
    Some(s) => Some(parse_u64(s)),
    None => None,
};

/// `TINYPOET_NO_STOP=1`: no stop sequence (as `tinypoet generate --no-stop`).
const NO_STOP: bool = match option_env!("TINYPOET_NO_STOP") {
    Some(v) => matches!(v.as_bytes(), b"1"),
    None => false,
};

/// `TINYPOET_FORM`: a verse form spec ([`tinypoet_core::constrain::FormSpec::parse`], e.g.
/// `七絕 acrostic=春夜喜雨 rhyme`), as `tinypoet generate --form/--acrostic/--rhyme`: the
/// prompt becomes the title line (`PROMPT` + `\n`). Unset or empty: free text.
#[cfg(all(feature = "oneshot", not(feature = "measure")))]
const FORM: &str = match option_env!("TINYPOET_FORM") {
    Some(f) => f,
    None => "",
};

/// Start of the poem in the output (the test script extracts the text between the markers).
pub const BEGIN: &str = "----- poem -----";
/// End of the poem in the output.
pub const END: &str = "----- end -----";

/// Errors of the firmware: the core's, or a model too large for the static buffers.
pub enum FwError {
    Core(tinypoet_core::Error),
    StateTooSmall {
        need_bytes: usize,
        have_bytes: usize,
    },
}

impl From<tinypoet_core::Error> for FwError {
    fn from(e: tinypoet_core::Error) -> Self {
        FwError::Core(e)
    }
}

impl core::fmt::Display for FwError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FwError::Core(e) => write!(f, "{e}"),
            FwError::StateTooSmall {
                need_bytes,
                have_bytes,
            } => write!(
                f,
                "the model needs {need_bytes} bytes of run state, the firmware reserves {have_bytes}"
            ),
        }
    }
}

/// The generation settings: the core's defaults plus the build-time overrides.
pub fn settings() -> GenerateSettings<'static> {
    let mut s = GenerateSettings::default();
    if let Some(seed) = SEED {
        s.seed = seed;
    }
    if let Some(n) = MAX_CHARS {
        s.max_new_chars = n as usize;
    }
    if NO_STOP {
        s.stop = &[];
    }
    s
}

/// The run-state buffer, sized for `cfg`.
pub fn state_for(cfg: &Config) -> Result<&'static mut [f32], FwError> {
    // SAFETY: called once per run from the single thread of execution; no other reference to
    // STATE exists (the measurement build drops each decoder before taking the buffer again).
    let state: &'static mut [f32; STATE_WORDS] = unsafe { &mut *core::ptr::addr_of_mut!(STATE) };
    let words = state_words(cfg, KV);
    let have_bytes = STATE_WORDS * 4;
    state.get_mut(..words).ok_or(FwError::StateTooSmall {
        need_bytes: words.saturating_mul(4),
        have_bytes,
    })
}

#[cfg(any(feature = "measure", feature = "oneshot"))]
fn print_char(c: char) {
    let mut b = [0u8; 4];
    console::write_bytes(c.encode_utf8(&mut b).as_bytes());
}

#[cfg(any(feature = "measure", feature = "oneshot"))]
fn banner(model: &Model) {
    let cfg = model.config();
    let m = model.manifest();
    println!(
        "tinypoet firmware: board {}, blob {} ({} bytes at {:p}, {} steps, eval loss {})",
        boards::NAME,
        blob::NAME,
        blob::bytes().len(),
        blob::bytes().as_ptr(),
        m.steps,
        m.eval_loss
    );
    println!(
        "model: V={} C={} heads={} layers={} T={} F={}; weights {}; run state {} bytes (static), KV cache {KV_NAME}",
        cfg.vocab_size,
        cfg.dim,
        cfg.n_heads,
        cfg.n_layers,
        cfg.context,
        cfg.ffn_dim,
        if model.q8_group().is_some() { "int8" } else { "f16" },
        state_words(cfg, KV) * 4
    );
}

/// The serial console (the default build): one decoder, reused for every poem.
#[cfg(not(any(feature = "measure", feature = "oneshot")))]
fn run() -> Result<(), FwError> {
    let mut slot = ModelSlot::new();
    let model = Model::load_in(&mut slot, blob::bytes())?;
    let mut dec = Decoder::new(model, state_for(model.config())?, KV)?;
    let info = tinypoet_console::Info {
        board: boards::NAME,
        blob: blob::NAME,
    };
    // QEMU: returns after Ctrl-D; the USB boards' console never returns.
    #[allow(clippy::unit_arg, unreachable_code)]
    Ok(boards::console(&mut dec, &info))
}

#[cfg(all(feature = "oneshot", not(feature = "measure")))]
fn run() -> Result<(), FwError> {
    use tinypoet_core::constrain::FormSpec;
    use tinypoet_core::{Decoder, Generator, Prompt, StopReason};

    let mut slot = ModelSlot::new();
    let model = Model::load_in(&mut slot, blob::bytes())?;
    banner(model);
    let settings = settings();
    println!(
        "prompt {PROMPT}, seed {}, max {} chars, stop {:?}, sampler {:?}",
        settings.seed, settings.max_new_chars, settings.stop, settings.sampler
    );
    let spec = FormSpec::parse(FORM)?;
    let verse = model.verse(&spec)?;
    // With a form the prompt is the title line, as on the host.
    const LINE: usize = 256;
    let mut line = [0u8; LINE];
    let prompt = if spec.is_free() {
        PROMPT
    } else {
        let n = PROMPT.len();
        let dst = line
            .get_mut(..n + 1)
            .ok_or(tinypoet_core::Error::PromptTooLong {
                needed: n + 1,
                capacity: LINE,
            })?;
        dst[..n].copy_from_slice(PROMPT.as_bytes());
        dst[n] = b'\n';
        core::str::from_utf8(dst).map_err(|_| tinypoet_core::Error::EmptyInput)?
    };
    if !spec.is_free() {
        println!("form {FORM}");
    }
    let mut dec = Decoder::new(model, state_for(model.config())?, KV)?;
    // The prompt's cost on its own (generate below repeats exactly this prefill: the same
    // positions, the LM head for the last one only), so the per-character figure excludes it.
    let mut prompt_ids = [0 as tinypoet_core::Token; 64];
    let n_prompt = model.tokenizer().encode(prompt, &mut prompt_ids)?;
    let p0 = clock::now();
    dec.prefill(&prompt_ids[..n_prompt])?;
    let prefill = clock::instructions(p0, clock::now());
    println!("{BEGIN}");
    print!("{prompt}");
    let t0 = clock::now();
    let mut gen = Generator::with_constraint(&mut dec, Prompt::Text(prompt), &settings, verse)?;
    while let Some(c) = gen.next_char()? {
        print_char(c);
    }
    let g = gen.summary();
    let t1 = clock::now();
    println!();
    println!("{END}");
    let why = match g.reason {
        StopReason::EndOfText => "end of text",
        StopReason::StopSequence(_) => "end of poem",
        StopReason::MaxLength => "maximum length",
        StopReason::Callback => "callback",
    };
    let instr = clock::instructions(t0, t1);
    println!(
        "{} characters ({} sampled, stop: {why}) in {} instructions under QEMU -icount ({} per sampled character, prefill included)",
        g.emitted_chars,
        g.generated_tokens,
        instr,
        instr / g.generated_tokens.max(1) as u64
    );
    println!(
        "prefill of the prompt ({n_prompt} tokens): {prefill} instructions; per sampled character without it: {}",
        instr.saturating_sub(prefill) / g.generated_tokens.max(1) as u64
    );
    Ok(())
}

#[cfg(feature = "measure")]
fn run() -> Result<(), FwError> {
    let mut slot = ModelSlot::new();
    let model = Model::load_in(&mut slot, blob::bytes())?;
    banner(model);
    measure::run(model)
}

#[entry]
fn main() -> ! {
    // The console's clocks (with the USB PLL) are rp2040-hal's, set up in `boards::pico`.
    #[cfg(all(feature = "board-pico", any(feature = "measure", feature = "oneshot")))]
    boards::pico::init_clocks();
    console::init();
    let Some(p) = cortex_m::Peripherals::take() else {
        console::fail(format_args!("peripherals already taken"));
    };
    clock::start(p.SYST);
    match run() {
        Ok(()) => {
            // After the console (QEMU, Ctrl-D) this goes over semihosting, after the transcript.
            println!("stack high-water mark: {} bytes", stack_used());
            console::exit(true)
        }
        Err(e) => console::fail(format_args!("{e}")),
    }
}

/// Bytes of stack ever used: cortex-m-rt's `paint-stack` fills the stack region with
/// 0xCCCCCCCC at reset; the lowest overwritten word marks the deepest use.
pub fn stack_used() -> usize {
    extern "C" {
        static _stack_start: u32;
        static _stack_end: u32;
    }
    // Only the symbols' addresses are used: the words between them are the stack region.
    let (top, bottom) = (
        core::ptr::addr_of!(_stack_start) as usize,
        core::ptr::addr_of!(_stack_end) as usize,
    );
    let mut a = bottom;
    while a < top {
        // SAFETY: `a` is a word inside the stack region.
        if unsafe { core::ptr::read_volatile(a as *const u32) } != 0xCCCC_CCCC {
            break;
        }
        a += 4;
    }
    top - a
}

const fn parse_u64(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n = 0u64;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "not a number");
        n = n * 10 + (b[i] - b'0') as u64;
        i += 1;
    }
    n
}
