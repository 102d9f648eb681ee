"""Encoding speed, ./tokenizer vs tiktoken, same text, same thread counts, identical ids required.

    make tokenizer && python3 bench/bench_tokenizer.py [--copies 10] [--threads 1,2] [--repeats 5]

The text is tinyshakespeare repeated --copies times (11.2 MB for 10). tiktoken's GPT-2 encoding is
built offline from ../shared/data/gpt2 (dev/data/data_common.py). For each thread count N:
  - tiktoken: encode_ordinary(text) (one thread) for N = 1; encode_ordinary_batch(parts,
    num_threads=N) for N > 1, on the same parts ./tokenizer cuts the text into (about 1 MB each, at
    a space after a printable ASCII character, where a piece always starts), so the ids are the same;
  - ours: ./tokenizer encode -t N, timed by the tool around the encoding alone ("encode"), and
    the whole command as a process ("command": loading encoder.json + vocab.bpe, mapping the
    input, encoding, writing the shard).
Best of --repeats runs. MB = 10^6 bytes of UTF-8 input. Prints the machine, commit and command.
"""

import argparse
import datetime
import os
import platform
import re
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "dev", "data"))


def safe_parts(text, target=1 << 20):
    """Cut where tokenizer.c's encode_parallel cuts (pretokenize_safe_cut), on the UTF-8 bytes."""
    data = text.encode("utf-8")
    parts, start = [], 0
    while start < len(data):
        cut = len(data)
        if len(data) - start > target + target // 2:
            p = start + target
            while True:
                p = data.find(b" ", p)
                if p < 0:
                    p = len(data)
                    break
                if 0x20 < data[p - 1] < 0x7F:
                    break
                p += 1
            cut = p
        parts.append(data[start:cut].decode("utf-8"))
        start = cut
    return parts


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores (os.cpu_count), %s %s" % (cpu, os.cpu_count(), platform.system(), platform.release())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--threads", default="1,%d" % os.cpu_count())
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--input", default=os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt"))
    p.add_argument("--vocab", default=os.path.join(ROOT, "..", "shared", "data", "gpt2"))
    args = p.parse_args()
    threads = sorted(set(int(t) for t in args.threads.split(",")))

    import tiktoken
    import data_common as dc

    enc = dc.gpt2_encoder(args.vocab).enc
    with open(args.input, "rb") as f:
        raw = f.read()
    text = (raw * args.copies).decode("utf-8")
    nbytes = len(raw) * args.copies
    parts = safe_parts(text)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    sources = ["tokenizer.c"] + ["llmc/%s.h" % h for h in
                                             ("bpe", "bpe_load", "bpe_train", "pretokenize", "unicode_tables", "mmap_file")]
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--"] + sources, capture_output=True,
                           text=True).stdout.strip()
    print("date:    %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    print("machine: %s" % machine())
    print("commit:  %s%s" % (commit, " (tokenizer sources with uncommitted changes)" if dirty else ""))
    print("command: python3 bench/bench_tokenizer.py %s" % " ".join(sys.argv[1:]))
    print("text:    %s x %d = %d bytes (%.2f MB), %d parts for the batch runs; tiktoken %s, Python %s"
          % (os.path.basename(args.input), args.copies, nbytes, nbytes / 1e6, len(parts), tiktoken.__version__,
             platform.python_version()))

    reference = enc.encode_ordinary(text)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "text.txt")
        with open(path, "wb") as f:
            f.write(raw * args.copies)
        out = os.path.join(tmp, "out.bin")
        print()
        print("%-8s %-44s %10s %10s" % ("threads", "encoder", "MB/s", "vs tiktoken"))
        for n in threads:
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                if n == 1:
                    ids = enc.encode_ordinary(text)
                else:
                    ids = [i for part in enc.encode_ordinary_batch(parts, num_threads=n) for i in part]
                best = min(best, time.perf_counter() - t0)
            assert ids == reference, "tiktoken batch ids differ from encode_ordinary"
            tiktoken_rate = nbytes / 1e6 / best
            name = "tiktoken encode_ordinary" if n == 1 else "tiktoken encode_ordinary_batch(num_threads=%d)" % n
            print("%-8d %-44s %10.1f %10s" % (n, name, tiktoken_rate, "1.00x"))

            best_encode, best_command = float("inf"), float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                result = subprocess.run([os.path.join(ROOT, "tokenizer"), "encode", "-v", args.vocab, "-t", str(n),
                                         "-i", path, "-o", out], capture_output=True, text=True, check=True)
                best_command = min(best_command, time.perf_counter() - t0)
                seconds = float(re.search(r"tokens in ([0-9.]+) s", result.stderr).group(1))
                best_encode = min(best_encode, seconds)
            with open(out, "rb") as f:
                data = f.read()
            count = struct.unpack_from("<i", data, 8)[0]
            ours = list(struct.unpack_from("<%dH" % count, data, 1024))
            same = "identical ids" if ours == reference else "IDS DIFFER"
            rate = nbytes / 1e6 / best_encode
            print("%-8d %-44s %10.1f %9.2fx   %s" % (n, "ours: ./tokenizer encode -t %d (encode)" % n, rate, rate / tiktoken_rate, same))
            rate = nbytes / 1e6 / best_command
            print("%-8d %-44s %10.1f %9.2fx" % (n, "ours: the whole command (load, encode, write)", rate, rate / tiktoken_rate))


if __name__ == "__main__":
    main()
