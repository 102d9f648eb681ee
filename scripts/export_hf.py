#!/usr/bin/env python3
"""Exports one of our model files (version 3 fp32 or 5 bf16; docs/formats.md) as a HuggingFace
GPT-2 directory, or a llama-family file (version 6 or 7, without QK-norm) as a LlamaForCausalLM
directory: config.json, model.safetensors and, when the vocabulary is GPT-2's (V = 50257),
GPT-2's tokenizer files vocab.json and merges.txt (copied from --vocab-dir).

    python3 scripts/export_hf.py -i log/model_00010000.bin -o gpt2-ours
    python3 -c "from transformers import GPT2LMHeadModel; GPT2LMHeadModel.from_pretrained('gpt2-ours')"

The weights are stored as GPT2LMHeadModel.save_pretrained stores them: names under "transformer.",
the four projection matrices as Conv1D weights (in, out), wte with V rows (our files pad it to Vp),
the output head tied to wte. A v3 file gives F32 tensors, a v5 file BF16 (both exactly as in the
file; --dtype overrides). Needs torch only; the directory is written beside -o and renamed into
place, and an existing non-empty -o is never overwritten. `-e DIR` in our programs reads it back.
"""
import argparse
import json
import os
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_gpt2 as ref  # noqa: E402  (its model-file reader and GPT)

import torch  # noqa: E402

GPT2_VOCAB_SIZE = 50257
GPT2_EOT = 50256
DTYPES = {"f32": ("F32", torch.float32, "float32"), "bf16": ("BF16", torch.bfloat16, "bfloat16")}


def fail(message):
    sys.exit("error: " + message)


def hf_tensors(model):
    """(name, tensor) in HF GPT2LMHeadModel's names and layouts, fp32."""
    out = [("transformer.wte.weight", model.wte.weight), ("transformer.wpe.weight", model.wpe.weight)]
    for layer, block in enumerate(model.h):
        prefix = f"transformer.h.{layer}."
        parts = [
            ("ln_1", block.ln_1, False), ("attn.c_attn", block.attn.c_attn, True),
            ("attn.c_proj", block.attn.c_proj, True), ("ln_2", block.ln_2, False),
            ("mlp.c_fc", block.mlp.c_fc, True), ("mlp.c_proj", block.mlp.c_proj, True),
        ]  # fmt: skip
        for name, module, conv1d in parts:
            # nn.Linear's (out, in) is HF Conv1D's (in, out) transposed
            out.append((prefix + name + ".weight", module.weight.t() if conv1d else module.weight))
            out.append((prefix + name + ".bias", module.bias))
    out += [("transformer.ln_f.weight", model.ln_f.weight), ("transformer.ln_f.bias", model.ln_f.bias)]
    return [(name, t.detach().contiguous()) for name, t in out]


def hf_llama_tensors(model):
    """(name, tensor) in HF LlamaForCausalLM's names; nn.Linear layouts as ours, so q, k, v are row
    blocks of our qkv weight and gate, up those of our fc weight. HF's Llama applies RoPE in the
    half-split layout (rotate_half) to q_proj's output as we do: no permutation."""
    cfg = model.cfg
    q_rows, kv_rows = cfg.NH * cfg.HS, cfg.KV * cfg.HS
    out = [("model.embed_tokens.weight", model.wte.weight)]
    for layer, block in enumerate(model.h):
        prefix = f"model.layers.{layer}."
        qkv = block.attn.qkv.weight
        fc = block.mlp.fc.weight
        out += [
            (prefix + "input_layernorm.weight", block.rms_1.weight),
            (prefix + "self_attn.q_proj.weight", qkv[:q_rows]),
            (prefix + "self_attn.k_proj.weight", qkv[q_rows : q_rows + kv_rows]),
            (prefix + "self_attn.v_proj.weight", qkv[q_rows + kv_rows :]),
            (prefix + "self_attn.o_proj.weight", block.attn.proj.weight),
            (prefix + "post_attention_layernorm.weight", block.rms_2.weight),
            (prefix + "mlp.gate_proj.weight", fc[: cfg.ffn]),
            (prefix + "mlp.up_proj.weight", fc[cfg.ffn :]),
            (prefix + "mlp.down_proj.weight", block.mlp.proj.weight),
        ]
    out += [("model.norm.weight", model.rms_f.weight), ("lm_head.weight", model.lm_head.weight)]
    return [(name, t.detach().contiguous()) for name, t in out]


