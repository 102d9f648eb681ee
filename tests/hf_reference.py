#!/usr/bin/env python3
"""HuggingFace side of tests/test_hf.sh (needs transformers and safetensors: build/venv-hf, made by
scripts/install_deps.sh test).

  make-llama DIR --seed S --shape L,C,NH,KV,V,maxT,ffn [--rope-theta X] [--dtype f32|bf16|f16]
      a random LlamaForCausalLM, every parameter random (untied head, rms_norm_eps 1e-5).
  make DIR --seed S --shape L,C,NH,V,maxT [--dtype f32|bf16|f16] [--no-prefix]
      a random GPT-2 made by transformers, saved by save_pretrained (safetensors); every
      parameter random (HF's init leaves biases at 0 and layernorm weights at 1: noise is added
      so that a swapped or untransposed tensor shows). --no-prefix saves the GPT2Model inside,
      whose names lack "transformer.".
  loss DIR STATE [--plant]
      transformers' loss on the debug state's batch against the state's loss (exit 1 if off).
  logits DIR MODEL.bin [--plant]
      AutoModelForCausalLM.from_pretrained(DIR)'s logits (GPT-2 or Llama) against our reference's for MODEL.bin
      (scripts/train_gpt2.py's reader) on random tokens (exit 1 if off).
  hostile SRC_DIR OUT_DIR CASE
      a copy of SRC_DIR broken one way (see HOSTILE).
--plant multiplies one weight by 1.01 first: the comparison must then fail.
"""
import json
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import train_gpt2 as ref  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# Both sides compute in fp32 (u = 2^-24) and differ only in how they round: HF's Conv1D (addmm)
# against nn.Linear, attention divided by sqrt(hs) against multiplied by its inverse, GELU's tanh
# formula written out against F.gelu. These are the differences test_gpt2.c's tolerances cover
# (there between C and PyTorch): logits |diff| <= 1e-5 * (1 + |ref|) (sums of K <= 4C terms over
# ~4L+2 layers: sqrt(4L+2) * sqrt(4C) * u = 3e-6 for L = 2, C = 64), and the mean loss 1e-5
# relative (its terms' errors average out). --plant scales the final layernorm's weight, and so
# every logit, by 1.01: ~1e-2 relative on the logits, and ~5e-5 on the loss of a random model
# (2% of its ~0.02 distance from ln V): both fail.
LOGITS_TOL = 1e-5
LOSS_TOL = 1e-5


def fail(message):
    sys.exit("error: " + message)


def hf_model(directory):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32)
    model.eval()
    return model


def plant(model):
    with torch.no_grad():  # every logit 1% larger
        final_norm = model.transformer.ln_f if hasattr(model, "transformer") else model.model.norm
        final_norm.weight *= 1.01


def cmd_make_llama(args):
    """A random LlamaForCausalLM (shape L,C,NH,KV,V,maxT,ffn) with every parameter random."""
    from transformers import LlamaConfig, LlamaForCausalLM

    L, C, NH, KV, V, maxT, ffn = (int(x) for x in args.shape.split(","))
    config = LlamaConfig(num_hidden_layers=L, hidden_size=C, num_attention_heads=NH, num_key_value_heads=KV,
                         vocab_size=V, max_position_embeddings=maxT, intermediate_size=ffn, rms_norm_eps=1e-5,
                         rope_theta=args.rope_theta, tie_word_embeddings=False)
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    model.to(dtype).save_pretrained(args.dir, safe_serialization=True)
    print(f"wrote {args.dir} (llama {args.shape}, {args.dtype})")


def cmd_make(args):
    from transformers import GPT2Config, GPT2LMHeadModel

    L, C, NH, V, maxT = (int(x) for x in args.shape.split(","))
    config = GPT2Config(n_layer=L, n_embd=C, n_head=NH, vocab_size=V, n_positions=maxT,
                        activation_function="gelu_new", layer_norm_epsilon=1e-5)
    torch.manual_seed(args.seed)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    model = model.to(dtype)
    (model.transformer if args.no_prefix else model).save_pretrained(args.dir, safe_serialization=True)
    print(f"wrote {args.dir} ({args.shape}, {args.dtype}{', no prefix' if args.no_prefix else ''})")


