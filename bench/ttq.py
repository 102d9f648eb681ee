#!/usr/bin/env python3
"""Time to quality (issue 20): the Python side of bench/time_to_quality.sh, stdlib only.

  corpus  --data DIR --out DIR [--val-fraction F] [--max-docs N]
          ../shared/data's text as documents -> OUT/train.jsonl, OUT/val.jsonl ({"text": ...} a line)
          and OUT/sources.tsv; the tokenizer turns them into shards (bench/ttq_data.sh).
  params  DESCRIPTOR...
          non-embedding and embedding parameter counts of trainer descriptors (-e).
  analyze --runs DIR --out DIR --tokens-per-step N [--configs a,b,c]
          RUNS/<config>_lr<LR>/main.log -> OUT/results.json, OUT/sweep.md, OUT/curves.csv,
          OUT/best_runs.tsv (the best run of each config: config, lr, log path).
  best    --runs DIR --config X
          prints the best learning rate of config X so far (for (c)'s AdamW rate).
  compact --dir DIR
          renumbers the tokens of DIR's ttq shards densely, 0..V-1 in the order of GPT-2's ids (so
          <|endoftext|>, GPT-2's largest, is V-1), over the ids that occur in train or val; writes
          DIR/vocab_map.tsv (new id, GPT-2 id) and "vocab V" to DIR/tokens.txt. Its models need no
          output rows for ids that never occur (at V=50257 they would only learn to take no
          probability), at a fraction of the output layer's cost (time_to_quality.sh --compact-vocab).

The split (corpus): each source is a list of documents in file order (tinyshakespeare: the text
between blank lines, as llm.c's tinyshakespeare.py; GSM8K: question, newline, answer; Code
Alpaca: instruction, input if any, output, one per line); the last ceil(F * n) documents of each
source go to val. The documents of all sources are interleaved (train and val each) in the order of
sha256("<source>:<index>"), so the order is the same on every machine and Python version, no
source comes in one block, and a prefix of val (--val-batches) holds every source.
"""
import argparse
import array
import csv
import hashlib
import json
import math
import os
import re
import sys

CONFIG_NAMES = {"a": "gpt2+adamw", "b": "llama+adamw", "c": "llama+muon"}


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


# ------------------------------------------------------------------------------------------------
# corpus


