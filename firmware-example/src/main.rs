//! tinypoet on a Cortex-M: writes a Tang poem from f16 weights in flash.
#![no_std]
#![no_main]

mod blob;
mod boards;
mod clock;
mod console;

use cortex_m_rt::entry;

#[entry]
fn main() -> ! {
    console::init();
    let p = cortex_m::Peripherals::take().unwrap();
    clock::start(p.SYST);
    let t0 = clock::now();
    let b = blob::bytes();
    let mut sum = 0u32;
    for &x in b {
        sum = sum.wrapping_add(x as u32);
    }
    let t1 = clock::now();
    println!(
        "board {} blob {} ({} bytes at {:p}) sum {} in {} instructions",
        boards::NAME,
        blob::NAME,
        b.len(),
        b.as_ptr(),
        sum,
        clock::instructions(t0, t1)
    );
    console::exit(true)
}
