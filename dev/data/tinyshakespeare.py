"""Tokenize tinyshakespeare with GPT-2's BPE into llm.c data shards, and write the tokenizer file.

    python3 dev/data/tinyshakespeare.py [-i INPUT_TXT] [-v VOCAB_DIR] [-o OUT_DIR] [--llmc-split]

Writes OUT_DIR/tiny_shakespeare_train.bin, OUT_DIR/tiny_shakespeare_val.bin and
OUT_DIR/gpt2_tokenizer.bin (formats: docs/formats.md). See dev/data/README.md
for how the text is cut into documents and into train/val; --llmc-split writes
llm.c's shards instead (a document after each "\n\n", val the first 32,768 tokens).
"""

import argparse
import hashlib
import os
import re
import sys
import time

import data_common as dc

VAL_FRACTION = 0.1
LLMC_VAL_TOKENS = 32768  # llm.c's split: the first 32,768 tokens are val

# what the canonical input (sha256 pinned in data_common.KNOWN_FILES) must give
EXPECTED = {
    "plain_tokens": 338025,  # encode_ordinary(whole text)
    "documents": 7222,
    "tokens": 338028,  # the document sequence, eot tokens included
}
EXPECTED_LLMC = EXPECTED  # the same counts (llm.c: 32,768 val + 305,260 train tokens)


def split_documents(text):
    """Cut the text after each blank-line run: a document ends with the newlines that end it.

    A new document starts wherever "\\n\\n" is followed by a character other than
    a newline, so no document is empty and "".join(documents) == text.
    """
    return [d for d in re.split(r"(?<=\n\n)(?=[^\n])", text) if d]


def split_documents_llmc(text):
    """llm.c's cut: a document ends right after each "\n\n" (a run of three newlines leaves the
    third to start the next one). Empty documents are dropped (only a text ending in "\n\n"
    has one, where llm.c would write a last lone eot)."""
    parts = text.split("\n\n")
    return [d for d in [part + "\n\n" for part in parts[:-1]] + parts[-1:] if d]


def tokenize(text, encoder, llmc_split=False):
    """eot, then the encoded document, for each document in order."""
    docs = split_documents_llmc(text) if llmc_split else split_documents(text)
    tokens = []
    for ids in encoder.encode_ordinary_batch(docs):
        tokens.append(encoder.eot)
        tokens.extend(ids)
    return docs, tokens


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-i", "--input", default=None,
                   help="tinyshakespeare text (default: shared data tinyshakespeare.txt, else download)")
    p.add_argument("-v", "--vocab_dir", default=None,
                   help="directory with GPT-2's encoder.json and vocab.bpe (default: shared data gpt2/)")
    p.add_argument("-o", "--out_dir", default=os.path.join(here, "tinyshakespeare"),
                   help="output directory (default: dev/data/tinyshakespeare/)")
    p.add_argument("--llmc-split", action="store_true",
                   help="llm.c's documents and split: its shards byte for byte")
    args = p.parse_args(argv)
    t0 = time.time()

    input_path = args.input or dc.find_shared_file("tinyshakespeare.txt")
    with open(input_path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")  # bytes as they are: no newline translation
    canonical = hashlib.sha256(raw).hexdigest() == dc.KNOWN_FILES["tinyshakespeare.txt"][1]

    try:
        encoder = dc.gpt2_encoder(args.vocab_dir)
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    docs, tokens = tokenize(text, encoder, args.llmc_split)
    n = len(tokens)
    if args.llmc_split:
        val, train = tokens[:LLMC_VAL_TOKENS], tokens[LLMC_VAL_TOKENS:]
    else:
        n_train = int(n * (1.0 - VAL_FRACTION))
        train, val = tokens[:n_train], tokens[n_train:]

    # the tokens must spell the text again (eot tokens aside)
    if encoder.decode_bytes(t for t in tokens if t != encoder.eot) != raw:
        raise RuntimeError("tokens do not decode back to the input text")
    if canonical:
        got = {"plain_tokens": len(encoder.encode_ordinary(text)), "documents": len(docs), "tokens": n}
        expected = EXPECTED_LLMC if args.llmc_split else EXPECTED
        if got != expected:
            raise RuntimeError(f"canonical tinyshakespeare gave {got}, expected {expected}")

    print(f"{input_path}: {len(raw):,} bytes, {len(docs):,} documents, {n:,} tokens "
          f"(eot included) -> train {len(train):,} / val {len(val):,}")

    os.makedirs(args.out_dir, exist_ok=True)
    outputs = [
        ("tiny_shakespeare_train.bin", lambda path: dc.write_datafile(path, train, dc.GPT2_VOCAB_SIZE), len(train)),
        ("tiny_shakespeare_val.bin", lambda path: dc.write_datafile(path, val, dc.GPT2_VOCAB_SIZE), len(val)),
        ("gpt2_tokenizer.bin", lambda path: dc.write_tokenizer(args.vocab_dir, path), dc.GPT2_VOCAB_SIZE),
    ]
    for name, write, count in outputs:
        path = os.path.join(args.out_dir, name)
        nbytes = write(path)
        assert nbytes == os.path.getsize(path)
        what = "vocabulary tokens" if name == "gpt2_tokenizer.bin" else "tokens"
        print(f"wrote {path}: {count:,} {what}, {nbytes:,} bytes")
    print(f"done in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
