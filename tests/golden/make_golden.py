#!/usr/bin/env python3
"""Golden vectors for the trainer's hand-written kernels, computed by PyTorch (llm.c style).

Run by developers, not by CI (needs `torch`; the interop case also `safetensors`, whose torch
saver needs `numpy`; this script itself uses no numpy):

    python3 tests/golden/make_golden.py            # writes tests/fixtures/golden/*
    python3 tests/golden/make_golden.py interop    # only the named case(s)

The model below is the TutorialLLM reference (spec §3) written the way the reference writes it:
one `Head` module per head with separate key/query/value Linears, `masked_fill(-inf)` causal mask,
scores scaled by dim**-0.5, `nn.Sequential` FFN, pre-LayerNorm, LM head with bias, mean
cross-entropy, `torch.optim.AdamW` with its defaults. Tensors are exported in the project's
canonical order and names (docs/ARCHITECTURE.md).

Cases (each a `<case>.json` manifest + `<case>.bin` of little-endian arrays):

* `reduced`: vocab 512, context 64, otherwise the real dims. Weights from torch's own init
  (seed 1234) are stored, with 3 batches (4 x 64), the logits/loss/every gradient for batch 0,
  the losses of batches 1 and 2 during training, and all parameters after 3 AdamW steps (lr 1e-3,
  one step per batch).
* `full`: the real config. Weights are NOT stored: both sides generate them with
  `golden_params(seed=20241)` = SplitMix64 over the canonical tensors (see `golden_params` below
  and `tinypoet_trainer::init::golden_params`). Stored: the batch (2 x 256, SplitMix64 too),
  loss, logits at a few positions, every tensor's gradient norm, and 32 sampled gradient entries
  per tensor.
* `torch_init`: `torch.manual_seed(2024)`, the reference's 16-draw demo batch, then model
  construction; 32 sampled entries and the f64 sum of every tensor, to check the trainer's
  torch-generator-exact init (`InitScheme::Torch`).
* `stages`: the masked cross-entropy of the finetune stage and the alignment stage's per-token
  loss (issue 14) on the reduced config, weights from `golden_params`; see `stages()`.
* `interop` (PyTorch interop through safetensors, issue 8): the reference module for the reduced
  config (vocab 512, context 64), torch init (seed 4321) with the LayerNorms randomised and the
  query/key weights scaled by 4 (so attention is far from uniform and a misplaced head shows),
  every parameter rounded to an f16-representable value. Stored: `interop.safetensors` =
  `save_file` of the module's state_dict in f16 (tril buffers included, as `model.half()`
  would save it), and in `interop.{json,bin}` a 64-token sequence with the module's f32 logits
  at every position (`tests/tests/pytorch_interop.rs` imports the file and runs our core on
  the same tokens). Then the other direction, asserted here because CI has no torch: the
  `tinypoet` binary (built with cargo, or $TINYPOET_BIN) imports the file into a checkpoint
  and exports it back with `--format safetensors`; that file must `load_state_dict` (strict)
  into a fresh reference module and give back the same tensors and logits bit for bit.
"""

import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "golden")
MASK64 = (1 << 64) - 1


class Cfg:
    def __init__(self, vocab_size, dim=64, n_heads=4, n_layers=4, context=256, ffn_dim=256):
        self.vocab_size, self.dim, self.n_heads = vocab_size, dim, n_heads
        self.n_layers, self.context, self.ffn_dim = n_layers, context, ffn_dim

    def as_dict(self):
        return dict(vocab_size=self.vocab_size, dim=self.dim, n_heads=self.n_heads, n_layers=self.n_layers,
                    context=self.context, ffn_dim=self.ffn_dim, ln_eps=1e-5, attn_scale=self.dim ** -0.5)


# ---------------------------------------------------------------- the reference model
class Head(nn.Module):
    def __init__(self, dim, head_size, context):
        super().__init__()
        self.project_to_key = nn.Linear(dim, head_size, bias=False)
        self.project_to_query = nn.Linear(dim, head_size, bias=False)
        self.project_to_value = nn.Linear(dim, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(context, context)))

    def forward(self, x):
        B, T, C = x.shape
        k = self.project_to_key(x)
        q = self.project_to_query(x)
        w = q @ k.transpose(-2, -1) * C ** -0.5  # scaled by the model dim, as the reference does
        w = w.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        w = F.softmax(w, dim=-1)
        return w @ self.project_to_value(x)


