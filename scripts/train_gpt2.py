#!/usr/bin/env python3
"""PyTorch fp32 reference for the C GPT-2 trainer (formats: docs/formats.md).

Builds a GPT-2 (random init from a descriptor, a model file, or HuggingFace weights) and can:
  --write-model / --write-model-bf16   the weights before any step (version 3 / version 5 file)
  --write-state                        debug state: one batch, its logits, loss, grads, step losses
  --write-tokenizer                    gpt2_tokenizer.bin (via dev/data/data_common.py)
  --mode train                         train on llm.c data shards (or random tokens) like the C trainer
  --optimizer muon                     Muon for the blocks' 2-D matrices, AdamW for the rest (both modes)

Runs on torch 1.13 and 2.x, CPU, fp32, deterministic.
Example: python3 scripts/train_gpt2.py --model d2 --seed 1 -b 4 -t 64 --steps 5 \\
             --write-model /tmp/m.bin --write-state /tmp/s.bin
"""
import argparse
import glob
import inspect
import math
import operator
import os
import re
import struct
import sys
import time
from array import array

# PyTorch's AVX2 normal_ kernel approximates log/sin/cos with polynomials; its portable kernel
# uses the C library, which the C trainer reproduces bit for bit. Select the portable kernels
# (before torch is imported) so the same seed gives the same model in both.
os.environ.setdefault("ATEN_CPU_CAPABILITY", "default")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MODEL_MAGIC, STATE_MAGIC = 20240326, 20240327
SHARD_FORMATS = {20240520: (1, 2), 20240801: (7, 4)}  # magic -> (version, token bytes)
# llm.c sizes: depth -> (channels, heads); d2/d4/d6 use C = 64 * N, NH = N
LLMC_SIZES = {12: (768, 12), 24: (1024, 16), 36: (1280, 20), 48: (1600, 25)}


def fail(message):
    sys.exit("error: " + message)


# ----------------------------------------------------------------------------------------------
# Model


class Config:
    def __init__(self, L, C, NH, V=50257, maxT=1024):
        self.L, self.C, self.NH, self.V, self.maxT = L, C, NH, V, maxT
        self.Vp = (V + 127) // 128 * 128

    def __repr__(self):
        return f"L={self.L},C={self.C},NH={self.NH},V={self.V},maxT={self.maxT} (Vp={self.Vp})"

    def num_parameters(self):
        L, C = self.L, self.C
        per_layer = 2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + 4 * C * C + 4 * C + 4 * C * C + C
        return self.Vp * C + self.maxT * C + L * per_layer + 2 * C


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head = cfg.NH
        self.c_attn = nn.Linear(cfg.C, 3 * cfg.C)  # q, k, v in that order along the 3C dim
        self.c_proj = nn.Linear(cfg.C, cfg.C)

    def forward(self, x, mask):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, NH, T, hs): head h is channels [h*hs, (h+1)*hs)
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.C, 4 * cfg.C)
        self.c_proj = nn.Linear(4 * cfg.C, cfg.C)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.C, eps=1e-5)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.C, eps=1e-5)
        self.mlp = MLP(cfg)

    def forward(self, x, mask):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.V, cfg.C)  # tied to the output projection
        self.wpe = nn.Embedding(cfg.maxT, cfg.C)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.L))
        self.ln_f = nn.LayerNorm(cfg.C, eps=1e-5)
        # True above the diagonal: position t may not attend to positions after t
        mask = torch.triu(torch.ones(cfg.maxT, cfg.maxT, dtype=torch.bool), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, idx, targets, loss_mask=None, normaliser=None):
        """idx, targets: (B, T) int64. Returns logits (B, T, V) and the mean cross-entropy; with
        loss_mask (B, T) of 0/1, the sum over the targets where it is 1 divided by normaliser
        (default: their count, at least 1)."""
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.h:
            x = block(x, self.mask)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        if loss_mask is None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
            return logits, loss
        losses = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        mask = loss_mask.reshape(-1).to(losses.dtype)
        denominator = mask.sum().clamp(min=1.0) if normaliser is None else normaliser
        return logits, (losses * mask).sum() / denominator

    @torch.no_grad()
    def init_random(self, seed):
        """docs/formats.md init: manual_seed, then normal_ in this exact order (the C side replays it)."""
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, nn.Linear):
                module.bias.zero_()
        residual_std = 0.02 / math.sqrt(2 * self.cfg.L)
        torch.manual_seed(seed)
        self.wte.weight.normal_(mean=0.0, std=0.02)
        self.wpe.weight.normal_(mean=0.0, std=0.02)
        for block in self.h:
            block.attn.c_attn.weight.normal_(mean=0.0, std=0.02)
            block.attn.c_proj.weight.normal_(mean=0.0, std=residual_std)
            block.mlp.c_fc.weight.normal_(mean=0.0, std=0.02)
            block.mlp.c_proj.weight.normal_(mean=0.0, std=residual_std)


