//! Board-specific boot data and console transports. QEMU's mps2-an386 needs no boot data: its
//! reset loads SP and PC from the vector table at address 0.

#[cfg(feature = "board-pico")]
pub mod pico;
#[cfg(feature = "board-pico2")]
pub mod pico2;
#[cfg(feature = "board-teensy41")]
pub mod teensy41;

/// Human-readable board name, for the banner.
pub const NAME: &str = env!("TINYPOET_BOARD");

/// The console on QEMU (mps2-an386, and mps2-an385 for the ARMv6-M build): UART0
/// (`-serial stdio`; RTT with `--features rtt`) until Ctrl-D, instruction counts per character.
#[cfg(all(
    any(feature = "board-mps2-an386", feature = "board-mps2-an385"),
    not(any(feature = "measure", feature = "oneshot"))
))]
pub fn console(dec: &mut tinypoet_core::Decoder, info: &tinypoet_console::Info) {
    const METER: tinypoet_console::Meter = tinypoet_console::Meter {
        now: crate::clock::now,
        unit: tinypoet_console::Unit::Instructions {
            per_tick: crate::clock::INSTRUCTIONS_PER_TICK,
        },
    };
    #[cfg(not(feature = "rtt"))]
    let mut port = crate::uart::Uart0::new();
    #[cfg(feature = "rtt")]
    let mut port = crate::rtt::RttPort::new();
    tinypoet_console::run(&mut port, dec, &METER, info);
    // RTT: the probe reads the goodbye before the machine exits.
    #[cfg(feature = "rtt")]
    port.flush();
}

/// The console over USB CDC-ACM on a board's bus, forever: the serial function and device of
/// [`tinypoet_console::usb::device`] with identity `id`, one session after another (Ctrl-D ends
/// one, the next starts with the greeting). Each USB board sets up its clocks and its bus, then
/// calls this.
#[cfg(all(
    not(any(feature = "measure", feature = "oneshot")),
    any(
        feature = "board-pico",
        feature = "board-teensy41",
        all(feature = "board-pico2", not(feature = "rtt"))
    )
))]
pub fn serve_usb<B: usb_device::bus::UsbBus>(
    bus: &usb_device::bus::UsbBusAllocator<B>,
    id: &tinypoet_console::usb::Identity,
    dec: &mut tinypoet_core::Decoder,
    meter: &tinypoet_console::Meter,
    info: &tinypoet_console::Info,
) -> ! {
    let (serial, dev) = match tinypoet_console::usb::device(bus, id) {
        Ok(d) => d,
        Err(_) => crate::console::fail(format_args!("USB device descriptor rejected")),
    };
    let mut port = tinypoet_console::usb::UsbPort::new(serial, dev);
    loop {
        tinypoet_console::run(&mut port, dec, meter, info);
    }
}

#[cfg(all(
    feature = "board-pico",
    not(any(feature = "measure", feature = "oneshot"))
))]
pub use pico::console;
#[cfg(all(
    feature = "board-pico2",
    not(any(feature = "measure", feature = "oneshot"))
))]
pub use pico2::console;
#[cfg(all(
    feature = "board-teensy41",
    not(any(feature = "measure", feature = "oneshot"))
))]
pub use teensy41::console;
