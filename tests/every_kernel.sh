#!/usr/bin/env bash
# Runs the whole suite (tests/run_tests.sh) once per sgemm micro-kernel this CPU can run
# (LLMC_SGEMM=portable|avx2|avx512, as llmc/matmul.h's sgemm_available_kernels decides) and per
# thread count (OMP_NUM_THREADS=1, 2), so that no tolerance holds only for the kernel or thread
# count of the machine it was written on. Not part of `make test` (about 6x its time).
#
#   make test && bash tests/every_kernel.sh [THREADS...]     (default threads: 2 1)
#
# Each run's log: build/every_kernel/KERNEL_tTHREADS.log; a summary table at the end; exits
# non-zero if any run failed.
set -u
cd "$(dirname "$0")/.."
threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(2 1)
kernels=(portable)
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
case " $flags " in *" avx2 "*) case " $flags " in *" fma "*) kernels+=(avx2) ;; esac ;; esac
case " $flags " in *" avx512f "*) kernels+=(avx512) ;; esac
OUT=build/every_kernel
mkdir -p "$OUT"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); kernels: ${kernels[*]}; threads: ${threads[*]}"
summary=()
status=0
for t in "${threads[@]}"; do
    for k in "${kernels[@]}"; do
        start=$(date +%s)
        LLMC_SGEMM=$k OMP_NUM_THREADS=$t LLMC_TEST_DIR="$PWD/build/test_${k}_t$t" \
            bash tests/run_tests.sh >"$OUT/${k}_t$t.log" 2>&1
        rc=$?
        [ $rc -eq 0 ] || status=1
        line="LLMC_SGEMM=$k OMP_NUM_THREADS=$t: $(tail -n 1 "$OUT/${k}_t$t.log") ($(($(date +%s) - start)) s)"
        echo "$line"
        grep '^FAIL' "$OUT/${k}_t$t.log" | sed 's/^/    /'
        summary+=("$line")
        [ $rc -ne 0 ] || rm -rf "build/test_${k}_t$t" # a run's dumps take ~6 GB; kept when it failed
    done
done
echo "summary:"
printf '  %s\n' "${summary[@]}"
exit $status