# The 16 file tensors in order: (name, attribute path); "h." marks per-layer tensors, stacked over layers
FILE_TENSORS = [
    ("wte", "wte.weight"), ("wpe", "wpe.weight"),
    ("ln1w", "h.ln_1.weight"), ("ln1b", "h.ln_1.bias"),
    ("qkvw", "h.attn.c_attn.weight"), ("qkvb", "h.attn.c_attn.bias"),
    ("attprojw", "h.attn.c_proj.weight"), ("attprojb", "h.attn.c_proj.bias"),
    ("ln2w", "h.ln_2.weight"), ("ln2b", "h.ln_2.bias"),
    ("fcw", "h.mlp.c_fc.weight"), ("fcb", "h.mlp.c_fc.bias"),
    ("fcprojw", "h.mlp.c_proj.weight"), ("fcprojb", "h.mlp.c_proj.bias"),
    ("lnfw", "ln_f.weight"), ("lnfb", "ln_f.bias"),
]  # fmt: skip


def tensor_params(model, attr):
    """The parameters behind one file tensor: one per layer for "h." paths, else one."""
    if attr.startswith("h."):
        return [operator.attrgetter(attr[2:])(block) for block in model.h]
    return [operator.attrgetter(attr)(model)]


def file_tensors(model, grads=False):
    """The 16 tensors in file order (per-layer ones stacked, wte zero-padded to Vp rows), as copies."""
    out = []
    for name, attr in FILE_TENSORS:
        params = tensor_params(model, attr)
        if grads:
            params = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        t = torch.stack([p.detach() for p in params]) if attr.startswith("h.") else params[0].detach().clone()
        if name == "wte":
            t = torch.cat([t, t.new_zeros(model.cfg.Vp - model.cfg.V, model.cfg.C)])
        out.append(t.contiguous())
    return out


# ----------------------------------------------------------------------------------------------
# Model sources: descriptor, model file, HuggingFace


def parse_descriptor(text):
    """`dN`, `gpt2:dN` or `L=2,C=64,NH=4,V=1000,maxT=128` -> Config; None if not a descriptor."""
    match = re.fullmatch(r"(?:gpt2:)?d(\d+)", text)
    if match:
        depth = int(match.group(1))
        if depth in (2, 4, 6):
            return Config(depth, 64 * depth, depth)
        if depth in LLMC_SIZES:
            return Config(depth, *LLMC_SIZES[depth])
        fail(f"--model {text}: depth must be one of 2, 4, 6, 12, 24, 36, 48")
    if "=" not in text:
        return None
    fields = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in ("L", "C", "NH", "V", "maxT") or not value.isdigit() or int(value) < 1:
            fail(f"--model {text}: bad field '{item}' (expected L, C, NH, V, maxT = positive int)")
        fields[key] = int(value)
    for key in ("L", "C", "NH"):
        if key not in fields:
            fail(f"--model {text}: field {key} missing")
    if fields["C"] % fields["NH"]:
        fail(f"--model {text}: C ({fields['C']}) must be a multiple of NH ({fields['NH']})")
    return Config(**fields)


