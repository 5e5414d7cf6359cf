//! The console over USB CDC-ACM (a "virtual COM port": `/dev/ttyACM0` on Linux, `COMn` on
//! Windows, `/dev/cu.usbmodem*` on macOS), for any `usb-device` bus: the RP2350's, the
//! RP2040's and the i.MX RT's drivers in the board builds, a simulated bus in the host test.
//!
//! Device identity ([`Identity`], what `lsusb -v` shows): device class 0x02 (CDC) with one
//! CDC-ACM function (a communications interface with an interrupt IN endpoint and a data
//! interface with bulk IN/OUT endpoints of 64 bytes), full speed, bus-powered 100 mA, and the
//! strings below. The VID:PID pairs are community IDs, not allocated to this project:
//! * Pico 2 and Pico: `16c0:27dd`, the shared ID for CDC-ACM devices of Van Ooijen Technische
//!   Informatica (VOTI), the one the rp-hal USB serial examples use; the ID's terms ask that
//!   the device be told apart by its manufacturer and product strings, which these are.
//! * Teensy 4.1: `16c0:0483`, PJRC's "Teensyduino Serial" ID (PJRC's VID is VOTI's 0x16c0),
//!   what every Teensy running a USB-serial sketch enumerates as, so the Teensy tools and
//!   udev rules (`00-teensy.rules`) recognise the board.

use usb_device::bus::{UsbBus, UsbBusAllocator};
use usb_device::device::{
    StringDescriptors, UsbDevice, UsbDeviceBuilder, UsbDeviceState, UsbVidPid,
};
use usb_device::prelude::BuilderError;
use usbd_serial::SerialPort;

use crate::session::Port;

/// What the host enumerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// idVendor.
    pub vid: u16,
    /// idProduct.
    pub pid: u16,
    /// iManufacturer.
    pub manufacturer: &'static str,
    /// iProduct.
    pub product: &'static str,
    /// iSerialNumber.
    pub serial: &'static str,
}

/// Raspberry Pi Pico 2.
pub const PICO2: Identity = Identity {
    vid: 0x16c0,
    pid: 0x27dd,
    manufacturer: "tinypoet",
    product: "tinypoet console (Pico 2)",
    serial: "tinypoet-pico2",
};

/// Raspberry Pi Pico (RP2040): the Pico 2's shared ID, told apart by the product string.
pub const PICO: Identity = Identity {
    vid: 0x16c0,
    pid: 0x27dd,
    manufacturer: "tinypoet",
    product: "tinypoet console (Pico)",
    serial: "tinypoet-pico",
};

/// Teensy 4.1.
pub const TEENSY41: Identity = Identity {
    vid: 0x16c0,
    pid: 0x0483,
    manufacturer: "tinypoet",
    product: "tinypoet console (Teensy 4.1)",
    serial: "tinypoet-teensy41",
};

/// bcdDevice 0.10 (BCD): the firmware crate's version 0.1.
pub const DEVICE_RELEASE: u16 = 0x0010;

/// The CDC-ACM function and the device, built the same way on every bus.
///
/// The builder's errors (more than 16 languages, an EP0 size other than 8/16/32/64, more than
/// 500 mA) cannot happen with these constants; they are passed on rather than hidden.
pub fn device<'a, B: UsbBus>(
    alloc: &'a UsbBusAllocator<B>,
    id: &Identity,
) -> Result<(SerialPort<'a, B>, UsbDevice<'a, B>), BuilderError> {
    // The function's endpoints are allocated before the device is built (usb-device's rule).
    let serial = SerialPort::new(alloc);
    let strings = StringDescriptors::default()
        .manufacturer(id.manufacturer)
        .product(id.product)
        .serial_number(id.serial);
    let dev = UsbDeviceBuilder::new(alloc, UsbVidPid(id.vid, id.pid))
        .device_class(usbd_serial::USB_CLASS_CDC)
        .device_release(DEVICE_RELEASE)
        .strings(&[strings])?
        .max_power(100)?
        // EP0 of 64 bytes: required by the i.MX RT driver, and it avoids the RP2350's small-EP0
        // enumeration problem with Windows hosts (rp235x-hal's usb module documentation).
        .max_packet_size_0(64)?
        .build();
    Ok((serial, dev))
}

/// Polls without progress after which a write gives up (the terminal stopped reading).
const STALLED_POLLS: u32 = 200_000;

/// A [`Port`] over a CDC-ACM serial port.
///
/// Output is sent only while a terminal holds the port open (DTR set, which `screen`,
/// `picocom`, `minicom` and pyserial do): before that, and after the terminal closes, it is
/// dropped, so a poem never blocks the board. Opening the terminal makes
/// [`take_connected`](Port::take_connected) true once, and the session greets again.
pub struct UsbPort<'a, B: UsbBus> {
    serial: SerialPort<'a, B>,
    dev: UsbDevice<'a, B>,
    rx: [u8; 64],
    rx_len: usize,
    rx_pos: usize,
    was_open: bool,
    just_opened: bool,
}

impl<'a, B: UsbBus> UsbPort<'a, B> {
    /// Wrap a device made by [`device`].
    pub fn new(serial: SerialPort<'a, B>, dev: UsbDevice<'a, B>) -> Self {
        UsbPort {
            serial,
            dev,
            rx: [0; 64],
            rx_len: 0,
            rx_pos: 0,
            was_open: false,
            just_opened: false,
        }
    }

    /// The device (state, for tests and status).
    pub fn device(&self) -> &UsbDevice<'a, B> {
        &self.dev
    }

    /// Service the bus once and track whether a terminal holds the port open.
    pub fn poll(&mut self) {
        self.dev.poll(&mut [&mut self.serial]);
        let open = self.is_open();
        if open && !self.was_open {
            self.just_opened = true;
        }
        self.was_open = open;
    }

    fn is_open(&self) -> bool {
        self.dev.state() == UsbDeviceState::Configured && self.serial.dtr()
    }
}

impl<B: UsbBus> Port for UsbPort<'_, B> {
    fn read_byte(&mut self) -> Option<u8> {
        if self.rx_pos == self.rx_len {
            self.poll();
            self.rx_pos = 0;
            self.rx_len = self.serial.read(&mut self.rx).unwrap_or(0);
        }
        if self.rx_pos < self.rx_len {
            self.rx_pos += 1;
            Some(self.rx[self.rx_pos - 1])
        } else {
            None
        }
    }

    fn write(&mut self, mut bytes: &[u8]) {
        let mut stalled = 0;
        while !bytes.is_empty() && self.is_open() && stalled < STALLED_POLLS {
            match self.serial.write(bytes) {
                Ok(n) if n > 0 => {
                    bytes = &bytes[n..];
                    stalled = 0;
                }
                _ => stalled += 1,
            }
            self.poll();
        }
        // Push out what is buffered now rather than at the next write: the poem is read as it
        // is written.
        let _ = self.serial.flush();
        self.poll();
    }

    fn idle(&mut self) {
        self.poll();
    }

    fn take_connected(&mut self) -> bool {
        core::mem::replace(&mut self.just_opened, false)
    }
}
