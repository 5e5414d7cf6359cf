//! Instruction counting with SysTick (embedded.md §3).
//!
//! QEMU's DWT cycle counter reads as zero, so figures come from SysTick clocked
//! by the core while QEMU runs with `-icount shift=0,align=off,sleep=off`: every
//! guest instruction advances virtual time by exactly 1 ns, and the MPS2 core
//! clock is 25 MHz, so one SysTick tick is 40 instructions. The 24-bit counter
//! wraps every 2^24 ticks (671 M instructions), so the SysTick exception counts
//! wraps and [`now`] returns a 64-bit tick count that is monotonic for the
//! whole run. On real boards the same code counts core cycles instead.

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;

/// Instructions per SysTick tick on QEMU mps2 with `-icount shift=0`
/// (1 ns per instruction, 25 MHz SysTick clock).
#[cfg(any(
    feature = "board-mps2-an386",
    feature = "board-mps2-an385",
    feature = "measure",
    feature = "oneshot"
))]
pub const INSTRUCTIONS_PER_TICK: u64 = 40;

const RELOAD: u32 = 0x00FF_FFFF;

static WRAPS: AtomicU32 = AtomicU32::new(0);

/// Start SysTick from the core clock, full 24-bit period, wrap interrupt on.
pub fn start(mut syst: SYST) {
    syst.disable_counter();
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_counter();
    // After clear_current the counter reads 0 until its first reload; wait for
    // it so no reading ever sees that state, then start counting wraps.
    while SYST::get_current() == 0 {}
    let _ = syst.has_wrapped();
    SCB::clear_pendst();
    WRAPS.store(0, Ordering::Relaxed);
    syst.enable_interrupt();
}

#[exception]
fn SysTick() {
    // load + store, not fetch_add: ARMv6-M has no atomic read-modify-write, and this handler
    // is the only writer (now() reads with interrupts masked).
    WRAPS.store(
        WRAPS.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Ticks since [`start`], counting wraps. Runs with interrupts masked so the
/// (wraps, current) pair is consistent; a wrap that happened but whose
/// exception is still pending is detected through ICSR.PENDSTSET.
pub fn now() -> u64 {
    cortex_m::interrupt::free(|_| {
        let mut wraps = WRAPS.load(Ordering::Relaxed) as u64;
        let mut current = SYST::get_current();
        if SCB::is_pendst_pending() {
            // The counter reloaded after the last exception ran; re-read so the
            // value belongs to the new period.
            current = SYST::get_current();
            wraps += 1;
        }
        wraps * (RELOAD as u64 + 1) + (RELOAD - current) as u64
    })
}

/// Instructions (QEMU -icount) between two [`now`] readings.
#[cfg(any(feature = "measure", feature = "oneshot"))]
pub fn instructions(t0: u64, t1: u64) -> u64 {
    (t1 - t0) * INSTRUCTIONS_PER_TICK
}