def load_model_file(path):
    """Read a version 3 (fp32) or 5 (bf16) model file; validates the header against the length."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if len(data) < HEADER_BYTES:
        fail(f"{path}: header: expected {HEADER_BYTES} bytes, file has {len(data)}")
    header = struct.unpack_from(f"<{HEADER_INTS}i", data)
    magic, version, maxT, V, L, NH, C, Vp = header[:8]
    if magic != MODEL_MAGIC:
        fail(f"{path}: header field magic: expected {MODEL_MAGIC}, found {magic}")
    if version not in (3, 5):
        fail(f"{path}: header field version: expected 3 (fp32) or 5 (bf16), found {version}")
    for name, value in (("maxT", maxT), ("V", V), ("L", L), ("NH", NH), ("C", C)):
        if value < 1:
            fail(f"{path}: header field {name}: expected a positive value, found {value}")
    if C % NH:
        fail(f"{path}: header field NH: C ({C}) must be a multiple of NH, found {NH}")
    if Vp < V:
        fail(f"{path}: header field Vp: expected >= V ({V}), found {Vp}")
    cfg = Config(L, C, NH, V, maxT)
    cfg.Vp = Vp  # keep the file's padding
    elem = 4 if version == 3 else 2
    expected = HEADER_BYTES + cfg.num_parameters() * elem
    if len(data) != expected:
        fail(f"{path}: file length: expected {expected} bytes for {cfg}, found {len(data)}")
    dtype = torch.float32 if version == 3 else torch.bfloat16
    flat = torch.frombuffer(data, dtype=dtype, offset=HEADER_BYTES).float()
    model = GPT(cfg)
    offset = 0
    with torch.no_grad():
        for name, attr in FILE_TENSORS:
            for param in tensor_params(model, attr):
                n = Vp * C if name == "wte" else param.numel()
                chunk = flat[offset : offset + n]
                offset += n
                if name == "wte":
                    chunk = chunk.view(Vp, C)[:V]  # drop the padding rows
                param.copy_(chunk.view_as(param))
    return model


def hf_config_problem(hc):
    """Why our GPT-2 is not the model of a HuggingFace GPT2Config (None if it is); the C loader
    (llmc/safetensors.h) refuses the same keys."""
    checks = [
        ("activation_function", "gelu_new", "the tanh GELU, the only one implemented"),
        ("layer_norm_epsilon", 1e-5, "our layernorm's"),
        ("scale_attn_by_inverse_layer_idx", False, "attention scaled by 1/layer is not implemented"),
        ("reorder_and_upcast_attn", False, "the reordered attention is not implemented"),
        ("scale_attn_weights", True, "unscaled attention is not implemented"),
        ("add_cross_attention", False, "cross-attention is not implemented"),
        ("tie_word_embeddings", True, "an untied output head is not implemented"),
    ]
    for key, expected, why in checks:
        found = getattr(hc, key, expected)
        if found != expected:
            return f"{key}: expected {expected!r} ({why}), found {found!r}"
    n_inner = getattr(hc, "n_inner", None)
    if n_inner is not None and n_inner != 4 * hc.n_embd:
        return f"n_inner: expected None or 4*n_embd = {4 * hc.n_embd} (our MLP's width), found {n_inner}"
    return None


def load_hf(name):
    """GPT-2 weights from HuggingFace (`gpt2`, `gpt2-medium`, ... or a local directory)."""
    try:
        from transformers import GPT2LMHeadModel
    except ImportError:
        fail("--hf needs the transformers package")
    try:
        hf = GPT2LMHeadModel.from_pretrained(name)
    except (OSError, ValueError) as e:
        fail(f"--hf {name}: {e}")
    hc = hf.config
    problem = hf_config_problem(hc)
    if problem:
        fail(f"--hf {name}: config.json: {problem}")
    cfg = Config(hc.n_layer, hc.n_embd, hc.n_head, hc.vocab_size, hc.n_positions)
    sd = {k: v.detach().float() for k, v in hf.state_dict().items()}
    model = GPT(cfg)
    # HF's Conv1D stores weights as (in, out); nn.Linear wants (out, in)
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    with torch.no_grad():
        for key, param in model.named_parameters():
            source = sd["transformer." + key]
            if key.endswith(conv1d):
                source = source.t()
            if source.shape != param.shape:
                fail(f"--hf {name}: {key}: expected shape {tuple(param.shape)}, found {tuple(source.shape)}")
            param.copy_(source)
    return model


# ----------------------------------------------------------------------------------------------
# Writing files (little-endian, atomic: PATH.tmp, fsync, rename)


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    try:
        return t.numpy().tobytes()
    except (RuntimeError, ImportError):  # torch without numpy
        code = {torch.float32: "f", torch.int32: "i", torch.int16: "h"}[t.dtype]
        return array(code, t.view(-1).tolist()).tobytes()


def header_bytes(ints):
    return struct.pack(f"<{HEADER_INTS}i", *(list(ints) + [0] * (HEADER_INTS - len(ints))))


def float_bits(value):
    return struct.unpack("<i", struct.pack("<f", value))[0]


def atomic_write(path, chunks):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def to_bf16_bits(t):
    """fp32 -> bf16 bit patterns (int16), rounded to nearest even, done on the integer bits."""
    bits = t.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF
    return torch.where(rounded >= 0x8000, rounded - 0x10000, rounded).to(torch.int16)


def write_model(model, path, bf16=False):
    cfg = model.cfg
    version = 5 if bf16 else 3
    head = header_bytes([MODEL_MAGIC, version, cfg.maxT, cfg.V, cfg.L, cfg.NH, cfg.C, cfg.Vp])
    tensors = file_tensors(model)
    atomic_write(path, [head] + [tensor_bytes(to_bf16_bits(t) if bf16 else t) for t in tensors])
    print(f"wrote {path} (version {version}, {cfg.num_parameters()} parameters)")


def write_state(path, args, x, y, logits, loss, grads, step_losses, loss_mask=None):
    """llm.c's debug state; with loss_mask, header[11] = 1 and the (B, T) int32 mask follows the
    step losses (loss and gradients are then those of the masked loss; docs/formats.md)."""
    floats = (args.lr, args.beta1, args.beta2, args.eps, args.weight_decay, args.grad_clip)
    masked = 1 if loss_mask is not None else 0
    # header[12..15]: the optimizer of the steps (1: Muon) and Muon's settings (docs/formats.md)
    muon = [1, float_bits(args.muon_lr), float_bits(args.muon_momentum), args.muon_ns_steps] if args.optimizer == "muon" else []
    head = header_bytes([STATE_MAGIC, 2, args.B, args.T, len(step_losses)] + [float_bits(v) for v in floats] + [masked] + muon)
    chunks = [head, tensor_bytes(x.to(torch.int32)), tensor_bytes(y.to(torch.int32))]
    chunks += [tensor_bytes(logits), struct.pack("<f", loss)] + [tensor_bytes(g) for g in grads]
    chunks.append(struct.pack(f"<{len(step_losses)}f", *step_losses))
    if loss_mask is not None:
        chunks.append(tensor_bytes(loss_mask.to(torch.int32)))
    atomic_write(path, chunks)
    print(f"wrote {path} (B={args.B}, T={args.T}, {len(step_losses)} step losses)")


def write_losses(path, losses):
    atomic_write(path, ["".join(f"{step} {loss:.6f}\n" for step, loss in enumerate(losses)).encode()])
    print(f"wrote {path}")


def write_tokenizer_file(vocab_dir, path):
    sys.path.insert(0, os.path.join(REPO, "dev", "data"))
    from data_common import write_tokenizer

    tmp = path + ".tmp"
    try:
        write_tokenizer(vocab_dir, tmp)
    except (OSError, ValueError) as e:
        fail(f"--write-tokenizer: {e}")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    print(f"wrote {path}")


# ----------------------------------------------------------------------------------------------
# Batches: llm.c data shards, or random tokens


def read_shard_header(path):
    """Validate a shard's header and length; returns (ntok, token bytes)."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        fail(f"{path}: header: expected {HEADER_BYTES} bytes, file has {len(head)}")
    magic, version, ntok = struct.unpack_from("<3i", head)
    if magic not in SHARD_FORMATS:
        fail(f"{path}: header field magic: expected 20240520 or 20240801, found {magic}")
    expected_version, size = SHARD_FORMATS[magic]
    if version != expected_version:
        fail(f"{path}: header field version: expected {expected_version} (magic {magic}), found {version}")
    length = os.path.getsize(path)
    if ntok < 0 or length != HEADER_BYTES + ntok * size:
        fail(f"{path}: header field ntok: {ntok} tokens of {size} bytes do not match file length {length}")
    return ntok, size


