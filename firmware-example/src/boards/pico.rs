//! Raspberry Pi Pico (RP2040): the second-stage bootloader in the first 256 bytes of flash.
//!
//! The boot ROM copies these 256 bytes to SRAM, checks their CRC-32 (the last word) and runs
//! them; they configure the QSPI flash (a Winbond W25Q080 on the Pico) for execute-in-place and
//! jump to the vector table at 0x10000100 (boards/pico.x). The image is rp2040-boot2's
//! prebuilt, CRC-padded `BOOT_LOADER_W25Q080`, the one rp2040-hal's examples use.

#[link_section = ".boot2"]
#[used]
pub static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;
