#!/usr/bin/env bash
# The time-to-quality benchmark (bench/time_to_quality.sh, issue 20), so that it cannot rot:
# bench/ttq.py's main.log parser and analysis on hand-written logs with a known answer (and a
# planted wrong answer that must be rejected), build/ttq_plot, bad options, and the whole
# pipeline in --smoke mode (data, sweep, analysis, plot, summary) in under a minute.
# Alone: bash tests/test_ttq.sh [WORKDIR]. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
WORK=${1:-$ROOT/build/test}/ttq
rm -rf "$WORK"
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source "$ROOT/tests/lib_checks.sh"
PY=${PYTHON:-python3}
make --no-print-directory -s "$BIN/train_gpt2" "$BIN/tokenizer" build/ttq_plot >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "FAIL - build"; echo "0 passed, 1 failed"; exit 1; }

# ---------------------------------------------------------------------------------------------
# 1. The analysis on hand-written logs, 1000 tokens a step, every run planned for 200 steps.
#    (a) lr 1e-3 ends at 5.0, lr 2e-3 at 5.5: best 1e-3, target 5.0.
#    (b) 5.5 at step 100, 4.5 at 150: reaches 5.0 at step 125 -> 125000 tokens, ratio 0.625.
#    (c) lr 0.02: 6.0 at 100, 5.2 at 120, 4.8 at 140: 5.0 at step 130 -> 130000 tokens, 0.65;
#        its malformed lines (nan, hexadecimal, a key glued to the step, an unfinished last
#        line) are skipped and counted (4). (c) lr 0.04 stops at step 100 with 3.0: incomplete,
#        so not the best although its last loss is the lowest.
RUNS=$WORK/synthetic/runs
mkdir -p "$RUNS"/a_lr1e-3 "$RUNS"/a_lr2e-3 "$RUNS"/b_lr1e-3 "$RUNS"/c_lr0.02 "$RUNS"/c_lr0.04
for r in a_lr1e-3 a_lr2e-3 b_lr1e-3 c_lr0.02 c_lr0.04; do echo 200 >"$RUNS/$r.max_steps"; done
printf 's:0 tel:10.0\ns:0 trl:10.9 lr:1e-3 norm:1.0\ns:100 tel:6.0\ns:200 tel:5.0\n' >"$RUNS/a_lr1e-3/main.log"
printf 's:0 tel:10.0\ns:100 tel:6.5\ns:200 tel:5.5\n' >"$RUNS/a_lr2e-3/main.log"
printf 's:0 tel:10.0\ns:100 tel:5.5\ns:150 tel:4.5\ns:200 tel:4.2\n' >"$RUNS/b_lr1e-3/main.log"
printf 's:0 tel:10.0\ns:100 tel:6.0\ns:110 tel:nan\ns:115 tel:0x1p2\ns:117tel:1.0\ns:120 tel:5.2\ns:140 tel:4.8\ns:200 tel:4.1\ns:201 tel:1' \
    >"$RUNS/c_lr0.02/main.log"
printf 's:0 tel:10.0\ns:100 tel:3.0\n' >"$RUNS/c_lr0.04/main.log"
run analyze "$PY" bench/ttq.py analyze --runs "$RUNS" --out "$WORK/synthetic/out" --tokens-per-step 1000 \
    --configs a,b,c && ok "analyze runs on hand-written logs" || not_ok "analyze failed: $(tail -3 "$WORK/analyze.log")"
# expect NAME PYTHON_EXPRESSION EXPECTED TOLERANCE: the expression over results.json (r) must be
# within TOLERANCE of EXPECTED. The numbers are exact in binary up to the division of the
# interpolation (one rounding, relative 1e-16): 1e-6 tokens is far above that.
expect() {
    "$PY" - "$WORK/synthetic/out/results.json" "$2" "$3" "$4" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
value = eval(sys.argv[2])
expected = sys.argv[3]
if expected in ("None", "a", "b", "c") or not expected.replace(".", "").replace("-", "").replace("e", "").isdigit():
    sys.exit(0 if str(value) == expected else 1)
sys.exit(0 if value is not None and abs(float(value) - float(expected)) <= float(sys.argv[4]) else 1)
EOF
}
check_expect() { if expect "$@"; then ok "$1"; else not_ok "$1: $2 is not $3"; fi; }
check_expect "best lr of (a) is the lowest final loss" 'r["best"]["a"]' 1e-3 0
check_expect "target is (a)'s best final val loss" 'r["target_val_loss"]' 5.0 1e-9
check_expect "(b) reaches the target at 125000 tokens (interpolated)" 'r["reach"]["b"]["tokens"]' 125000 1e-6
check_expect "(b) ratio 0.625" 'r["reach"]["b"]["ratio_to_a"]' 0.625 1e-9
check_expect "(c) best is the complete run, not the stopped one" 'r["best"]["c"]' 0.02 0
check_expect "(c) reaches the target at 130000 tokens, across skipped malformed lines" \
    'r["reach"]["c"]["tokens"]' 130000 1e-6