def mask_path_of(path):
    return path[:-4] + ".mask" if path.endswith(".bin") else None


def read_mask(path, ntok, T):
    """An SFT mask shard (docs/formats.md): checks it, returns its ntok bytes as a tensor."""
    with open(path, "rb") as f:
        data = f.read()
    magic, version, count, seq_len = struct.unpack_from("<4i", data)
    if magic != 20240610 or version != 1:
        fail(f"{path}: header: expected mask shard magic 20240610 version 1, found {magic} {version}")
    if count != ntok or seq_len != T or len(data) != HEADER_BYTES + ntok:
        fail(f"{path}: header: {count} tokens of rows T={seq_len}, expected {ntok} and T={T}")
    return torch.frombuffer(bytearray(data[HEADER_BYTES:]), dtype=torch.uint8).long()


class ShardLoader:
    """One process: micro-batch `sample` of a shard is tokens [sample*B*T, sample*B*T + B*T + 1).
    With a NAME.mask beside the shards (SFT), rows of T+1 tokens: micro-batch `sample` is rows
    sample*B .. sample*B + B-1, and next_batch also returns the (B, T) target mask."""

    def __init__(self, pattern, B, T, V):
        self.paths = sorted(glob.glob(pattern))
        if not self.paths:
            fail(f"--input {pattern}: no files match")
        self.B, self.T, self.V = B, T, V
        first_mask = mask_path_of(self.paths[0])
        self.masked = first_mask is not None and os.path.exists(first_mask)
        for path in self.paths:
            ntok, _ = read_shard_header(path)
            if self.masked:
                read_mask(mask_path_of(path), ntok, T)
                if ntok // (T + 1) < B:
                    fail(f"{path}: {ntok // (T + 1)} rows, need at least B = {B}")
                continue
            if (ntok - 1) // (B * T) < 1:
                fail(f"{path}: header field ntok: {ntok} tokens, need at least B*T+1 = {B * T + 1}")
        self.shard, self.sample = 0, 0
        self._load(0)

    def _load(self, index):
        path = self.paths[index]
        ntok, size = read_shard_header(path)
        with open(path, "rb") as f:
            f.seek(HEADER_BYTES)
            data = bytearray(f.read())
        if size == 2:  # no uint16 in torch 1.13: read int16, undo the sign extension
            tokens = torch.frombuffer(data, dtype=torch.int16).to(torch.int32) & 0xFFFF
        else:  # uint32 ids read as int32: any id >= 2^31 shows up negative and is rejected below
            tokens = torch.frombuffer(data, dtype=torch.int32)
        if ntok and not 0 <= int(tokens.min()) <= int(tokens.max()) < self.V:
            found = f"{int(tokens.min())}..{int(tokens.max())}"
            fail(f"{path}: tokens: expected ids in 0..{self.V - 1}, found {found}")
        self.tokens, self.samples = tokens, (ntok - 1) // (self.B * self.T)
        if self.masked:
            self.mask = read_mask(mask_path_of(path), ntok, self.T)
            self.samples = ntok // (self.T + 1) // self.B

    def next_batch(self):
        if self.sample >= self.samples:
            self.shard = (self.shard + 1) % len(self.paths)
            self.sample = 0
            if len(self.paths) > 1:
                self._load(self.shard)
        if self.masked:
            n = self.B * (self.T + 1)
            rows = self.tokens[self.sample * n : self.sample * n + n].long().view(self.B, self.T + 1)
            mask = self.mask[self.sample * n : self.sample * n + n].view(self.B, self.T + 1)
            self.sample += 1
            return rows[:, :-1], rows[:, 1:], mask[:, 1:]
        n = self.B * self.T
        window = self.tokens[self.sample * n : self.sample * n + n + 1].long()
        self.sample += 1
        return window[:-1].view(self.B, self.T), window[1:].view(self.B, self.T)


