//! The console on QEMU mps2-an386: CMSDK APB UART0, which QEMU's `-serial stdio` connects to
//! its standard input and output.
//!
//! Registers (QEMU `hw/char/cmsdk-apb-uart.c`, Arm CMSDK TRM): DATA 0x00; STATE 0x04 (bit 0
//! TX buffer full, bit 1 RX buffer full); CTRL 0x08 (bit 0 TX enable, bit 1 RX enable);
//! BAUDDIV 0x10 (must be >= 16, else QEMU refuses to transmit). Polled, no interrupts: the
//! receive buffer holds one byte and QEMU delivers the next only after DATA is read, so input
//! piped in faster than it is read waits in the pipe and none is lost.

use core::ptr::{read_volatile, write_volatile};

use tinypoet_console::Port;

/// UART0 of the MPS2 FPGA images (AN385/AN386/AN500).
const UART0: usize = 0x4000_4000;
const DATA: *mut u32 = UART0 as *mut u32;
const STATE: *mut u32 = (UART0 + 0x04) as *mut u32;
const CTRL: *mut u32 = (UART0 + 0x08) as *mut u32;
const BAUDDIV: *mut u32 = (UART0 + 0x10) as *mut u32;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

/// UART0, enabled for transmit and receive.
pub struct Uart0 {
    _private: (),
}

impl Uart0 {
    /// Enable UART0. BAUDDIV 217 = 25 MHz / 115200 (QEMU ignores the rate; real MPS2 boards
    /// would run at 115200 baud).
    pub fn new() -> Self {
        // SAFETY: the UART0 registers of this machine; only this value touches them.
        unsafe {
            write_volatile(CTRL, 0);
            write_volatile(BAUDDIV, 217);
            write_volatile(CTRL, CTRL_TX_EN | CTRL_RX_EN);
        }
        Uart0 { _private: () }
    }
}

impl Port for Uart0 {
    fn read_byte(&mut self) -> Option<u8> {
        // SAFETY: UART0 registers; reading DATA clears RX_FULL.
        unsafe {
            if read_volatile(STATE) & STATE_RX_FULL != 0 {
                Some(read_volatile(DATA) as u8)
            } else {
                None
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: UART0 registers.
            unsafe {
                while read_volatile(STATE) & STATE_TX_FULL != 0 {}
                write_volatile(DATA, b as u32);
            }
        }
    }
}
