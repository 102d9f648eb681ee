#!/usr/bin/env bash
# bench/gpu_check.sh end to end on the CPU emulation (EMU=1), so that the GPU check cannot rot
# between GPU sessions: --make-refs, then every stage on a tiny model (the GPU-only tools skip);
# then a planted bad reference that must fail its stage while the other dumps still pass. One
# "ok - " / "FAIL - " line per check, last line "N passed, N failed".
# usage: tests/test_gpu_check.sh [WORKDIR]   (default build/test_gpu_check)
set -u
cd "$(dirname "$0")/.." || exit 1
WORK=${1:-build/test_gpu_check}
rm -rf "$WORK"
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source tests/lib_checks.sh
export EMU=1 OMP_WAIT_POLICY=passive

REFS=$WORK/refs
if run make_refs bash bench/gpu_check.sh --make-refs "$REFS" && [ "$(ls "$REFS"/*_state.bin | wc -l)" = 5 ]; then
    ok "gpu_check.sh --make-refs: 5 small-vocabulary reference dumps, 2 of them llama ($(du -sh "$REFS" | cut -f1))"
else
    not_ok "gpu_check.sh --make-refs (see $WORK/make_refs.log)"
fi

# the whole script: every stage ok or skipped, none failed, the summary complete
SUMMARY=$WORK/out/summary.txt
if OUT=$WORK/out run full bash bench/gpu_check.sh --refs "$REFS"; then
    ok "gpu_check.sh (EMU=1) exits 0: $(tail -1 "$SUMMARY")"
else
    not_ok "gpu_check.sh (EMU=1) failed: $(grep '^FAIL' "$SUMMARY" | head -3 | tr '\n' ' ') (see $SUMMARY)"
fi
# stage | how many "ok" lines it must have
for spec in "build|1" "test_gpt2cu|9" "matmul algorithm cache|1" "dev/cuda/|5" "test_generate_cu|2" \
    "train_gpt2cu .* T=32|4" "torch baseline|1" "ratio|2"; do
    IFS='|' read -r stage want <<<"$spec"
    got=$(grep -cE "^(ok  |info) $stage" "$SUMMARY")
    if [ "$got" -ge "$want" ]; then
        ok "summary: $got ok line(s) for '$stage' (want $want)"
    else
        not_ok "summary: $got ok line(s) for '$stage', want $want (see $SUMMARY)"
    fi
done
for stage in compute-sanitizer ncu mpi ttq; do
    if grep -q "^skip $stage: emulation" "$SUMMARY"; then
        ok "summary: '$stage' says it is skipped under the emulation"
    else
        not_ok "summary: no skip line for '$stage' (see $SUMMARY)"
    fi
done

# planted: one dump's logits scaled by 1.04 (test_gpt2.cu's limits: 2.5% relative L2 for BF16,
# element-wise for FP32) fails test_gpt2cu for that dump only, and the run goes on to its end
BAD=$WORK/bad_refs
mkdir -p "$BAD"
cp "$REFS"/v1000_b3_t24_wd* "$REFS"/v1000_l3c96_b1_t37* "$BAD/"
# logits follow the 256-int header and the B*T inputs and targets: B=1, T=37, V padded to 1024
/usr/bin/python3 - "$BAD/v1000_l3c96_b1_t37_state.bin" <<'PY'
import struct, sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
offset, count = 1024 + 2 * 4 * 37, 37 * 1024
values = struct.unpack_from("<%df" % count, data, offset)
struct.pack_into("<%df" % count, data, offset, *[v * 1.04 for v in values])
open(path, "wb").write(data)
PY
OUT=$WORK/bad_out run planted bash bench/gpu_check.sh --refs "$BAD" --only test,dev
status=$?
BAD_SUMMARY=$WORK/bad_out/summary.txt
fails=$(grep -c '^FAIL test_gpt2cu .* v1000_l3c96_b1_t37' "$BAD_SUMMARY")
oks=$(grep -c '^ok   test_gpt2cu .* v1000_b3_t24_wd' "$BAD_SUMMARY")
if [ "$status" -ne 0 ] && [ "$fails" = 3 ] && [ "$oks" = 3 ] && grep -q '^ok   dev/cuda/' "$BAD_SUMMARY" &&
    grep -q '^done in .*: 3 failed stage' "$BAD_SUMMARY"; then
    ok "planted: logits x1.04 in one dump fail its 3 test_gpt2cu stages (exit $status); the other dump and the later dev stages still run"
else
    not_ok "planted bad dump: exit $status, $fails FAIL and $oks ok lines, want 3 and 3 (see $BAD_SUMMARY)"
fi
# a stage past the time budget is skipped, saying so, and the script still ends with its summary
OUT=$WORK/budget_out GPU_CHECK_BUDGET=12 run budget bash bench/gpu_check.sh --refs "$REFS" --only test
if grep -q '^skip .*out of time' "$WORK/budget_out/summary.txt" && grep -q '^done in' "$WORK/budget_out/summary.txt"; then
    ok "GPU_CHECK_BUDGET=12: the stages that would not fit are skipped, the summary is complete"
else
    not_ok "GPU_CHECK_BUDGET=12: no 'out of time' skip or no final line (see $WORK/budget_out/summary.txt)"
fi
# bad flags and a summary that would be overwritten: one error line, exit 1, nothing run
expect_error "gpu_check.sh --only with an unknown stage" "unknown stage 'tran'" \
    bash bench/gpu_check.sh --only tran
expect_error "gpu_check.sh GPU_CHECK_BUDGET=abc" "GPU_CHECK_BUDGET=abc" \
    env GPU_CHECK_BUDGET=abc bash bench/gpu_check.sh
expect_error "gpu_check.sh into a directory with a summary" "summary.txt already exists" \
    env OUT="$WORK/out" bash bench/gpu_check.sh --only info
checks_summary