class RandomLoader:
    """Random token windows from a private generator (seed + 1), leaving the global RNG alone."""

    def __init__(self, seed, B, T, V):
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.B, self.T, self.V = B, T, V

    def next_batch(self):
        window = torch.randint(0, self.V, (self.B * self.T + 1,), generator=self.generator)
        return window[:-1].view(self.B, self.T), window[1:].view(self.B, self.T)


# ----------------------------------------------------------------------------------------------
# Optimisation


def get_lr(step, schedule, lr_max, warmup, final_fraction, max_steps):
    """Learning rate of step (0-based) of max_steps; the C trainer implements the same.

    All schedules warm up linearly: lr_max * (step + 1) / warmup while step < warmup. Then, with
    lr_min = lr_max * final_fraction and ratio = (step - warmup) / (max_steps - warmup):
    cosine: lr_min + 0.5 * (1 + cos(pi * ratio)) * (lr_max - lr_min); linear: lr_max - ratio *
    (lr_max - lr_min); constant: lr_max; wsd: lr_max until decay_start = max_steps -
    int(0.2 * max_steps), then lr_min + (lr_max - lr_min) * (1 - sqrt(progress)) over the rest.
    """
    if step < warmup:
        return lr_max * (step + 1) / warmup
    lr_min = lr_max * final_fraction
    ratio = (step - warmup) / (max_steps - warmup) if max_steps != warmup else 0.0
    if schedule == "cosine":
        return lr_min + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr_max - lr_min)
    if schedule == "linear":
        return lr_max - ratio * (lr_max - lr_min)
    if schedule == "constant":
        return lr_max
    if schedule == "wsd":
        decay_start = max_steps - int(0.2 * max_steps)
        if step < decay_start:
            return lr_max
        progress = (step - decay_start) / (max_steps - decay_start)
        return lr_min + (lr_max - lr_min) * (1.0 - math.sqrt(progress))
    raise ValueError(f"unknown schedule {schedule}")


# Muon's quintic Newton-Schulz coefficients (modded-nanogpt's); llmc/optimizer.h has the same.
MUON_NS = (3.4445, -4.7750, 2.0315)


