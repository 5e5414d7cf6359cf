//! The console over RTT (SEGGER Real-Time Transfer, `--features rtt`): for a board on a debug
//! probe, the same protocol as the UART and USB consoles, through two ring buffers in RAM that
//! the probe reads and writes over SWD while the core runs (no pins, no USB stack).
//!
//! Channels (rtt-target's control block `_SEGGER_RTT`, found by probe-rs through the ELF symbol
//! or by scanning RAM for its "SEGGER RTT" id): up 0 "Terminal" (1 KiB, board -> host: echo,
//! poems, status and error lines) and down 0 "Terminal" (256 bytes, host -> board: what the user
//! types). The up channel is `NoBlockTrim`: with no probe attached nobody empties it, and the
//! console must not hang, so bytes that do not fit are dropped (a probe-rs session reads the
//! buffer every few milliseconds; a poem is written a few characters at a time).

use rtt_target::{rtt_init, ChannelMode, DownChannel, UpChannel};
use tinypoet_console::Port;

/// Channel 0 up and down.
pub struct RttPort {
    up: UpChannel,
    down: DownChannel,
}

impl RttPort {
    /// Set up the control block (once: rtt_init! panics on a second call).
    pub fn new() -> RttPort {
        let channels = rtt_init! {
            up: {
                0: {
                    size: 1024,
                    mode: ChannelMode::NoBlockTrim,
                    name: "Terminal"
                }
            }
            down: {
                0: {
                    size: 256,
                    name: "Terminal"
                }
            }
        };
        RttPort {
            up: channels.up.0,
            down: channels.down.0,
        }
    }
}

impl RttPort {
    /// Wait until the probe has read everything written (QEMU, before it exits at the end of
    /// the session; without a probe this waits forever).
    #[cfg(feature = "board-mps2-an386")]
    pub fn flush(&self) {
        self.up.flush();
    }
}

impl Port for RttPort {
    fn read_byte(&mut self) -> Option<u8> {
        let mut b = [0u8; 1];
        (self.down.read(&mut b) == 1).then_some(b[0])
    }

    fn write(&mut self, bytes: &[u8]) {
        // NoBlockTrim: what fits now; the rest is dropped when no probe reads the buffer.
        self.up.write(bytes);
    }
}
