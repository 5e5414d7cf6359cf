//! The boards' USB console on a simulated bus: their own device ([`tinypoet_console::usb::device`],
//! usb-device + usbd-serial) answers control transfers on endpoint 0 and moves the console's
//! bytes over the CDC bulk endpoints.
//! * The descriptors the boards enumerate with, read the way a host reads them; the test checks
//!   the bytes and prints them in the layout of `lsusb -v` (`cargo test -p tinypoet-console
//!   --test usb -- --nocapture`).
//! * A whole session over [`UsbPort`]: nothing is sent before a terminal opens the port (DTR),
//!   the greeting comes when it does, a typed title gets its poem.

use std::fmt::Write;
use std::sync::Mutex;

use tinypoet_console::session::{run, End, Info, Meter, Unit};
use tinypoet_console::usb::{device, Identity, UsbPort, PICO, PICO2, TEENSY41};
use tinypoet_console::Port;
use usb_device::bus::{PollResult, UsbBus, UsbBusAllocator};
use usb_device::endpoint::{EndpointAddress, EndpointType};
use usb_device::{UsbDirection, UsbError};

/// What the host side of the simulated bus has queued and seen.
#[derive(Default)]
struct Wire {
    reset: bool,
    setup: Option<[u8; 8]>,
    /// A zero-length OUT packet on EP0 (the status stage of an IN transfer).
    status_out: bool,
    /// Bytes the device wrote on EP0 IN, not yet taken by the host.
    in_packet: Option<Vec<u8>>,
    /// Everything the host took on EP0 IN during the current transfer.
    received: Vec<u8>,
    next_in: u8,
    next_out: u8,
    /// Bytes the host has typed, waiting for the device's bulk OUT endpoint.
    bulk_out: std::collections::VecDeque<u8>,
    /// Everything the device sent on its bulk IN endpoint (the terminal's screen).
    bulk_in: Vec<u8>,
    /// A bulk IN packet the host has not acknowledged yet.
    bulk_in_busy: bool,
}

/// The CDC data endpoints as usbd-serial allocates them (checked by the descriptor test).
const BULK_IN: usize = 2;
const BULK_OUT: usize = 1;

/// The device side; the test keeps a second reference to the same wire (leaked: one per test).
struct FakeBus {
    wire: &'static Mutex<Wire>,
}

impl UsbBus for FakeBus {
    fn alloc_ep(
        &mut self,
        dir: UsbDirection,
        addr: Option<EndpointAddress>,
        _ty: EndpointType,
        _max_packet_size: u16,
        _interval: u8,
    ) -> usb_device::Result<EndpointAddress> {
        if let Some(a) = addr {
            return Ok(a);
        }
        let mut w = self.wire.lock().unwrap();
        let w = &mut *w;
        let n = match dir {
            UsbDirection::In => &mut w.next_in,
            UsbDirection::Out => &mut w.next_out,
        };
        *n += 1;
        Ok(EndpointAddress::from_parts(*n as usize, dir))
    }
    fn enable(&mut self) {}
    fn reset(&self) {}
    fn set_device_address(&self, _addr: u8) {}
    fn write(&self, ep: EndpointAddress, buf: &[u8]) -> usb_device::Result<usize> {
        let mut w = self.wire.lock().unwrap();
        if ep.index() == BULK_IN {
            if w.bulk_in_busy {
                return Err(UsbError::WouldBlock);
            }
            w.bulk_in.extend_from_slice(buf);
            w.bulk_in_busy = true;
            return Ok(buf.len());
        }
        if ep.index() != 0 {
            return Ok(buf.len()); // the interrupt endpoint: notifications nobody reads
        }
        if w.in_packet.is_some() {
            return Err(UsbError::WouldBlock);
        }
        w.in_packet = Some(buf.to_vec());
        Ok(buf.len())
    }
    fn read(&self, ep: EndpointAddress, buf: &mut [u8]) -> usb_device::Result<usize> {
        let mut w = self.wire.lock().unwrap();
        if ep.index() == BULK_OUT {
            let n = buf.len().min(64).min(w.bulk_out.len());
            if n == 0 {
                return Err(UsbError::WouldBlock);
            }
            for b in &mut buf[..n] {
                *b = w.bulk_out.pop_front().unwrap();
            }
            return Ok(n);
        }
        if ep.index() != 0 {
            return Err(UsbError::WouldBlock);
        }
        if let Some(s) = w.setup.take() {
            buf[..8].copy_from_slice(&s);
            return Ok(8);
        }
        if std::mem::take(&mut w.status_out) {
            return Ok(0);
        }
        Err(UsbError::WouldBlock)
    }
    fn set_stalled(&self, _ep: EndpointAddress, _stalled: bool) {}
    fn is_stalled(&self, _ep: EndpointAddress) -> bool {
        false
    }
    fn suspend(&self) {}
    fn resume(&self) {}
    fn poll(&self) -> PollResult {
        let mut w = self.wire.lock().unwrap();
        if std::mem::take(&mut w.reset) {
            return PollResult::Reset;
        }
        if w.setup.is_some() {
            return PollResult::Data {
                ep_out: 0,
                ep_in_complete: 0,
                ep_setup: 1,
            };
        }
        if let Some(p) = w.in_packet.take() {
            // The host takes the packet: the IN transfer of EP0 completes.
            w.received.extend_from_slice(&p);
            return PollResult::Data {
                ep_out: 0,
                ep_in_complete: 1,
                ep_setup: 0,
            };
        }
        if w.status_out {
            return PollResult::Data {
                ep_out: 1,
                ep_in_complete: 0,
                ep_setup: 0,
            };
        }
        let in_done = std::mem::take(&mut w.bulk_in_busy);
        let out_ready = !w.bulk_out.is_empty();
        if in_done || out_ready {
            return PollResult::Data {
                ep_out: (out_ready as u16) << BULK_OUT,
                ep_in_complete: (in_done as u16) << BULK_IN,
                ep_setup: 0,
            };
        }
        PollResult::None
    }
}