class Muon:
    """Muon for 2-D matrices, in fp32, as llmc/muon.h defines it (written independently of it):
    buf = momentum buf + G; U = G + momentum buf (Nesterov); X = U / (||U||_F + 1e-7), transposed
    to be wide; ns_steps of A = X X^T, B = b A + c A A, X = a X + B X; then W *= 1 - lr wd and
    W -= lr max(1, rows/cols)^0.5 X. lr is set per step (the schedule). plant: a deliberate bug
    for the tests ("coef": a 1% error in a, "no-nesterov": U = buf)."""

    def __init__(self, params, lr, momentum, ns_steps, weight_decay, plant="none"):
        self.params, self.lr, self.momentum = list(params), lr, momentum
        self.ns_steps, self.weight_decay, self.plant = ns_steps, weight_decay, plant
        self.buffers = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        a, b, c = MUON_NS
        if self.plant == "coef":
            a *= 1.01
        for p, buf in zip(self.params, self.buffers):
            g = p.grad
            buf.mul_(self.momentum).add_(g)
            u = buf if self.plant == "no-nesterov" else g + self.momentum * buf
            x = u / (torch.linalg.norm(u) + 1e-7)
            rows, cols = p.shape
            if rows > cols:
                x = x.T
            for _ in range(self.ns_steps):
                A = x @ x.T
                B = b * A + c * (A @ A)
                x = a * x + B @ x
            if rows > cols:
                x = x.T
            p.mul_(1.0 - self.lr * self.weight_decay)
            p.add_(x, alpha=-self.lr * max(1.0, rows / cols) ** 0.5)

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


class Optimizers:
    """AdamW alone, or Muon for the blocks' 2-D matrices and AdamW for the rest (--optimizer)."""

    def __init__(self, model, args):
        params = list(model.parameters())  # wte appears once: the output projection reuses it
        matrices = [p for p in model.h.parameters() if p.dim() == 2] if args.optimizer == "muon" else []
        kept = {id(p) for p in matrices}
        rest = [p for p in params if id(p) not in kept]
        groups = [
            {"params": [p for p in rest if p.dim() == 2], "weight_decay": args.weight_decay},
            {"params": [p for p in rest if p.dim() != 2], "weight_decay": 0.0},
        ]
        extra = {"foreach": False} if "foreach" in inspect.signature(torch.optim.AdamW).parameters else {}
        self.adamw = torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, **extra)
        self.muon = None
        if matrices:
            self.muon = Muon(matrices, args.muon_lr, args.muon_momentum, args.muon_ns_steps,
                             args.weight_decay, args.muon_plant)

    def set_lr(self, adamw_lr, muon_lr):
        for group in self.adamw.param_groups:
            group["lr"] = adamw_lr
        if self.muon:
            self.muon.lr = muon_lr

    def step(self):
        self.adamw.step()
        if self.muon:
            self.muon.step()

    def zero_grad(self, set_to_none=True):
        self.adamw.zero_grad(set_to_none=set_to_none)
        if self.muon:
            self.muon.zero_grad()


def make_optimizer(model, args):
    return Optimizers(model, args)