def shakespeare_documents(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [d for d in text.split("\n\n") if d.strip()]


def gsm8k_documents(path):
    docs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                docs.append(record["question"] + "\n" + record["answer"])
            except (ValueError, KeyError, TypeError) as e:
                fail(f"{path}: line {number}: field question/answer: {e}")
    return docs


def alpaca_documents(path):
    with open(path, encoding="utf-8") as f:
        try:
            records = json.load(f)
        except ValueError as e:
            fail(f"{path}: not JSON: {e}")
    if not isinstance(records, list):
        fail(f"{path}: expected a JSON array of records")
    docs = []
    for number, record in enumerate(records):
        try:
            parts = [record["instruction"], record.get("input", ""), record["output"]]
        except (KeyError, TypeError, AttributeError) as e:
            fail(f"{path}: record {number}: field instruction/output: {e}")
        docs.append("\n".join(p for p in parts if p))
    return docs


SOURCES = [
    ("tinyshakespeare", "tinyshakespeare.txt", shakespeare_documents),
    ("gsm8k_train", "gsm8k/train.jsonl", gsm8k_documents),
    ("gsm8k_test", "gsm8k/test.jsonl", gsm8k_documents),
    ("code_alpaca", "sft/code_alpaca_2k.json", alpaca_documents),
]


def command_corpus(args):
    if not 0 < args.val_fraction < 1:
        fail(f"--val-fraction {args.val_fraction}: expected a number in (0, 1)")
    os.makedirs(args.out, exist_ok=True)
    train, val, rows = [], [], []
    for name, relative, reader in SOURCES:
        path = os.path.join(args.data, relative)
        if not os.path.isfile(path):
            fail(f"{path}: not found (--data names the directory of ../shared/data)")
        docs = reader(path)
        if args.max_docs > 0:
            docs = docs[: args.max_docs]
        if len(docs) < 2:
            fail(f"{path}: {len(docs)} documents, need at least 2 for a train/val split")
        n_val = max(1, math.ceil(args.val_fraction * len(docs)))
        n_train = len(docs) - n_val
        keyed = [(hashlib.sha256(f"{name}:{i}".encode()).hexdigest(), d) for i, d in enumerate(docs)]
        train += keyed[:n_train]
        val += keyed[n_train:]
        rows.append((name, relative, n_train, n_val, sum(map(len, docs[:n_train])), sum(map(len, docs[n_train:]))))
    train.sort()
    val.sort()  # interleaved too: a --val-batches prefix of val samples every source
    for file_name, docs in (("train.jsonl", [d for _, d in train]), ("val.jsonl", [d for _, d in val])):
        with open(os.path.join(args.out, file_name), "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out, "sources.tsv"), "w") as f:
        f.write("source\tfile\ttrain_docs\tval_docs\ttrain_chars\tval_chars\n")
        for row in rows:
            f.write("\t".join(map(str, row)) + "\n")
    print(f"corpus: {len(train)} train / {len(val)} val documents from {len(rows)} sources -> {args.out}")


# ------------------------------------------------------------------------------------------------
# parameter counts


def parse_descriptor(text):
    fields = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"descriptor '{text}': '{item}' is not KEY=VALUE")
        fields[key.strip()] = value.strip()
    arch = fields.pop("arch", "gpt2")
    try:
        numbers = {k: float(v) if k == "rope_theta" else int(v) for k, v in fields.items()}
    except ValueError as e:
        fail(f"descriptor '{text}': {e}")
    for key in ("L", "C", "NH", "V", "maxT"):
        if key not in numbers:
            fail(f"descriptor '{text}': field {key} missing")
    numbers["arch"] = arch
    return numbers


def padded_vocab(V):
    return (V + 127) // 128 * 128


def parameter_counts(text):
    """(non-embedding, embedding) parameters. Embedding: wte (and GPT-2's wpe, llama's untied
    lm_head); non-embedding: everything else (the blocks and the final norm), Kaplan et al.'s N."""
    d = parse_descriptor(text)
    L, C, NH, V = d["L"], d["C"], d["NH"], d["V"]
    Vp = padded_vocab(V)
    if d["arch"] == "gpt2":
        per_layer = 2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + 4 * C * C + 4 * C + 4 * C * C + C
        return L * per_layer + 2 * C, Vp * C + d["maxT"] * C
    if d["arch"] == "llama":
        KV = d.get("KV", NH)
        HS = C // NH
        ffn = d.get("ffn") or 64 * math.floor((8 * C / 3) / 64 + 0.5)  # nearest multiple of 64, ties up
        qknorm = 2 * HS if d.get("qknorm", 0) else 0
        per_layer = C + (NH + 2 * KV) * HS * C + qknorm + C * C + C + 2 * ffn * C + ffn * C
        return L * per_layer + C, 2 * Vp * C
    fail(f"descriptor '{text}': arch {d['arch']} unknown (gpt2, llama)")


def command_params(args):
    first = None
    for text in args.descriptors:
        body, embedding = parameter_counts(text)
        first = first or body
        print(f"{text}\tnon-embedding {body} ({100 * (body - first) / first:+.2f}% vs the first)"
              f"\tembedding {embedding}\ttotal {body + embedding}")


# ------------------------------------------------------------------------------------------------
# main.log (docs/formats.md): "s:STEP KEY:VALUE[ more]"; tel lines are the val loss points.

LINE = re.compile(r"s:([0-9]{1,10}) ([A-Za-z0-9_]+):([^ \t\r]+)")
NUMBER = re.compile(r"[0-9+\-.eE]{1,31}")


def read_val_curve(path):
    """[(step, val_loss)] of main.log's tel lines, and the number of malformed lines (skipped, as
    llmc/report.h does: an unfinished last line, a non-finite or non-decimal value, ...)."""
    points, malformed = {}, 0
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] != b"":
        malformed += 1  # unfinished last line (a killed run)
    for raw in lines[:-1]:
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            malformed += 1
            continue
        m = LINE.match(line)
        if not m or (len(line) > m.end() and line[m.end()] not in " \t\r") or int(m.group(1)) > 2**31 - 1:
            malformed += 1
            continue
        if m.group(2) != "tel":
            continue
        value = m.group(3)
        if not NUMBER.fullmatch(value):
            malformed += 1
            continue
        try:
            loss = float(value)
        except ValueError:
            malformed += 1
            continue
        if not math.isfinite(loss):
            malformed += 1
            continue
        points[int(m.group(1))] = loss  # a resumed run logs a step again: the last one counts
    return sorted(points.items()), malformed


def tokens_to_reach(curve, target):
    """Tokens at which a [(tokens, loss)] curve first reaches loss <= target, linear between eval
    points; None if it never does."""
    for i, (tokens, loss) in enumerate(curve):
        if loss <= target:
            if i == 0:
                return float(tokens)
            t0, l0 = curve[i - 1]
            return t0 + (l0 - target) / (l0 - loss) * (tokens - t0)
    return None


