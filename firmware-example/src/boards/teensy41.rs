//! Teensy 4.1 (i.MX RT1062): the FlexSPI configuration block (FCB).
//!
//! The boot ROM reads this 512-byte block at the start of flash (0x60000000)
//! to learn how to talk to the QSPI NOR chip before it can execute from it.
//! It is built with imxrt-boot-gen exactly like the `teensy4-fcb` crate's,
//! except for the flash size: `teensy4-fcb` declares the Teensy 4.0's 2 MiB,
//! and the ROM maps only that much, while the 4.1 has 8 MiB (W25Q64JV) and
//! our weights alone are 2.7 MB. PJRC's own bootdata.c uses 0x00800000 for
//! the 4.1. The IVT and boot data that follow at 0x1000 are in boards/teensy41.x.
//!
//! teensy4-bsp (the console's clocks and USB) links `teensy4-fcb` unconditionally, whose
//! 2 MiB block is a global `FLEXSPI_CONFIGURATION_BLOCK` in section `.fcb`. Ours therefore
//! has another symbol name and its own section, `.tinypoet_fcb`, and boards/teensy41.x
//! discards `.fcb`; `check-boards.sh` checks that the block at 0x60000000 declares 8 MiB.

use imxrt_boot_gen::flexspi::{self, opcodes::sdr::*, *};
use imxrt_boot_gen::serial_flash::*;

/// Winbond W25Q64JV command set.
mod winbond {
    pub const FAST_READ_QUAD_IO: u8 = 0xEB;
    pub const READ_STATUS_REGISTER_1: u8 = 0x05;
    pub const WRITE_ENABLE: u8 = 0x06;
    pub const SECTOR_ERASE: u8 = 0x20;
    pub const PAGE_PROGRAM: u8 = 0x02;
    pub const CHIP_ERASE: u8 = 0x60;
}
use winbond::*;

/// Flash size the ROM maps: all 8 MiB of the Teensy 4.1's QSPI flash.
pub const FLASH_SIZE: u32 = 8 * 1024 * 1024;

const SEQ_READ: Sequence = SequenceBuilder::new()
    .instr(Instr::new(CMD, Pads::One, FAST_READ_QUAD_IO))
    .instr(Instr::new(RADDR, Pads::Four, 0x18))
    .instr(Instr::new(DUMMY, Pads::Four, 0x06))
    .instr(Instr::new(READ, Pads::Four, 0x04))
    .build();
const SEQ_READ_STATUS: Sequence = SequenceBuilder::new()
    .instr(Instr::new(CMD, Pads::One, READ_STATUS_REGISTER_1))
    .instr(Instr::new(READ, Pads::One, 0x04))
    .build();
const SEQ_WRITE_ENABLE: Sequence = SequenceBuilder::new()
    .instr(Instr::new(CMD, Pads::One, WRITE_ENABLE))
    .build();
const SEQ_ERASE_SECTOR: Sequence = SequenceBuilder::new()
    .instr(Instr::new(CMD, Pads::One, SECTOR_ERASE))
    .instr(Instr::new(RADDR, Pads::One, 0x18))
    .build();
const SEQ_PAGE_PROGRAM: Sequence = SequenceBuilder::new()
    .instr(Instr::new(CMD, Pads::One, PAGE_PROGRAM))
    .instr(Instr::new(RADDR, Pads::One, 0x18))
    .instr(Instr::new(WRITE, Pads::One, 0x04))
    .build();
const SEQ_CHIP_ERASE: Sequence = SequenceBuilder::new()
    .instr(Instr::new(CMD, Pads::One, CHIP_ERASE))
    .build();

const LUT: LookupTable = LookupTable::new()
    .command(Command::Read, SEQ_READ)
    .command(Command::ReadStatus, SEQ_READ_STATUS)
    .command(Command::WriteEnable, SEQ_WRITE_ENABLE)
    .command(Command::EraseSector, SEQ_ERASE_SECTOR)
    .command(Command::PageProgram, SEQ_PAGE_PROGRAM)
    .command(Command::ChipErase, SEQ_CHIP_ERASE);

const CHIP: imxrt_boot_gen::Imxrt = imxrt_boot_gen::Imxrt::Imxrt1060;

const COMMON: flexspi::ConfigurationBlock = flexspi::ConfigurationBlock::new(LUT)
    .read_sample_clk_src(ReadSampleClockSource::LoopbackFromDQSPad)
    .cs_hold_time(0x01)
    .cs_setup_time(0x02)
    .column_address_width(ColumnAddressWidth::OtherDevices)
    .device_mode_configuration(DeviceModeConfiguration::Disabled)
    .wait_time_cfg_commands(WaitTimeConfigurationCommands::disable())
    .flash_size(SerialFlashRegion::A1, FLASH_SIZE)
    .serial_clk_freq(CHIP.serial_clock_frequency(SerialClockOption::MHz60))
    .serial_flash_pad_type(FlashPadType::Quad);

/// The FCB, placed at 0x60000000 by boards/teensy41.x.
#[link_section = ".tinypoet_fcb"]
#[used]
pub static TEENSY41_FLEXSPI_CONFIGURATION_BLOCK: nor::ConfigurationBlock =
    nor::ConfigurationBlock::new(CHIP, COMMON)
        .page_size(256)
        .sector_size(4096)
        .ip_cmd_serial_clk_freq(Some(
            CHIP.ip_serial_clock_frequency(SerialClockOption::MHz30),
        ));

/// The console over USB CDC-ACM (`/dev/ttyACM0`): teensy4-bsp's clock and power policy (ARM
/// 600 MHz, USB PLL3 480 MHz and the USB clock gate), then the i.MX RT USB1 controller through
/// imxrt-usbd at full speed (CDC's 64-byte bulk packets) with the identity of
/// [`tinypoet_console::usb::TEENSY41`]. Never returns: Ctrl-D ends a session and the next one
/// starts with the greeting.
#[cfg(not(any(feature = "measure", feature = "oneshot")))]
pub fn console(dec: &mut tinypoet_core::Decoder, info: &tinypoet_console::Info) -> ! {
    use teensy4_bsp::board;
    use teensy4_bsp::usbd::{BusAdapter, EndpointMemory, EndpointState, Speed};
    use tinypoet_console::usb::TEENSY41;
    use usb_device::bus::UsbBusAllocator;

    /// Endpoint buffers (EP0 64 + 64 + bulk IN/OUT 64 each + interrupt 8, with room).
    static EP_MEMORY: EndpointMemory<1024> = EndpointMemory::new();
    /// Queue heads for endpoints 0..=2 in both directions (CDC-ACM uses EP0, EP1 IN/OUT and
    /// EP2 IN; imxrt-usbd counts OUT/IN pairs).
    static EP_STATE: EndpointState<6> = EndpointState::new();

    let board::Resources { usb, .. } = board::t41(board::instances());
    let bus = UsbBusAllocator::new(BusAdapter::with_speed(
        usb,
        &EP_MEMORY,
        &EP_STATE,
        Speed::LowFull,
    ));
    super::serve_usb(&bus, &TEENSY41, dec, &METER, info)
}

/// SysTick counts core cycles at teensy4-bsp's 600 MHz ARM clock.
#[cfg(not(any(feature = "measure", feature = "oneshot")))]
pub const METER: tinypoet_console::Meter = tinypoet_console::Meter {
    now: crate::clock::now,
    unit: tinypoet_console::Unit::Time {
        ticks_per_second: teensy4_bsp::board::ARM_FREQUENCY as u64,
    },
};
