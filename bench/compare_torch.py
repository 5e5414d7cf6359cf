#!/usr/bin/env python3
"""Training throughput, tinypoet vs the pinned PyTorch baseline (issue 5), measured alternately
in one run of this script.

    cargo build --release -p tinypoet-trainer
    python3 bench/compare_torch.py [--rounds 3] [--tinypoet target/release/tinypoet]

Baseline (pinned): PyTorch eager on CPU, torch.set_num_threads(2), glibc malloc tuned with
MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1000000000, the
TutorialLLM model (spec §3) with all heads' Q/K/V in one matmul and
`scaled_dot_product_attention(is_causal=True, scale=0.125)`; one step = fetch a 16x256 batch of
random windows + forward + backward + AdamW (lr 1e-3); median of 20 steps after 3 warm-up.
Ours: `tinypoet bench train --threads 2 --steps 20 --warmup 3 --json` (same step definition).

Each round runs the baseline and ours once, in alternating order, each in a fresh process; the
script prints every run, the median over rounds of each side's median ms/step, the ratio
ours/PyTorch (bar: <= 0.5) and both peak RSS values; also each round's own ratio and the ratio of
the two sides' fastest rounds (this shared VM's speed drifts between phases). Needs torch (no numpy); not run by CI.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000", "MALLOC_TOP_PAD_": "1000000000"}
FLOPS_PER_STEP = 21_497_905_152.0


def torch_child(steps, warmup, batch, seq):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(2)
    torch.manual_seed(2024)
    V, C, H, L, T, FF = 8548, 64, 4, 4, 256, 256

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.qkv = nn.Linear(C, 3 * C, bias=False)  # all heads' Q, K, V in one matmul
            self.proj = nn.Linear(C, C)
            self.ffn = nn.Sequential(nn.Linear(C, FF), nn.ReLU(), nn.Linear(FF, C))

        def forward(self, x):
            B, Tn, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
            q, k, v = (t.view(B, Tn, H, C // H).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=C ** -0.5)
            x = x + self.proj(a.transpose(1, 2).reshape(B, Tn, C))
            return x + self.ffn(self.ln2(x))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(V, C), nn.Embedding(T, C)
            self.blocks = nn.Sequential(*[Block() for _ in range(L)])
            self.lnf, self.head = nn.LayerNorm(C), nn.Linear(C, V)

        def forward(self, idx, tgt):
            B, Tn = idx.shape
            x = self.tok(idx) + self.pos(torch.arange(Tn))
            logits = self.head(self.lnf(self.blocks(x)))
            return F.cross_entropy(logits.view(B * Tn, V), tgt.view(B * Tn))

    data = torch.randint(0, V, (1_552_553,))
    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        ix = torch.randint(len(data) - seq, (batch,))
        x = torch.stack([data[j:j + seq] for j in ix])
        y = torch.stack([data[j + 1:j + seq + 1] for j in ix])
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            times.append(dt)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
                      "peak_rss_mib": rss, "loss": loss.item(), "torch": torch.__version__}))


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.2f} at start"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    here = os.path.dirname(os.path.abspath(__file__))
    default_bin = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(here, "..", "target")), "release", "tinypoet")
    ap.add_argument("--tinypoet", default=default_bin)
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_child:
        torch_child(a.steps, a.warmup, 16, 256)
        return
    if not os.path.exists(a.tinypoet):
        sys.exit(f"tinypoet binary not found at {a.tinypoet} (cargo build --release -p tinypoet-trainer, or --tinypoet)")
    print("machine:", machine())
    torch_env = dict(os.environ, **MALLOC_ENV)
    ours_cmd = [a.tinypoet, "bench", "train", "--batch", "16", "--seq", "256", "--threads", "2",
                "--steps", str(a.steps), "--warmup", str(a.warmup), "--json"]
    torch_cmd = [sys.executable, os.path.abspath(__file__), "--torch-child", "--steps", str(a.steps), "--warmup", str(a.warmup)]
    ours, base = [], []
    for r in range(a.rounds):
        order = [("pytorch", torch_cmd, torch_env, base), ("tinypoet", ours_cmd, dict(os.environ), ours)]
        if r % 2 == 1:
            order.reverse()
        for name, cmd, env, sink in order:
            res = run_json(cmd, env)
            sink.append(res)
            print(f"round {r + 1} {name:8s}: median {res['median_ms']:8.2f} ms/step (min {res['min_ms']:.2f}, max "
                  f"{res['max_ms']:.2f}), peak RSS {res['peak_rss_mib']:.0f} MiB", flush=True)
    m_ours = statistics.median(x["median_ms"] for x in ours)
    m_base = statistics.median(x["median_ms"] for x in base)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(f"PyTorch {base[0].get('torch', '?')}: {m_base:.2f} ms/step ({FLOPS_PER_STEP / m_base / 1e6:.1f} GFLOP/s), "
          f"peak RSS {max(x['peak_rss_mib'] for x in base):.0f} MiB")
    print(f"tinypoet: {m_ours:.2f} ms/step ({FLOPS_PER_STEP / m_ours / 1e6:.1f} GFLOP/s), "
          f"peak RSS {max(x['peak_rss_mib'] for x in ours):.0f} MiB")
    # The machine's speed drifts between phases lasting seconds to minutes (a shared VM): also
    # show each round's own ratio (its two runs back to back) and the fastest phase of each side.
    per_round = [o["median_ms"] / b["median_ms"] for o, b in zip(ours, base)]
    print("per-round ratios: " + ", ".join(f"{x:.3f}" for x in per_round)
          + f"  (median {statistics.median(per_round):.3f}, worst {max(per_round):.3f})")
    best_ours = min(x["median_ms"] for x in ours)
    best_base = min(x["median_ms"] for x in base)
    print(f"fastest round of each: {best_ours:.2f} / {best_base:.2f} ms = {best_ours / best_base:.3f}")
    print(f"ratio ours/PyTorch = {m_ours / m_base:.3f}  (bar: <= 0.5)")


if __name__ == "__main__":
    main()
