"""A debug probe's view of RTT, for QEMU: the host side of the firmware's RTT console
(src/rtt.rs, rtt-target's `_SEGGER_RTT` control block) over QEMU's gdbstub, the way probe-rs
does it over SWD: halt, read the up channel's new bytes and advance its read offset, copy typed
bytes into the down channel and advance its write offset, resume.

    session = rtt_session(qemu_cmd, elf_path, typed_bytes)   # -> (exit status, bytes received)

Control block (32-bit target, rtt-target 0.6 / SEGGER layout): 16-byte id "SEGGER RTT",
u32 max up channels, u32 max down channels, then per channel (up ones first) six u32: name,
buffer, size, write offset, read offset, flags. The target writes an up channel's write offset
and a down channel's read offset; the host the other two.
"""
import socket
import struct
import subprocess
import time

RTT_ID = b"SEGGER RTT\0"


class Gdb:
    """Just enough of the GDB remote serial protocol (acknowledged mode)."""

    def __init__(self, port, timeout=60):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        self.buf = b""

    def _byte(self):
        while not self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("gdbstub closed the connection")
            self.buf += chunk
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def send(self, payload):
        data = payload.encode() if isinstance(payload, str) else payload
        pkt = b"$" + data + b"#" + b"%02x" % (sum(data) % 256)
        while True:
            self.s.sendall(pkt)
            b = self._byte()
            while b not in (b"+", b"-"):
                b = self._byte()
            if b == b"+":
                return

    def recv(self):
        while self._byte() != b"$":
            pass
        data = b""
        while True:
            b = self._byte()
            if b == b"#":
                break
            data += b
        self._byte(), self._byte()  # checksum (TCP is reliable)
        self.s.sendall(b"+")
        return data.decode()

    def cmd(self, payload):
        self.send(payload)
        return self.recv()

    def read(self, addr, n):
        r = self.cmd(f"m{addr:x},{n:x}")
        if r.startswith("E"):
            raise RuntimeError(f"gdbstub: cannot read {n} bytes at {addr:#x}: {r}")
        return bytes.fromhex(r)

    def write(self, addr, data):
        r = self.cmd(f"M{addr:x},{len(data):x}:{data.hex()}")
        if r != "OK":
            raise RuntimeError(f"gdbstub: cannot write {len(data)} bytes at {addr:#x}: {r}")

    def u32(self, addr):
        return struct.unpack("<I", self.read(addr, 4))[0]

    def put_u32(self, addr, v):
        self.write(addr, struct.pack("<I", v))

    def halt(self):
        self.s.sendall(b"\x03")
        return self.recv()

    def resume(self):
        self.send("c")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rtt_session(qemu, cb_addr, typed, port=None, poll=0.005, timeout=1500):
    """Run `qemu` (a command list ending in the kernel) with its gdbstub on `port` (default: a
    free one); act as the probe on the control block at `cb_addr`; type `typed` into down
    channel 0 as space allows; return (QEMU's exit status, everything read from up channel 0)."""
    port = port or free_port()
    proc = subprocess.Popen(qemu[:1] + ["-gdb", f"tcp:127.0.0.1:{port}"] + qemu[1:],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    received = bytearray()
    pending = bytes(typed)
    deadline = time.time() + timeout
    try:
        gdb = Gdb(port)
        gdb.cmd("?")  # QEMU stops the machine when a debugger connects
        up = down = None
        while time.time() < deadline:
            if up is None and gdb.read(cb_addr, len(RTT_ID)) == RTT_ID:
                n_up, n_down = struct.unpack("<II", gdb.read(cb_addr + 16, 8))
                up = cb_addr + 24
                down = cb_addr + 24 + 24 * n_up
                assert n_up >= 1 and n_down >= 1, (n_up, n_down)
            if up is not None:
                _, buf, size, wr, rd, _ = struct.unpack("<6I", gdb.read(up, 24))
                if wr != rd:
                    if wr > rd:
                        received += gdb.read(buf + rd, wr - rd)
                    else:
                        received += gdb.read(buf + rd, size - rd)
                        if wr:
                            received += gdb.read(buf, wr)
                    gdb.put_u32(up + 16, wr)
                _, buf, size, wr, rd, _ = struct.unpack("<6I", gdb.read(down, 24))
                free = (rd - wr - 1) % size
                if pending and free:
                    chunk = pending[:min(free, size - wr)]
                    gdb.write(buf + wr, chunk)
                    gdb.put_u32(down + 12, (wr + len(chunk)) % size)
                    pending = pending[len(chunk):]
            gdb.resume()
            time.sleep(poll)
            try:
                reply = gdb.halt()
            except (EOFError, OSError):
                break
            if reply.startswith(("W", "X")):
                break
    except (EOFError, ConnectionResetError, BrokenPipeError):
        pass
    finally:
        try:
            status = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
    return status, bytes(received)