check_expect "(c)'s 4 malformed lines counted" \
    '[x["malformed_lines"] for x in r["runs"] if x["lr"] == "0.02"][0]' 4 0
check_expect "(c) lr 0.04 marked incomplete" '[x["complete"] for x in r["runs"] if x["lr"] == "0.04"][0]' False 0
# planted wrong answers: the same checks must reject them
if expect planted 'r["reach"]["b"]["tokens"]' 125001 1e-6; then not_ok "planted: 125001 tokens accepted"; else ok "planted wrong (b) tokens rejected"; fi
if expect planted 'r["best"]["a"]' 2e-3 0; then not_ok "planted: best lr 2e-3 accepted"; else ok "planted wrong best lr rejected"; fi
grep -q "| c llama+muon | 130000 | 0.650 | met |" "$WORK/synthetic/out/sweep.md" &&
    ok "sweep.md: (c) 130000 tokens, 0.650, goal met" || not_ok "sweep.md lacks (c)'s row: $(grep 'c llama' "$WORK/synthetic/out/sweep.md")"
rows=$(($(wc -l <"$WORK/synthetic/out/curves.csv") - 1))
[ "$rows" = 17 ] && ok "curves.csv: 17 points (3+3+4+5+2)" || not_ok "curves.csv: $rows points, want 17"
# never reached: a target below every point of (b)
mkdir -p "$WORK/synthetic/runs2/a_lr1" "$WORK/synthetic/runs2/b_lr1"
printf 's:0 tel:10.0\ns:10 tel:2.0\n' >"$WORK/synthetic/runs2/a_lr1/main.log"
printf 's:0 tel:10.0\ns:10 tel:2.5\n' >"$WORK/synthetic/runs2/b_lr1/main.log"
run analyze2 "$PY" bench/ttq.py analyze --runs "$WORK/synthetic/runs2" --out "$WORK/synthetic/out2" \
    --tokens-per-step 10 --configs a,b
grep -q "| b llama+adamw | not reached | - |" "$WORK/synthetic/out2/sweep.md" &&
    ok "a target never reached reads 'not reached'" || not_ok "not reached: $(cat "$WORK/synthetic/out2/sweep.md")"

# ---------------------------------------------------------------------------------------------
# 2. The plot: each series carries its log's steps and values; a foreign file is not replaced.
SVG=$WORK/synthetic/plot.svg
check "ttq_plot draws two logs" build/ttq_plot "$SVG" 1000 "a <title> & more" "(a) gpt2" "$RUNS/a_lr1e-3/main.log" \
    "(c) muon" "$RUNS/c_lr0.02/main.log"
"$PY" - "$SVG" <<'EOF' >"$WORK/svg.log" 2>&1 && ok "plot: XML, 2 series with the logs' steps and values, x = step*1000/1e6" || not_ok "plot: $(tail -2 "$WORK/svg.log")"
import sys, xml.etree.ElementTree as E
ns = {"s": "http://www.w3.org/2000/svg"}
root = E.parse(sys.argv[1]).getroot()
plot = root.find(".//s:g[@id='plot']", ns)
x0, x1 = float(plot.get("data-x-min")), float(plot.get("data-x-max"))
left, width = float(plot.get("data-left")), float(plot.get("data-width"))
lines = root.findall(".//s:g[@class='series']/s:polyline", ns)
assert len(lines) == 2, len(lines)
assert lines[0].get("data-steps") == "0 100 200" and lines[0].get("data-values") == "10.0 6.0 5.0"
assert lines[1].get("data-steps") == "0 100 120 140 200", lines[1].get("data-steps")
for line in lines:
    for step, point in zip(line.get("data-steps").split(), line.get("points").split()):
        x = left + (int(step) * 1000 / 1e6 - x0) / (x1 - x0) * width
        assert abs(x - float(point.split(",")[0])) <= 0.006, (step, point, x)  # printed to 0.01 px