RUN_NAME = re.compile(r"([abc])_lr([0-9.eE+-]+)")


def collect_runs(runs_dir, tokens_per_step, configs):
    if not os.path.isdir(runs_dir):
        fail(f"{runs_dir}: no such directory of runs")
    runs = []
    for name in sorted(os.listdir(runs_dir)):
        m = RUN_NAME.fullmatch(name)
        log = os.path.join(runs_dir, name, "main.log")
        if not m or m.group(1) not in configs or not os.path.isfile(log):
            continue
        curve, malformed = read_val_curve(log)
        planned_file = os.path.join(runs_dir, name + ".max_steps")
        planned = None
        if os.path.isfile(planned_file):
            try:
                planned = int(open(planned_file).read())
            except ValueError:
                fail(f"{planned_file}: expected the planned number of steps")
        complete = bool(curve) and (planned is None or curve[-1][0] == planned)
        runs.append({
            "config": m.group(1), "lr": m.group(2), "log": log, "malformed_lines": malformed,
            "complete": complete,
            "curve": [(step * tokens_per_step, loss) for step, loss in curve],
            "final_val_loss": curve[-1][1] if curve else None,
        })
    def lr_value(run):
        try:
            return float(run["lr"])
        except ValueError:
            return math.inf

    return sorted(runs, key=lambda run: (run["config"], lr_value(run)))


def best_run(runs, config):
    candidates = [r for r in runs if r["config"] == config and r["complete"]]
    return min(candidates, key=lambda r: r["final_val_loss"]) if candidates else None


def command_best(args):
    run = best_run(collect_runs(args.runs, 1, args.config), args.config)
    if run is None:
        fail(f"{args.runs}: no complete run of config {args.config}")
    print(run["lr"])


