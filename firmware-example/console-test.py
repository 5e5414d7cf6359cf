#!/usr/bin/env python3
"""The QEMU console test: type lines into the firmware's UART through a pipe, read the poems
back, and check each one against `tinypoet generate` on the host (same blob, title, seed and
settings); bad lines must get one `error:` line and leave the console working.

    console-test.py [--rtt] [--kv int8] TINYPOET_EXE BLOB ELF TRANSCRIPT -- QEMU COMMAND...

The QEMU command ends with `-kernel`; the ELF is appended. --rtt: the ELF is the RTT build
(`--features rtt`); the lines go in and the answers come out through its RTT channels, which
rttprobe.py reads and writes over QEMU's gdbstub as a debug probe would (a shorter session).
--kv int8: the firmware's KV cache is int8 (`kv-int8`), so the host generates with
`--kv int8`. The transcript (what the terminal showed, CR LF as LF) is written to TRANSCRIPT.
Prints one `ok`/`FAIL` line per input line and exits 0 only if all pass.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# (line typed, expected): "poem" = compare with the host; otherwise an error substring.
LINES = [
    ("春夜喜雨 seed=7", "poem"),
    ("靜夜思 seed=11 temp=0.8", "poem"),
    # Simplified input: 静 becomes 靜 on the board as in `tinypoet generate --title 静夜思`.
    ("静夜思 seed=11 temp=0.8", "poem"),
    (b"\xe6\x98\xa5\xff \xe5\xa4\x9c", "error: invalid UTF-8 at byte 3"),
    ("登高 temp=0.6 top_k=20 seed=3 max=60", "poem"),
    ("黄鶴樓 colour=red", "error: unknown setting 'colour'"),
    ("春夜喜雨 raw=1", "poem"),
    ("江南 top_p=0.9 seed=5", "poem"),
    ("春夜喜雨 form=五絕 seed=3", "poem"),
    ("江 raw=1 form=七絕 acrostic=春夜喜雨 rhyme=1 seed=5", "poem"),
    ("月 form=五律 acrostic=春夏秋冬雪霜雲雨風", "error: "),
    ("春夜喜雨 form=五絕 acrostic=东南西北 seed=4", "poem"),
    ("静夜氧", "error: '氧' (U+6C27) is not in the model's vocabulary"),
]

# The RTT session (every byte goes through the gdbstub, so it is kept short).
RTT_LINES = [
    ("静夜思 seed=11 temp=0.8", "poem"),
    ("黄鶴樓 colour=red", "error: unknown setting 'colour'"),
    ("春夜喜雨 raw=1 max=30", "poem"),
]

# console setting -> tinypoet generate flag
FLAGS = {"seed": "--seed", "temp": "--temperature", "temperature": "--temperature",
         "top_k": "--top-k", "top_p": "--top-p", "max": "--max-len", "form": "--form",
         "acrostic": "--acrostic"}


def host_poem(exe, blob, line, kv):
    """What the firmware must print for `line`, from tinypoet generate's stdout: with --title
    the CLI shows `TITLE\n` before the poem and the console does not; with raw=1 both show the
    prompt (the title, and a newline with a form). Both convert simplified input with the core's
    table: the CLI's stderr report `[simplified -> traditional (...): 静→靜; ...]` becomes the
    console's line before the poem, `[simplified -> traditional (...): 静→靜]`."""
    words = line.split()
    title = [w for w in words if "=" not in w][0]
    settings = dict(w.split("=", 1) for w in words if "=" in w)
    raw = settings.pop("raw", "0") == "1"
    args = [exe, "generate", "--model", blob,
            "--seed", settings.pop("seed", "2024")]
    if kv is not None:
        args += ["--kv", kv]
    if settings.pop("rhyme", "0") == "1":
        args.append("--rhyme")
    for k, v in settings.items():
        args += [FLAGS[k], v]
    args += [title] if raw else ["--title", title]
    run = subprocess.run(args, check=True, capture_output=True)
    out, err = run.stdout.decode(), run.stderr.decode()
    report = ""
    for e in err.splitlines():
        if e.startswith("[simplified -> traditional"):
            report += e.split(";")[0] + "]\n"
    if raw:
        return report + out
    shown, _, poem = out.partition("\n")
    assert "=" not in shown and len(shown) == len(title), out
    return report + poem


def main():
    args = sys.argv[1:]
    rtt = False
    kv = None
    while args[0].startswith("--"):
        if args[0] == "--rtt":
            rtt = True
        elif args[0] == "--kv":
            kv = args.pop(1)
        else:
            raise SystemExit(f"unknown option {args[0]}")
        args = args[1:]
    exe, blob, elf, transcript_path = args[:4]
    assert args[4] == "--"
    qemu = args[5:] + [elf]
    lines = RTT_LINES if rtt else LINES
    typed = b""
    for line, _ in lines:
        typed += (line if isinstance(line, bytes) else line.encode()) + b"\r\n"
    typed += b"\x04"  # Ctrl-D: the firmware says bye and QEMU exits 0
    if rtt:
        import elf as elfmod
        import rttprobe
        cb = elfmod.Elf(elf).symbol("_SEGGER_RTT")
        assert cb is not None, "no _SEGGER_RTT symbol: not the RTT build"
        print(f"RTT control block _SEGGER_RTT at {cb:#010x}")
        returncode, received = rttprobe.rtt_session(qemu, cb, typed)
    else:
        run = subprocess.run(qemu, input=typed, capture_output=True, timeout=1500)
        returncode, received = run.returncode, run.stdout
    out = received.decode("utf-8", errors="replace").replace("\r\n", "\n")
    with open(transcript_path, "w", encoding="utf-8") as f:
        f.write(out)
    passed = failed = 0

    def report(ok, what):
        nonlocal passed, failed
        print(("ok   " if ok else "FAIL ") + what)
        if ok:
            passed += 1
        else:
            failed += 1

    report(returncode == 0 and "\nbye\n" in out,
           f"QEMU exit status {returncode}, session ended with bye")
    # The answer of each line: from the echo of the line to the next prompt.
    parts = out.split("\n> ")
    answers = parts[1:-1]
    report(len(answers) == len(lines), f"{len(answers)} answers for {len(lines)} lines")
    generated = 0
    for (line, expected), part in zip(lines, answers):
        shown = line if isinstance(line, str) else line.decode("utf-8", errors="replace")
        _, _, answer = part.partition("\n")
        if expected == "poem":
            i = answer.rfind("\n[")
            poem, status = answer[:i + 1], answer[i + 1:].strip()
            want = host_poem(exe, blob, line, kv)
            ok = poem == want and status.startswith("[") and len(poem.strip()) > 0
            if status.startswith("[") and " characters" in status:
                generated += int(status[1:status.index(" characters")])
            report(ok, f"{shown!r}: firmware == host, {status}")
            if not ok:
                print(f"  host:     {want!r}\n  firmware: {poem!r}")
        else:
            ok = answer.startswith(expected) and "\n" not in answer
            report(ok, f"{shown!r}: {answer.strip()!r}")
    # The poems together must be long enough to exercise the decoder (the stop ends them early).
    need = 20 if rtt else 100
    report(generated >= need, f"{generated} generated characters in all (need >= {need})")
    print(f"console: {passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
