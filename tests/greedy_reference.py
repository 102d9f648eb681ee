#!/usr/bin/env python3
"""Checks a greedy continuation of the C side (chat --ids 1 --complete ... --temperature 0) against
PyTorch's: greedy from the full forward pass (no cache) of scripts/train_gpt2.py's model, one token
at a time. Steps whose two best logits are closer than 1e-3 are ties the rounding may break either
way (the C logits agree to ~1e-5 relative, |logit| < 10 here: 1e-4), so the comparison stops before
the first of them. A control with one token changed must fail. Exit 0 when the first >= 10 steps
agree and the control does not.

usage: greedy_reference.py MODEL.bin PROMPT_IDS C_IDS (whitespace-separated token ids)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from train_gpt2 import load_model_file  # noqa: E402

model = load_model_file(sys.argv[1]).eval()
V = model.cfg.V
prompt = [50256] + [int(x) for x in open(sys.argv[2]).read().split()]
c_ids = [int(x) for x in open(sys.argv[3]).read().split()]


def compare(c_ids, label):
    tokens = list(prompt)
    for step, c in enumerate(c_ids):
        with torch.no_grad():
            logits, _ = model(torch.tensor([tokens]), torch.tensor([tokens]))
        top = torch.topk(logits[0, -1], 2)
        if float(top.values[0] - top.values[1]) < 1e-3:
            return step, True, f"{label}: a near tie at step {step}"
        if int(top.indices[0]) != c:
            return step, False, f"{label}: step {step}: PyTorch {int(top.indices[0])}, C {c}"
        tokens.append(c)
    return len(c_ids), True, f"{label}: all {len(c_ids)} equal"


n, same, why = compare(c_ids, "C")
planted = list(c_ids)
planted[len(planted) // 2] = (planted[len(planted) // 2] + 1) % V
pn, psame, pwhy = compare(planted, "planted")
print(f"{why}; (control) one token changed: {pwhy}")
sys.exit(0 if same and n >= 10 and not psame else 1)
