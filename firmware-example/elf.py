#!/usr/bin/env python3
"""Reads the firmware ELF without any binutils: memory report and boot-header checks.

  elf.py size ELF            flash (weights / code / data image) and static RAM, from section headers
  elf.py check-teensy41 ELF  FlexSPI configuration block + IVT + boot data at 0x60000000
  elf.py check-pico2 ELF     RP2350 IMAGE_DEF block within the first 4 KiB of flash
  elf.py check-mps2 ELF      vector table at 0x0 (initial SP in SRAM, Thumb reset vector)
  elf.py check-rtt ELF       the RTT build: control block _SEGGER_RTT in RAM (probe-rs finds it there)
  elf.py check-pico ELF      RP2040 boot2 (256 bytes, CRC-32 ok) at 0x10000000, vector table at +0x100
  elf.py uf2 ELF OUT         UF2 image for the RP2350 boot ROM's USB drive (family RP2350_ARM_S)
  elf.py ihex ELF OUT        Intel HEX image for teensy_loader_cli / the Teensy Loader
Both image writers read the file back and check that it holds exactly the ELF's load image.

Exit status 0 when the check passes; 1 with a message otherwise.
"""
import struct
import sys

SHF_ALLOC = 0x2
SHT_NOBITS = 8
SHT_SYMTAB = 2


class Elf:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        if d[:4] != b"\x7fELF" or d[4] != 1 or d[5] != 1:
            raise SystemExit(f"{path}: not a 32-bit little-endian ELF")
        (self.e_shoff,) = struct.unpack_from("<I", d, 0x20)
        self.e_shentsize, self.e_shnum, self.e_shstrndx = struct.unpack_from("<HHH", d, 0x2E)
        raw = []
        for i in range(self.e_shnum):
            off = self.e_shoff + i * self.e_shentsize
            raw.append(struct.unpack_from("<IIIIIIIIII", d, off))
        strtab = raw[self.e_shstrndx]
        self.sections = []
        for (name, typ, flags, addr, off, size, link, _i, _a, entsize) in raw:
            end = d.index(b"\0", strtab[4] + name)
            nm = d[strtab[4] + name:end].decode()
            self.sections.append(dict(name=nm, type=typ, flags=flags, addr=addr, off=off, size=size,
                                      link=link, entsize=entsize))
        # Program headers give load addresses (LMA) for .data's flash image.
        (self.e_phoff,) = struct.unpack_from("<I", d, 0x1C)
        self.e_phentsize, self.e_phnum = struct.unpack_from("<HH", d, 0x2A)
        self.segments = []
        for i in range(self.e_phnum):
            p = struct.unpack_from("<IIIIIIII", d, self.e_phoff + i * self.e_phentsize)
            self.segments.append(dict(type=p[0], off=p[1], vaddr=p[2], paddr=p[3], filesz=p[4], memsz=p[5]))

    def symbol(self, name):
        """Address of the symbol `name` (.symtab; the release builds keep it), or None."""
        want = name.encode()
        for s in self.sections:
            if s["type"] != SHT_SYMTAB:
                continue
            strtab = self.sections[s["link"]]
            for o in range(s["off"], s["off"] + s["size"], s["entsize"] or 16):
                st_name, st_value = struct.unpack_from("<II", self.data, o)
                start = strtab["off"] + st_name
                if self.data[start:start + len(want) + 1] == want + b"\0":
                    return st_value
        return None

    def section(self, name):
        for s in self.sections:
            if s["name"] == name:
                return s
        return None

    def read(self, addr, n):
        """Bytes at a load (physical) address, as a flasher would write them."""
        for p in self.segments:
            if p["type"] == 1 and p["paddr"] <= addr and addr + n <= p["paddr"] + p["filesz"]:
                o = p["off"] + addr - p["paddr"]
                return self.data[o:o + n]
        raise SystemExit(f"address {addr:#010x} (+{n}) is not in any loaded segment")

    def window(self, addr, n):
        """Flash image bytes in [addr, addr+n), gaps between segments read as 0xFF (erased)."""
        out = bytearray(b"\xff" * n)
        for p in self.segments:
            if p["type"] != 1 or p["filesz"] == 0:
                continue
            lo, hi = max(addr, p["paddr"]), min(addr + n, p["paddr"] + p["filesz"])
            if lo < hi:
                o = p["off"] + lo - p["paddr"]
                out[lo - addr:hi - addr] = self.data[o:o + hi - lo]
        return bytes(out)

    def u32(self, addr):
        return struct.unpack("<I", self.read(addr, 4))[0]


