//! Printing that treats a closed stdout or stderr as the end of that output.
//!
//! `println!` panics when the write fails, and a reader that goes away (`tinypoet train | head
//! -1`) makes every later write fail with `EPIPE` (Rust ignores SIGPIPE): the run died at its next
//! log line, from a rayon worker, without saving. [`outln!`](crate::outln) and
//! [`errln!`](crate::errln) write one line each; the first failed write marks that stream closed
//! and every later line is dropped, so a one-shot command finishes its work and a training run
//! keeps training (its metrics file still records every evaluation). A broken pipe is the
//! reader's choice and not an error; any other failure (a full disk behind `> file`) is kept
//! for `main` to report ([`stdout_error`]) once the command has finished.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);
static STDOUT_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Write `args` and a newline to stdout, unless stdout has been closed; see the module docs.
pub fn print_line(args: fmt::Arguments) {
    write_line(&mut io::stdout().lock(), &STDOUT_CLOSED, args);
}

/// Write `args` and a newline to stderr, unless stderr has been closed.
pub fn eprint_line(args: fmt::Arguments) {
    write_line(&mut io::stderr().lock(), &STDERR_CLOSED, args);
}

/// The first error other than a broken pipe that a write to stdout failed with, if any.
pub fn stdout_error() -> Option<String> {
    STDOUT_ERROR.lock().ok().and_then(|e| e.clone())
}

/// Note a failed write to stdout made outside [`print_line`] (e.g. `generate`'s streaming):
/// stdout counts as closed from here on.
pub fn note_stdout_error(e: &io::Error) {
    STDOUT_CLOSED.store(true, Ordering::Relaxed);
    if e.kind() != io::ErrorKind::BrokenPipe {
        if let Ok(mut slot) = STDOUT_ERROR.lock() {
            slot.get_or_insert_with(|| e.to_string());
        }
    }
}

fn write_line(w: &mut dyn Write, closed: &AtomicBool, args: fmt::Arguments) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    // The stream is line-buffered only for a terminal: flush so that the line is visible (and
    // a closed pipe noticed) now.
    let r = w
        .write_fmt(format_args!("{args}\n"))
        .and_then(|()| w.flush());
    if let Err(e) = r {
        closed.store(true, Ordering::Relaxed);
        if std::ptr::eq(closed, &STDOUT_CLOSED) {
            note_stdout_error(&e);
        }
    }
}

/// `println!` that never panics: a closed stdout ends the output ([`print_line`]).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::io::console::print_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: a closed stderr ends the output ([`eprint_line`]).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::io::console::eprint_line(format_args!($($arg)*))
    };
}
