#!/usr/bin/env bash
# HellaSwag tests (section 17 of tests/run_tests.sh; alone: bash tests/test_hellaswag.sh):
# `tokenizer eval-file` byte-identical to llm.c's writer (tests/tokenizer_reference.py eval-file,
# tiktoken) on ../shared/data/hellaswag/val_1000.jsonl; bad JSONL lines refused or skipped with
# their line numbers; hostile eval files refused by the trainers; -h on a d2 model trained a few
# steps: train_gpt2 (CPU) and the emulated train_gpt2cu (FP32, B=6: not a multiple of 4) against
# scripts/eval_hellaswag.py (PyTorch), every candidate's mean loss and every prediction; -x 0
# runs no training step. Ends with one line "N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${LLMC_HELLASWAG_TEST_DIR:-$ROOT/build/hellaswag_test}
DATA=${LLMC_DATA_DIR:-$ROOT/../shared/data}
rm -rf "$WORK"
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source "$ROOT/tests/lib_checks.sh"

CU=./build/cuda/emu-fp32/train_gpt2cu
make --no-print-directory -s "$BIN/tokenizer" "$BIN/train_gpt2" "$CU" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
TORCH_PY=""
for candidate in "${PYTHON:-}" /usr/bin/python3 python3; do
    if [ -n "$candidate" ] && "$candidate" -c "import torch" >/dev/null 2>&1; then TORCH_PY=$candidate; break; fi
done
TIKTOKEN_PY=""
for candidate in "${TOKENIZER_PYTHON:-}" "$ROOT/build/venv-tiktoken/bin/python" "${PYTHON:-}" python3 /usr/bin/python3; do
    if [ -n "$candidate" ] && "$candidate" -c "import tiktoken, regex" >/dev/null 2>&1; then TIKTOKEN_PY=$candidate; break; fi
done
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=passive # idle OpenMP threads would otherwise starve the emulation's workers
VAL=$DATA/hellaswag/val_1000.jsonl
T=$BIN/tokenizer

# ---------------------------------------------------------------------------------------------
# 1. eval-file: byte-identical to llm.c's dev/data/hellaswag.py + write_evalfile (re-implemented
#    on tiktoken in tests/tokenizer_reference.py)
if run eval_file "$T" eval-file -i "$VAL" -o "$WORK/val.bin"; then
    ok "eval-file on val_1000.jsonl: $(tail -n 1 "$WORK/eval_file.log")"
else
    not_ok "eval-file on val_1000.jsonl (see $WORK/eval_file.log)"
fi
if [ -z "$TIKTOKEN_PY" ]; then
    not_ok "no python with tiktoken (bash scripts/install_deps.sh test makes build/venv-tiktoken): eval-file cannot be compared"
elif "$TIKTOKEN_PY" tests/tokenizer_reference.py eval-file "$VAL" "$WORK/val_ref.bin" >"$WORK/ref.log" 2>&1 &&
    cmp -s "$WORK/val.bin" "$WORK/val_ref.bin"; then
    ok "eval-file: $(stat -c %s "$WORK/val.bin") bytes identical to llm.c's writer on tiktoken"
else
    not_ok "eval-file differs from llm.c's writer (cmp $WORK/val.bin $WORK/val_ref.bin; $WORK/ref.log)"
fi

