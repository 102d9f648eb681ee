#!/usr/bin/env python3
"""PyTorch reference of the trainers' -h: scores an llm.c eval file (HellaSwag; magic 20240522,
docs/formats.md) with a model, as llm.c's dev/data/hellaswag.py does: each example's 4 rows of
context + ending, the cross-entropy of every next token, each ending's mean over its tokens
(acc_norm), the lowest mean is the prediction (the first on a tie).

    python3 scripts/eval_hellaswag.py -e MODEL.bin|DESCRIPTOR -i FILE.bin [--seed N] [--threads N]
                                      [--out SCORES.txt]

--out writes the trainers' --hellaswag-out lines: step (0) example label prediction 4 mean losses.
"""
import argparse
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_gpt2 as ref  # noqa: E402  (sets the portable CPU kernels before importing torch)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

EVAL_MAGIC, COMPLETIONS = 20240522, 4


def read_eval_file(path):
    """The examples of an eval file: (label, context ids, 4 ending ids); checks every field."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < ref.HEADER_BYTES:
        ref.fail(f"{path}: header: expected {ref.HEADER_BYTES} bytes, file has {len(data)}")
    magic, version, n, longest = struct.unpack_from("<4i", data)
    if magic != EVAL_MAGIC or version != 1:
        ref.fail(f"{path}: header: magic {magic} version {version}, expected {EVAL_MAGIC} 1")
    words = struct.unpack_from("<%dH" % ((len(data) - ref.HEADER_BYTES) // 2), data, ref.HEADER_BYTES)
    examples, at = [], 0
    for i in range(n):
        start, nbytes, index, label, k, nctx = words[at : at + 6]
        record = words[at : at + nbytes // 2]
        if start != 65535 or index != i or k != COMPLETIONS or label >= k or len(record) * 2 != nbytes:
            ref.fail(f"{path}: example {i}: bad record fields")
        context, pos, endings = list(record[6 : 6 + nctx]), 6 + nctx, []
        for _ in range(k):
            m = record[pos]
            endings.append(list(record[pos + 1 : pos + 1 + m]))
            pos += 1 + m
        if pos != len(record) or nbytes > longest:
            ref.fail(f"{path}: example {i}: record length {nbytes} does not match its fields")
        examples.append((label, context, endings))
        at += nbytes // 2
    if at * 2 != len(data) - ref.HEADER_BYTES:
        ref.fail(f"{path}: bytes after the last of {n} examples")
    return examples


@torch.no_grad()
def score(model, label, context, endings):
    """The 4 endings' mean losses, as dev/data/hellaswag.py's render_example + evaluate."""
    rows = [context + e for e in endings]
    width = max(len(r) for r in rows)
    tokens = torch.zeros((COMPLETIONS, width), dtype=torch.long)
    mask = torch.zeros((COMPLETIONS, width), dtype=torch.long)
    for i, (row, ending) in enumerate(zip(rows, endings)):
        tokens[i, : len(row)] = torch.tensor(row)
        mask[i, len(context) : len(row)] = 1
    logits, _ = model(tokens, tokens)  # loss unused
    losses = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                             reduction="none").view(COMPLETIONS, -1)
    shift_mask = mask[:, 1:].to(losses.dtype)
    return ((losses * shift_mask).sum(dim=1) / shift_mask.sum(dim=1)).tolist()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-e", "--model", required=True, help="model file (.bin, v3/v5) or descriptor (d2, d12, ...)")
    p.add_argument("-i", "--input", required=True, help="eval file (tokenizer eval-file)")
    p.add_argument("--seed", type=int, default=42, help="seed of a descriptor's random init (the trainers' --seed)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="", help="write each example's line (the trainers' --hellaswag-out format)")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model = ref.build_model(argparse.Namespace(hf=None, model=args.model, seed=args.seed))
    model.eval()
    examples = read_eval_file(args.input)
    if max(t for _, c, es in examples for e in es for t in c + e) >= model.cfg.V:
        ref.fail(f"{args.input}: a token id is >= the model's V={model.cfg.V}")
    started, correct, lines = time.time(), 0, []
    for i, (label, context, endings) in enumerate(examples):
        means = score(model, label, context, endings)
        predicted = min(range(COMPLETIONS), key=lambda k: (means[k], k))
        correct += predicted == label
        lines.append("0 %d %d %d %s\n" % (i, label, predicted, " ".join("%.9g" % m for m in means)))
    seconds = time.time() - started
    n = len(examples)
    print(f"hellaswag: {correct}/{n} = {correct / n:.4f} ({seconds:.1f} s, {torch.get_num_threads()} threads)")
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(lines)


if __name__ == "__main__":
    main()
