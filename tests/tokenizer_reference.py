"""Reference side of tests/test_tokenizer.sh: tiktoken's answers, fuzz text, and a plain BPE trainer.

    python3 tests/tokenizer_reference.py COMMAND ...

Commands (ids are written one per line; tiktoken's GPT-2 encoding is built offline from
encoder.json + vocab.bpe, as dev/data/data_common.py's gpt2_encoder does):

  encode FILE [--pattern gpt2|gpt4] [--special] [--tiktoken-file F]
                                                  tiktoken's ids for the file's text (GPT-2, or F's ranks)
  docs FILE [--field a,b] [--blank-lines]         eot + ids of each document, as prepare makes them
  fuzz OUT --seed N --size BYTES                  random Unicode text (UTF-8)
  classes OUT                                     tiktoken's regex classes \\p{L}, \\p{N}, \\s by code point
  train OUT_MERGES --vocab-size N [--pattern P] [--special a,b] FILES...
                                                  the straightforward BPE trainer (llmc/bpe_train.h's rules)
  encode-trained TOKENIZER_BIN FILE               tiktoken's ids with a vocabulary from our tokenizer file
  dump-merges TOKENIZER_BIN                       the merges stored in our tokenizer file
  shard-ids SHARD...                              the tokens of data shards, in order
  write-tiktoken OUT [--extra N]                  GPT-2's ranks as a .tiktoken file, plus N made-up merges
  eval-file JSONL OUT                             llm.c's eval file (magic 20240522) of HellaSwag JSONL, each
                                                  record built as llm.c's dev/data/hellaswag.py does
"""

import argparse
import json
import os
import random
import struct
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "dev", "data"))

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# tiktoken's cl100k_base pattern
GPT4_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}
EOT = "<|endoftext|>"


def write_ids(ids, out=sys.stdout):
    out.write("".join("%d\n" % i for i in ids))


def gpt2_encoding(pattern="gpt2"):
    import tiktoken
    import data_common as dc

    base = dc.gpt2_encoder()  # checks the files and a few known answers
    if pattern == "gpt2":
        return base.enc
    ranks = {b: i for i, b in enumerate(base.token_bytes) if i != dc.GPT2_EOT}
    return tiktoken.Encoding(name="gpt2_ranks_" + pattern, pat_str=PATTERNS[pattern], mergeable_ranks=ranks,
                             special_tokens={EOT: dc.GPT2_EOT}, explicit_n_vocab=dc.GPT2_VOCAB_SIZE)


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def tiktoken_file_encoding(path):
    import base64
    import tiktoken

    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(name="file", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={EOT: len(ranks)})


def cmd_encode(args):
    enc = tiktoken_file_encoding(args.tiktoken_file) if args.tiktoken_file else gpt2_encoding(args.pattern)
    text = read_text(args.file)
    ids = enc.encode(text, allowed_special="all") if args.special else enc.encode_ordinary(text)
    write_ids(ids)


def documents(path, fields, blank_lines):
    """The documents prepare makes of one input file (see tokenizer.c, cmd_prepare)."""
    import re

    if path.endswith(".jsonl") or path.endswith(".json"):
        with open(path, "rb") as f:
            raw = f.read().decode("utf-8")
        records = json.loads(raw) if path.endswith(".json") else [json.loads(l) for l in raw.split("\n") if l.strip()]
        docs = ["\n".join(r[k] for k in fields if r[k]) for r in records]
    else:
        text = read_text(path)
        docs = re.split(r"(?<=\n\n)(?=[^\n])", text) if blank_lines else [text]
    return [d for d in docs if d]


def cmd_docs(args):
    enc = gpt2_encoding()
    docs = []
    for path in args.files:
        docs += documents(path, args.field.split(","), args.blank_lines)
    ids = []
    for doc_ids in enc.encode_ordinary_batch(docs, num_threads=4):
        ids.append(50256)
        ids.extend(doc_ids)
    write_ids(ids)


# ------------------------------------------------------------------------------------------------
# fuzz text: every plane, combining marks, emoji sequences, CJK, controls, long runs of spaces and
# digits, all White_Space characters, apostrophe contractions in both cases, \r\n mixtures.

WHITE_SPACE = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680] + list(range(0x2000, 0x200B)) + [
    0x2028, 0x2029, 0x202F, 0x205F, 0x3000]


