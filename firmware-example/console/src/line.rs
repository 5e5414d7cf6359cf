//! Line editing for a serial terminal: bytes in, one finished line out, echo on the way.
//!
//! Terminals in raw mode (`screen`, `picocom`, `minicom`) send every key as it is typed and show
//! only what the device echoes, so the editor echoes what it keeps. It understands what a person
//! needs to type a title:
//!
//! * **Enter** as CR, LF or CRLF (a LF right after a CR is the same Enter);
//! * **Backspace** (BS 0x08 or DEL 0x7F) removes the last *character*, all its UTF-8 bytes, and
//!   erases one or two columns (CJK characters are two columns wide);
//! * **Ctrl-U** erases the line, **Ctrl-C** abandons it, **Ctrl-D** on an empty line ends the
//!   session (the QEMU test uses it to stop the firmware);
//! * ANSI escape sequences (arrow keys: `ESC [ A`) are swallowed, tab is a space, other control
//!   bytes are ignored.
//!
//! A line longer than the buffer is not cut: the rest is dropped (a bell is echoed once) and the
//! finished line reports [`LineError::TooLong`]. Invalid UTF-8 is kept as typed and reported when
//! the line is finished ([`LineError::InvalidUtf8`]), so one bad byte costs one error line.

use core::fmt;

/// What one byte did to the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Nothing finished yet.
    Pending,
    /// Enter: [`LineEditor::line`] holds the finished line.
    Line,
    /// Ctrl-C: the line was abandoned (and is cleared).
    Cancelled,
    /// Ctrl-D on an empty line: end of the session.
    EndOfInput,
}

/// Why a finished line is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// More bytes than the buffer holds were typed.
    TooLong {
        /// Capacity in bytes.
        max_bytes: usize,
    },
    /// The bytes are not UTF-8; `at` is the offset of the first bad byte.
    InvalidUtf8 {
        /// Byte offset in the line.
        at: usize,
    },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong { max_bytes } => {
                write!(f, "line too long: at most {max_bytes} bytes")
            }
            LineError::InvalidUtf8 { at } => write!(
                f,
                "invalid UTF-8 at byte {at} of the line (set the terminal to UTF-8)"
            ),
        }
    }
}

/// Where the editor is inside an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// After `ESC [` or `ESC O`: parameters until a final byte 0x40..=0x7E.
    Sequence,
}

/// A line buffer of `N` bytes with terminal editing.
pub struct LineEditor<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Bytes were dropped because the buffer was full.
    overflow: bool,
    /// The previous byte was CR (so a LF now is part of the same Enter).
    after_cr: bool,
    escape: Escape,
}

impl<const N: usize> Default for LineEditor<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineEditor<N> {
    /// Capacity in bytes.
    pub const CAPACITY: usize = N;

    /// An empty line.
    pub const fn new() -> Self {
        LineEditor {
            buf: [0; N],
            len: 0,
            overflow: false,
            after_cr: false,
            escape: Escape::None,
        }
    }

    /// Forget the current line (after it has been handled).
    pub fn clear(&mut self) {
        self.len = 0;
        self.overflow = false;
        self.escape = Escape::None;
    }

    /// The finished line (valid after [`Event::Line`] until [`clear`](Self::clear)).
    pub fn line(&self) -> Result<&str, LineError> {
        if self.overflow {
            return Err(LineError::TooLong { max_bytes: N });
        }
        core::str::from_utf8(&self.buf[..self.len]).map_err(|e| LineError::InvalidUtf8 {
            at: e.valid_up_to(),
        })
    }

    /// Take one byte from the terminal; `echo` receives what the terminal should show.
    pub fn push(&mut self, b: u8, echo: &mut impl FnMut(&[u8])) -> Event {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::Start => {
                self.escape = if b == b'[' || b == b'O' {
                    Escape::Sequence
                } else {
                    Escape::None
                };
                return Event::Pending;
            }
            Escape::Sequence => {
                if (0x40..=0x7E).contains(&b) {
                    self.escape = Escape::None;
                }
                return Event::Pending;
            }
            Escape::None => {}
        }
        match b {
            b'\r' => {
                self.after_cr = true;
                echo(b"\r\n");
                Event::Line
            }
            b'\n' if after_cr => Event::Pending,
            b'\n' => {
                echo(b"\r\n");
                Event::Line
            }
            0x08 | 0x7F => {
                self.backspace(echo);
                Event::Pending
            }
            0x15 => {
                // Ctrl-U: erase everything typed.
                while self.len > 0 {
                    self.backspace(echo);
                }
                self.overflow = false;
                Event::Pending
            }
            0x03 => {
                echo(b"^C\r\n");
                self.clear();
                Event::Cancelled
            }
            0x04 if self.len == 0 && !self.overflow => Event::EndOfInput,
            0x1B => {
                self.escape = Escape::Start;
                Event::Pending
            }
            b'\t' => self.insert(b' ', echo),
            0x00..=0x1F => Event::Pending,
            _ => self.insert(b, echo),
        }
    }

    fn insert(&mut self, b: u8, echo: &mut impl FnMut(&[u8])) -> Event {
        if self.len < N {
            self.buf[self.len] = b;
            self.len += 1;
            echo(&[b]);
        } else if !self.overflow {
            self.overflow = true;
            echo(b"\x07");
        }
        Event::Pending
    }

    /// Remove the last character (all its UTF-8 bytes) and erase its columns.
    fn backspace(&mut self, echo: &mut impl FnMut(&[u8])) {
        if self.len == 0 {
            return;
        }
        // Walk back over continuation bytes (10xxxxxx) to the lead byte, at most 3 of them.
        let mut start = self.len - 1;
        while start > 0 && self.len - start < 4 && self.buf[start] & 0xC0 == 0x80 {
            start -= 1;
        }
        let width = match core::str::from_utf8(&self.buf[start..self.len]) {
            Ok(s) => s.chars().next().map_or(1, display_width),
            Err(_) => {
                // Not one whole character: drop a single byte.
                start = self.len - 1;
                1
            }
        };
        self.len = start;
        for _ in 0..width {
            echo(b"\x08 \x08");
        }
    }
}