def read_state_batch(path):
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack_from("<256i", data)
    B, T = header[2], header[3]
    ints = B * T
    x = torch.tensor(struct.unpack_from(f"<{ints}i", data, 1024), dtype=torch.long).view(B, T)
    y = torch.tensor(struct.unpack_from(f"<{ints}i", data, 1024 + 4 * ints), dtype=torch.long).view(B, T)
    return x, y, data, 1024 + 8 * ints


def cmd_loss(args):
    model = hf_model(args.dir)
    if args.plant:
        plant(model)
    x, y, data, logits_offset = read_state_batch(args.state)
    V = model.config.vocab_size
    want = struct.unpack_from("<f", data, logits_offset + 4 * x.numel() * V)[0]
    with torch.no_grad():
        logits = model(x).logits
        got = F.cross_entropy(logits.view(-1, V), y.view(-1)).item()
    rel = abs(got - want) / abs(want)
    print(f"transformers loss {got:.7f}, state {want:.7f}, relative diff {rel:.2e} (tolerance {LOSS_TOL:.0e})")
    sys.exit(0 if rel <= LOSS_TOL else 1)


def cmd_logits(args):
    model = hf_model(args.dir)
    if args.plant:
        plant(model)
    ours = ref.load_model_file(args.model)
    ours.eval()
    generator = torch.Generator().manual_seed(7)
    T = min(ours.cfg.maxT, 32)
    x = torch.randint(0, ours.cfg.V, (2, T), generator=generator)
    with torch.no_grad():
        want, _ = ours(x, x)
        got = model(x).logits
    if got.shape != want.shape:
        fail(f"logits shape {tuple(got.shape)}, ours {tuple(want.shape)}")
    excess = ((got - want).abs() / (1 + want.abs())).max().item()
    print(f"max |diff| / (1 + |ours|) = {excess:.2e} over {got.numel()} logits (tolerance {LOGITS_TOL:.0e})")
    sys.exit(0 if excess <= LOGITS_TOL else 1)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data)
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def write_safetensors(path, header, body, length=None):
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text) if length is None else length) + text + body)


def first_tensor(header, suffix):
    return next(k for k in header if k.endswith(suffix))


# case -> what it breaks (the C loader must name the file and the field)
HOSTILE = {
    "truncated": "model.safetensors cut 100 bytes short",
    "header_length": "header length larger than the file",
    "offsets": "data_offsets of wpe past the end of the data",
    "shape": "c_fc.weight's shape swapped (out, in)",
    "dtype": "a tensor of dtype I64",
    "missing": "ln_f.bias missing",
    "unknown": "an extra tensor h.99.mlp.c_fc.weight",
    "untied": "lm_head.weight differing from wte",
    "activation": "config.json activation_function relu",
    "epsilon": "config.json layer_norm_epsilon 1e-6",
    "inverse_layer": "config.json scale_attn_by_inverse_layer_idx true",
    "upcast": "config.json reorder_and_upcast_attn true",
    "n_embd": "config.json n_embd 48 (tensors of 64)",
    "planted": "valid, but ln_f.weight (F32) and so every logit 1% larger: a check must fail",
    # a LlamaForCausalLM directory's
    "rope_scaling": "config.json rope_scaling linear, factor 2",
    "attention_bias": "config.json attention_bias true",
    "tied": "config.json tie_word_embeddings true",
    "rms_eps": "config.json rms_norm_eps 1e-6",
    "kv_heads": "config.json num_key_value_heads 3 (num_attention_heads 4)",
    "llama_missing": "model.norm.weight missing",
    "llama_shape": "a k_proj.weight with q_proj's shape",
}