def alloc(elf):
    return [s for s in elf.sections if s["flags"] & SHF_ALLOC and s["size"] > 0]


def size_report(elf, path):
    weights = code = data_image = ram = 0
    for s in alloc(elf):
        if s["name"] == ".tinypoet_blob":
            weights += s["size"]
        elif s["type"] == SHT_NOBITS:
            ram += s["size"]
        elif s["name"] == ".data":
            data_image += s["size"]
            ram += s["size"]
        else:
            code += s["size"]  # vector table, boot headers, .text, .rodata
    flash = weights + code + data_image
    print(f"{path}")
    print(f"  flash total   {flash:>9} B ({flash / 1024:.1f} KiB)")
    print(f"    weights     {weights:>9} B (.tinypoet_blob)")
    print(f"    code+const  {code + data_image:>9} B (vector table, boot headers, .text, .rodata, .data image)")
    print(f"  static RAM    {ram:>9} B ({ram / 1024:.1f} KiB: .data + .bss + .uninit), plus the stack")
    for s in alloc(elf):
        print(f"    {s['name']:<16} {s['size']:>9} B at {s['addr']:#010x}")
    return ram


def check_rtt(elf):
    """The RTT build: the control block `_SEGGER_RTT` (what probe-rs looks up in the ELF) is a
    RAM static, zeroed at reset (rtt_init! writes its id at run time)."""
    cb = elf.symbol("_SEGGER_RTT")
    if cb is None:
        fail("no _SEGGER_RTT symbol: not an RTT build")
    ram = [s for s in alloc(elf) if s["type"] == SHT_NOBITS and s["addr"] <= cb < s["addr"] + s["size"]]
    if not ram:
        fail(f"_SEGGER_RTT at {cb:#010x} is not in a RAM (.bss/.uninit) section")
    print(f"ok: RTT control block _SEGGER_RTT at {cb:#010x} in {ram[0]['name']}")


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def check_mps2(elf):
    sp, reset = elf.u32(0x0), elf.u32(0x4)
    if not (0x20000000 <= sp <= 0x20400000):
        fail(f"initial SP {sp:#x} not in SRAM")
    if reset & 1 == 0:
        fail(f"reset vector {reset:#x} is not a Thumb address")
    print(f"ok: vector table at 0x0 (SP {sp:#010x}, Reset {reset:#010x})")


def check_teensy41(elf):
    base = 0x60000000
    if elf.read(base, 4) != b"FCFB":
        fail(f"no FlexSPI configuration block magic 'FCFB' at {base:#x}")
    version = elf.u32(base + 4)
    flash_a1 = elf.u32(base + 0x50)
    if flash_a1 != 8 * 1024 * 1024:
        fail(f"FCB flash size A1 = {flash_a1:#x}, expected 8 MiB for the Teensy 4.1")
    ivt = base + 0x1000
    header = elf.u32(ivt)
    if header & 0xFF != 0xD1 or (header >> 8) & 0xFFFF != 0x2000:
        fail(f"IVT header {header:#010x}: expected tag 0xD1, length 0x0020")
    entry, _r, dcd, boot_data, self_ptr = (elf.u32(ivt + 4 * i) for i in range(1, 6))
    if self_ptr != ivt:
        fail(f"IVT self pointer {self_ptr:#x} != {ivt:#x}")
    vt = elf.section(".vector_table")["addr"]
    reset = elf.u32(vt + 4)
    if entry != reset:
        fail(f"IVT entry {entry:#x} != vector table reset {reset:#x}")
    start, length, plugin = elf.u32(boot_data), elf.u32(boot_data + 4), elf.u32(boot_data + 8)
    blob = elf.section(".tinypoet_blob")
    if start != base or plugin != 0:
        fail(f"boot data start {start:#x} plugin {plugin}")
    if start + length < blob["addr"] + blob["size"]:
        fail(f"boot data length {length} does not cover the weights")
    print(
        f"ok: FCB 'FCFB' v{version:#010x} flash {flash_a1 >> 20} MiB; IVT {header:#010x} entry "
        f"{entry:#010x} (= Reset), DCD {dcd:#x}; boot data {start:#x}+{length} B; vector table {vt:#x}"
    )


