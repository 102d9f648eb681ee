"""llm.c's dev/data/tinyshakespeare.py (GPT-2 tokens) re-implemented for tests/test_llmc_exact.sh:
the same documents, eot tokens, split and shard bytes, with tiktoken's own GPT-2 encoding built
from local encoder.json + vocab.bpe (tiktoken's loader, not ours).

    python tests/llmc_tinyshakespeare.py TEXT GPT2_DIR OUT_DIR
"""
import os
import struct
import sys

import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public


def main():
    text_path, gpt2_dir, out_dir = sys.argv[1:4]
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=os.path.join(gpt2_dir, "vocab.bpe"),
        encoder_json_file=os.path.join(gpt2_dir, "encoder.json"))
    enc = tiktoken.Encoding(name="gpt2", pat_str=tiktoken_ext.openai_public.r50k_pat_str,
                            mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256},
                            explicit_n_vocab=50257)
    eot = enc._special_tokens["<|endoftext|>"]
    text = open(text_path, "r").read()  # text mode, as llm.c reads it
    sections = text.split("\n\n")
    tokens = []
    for i, section in enumerate(sections):
        tokens.append(eot)
        # llm.c's eot comes right after each "\n\n": every section but the last gets it back
        tokens.extend(enc.encode_ordinary(section + "\n\n" if i != len(sections) - 1 else section))
    os.makedirs(out_dir, exist_ok=True)
    for name, part in (("tiny_shakespeare_val.bin", tokens[:32768]),
                       ("tiny_shakespeare_train.bin", tokens[32768:])):
        header = [20240520, 1, len(part)] + [0] * 253
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(struct.pack("<256i", *header) + struct.pack("<%dH" % len(part), *part))
        print("%s: %d tokens" % (name, len(part)))


if __name__ == "__main__":
    main()