class MultiHeadAttention(nn.Module):
    def __init__(self, dim, n_heads, context):
        super().__init__()
        self.heads = nn.ModuleList([Head(dim, dim // n_heads, context) for _ in range(n_heads)])
        self.project = nn.Linear(dim, dim)

    def forward(self, x):
        return self.project(torch.cat([h(x) for h in self.heads], dim=-1))


class FeedForward(nn.Module):
    def __init__(self, dim, ffn_dim):
        super().__init__()
        self.feed_forward = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))

    def forward(self, x):
        return self.feed_forward(x)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.multi_head_attention = MultiHeadAttention(cfg.dim, cfg.n_heads, cfg.context)
        self.feed_forward = FeedForward(cfg.dim, cfg.ffn_dim)
        self.layer_norm1 = nn.LayerNorm(cfg.dim)
        self.layer_norm2 = nn.LayerNorm(cfg.dim)

    def forward(self, x):
        x = x + self.multi_head_attention(self.layer_norm1(x))
        return x + self.feed_forward(self.layer_norm2(x))


class TutorialLLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.token_embedding_table = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.position_embedding_table = nn.Embedding(cfg.context, cfg.dim)
        self.transformer_blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg.n_layers)])
        self.layer_norm_final = nn.LayerNorm(cfg.dim)
        self.project = nn.Linear(cfg.dim, cfg.vocab_size)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.token_embedding_table(idx) + self.position_embedding_table(torch.arange(T))
        x = self.layer_norm_final(self.transformer_blocks(x))
        logits = self.project(x)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))
        return logits, loss


def canonical(model, cfg, grad=False):
    """(name, tensor) in the canonical order of docs/ARCHITECTURE.md."""
    g = (lambda p: p.grad) if grad else (lambda p: p.data)
    out = [("tok_emb", g(model.token_embedding_table.weight)), ("pos_emb", g(model.position_embedding_table.weight))]
    for l, b in enumerate(model.transformer_blocks):
        m, ff = b.multi_head_attention, b.feed_forward.feed_forward
        cat = lambda attr: torch.cat([g(getattr(h, attr).weight) for h in m.heads], 0)
        out += [
            (f"blocks.{l}.ln1.weight", g(b.layer_norm1.weight)), (f"blocks.{l}.ln1.bias", g(b.layer_norm1.bias)),
            (f"blocks.{l}.attn.wq", cat("project_to_query")), (f"blocks.{l}.attn.wk", cat("project_to_key")),
            (f"blocks.{l}.attn.wv", cat("project_to_value")),
            (f"blocks.{l}.attn.proj.weight", g(m.project.weight)), (f"blocks.{l}.attn.proj.bias", g(m.project.bias)),
            (f"blocks.{l}.ln2.weight", g(b.layer_norm2.weight)), (f"blocks.{l}.ln2.bias", g(b.layer_norm2.bias)),
            (f"blocks.{l}.ffn.fc1.weight", g(ff[0].weight)), (f"blocks.{l}.ffn.fc1.bias", g(ff[0].bias)),
            (f"blocks.{l}.ffn.fc2.weight", g(ff[2].weight)), (f"blocks.{l}.ffn.fc2.bias", g(ff[2].bias)),
        ]
    out += [("ln_f.weight", g(model.layer_norm_final.weight)), ("ln_f.bias", g(model.layer_norm_final.bias)),
            ("head.weight", g(model.project.weight)), ("head.bias", g(model.project.bias))]
    return [(n, t.detach().clone().contiguous()) for n, t in out]