def check_pico2(elf):
    base = 0x10000000
    window = elf.window(base, 4096)
    start = window.find(struct.pack("<I", 0xFFFFDED3))
    if start < 0 or start % 4:
        fail("no PICOBIN_BLOCK_MARKER_START in the first 4 KiB of flash")
    words = struct.unpack_from("<5I", window, start)
    if words[1] & 0xFF != 0x42 or (words[1] >> 8) & 0xFF != 1:
        fail(f"first item {words[1]:#010x} is not a 1-word IMAGE_DEF (0x42)")
    flags = words[1] >> 16
    if flags & 0x000F != 1 or flags & 0x7000 != 0x1000:
        fail(f"IMAGE_DEF flags {flags:#06x}: expected an executable for RP2350")
    if words[2] & 0xFF != 0xFF or words[4] != 0xAB123579:
        fail(f"block not closed by LAST item + PICOBIN_BLOCK_MARKER_END: {[hex(w) for w in words]}")
    sp, reset = elf.u32(base), elf.u32(base + 4)
    if not (0x20000000 <= sp <= 0x20082000) or reset & 1 == 0:
        fail(f"vector table at flash start looks wrong: SP {sp:#x} reset {reset:#x}")
    print(
        f"ok: IMAGE_DEF block at {base + start:#x} (flags {flags:#06x}: Arm Secure EXE, RP2350); "
        f"vector table at {base:#x} (SP {sp:#010x}, Reset {reset:#010x})"
    )


