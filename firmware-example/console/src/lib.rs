//! # tinypoet-console
//!
//! The serial console of the tinypoet firmware: a person opens a terminal on the board (UART
//! under QEMU, USB CDC-ACM on the Pico 2 and the Teensy 4.1), types a title with optional
//! settings and watches the poem appear character by character.
//!
//! One implementation for every transport, `#![no_std]` and without allocation:
//! * [`mod@line`]: terminal line editing (CR/LF/CRLF, UTF-8 backspace, Ctrl-U/C/D, escapes);
//! * [`request`]: the line syntax, `TITLE [key=value]...`, checked against the vocabulary;
//! * [`session`]: the loop over a [`session::Port`] (greeting, poem, status line, errors);
//! * [`usb`]: the USB device identity the board builds enumerate with.
//!
//! Transports implement [`session::Port`]; the host tests drive the same code with a scripted
//! byte stream (`tests/session.rs`).
#![no_std]
#![deny(missing_docs)]

pub mod line;
pub mod request;
pub mod session;
pub mod usb;

pub use session::{run, Info, Meter, Port, Unit};