# ---------------------------------------------------------------------------------------------
# 2. bad lines: refused with the line number, or (--skip-bad 1) each printed and counted
GOOD1=$(sed -n 1p "$VAL")
GOOD2=$(sed -n 2p "$VAL")
{
    echo "$GOOD1"
    echo '{"ctx": "A man sits.", "endings": ["a", "b", "c"], "label": 0}'
    echo '{"ctx": "A man sits.", "endings": ["a", "b", "c", "d"], "label": 4}'
    echo '{"ctx": "A man sits.", "endings": ["a", "b", "c", "d"], "label": 1'
    echo ''
    echo '{"endings": ["a", "b", "c", "d"], "label": 1}'
    echo '{"ctx": "A man sits.", "endings": ["a", "b", 3, "d"], "label": 1}'
    echo '{"ctx": "A man sits.", "endings": ["a", "b", "c", "d"], "label": "1"}'
    echo "{\"ctx\": \"$(printf 'word %.0s' $(seq 40))\", \"endings\": [\"a\", \"b\", \"c\", \"d\"], \"label\": 2}"
    echo "$GOOD2"
} >"$WORK/bad.jsonl"
expect_error "eval-file refuses a bad line by default" "bad.jsonl: line 2: 3 endings, expected 4" \
    "$T" eval-file -i "$WORK/bad.jsonl" -o "$WORK/bad.bin"
[ -e "$WORK/bad.bin" ] && not_ok "a refused eval-file left $WORK/bad.bin" || ok "a refused eval-file leaves no output"
if run skip_bad "$T" eval-file -i "$WORK/bad.jsonl" -o "$WORK/skipped.bin" --skip-bad 1 --max-len 40 &&
    grep -q "line 2: skipped: 3 endings, expected 4" "$WORK/skip_bad.log" &&
    grep -q "line 3: skipped: label 4 out of range 0..3" "$WORK/skip_bad.log" &&
    grep -q "line 4: skipped: not valid JSON" "$WORK/skip_bad.log" &&
    grep -q 'line 6: skipped: "ctx" missing' "$WORK/skip_bad.log" &&
    grep -q "line 7: skipped: ending 2 is not a string" "$WORK/skip_bad.log" &&
    grep -q 'line 8: skipped: "label" missing or not an integer' "$WORK/skip_bad.log" &&
    grep -q "line 9: skipped: candidate 0 has 4[0-9] tokens .*too long for --max-len 40" "$WORK/skip_bad.log" &&
    grep -q ": 2 examples (7 line(s) skipped)" "$WORK/skip_bad.log"; then
    ok "eval-file --skip-bad 1: 7 bad lines skipped, each named by its line number; 2 examples written"
else
    not_ok "eval-file --skip-bad 1 (see $WORK/skip_bad.log)"
fi
printf '%s\n%s\n' "$GOOD1" "$GOOD2" >"$WORK/good2.jsonl"
"$T" eval-file -i "$WORK/good2.jsonl" -o "$WORK/good2.bin" 2>/dev/null
cmp -s "$WORK/skipped.bin" "$WORK/good2.bin" && ok "the skipped file equals the file of the 2 good lines" ||
    not_ok "the file written with --skip-bad differs from the good lines' file"
{ printf '\n%.0s' 1 2 3 4 5 6 7 8; sed -n 9p "$WORK/bad.jsonl"; } >"$WORK/long.jsonl" # blank lines keep the number
expect_error "eval-file --max-len: a candidate too long" "long.jsonl: line 9: candidate 0 has .* too long for --max-len 40" \
    "$T" eval-file -i "$WORK/long.jsonl" -o "$WORK/long.bin" --max-len 40

# ---------------------------------------------------------------------------------------------
# 3. hostile eval files: one error line naming the file and the field, exit 1
"$T" encode -i "$DATA/tinyshakespeare.txt" -o "$WORK/train.bin" 2>/dev/null
head -48 "$VAL" >"$WORK/sub.jsonl"
"$T" eval-file -i "$WORK/sub.jsonl" -o "$WORK/sub.bin" 2>/dev/null
SUB_LONGEST=$(
    "$TORCH_PY" - "$WORK/sub.bin" <<'EOF'
import struct, sys
d = open(sys.argv[1], "rb").read()
print(struct.unpack_from("<i", d, 12)[0])
EOF
)
E_FLAGS=(-e d2 -i "$WORK/train.bin" -j "" -x 0 -s 0 -b 4 -t 160)
patch_file() { # patch_file OUT OFFSET STRUCT_FORMAT VALUE: a copy of sub.bin with one field changed
    "$TORCH_PY" - "$WORK/sub.bin" "$@" <<'EOF'
import struct, sys
src, out, offset, fmt, value = sys.argv[1:]
d = bytearray(open(src, "rb").read())
struct.pack_into(fmt, d, int(offset), int(value))
open(out, "wb").write(d)
EOF
}
patch_file "$WORK/magic.bin" 0 "<i" 20240520
expect_error "eval file: bad magic" "magic.bin: bad magic 20240520 in header\[0\]" $BIN/train_gpt2 "${E_FLAGS[@]}" -h "$WORK/magic.bin"
patch_file "$WORK/count.bin" 8 "<i" 49
expect_error "eval file: more examples in header[2] than records" "count.bin: .*truncated\|count.bin: example 48" \
    $BIN/train_gpt2 "${E_FLAGS[@]}" -h "$WORK/count.bin"
