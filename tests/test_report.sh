#!/usr/bin/env bash
# A run's report and loss plot (part of `make test`, section 12; alone: bash tests/test_report.sh
# [DIR]): a train_gpt2 run with -o writes DIR/report.md (steps, tokens, final losses equal to
# main.log's last lines, the last sample printed) and DIR/loss.svg, which xmllint parses and
# tests/check_loss_svg.py checks point by point against main.log (two planted errors must fail
# it); a resumed run's report; files of those names that llmc did not write are left alone;
# --plot on a hand-written main.log with malformed lines, on an empty and an extreme one, and its
# refusals; the emulated CUDA trainer (fp32) writes both files too. DIR holds train_000.bin and
# val_000.bin (tests/run_tests.sh passes its work directory); without it the script writes its own.
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
SHARDS=${1:-}
WORK=${SHARDS:+$SHARDS/report}
WORK=${WORK:-$ROOT/build/report_test}
rm -rf "$WORK"
mkdir -p "$WORK"
# ok, not_ok, run, check, expect_error, checks_summary
# shellcheck source=tests/lib_checks.sh
source tests/lib_checks.sh

make --no-print-directory -s "$BIN/train_gpt2" build/cuda/emu-fp32/train_gpt2cu >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
CPU=$BIN/train_gpt2
CU=./build/cuda/emu-fp32/train_gpt2cu
CHECK_SVG=(python3 tests/check_loss_svg.py)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=passive # idle OpenMP threads would otherwise starve the emulation's workers
command -v xmllint >/dev/null || echo "note: no xmllint (Debian: libxml2-utils; scripts/install_deps.sh test)"

if [ -z "$SHARDS" ]; then
    SHARDS=$WORK
    PYTHONPATH=tests python3 - "$SHARDS" <<'EOF'
import random, sys
from token_shards import text_like, vocabulary_sample, write_shard
rng = random.Random(1234)
ids = vocabulary_sample(rng)
write_shard(sys.argv[1] + "/train_000.bin", text_like(rng, ids, 6000))
write_shard(sys.argv[1] + "/val_000.bin", text_like(rng, ids, 2000))
EOF
fi
FLAGS=(-e d2 --seed 7 -i "$SHARDS/train_000.bin" -j "$SHARDS/val_000.bin" -b 2 -t 32 -l 1e-3 -v 4 -m 2
    -s 5 -g 12)

# field REPORT NAME: the value of report.md's table row "| NAME | value |"
field() { awk -F' \\| ' -v name="| $2" '$1 == name { sub(/ \|$/, "", $2); print $2 }' "$1"; }
# last_point LOG KEY: "VALUE (step STEP)" of main.log's last "s:STEP KEY:VALUE" line
last_point() { awk -v key="$2" '$2 ~ "^" key ":" { split($1, s, ":"); v = substr($2, length(key) + 2); r = v " (step " s[2] ")" } END { print r }' "$1"; }
# last_sample OUT: the text between the last "generating:" / "---" and its closing "---"
last_sample() { awk '/^generating:$/ { getline; s = ""; inside = 1; next } inside && /^---$/ { inside = 0; last = s; next } inside { s = s $0 "\n" } END { printf "%s", last }' "$1"; }
# report_sample REPORT: the text of report.md's sample code block
report_sample() { awk '/^```+text$/ { inside = 1; s = ""; next } inside && /^```+$/ { inside = 0; next } inside { s = s $0 "\n" } END { printf "%s", s }' "$1"; }
# verdict OK_NAME FAIL_NAME CMD...: ok OK_NAME if CMD succeeds, else not_ok FAIL_NAME
verdict() {
    local ok_name=$1 fail_name=$2
    shift 2
    if "$@"; then ok "$ok_name"; else not_ok "$fail_name"; fi
}
xml_ok() { if command -v xmllint >/dev/null; then xmllint --noout "$1"; else python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "$1"; fi; }

