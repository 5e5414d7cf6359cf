//! Output and exit: semihosting under QEMU or a debug probe.
//!
//! Every character of the poem is written as soon as it is sampled. On the
//! real boards a semihosting call without a debugger attached would fault
//! (BKPT escalates to HardFault), so there the text also goes into a RAM log
//! (`TINYPOET_LOG`) that a debugger can read, and semihosting is used only when the
//! core reports a debugger (DHCSR.C_DEBUGEN). QEMU's mps2 always has it.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use cortex_m_semihosting::hio;

/// Size of the RAM log: none under QEMU, where semihosting is always there.
const LOG_SIZE: usize = if cfg!(any(
    feature = "board-mps2-an386",
    feature = "board-mps2-an385"
)) {
    0
} else {
    2048
};

/// Last bytes written (a ring), for boards without a debugger: read
/// `TINYPOET_LOG` and `TINYPOET_LOG_LEN` from RAM.
#[no_mangle]
#[used]
static mut TINYPOET_LOG: [u8; LOG_SIZE] = [0; LOG_SIZE];
#[no_mangle]
#[used]
static mut TINYPOET_LOG_LEN: usize = 0;
static SEMIHOSTING: AtomicBool = AtomicBool::new(false);
/// Host stdout handle, opened on first use.
static mut STDOUT: Option<hio::HostStream> = None;

/// Decide once whether semihosting can be used.
pub fn init() {
    let on = if cfg!(any(
        feature = "board-mps2-an386",
        feature = "board-mps2-an385"
    )) {
        true
    } else {
        // DHCSR bit 0 = C_DEBUGEN: a debugger is connected and halting debug is on.
        const DHCSR: *const u32 = 0xE000_EDF0 as *const u32;
        // SAFETY: DHCSR is the Debug Halting Control and Status Register in the System Control
        // Space of the Cortex-M cores this firmware runs on (M0+, M7, M33): always mapped,
        // word-aligned, and reading it has no side effect.
        unsafe { core::ptr::read_volatile(DHCSR) & 1 == 1 }
    };
    SEMIHOSTING.store(on, Ordering::Relaxed);
}

/// Write raw bytes to the host's stdout (and the RAM log).
pub fn write_bytes(bytes: &[u8]) {
    if LOG_SIZE != 0 {
        // SAFETY: single core, never called from an interrupt: no other reference exists.
        let (log, len) = unsafe {
            (
                &mut *core::ptr::addr_of_mut!(TINYPOET_LOG),
                &mut *core::ptr::addr_of_mut!(TINYPOET_LOG_LEN),
            )
        };
        for &b in bytes {
            log[*len % LOG_SIZE] = b;
            *len = len.wrapping_add(1);
        }
    }
    if SEMIHOSTING.load(Ordering::Relaxed) {
        // SAFETY: single core, never called from an interrupt: no other reference exists.
        let stdout = unsafe { &mut *core::ptr::addr_of_mut!(STDOUT) };
        if stdout.is_none() {
            *stdout = hio::hstdout().ok();
        }
        if let Some(out) = stdout {
            let _ = out.write_all(bytes);
        }
    }
}

/// `core::fmt` sink for `print!`-style output.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::console::Console, format_args!($($arg)*));
    }};
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{ $crate::print!($($arg)*); $crate::print!("\n"); }};
}

/// End the run: QEMU exits with status 0 (success) or 1 (failure).
pub fn exit(success: bool) -> ! {
    if SEMIHOSTING.load(Ordering::Relaxed) {
        debug::exit(if success { EXIT_SUCCESS } else { EXIT_FAILURE });
    }
    // No host to return to: park the core.
    loop {
        cortex_m::asm::wfi();
    }
}

/// Print an error and exit with failure.
pub fn fail(args: fmt::Arguments) -> ! {
    let _ = Console.write_str("\nerror: ");
    let _ = Console.write_fmt(args);
    let _ = Console.write_str("\n");
    exit(false)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    fail(format_args!("panic: {info}"))
}

#[cortex_m_rt::exception]
unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    fail(format_args!(
        "HardFault at pc={:#010x} lr={:#010x}",
        frame.pc(),
        frame.lr()
    ))
}