patch_file "$WORK/longest.bin" 12 "<i" $((SUB_LONGEST + 2))
expect_error "eval file: header[3] is not the longest record" "longest.bin: header\[3\]" $BIN/train_gpt2 "${E_FLAGS[@]}" -h "$WORK/longest.bin"
patch_file "$WORK/label.bin" 1030 "<H" 4
expect_error "eval file: label out of range" "label.bin: example 0: label 4" $BIN/train_gpt2 "${E_FLAGS[@]}" -h "$WORK/label.bin"
patch_file "$WORK/length.bin" 1034 "<H" 60000
expect_error "eval file: context length past the record" "length.bin: example 0: " $BIN/train_gpt2 "${E_FLAGS[@]}" -h "$WORK/length.bin"
patch_file "$WORK/token.bin" 1036 "<H" 60000
expect_error "eval file: token id >= V" "token.bin: token id 60000 >= the model's V=50257" $BIN/train_gpt2 "${E_FLAGS[@]}" -h "$WORK/token.bin"
head -c 2000 "$WORK/sub.bin" >"$WORK/cut.bin"
expect_error "eval file: truncated" "cut.bin: " $BIN/train_gpt2 "${E_FLAGS[@]}" -h "$WORK/cut.bin"
expect_error "eval file: candidates longer than -t" "sub.bin: its longest candidate .* need -t >= " \
    $BIN/train_gpt2 -e d2 -i "$WORK/train.bin" -j "" -x 0 -s 0 -b 4 -t 32 -h "$WORK/sub.bin"
expect_error "eval file: the emulated CUDA trainer refuses it too" "magic.bin: bad magic" $CU "${E_FLAGS[@]}" -h "$WORK/magic.bin"
expect_error "-x below -1" "bad value -2 for -x" $BIN/train_gpt2 -x -2
expect_error "--hellaswag-out without -h" "hellaswag-out needs -h" $BIN/train_gpt2 --hellaswag-out "$WORK/x.txt"

# ---------------------------------------------------------------------------------------------
# 4. a d2 trained 12 steps: -h at its validations (6, 12) against PyTorch on the step-12 model
#    (48 examples of val_1000, 192 candidates, up to 127 tokens each).
# Tolerance of a candidate's mean loss (about 10): fp32 rounding, u = 6e-8; the 50257-way sum of
# the log-sum-exp carries about u*sqrt(V) = 1.3e-5 relative, the two layers and the 128-wide dot
# products before it less; 1e-4 leaves a margin of about 7 (random init measured 2.5e-6).
TOL=1e-4
TRAIN_DIR=$WORK/trained
if run train_h $BIN/train_gpt2 -e d2 -i "$WORK/train.bin" -j "" -b 4 -t 144 -x 12 -v 6 -l 1e-3 -s 0 \
    -o "$TRAIN_DIR" -h "$WORK/sub.bin" --hellaswag-out "$WORK/c_all.txt" &&
    grep -q "^s:6 eval:0\.[0-9]\{4\}$" "$TRAIN_DIR/main.log" && grep -q "^s:12 eval:0\.[0-9]\{4\}$" "$TRAIN_DIR/main.log" &&
    [ "$(grep -c "^hellaswag: [0-9]*/48 = 0\.[0-9]\{4\}" "$WORK/train_h.log")" = 2 ] &&
    ! grep -q "^s:0 eval" "$TRAIN_DIR/main.log"; then
    ok "train_gpt2 -h: hellaswag at steps 6 and 12 (llm.c's cadence: not at step 0); main.log: $(grep eval "$TRAIN_DIR/main.log" | tr '\n' ' ')"