# check_run NAME DIR STDOUT STEPS TOKENS_PER_STEP: the report and plot of a finished run
check_run() {
    local name=$1 dir=$2 out=$3 steps=$4 tokens=$5 md=$2/report.md
    if [ ! -f "$md" ] || [ ! -f "$dir/loss.svg" ]; then
        not_ok "$name: no report.md or loss.svg in $dir"
        return
    fi
    check "$name: loss.svg is well-formed XML (xmllint --noout)" xml_ok "$dir/loss.svg"
    check "$name: loss.svg's points, axes and ticks are main.log's (tests/check_loss_svg.py)" \
        "${CHECK_SVG[@]}" "$dir/main.log" "$dir/loss.svg"
    local want_train want_val got
    want_train=$(last_point "$dir/main.log" trl)
    want_val=$(last_point "$dir/main.log" tel)
    got="$(field "$md" steps | cut -d' ' -f1) | $(field "$md" "tokens seen" | cut -d' ' -f1) | $(field "$md" "final train loss") | $(field "$md" "final val loss")"
    local want="$steps | $((steps * tokens)) | $want_train | $want_val"
    if [ "$got" = "$want" ] && [ -n "$want_train" ] && [ -n "$want_val" ]; then
        ok "$name: report.md's steps, tokens seen and final losses are main.log's ($got)"
    else
        not_ok "$name: report.md says '$got', main.log and the flags '$want'"
    fi
    if [ -n "$(last_sample "$out")" ] && [ "$(report_sample "$md")" = "$(last_sample "$out")" ]; then
        ok "$name: report.md's sample is the last one the run printed"
    else
        not_ok "$name: report.md's sample differs from the run's last (see $md, $out)"
    fi
}

# ---------------------------------------------------------------------------------------------
# 1. A CPU run with -o: report.md and loss.svg, and nothing else new in the directory.
R1=$WORK/cpu
if run cpu $CPU "${FLAGS[@]}" -x 12 -o "$R1"; then
    check_run "train_gpt2" "$R1" "$WORK/cpu.log" 12 64
    params=$(grep -o '[0-9.]*M parameters' "$WORK/cpu.log" | cut -d' ' -f1)
    got="$(field "$R1/report.md" model) | $(field "$R1/report.md" parameters) | $(field "$R1/report.md" 'layers L / channels C / heads NH / vocabulary V')"
    verdict "train_gpt2: report.md's model, parameter count and shape ($got)" \
        "train_gpt2: report.md's model rows: '$got'" \
        [ "$got" = "d2 | 6966784 (${params}) | 2 / 128 / 2 / 50257 (padded 50304)" ]
    if grep -q '^| MFU ' "$R1/report.md" || grep -q '^| HellaSwag' "$R1/report.md"; then
        not_ok "train_gpt2: report.md has an MFU or HellaSwag row for a CPU run without eval lines"
    else
        ok "train_gpt2: no MFU row on the CPU, no HellaSwag row without eval lines"
    fi
    # (tokenizer.bin: the trainer keeps the tokenizer beside the checkpoints when it has one)
    listing=$(find "$R1" -mindepth 1 -printf '%f\n' | grep -vx tokenizer.bin | LC_ALL=C sort | tr '\n' ' ')
    verdict "train_gpt2: the run dir holds the checkpoint, main.log, report.md and loss.svg only" \
        "train_gpt2: the run dir holds: $listing" \
        [ "$listing" = ".lock DONE_00000012 loss.svg main.log model_00000012.bin report.md state_00000012_00000.bin " ]
    # --plot on the run's main.log draws the run's plot again, byte for byte
    run replot $CPU --plot "$R1/main.log" --plot-out "$WORK/replot.svg"
    verdict "--plot DIR/main.log redraws the run's loss.svg byte for byte" \
        "--plot DIR/main.log differs from the run's loss.svg (see $WORK/replot.log)" \
        cmp -s "$WORK/replot.svg" "$R1/loss.svg"
    # planted errors: a value one digit off, and a vertex 0.02 px off (4x the %.2f rounding)
    python3 - "$R1/loss.svg" "$WORK" <<'EOF'
import re, sys
s = open(sys.argv[1]).read()
m = re.search(r'data-values="([0-9])', s)  # the first value's first digit, one off
open(sys.argv[2] + "/planted_value.svg", "w").write(s[: m.start(1)] + str((int(m.group(1)) + 1) % 10) + s[m.end(1) :])
m = re.search(r'points="([0-9.]+),', s)
open(sys.argv[2] + "/planted_vertex.svg", "w").write(s[: m.start(1)] + f"{float(m.group(1)) + 0.02:.2f}" + s[m.end(1) :])
EOF
    for planted in planted_value planted_vertex; do
        if cmp -s "$WORK/$planted.svg" "$R1/loss.svg"; then
            not_ok "planted error: $planted.svg was not changed"
        elif "${CHECK_SVG[@]}" "$R1/main.log" "$WORK/$planted.svg" >"$WORK/$planted.log" 2>&1; then
            not_ok "planted error: check_loss_svg.py passes $planted.svg"
        else
            ok "planted error: check_loss_svg.py fails $planted.svg: $(tail -1 "$WORK/$planted.log" | head -c 150)"
        fi
    done
