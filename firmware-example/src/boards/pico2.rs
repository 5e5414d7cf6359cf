//! Raspberry Pi Pico 2 (RP2350): the IMAGE_DEF block the boot ROM looks for.
//!
//! The RP2350 ROM scans the first 4 KiB of flash for a "block" (RP2350
//! datasheet §5.9.1, pico-sdk `embedded_start_block.inc`): a start marker, a
//! list of items, a link to the next block and an end marker. A block holding
//! one IMAGE_DEF item marks the flash image as bootable; without it the ROM
//! falls back to USB boot. This is the minimal block the pico-sdk emits for an
//! Arm Secure executable (the same words as rp235x-hal's
//! `ImageDef::secure_exe()`), placed in `.start_block` right after the vector
//! table by boards/pico2.x. `check-boards.sh` checks the markers.

/// `PICOBIN_BLOCK_MARKER_START`.
pub const BLOCK_MARKER_START: u32 = 0xffff_ded3;
/// `PICOBIN_BLOCK_MARKER_END`.
pub const BLOCK_MARKER_END: u32 = 0xab12_3579;

/// Item 1: `PICOBIN_BLOCK_ITEM_1BS_IMAGE_TYPE` (0x42), size 1 word, flags
/// 0x1021 = image type EXE (0x0001) | security Secure (0x0020) | CPU Arm
/// (0x0000) | chip RP2350 (0x1000).
const ITEM_IMAGE_DEF_SECURE_ARM_EXE: u32 = 0x1021_0142;
/// `PICOBIN_BLOCK_ITEM_2BS_LAST` (0xff) with the total size of the items before
/// it in words (1).
const ITEM_LAST: u32 = 0x0000_01ff;
/// Offset to the next block; 0 = this block links to itself (a loop of one).
const NEXT_BLOCK: u32 = 0;

#[link_section = ".start_block"]
#[used]
pub static IMAGE_DEF: [u32; 5] = [
    BLOCK_MARKER_START,
    ITEM_IMAGE_DEF_SECURE_ARM_EXE,
    ITEM_LAST,
    NEXT_BLOCK,
    BLOCK_MARKER_END,
];

/// The console over USB CDC-ACM (`/dev/ttyACM0`): clocks from the 12 MHz crystal (system
/// 150 MHz, USB 48 MHz, rp235x-hal's `init_clocks_and_plls`), then the RP2350's USB device
/// controller with the identity of [`tinypoet_console::usb::PICO2`]; with `--features rtt` the
/// same clocks and the RTT channels instead of USB (`crate::rtt`). Never returns: Ctrl-D
/// ends a session and the next one starts with the greeting.
#[cfg(not(any(feature = "measure", feature = "oneshot")))]
pub fn console(dec: &mut tinypoet_core::Decoder, info: &tinypoet_console::Info) -> ! {
    use rp235x_hal as hal;

    /// The Pico 2's crystal.
    const XOSC_HZ: u32 = 12_000_000;
    let Some(mut pac) = hal::pac::Peripherals::take() else {
        crate::console::fail(format_args!("RP2350 peripherals already taken"));
    };
    let mut watchdog = hal::Watchdog::new(pac.WATCHDOG);
    let clocks = match hal::clocks::init_clocks_and_plls(
        XOSC_HZ,
        pac.XOSC,
        pac.CLOCKS,
        pac.PLL_SYS,
        pac.PLL_USB,
        &mut pac.RESETS,
        &mut watchdog,
    ) {
        Ok(c) => c,
        Err(_) => crate::console::fail(format_args!("RP2350 clock setup failed")),
    };
    #[cfg(feature = "rtt")]
    {
        let _ = clocks;
        let mut port = crate::rtt::RttPort::new();
        loop {
            tinypoet_console::run(&mut port, dec, &METER, info);
        }
    }
    #[cfg(not(feature = "rtt"))]
    {
        use tinypoet_console::usb::PICO2;
        use usb_device::bus::UsbBusAllocator;
        let bus = UsbBusAllocator::new(hal::usb::UsbBus::new(
            pac.USB,
            pac.USB_DPRAM,
            clocks.usb_clock,
            true, // VBUS detect: the Pico 2 does not route VBUS to the USB controller
            &mut pac.RESETS,
        ));
        super::serve_usb(&bus, &PICO2, dec, &METER, info)
    }
}

/// SysTick counts core cycles at the 150 MHz system clock.
#[cfg(not(any(feature = "measure", feature = "oneshot")))]
pub const METER: tinypoet_console::Meter = tinypoet_console::Meter {
    now: crate::clock::now,
    unit: tinypoet_console::Unit::Time {
        ticks_per_second: 150_000_000,
    },
};
