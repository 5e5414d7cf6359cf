//! Raspberry Pi Pico (RP2040): the second-stage bootloader in the first 256 bytes of flash, the
//! USB CDC-ACM console, and the 133 MHz clock setup of the `oneshot`/`measure` builds.
//!
//! The boot ROM copies these 256 bytes to SRAM, checks their CRC-32 (the last word) and runs
//! them; they configure the QSPI flash (a Winbond W25Q080 on the Pico) for execute-in-place and
//! jump to the vector table at 0x10000100 (boards/pico.x). The image is rp2040-boot2's
//! prebuilt, CRC-padded `BOOT_LOADER_W25Q080`, the one rp2040-hal's examples use.

// rp2040-hal's `rt` feature turns on cortex-m-rt's `device` feature, which needs the interrupt
// vectors of rp2040-pac: link them in the builds that use no HAL item (oneshot, measure).
use rp2040_hal as _;

#[link_section = ".boot2"]
#[used]
pub static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The console over USB CDC-ACM (`/dev/ttyACM0`): rp2040-hal's clock setup from the 12 MHz
/// crystal (clk_sys 125 MHz from PLL_SYS, clk_usb 48 MHz from PLL_USB, `init_clocks_and_plls`),
/// then the RP2040's USB device controller with the identity of
/// [`tinypoet_console::usb::PICO`]. Never returns: Ctrl-D ends a session and the next one
/// starts with the greeting.
#[cfg(not(any(feature = "measure", feature = "oneshot")))]
pub fn console(dec: &mut tinypoet_core::Decoder, info: &tinypoet_console::Info) -> ! {
    use rp2040_hal as hal;
    use tinypoet_console::usb::PICO;
    use usb_device::bus::UsbBusAllocator;

    /// The Pico's crystal.
    const XOSC_HZ: u32 = 12_000_000;
    let Some(mut pac) = hal::pac::Peripherals::take() else {
        crate::console::fail(format_args!("RP2040 peripherals already taken"));
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
        Err(_) => crate::console::fail(format_args!("RP2040 clock setup failed")),
    };
    // The endpoint buffers live in the controller's own 4 KiB DPRAM (0x50100000), not in SRAM.
    let bus = UsbBusAllocator::new(hal::usb::UsbBus::new(
        pac.USBCTRL_REGS,
        pac.USBCTRL_DPRAM,
        clocks.usb_clock,
        true, // VBUS detect: the Pico routes VBUS to GPIO24, not to the USB controller
        &mut pac.RESETS,
    ));
    super::serve_usb(&bus, &PICO, dec, &METER, info)
}

/// SysTick counts core cycles at the 125 MHz system clock of `init_clocks_and_plls`.
#[cfg(not(any(feature = "measure", feature = "oneshot")))]
pub const METER: tinypoet_console::Meter = tinypoet_console::Meter {
    now: crate::clock::now,
    unit: tinypoet_console::Unit::Time {
        ticks_per_second: 125_000_000,
    },
};

// ---- oneshot / measure clocks: 12 MHz crystal -> PLL_SYS 1596 MHz / 6 / 2 = 133 MHz ----
//
// After boot2 the RP2040 runs from its ring oscillator (~6.5 MHz). This is the pico-sdk's
// `clocks_init` reduced to what the firmware needs (RP2040 datasheet §2.15-2.18): XOSC on,
// clk_ref from XOSC, PLL_SYS locked at 133 MHz (REFDIV 1, FBDIV 133, POSTDIV 6 and 2, the SDK's
// values), clk_sys from PLL_SYS through the glitchless mux. Nothing else (USB, ADC, peripheral
// clocks) is touched. Built and checked against the datasheet's register map; not run on a
// board here (QEMU has no RP2040).
#[cfg(any(feature = "measure", feature = "oneshot"))]
pub use clocks_133mhz::init_clocks;

#[cfg(any(feature = "measure", feature = "oneshot"))]
mod clocks_133mhz {
    const RESETS: usize = 0x4000_C000;
    const XOSC: usize = 0x4002_4000;
    const CLOCKS: usize = 0x4000_8000;
    const PLL_SYS: usize = 0x4002_8000;
    /// Atomic register aliases: write-1-to-set and write-1-to-clear (datasheet §2.1.2).
    const SET: usize = 0x2000;
    const CLR: usize = 0x3000;

    fn write(addr: usize, v: u32) {
        // SAFETY: `addr` is one of the RP2040 peripheral registers named above.
        unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
    }

    fn read(addr: usize) -> u32 {
        // SAFETY: as for `write`.
        unsafe { core::ptr::read_volatile(addr as *const u32) }
    }

    fn wait(addr: usize, mask: u32, want: u32) {
        while read(addr) & mask != want {}
    }

    /// Switch the RP2040 to 133 MHz (see above). Called first thing in `main` on the Pico's
    /// `oneshot`/`measure` builds.
    pub fn init_clocks() {
        // XOSC: 1-15 MHz range, ~1 ms start-up delay (47 x 256 cycles of 12 MHz), enable, stable.
        write(XOSC, 0xAA0); // CTRL.FREQ_RANGE = 1_15MHZ
        write(XOSC + 0x0C, 47); // STARTUP.DELAY
        write(XOSC + SET, 0xFAB << 12); // CTRL.ENABLE = ENABLE
        wait(XOSC + 0x04, 1 << 31, 1 << 31); // STATUS.STABLE

        // clk_ref <- XOSC (CLK_REF_CTRL.SRC = 2), divider 1; SELECTED is one-hot.
        write(CLOCKS + 0x34, 1 << 8);
        write(CLOCKS + 0x30, 2);
        wait(CLOCKS + 0x38, 1 << 2, 1 << 2);
        // clk_sys <- clk_ref while the PLL is (re)started (CLK_SYS_CTRL.SRC = 0).
        write(CLOCKS + 0x3C + CLR, 1);
        wait(CLOCKS + 0x44, 1, 1);

        // PLL_SYS: reset, REFDIV 1, FBDIV 133 (VCO 1596 MHz), power up, lock, POSTDIV 6 x 2.
        const PLL_SYS_RESET: u32 = 1 << 12;
        write(RESETS + SET, PLL_SYS_RESET);
        write(RESETS + CLR, PLL_SYS_RESET);
        wait(RESETS + 0x08, PLL_SYS_RESET, PLL_SYS_RESET);
        write(PLL_SYS, 1); // CS.REFDIV
        write(PLL_SYS + 0x08, 133); // FBDIV_INT
        write(PLL_SYS + 0x04 + CLR, (1 << 0) | (1 << 5)); // PWR: clear PD and VCOPD
        wait(PLL_SYS, 1 << 31, 1 << 31); // CS.LOCK
        write(PLL_SYS + 0x0C, (6 << 16) | (2 << 12)); // PRIM.POSTDIV1, POSTDIV2
        write(PLL_SYS + 0x04 + CLR, 1 << 3); // PWR: clear POSTDIVPD

        // clk_sys <- aux (AUXSRC = 0: PLL_SYS), divider 1.
        write(CLOCKS + 0x40, 1 << 8);
        write(CLOCKS + 0x3C + CLR, 0b111 << 5); // AUXSRC = clksrc_pll_sys
        write(CLOCKS + 0x3C + SET, 1); // SRC = clksrc_clk_sys_aux
        wait(CLOCKS + 0x44, 1 << 1, 1 << 1);
    }
}