else
    not_ok "train_gpt2 -o failed (see $WORK/cpu.log)"
fi

# ---------------------------------------------------------------------------------------------
# 2. Resumed (-y 1): the report counts the whole run and says where this one started. An eval
#    line of an earlier step (as -h logs it) stands for a HellaSwag evaluation.
printf 's:11 eval:0.2625\n' >>"$R1/main.log"
if run resume $CPU "${FLAGS[@]}" -x 16 -o "$R1" -y 1; then
    check_run "train_gpt2 resumed" "$R1" "$WORK/resume.log" 16 64
    got="$(field "$R1/report.md" steps) | $(field "$R1/report.md" "HellaSwag accuracy")"
    verdict "resumed: report.md says where this run started, and the eval line's accuracy ($got)" \
        "resumed: report.md says '$got'" \
        [ "$got" = "16 (this run: 4, resumed at step 12) | 0.2625 (step 11)" ]
    verdict "resumed: loss.svg draws the eval point on a right axis" \
        "resumed: no eval series or right axis in loss.svg" \
        grep -q 'id="eval" .*data-axis="y2"' "$R1/loss.svg"
else
    not_ok "train_gpt2 -y 1 failed (see $WORK/resume.log)"
fi

# ---------------------------------------------------------------------------------------------
# 3. report.md and loss.svg that llmc did not write are left alone (the run still ends with 0).
R2=$WORK/foreign
mkdir -p "$R2"
echo "my notes" >"$R2/report.md"
echo "<svg>my drawing</svg>" >"$R2/loss.svg"
if run foreign $CPU "${FLAGS[@]}" -x 2 -s 0 -o "$R2" &&
    [ "$(cat "$R2/report.md")" = "my notes" ] && [ "$(cat "$R2/loss.svg")" = "<svg>my drawing</svg>" ] &&
    [ "$(grep -c '^warning: .* was not written by llmc: not replaced' "$WORK/foreign.log")" = 2 ]; then
    ok "a report.md and loss.svg not written by llmc are kept, with a warning each"
else
    not_ok "foreign report.md / loss.svg: overwritten or no warnings (see $WORK/foreign.log)"
fi

# ---------------------------------------------------------------------------------------------
# 4. --plot on a hand-written main.log: the malformed lines are skipped and counted. Its
#    directory name holds XML markup characters (the title must escape them).
HAND="$WORK/hand&<log>"
mkdir -p "$HAND"
python3 - "$HAND/main.log" <<'EOF'
import sys
def pad(line, length):  # to length characters: REPORT_LINE_MAX (1024) - 1 fit, 1024 do not
    return line + "x" * (length - len(line))
good = ["s:0 tel:10.912345", "s:0 trl:10.950000 lr:1.000000e-04 norm:5.000000",
        "s:1 trl:10.100000 lr:2.000000e-04 norm:4.000000", "s:2 trl:9.500000 lr:3e-04 norm:3.0",
        "s:4 trl:8.800000 lr:3e-04 norm:3.0 skipped:1 zloss:6.000 znorm:1.000", "s:5 trl:8.100000",
        "s:5 tel:8.400000", "s:5 eval:0.2500", "s:6 trl:7.700000\r", "s:10 tel:6.900000",
        "s:10 eval:0.2710", "s:11 trl:6.5e+00", pad("s:12 trl:6.200000 ", 1023)]
bad = ["garbage", "s:x trl:1.0", "s:3 trl:nan", "s:3 trl:inf", "s:-4 trl:1.0", "s:5 trl:1e999",
       "s:7 trl:0x1p3", "s:7 trl:1_0", "s: 7 trl:1.0", "s:7  trl:1.0", "s:7 trl:", "s:7 :1.0",
       "s:99999999999 trl:1.0", "s:7 trl:" + "1" * 40, "s:7 trl:1.0\0junk",
       pad("s:13 trl:6.100000 ", 1024)]