def cmd_hostile(args):
    shutil.copytree(args.src, args.out)
    st = os.path.join(args.out, "model.safetensors")
    cfg_path = os.path.join(args.out, "config.json")
    header, body = read_safetensors(st)
    case = args.case
    config_edits = {"activation": ("activation_function", "relu"), "epsilon": ("layer_norm_epsilon", 1e-6),
                    "inverse_layer": ("scale_attn_by_inverse_layer_idx", True),
                    "upcast": ("reorder_and_upcast_attn", True), "n_embd": ("n_embd", 48),
                    "rope_scaling": ("rope_scaling", {"type": "linear", "factor": 2.0}),
                    "attention_bias": ("attention_bias", True), "tied": ("tie_word_embeddings", True),
                    "rms_eps": ("rms_norm_eps", 1e-6), "kv_heads": ("num_key_value_heads", 3)}
    if case == "truncated":
        with open(st, "r+b") as f:
            f.truncate(os.path.getsize(st) - 100)
    elif case == "header_length":
        write_safetensors(st, header, body, length=len(json.dumps(header)) + len(body) + 1)
    elif case == "offsets":
        name = first_tensor(header, "wpe.weight")
        begin, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [len(body) - 4, len(body) - 4 + end - begin]
        write_safetensors(st, header, body)
    elif case == "shape":
        name = first_tensor(header, "h.0.mlp.c_fc.weight")
        header[name]["shape"] = header[name]["shape"][::-1]
        write_safetensors(st, header, body)
    elif case == "dtype":
        name = first_tensor(header, "ln_f.weight")
        header[name]["dtype"] = "I64"
        write_safetensors(st, header, body)
    elif case == "missing":
        del header[first_tensor(header, "ln_f.bias")]
        write_safetensors(st, header, body)
    elif case == "unknown":
        name = first_tensor(header, "h.0.mlp.c_fc.weight")
        header[name.replace("h.0.", "h.99.")] = dict(header[name])
        write_safetensors(st, header, body)
    elif case == "untied":
        wte = header[first_tensor(header, "wte.weight")]
        begin, end = wte["data_offsets"]
        copy = bytearray(body[begin:end])
        copy[0] ^= 0x40
        header["lm_head.weight"] = dict(wte, data_offsets=[len(body), len(body) + end - begin])
        write_safetensors(st, header, body + bytes(copy))
    elif case == "planted":
        entry = header[first_tensor(header, "ln_f.weight")]
        if entry["dtype"] != "F32":
            fail("hostile planted: needs an F32 directory")
        body = bytearray(body)
        for begin in range(*entry["data_offsets"], 4):
            (value,) = struct.unpack_from("<f", body, begin)
            struct.pack_into("<f", body, begin, value * 1.01)
        write_safetensors(st, header, bytes(body))
    elif case == "llama_missing":
        del header["model.norm.weight"]
        write_safetensors(st, header, body)
    elif case == "llama_shape":
        header["model.layers.0.self_attn.k_proj.weight"]["shape"] = header["model.layers.0.self_attn.q_proj.weight"]["shape"]
        write_safetensors(st, header, body)
    elif case in config_edits:
        with open(cfg_path) as f:
            config = json.load(f)
        key, value = config_edits[case]
        config[key] = value
        with open(cfg_path, "w") as f:
            json.dump(config, f)
    else:
        fail(f"hostile: no case {case} (expected one of {', '.join(HOSTILE)})")
    print(f"wrote {args.out}: {HOSTILE[case]}")


def main():
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--shape", default="2,64,4,1000,64")
    m.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32")
    m.add_argument("--no-prefix", action="store_true")
    ml = sub.add_parser("make-llama")
    ml.add_argument("dir")
    ml.add_argument("--seed", type=int, default=1)
    ml.add_argument("--shape", default="2,64,4,2,1000,64,192")
    ml.add_argument("--rope-theta", type=float, default=10000.0)
    ml.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32")
    lo = sub.add_parser("loss")
    lo.add_argument("dir")
    lo.add_argument("state")
    lo.add_argument("--plant", action="store_true")
    lg = sub.add_parser("logits")
    lg.add_argument("dir")
    lg.add_argument("model")
    lg.add_argument("--plant", action="store_true")
    h = sub.add_parser("hostile")
    h.add_argument("src")
    h.add_argument("out")
    h.add_argument("case")
    args = p.parse_args()
    torch.set_num_threads(1)
    commands = {"make": cmd_make, "make-llama": cmd_make_llama, "loss": cmd_loss, "logits": cmd_logits}
    commands["hostile"] = cmd_hostile
    commands[args.command](args)


if __name__ == "__main__":
    main()