def clip_and_norm(model, grad_clip):
    """Clip to the global norm (skipped when grad_clip is 0); returns the norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    if grad_clip > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
    return float(torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2))


def run_debug(model, loader, args):
    """One batch: dump logits, loss and grads, then args.steps AdamW steps at constant lr on it."""
    batch = loader.next_batch()
    x, y = batch[0], batch[1]
    loss_mask = batch[2] if len(batch) == 3 else None  # SFT shards bring their mask
    if args.loss_mask > 0:  # a private generator (seed + 2): the batch and init are unchanged
        generator = torch.Generator().manual_seed(args.seed + 2)
        loss_mask = (torch.rand(x.shape, generator=generator) < args.loss_mask).to(torch.int64)
        if args.masked_row >= 0:
            loss_mask[args.masked_row] = 0
        print(f"loss mask: {int(loss_mask.sum())} of {loss_mask.numel()} targets trained")
    optimizer = make_optimizer(model, args)
    logits, loss = model(x, y, loss_mask)
    loss.backward()
    first_logits, first_loss = logits.detach(), loss.item()
    first_grads = file_tensors(model, grads=True)  # unclipped
    print(f"first loss {first_loss:.6f} (ln V = {math.log(model.cfg.V):.6f})")
    step_losses = []
    for step in range(args.steps):
        if step > 0:  # step 0 reuses the forward/backward above
            optimizer.zero_grad(set_to_none=True)
            _, loss = model(x, y, loss_mask)
            loss.backward()
        step_losses.append(loss.item())
        print(f"step {step}: loss {step_losses[-1]:.6f}")
        clip_and_norm(model, args.grad_clip)
        optimizer.step()
    if args.write_state:
        write_state(args.write_state, args, x, y, first_logits, first_loss, first_grads, step_losses, loss_mask)
    return step_losses


def run_train(model, loader, args):
    """Optimizer steps over consecutive batches, with gradient accumulation, as the C trainer."""
    tokens_per_micro = args.B * args.T
    grad_accum = args.total_batch // tokens_per_micro
    optimizer = make_optimizer(model, args)
    print(f"train: {args.steps} steps, {args.total_batch} tokens/step, grad_accum {grad_accum}")
    losses = []
    for step in range(args.steps):
        start = time.time()
        loss_sum = 0.0
        if getattr(loader, "masked", False):
            # SFT: the mean over the trained targets of the whole step (docs/formats.md)
            batches = [loader.next_batch() for _ in range(grad_accum)]
            total = sum(int(mask.sum()) for _, _, mask in batches)
            for x, y, mask in batches:
                _, loss = model(x, y, mask, normaliser=float(max(total, 1)))
                loss.backward()
                loss_sum += loss.item()
            loss_sum *= grad_accum  # reported below as loss_sum / grad_accum
        else:
            for _ in range(grad_accum):
                x, y = loader.next_batch()
                _, loss = model(x, y)
                (loss / grad_accum).backward()
                loss_sum += loss.item()
        norm = clip_and_norm(model, args.grad_clip)
        lr = get_lr(step, args.schedule, args.lr, args.warmup, args.final_fraction, args.steps)
        muon_lr = get_lr(step, args.schedule, args.muon_lr, args.warmup, args.final_fraction, args.steps)
        optimizer.set_lr(lr, muon_lr)
        if not (getattr(loader, "masked", False) and total == 0):  # no trained target: no update
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss_sum / grad_accum)
        ms = (time.time() - start) * 1000
        print(f"step {step:4d}/{args.steps} | loss {losses[-1]:.6f} | norm {norm:.4f} | lr {lr:.4e}", end="")
        print(f" | {ms:.1f} ms")
    return losses


# ----------------------------------------------------------------------------------------------
# Main


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--model", help="dN, gpt2:dN, L=..,C=..,NH=..,V=..,maxT=.. or a model file (default d2)")
    add("--hf", help="HuggingFace GPT-2 name or directory, instead of --model")
    add("--seed", type=int, default=42, help="init seed; random batches use seed + 1 (default 42)")
    add("-b", dest="B", type=int, default=4, help="micro-batch size (default 4)")
    add("-t", dest="T", type=int, default=64, help="sequence length (default 64)")
    add("-d", dest="total_batch", type=int, default=-1, help="tokens per step (default -1: B*T)")
    add("--steps", type=int, default=10, help="optimizer steps (default 10)")
    add("-l", "--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    add("-c", "--weight-decay", type=float, default=0.0, help="AdamW decay of 2-D tensors (default 0)")
    add("-u", "--warmup", type=int, default=0, help="warmup steps (default 0)")
    add("-q", "--final-fraction", type=float, default=1.0, help="final lr / peak lr (default 1.0)")
    add("-k", "--schedule", default="cosine", choices=["cosine", "linear", "constant", "wsd"])
    add("--beta1", type=float, default=0.9)
    add("--beta2", type=float, default=0.95)
    add("--eps", type=float, default=1e-8)
    add("--grad-clip", type=float, default=1.0, help="global norm clip, 0 = off (default 1.0)")
    add("--optimizer", choices=["adamw", "muon"], default="adamw",
        help="muon: Muon for the blocks' 2-D matrices, AdamW (-l) for the rest (default adamw)")
    add("--muon-lr", type=float, default=0.02, help="Muon's peak learning rate (default 0.02)")
    add("--muon-momentum", type=float, default=0.95, help="Muon's Nesterov momentum (default 0.95)")
    add("--muon-ns-steps", type=int, default=5, help="Newton-Schulz iterations (default 5)")
    add("--muon-plant", choices=["none", "coef", "no-nesterov"], default="none",
        help="tests only: a deliberate Muon bug that test_gpt2 must catch")
    add("--input", help="glob of llm.c data shards (default: random tokens)")
    add("--mode", choices=["debug", "train", "none"], help="default: debug with --write-state; "
        "train with --input or --losses or when nothing is to be written; else none")
    add("--write-model", help="version 3 (fp32) model file, weights before any step")
    add("--write-model-bf16", help="version 5 (bf16) model file, weights before any step")
    add("--write-state", help="debug state file (debug mode; constant lr -l)")
    add("--loss-mask", type=float, default=0.0, help="debug mode: train only a random fraction of "
        "the targets (SFT-style masked loss; 0 = all, the unmasked llm.c state)")
    add("--masked-row", type=int, default=-1, help="with --loss-mask: this row has no trained target")
    add("--write-tokenizer", help="gpt2_tokenizer.bin made from --vocab-dir")
    add("--vocab-dir", default=os.path.join(REPO, "..", "shared", "data", "gpt2"))
    add("--losses", help="text file, one 'step loss' line per step")
    add("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = p.parse_args()

    writes_files = args.write_model or args.write_model_bf16 or args.write_tokenizer
    if args.mode is None:
        if args.write_state:
            args.mode = "debug"
        elif args.input or args.losses or not writes_files:
            args.mode = "train"
        else:
            args.mode = "none"
    if args.write_state and args.mode != "debug":
        fail("--write-state needs --mode debug")
    if args.hf and args.model:
        fail("give --model or --hf, not both")
    if args.B < 1 or args.T < 1:
        fail(f"-b and -t must be >= 1, found B={args.B}, T={args.T}")
    if args.total_batch == -1:
        args.total_batch = args.B * args.T
    if args.total_batch < 1 or args.total_batch % (args.B * args.T):
        fail(f"-d {args.total_batch}: must be a positive multiple of B*T = {args.B * args.T}")
    if args.steps < 0 or args.warmup < 0:
        fail(f"--steps and -u must be >= 0, found {args.steps} and {args.warmup}")
    if args.lr < 0 or args.weight_decay < 0 or args.grad_clip < 0 or args.eps <= 0:
        fail("-l, -c and --grad-clip must be >= 0 and --eps > 0")
    if not 0.0 <= args.final_fraction <= 1.0:
        fail(f"-q {args.final_fraction}: must be in [0, 1]")
    if not (0.0 <= args.beta1 < 1.0 and 0.0 <= args.beta2 < 1.0):
        fail(f"--beta1/--beta2 must be in [0, 1), found {args.beta1}, {args.beta2}")
    if not 0.0 <= args.loss_mask <= 1.0 or args.masked_row >= args.B:
        fail(f"--loss-mask must be in [0, 1] and --masked-row < B, found {args.loss_mask}, {args.masked_row}")
    if args.muon_lr < 0 or not 0.0 <= args.muon_momentum < 1.0 or not 1 <= args.muon_ns_steps <= 100:
        fail("--muon-lr must be >= 0, --muon-momentum in [0, 1), --muon-ns-steps in 1..100")
    if args.threads is not None and args.threads < 1:
        fail(f"--threads {args.threads}: must be >= 1")
    return args


def build_model(args):
    """Descriptor (random init with args.seed), model file, or HuggingFace."""
    if args.hf:
        return load_hf(args.hf)
    spec = args.model or "d2"
    cfg = parse_descriptor(spec)
    if cfg is None:
        if not os.path.isfile(spec):
            fail(f"--model {spec}: not a descriptor and no such file")
        return load_model_file(spec)
    model = GPT(cfg)  # nn defaults consume the RNG here, before the seeded init below
    model.init_random(args.seed)
    return model


def main():
    if sys.byteorder != "little":
        fail("this script writes little-endian files and needs a little-endian host")
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if hasattr(torch, "use_deterministic_algorithms"):
        torch.use_deterministic_algorithms(True)

    if args.write_tokenizer:
        write_tokenizer_file(args.vocab_dir, args.write_tokenizer)
    needs_model = args.mode != "none" or args.write_model or args.write_model_bf16
    if not needs_model:
        return
    model = build_model(args)
    cfg = model.cfg
    print(f"model {cfg}, {cfg.num_parameters()} parameters in the file layout")
    if args.T > cfg.maxT:
        fail(f"-t {args.T}: must be <= maxT ({cfg.maxT})")
    if args.write_model:
        write_model(model, args.write_model)
    if args.write_model_bf16:
        write_model(model, args.write_model_bf16, bf16=True)
    if args.mode == "none":
        return

    if args.input:
        loader = ShardLoader(args.input, args.B, args.T, cfg.V)
    else:
        loader = RandomLoader(args.seed, args.B, args.T, cfg.V)
    losses = run_debug(model, loader, args) if args.mode == "debug" else run_train(model, loader, args)
    if args.losses:
        write_losses(args.losses, losses)


if __name__ == "__main__":
    main()