/// Terminal columns of `c`: 2 for East Asian wide and fullwidth characters, else 1.
pub fn display_width(c: char) -> usize {
    match c as u32 {
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// Feed `input`; return the events other than Pending, the echo and the editor.
    fn run<const N: usize>(input: &[u8]) -> (Vec<Event>, Vec<u8>, LineEditor<N>) {
        let mut ed = LineEditor::<N>::new();
        let mut echo = Vec::new();
        let mut events = Vec::new();
        for &b in input {
            let e = ed.push(b, &mut |s: &[u8]| echo.extend_from_slice(s));
            if e != Event::Pending {
                events.push(e);
            }
        }
        (events, echo, ed)
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line() {
        for input in [&b"ab\r"[..], b"ab\n", b"ab\r\n"] {
            let (ev, echo, ed) = run::<16>(input);
            assert_eq!(ev, [Event::Line], "{input:?}");
            assert_eq!(ed.line(), Ok("ab"));
            assert_eq!(echo, b"ab\r\n");
        }
        // CR LF LF: the second LF is a second (empty) Enter.
        let (ev, _, _) = run::<16>(b"a\r\n\n");
        assert_eq!(ev, [Event::Line, Event::Line]);
    }

    #[test]
    fn backspace_removes_a_whole_utf8_character_and_two_columns() {
        let (_, echo, ed) = run::<16>("春夜\x7f".as_bytes());
        assert_eq!(ed.line(), Ok("春"));
        assert!(echo.ends_with(b"\x08 \x08\x08 \x08"), "{echo:?}");
        let (_, echo, ed) = run::<16>("ab\x08".as_bytes());
        assert_eq!(ed.line(), Ok("a"));
        assert_eq!(&echo[2..], b"\x08 \x08");
        // backspace on an empty line does nothing
        let (_, echo, ed) = run::<16>(b"\x7f\x7f");
        assert_eq!((ed.line(), echo.len()), (Ok(""), 0));
        // a lone invalid byte goes one byte at a time
        let (_, _, ed) = run::<16>(b"a\xff\x7f");
        assert_eq!(ed.line(), Ok("a"));
        // 4-byte character
        let (_, _, ed) = run::<16>("a𠀀\x7f".as_bytes());
        assert_eq!(ed.line(), Ok("a"));
    }

    #[test]
    fn ctrl_u_ctrl_c_ctrl_d() {
        let (_, _, ed) = run::<16>("春夜\x15月".as_bytes());
        assert_eq!(ed.line(), Ok("月"));
        let (ev, echo, ed) = run::<16>(b"abc\x03");
        assert_eq!(ev, [Event::Cancelled]);
        assert!(echo.ends_with(b"^C\r\n"));
        assert_eq!(ed.line(), Ok(""));
        let (ev, _, _) = run::<16>(b"\x04");
        assert_eq!(ev, [Event::EndOfInput]);
        // Ctrl-D inside a line is ignored
        let (ev, _, ed) = run::<16>(b"a\x04b");
        assert_eq!((ev.len(), ed.line()), (0, Ok("ab")));
    }

    #[test]
    fn escape_sequences_and_controls_are_swallowed() {
        let (_, echo, ed) = run::<16>(b"a\x1b[A\x1b[1;5Cb\x1bOHc\x01\td");
        assert_eq!(ed.line(), Ok("abc d"));
        assert_eq!(echo, b"abc d");
    }

    #[test]
    fn overflow_is_reported_not_truncated() {
        let (ev, echo, ed) = run::<4>(b"abcdefg\r");
        assert_eq!(ev, [Event::Line]);
        assert_eq!(ed.line(), Err(LineError::TooLong { max_bytes: 4 }));
        assert_eq!(echo, b"abcd\x07\r\n");
        let mut ed = ed;
        ed.clear();
        let mut sink = |_: &[u8]| {};
        for &b in b"ok\r" {
            ed.push(b, &mut sink);
        }
        assert_eq!(ed.line(), Ok("ok"));
    }

    #[test]
    fn invalid_utf8_names_the_offset() {
        let (_, _, ed) = run::<16>(b"ab\xe6\x98\r");
        assert_eq!(ed.line(), Err(LineError::InvalidUtf8 { at: 2 }));
        let msg = std::format!("{}", LineError::InvalidUtf8 { at: 2 });
        assert!(msg.contains("byte 2"), "{msg}");
    }

    #[test]
    fn widths() {
        assert_eq!(display_width('春'), 2);
        assert_eq!(display_width('，'), 2);
        assert_eq!(display_width('a'), 1);
    }
}