def command_analyze(args):
    configs = [c for c in args.configs.split(",") if c]
    runs = collect_runs(args.runs, args.tokens_per_step, configs)
    if not runs:
        fail(f"{args.runs}: no run directories <config>_lr<LR> with a main.log")
    best = {c: best_run(runs, c) for c in configs}
    target = best["a"]["final_val_loss"] if best.get("a") else None
    reach = {}
    for c in configs:
        if best.get(c) is None or target is None:
            continue
        tokens = tokens_to_reach(best[c]["curve"], target)
        # against the tokens (a) itself needed: its end, unless its val loss was as low before
        a_tokens = tokens_to_reach(best["a"]["curve"], target)
        reach[c] = {"tokens": tokens, "ratio_to_a": None if tokens is None or a_tokens == 0 else tokens / a_tokens}
    os.makedirs(args.out, exist_ok=True)
    results = {
        "tokens_per_step": args.tokens_per_step, "target_val_loss": target,
        "best": {c: (best[c]["lr"] if best[c] else None) for c in configs}, "reach": reach,
        "runs": [{k: v for k, v in r.items() if k != "curve"} for r in runs],
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out, "curves.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["config", "name", "lr", "best", "step", "tokens", "val_loss"])
        for r in runs:
            for tokens, loss in r["curve"]:
                writer.writerow([r["config"], CONFIG_NAMES[r["config"]], r["lr"], int(r is best[r["config"]]),
                                 tokens // args.tokens_per_step, tokens, f"{loss:.6f}"])
    with open(os.path.join(args.out, "best_runs.tsv"), "w") as f:
        for c in configs:
            if best[c]:
                f.write(f"{c}\t{CONFIG_NAMES[c]}\t{best[c]['lr']}\t{best[c]['log']}\n")
    out = []
    out.append("### Learning-rate sweep (final val loss; * best of its config)\n")
    out.append("| config | lr | final val loss | lowest val loss (tokens) | complete | malformed log lines |")
    out.append("|---|---|---|---|---|---|")
    for r in runs:
        mark = " *" if r is best[r["config"]] else ""
        loss = f"{r['final_val_loss']:.4f}" if r["final_val_loss"] is not None else "-"
        lowest = min(r["curve"], key=lambda p: p[1]) if r["curve"] else None
        lowest = f"{lowest[1]:.4f} ({lowest[0]})" if lowest else "-"  # below final: overfitting
        out.append(f"| {r['config']} {CONFIG_NAMES[r['config']]} | {r['lr']}{mark} | {loss} | {lowest} | "
                   f"{'yes' if r['complete'] else 'NO'} | {r['malformed_lines']} |")
    out.append("")
    out.append("### Val loss against tokens (best run of each config)\n")
    shown = [c for c in configs if best[c]]
    all_tokens = sorted({t for c in shown for t, _ in best[c]["curve"]})
    out.append("| tokens | " + " | ".join(f"{c} {CONFIG_NAMES[c]} (lr {best[c]['lr']})" for c in shown) + " |")
    out.append("|---" * (len(shown) + 1) + "|")
    for t in all_tokens:
        cells = []
        for c in shown:
            value = dict(best[c]["curve"]).get(t)
            cells.append(f"{value:.4f}" if value is not None else "")
        out.append(f"| {t} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("### Tokens to reach (a)'s final val loss\n")
    if target is None:
        out.append("(a) has no complete run: no target.")
    else:
        out.append(f"Target: {target:.6f} (the final val loss of (a) at lr {best['a']['lr']}); linear between "
                   "eval points.\n")
        out.append("| config | tokens to target | ratio to (a) | goal (c) <= 2/3 |")
        out.append("|---|---|---|---|")
        for c, r in reach.items():
            tokens = "not reached" if r["tokens"] is None else f"{r['tokens']:.0f}"
            ratio = "-" if r["ratio_to_a"] is None else f"{r['ratio_to_a']:.3f}"
            goal = ("met" if r["ratio_to_a"] is not None and r["ratio_to_a"] <= 2 / 3 else "not met") if c == "c" else ""
            out.append(f"| {c} {CONFIG_NAMES[c]} | {tokens} | {ratio} | {goal} |")
    with open(os.path.join(args.out, "sweep.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))


# ------------------------------------------------------------------------------------------------
# compact


SHARD_HEADER_BYTES = 256 * 4


def read_shard(path):
    with open(path, "rb") as f:
        data = f.read()
    header = array.array("i")
    if len(data) >= SHARD_HEADER_BYTES:
        header.frombytes(data[:SHARD_HEADER_BYTES])
    if len(header) == 0 or header[0] != 20240520 or header[1] != 1 or len(data) % 2:
        fail(f"{path}: header: expected magic 20240520, version 1 and uint16 tokens after 1024 bytes (docs/formats.md)")
    tokens = array.array("H")
    tokens.frombytes(data[SHARD_HEADER_BYTES:])
    if header[2] != len(tokens):
        fail(f"{path}: header[2] (token count) {header[2]}: the file holds {len(tokens)}")
    return data[:SHARD_HEADER_BYTES], tokens


def command_compact(args):
    if not os.path.isdir(args.dir):
        fail(f"{args.dir}: not a directory (--dir names bench/ttq_data.sh's --out)")
    names = sorted(n for n in os.listdir(args.dir) if re.fullmatch(r"ttq_(train|val)_\d{6}\.bin", n))
    if not names:
        fail(f"{args.dir}: no ttq_train_*.bin / ttq_val_*.bin shards")
    shards = {n: read_shard(os.path.join(args.dir, n)) for n in names}
    used = sorted(set().union(*(set(tokens) for _, tokens in shards.values())))
    new_id = {old: new for new, old in enumerate(used)}
    for name, (header, tokens) in shards.items():
        path = os.path.join(args.dir, name)
        with open(path + ".tmp", "wb") as f:  # renamed over the original once complete
            f.write(header)
            f.write(array.array("H", (new_id[t] for t in tokens)).tobytes())
        os.replace(path + ".tmp", path)
    with open(os.path.join(args.dir, "vocab_map.tsv"), "w") as f:
        f.write("".join(f"{new}\t{old}\n" for new, old in enumerate(used)))
    counts_path = os.path.join(args.dir, "tokens.txt")  # one "vocab" line, however often this runs
    lines = open(counts_path).readlines() if os.path.exists(counts_path) else []
    with open(counts_path, "w") as f:
        f.write("".join(line for line in lines if not line.startswith("vocab ")) + f"vocab {len(used)}\n")
    print(f"compact vocab: {len(used)} of GPT-2's 50257 ids occur in {len(names)} shards; renumbered "
          f"0..{len(used) - 1} (map: {os.path.join(args.dir, 'vocab_map.tsv')})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("corpus")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--max-docs", type=int, default=0, help="first N documents of each source (0: all)")
    p = sub.add_parser("params")
    p.add_argument("descriptors", nargs="+")
    p = sub.add_parser("analyze")
    p.add_argument("--runs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tokens-per-step", type=int, required=True)
    p.add_argument("--configs", default="a,b,c")
    p = sub.add_parser("best")
    p.add_argument("--runs", required=True)
    p.add_argument("--config", required=True, choices=["a", "b", "c"])
    p = sub.add_parser("compact")
    p.add_argument("--dir", required=True)
    args = parser.parse_args()
    {"compact": command_compact, "corpus": command_corpus, "params": command_params, "analyze": command_analyze, "best": command_best}[
        args.command](args)


if __name__ == "__main__":
    main()