else
    not_ok "train_gpt2 -h during training (see $WORK/train_h.log, $TRAIN_DIR/main.log)"
fi
awk '$1 == 12' "$WORK/c_all.txt" >"$WORK/c12.txt"
MODEL=$TRAIN_DIR/model_00000012.bin
# compare A B NAME: every mean loss within TOL, every prediction equal where B's best two are more
# than 2*TOL apart (closer ones are counted and reported)
compare() {
    "$TORCH_PY" - "$1" "$2" "$TOL" <<'EOF'
import sys
a = [l.split() for l in open(sys.argv[1])]
b = [l.split() for l in open(sys.argv[2])]
tol = float(sys.argv[3])
if len(a) != len(b) or not a:
    sys.exit(f"{len(a)} lines against {len(b)}")
worst, close, differ, correct = 0.0, 0, 0, 0
for x, y in zip(a, b):
    if x[1:3] != y[1:3]:
        sys.exit(f"example/label differ: {x[:3]} {y[:3]}")
    la, lb = [float(v) for v in x[4:8]], [float(v) for v in y[4:8]]
    worst = max(worst, max(abs(p - q) for p, q in zip(la, lb)))
    s = sorted(lb)
    if s[1] - s[0] <= 2 * tol:
        close += 1
    elif x[3] != y[3]:
        differ += 1
    correct += x[3] == x[2]
mean = sum(float(v) for x in b for v in x[4:8]) / (4 * len(b))
if worst > tol or differ:
    sys.exit(f"max |loss diff| {worst:.2e} (tol {tol:g}), {differ} predictions differ")
print(f"{len(a)} examples, {correct} correct, mean candidate loss {mean:.3f}, max |loss diff| {worst:.2e}, "
      f"predictions identical ({close} near-ties within 2*tol)")
EOF
}
if [ -z "$TORCH_PY" ]; then
    not_ok "no python with torch: the PyTorch reference cannot run"
elif run ref12 "$TORCH_PY" scripts/eval_hellaswag.py -e "$MODEL" -i "$WORK/sub.bin" --threads "$OMP_NUM_THREADS" \
    --out "$WORK/py12.txt" && summary=$(compare "$WORK/c12.txt" "$WORK/py12.txt" 2>&1); then
    ok "trained d2, train_gpt2 vs PyTorch: $summary"
    # the model is trained: its candidates' mean loss is well below a random d2's (10.86 measured,
    # about ln(50257) = 10.8)
    mean=$(awk '{ s += $5 + $6 + $7 + $8 } END { printf "%.3f", s / (4 * NR) }' "$WORK/py12.txt")
    awk -v m="$mean" 'BEGIN { exit !(m < 10.2) }' && ok "the compared model is trained: mean candidate loss $mean < 10.2 (random init: 10.86)" ||
        not_ok "the compared model looks untrained: mean candidate loss $mean"
    grep -q "^hellaswag: $(awk '$3 == $4' "$WORK/py12.txt" | wc -l)/48 = " "$WORK/ref12.log" &&
        ok "the reference's count of correct examples matches its lines" || not_ok "reference count (see $WORK/ref12.log)"
else
    not_ok "trained d2, train_gpt2 vs PyTorch: ${summary:-see $WORK/ref12.log}"
fi
# planted error: one candidate's loss off by 2*TOL must fail the comparison
awk -v d="$TOL" 'NR == 5 { $6 = $6 + 2 * d } { print }' "$WORK/c12.txt" >"$WORK/c12_planted.txt"
if compare "$WORK/c12_planted.txt" "$WORK/py12.txt" >/dev/null 2>&1; then
    not_ok "a loss off by 2*tol passed the comparison"
