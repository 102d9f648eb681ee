"""Token shards for the test scripts: llm.c's format (docs/formats.md), a 256-int header (magic
20240520, version 1, token count) and the tokens as uint16."""
import struct


def write_shard(path, tokens):
    header = [0] * 256
    header[0:3] = [20240520, 1, len(tokens)]
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack("<%dH" % len(tokens), *tokens))


def vocabulary_sample(rng, size=500):
    """size ids of GPT-2's vocabulary, the words of a text_like draw."""
    return [rng.randrange(50257) for _ in range(size)]


def text_like(rng, ids, count):
    """count tokens: ids[k] with k exponential (mean 20), a few frequent tokens and a long tail as
    in text, so a small model's loss falls within a few steps."""
    return [ids[min(int(rng.expovariate(0.05)), len(ids) - 1)] for _ in range(count)]