other = ["s:10 foo:3", "s:10 lr:1.0"]  # well-formed lines of other keys: ignored, not malformed
assert len(good[-1]) == 1023 and len(bad[-1]) == 1024
lines = [good[0], bad[0], good[1], bad[1], good[2], other[0]] + bad[2:8] + good[3:8] + bad[8:]
lines += good[8:] + other[1:]
open(sys.argv[1], "wb").write(("\n".join(lines) + "\ns:14 tel:5.0").encode())  # unfinished last line
EOF
if run plot_hand $CPU --plot "$HAND/main.log" &&
    grep -q "8 train, 3 val, 2 eval point(s) from .*main.log (32 line(s), 17 malformed skipped)" "$WORK/plot_hand.log"; then
    ok "--plot on a hand-written main.log: 8 train, 3 val, 2 eval points, 17 malformed lines skipped"
else
    not_ok "--plot on a hand-written main.log: $(head -c 300 "$WORK/plot_hand.log")"
fi
check "--plot: the hand-written log's loss.svg is well-formed XML (markup in its title escaped)" \
    xml_ok "$HAND/loss.svg"
check "--plot: the hand-written log's points, axes and ticks (tests/check_loss_svg.py)" \
    "${CHECK_SVG[@]}" "$HAND/main.log" "$HAND/loss.svg" --expect 8,3,2,17
# an empty log, and one whose values span 1e-300..1e30 with steps up to 2^31-1
: >"$WORK/empty.log"
printf 's:0 trl:1e-300\ns:2147483647 trl:1e30\ns:7 tel:-3.5\n' >"$WORK/extreme.log"
for log in empty extreme; do
    if run "plot_$log" $CPU --plot "$WORK/$log.log" --plot-out "$WORK/$log.svg" &&
        xml_ok "$WORK/$log.svg" && "${CHECK_SVG[@]}" "$WORK/$log.log" "$WORK/$log.svg" >>"$WORK/plot_$log.log" 2>&1; then
        ok "--plot on an $log main.log: a well-formed plot of its points"
    else
        not_ok "--plot on an $log main.log (see $WORK/plot_$log.log)"
    fi
done

# ---------------------------------------------------------------------------------------------
# 5. --plot's refusals: one error line, exit 1, nothing written.
echo "keep me" >"$WORK/notes.svg"
expect_error "--plot-out onto a file llmc did not write" "notes.svg: exists and was not written by llmc" \
    $CPU --plot "$HAND/main.log" --plot-out "$WORK/notes.svg"
verdict "--plot-out: the file not written by llmc is unchanged" "--plot-out overwrote $WORK/notes.svg" \
    [ "$(cat "$WORK/notes.svg")" = "keep me" ]
expect_error "--plot on a missing main.log" "nothere/main.log: cannot read: No such file" \
    $CPU --plot "$WORK/nothere/main.log" --plot-out "$WORK/x.svg"
expect_error "--plot on a directory" "cannot read: not a regular file" $CPU --plot "$WORK" --plot-out "$WORK/x.svg"
expect_error "--plot-out without --plot" "--plot-out needs --plot" $CPU --plot-out "$WORK/x.svg"
verdict "--plot's refusals wrote nothing" "a refused --plot wrote $WORK/x.svg" [ ! -e "$WORK/x.svg" ]

# ---------------------------------------------------------------------------------------------
# 6. The emulated CUDA trainer (fp32) writes both files; --plot works there too.
R3=$WORK/cuda
if run cuda $CU "${FLAGS[@]}" -x 6 -o "$R3"; then
    check_run "train_gpt2cu (emulated)" "$R3" "$WORK/cuda.log" 6 64
    verdict "train_gpt2cu: report.md names the device and precision" \
        "train_gpt2cu: report.md's device row: $(grep '^| device' "$R3/report.md")" \
        grep -q '^| device | llmc CPU emulation .*, fp32, 1 process(es) |$' "$R3/report.md"
else
    not_ok "train_gpt2cu -o failed (see $WORK/cuda.log)"
fi
run cuda_plot $CU --plot "$R3/main.log" --plot-out "$WORK/cuda_replot.svg"
verdict "train_gpt2cu --plot redraws its run's loss.svg byte for byte" \
    "train_gpt2cu --plot differs from its run's loss.svg (see $WORK/cuda_plot.log)" \
    cmp -s "$WORK/cuda_replot.svg" "$R3/loss.svg"

checks_summary