def load_canonical(model, cfg, tensors):
    """Copy canonical tensors into the reference model (inverse of `canonical`)."""
    d = dict(tensors)
    hs = cfg.dim // cfg.n_heads
    with torch.no_grad():
        model.token_embedding_table.weight.copy_(d["tok_emb"])
        model.position_embedding_table.weight.copy_(d["pos_emb"])
        for l, b in enumerate(model.transformer_blocks):
            m, ff = b.multi_head_attention, b.feed_forward.feed_forward
            for h, head in enumerate(m.heads):
                head.project_to_query.weight.copy_(d[f"blocks.{l}.attn.wq"][h * hs:(h + 1) * hs])
                head.project_to_key.weight.copy_(d[f"blocks.{l}.attn.wk"][h * hs:(h + 1) * hs])
                head.project_to_value.weight.copy_(d[f"blocks.{l}.attn.wv"][h * hs:(h + 1) * hs])
            m.project.weight.copy_(d[f"blocks.{l}.attn.proj.weight"]); m.project.bias.copy_(d[f"blocks.{l}.attn.proj.bias"])
            b.layer_norm1.weight.copy_(d[f"blocks.{l}.ln1.weight"]); b.layer_norm1.bias.copy_(d[f"blocks.{l}.ln1.bias"])
            b.layer_norm2.weight.copy_(d[f"blocks.{l}.ln2.weight"]); b.layer_norm2.bias.copy_(d[f"blocks.{l}.ln2.bias"])
            ff[0].weight.copy_(d[f"blocks.{l}.ffn.fc1.weight"]); ff[0].bias.copy_(d[f"blocks.{l}.ffn.fc1.bias"])
            ff[2].weight.copy_(d[f"blocks.{l}.ffn.fc2.weight"]); ff[2].bias.copy_(d[f"blocks.{l}.ffn.fc2.bias"])
        model.layer_norm_final.weight.copy_(d["ln_f.weight"]); model.layer_norm_final.bias.copy_(d["ln_f.bias"])
        model.project.weight.copy_(d["head.weight"]); model.project.bias.copy_(d["head.bias"])


# ---------------------------------------------------------------- the shared PRNG
class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)


def shapes(cfg):
    """(name, shape, kind, fan_in) in canonical order (mirror of ParamLayout::new)."""
    V, C, T, Fd = cfg.vocab_size, cfg.dim, cfg.context, cfg.ffn_dim
    out = [("tok_emb", [V, C], "emb", 0), ("pos_emb", [T, C], "emb", 0)]
    for l in range(cfg.n_layers):
        p = f"blocks.{l}."
        out += [(p + "ln1.weight", [C], "nw", 0), (p + "ln1.bias", [C], "nb", 0),
                (p + "attn.wq", [C, C], "lin", C), (p + "attn.wk", [C, C], "lin", C), (p + "attn.wv", [C, C], "lin", C),
                (p + "attn.proj.weight", [C, C], "lin", C), (p + "attn.proj.bias", [C], "lin", C),
                (p + "ln2.weight", [C], "nw", 0), (p + "ln2.bias", [C], "nb", 0),
                (p + "ffn.fc1.weight", [Fd, C], "lin", C), (p + "ffn.fc1.bias", [Fd], "lin", C),
                (p + "ffn.fc2.weight", [C, Fd], "lin", Fd), (p + "ffn.fc2.bias", [C], "lin", Fd)]
    out += [("ln_f.weight", [C], "nw", 0), ("ln_f.bias", [C], "nb", 0),
            ("head.weight", [V, C], "lin", C), ("head.bias", [V], "lin", C)]
    return out


def golden_params(cfg, seed):
    """Bit-identical to tinypoet_trainer::init::golden_params: one SplitMix64 stream over the
    canonical tensors; element = f32(shift + ((z >> 40) * 2**-23 - 1) * bound), in f64."""
    sm = SplitMix64(seed)
    out = []
    for name, shape, kind, fan_in in shapes(cfg):
        bound, shift = {"emb": (1.0, 0.0), "nw": (0.2, 1.0), "nb": (0.2, 0.0)}.get(kind, (None, 0.0))
        if kind == "lin":
            bound = 1.0 / math.sqrt(fan_in)
        n = math.prod(shape)
        vals = [shift + ((sm.next() >> 40) * (1.0 / 8388608.0) - 1.0) * bound for _ in range(n)]
        out.append((name, torch.tensor(vals, dtype=torch.float64).to(torch.float32).view(shape)))
    return out


# ---------------------------------------------------------------- fixture writer
class Fixture:
    def __init__(self, case, cfg):
        self.case, self.meta, self.blob = case, {"config": cfg.as_dict(), "arrays": {}}, bytearray()

    def add(self, name, t, dtype="f32"):
        t = t.detach().contiguous().view(-1)
        fmt = {"f32": "f", "u16": "H", "u32": "I", "f64": "d"}[dtype]
        vals = t.tolist()
        self.meta["arrays"][name] = {"dtype": dtype, "shape": list(t.shape), "offset": len(self.blob), "len": len(vals)}
        self.blob += struct.pack("<%d%s" % (len(vals), fmt), *vals)

    def scalar(self, name, v):
        self.meta[name] = v

    def write(self):
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, self.case + ".bin"), "wb") as f:
            f.write(self.blob)
        with open(os.path.join(OUT, self.case + ".json"), "w") as f:
            json.dump(self.meta, f, indent=1)
        print(f"{self.case}: {len(self.blob):,} bytes", file=sys.stderr)