/// The host's end of the wire.
struct Bus {
    wire: &'static Mutex<Wire>,
}

/// GET_DESCRIPTOR(type, index) with wLength 255, as the Linux host asks; the bytes returned.
fn get_descriptor(bus: &Bus, mut poll: impl FnMut(), ty: u8, index: u8, lang: u16) -> Vec<u8> {
    {
        let mut w = bus.wire.lock().unwrap();
        w.received.clear();
        let [l0, l1] = lang.to_le_bytes();
        w.setup = Some([0x80, 0x06, index, ty, l0, l1, 0xff, 0x00]);
    }
    // Data stage: until the device stops sending (a short packet ends the transfer).
    for _ in 0..64 {
        poll();
    }
    bus.wire.lock().unwrap().status_out = true;
    for _ in 0..4 {
        poll();
    }
    let w = bus.wire.lock().unwrap();
    assert!(
        !w.received.is_empty(),
        "no answer to descriptor {ty:#x}/{index}"
    );
    w.received.clone()
}

fn utf16_string(d: &[u8]) -> String {
    assert_eq!(d[1], 3, "string descriptor");
    let units: Vec<u16> = d[2..d[0] as usize]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).unwrap()
}

/// Enumerate the board's device; return the `lsusb -v`-style text and check the descriptors.
fn enumerate(id: &Identity) -> String {
    let wire: &'static Mutex<Wire> = Box::leak(Box::new(Mutex::new(Wire {
        reset: true,
        ..Wire::default()
    })));
    let alloc = UsbBusAllocator::new(FakeBus { wire });
    let (mut serial, mut dev) = device(&alloc, id).unwrap();
    let bus = &Bus { wire };
    let mut poll = || {
        dev.poll(&mut [&mut serial]);
    };
    poll(); // bus reset
    let d = get_descriptor(bus, &mut poll, 1, 0, 0);
    let lang = get_descriptor(bus, &mut poll, 3, 0, 0);
    let en = u16::from_le_bytes([lang[2], lang[3]]);
    let c = get_descriptor(bus, &mut poll, 2, 0, 0);
    let s = |i: u8, p: &mut dyn FnMut()| utf16_string(&get_descriptor(bus, p, 3, i, en));
    let (manufacturer, product, serial_no) = (
        s(d[14], &mut poll),
        s(d[15], &mut poll),
        s(d[16], &mut poll),
    );

    // Device descriptor.
    let u16at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    assert_eq!((d[0], d[1]), (18, 1));
    assert_eq!(
        u16at(&d, 2),
        0x0210,
        "bcdUSB 2.10 (usb-device 0.3's default; it answers BOS)"
    );
    assert_eq!(d[4], 0x02, "bDeviceClass CDC");
    assert_eq!(d[7], 64, "bMaxPacketSize0");
    assert_eq!((u16at(&d, 8), u16at(&d, 10)), (id.vid, id.pid));
    assert_eq!(d[17], 1, "one configuration");
    assert_eq!(
        (manufacturer.as_str(), product.as_str(), serial_no.as_str()),
        (id.manufacturer, id.product, id.serial)
    );
    assert_eq!(en, 0x0409, "English (United States)");

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Bus 001 Device 002: ID {:04x}:{:04x} {manufacturer} {product}",
        id.vid, id.pid
    );
    let _ = writeln!(out, "Device Descriptor: {}", hex(&d));
    for (name, v) in [
        ("bcdUSB", format!("{:x}.{:02x}", d[3], d[2])),
        ("bDeviceClass", format!("{} Communications", d[4])),
        ("bDeviceSubClass", d[5].to_string()),
        ("bDeviceProtocol", d[6].to_string()),
        ("bMaxPacketSize0", d[7].to_string()),
        ("idVendor", format!("0x{:04x}", id.vid)),
        ("idProduct", format!("0x{:04x}", id.pid)),
        ("bcdDevice", format!("{:x}.{:02x}", d[13], d[12])),
        ("iManufacturer", format!("{} {manufacturer}", d[14])),
        ("iProduct", format!("{} {product}", d[15])),
        ("iSerial", format!("{} {serial_no}", d[16])),
        ("bNumConfigurations", d[17].to_string()),
    ] {
        let _ = writeln!(out, "  {name:<20}{v}");
    }

    // Configuration descriptor and everything under it.
    let total = u16at(&c, 2) as usize;
    assert_eq!(c.len(), total, "the whole configuration in one transfer");
    let _ = writeln!(out, "  Configuration Descriptor: {}", hex(&c[..9]));
    let _ = writeln!(
        out,
        "    wTotalLength {total}, bNumInterfaces {}, bmAttributes {:#04x}, MaxPower {} mA",
        c[4],
        c[7],
        2 * c[8] as u32
    );
    assert_eq!(c[4], 2, "CDC-ACM: communications + data interface");
    assert_eq!(c[8], 50, "100 mA");
    let mut i = c[0] as usize;
    let mut interfaces = Vec::new();
    let mut endpoints = Vec::new();
    while i < total {
        let (len, ty) = (c[i] as usize, c[i + 1]);
        let b = &c[i..i + len];
        match ty {
            4 => {
                interfaces.push((b[5], b[6], b[7]));
                let _ = writeln!(
                    out,
                    "    Interface Descriptor: bInterfaceNumber {} bNumEndpoints {} class {} subclass {} protocol {}  [{}]",
                    b[2], b[4], b[5], b[6], b[7], hex(b)
                );
            }
            5 => {
                let kind = ["Control", "Isochronous", "Bulk", "Interrupt"][(b[3] & 3) as usize];
                endpoints.push((b[2], b[3] & 3, u16at(b, 4)));
                let _ = writeln!(
                    out,
                    "      Endpoint Descriptor: bEndpointAddress {:#04x} EP {} {}  {kind}  wMaxPacketSize {}  bInterval {}",
                    b[2],
                    b[2] & 0x7f,
                    if b[2] & 0x80 != 0 { "IN" } else { "OUT" },
                    u16at(b, 4),
                    b[6]
                );
            }
            0x0b => {
                let _ = writeln!(out, "    Interface Association: [{}]", hex(b));
            }
            0x24 => {
                let what = match b[2] {
                    0 => "CDC Header",
                    1 => "CDC Call Management",
                    2 => "CDC ACM",
                    6 => "CDC Union",
                    _ => "CDC",
                };
                let _ = writeln!(out, "      {what}: [{}]", hex(b));
            }
            _ => {
                let _ = writeln!(out, "    descriptor type {ty:#04x}: [{}]", hex(b));
            }
        }
        i += len;
    }
    // usbd-serial's CDC-ACM: communications class 2 / ACM subclass 2, data class 10.
    assert_eq!(interfaces, [(0x02, 0x02, 0x00), (0x0a, 0x00, 0x00)]);
    let mut kinds: Vec<(u8, u16)> = endpoints.iter().map(|&(_, t, n)| (t, n)).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [(2, 64), (2, 64), (3, 8)],
        "bulk IN/OUT 64, interrupt 8"
    );
    out
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn pico2_descriptors() {
    let text = enumerate(&PICO2);
    println!("{text}");
    assert!(text.contains("ID 16c0:27dd tinypoet tinypoet console (Pico 2)"));
}