def random_code_point(rng):
    plane = rng.choice([0, 0, 0, 1, 2, 3, 14, 15, 16, rng.randrange(17)])
    while True:
        cp = plane * 0x10000 + rng.randrange(0x10000)
        if not 0xD800 <= cp < 0xE000:
            return cp


def fuzz_segment(rng):
    kind = rng.randrange(16)
    if kind == 0:  # anything, any plane
        return "".join(chr(random_code_point(rng)) for _ in range(rng.randrange(1, 20)))
    if kind == 1:  # letters + combining marks (U+0300..036F, U+1AB0.., U+20D0..)
        base = rng.choice("aeiouAEIOUnxyzαβγдлж")
        marks = [0x300 + rng.randrange(0x70), 0x1AB0 + rng.randrange(0x10), 0x20D0 + rng.randrange(0x20)]
        return base + "".join(chr(rng.choice(marks)) for _ in range(rng.randrange(1, 6)))
    if kind == 2:  # emoji, skin tones, ZWJ sequences, flags, variation selectors
        parts = []
        for _ in range(rng.randrange(1, 5)):
            e = chr(rng.choice([0x1F600 + rng.randrange(80), 0x1F300 + rng.randrange(700), 0x2600 + rng.randrange(256)]))
            if rng.random() < 0.3:
                e += chr(0x1F3FB + rng.randrange(5))
            if rng.random() < 0.3:
                e += "\u200d" + chr(0x1F466 + rng.randrange(4))
            if rng.random() < 0.2:
                e += "\ufe0f"
            if rng.random() < 0.2:
                e = chr(0x1F1E6 + rng.randrange(26)) + chr(0x1F1E6 + rng.randrange(26))
            parts.append(e)
        return "".join(parts)
    if kind == 3:  # CJK, kana, hangul, CJK extension B..H, with CJK punctuation and digits
        ranges = [(0x4E00, 0x9FFF), (0x3040, 0x30FF), (0xAC00, 0xD7A3), (0x20000, 0x2A6DF), (0x31350, 0x323AF),
                  (0x3000, 0x303F), (0xFF10, 0xFF19)]
        return "".join(chr(rng.randrange(*rng.choice(ranges))) for _ in range(rng.randrange(1, 30)))
    if kind == 4:  # control characters, C0, DEL, C1
        return "".join(chr(rng.choice(list(range(0, 32)) + [0x7F] + list(range(0x80, 0xA0)))) for _ in range(rng.randrange(1, 8)))
    if kind == 5:  # long runs of spaces, sometimes before a word or a newline
        return " " * rng.choice([2, 3, 7, 16, 100, 1000, rng.randrange(1, 5000)]) + rng.choice(["", "x", "\n", "1", "!", "\t"])
    if kind == 6:  # long runs of digits, ASCII and others (Arabic-Indic, Devanagari, fullwidth, superscripts)
        digits = rng.choice(["0123456789", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９", "²³¹¼½¾"])
        return rng.choice(["", " "]) + "".join(rng.choice(digits) for _ in range(rng.choice([1, 2, 3, 4, 7, 50, 3000])))
    if kind == 7:  # every kind of whitespace, mixed
        return "".join(chr(rng.choice(WHITE_SPACE)) for _ in range(rng.randrange(1, 12)))
    if kind == 8:  # contractions and apostrophes
        return rng.choice(["'s", "'S", "'t", "'re", "'RE", "'Re", "'ve", "'m", "'ll", "'LL", "'lL", "'d", "'D",
                           "'ſ", "'x", "''", "'", "’s", " 's", "don't", "I'M", "we'Ve"]) + rng.choice(["", " ", "a", "\n"])
    if kind == 9:  # newlines
        return rng.choice(["\n", "\r\n", "\r", "\n\n", " \n", "\n ", "\t\n", "\r\n\r\n", "\n\n\n "]) * rng.randrange(1, 4)
    if kind == 10:  # punctuation runs
        return rng.choice(["", " "]) + "".join(rng.choice("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»—–…•") for _ in range(rng.randrange(1, 10)))
    if kind == 11:  # the eot text (ordinary text in encode_ordinary)
        return rng.choice([EOT, "<|endoftext", "endoftext|>", " " + EOT + " "])
    if kind == 12:  # unassigned, private use, noncharacters, the last code points of each plane
        return "".join(chr(rng.choice([0x378, 0x0EFF, 0xE000 + rng.randrange(0x1900), 0xFDD0, 0xFFFE, 0xFFFF, 0x1FFFE,
                                       0xF0000 + rng.randrange(0xFFFE), 0x10FFFF, 0xE0001, 0xE0100 + rng.randrange(240)]))
                       for _ in range(rng.randrange(1, 6)))
    # ordinary words in several scripts, with spaces
    words = ["hello", "World", "naïve", "café", "Ελληνικά", "русский", "עברית", "العربية", "हिन्दी", "ไทย", "日本語",
             "한국어", "Ǆemal", "ﬁne", "x²", "Ⅻ", "ⓐⓑ", "𝔘𝔫𝔦", "ǅ"]
    return " ".join(rng.choice(words) for _ in range(rng.randrange(1, 6))) + rng.choice(["", " ", ".", ",", "\n"])


def cmd_fuzz(args):
    rng = random.Random(args.seed)
    parts, size = [], 0
    while size < args.size:
        segment = fuzz_segment(rng)
        parts.append(segment)
        size += len(segment.encode("utf-8"))
    with open(args.out, "wb") as f:
        f.write("".join(parts).encode("utf-8"))


def cmd_classes(args):
    """tiktoken's regex on each class alone: text that does not match is dropped, so encoding all
    code points with byte-only ranks gives exactly the members of the class."""
    import tiktoken

    ranks = {bytes([b]): b for b in range(256)}
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    classes = {}
    for name, pattern in (("letter", r"\p{L}"), ("number", r"\p{N}"), ("space", r"\s")):
        enc = tiktoken.Encoding(name="probe", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
        classes[name] = sorted(set(map(ord, bytes(enc.encode_ordinary(text)).decode("utf-8"))))
    with open(args.out, "w") as f:
        for name in ("letter", "number", "space"):
            f.write("%s %d %s\n" % (name, len(classes[name]), " ".join("%x" % c for c in classes[name])))


# ------------------------------------------------------------------------------------------------
# the straightforward trainer: recount every pair each step


def train(texts, vocab_size, pattern, specials):
    import regex

    split_special = regex.compile("|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)))
    piece_pattern = regex.compile(PATTERNS[pattern])
    counts = Counter()
    for text in texts:
        for part in split_special.split(text):
            counts.update(m.encode("utf-8") for m in piece_pattern.findall(part))
    words = [[list(piece), n] for piece, n in counts.items()]
    length = {i: 1 for i in range(256)}
    merges = []
    for step in range(vocab_size - 256 - len(specials)):
        pairs = Counter()
        for ids, n in words:
            for pair in zip(ids, ids[1:]):
                pairs[pair] += n
        candidates = [(-n, pair) for pair, n in pairs.items() if length[pair[0]] + length[pair[1]] <= 255]
        if not candidates:
            break
        best = min(candidates)[1]
        new = 256 + step
        length[new] = length[best[0]] + length[best[1]]
        merges.append(best)
        for word in words:
            ids, out, i = word[0], [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            word[0] = out
    return merges


def cmd_train(args):
    texts = [read_text(p) for p in args.files]
    specials = [EOT] + [s for s in args.special.split(",") if s]
    merges = train(texts, args.vocab_size, args.pattern, specials)
    with open(args.out, "w") as f:
        for a, b in merges:
            f.write("%d %d\n" % (a, b))


def read_tokenizer_file(path):
    """Our tokenizer file (docs/formats.md): token bytes, merges, special ids, pattern."""
    with open(path, "rb") as f:
        raw = f.read()
    header = struct.unpack("<256i", raw[:1024])
    V, n_merges, n_special, pattern = header[2], header[5], header[6], header[7]
    tokens, pos = [], 1024
    for _ in range(V):
        n = raw[pos]
        tokens.append(raw[pos + 1:pos + 1 + n])
        pos += 1 + n
    merges = list(struct.unpack_from("<%di" % (2 * n_merges), raw, pos))
    pos += 8 * n_merges
    special = list(struct.unpack_from("<%di" % n_special, raw, pos))
    return tokens, [(merges[2 * i], merges[2 * i + 1]) for i in range(n_merges)], special, ["gpt2", "gpt4"][pattern]


def cmd_dump_merges(args):
    _, merges, _, _ = read_tokenizer_file(args.file)
    sys.stdout.write("".join("%d %d\n" % m for m in merges))


def cmd_encode_trained(args):
    import tiktoken

    tokens, merges, special, pattern = read_tokenizer_file(args.tokenizer)
    ranks = {tokens[i]: i for i in range(len(tokens)) if i not in special}
    enc = tiktoken.Encoding(name="trained", pat_str=PATTERNS[pattern], mergeable_ranks=ranks,
                            special_tokens={tokens[i].decode("utf-8"): i for i in special})
    write_ids(enc.encode_ordinary(read_text(args.file)))


def cmd_shard_ids(args):
    for path in args.files:
        with open(path, "rb") as f:
            raw = f.read()
        magic, version, n = struct.unpack_from("<3i", raw, 0)
        width = {20240520: 2, 20240801: 4}[magic]
        assert len(raw) == 1024 + n * width, path
        write_ids(struct.unpack_from("<%d%s" % (n, "H" if width == 2 else "I"), raw, 1024))


def cmd_write_tiktoken(args):
    """GPT-2's ranks, plus `extra` tokens made by joining pairs of tokens (a rank file with V > 65536
    when extra > 15279), each a merge of two lower-ranked tokens."""
    import base64
    import data_common as dc

    tokens = [b for i, b in enumerate(dc.gpt2_token_bytes()) if i != dc.GPT2_EOT]
    known = set(tokens)
    rng = random.Random(7)
    common = tokens[256:5000]
    while args.extra > 0:
        joined = rng.choice(common) + rng.choice(common)
        if joined not in known and len(joined) <= 32:
            known.add(joined)
            tokens.append(joined)
            args.extra -= 1
    with open(args.out, "wb") as f:
        for rank, token in enumerate(tokens):
            f.write(base64.b64encode(token) + b" %d\n" % rank)


def cmd_eval_file(args):
    enc = gpt2_encoding()
    stream, longest, count = [], 0, 0
    with open(args.jsonl, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            example = json.loads(line)
            context = enc.encode_ordinary(example["ctx"])
            endings = [enc.encode_ordinary(" " + e) for e in example["endings"]]
            record = [65535, 0, count, example["label"], len(endings), len(context)] + context
            for ending in endings:
                record += [len(ending)] + ending
            record[1] = 2 * len(record)
            longest = max(longest, record[1])
            stream += record
            count += 1
    header = [20240522, 1, count, longest] + [0] * 252
    with open(args.out, "wb") as f:
        f.write(struct.pack("<256i", *header) + struct.pack("<%dH" % len(stream), *stream))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("encode")
    s.add_argument("file")
    s.add_argument("--pattern", default="gpt2", choices=PATTERNS)
    s.add_argument("--special", action="store_true")
    s.add_argument("--tiktoken-file", default=None)
    s.set_defaults(run=cmd_encode)
    s = sub.add_parser("docs")
    s.add_argument("files", nargs="+")
    s.add_argument("--field", default="text")
    s.add_argument("--blank-lines", action="store_true")
    s.set_defaults(run=cmd_docs)
    s = sub.add_parser("fuzz")
    s.add_argument("out")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--size", type=int, default=1 << 20)
    s.set_defaults(run=cmd_fuzz)
    s = sub.add_parser("classes")
    s.add_argument("out")
    s.set_defaults(run=cmd_classes)
    s = sub.add_parser("train")
    s.add_argument("out")
    s.add_argument("files", nargs="+")
    s.add_argument("--vocab-size", type=int, required=True)
    s.add_argument("--pattern", default="gpt2", choices=PATTERNS)
    s.add_argument("--special", default="")
    s.set_defaults(run=cmd_train)
    s = sub.add_parser("dump-merges")
    s.add_argument("file")
    s.set_defaults(run=cmd_dump_merges)
    s = sub.add_parser("encode-trained")
    s.add_argument("tokenizer")
    s.add_argument("file")
    s.set_defaults(run=cmd_encode_trained)
    s = sub.add_parser("shard-ids")
    s.add_argument("files", nargs="+")
    s.set_defaults(run=cmd_shard_ids)
    s = sub.add_parser("write-tiktoken")
    s.add_argument("out")
    s.add_argument("--extra", type=int, default=0)
    s.set_defaults(run=cmd_write_tiktoken)
    s = sub.add_parser("eval-file")
    s.add_argument("jsonl")
    s.add_argument("out")
    s.set_defaults(run=cmd_eval_file)
    args = p.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