def sample_indices(sm, n, k=32):
    if n <= k:
        return list(range(n))
    out = []
    while len(out) < k:
        i = sm.next() % n
        if i not in out:
            out.append(i)
    return out


def reduced():
    cfg = Cfg(vocab_size=512, context=64)
    torch.manual_seed(1234)
    model = TutorialLLM(cfg)
    fx = Fixture("reduced", cfg)
    for name, t in canonical(model, cfg):
        fx.add("param." + name, t)
    B, T = 4, 64
    batches = []
    for i in range(3):
        x = torch.randint(0, cfg.vocab_size, (B, T))
        y = torch.randint(0, cfg.vocab_size, (B, T))
        batches.append((x, y))
        fx.add(f"x{i}", x, "u16")
        fx.add(f"y{i}", y, "u16")
    fx.scalar("batch", B)
    fx.scalar("seq", T)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for i, (x, y) in enumerate(batches):
        opt.zero_grad()
        logits, loss = model(x, y)
        loss.backward()
        if i == 0:
            fx.add("logits", logits)
            for name, t in canonical(model, cfg, grad=True):
                fx.add("grad." + name, t)
        losses.append(loss.item())
        opt.step()
    fx.scalar("losses", losses)
    for name, t in canonical(model, cfg):
        fx.add("after3." + name, t)
    fx.write()


def full():
    cfg = Cfg(vocab_size=8548)
    model = TutorialLLM(cfg)
    seed = 20241
    load_canonical(model, cfg, golden_params(cfg, seed))
    fx = Fixture("full", cfg)
    fx.scalar("weights_seed", seed)
    B, T = 2, 256
    sm = SplitMix64(77)
    x = torch.tensor([sm.next() % cfg.vocab_size for _ in range(B * T)]).view(B, T)
    y = torch.tensor([sm.next() % cfg.vocab_size for _ in range(B * T)]).view(B, T)
    fx.add("x", x, "u16")
    fx.add("y", y, "u16")
    fx.scalar("batch", B)
    fx.scalar("seq", T)
    logits, loss = model(x, y)
    loss.backward()
    fx.scalar("loss", loss.item())
    pos = [0, 1, 2, 17, 100, 255, 256, 300, 511]
    fx.add("logit_positions", torch.tensor(pos), "u32")
    fx.add("logits_at", logits.view(B * T, -1)[pos])
    norms, idx, vals = [], [], []
    sm = SplitMix64(99)
    for name, g in canonical(model, cfg, grad=True):
        g = g.view(-1)
        norms.append(g.double().norm().item())
        ii = sample_indices(sm, g.numel())
        idx += ii
        vals += [g[i].item() for i in ii]
    fx.add("grad_norms", torch.tensor(norms, dtype=torch.float64), "f64")
    fx.add("grad_sample_index", torch.tensor(idx), "u32")
    fx.add("grad_sample_value", torch.tensor(vals))
    fx.write()


def torch_init():
    cfg = Cfg(vocab_size=8548)
    torch.manual_seed(2024)
    torch.randint(1552553 - 256, (16,))  # the reference's demo batch: 16 raw draws
    model = TutorialLLM(cfg)
    fx = Fixture("torch_init", cfg)
    fx.scalar("seed", 2024)
    sm = SplitMix64(5)
    idx, vals, sums = [], [], []
    for name, t in canonical(model, cfg):
        t = t.view(-1)
        ii = sample_indices(sm, t.numel())
        idx += ii
        vals += [t[i].item() for i in ii]
        sums.append(t.double().sum().item())
    fx.add("sample_index", torch.tensor(idx), "u32")
    fx.add("sample_value", torch.tensor(vals))
    fx.add("sums", torch.tensor(sums, dtype=torch.float64), "f64")
    fx.write()