def crc32_mpeg2(data):
    """CRC-32/MPEG-2 (poly 0x04C11DB7, init 0xFFFFFFFF, not reflected, no final xor): the
    checksum the RP2040 boot ROM verifies over boot2's first 252 bytes."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def check_pico(elf):
    base = 0x10000000
    boot2 = elf.window(base, 256)
    stored = struct.unpack_from("<I", boot2, 252)[0]
    crc = crc32_mpeg2(boot2[:252])
    if crc != stored:
        fail(f"boot2 at {base:#x}: CRC-32 {crc:#010x} != stored {stored:#010x} (the ROM would not boot it)")
    sp, reset = elf.u32(base + 0x100), elf.u32(base + 0x104)
    if not (0x20000000 <= sp <= 0x20042000) or reset & 1 == 0 or not (base <= reset < base + (2 << 20)):
        fail(f"vector table at {base + 0x100:#x} looks wrong: SP {sp:#x} reset {reset:#x}")
    print(
        f"ok: boot2 at {base:#x} (256 bytes, CRC-32 {crc:#010x} ok); vector table at "
        f"{base + 0x100:#x} (SP {sp:#010x}, Reset {reset:#010x})"
    )
    # The RP2040's budget: 2 MiB of flash from 0x10000000; 264 KiB of SRAM from 0x20000000
    # (256 KiB striped + SRAM4/5), statics and the stack region together.
    # End of the load image (.data's initial values included: its segment's physical address).
    flash_end = max(p["paddr"] + p["filesz"] for p in elf.segments if p["type"] == 1 and p["filesz"] > 0)
    ram = [s for s in alloc(elf) if s["addr"] >= 0x20000000]
    statics = sum(s["size"] for s in ram)
    ram_end = max(s["addr"] + s["size"] for s in ram)
    stack_top, stack_bottom = elf.symbol("_stack_start"), elf.symbol("_stack_end")
    stack = stack_top - stack_bottom
    flash_used = flash_end - base
    ram_used = statics + stack
    if flash_used > 2 << 20:
        fail(f"flash: {flash_used} bytes, more than the Pico's 2 MiB")
    if ram_used > 264 << 10 or max(ram_end, stack_top) > 0x20042000:
        fail(f"RAM: {statics} bytes of statics + {stack} of stack, more than the RP2040's 264 KiB")
    print(
        f"ok: budget: flash {flash_used} B ({flash_used / 1024:.1f} of 2048 KiB); RAM {statics} B "
        f"statics + {stack} B stack = {ram_used / 1024:.1f} of 264 KiB"
    )
def load_image(elf):
    """(address, bytes) of every loaded segment with file data, by address: what a flasher
    writes (.data's initial values at their load address in flash)."""
    out = []
    for p in elf.segments:
        if p["type"] == 1 and p["filesz"] > 0:
            out.append((p["paddr"], elf.data[p["off"]:p["off"] + p["filesz"]]))
    out.sort()
    for (a, d), (b, _) in zip(out, out[1:]):
        if a + len(d) > b:
            raise SystemExit(f"segments overlap at {b:#x}")
    return out


def image_bytes(chunks):
    """{address: byte} of a load image, for comparing two encodings of it."""
    return {a + i: b for a, d in chunks for i, b in enumerate(d)}


# UF2 (https://github.com/microsoft/uf2, the format of the RP2350 boot ROM's USB mass-storage
# drive): 512-byte blocks, each carrying 256 bytes for one flash page.
UF2_MAGIC0, UF2_MAGIC1, UF2_MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
UF2_FLAG_FAMILY_ID = 0x00002000
# Family ID of an Arm Secure image for the RP2350 (pico-sdk / picotool `rp2350-arm-s`).
UF2_FAMILY_RP2350_ARM_S = 0xE48BFF59
UF2_PAYLOAD = 256


def uf2_encode(chunks, family):
    pages = {}
    for addr, data in chunks:
        for i, b in enumerate(data):
            a = addr + i
            page = pages.setdefault(a - a % UF2_PAYLOAD, bytearray(b"\xff" * UF2_PAYLOAD))
            page[a % UF2_PAYLOAD] = b
    out = bytearray()
    for n, base in enumerate(sorted(pages)):
        header = struct.pack("<8I", UF2_MAGIC0, UF2_MAGIC1, UF2_FLAG_FAMILY_ID, base,
                             UF2_PAYLOAD, n, len(pages), family)
        block = header + bytes(pages[base]) + b"\0" * (476 - UF2_PAYLOAD)
        out += block + struct.pack("<I", UF2_MAGIC_END)
    return bytes(out)


def uf2_decode(data):
    mem = {}
    n_blocks = len(data) // 512
    for i in range(n_blocks):
        blk = data[512 * i:512 * (i + 1)]
        m0, m1, flags, addr, size, no, total, fam = struct.unpack_from("<8I", blk)
        (end,) = struct.unpack_from("<I", blk, 508)
        if (m0, m1, end) != (UF2_MAGIC0, UF2_MAGIC1, UF2_MAGIC_END) or no != i or total != n_blocks:
            raise SystemExit(f"UF2 block {i}: bad magic or numbering")
        if flags != UF2_FLAG_FAMILY_ID or fam != UF2_FAMILY_RP2350_ARM_S or size != UF2_PAYLOAD:
            raise SystemExit(f"UF2 block {i}: flags {flags:#x} family {fam:#x} size {size}")
        for j in range(size):
            mem[addr + j] = blk[32 + j]
    return mem


def ihex_encode(chunks):
    """Intel HEX: 16-byte data records (type 00) under extended linear address records (04)."""
    lines, upper = [], None

    def record(addr16, typ, payload):
        body = bytes([len(payload), addr16 >> 8, addr16 & 0xFF, typ]) + payload
        return ":" + (body + bytes([-sum(body) & 0xFF])).hex().upper()

    for addr, data in chunks:
        for i in range(0, len(data), 16):
            a = addr + i
            piece = data[i:min(i + 16, len(data), i + 0x10000 - a % 0x10000)]
            if a >> 16 != upper:
                upper = a >> 16
                lines.append(record(0, 0x04, struct.pack(">H", upper)))
            lines.append(record(a & 0xFFFF, 0x00, piece))
            if len(piece) < min(16, len(data) - i):  # split at a 64 KiB boundary
                rest = data[i + len(piece):i + 16]
                upper = (a + len(piece)) >> 16
                lines.append(record(0, 0x04, struct.pack(">H", upper)))
                lines.append(record((a + len(piece)) & 0xFFFF, 0x00, rest))
    lines.append(":00000001FF")
    return "\n".join(lines) + "\n"


def ihex_decode(text):
    mem, upper = {}, 0
    for n, line in enumerate(text.splitlines(), 1):
        raw = bytes.fromhex(line[1:])
        if line[0] != ":" or sum(raw) & 0xFF or raw[0] != len(raw) - 5:
            raise SystemExit(f"HEX line {n}: bad record {line}")
        addr, typ, payload = (raw[1] << 8) | raw[2], raw[3], raw[4:-1]
        if typ == 0x00:
            for i, b in enumerate(payload):
                mem[(upper << 16) + addr + i] = b
        elif typ == 0x04:
            upper = struct.unpack(">H", payload)[0]
        elif typ == 0x02:  # extended segment address (llvm-objcopy writes these): base = seg * 16
            seg = struct.unpack(">H", payload)[0]
            if seg % 0x1000:
                raise SystemExit(f"HEX line {n}: segment {seg:#x} not on a 64 KiB boundary")
            upper = seg >> 12
        elif typ == 0x01:
            return mem
        elif typ in (0x03, 0x05):  # start address (llvm-objcopy writes one): not flash contents
            pass
        else:
            raise SystemExit(f"HEX line {n}: unexpected record type {typ}")
    raise SystemExit("HEX: no end-of-file record")


def write_image(elf, kind, out_path):
    chunks = load_image(elf)
    want = image_bytes(chunks)
    if kind == "uf2":
        data = uf2_encode(chunks, UF2_FAMILY_RP2350_ARM_S)
        with open(out_path, "wb") as f:
            f.write(data)
        got = uf2_decode(open(out_path, "rb").read())
        # Padding to whole pages reads as erased flash.
        extra = {a: b for a, b in got.items() if a not in want}
        got = {a: b for a, b in got.items() if a in want}
        if any(b != 0xFF for b in extra.values()):
            fail("UF2 page padding is not 0xFF")
        what = f"{len(data) // 512} blocks of {UF2_PAYLOAD} bytes, family {UF2_FAMILY_RP2350_ARM_S:#x} (RP2350 Arm Secure)"
    else:
        text = ihex_encode(chunks)
        with open(out_path, "w") as f:
            f.write(text)
        got = ihex_decode(open(out_path).read())
        what = f"{text.count(chr(10))} records"
    if got != want:
        fail(f"{out_path} does not read back as the ELF's load image")
    lo = min(want)
    hi = max(want) + 1
    print(f"ok: {out_path}: {len(want)} bytes at {lo:#010x}..{hi:#010x}, {what}; read back == ELF load image")


def main():
    if len(sys.argv) == 4 and sys.argv[1] in ("uf2", "ihex"):
        write_image(Elf(sys.argv[2]), sys.argv[1], sys.argv[3])
        return
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    cmd, path = sys.argv[1], sys.argv[2]
    elf = Elf(path)
    if cmd == "size":
        size_report(elf, path)
    elif cmd == "ram":
        print(sum(s["size"] for s in alloc(elf) if s["type"] == SHT_NOBITS or s["name"] == ".data"))
    elif cmd == "check-teensy41":
        check_teensy41(elf)
    elif cmd == "check-pico2":
        check_pico2(elf)
    elif cmd == "check-pico":
        check_pico(elf)
    elif cmd == "check-mps2":
        check_mps2(elf)
    elif cmd == "check-rtt":
        check_rtt(elf)
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
