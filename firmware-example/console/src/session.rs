//! The console session: greeting, prompt, one poem per line, errors that do not stop it.
//!
//! What the terminal shows (every line ends in CR LF; the poem's own newlines too):
//!
//! ```text
//! tinypoet console · board mps2-an386 · model tinypoet-tang.tpb (8548 characters)
//! Type a title and press Enter, e.g.  春夜喜雨 seed=7 temp=0.8   (? for help)
//! > 春夜喜雨 seed=7
//! 好雨知時節，當春乃發生。
//! ...
//! [48 characters · seed 7 · end of poem · 2512345 instructions per character]
//! > 春夜喜雨 top_p=2
//! error: bad value top_p=2: a number in (0, 1]
//! > 静夜思 seed=7
//! [simplified -> traditional (the corpus is traditional Chinese): 静→靜]
//! ...
//! ```
//!
//! The poem is written character by character as the core samples it (the core's pull-style
//! [`Generator`]), so its characters are exactly those of `tinypoet generate` on the host
//! for the same blob, prompt and settings. The status line is in brackets; errors start with
//! `error: `; the prompt is `> `.

use core::fmt::{self, Write};

use tinypoet_core::{Decoder, Generator, StopReason};

use crate::line::{Event, LineEditor};
use crate::request::{self, Converted, Request, RAW_PROMPT_BYTES};

/// Longest input line in bytes (a 32-character title is 96 bytes; the rest is for settings).
pub const LINE_BYTES: usize = 256;

/// A byte stream to a terminal: a UART, a USB CDC-ACM port, a test's script.
pub trait Port {
    /// A received byte if one is waiting; never blocks.
    fn read_byte(&mut self) -> Option<u8>;
    /// Send `bytes`. May wait until the link takes them; may drop them when nobody listens
    /// (a USB port whose terminal is closed) so a poem never hangs the board.
    fn write(&mut self, bytes: &[u8]);
    /// Nothing to read: service the link (poll USB), or sleep until something happens.
    fn idle(&mut self) {}
    /// True once after a terminal has (re)connected, so the greeting can be shown again.
    /// A UART cannot tell and returns false (the greeting is shown once at the start).
    fn take_connected(&mut self) -> bool {
        false
    }
}

/// How the status line reports the cost of a character.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// QEMU `-icount`: each tick is this many instructions.
    Instructions {
        /// Instructions per tick.
        per_tick: u64,
    },
    /// A real board: ticks are core clock cycles at this rate.
    Time {
        /// Ticks per second.
        ticks_per_second: u64,
    },
}

/// A monotonic tick counter and what its ticks mean.
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    /// Current tick count.
    pub now: fn() -> u64,
    /// Meaning of a tick.
    pub unit: Unit,
}

/// Names shown in the greeting.
#[derive(Debug, Clone, Copy)]
pub struct Info<'i> {
    /// Board (`mps2-an386`, `pico2`, `teensy41`).
    pub board: &'i str,
    /// Blob file name.
    pub blob: &'i str,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Ctrl-D on an empty line.
    EndOfInput,
}

/// `core::fmt` onto a [`Port`], turning `\n` into CR LF for the terminal.
struct Out<'p, P: Port>(&'p mut P);

impl<P: Port> Write for Out<'_, P> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.0.write(&rest[..i]);
            self.0.write(b"\r\n");
            rest = &rest[i + 1..];
        }
        self.0.write(rest);
        Ok(())
    }
}

/// Print the greeting and the first prompt.
pub fn greet<P: Port>(port: &mut P, dec: &Decoder, info: &Info) {
    let mut out = Out(port);
    let _ = write!(
        out,
        "\ntinypoet console · board {} · model {} ({} characters)\n\
         Type a title and press Enter, e.g.  春夜喜雨 seed=7 temp=0.8   (? for help)\n> ",
        info.board,
        info.blob,
        dec.model().tokenizer().len()
    );
}

/// The help text (`?` or `help`).
fn help<P: Port>(port: &mut P) {
    let _ = Out(port).write_str(
        "TITLE [seed=N] [temp=T] [top_k=K] [top_p=P] [max=N] [raw=1] [form=五絕|七絕|五律|七律] \
         [acrostic=春夜喜雨] [rhyme=1]: a poem for TITLE (simplified characters become \
         traditional ones, as in tinypoet generate); the same title, seed and settings give the \
         same poem.\n\
         Backspace edits, Ctrl-U clears the line, Ctrl-C abandons it.\n",
    );
}

