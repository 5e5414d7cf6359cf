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