else
    ok "planted error: a loss off by 2*tol fails the comparison"
fi

# ---------------------------------------------------------------------------------------------
# 5. -x 0: no training step, only the evaluation; the same numbers as at step 12 of the run
if run x0 $BIN/train_gpt2 -e "$MODEL" -i "$WORK/train.bin" -j "" -b 4 -t 144 -x 0 -s 0 -o "$WORK/x0" \
    -h "$WORK/sub.bin" --hellaswag-out "$WORK/x0.txt" &&
    ! grep -q "trl:" "$WORK/x0/main.log" && grep -q "^s:0 eval:" "$WORK/x0/main.log" &&
    ! ls "$WORK/x0"/model_* >/dev/null 2>&1 &&
    [ "$(cut -d' ' -f2- "$WORK/x0.txt")" = "$(cut -d' ' -f2- "$WORK/c12.txt")" ]; then
    ok "train_gpt2 -x 0 -h: no training step, no checkpoint; scores identical to step 12's of the training run"
else
    not_ok "train_gpt2 -x 0 (see $WORK/x0.log, $WORK/x0/main.log)"
fi

if run x0_val $BIN/train_gpt2 -e "$MODEL" -i "$WORK/train.bin" -j "$WORK/train.bin" -m 2 -b 4 -t 64 -x 0 -s 0 \
    -o "$WORK/x0_val" && ! grep -q "trl:" "$WORK/x0_val/main.log" &&
    [ "$(cat "$WORK/x0_val/main.log")" = "$(grep -o "^s:0 tel:[0-9.]*" "$WORK/x0_val/main.log")" ] &&
    [ -n "$(cat "$WORK/x0_val/main.log")" ]; then
    ok "train_gpt2 -x 0 -j: only the validation: main.log is '$(cat "$WORK/x0_val/main.log")'"
else
    not_ok "train_gpt2 -x 0 -j (see $WORK/x0_val.log, $WORK/x0_val/main.log)"
fi

# ---------------------------------------------------------------------------------------------
# 6. the emulated CUDA trainer (FP32), candidates in rows of B=6 (examples split across batches),
#    on one process and on two
if run cu_h $CU -e "$MODEL" -i "$WORK/train.bin" -j "" -b 6 -t 144 -x 0 -s 0 -h "$WORK/sub.bin" \
    --hellaswag-out "$WORK/cu.txt" && summary=$(compare "$WORK/cu.txt" "$WORK/py12.txt" 2>&1); then
    ok "trained d2, emulated train_gpt2cu (fp32, B=6) vs PyTorch: $summary"
else
    not_ok "emulated train_gpt2cu -h: ${summary:-see $WORK/cu_h.log}"
fi

# two emulated GPUs (mpirun -np 2): each rank scores half the examples, rank 0 writes them all
if ! command -v mpirun >/dev/null; then
    not_ok "data parallel -h: mpirun not found (Debian: apt-get install libopenmpi-dev openmpi-bin)"
elif run cu_h_dp env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 \
    mpirun --oversubscribe -np 2 $CU -e "$MODEL" -i "$WORK/train.bin" -j "" -b 3 -t 144 -x 0 -s 0 \
    -h "$WORK/sub.bin" --hellaswag-out "$WORK/cu_dp.txt" &&
    summary=$(compare "$WORK/cu_dp.txt" "$WORK/py12.txt" 2>&1) && grep -q "^hellaswag: $(awk '$3 == $4' "$WORK/py12.txt" | wc -l)/48 = " "$WORK/cu_h_dp.log"; then
    ok "emulated train_gpt2cu on 2 ranks x B=3 vs PyTorch: $summary"
else
    not_ok "emulated train_gpt2cu -h on 2 ranks: ${summary:-see $WORK/cu_h_dp.log}"
fi

checks_summary
