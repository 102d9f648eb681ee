#!/usr/bin/env python3
"""PyTorch fp32 reference for the C GPT-2 trainer (formats: docs/formats.md).

Builds a GPT-2 or a llama-family model (random init from a descriptor such as d2 or
arch=llama,L=2,C=64,NH=4,KV=2,V=1000,maxT=64, a model file, or HuggingFace GPT-2 weights) and can:
  --write-model / --write-model-bf16   the weights before any step (version 3 / 5; llama 6 / 7)
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
    arch = "gpt2"

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
        return cross_entropy_loss(logits, targets, loss_mask, normaliser)

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


# ----------------------------------------------------------------------------------------------
# The llama family (docs/formats.md, llmc/model_config.h): RMSNorm, RoPE (half-split), SwiGLU,
# grouped-query attention, optional QK-norm, untied output head, no biases.

MODEL_ARCH_LLAMA = 1  # header[8] of a version 6/7 model file
RMSNORM_EPS = 1e-5


def llama_default_ffn(C):
    """The multiple of 64 nearest 8C/3 (ties up), at least 64: as llmc/model_config.h."""
    return max(64, (C + 12) // 24 * 64)


class LlamaConfig:
    arch = "llama"

    def __init__(self, L, C, NH, V=50257, maxT=1024, KV=None, ffn=None, rope_theta=10000.0, qknorm=0):
        self.L, self.C, self.NH, self.V, self.maxT = L, C, NH, V, maxT
        self.KV = NH if KV is None else KV
        self.ffn = llama_default_ffn(C) if ffn is None else ffn
        # an fp32 in the model file and the C config
        self.rope_theta = struct.unpack("<f", struct.pack("<f", float(rope_theta)))[0]
        self.qknorm = int(qknorm)
        self.HS = C // NH
        self.Vp = (V + 127) // 128 * 128

    def __repr__(self):
        return (
            f"arch=llama,L={self.L},C={self.C},NH={self.NH},KV={self.KV},V={self.V},maxT={self.maxT},"
            f"ffn={self.ffn},rope_theta={self.rope_theta:g},qknorm={self.qknorm} (Vp={self.Vp})"
        )

    def problem(self):
        """Why the shape is not one the C side accepts (None if it is); names the field."""
        if self.C % self.NH:
            return f"C ({self.C}) must be a multiple of NH ({self.NH})"
        if not 1 <= self.KV <= self.NH or self.NH % self.KV:
            return f"KV ({self.KV}) must divide NH ({self.NH})"
        if self.HS % 2:
            return f"the head size C/NH ({self.HS}) must be even (RoPE)"
        if not 1.0 <= self.rope_theta <= 1e9:
            return f"rope_theta ({self.rope_theta}) must be in 1..1e9"
        if self.qknorm not in (0, 1):
            return f"qknorm ({self.qknorm}) must be 0 or 1"
        return None

    def qkv_width(self):
        return (self.NH + 2 * self.KV) * self.HS

    def num_parameters(self):
        C, F, HS = self.C, self.ffn, self.HS
        per_layer = C + self.qkv_width() * C + (2 * HS if self.qknorm else 0) + C * C + C + 2 * F * C + C * F
        return 2 * self.Vp * C + self.L * per_layer + C


class RMSNorm(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMSNORM_EPS) * self.weight


def rope_tables(T, HS, theta):
    """cos and sin (T, HS/2) of the angles pos * theta^(-2i/HS), computed in double with the C
    library's pow, cos and sin and rounded once to fp32: llmc/rope_table.h's values, bit for bit."""
    half = HS // 2
    inv_freq = [math.pow(theta, -2.0 * i / HS) for i in range(half)]
    angles = [[pos * f for f in inv_freq] for pos in range(T)]
    cos = torch.tensor([[math.cos(a) for a in row] for row in angles], dtype=torch.float32)
    sin = torch.tensor([[math.sin(a) for a in row] for row in angles], dtype=torch.float32)
    return cos.view(T, half), sin.view(T, half)


def apply_rope(x, cos, sin):
    """Half-split rotation (HuggingFace Llama's rotate_half) of x (B, H, T, HS)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.NH, self.KV, self.HS = cfg.NH, cfg.KV, cfg.HS
        self.qkv = nn.Linear(cfg.C, cfg.qkv_width(), bias=False)  # [NH q heads | KV k | KV v]
        self.proj = nn.Linear(cfg.C, cfg.C, bias=False)
        if cfg.qknorm:  # one weight per layer, shared by all heads
            self.q_norm, self.k_norm = RMSNorm(cfg.HS), RMSNorm(cfg.HS)
        self.qknorm = cfg.qknorm

    def forward(self, x, mask, cos, sin):
        B, T, C = x.shape
        NH, KV, HS = self.NH, self.KV, self.HS
        q, k, v = self.qkv(x).split([NH * HS, KV * HS, KV * HS], dim=2)
        q, k, v = q.view(B, T, NH, HS), k.view(B, T, KV, HS), v.view(B, T, KV, HS)
        if self.qknorm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # query head h reads kv head h // (NH / KV)
        k, v = k.repeat_interleave(NH // KV, dim=1), v.repeat_interleave(NH // KV, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HS))
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class SwiGLU(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ffn = cfg.ffn
        self.fc = nn.Linear(cfg.C, 2 * cfg.ffn, bias=False)  # [gate | up]
        self.proj = nn.Linear(cfg.ffn, cfg.C, bias=False)

    def forward(self, x):
        gate, up = self.fc(x).split(self.ffn, dim=-1)
        return self.proj(F.silu(gate) * up)


class LlamaBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.rms_1 = RMSNorm(cfg.C)
        self.attn = LlamaAttention(cfg)
        self.rms_2 = RMSNorm(cfg.C)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, mask, cos, sin):
        x = x + self.attn(self.rms_1(x), mask, cos, sin)
        return x + self.mlp(self.rms_2(x))


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.V, cfg.C)
        self.h = nn.ModuleList(LlamaBlock(cfg) for _ in range(cfg.L))
        self.rms_f = RMSNorm(cfg.C)
        self.lm_head = nn.Linear(cfg.C, cfg.V, bias=False)  # untied
        mask = torch.triu(torch.ones(cfg.maxT, cfg.maxT, dtype=torch.bool), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, idx, targets, loss_mask=None, normaliser=None):
        T = idx.shape[1]
        cos, sin = rope_tables(T, self.cfg.HS, self.cfg.rope_theta)
        x = self.wte(idx)
        for block in self.h:
            x = block(x, self.mask, cos, sin)
        logits = self.lm_head(self.rms_f(x))
        return cross_entropy_loss(logits, targets, loss_mask, normaliser)

    @torch.no_grad()
    def init_random(self, seed):
        """llmc/model_config.h's llama init: manual_seed, then normal_ in this exact order."""
        residual_std = 0.02 / math.sqrt(2 * self.cfg.L)
        torch.manual_seed(seed)
        self.wte.weight.normal_(mean=0.0, std=0.02)
        for block in self.h:
            block.attn.qkv.weight.normal_(mean=0.0, std=0.02)
            block.attn.proj.weight.normal_(mean=0.0, std=residual_std)
            block.mlp.fc.weight.normal_(mean=0.0, std=0.02)
            block.mlp.proj.weight.normal_(mean=0.0, std=residual_std)
        self.lm_head.weight.normal_(mean=0.0, std=0.02)


def cross_entropy_loss(logits, targets, loss_mask, normaliser):
    """logits (B, T, V) and the mean cross-entropy; with loss_mask (B, T) of 0/1, the sum over the
    targets where it is 1 divided by normaliser (default: their count, at least 1)."""
    if loss_mask is None:
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss
    losses = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    mask = loss_mask.reshape(-1).to(losses.dtype)
    denominator = mask.sum().clamp(min=1.0) if normaliser is None else normaliser
    return logits, (losses * mask).sum() / denominator


# The llama family's 11 file tensors (qnormw, knormw: 0 elements, absent, without QK-norm)
LLAMA_FILE_TENSORS = [
    ("wte", "wte.weight"), ("rms1w", "h.rms_1.weight"), ("qkvw", "h.attn.qkv.weight"),
    ("qnormw", "h.attn.q_norm.weight"), ("knormw", "h.attn.k_norm.weight"),
    ("attprojw", "h.attn.proj.weight"), ("rms2w", "h.rms_2.weight"), ("fcw", "h.mlp.fc.weight"),
    ("fcprojw", "h.mlp.proj.weight"), ("rmsfw", "rms_f.weight"), ("lm_head", "lm_head.weight"),
]  # fmt: skip
PADDED_TENSORS = ("wte", "lm_head")  # V rows in the model, Vp in the file (the rest zero)


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


def file_tensor_table(cfg):
    if cfg.arch == "llama":
        return [(n, a) for n, a in LLAMA_FILE_TENSORS if cfg.qknorm or n not in ("qnormw", "knormw")]
    return FILE_TENSORS


def tensor_params(model, attr):
    """The parameters behind one file tensor: one per layer for "h." paths, else one."""
    if attr.startswith("h."):
        return [operator.attrgetter(attr[2:])(block) for block in model.h]
    return [operator.attrgetter(attr)(model)]


def file_tensors(model, grads=False):
    """The 16 tensors in file order (per-layer ones stacked, wte zero-padded to Vp rows), as copies."""
    out = []
    for name, attr in file_tensor_table(model.cfg):
        params = tensor_params(model, attr)
        if grads:
            params = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        t = torch.stack([p.detach() for p in params]) if attr.startswith("h.") else params[0].detach().clone()
        if name in PADDED_TENSORS:
            t = torch.cat([t, t.new_zeros(model.cfg.Vp - model.cfg.V, model.cfg.C)])
        out.append(t.contiguous())
    return out


# ----------------------------------------------------------------------------------------------
# Model sources: descriptor, model file, HuggingFace


def parse_llama_descriptor(text):
    """`arch=llama,L=..,C=..,NH=..,KV=..,V=..,maxT=..[,ffn=..][,rope_theta=..][,qknorm=1]`."""
    fields = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key == "arch":
            continue
        if key == "rope_theta":
            try:
                fields[key] = float(value)
            except ValueError:
                fail(f"--model {text}: rope_theta: expected a number, found '{value}'")
            continue
        keys = ("L", "C", "NH", "KV", "V", "maxT", "ffn", "qknorm")
        low = 0 if key == "qknorm" else 1
        if key not in keys or not value.isdigit() or int(value) < low:
            fail(f"--model {text}: bad field '{item}' (expected {', '.join(keys)} = integer, rope_theta = number)")
        fields[key] = int(value)
    for key in ("L", "C", "NH"):
        if key not in fields:
            fail(f"--model {text}: field {key} missing")
    cfg = LlamaConfig(**fields)
    problem = cfg.problem()
    if problem:
        fail(f"--model {text}: {problem}")
    return cfg


def parse_descriptor(text):
    """`dN`, `gpt2:dN` or `L=2,C=64,NH=4,V=1000,maxT=128` -> Config, `arch=llama,...` ->
    LlamaConfig; None if not a descriptor."""
    if text.startswith("arch=llama"):
        return parse_llama_descriptor(text)
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
    if version not in (3, 5, 6, 7):
        fail(f"{path}: header field version: expected 3 (fp32), 5 (bf16), 6 or 7 (llama), found {version}")
    if version in (6, 7) and header[8] != MODEL_ARCH_LLAMA:
        fail(f"{path}: header field arch (header[8]): expected {MODEL_ARCH_LLAMA} (llama), found {header[8]}")
    for name, value in (("maxT", maxT), ("V", V), ("L", L), ("NH", NH), ("C", C)):
        if value < 1:
            fail(f"{path}: header field {name}: expected a positive value, found {value}")
    if C % NH:
        fail(f"{path}: header field NH: C ({C}) must be a multiple of NH, found {NH}")
    if Vp < V:
        fail(f"{path}: header field Vp: expected >= V ({V}), found {Vp}")
    if version in (6, 7):
        KV, ffn, qknorm = header[9:12]
        rope_theta = struct.unpack("<f", struct.pack("<i", header[12]))[0]
        if KV < 1 or ffn < 1:
            fail(f"{path}: header field KV or ffn (header[9..10]): expected positive values, found {KV}, {ffn}")
        cfg = LlamaConfig(L, C, NH, V, maxT, KV, ffn, rope_theta, qknorm)
        problem = cfg.problem()
        if problem:
            fail(f"{path}: header (llama fields, header[8..12]): {problem}")
    else:
        cfg = Config(L, C, NH, V, maxT)
    cfg.Vp = Vp  # keep the file's padding
    elem = 4 if version in (3, 6) else 2
    expected = HEADER_BYTES + cfg.num_parameters() * elem
    if len(data) != expected:
        fail(f"{path}: file length: expected {expected} bytes for {cfg}, found {len(data)}")
    dtype = torch.float32 if version in (3, 6) else torch.bfloat16
    flat = torch.frombuffer(data, dtype=dtype, offset=HEADER_BYTES).float()
    model = Llama(cfg) if cfg.arch == "llama" else GPT(cfg)
    offset = 0
    with torch.no_grad():
        for name, attr in file_tensor_table(cfg):
            for param in tensor_params(model, attr):
                n = Vp * C if name in PADDED_TENSORS else param.numel()
                chunk = flat[offset : offset + n]
                offset += n
                if name in PADDED_TENSORS:
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


def hf_llama_problem(hc):
    """Why our llama is not the model of a HuggingFace LlamaConfig (None if it is); the C loader
    (llmc/safetensors.h) refuses the same keys."""
    checks = [
        ("hidden_act", "silu", "SwiGLU, the only MLP implemented"),
        ("rms_norm_eps", 1e-5, "our RMSNorm's"),
        ("rope_scaling", None, "RoPE scaling is not implemented"),
        ("attention_bias", False, "attention biases are not implemented"),
        ("mlp_bias", False, "MLP biases are not implemented"),
        ("tie_word_embeddings", False, "a tied output head is not implemented for llama"),
        ("pretraining_tp", 1, "the sliced projections are not implemented"),
    ]
    for key, expected, why in checks:
        found = getattr(hc, key, expected)
        if found != expected:
            return f"{key}: expected {expected!r} ({why}), found {found!r}"
    return None


def load_hf_llama(name):
    """A HuggingFace LlamaForCausalLM (directory) as our Llama: q, k, v and gate, up concatenated."""
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(name, torch_dtype=torch.float32)
    hc = hf.config
    problem = hf_llama_problem(hc)
    if problem:
        fail(f"--hf {name}: config.json: {problem}")
    kv = getattr(hc, "num_key_value_heads", None) or hc.num_attention_heads
    cfg = LlamaConfig(hc.num_hidden_layers, hc.hidden_size, hc.num_attention_heads, hc.vocab_size,
                      hc.max_position_embeddings, kv, hc.intermediate_size, getattr(hc, "rope_theta", 10000.0))
    problem = cfg.problem()
    if problem:
        fail(f"--hf {name}: config.json: {problem}")
    sd = {k: v.detach().float() for k, v in hf.state_dict().items()}
    model = Llama(cfg)
    with torch.no_grad():
        model.wte.weight.copy_(sd["model.embed_tokens.weight"])
        for layer, block in enumerate(model.h):
            p = f"model.layers.{layer}."
            attn = [sd[p + f"self_attn.{x}_proj.weight"] for x in "qkv"]
            block.rms_1.weight.copy_(sd[p + "input_layernorm.weight"])
            block.attn.qkv.weight.copy_(torch.cat(attn))
            block.attn.proj.weight.copy_(sd[p + "self_attn.o_proj.weight"])
            block.rms_2.weight.copy_(sd[p + "post_attention_layernorm.weight"])
            block.mlp.fc.weight.copy_(torch.cat([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]]))
            block.mlp.proj.weight.copy_(sd[p + "mlp.down_proj.weight"])
        model.rms_f.weight.copy_(sd["model.norm.weight"])
        model.lm_head.weight.copy_(sd["lm_head.weight"])
    return model


