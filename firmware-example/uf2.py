#!/usr/bin/env python3
"""ELF -> UF2 for the RP2040's USB mass-storage boot loader (hold BOOTSEL, copy the file).

  uf2.py ELF OUT.uf2 [--family rp2040|rp2350-arm-s|ID] [--base 0x10000000] [--size 2M]

UF2 (Microsoft's USB flashing format): 512-byte blocks, each carrying 256 bytes of payload
for one flash address: magic 0x0A324655 0x9E5D5157, flags (0x2000: family ID present),
target address, payload size, block number, block count, family ID, 476 data bytes (payload
then zero padding), final magic 0x0AB16F30. Every 256-byte page of flash that a loadable
segment touches becomes one block (gaps inside a page read as 0xFF, erased flash); pages are
written in address order. Family IDs: RP2040 0xE48BFF56, RP2350 Arm Secure 0xE48BFF59.
Prints the block count and the flash span. Needs only python3 (reads the ELF with elf.py).
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from elf import Elf  # noqa: E402

FAMILIES = {"rp2040": 0xE48BFF56, "rp2350-arm-s": 0xE48BFF59}
MAGIC0, MAGIC1, MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
FLAG_FAMILY = 0x00002000
PAGE = 256


def pages(elf, base, size):
    """Sorted page addresses inside [base, base+size) touched by a PT_LOAD segment's file bytes."""
    out = set()
    for p in elf.segments:
        if p["type"] != 1 or p["filesz"] == 0:
            continue
        lo, hi = p["paddr"], p["paddr"] + p["filesz"]
        if hi <= base or lo >= base + size:
            continue
        if lo < base or hi > base + size:
            raise SystemExit(f"segment {lo:#x}..{hi:#x} crosses the flash range {base:#x}+{size:#x}")
        out.update(range(lo - lo % PAGE, hi, PAGE))
    return sorted(out)


def to_uf2(elf, base, size, family):
    addrs = pages(elf, base, size)
    if not addrs:
        raise SystemExit("no loadable bytes in the flash range")
    blocks = []
    for i, a in enumerate(addrs):
        data = elf.window(a, PAGE)
        head = struct.pack("<8I", MAGIC0, MAGIC1, FLAG_FAMILY, a, PAGE, i, len(addrs), family)
        blocks.append(head + data + b"\0" * (476 - PAGE) + struct.pack("<I", MAGIC_END))
    return b"".join(blocks), addrs


def main():
    args = sys.argv[1:]
    opts = {"--family": "rp2040", "--base": "0x10000000", "--size": "2M"}
    pos = []
    while args:
        a = args.pop(0)
        if a in opts and args:
            opts[a] = args.pop(0)
        else:
            pos.append(a)
    if len(pos) != 2:
        print(__doc__)
        sys.exit(2)
    fam = opts["--family"]
    family = FAMILIES[fam] if fam in FAMILIES else int(fam, 0)
    s = opts["--size"]
    size = int(s[:-1]) << 20 if s.endswith("M") else int(s, 0)
    base = int(opts["--base"], 0)
    data, addrs = to_uf2(Elf(pos[0]), base, size, family)
    with open(pos[1] + ".tmp", "wb") as f:
        f.write(data)
    os.replace(pos[1] + ".tmp", pos[1])
    span = addrs[-1] + PAGE - addrs[0]
    print(
        f"{pos[1]}: {len(addrs)} blocks ({len(data)} bytes), family {family:#010x}, "
        f"flash {addrs[0]:#010x}..{addrs[-1] + PAGE:#010x} ({span} bytes, {span / 1e6:.3f} MB)"
    )


if __name__ == "__main__":
    main()