/// Run the console on `port` until the input ends (Ctrl-D on an empty line).
///
/// `dec` is reused for every poem (`generate` resets it); nothing is allocated.
pub fn run<P: Port>(port: &mut P, dec: &mut Decoder, meter: &Meter, info: &Info) -> End {
    let mut editor = LineEditor::<LINE_BYTES>::new();
    // A terminal that is already connected gets this greeting, not a second one.
    let _ = port.take_connected();
    greet(port, dec, info);
    loop {
        if port.take_connected() {
            editor.clear();
            greet(port, dec, info);
        }
        let Some(b) = port.read_byte() else {
            port.idle();
            continue;
        };
        match editor.push(b, &mut |s: &[u8]| port.write(s)) {
            Event::Pending => continue,
            Event::EndOfInput => {
                let _ = Out(port).write_str("\nbye\n");
                return End::EndOfInput;
            }
            Event::Cancelled => {}
            Event::Line => {
                match editor.line() {
                    Ok(line) => answer(port, dec, meter, line),
                    Err(e) => {
                        let _ = writeln!(Out(port), "error: {e}");
                    }
                }
                editor.clear();
            }
        }
        port.write(b"> ");
    }
}

/// Answer one finished line: help, a poem and its status line, or one error line.
pub fn answer<P: Port>(port: &mut P, dec: &mut Decoder, meter: &Meter, line: &str) {
    if request::is_blank(line) {
        return;
    }
    if matches!(line.trim(), "?" | "help") {
        help(port);
        return;
    }
    let mut converted = Converted::new();
    let req = match request::parse(line, &dec.model().tokenizer(), &mut converted) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(Out(port), "error: {e}");
            return;
        }
    };
    if let Err(e) = poem(port, dec, meter, &req) {
        let _ = writeln!(Out(port), "error: {e}");
    }
}

/// Write the poem for `req` as it is sampled, then the status line.
fn poem<P: Port>(
    port: &mut P,
    dec: &mut Decoder,
    meter: &Meter,
    req: &Request,
) -> Result<(), tinypoet_core::Error> {
    let settings = req.settings();
    // The core's verse constraint, free form included, exactly as `tinypoet generate` builds it.
    let verse = dec.model().verse(&req.verse)?;
    // What the simplified -> traditional conversion replaced, as the CLI says on stderr.
    let mut conversions = req.conversions().peekable();
    if conversions.peek().is_some() {
        let mut out = Out(&mut *port);
        let _ = out.write_str("[simplified -> traditional (the corpus is traditional Chinese):");
        for (s, t) in conversions {
            let _ = write!(out, " {s}→{t}");
        }
        let _ = out.write_str("]\n");
    }
    let mut prompt_buf = [0u8; RAW_PROMPT_BYTES];
    let prompt = req.prompt(&mut prompt_buf);
    let t0 = (meter.now)();
    let mut gen = Generator::with_constraint(dec, prompt, &settings, verse)?;
    // raw=1: the continuation starts with the prompt, as on the host.
    let (echo, newline) = req.echo();
    let _ = Out(&mut *port).write_str(echo);
    if newline {
        let _ = Out(&mut *port).write_str("\n");
    }
    while let Some(c) = gen.next_char()? {
        let mut b = [0u8; 4];
        let _ = Out(&mut *port).write_str(c.encode_utf8(&mut b));
    }
    let g = gen.summary();
    let t1 = (meter.now)();
    let mut out = Out(port);
    // One newline after the text, always: the same bytes as `tinypoet generate` prints.
    let _ = out.write_str("\n");
    let why = match g.reason {
        StopReason::EndOfText => "end of text",
        StopReason::StopSequence(_) => "end of poem",
        StopReason::MaxLength => "max length",
        StopReason::Callback => "stopped",
    };
    let _ = write!(
        out,
        "[{} characters · seed {} · {why} · ",
        g.emitted_chars, req.seed
    );
    // Sampled tokens include the stop sequence; the prefill is part of the first one's cost.
    let per = t1.wrapping_sub(t0) / g.generated_tokens.max(1) as u64;
    let _ = match meter.unit {
        Unit::Instructions { per_tick } => {
            writeln!(out, "{} instructions per character]", per * per_tick)
        }
        Unit::Time { ticks_per_second } => {
            let us = per.saturating_mul(1_000_000) / ticks_per_second.max(1);
            writeln!(out, "{}.{} ms per character]", us / 1000, us % 1000 / 100)
        }
    };
    Ok(())
}