def hf_llama_config(cfg, dtype):
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.V,
        "hidden_size": cfg.C,
        "intermediate_size": cfg.ffn,
        "num_hidden_layers": cfg.L,
        "num_attention_heads": cfg.NH,
        "num_key_value_heads": cfg.KV,
        "head_dim": cfg.HS,
        "max_position_embeddings": cfg.maxT,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": DTYPES[dtype][2],
    }
    if cfg.V == GPT2_VOCAB_SIZE:
        config["bos_token_id"] = config["eos_token_id"] = GPT2_EOT
    return config


def safetensors_bytes(tensors, dtype):
    """The safetensors file: header length (u64 LE), JSON header padded with spaces so the data
    starts 8-byte aligned, then the tensors in order."""
    code, torch_dtype, _ = DTYPES[dtype]
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors:
        if torch_dtype == torch.bfloat16:  # exact for a v5 file's values; round-to-nearest-even else
            blob = ref.tensor_bytes(ref.to_bf16_bits(t.float()))
        else:
            blob = ref.tensor_bytes(t.float())
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return [struct.pack("<Q", len(text)), text] + blobs


def hf_config(cfg, dtype):
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.V,
        "n_positions": cfg.maxT,
        "n_ctx": cfg.maxT,
        "n_embd": cfg.C,
        "n_layer": cfg.L,
        "n_head": cfg.NH,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        # our trainers use no dropout
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "torch_dtype": DTYPES[dtype][2],
    }
    if cfg.V == GPT2_VOCAB_SIZE:
        config["bos_token_id"] = config["eos_token_id"] = GPT2_EOT
    return config


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", required=True, help="model file, version 3 (fp32) or 5 (bf16); llama 6 or 7")
    p.add_argument("-o", "--output", required=True, help="directory to create (absent or empty)")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="tensor type (default: the file's, f32 for v3, bf16 for v5)")
    p.add_argument("--vocab-dir", default=os.path.join(ref.REPO, "..", "shared", "data", "gpt2"),
                   help="GPT-2's encoder.json and vocab.bpe, copied as vocab.json and merges.txt when V = 50257")
    p.add_argument("--no-tokenizer", action="store_true", help="write no tokenizer files")
    args = p.parse_args()

    out = os.path.abspath(args.output.rstrip("/") or "/")
    if os.path.lexists(out) and (not os.path.isdir(out) or os.listdir(out)):
        fail(f"-o {args.output}: exists and is not an empty directory; not overwriting it")
    if not os.path.isfile(args.input):
        fail(f"-i {args.input}: no such file")
    with open(args.input, "rb") as f:
        head = f.read(8)
    version = struct.unpack("<2i", head)[1] if len(head) == 8 else 0
    model = ref.load_model_file(args.input)  # validates the header against the length
    cfg = model.cfg
    llama = cfg.arch == "llama"
    if llama and cfg.qknorm:
        fail(f"-i {args.input}: qknorm=1 (header[11]): LlamaForCausalLM has no QK-norm; not exported")
    dtype = args.dtype or ("bf16" if version in (5, 7) else "f32")
    tokenizer = cfg.V == GPT2_VOCAB_SIZE and not args.no_tokenizer
    sources = [os.path.join(args.vocab_dir, name) for name in ("encoder.json", "vocab.bpe")]
    if tokenizer:
        for path in sources:
            if not os.path.isfile(path):
                fail(f"--vocab-dir {args.vocab_dir}: {os.path.basename(path)} missing (GPT-2's "
                     "tokenizer files; --no-tokenizer writes none)")

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(out) + ".tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's is 0700
    try:
        config = hf_llama_config(cfg, dtype) if llama else hf_config(cfg, dtype)
        tensors = hf_llama_tensors(model) if llama else hf_tensors(model)
        ref.atomic_write(os.path.join(tmp, "config.json"), [(json.dumps(config, indent=2) + "\n").encode()])
        ref.atomic_write(os.path.join(tmp, "model.safetensors"), safetensors_bytes(tensors, dtype))
        if tokenizer:
            shutil.copyfile(sources[0], os.path.join(tmp, "vocab.json"))
            shutil.copyfile(sources[1], os.path.join(tmp, "merges.txt"))
        if os.path.isdir(out):
            os.rmdir(out)  # empty (checked above); fails if something appeared since
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = "config.json, model.safetensors" + (", vocab.json, merges.txt" if tokenizer else "")
    note = "" if tokenizer or args.no_tokenizer else f" (V = {cfg.V} is not GPT-2's vocabulary: no tokenizer files)"
    print(f"wrote {args.output}: {files}; {cfg}, {dtype}{note}")


if __name__ == "__main__":
    main()