def load_hf(name):
    """GPT-2 weights from HuggingFace (`gpt2`, `gpt2-medium`, ... or a local directory), or a
    LlamaForCausalLM directory (model_type llama)."""
    try:
        from transformers import AutoConfig, GPT2LMHeadModel
    except ImportError:
        fail("--hf needs the transformers package")
    try:
        if AutoConfig.from_pretrained(name).model_type == "llama":
            return load_hf_llama(name)
    except (OSError, ValueError) as e:
        fail(f"--hf {name}: {e}")
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
    ints = [MODEL_MAGIC, version, cfg.maxT, cfg.V, cfg.L, cfg.NH, cfg.C, cfg.Vp]
    if cfg.arch == "llama":  # docs/formats.md: versions 6 / 7, the shape's rest in header[8..12]
        ints[1] = 7 if bf16 else 6
        ints += [MODEL_ARCH_LLAMA, cfg.KV, cfg.ffn, cfg.qknorm, float_bits(cfg.rope_theta)]
    version = ints[1]
    head = header_bytes(ints)
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
    add("--model", help="dN, gpt2:dN, L=..,C=..,NH=..,V=..,maxT=.., arch=llama,L=..,C=..,NH=..,KV=..,V=..,"
        "maxT=..[,ffn=..][,rope_theta=..][,qknorm=1] or a model file (default d2)")
    add("--hf", help="HuggingFace GPT-2 name or directory (or a LlamaForCausalLM directory), instead of --model")
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
    # nn defaults consume the RNG here, before the seeded init below
    model = Llama(cfg) if cfg.arch == "llama" else GPT(cfg)
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