#[test]
fn pico_descriptors() {
    let text = enumerate(&PICO);
    println!("{text}");
    assert!(text.contains("ID 16c0:27dd tinypoet tinypoet console (Pico)"));
    assert!(text.contains(" tinypoet-pico\n"), "{text}");
}

#[test]
fn teensy41_descriptors() {
    let text = enumerate(&TEENSY41);
    println!("{text}");
    assert!(text.contains("ID 16c0:0483 tinypoet tinypoet console (Teensy 4.1)"));
}

/// A control request without a data stage (SET_ADDRESS, SET_CONFIGURATION, CDC
/// SET_CONTROL_LINE_STATE): the device answers with a zero-length status packet.
fn control_out(bus: &Bus, mut poll: impl FnMut(), setup: [u8; 8]) {
    {
        let mut w = bus.wire.lock().unwrap();
        w.received.clear();
        w.setup = Some(setup);
    }
    for _ in 0..8 {
        poll();
    }
}

#[test]
fn a_session_over_usb_starts_when_the_terminal_opens() {
    let blob = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tinypoet-tang.tpb"
    ))
    .expect("the committed default model");
    let model = tinypoet_core::Model::load(&blob).unwrap();
    let cfg = model.config();
    let mut state = vec![0f32; tinypoet_core::state_words(cfg, tinypoet_core::KvPrecision::F16)];
    let mut dec =
        tinypoet_core::Decoder::new(&model, &mut state, tinypoet_core::KvPrecision::F16).unwrap();

    let wire: &'static Mutex<Wire> = Box::leak(Box::new(Mutex::new(Wire {
        reset: true,
        ..Wire::default()
    })));
    let alloc = UsbBusAllocator::new(FakeBus { wire });
    let (serial, dev) = device(&alloc, &PICO2).unwrap();
    let mut port = UsbPort::new(serial, dev);
    let bus = &Bus { wire };
    port.poll(); // bus reset

    // Enumerated but no terminal: output is dropped, nothing blocks.
    control_out(bus, || port.poll(), [0x00, 0x05, 7, 0, 0, 0, 0, 0]); // SET_ADDRESS 7
    control_out(bus, || port.poll(), [0x00, 0x09, 1, 0, 0, 0, 0, 0]); // SET_CONFIGURATION 1
    port.write(b"nobody listens");
    assert!(!port.take_connected());
    assert!(wire.lock().unwrap().bulk_in.is_empty());

    // The terminal opens the port (DTR + RTS on interface 0) and types a title.
    control_out(bus, || port.poll(), [0x21, 0x22, 0x03, 0, 0, 0, 0, 0]);
    wire.lock()
        .unwrap()
        .bulk_out
        .extend("春夜喜雨 seed=7 max=12\r\x04".as_bytes());
    const METER: Meter = Meter {
        now: || 0,
        unit: Unit::Time {
            ticks_per_second: 150_000_000,
        },
    };
    let info = Info {
        board: "pico2",
        blob: "tinypoet-tang.tpb",
    };
    assert_eq!(run(&mut port, &mut dec, &METER, &info), End::EndOfInput);
    let screen = String::from_utf8(wire.lock().unwrap().bulk_in.clone()).unwrap();
    println!("{screen}");
    assert_eq!(
        screen.matches("tinypoet console · board pico2").count(),
        1,
        "one greeting: {screen:?}"
    );
    assert!(
        screen.contains("> 春夜喜雨 seed=7 max=12\r\n"),
        "{screen:?}"
    );
    assert!(
        screen.contains("ms per character]\r\n> \r\nbye\r\n"),
        "{screen:?}"
    );

    // The same poem as over any other port.
    let mut text = String::new();
    let settings = tinypoet_core::GenerateSettings {
        seed: 7,
        max_new_chars: 12,
        ..Default::default()
    };
    let prompt = format!(
        "{}春夜喜雨{}",
        tinypoet_core::prompt::INSTRUCTION_HEAD,
        tinypoet_core::prompt::INSTRUCTION_TAIL
    );
    dec.generate(&prompt, &settings, |c| {
        text.push(c);
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let poem = format!("max=12\r\n{}\r\n[", text.replace('\n', "\r\n"));
    assert!(screen.contains(&poem), "{poem:?} in {screen:?}");
}
