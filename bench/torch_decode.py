#!/usr/bin/env python3
"""KV-cached PyTorch decode baseline for the TutorialLLM model (bench only; torch is never a
dependency of the crates).

The same shape and measurement as `tinypoet bench decode --backend fastest --prompt 春 --chars
255` (the bundled model): full-size Tang model (V 8548, C 64, 4 heads, 4 layers, T 256, F 256,
attention scale 0.125), here with PyTorch's default random init (a step's cost does not depend
on the values), one thread, torch.inference_mode, a preallocated KV cache; one run = feed a
1-character prompt, then 255 x (softmax + multinomial sample + one cached forward step).
Prints best and median chars/s and the rate per CPU second.

    python3 bench/torch_decode.py [--reps 20] [--json]
"""
import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

V, C, H, L, T, FF = 8548, 64, 4, 4, 256, 256
HD = C // H
SCALE = C ** -0.5  # the reference scales by d_model, not head size


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(C)
        self.wq = nn.Linear(C, C, bias=False)
        self.wk = nn.Linear(C, C, bias=False)
        self.wv = nn.Linear(C, C, bias=False)
        self.proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C)
        self.fc1 = nn.Linear(C, FF)
        self.fc2 = nn.Linear(FF, C)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_emb = nn.Embedding(V, C)
        self.pos_emb = nn.Embedding(T, C)
        self.blocks = nn.ModuleList(Block() for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.head = nn.Linear(C, V)

    def step(self, token, pos, kcache, vcache):
        """One position with the KV cache. kcache/vcache: [L, T, H, HD] preallocated."""
        x = self.tok_emb.weight[token] + self.pos_emb.weight[pos]  # [C]
        for l, b in enumerate(self.blocks):
            a = b.ln1(x)
            q = b.wq(a).view(H, HD)
            kcache[l, pos] = b.wk(a).view(H, HD)
            vcache[l, pos] = b.wv(a).view(H, HD)
            k = kcache[l, : pos + 1]  # [t, H, HD]
            v = vcache[l, : pos + 1]
            att = torch.einsum("hd,thd->ht", q, k) * SCALE  # causal by construction
            att = F.softmax(att, dim=-1)
            o = torch.einsum("ht,thd->hd", att, v).reshape(C)
            x = x + b.proj(o)
            x = x + b.fc2(F.relu(b.fc1(b.ln2(x))))
        return self.head(self.ln_f(x))  # [V]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(2024)
    model = Model().eval()
    kcache = torch.zeros(L, T, H, HD)
    vcache = torch.zeros(L, T, H, HD)
    n_new = T - 1
    rates = []
    cpu0 = 0.0
    with torch.inference_mode():
        for rep in range(args.reps + 2):
            if rep == 2:
                cpu0 = time.process_time()
            g = torch.Generator().manual_seed(rep)
            t0 = time.perf_counter()
            logits = model.step(2, 0, kcache, vcache)
            for pos in range(1, n_new + 1):
                probs = F.softmax(logits, dim=-1)
                tok = int(torch.multinomial(probs, 1, generator=g))
                logits = model.step(tok, pos, kcache, vcache)
            dt = time.perf_counter() - t0
            if rep >= 2:  # two warm-up runs
                rates.append(n_new / dt)
    # chars per second of CPU time this process got (robust against other jobs on the machine)
    cpu_rate = args.reps * n_new / (time.process_time() - cpu0)
    rates.sort()
    best, median = rates[-1], rates[len(rates) // 2]
    load1 = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "reps": args.reps,
                          "best_chars_per_s": round(best), "median_chars_per_s": round(median), "cpu_chars_per_s": round(cpu_rate),
                          "load1": load1}))
    else:
        print(f"PyTorch {torch.__version__} KV-cached decode, 1 thread, {n_new} chars/run, {args.reps} runs")
        print(f"  best   {best:9.0f} chars/s")
        print(f"  median {median:9.0f} chars/s   (loadavg {load1:.2f})")
        print(f"  per CPU second {cpu_rate:9.0f} chars/s")


if __name__ == "__main__":
    main()