EOF
echo "not a plot" >"$WORK/synthetic/foreign.svg"
expect_error "ttq_plot leaves a foreign file alone" "foreign.svg.*not written by llmc" \
    build/ttq_plot "$WORK/synthetic/foreign.svg" 1000 t a "$RUNS/a_lr1e-3/main.log"
expect_error "ttq_plot: a missing log named" "nothing.log" build/ttq_plot "$WORK/x.svg" 1000 t a "$WORK/nothing.log"

# ---------------------------------------------------------------------------------------------
# 3. Bad options: one error line each.
expect_error "unknown config" "configs a,x" bash bench/time_to_quality.sh --configs a,x --work "$WORK/bad" --dry-run
expect_error "total batch not a multiple of B*T" "total-batch" bash bench/time_to_quality.sh --total-batch 1000 --dry-run
expect_error "budget under one step" "less than one step" bash bench/time_to_quality.sh --tokens 10 --dry-run
if $BIN/train_gpt2 --help | grep -q "arch=llama"; then
    ok "train_gpt2 supports arch=llama: (b) runs in the smoke test"
else
    expect_error "(b) without llama support names what is missing" "llama architecture" \
        bash bench/time_to_quality.sh --trainer $BIN/train_gpt2 --configs a,b --work "$WORK/bad" --dry-run
fi

# ---------------------------------------------------------------------------------------------
# 4. The whole pipeline, --smoke: tiny data, each supported config, 2 lrs, 20 steps.
start=$SECONDS
if OMP_NUM_THREADS=1 bash bench/time_to_quality.sh --smoke --trainer $BIN/train_gpt2 --work "$WORK/smoke" >"$WORK/smoke.log" 2>&1; then
    ok "--smoke runs end to end ($((SECONDS - start)) s)"
else
    not_ok "--smoke failed: $(tail -5 "$WORK/smoke.log")"
fi
# (the sanitized build is several times slower: no time limit there)
if [ "${LLMC_SANITIZE:-0}" != 1 ]; then
    [ $((SECONDS - start)) -lt 60 ] && ok "--smoke under 60 s" || not_ok "--smoke took $((SECONDS - start)) s"
fi
R=$WORK/smoke/results
for f in summary.md curves.csv results.json loss_vs_tokens.svg commands.txt; do
    [ -s "$R/$f" ] && ok "smoke wrote $f" || not_ok "smoke: no $f"
done
configs=$(sed -n 's/.*configs run: //p' "$R/summary.md")
runs=$(ls -d "$WORK"/smoke/runs/*_lr*/ 2>/dev/null | wc -l)
[ "$runs" = $((2 * $(echo "$configs" | tr ',' '\n' | wc -l))) ] && ok "2 runs per config ($configs)" ||
    not_ok "$runs runs for configs '$configs'"
copied=0
for log in "$WORK"/smoke/runs/*_lr*/main.log; do
    cmp -s "$log" "$R/logs/$(basename "$(dirname "$log")").log" && copied=$((copied + 1))
done
[ "$copied" = "$runs" ] && ok "results/logs/ holds each run's main.log ($copied)" || not_ok "results/logs/: $copied of $runs main.logs"
# each run: val at steps 0, 5, 10, 15, 20 (-v 5, -x 20); curves.csv holds them all
points=$(grep -c "^a," "$R/curves.csv")
[ "$points" = 10 ] && ok "curves.csv: (a) 2 runs x 5 val points" || not_ok "curves.csv: (a) has $points points, want 10"
grep -q "Tokens to reach (a)'s final val loss" "$R/summary.md" && grep -q "^- commit: " "$R/summary.md" &&
    ok "summary.md has the sweep, the reach table and the commit" || not_ok "summary.md incomplete"