def tinypoet(*args):
    """Run the `tinypoet` binary ($TINYPOET_BIN, else `cargo run` in this repository)."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    exe = os.environ.get("TINYPOET_BIN")
    cmd = [exe] if exe else ["cargo", "run", "-q", "-p", "tinypoet-trainer", "--bin", "tinypoet", "--"]
    r = subprocess.run(cmd + [str(a) for a in args], cwd=root, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"tinypoet {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r


def interop():
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    cfg = Cfg(vocab_size=512, context=64)
    torch.manual_seed(4321)
    model = TutorialLLM(cfg)
    with torch.no_grad():
        for b in model.transformer_blocks:
            for ln in (b.layer_norm1, b.layer_norm2):
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.uniform_(-0.2, 0.2)
            for h in b.multi_head_attention.heads:
                h.project_to_query.weight.mul_(4.0)
                h.project_to_key.weight.mul_(4.0)
        model.layer_norm_final.weight.uniform_(0.5, 1.5)
        model.layer_norm_final.bias.uniform_(-0.2, 0.2)
        for p in model.parameters():
            p.copy_(p.half().float())
    path = os.path.join(OUT, "interop.safetensors")
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, path)
    print(f"interop.safetensors: {os.path.getsize(path):,} bytes", file=sys.stderr)

    sm = SplitMix64(31)
    x = torch.tensor([sm.next() % cfg.vocab_size for _ in range(cfg.context)]).view(1, -1)
    with torch.no_grad():
        logits, _ = model(x)
        # How far from uniform the attention is (printed, for the docstring's claim): the mean
        # over the positions t >= 8 of the largest weight of head 0 of block 0 (uniform: 1/(t+1)).
        b0, h0 = model.transformer_blocks[0], model.transformer_blocks[0].multi_head_attention.heads[0]
        a = b0.layer_norm1(model.token_embedding_table(x) + model.position_embedding_table(torch.arange(cfg.context)))
        w = h0.project_to_query(a) @ h0.project_to_key(a).transpose(-2, -1) * cfg.dim ** -0.5
        w = F.softmax(w.masked_fill(h0.tril == 0, float("-inf")), dim=-1)[0]
        peak = w.max(dim=-1).values[8:].mean().item()
        uniform = sum(1 / (t + 1) for t in range(8, cfg.context)) / (cfg.context - 8)
    print(f"interop: mean peak attention weight {peak:.3f} (uniform would be {uniform:.3f})", file=sys.stderr)
    fx = Fixture("interop", cfg)
    fx.add("tokens", x, "u16")
    fx.add("logits", logits)
    fx.write()

    # The other direction: our import, then our export, loads into the reference module.
    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "vocab.txt")
        with open(text, "w", encoding="utf-8") as f:  # 511 characters + '\0' = the test's vocabulary
            f.write("".join(chr(0x4E00 + i) for i in range(cfg.vocab_size - 1)) * 4)
        ds, ckpt, back = (os.path.join(tmp, n) for n in ("v.tpd", "m.ckpt", "back.safetensors"))
        tinypoet("prepare", "--from", text, "--format", "text", "-o", ds)
        tinypoet("import", path, "--data", ds, "-o", ckpt)
        tinypoet("export", ckpt, "--format", "safetensors", "-o", back)
        sd = load_file(back)
        with safe_open(back, "pt") as f:
            meta = f.metadata()
        fresh = TutorialLLM(cfg)
        fresh.load_state_dict(sd)  # strict: every name, shape and buffer
        want = model.state_dict()
        for k, v in fresh.state_dict().items():
            assert v.dtype == torch.float32 and torch.equal(v, want[k]), k
        with torch.no_grad():
            again, _ = fresh(x)
        assert torch.equal(again, logits)
        assert json.loads(meta["tinypoet.config"])["vocab_size"] == cfg.vocab_size
        assert len(meta["tinypoet.vocab"]) == cfg.vocab_size and meta["format"] == "pt"
        print(f"interop: our export loads into the reference module ({len(sd)} tensors), "
              "same tensors and logits bit for bit", file=sys.stderr)


def _stage_rows(items, width):
    """The reference's finetune/alignment rows (spec section 2), written the way it builds them:
    pad input with 0 to the width, labels = input shifted by one padded with 0, then every label
    0 except the first one -> -100."""
    xs, ys = [], []
    for item in items:
        item = item[:width]
        x = item + [0] * (width - len(item))
        y = item[1:] + [0] * (width - len(item) + 1)
        first = y.index(0)
        y = [v if (v != 0 or i == first) else -100 for i, v in enumerate(y)]
        xs.append(x)
        ys.append(y)
    return torch.tensor(xs), torch.tensor(ys)


def _grad_summary(fx, prefix, model, cfg, seed):
    norms, idx, vals = [], [], []
    sm = SplitMix64(seed)
    for name, g in canonical(model, cfg, grad=True):
        g = g.view(-1)
        norms.append(g.double().norm().item())
        ii = sample_indices(sm, g.numel())
        idx += ii
        vals += [g[i].item() for i in ii]
    fx.add(prefix + "grad_norms", torch.tensor(norms, dtype=torch.float64), "f64")
    fx.add(prefix + "grad_sample_index", torch.tensor(idx), "u32")
    fx.add(prefix + "grad_sample_value", torch.tensor(vals))


def stages():
    """The two losses of the finetune and alignment stages (issue 14) on the reduced config
    (vocab 512, context 64; rows 64 wide instead of 256), weights from golden_params:
    * finetune: 4 items (one longer than the width), masked mean cross-entropy
      (ignore_index -100); loss, gradient norms and samples;
    * align: 3 pairs (all shorter than the width: the Rust side crops them to 50 and adds the
      cropped positions analytically), policy = golden_params(31), frozen reference = golden_params(32); per-token
      CE with reduction none, margin = 0.8 (r+ - l+) + 0.2 (l- - r-), loss = mean over all B*64
      positions of -logsigmoid(0.1 margin); loss, mean margin, gradient norms and samples.
    Items are stored (flat u16 + u32 lengths) with the reference's x / y (-100 stored as 65535)."""
    cfg = Cfg(vocab_size=512, context=64)
    W = 64
    fx = Fixture("stages", cfg)
    fx.scalar("width", W)
    sm = SplitMix64(2024)
    item = lambda n: [1 + sm.next() % (cfg.vocab_size - 1) for _ in range(n)]

    def store(prefix, items):
        fx.add(prefix + "items", torch.tensor(sum(items, [])), "u16")
        fx.add(prefix + "lens", torch.tensor([len(i) for i in items]), "u32")

    def store_xy(prefix, x, y):
        fx.add(prefix + "x", x, "u16")
        fx.add(prefix + "y", torch.where(y < 0, torch.full_like(y, 65535), y), "u16")

    # Finetune.
    ft_items = [item(n) for n in (10, 70, 33, 64)]
    store("ft.", ft_items)
    x, y = _stage_rows(ft_items, W)
    store_xy("ft.", x, y)
    model = TutorialLLM(cfg)
    fx.scalar("ft_weights_seed", 30)
    load_canonical(model, cfg, golden_params(cfg, 30))
    logits, _ = model(x)
    loss = F.cross_entropy(logits.view(-1, cfg.vocab_size), y.view(-1), ignore_index=-100)
    loss.backward()
    fx.scalar("ft_loss", loss.item())
    _grad_summary(fx, "ft.", model, cfg, 99)

    # Align.
    pos_items = [item(n) for n in (20, 45, 12)]
    neg_items = [item(n) for n in (40, 8, 50)]
    store("pos.", pos_items)
    store("neg.", neg_items)
    xp, yp = _stage_rows(pos_items, W)
    xn, yn = _stage_rows(neg_items, W)
    store_xy("pos.", xp, yp)
    store_xy("neg.", xn, yn)
    policy, reference = TutorialLLM(cfg), TutorialLLM(cfg)
    fx.scalar("policy_weights_seed", 31)
    fx.scalar("reference_weights_seed", 32)
    load_canonical(policy, cfg, golden_params(cfg, 31))
    load_canonical(reference, cfg, golden_params(cfg, 32))

    def per_token(m, x, y):
        logits, _ = m(x)
        B, T = x.shape
        return F.cross_entropy(logits.view(B * T, -1), y.view(B * T), reduction="none",
                               ignore_index=-100).view(B, T)

    lp, ln = per_token(policy, xp, yp), per_token(policy, xn, yn)
    with torch.no_grad():
        rp, rn = per_token(reference, xp, yp), per_token(reference, xn, yn)
    margin = 0.8 * (rp - lp) + 0.2 * (ln - rn)
    loss = -F.logsigmoid(0.1 * margin).mean()
    loss.backward()
    fx.scalar("align_loss", loss.item())
    fx.scalar("align_margin", margin.mean().item())
    _grad_summary(fx, "align.", policy, cfg, 98)
    fx.write()


CASES = {"reduced": reduced, "full": full, "torch_init": torch_init, "interop": interop, "stages": stages}

if __name__ == "__main__":
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    names = sys.argv[1:] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; cases: {list(CASES)}")
    for name in names:
        CASES[name]()
