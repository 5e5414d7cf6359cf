//! Board-specific boot data. QEMU's mps2-an386 needs none: its reset loads SP
//! and PC from the vector table at address 0.

#[cfg(feature = "board-pico")]
pub mod pico;
#[cfg(feature = "board-pico2")]
pub mod pico2;
#[cfg(feature = "board-teensy41")]
pub mod teensy41;

/// Human-readable board name, for the banner.
pub const NAME: &str = env!("TINYPOET_BOARD");