ls "$WORK"/smoke/runs/*/model_*.bin >/dev/null 2>&1 && not_ok "checkpoints left behind" || ok "run checkpoints deleted"
# a second call keeps the complete runs
OMP_NUM_THREADS=1 bash bench/time_to_quality.sh --smoke --trainer $BIN/train_gpt2 --work "$WORK/smoke" >"$WORK/smoke2.log" 2>&1
kept=$(grep -c "complete in .*, kept" "$WORK/smoke2.log")
[ "$kept" = "$runs" ] && ok "a rerun keeps the $runs complete runs" || not_ok "rerun kept $kept of $runs"

# ---------------------------------------------------------------------------------------------
# 5. (b) and (c) through a stand-in trainer whose --help shows llama and Muon: it writes a main.log
#    falling linearly from 10 at step 0 to 3 + 1000 |lr - 3e-3| at the last step (AdamW lr 3e-3
#    best), 0.5 lower with --muon-lr, and records its lrs. (c) must get --optimizer muon
#    --muon-lr X and, as its AdamW lr, (b)'s best: 3e-3.
STUB=$WORK/stub_trainer.sh
cat >"$STUB" <<'STUB_END'
#!/usr/bin/env bash
if [ "${1:-}" = --help ]; then echo "-e ... arch=llama,L=.. --optimizer STR --muon-lr FLOAT"; exit 0; fi
out="" steps="" every="" lr="" muon=""
while [ $# -gt 0 ]; do
    case "$1" in -o) out=$2 ;; -x) steps=$2 ;; -v) every=$2 ;; -l) lr=$2 ;; --muon-lr) muon=$2 ;; esac
    shift
done
mkdir -p "$out"
echo "$lr $muon" >"$out/flags"
python3 - "$steps" "$every" "$lr" "$muon" >"$out/main.log" <<'PY'
import math, sys
steps, every, lr, muon = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
final = 3 + 1000 * abs(lr - 3e-3) - (0.5 if muon else 0)
for s in range(0, steps + 1, every):
    print(f"s:{s} tel:{10 - (10 - final) * s / steps:.6f}")
PY
STUB_END
chmod +x "$STUB"
if bash bench/time_to_quality.sh --smoke --trainer "$STUB" --configs a,b,c --lrs-b "1e-3 3e-3 1e-2" \
    --work "$WORK/stub" >"$WORK/stub.log" 2>&1; then ok "(a), (b), (c) with a llama+muon trainer"; else
    not_ok "stub trainer run failed: $(tail -3 "$WORK/stub.log")"
fi
[ "$(cat "$WORK/stub/runs/c_lr0.02/flags" 2>/dev/null)" = "3e-3 0.02" ] &&
    ok "(c): --muon-lr 0.02 with (b)'s best AdamW lr 3e-3" ||
    not_ok "(c) flags: $(cat "$WORK/stub/runs/c_lr0.02/flags" 2>/dev/null)"
grep -q -- "-e arch=llama.* --optimizer muon --muon-lr 0.01" "$WORK/stub/results/commands.txt" &&
    ok "(c)'s command: the llama descriptor, --optimizer muon" ||
    not_ok "(c)'s command: $(grep muon "$WORK/stub/results/commands.txt")"
# a changed command runs again: (c) with another AdamW lr; (a) and (b) are kept
bash bench/time_to_quality.sh --smoke --trainer "$STUB" --configs a,b,c --lrs-b "1e-3 3e-3 1e-2" \
    --adamw-lr-c 1e-3 --work "$WORK/stub" >"$WORK/stub2.log" 2>&1
kept=$(grep -c "complete in .*, kept" "$WORK/stub2.log")
[ "$kept" = 5 ] && [ "$(cat "$WORK/stub/runs/c_lr0.02/flags" 2>/dev/null)" = "1e-3 0.02" ] &&
    ok "a changed (c) command reruns (c), keeps the 5 others" || not_ok "rerun: $kept kept, (c) flags $(cat "$WORK/stub/runs/c_lr0.02/flags")"
bash bench/time_to_quality.sh --smoke --trainer "$STUB" --configs a,b,c --lrs-b "1e-3 3e-3 1e-2" \
    --work "$WORK/stub" >"$WORK/stub3.log" 2>&1
# (a)'s and (b)'s best (3e-3) end at 3.0; (c) falls from 10 to 2.5 over 20 steps of 128 tokens:
# 3.0 at step 20 * 7 / 7.5 = 18.667, between the eval points 15 (4.375) and 20 (2.5), whose
# interpolation is exact for a line: 2389.33 tokens (printed values exact, so 1e-3 is ample)
cp "$WORK/stub/results/results.json" "$WORK/synthetic/out/results.json"
check_expect "stub: (c) reaches 3.0 at 2389.33 tokens" 'r["reach"]["c"]["tokens"]' 2389.3333 0.001
check_expect "stub: (b) reaches it at its end (ratio 1)" 'r["reach"]["b"]["ratio_to_a"]' 1.0 1e-6

# ---------------------------------------------------------------------------------------------
# 6. --compact-vocab: the renumbered shards decode, through vocab_map.tsv, to exactly the tokens
#    of the GPT-2-id shards (a planted swap in the map must fail that check); the models get
#    V = the ids used; --jobs 2 gives the same curves as one run at a time (the runs are
#    deterministic, --jobs only schedules them).
bash bench/ttq_data.sh --max-docs 30 --out "$WORK/plain" >"$WORK/plain.log" 2>&1
bash bench/ttq_data.sh --max-docs 30 --out "$WORK/compact" --compact-vocab >"$WORK/compact.log" 2>&1 &&
    ok "ttq_data.sh --compact-vocab" || not_ok "ttq_data.sh --compact-vocab: $(tail -2 "$WORK/compact.log")"
# decoded DIR MAP: exit 0 when DIR's shards decode through MAP to the plain shards
decoded() {
    "$PY" - "$WORK/plain" "$1" "$2" <<'EOF'
import array, os, sys
plain, compact, map_path = sys.argv[1:]
old_of = [int(line.split("\t")[1]) for line in open(map_path)]
assert old_of == sorted(set(old_of)), "map not increasing"
used = set()
for name in ("ttq_train_000000.bin", "ttq_val_000000.bin"):
    a, b = array.array("H"), array.array("H")
    a.frombytes(open(os.path.join(plain, name), "rb").read()[1024:])
    b.frombytes(open(os.path.join(compact, name), "rb").read()[1024:])
    assert [old_of[t] for t in b] == list(a), name
    assert open(os.path.join(plain, name), "rb").read()[:1024] == open(os.path.join(compact, name), "rb").read()[:1024]
    used |= set(b)
assert used == set(range(len(old_of))), "ids not dense"
assert old_of[-1] == 50256, "<|endoftext|> is not V-1"
EOF
}
decoded "$WORK/compact" "$WORK/compact/vocab_map.tsv" && ok "compact shards decode to the GPT-2 shards; ids dense; eot = V-1" ||
    not_ok "compact shards do not decode to the plain ones"
VOCAB=$(sed -n 's/^vocab //p' "$WORK/compact/tokens.txt")
# planted: the GPT-2 ids of new ids 4 and 5 swapped
awk -F'\t' -v OFS='\t' 'NR == 5 {t = $2; next} NR == 6 {print 4, $2; print 5, t; next} {print}' \
    "$WORK/compact/vocab_map.tsv" >"$WORK/compact/planted_map.tsv"
decoded "$WORK/compact" "$WORK/compact/planted_map.tsv" 2>/dev/null && not_ok "planted: a map with two ids swapped passed" ||
    ok "planted: two swapped ids in the map are caught"
mkdir -p "$WORK/bad_shard"
printf 'not a shard' >"$WORK/bad_shard/ttq_train_000000.bin"
expect_error "compact: a bad shard named with its field" "ttq_train_000000.bin: header" "$PY" bench/ttq.py compact --dir "$WORK/bad_shard"
# (two more smoke runs: left to the normal pass, the sanitized trainer ran section 4's)
if [ "${LLMC_SANITIZE:-0}" != 1 ]; then
    for jobs in 1 2; do
        OMP_NUM_THREADS=1 bash bench/time_to_quality.sh --smoke --compact-vocab --jobs $jobs --trainer $BIN/train_gpt2 \
            --work "$WORK/compact_j$jobs" >"$WORK/compact_j$jobs.log" 2>&1 ||
            not_ok "--smoke --compact-vocab --jobs $jobs: $(tail -3 "$WORK/compact_j$jobs.log")"
    done
    n_v=$(grep -c -- "-e [^ ]*V=$VOCAB," "$WORK/compact_j2/results/commands.txt")
    [ -n "$VOCAB" ] && [ "$n_v" -ge 4 ] && ! grep -q "V=50257" "$WORK/compact_j2/results/commands.txt" &&
        ok "--compact-vocab: every run's model has V=$VOCAB ($n_v runs)" || not_ok "--compact-vocab: V=$VOCAB in $n_v commands"
    cmp -s "$WORK/compact_j1/results/curves.csv" "$WORK/compact_j2/results/curves.csv" && [ -s "$WORK/compact_j2/results/curves.csv" ] &&
        ok "--jobs 2 gives the curves of --jobs 1" || not_ok "--jobs 2 curves differ from --jobs 1"
fi
expect_error "--compact-vocab on shards made without it" "no 'vocab' line" \
    bash bench/time_to_quality.sh --compact-vocab --prepared-data "$WORK/plain" --work "$WORK/bad" --out "$WORK/bad/results" --configs a
expect_error "--jobs 0" "jobs 0" bash bench/time_to_quality.sh --jobs 0 --dry-run

checks_summary
