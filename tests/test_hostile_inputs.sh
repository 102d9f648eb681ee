#!/usr/bin/env bash
# Hostile inputs (issue 15, part of `make test`; alone: bash tests/test_hostile_inputs.sh): crafted
# state files (shard index, shard and sample orders, generator position, sample count, flags),
# model headers and descriptors whose sizes overflow, -b/-t that overflow int, tokenizer files whose
# counts overflow int, one flipped bit in a model or state file (CRC-32C, docs/formats.md), names
# that are not file names, directories where files are expected, control characters in the text of
# a file that an error quotes. Every crafted input must give one stderr line "error: ..." naming the
# file and the field, and exit 1: never a signal. Both trainers.
# Crafted files are made here (python3), from checkpoints the trainers write here.
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
# LLMC_HOSTILE_TEST_DIR: work directory; LLMC_HOSTILE_DATA_DIR: a directory with run_tests.sh's
# train_000.bin, train_001.bin, val_000.bin (made here when missing).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
WORK=${LLMC_HOSTILE_TEST_DIR:-$ROOT/build/hostile_test}
DATA=${LLMC_HOSTILE_DATA_DIR:-$WORK}
rm -rf "$WORK"
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source "$ROOT/tests/lib_checks.sh"

CU32=./build/cuda/emu-fp32/train_gpt2cu
CU16=./build/cuda/emu-bf16/train_gpt2cu
make --no-print-directory -s "$BIN/train_gpt2" "$BIN/test_gpt2" "$BIN/tokenizer" "$BIN/chat" "$CU32" "$CU16" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=passive # idle OpenMP threads would otherwise starve the emulation's workers

# The crafting tool: every bad file starts from a good one our trainers wrote (or is a header).
cat >"$WORK/craft.py" <<'EOF'
import struct, sys

MT_BYTES = 8 + 4 + 4 + 624 * 4 + 2 * 4  # llm.c's mt19937_state: uint64 seed, left, next, ...

def crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table

def crc32c(data, crc=0, table=crc32c_table()):
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF

def state_layout(data):
    h = struct.unpack_from("<256i", data, 0)
    n = (h[40] & 0xFFFFFFFF) | (h[41] << 32)
    opt_end = 1024 + n * 4 * (3 if h[4] else 2)
    layout = {"n": n, "opt_end": opt_end}
    if h[5]:
        shards = struct.unpack_from("<Q", data, opt_end)[0]
        layout["shards"] = shards
        layout["shard_order"] = opt_end + 8
        layout["sample_count"] = opt_end + 8 + 4 * shards
        # the generator ends the loader state; the outlier detector's history (header[50] losses
        # and as many norms, float32) follows it
        layout["mt"] = len(data) - 8 * h[50] - MT_BYTES
    return layout

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "state":  # state SRC DST FIELD=VALUE...: an edited state without checksum (llm.c's)
        data = bytearray(open(args[0], "rb").read())
        lay = state_layout(data)
        for item in args[2:]:
            key, value = item.split("=")
            if key.startswith("slot"):  # slotK=V: int32 header slot; slotK:u64=V: two slots
                slot, _, kind = key[4:].partition(":")
                fmt = "<Q" if kind == "u64" else "<i"
                struct.pack_into(fmt, data, 4 * int(slot), int(value))
            elif key == "shard_order":
                order = [int(v) for v in value.split(",")]
                struct.pack_into("<%di" % len(order), data, lay["shard_order"], *order)
            elif key == "sample_count":
                struct.pack_into("<Q", data, lay["sample_count"], int(value))
            elif key in ("mt_left", "mt_next"):
                struct.pack_into("<i" if key == "mt_left" else "<I", data,
                                 lay["mt"] + (8 if key == "mt_left" else 12), int(value))
            elif key == "truncate":
                del data[len(data) - int(value):]
            else:
                sys.exit("unknown field " + key)
        struct.pack_into("<2i", data, 4 * 254, 0, 0)
        open(args[1], "wb").write(data)
    elif cmd == "strip":  # strip SRC DST: the same file without checksum slots (as llm.c writes it)
        data = bytearray(open(args[0], "rb").read())
        struct.pack_into("<2i", data, 4 * 254, 0, 0)
        open(args[1], "wb").write(data)
    elif cmd == "flip":  # flip SRC DST WHERE: one bit flipped; WHERE: a byte offset or a fraction
        data = bytearray(open(args[0], "rb").read())
        where = args[2]
        offset = int(float(where) * len(data)) if "." in where else int(where)
        data[offset] ^= 0x04
        open(args[1], "wb").write(data)
    elif cmd == "model_header":  # model_header DST maxT V L NH C Vp: a header-only v3 model
        h = [0] * 256
        h[0:8] = [20240326, 3] + [int(v) for v in args[1:7]]
        open(args[0], "wb").write(struct.pack("<256i", *h))
    elif cmd == "tokenizer":  # tokenizer DST V MERGES SPECIAL: a header-only v2 file with merges
        h = [0] * 256
        h[0:8] = [20240328, 2, int(args[1]), int(args[1]) - 1, 1, int(args[2]), int(args[3]), 0]
        open(args[0], "wb").write(struct.pack("<256i", *h))
    elif cmd == "checksum":  # checksum FILE: exit 0 if header[254..255] hold docs/formats.md's CRC
        data = open(args[0], "rb").read()
        kind, stored = struct.unpack_from("<iI", data, 4 * 254)
        header = bytearray(data[:1024])
        struct.pack_into("<I", header, 4 * 255, 0)
        crc = crc32c(header, crc32c(data[1024:]))
        print("header[254] 0x%08x, header[255] 0x%08x, CRC-32C 0x%08x" % (kind, stored, crc))
        sys.exit(0 if kind == 0x43323343 and crc == stored else 1)
    elif cmd == "shards":  # shards DIR: run_tests.sh's train and val shards
        import random
        rng = random.Random(1234)
        ids = [rng.randrange(50257) for _ in range(500)]
        def shard(path, n):
            tokens = [ids[min(int(rng.expovariate(0.05)), 499)] for _ in range(n)]
            with open(path, "wb") as f:
                f.write(struct.pack("<256i", *([20240520, 1, n] + [0] * 253)))
                f.write(struct.pack("<%dH" % n, *tokens))
        shard(args[0] + "/train_000.bin", 6000)
        shard(args[0] + "/train_001.bin", 3000)
        shard(args[0] + "/val_000.bin", 2000)
    else:
        sys.exit("unknown command " + cmd)

main()
EOF
craft() { $PY "$WORK/craft.py" "$@"; }
if [ ! -e "$DATA/train_000.bin" ] || [ ! -e "$DATA/train_001.bin" ]; then
    DATA=$WORK
    craft shards "$WORK"
fi

# ---------------------------------------------------------------------------------------------
# 1. Good checkpoints to start from: the CPU trainer (fp32 model, state without master weights)
#    and the emulated bf16 CUDA trainer (bf16 model, state with master weights), shuffled loaders
#    (so the state holds shard and sample orders and the generator).
SMALL="L=1,C=32,NH=2,V=50257,maxT=64"
COMMON="-e $SMALL -b 2 -t 32 -x 2 -n 2 -v 0 -s 0 --shuffle 1"
# shellcheck disable=SC2086
run ckpt_cpu $BIN/train_gpt2 $COMMON -i "$DATA/train_00*.bin" -o "$WORK/cpu" ||
    not_ok "the CPU trainer's checkpoint (see $WORK/ckpt_cpu.log)"
# shellcheck disable=SC2086
run ckpt_cu $CU16 $COMMON -i "$DATA/train_00*.bin" -o "$WORK/cu" ||
    not_ok "the CUDA trainer's checkpoint (see $WORK/ckpt_cu.log)"
CPU_MODEL=$WORK/cpu/model_00000002.bin
CPU_STATE=$WORK/cpu/state_00000002_00000.bin
CU_MODEL=$WORK/cu/model_00000002.bin
CU_STATE=$WORK/cu/state_00000002_00000.bin

for file in "$CPU_MODEL" "$CPU_STATE" "$CU_MODEL" "$CU_STATE"; do
    if summary=$(craft checksum "$file"); then
        ok "$(basename "$(dirname "$file")")/$(basename "$file"): CRC-32C recomputed in Python as docs/formats.md says: $summary"
    else
        not_ok "$file: checksum differs from docs/formats.md's CRC-32C: $summary"
    fi
done

# resume_dir NAME MODEL STATE: a fresh -o with a step-2 checkpoint of that model and state
resume_dir() {
    local dir=$WORK/resume_$1
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$2" "$dir/model_00000002.bin"
    if [ -d "$3" ]; then
        mkdir "$dir/state_00000002_00000.bin"
    else
        cp "$3" "$dir/state_00000002_00000.bin"
    fi
    touch "$dir/DONE_00000002"
    echo "$dir"
}
RESUME="-e $SMALL -b 2 -t 32 -x 4 -n 2 -v 0 -s 0 --shuffle 1 -y 1"

# Files without checksum slots (as llm.c writes them) still resume.
craft strip "$CPU_MODEL" "$WORK/cpu_model_plain.bin"
craft strip "$CPU_STATE" "$WORK/cpu_state_plain.bin"
dir=$(resume_dir plain "$WORK/cpu_model_plain.bin" "$WORK/cpu_state_plain.bin")
# shellcheck disable=SC2086
if run resume_plain $BIN/train_gpt2 $RESUME -i "$DATA/train_00*.bin" -o "$dir" &&
    grep -q "resume: from step 2" "$WORK/resume_plain.log"; then
    ok "a model and state without checksum (header[254] = 0, llm.c's files) resume"
else
    not_ok "files without checksum do not resume (see $WORK/resume_plain.log)"
fi

# ---------------------------------------------------------------------------------------------
# 2. Crafted state files (checksum slots zeroed, as in an llm.c file: only the field checks can
#    catch them), resumed by both trainers. Two shards match -i.
STATE_CASES=(
    "shard index out of range|slot30:u64=7|header\[30..31\] (loader shard index): expected < 2"
    "shard index 2^63|slot30:u64=9223372036854775808|header\[30..31\]"
    "sample index beyond the shard|slot32:u64=1000000|header\[32..33\] (loader sample index)"
    "shard order not a permutation|shard_order=1,1|loader shard order.*permutation of 0..1, found 1"
    "shard order entry out of range|shard_order=0,-5|loader shard order.*permutation.*found -5"
    "Mersenne-Twister position 624 with draws left|mt_next=624|mt19937.*found left [0-9]*, next 624"
    "Mersenne-Twister position 100000|mt_next=100000|mt19937.*next 100000"
    "Mersenne-Twister left 0|mt_left=0|mt19937.*'left' must be in 1..624"
    "huge sample count (8 GiB of indices)|sample_count=2147483647|loader sample count.*saved 2147483647 samples"
    "sample count 2^64-1|sample_count=18446744073709551615|loader sample count"
    "master-weights flag 7|slot4=7|header\[4\] (master weights): expected 0 or 1, found 7"
    "process count 0|slot2=0|header\[2\]"
    "sampler rng state 0|slot20:u64=0|header\[20..21\] (sampler rng state)"
    "truncated by 100 bytes|truncate=100|bytes after the loader sample count"
)
for spec in "${STATE_CASES[@]}"; do
    IFS='|' read -r what edits pattern <<<"$spec"
    for trainer in cpu cu; do
        if [ "$trainer" = cpu ]; then
            bin=$BIN/train_gpt2 model=$CPU_MODEL state=$CPU_STATE
        else
            bin=$CU16 model=$CU_MODEL state=$CU_STATE
        fi
        # shellcheck disable=SC2086
        craft state "$state" "$WORK/crafted.bin" $edits
        dir=$(resume_dir crafted "$model" "$WORK/crafted.bin")
        # shellcheck disable=SC2086
        expect_error "state ($trainer trainer): $what" "state_00000002_00000.bin: .*$pattern" \
            $bin $RESUME -i "$DATA/train_00*.bin" -o "$dir"
    done
done
dir=$(resume_dir state_dir "$CPU_MODEL" "$WORK")
# shellcheck disable=SC2086
expect_error "a directory as the state file" "state_00000002_00000.bin: is a directory, expected a file" \
    $BIN/train_gpt2 $RESUME -i "$DATA/train_00*.bin" -o "$dir"

# ---------------------------------------------------------------------------------------------
# 3. One flipped bit: the checksum names the file (both trainers, model and state, fp32 and bf16).
#    Flips in the middle of the parameters, or of AdamW's moments, change nothing a field check
#    could see.
FLIPS=(
    "fp32 model, a parameter|$BIN/train_gpt2|$CPU_MODEL|model|0.5"
    "fp32 model, header slot 100|$BIN/train_gpt2|$CPU_MODEL|model|400"
    "fp32 model, read by the CUDA trainer|$CU16|$CPU_MODEL|model|0.7"
    "bf16 model, a parameter|$CU16|$CU_MODEL|model|0.5"
    "state, AdamW m|$BIN/train_gpt2|$CPU_STATE|state|0.2"
    "state, the loader rng's table|$BIN/train_gpt2|$CPU_STATE|state|-2000"
    "bf16 state, master weights|$CU16|$CU_STATE|state|0.9"
)
for spec in "${FLIPS[@]}"; do
    IFS='|' read -r what bin file kind where <<<"$spec"
    if [ "$where" -lt 0 ] 2>/dev/null; then where=$(($(stat -c %s "$file") + where)); fi
    craft flip "$file" "$WORK/flipped.bin" "$where"
    if [ "$kind" = model ]; then
        dir=$(resume_dir flip "$WORK/flipped.bin" "$([ "$bin" = "$BIN/train_gpt2" ] && echo "$CPU_STATE" || echo "$CU_STATE")")
        target=model_00000002.bin
    else
        dir=$(resume_dir flip "$([ "$bin" = "$BIN/train_gpt2" ] && echo "$CPU_MODEL" || echo "$CU_MODEL")" "$WORK/flipped.bin")
        target=state_00000002_00000.bin
    fi
    # shellcheck disable=SC2086
    expect_error "one flipped bit ($what)" "$target: header\[255\] (CRC-32C checksum).*corrupt" \
        $bin $RESUME -i "$DATA/train_00*.bin" -o "$dir"
done
craft flip "$CPU_MODEL" "$WORK/flipped.bin" 0.5
expect_error "one flipped bit in a model read by test_gpt2" "flipped.bin: header\[255\]" \
    $BIN/test_gpt2 -e "$WORK/flipped.bin" -s "$WORK/nothing"
expect_error "one flipped bit in a model read by chat" "flipped.bin: header\[255\]" \
    $BIN/chat -e "$WORK/flipped.bin" -v "$WORK/nothing" -p hi
# the kind slot is not a flag: one flipped bit cannot switch the check off
craft flip "$CPU_MODEL" "$WORK/flipped_kind.bin" $((254 * 4))
expect_error "one flipped bit in the checksum kind (header[254])" \
    "flipped_kind.bin: header\[254\] (checksum kind): expected 0 (none) or 1127363395" \
    $BIN/train_gpt2 -e "$WORK/flipped_kind.bin" -i "$DATA/train_000.bin" -x 1 -v 0 -s 0

# ---------------------------------------------------------------------------------------------
# 4. Sizes that overflow: model headers and descriptors, -b/-t, tokenizer counts.
# maxT + Vp = 2^32 - 210 and C = 2^30, L = 16: the parameter count is 2^62 modulo 2^64, so
# 1024 + 4 * count wraps to exactly 1024, this header-only file's length
craft model_header "$WORK/wrapping_model.bin" 2147483439 1 16 1 1073741824 2147483647
for bin in $BIN/train_gpt2 "$CU16"; do
    expect_error "$(basename "$bin"): a 1024-byte model whose parameter count wraps to 0 bytes" \
        "wrapping_model.bin: bad model header (header\[2..7\]: .*): maxT must be in 1..1048576" \
        $bin -e "$WORK/wrapping_model.bin" -i "$DATA/train_000.bin" -x 1 -v 0 -s 0
done
craft model_header "$WORK/huge_layers.bin" 1024 50257 1000000 12 768 50304
expect_error "a model header with L = 10^6" "huge_layers.bin: .*L must be in 1..1024" \
    $BIN/test_gpt2 -e "$WORK/huge_layers.bin" -s "$WORK/nothing"
DESCRIPTORS=(
    "L=1000000,C=64,NH=4|L must be in 1..1024"
    "L=2,C=1073741824,NH=4|C must be in 1..65536"
    "L=2,C=64,NH=4,V=1073741824|V must be in 1..16777216"
    "L=2,C=64,NH=4,maxT=1073741824|maxT must be in 1..1048576"
    "L=2,C=65536,NH=4096|NH must be in 1..1024"
)
for spec in "${DESCRIPTORS[@]}"; do
    IFS='|' read -r descriptor pattern <<<"$spec"
    for bin in $BIN/train_gpt2 "$CU16"; do
        expect_error "$(basename "$bin"): descriptor $descriptor" "model descriptor $descriptor: $pattern" \
            $bin -e "$descriptor" -i "$DATA/train_000.bin" -x 1 -v 0 -s 0
    done
done
for bin in $BIN/train_gpt2 "$CU32"; do
    expect_error "$(basename "$bin"): -b 65536 -t 65536 (2^32 tokens, 0 in int)" \
        "bad values -b 65536 -t 65536: B\*T = 4294967296 tokens per micro-step, expected at most 2147483647" \
        $bin -e d2 -b 65536 -t 65536 -x 1
    expect_error "$(basename "$bin"): -b 2147483647 -t 2147483647 -d 1" "bad values -b 2147483647 -t 2147483647" \
        $bin -e d2 -b 2147483647 -t 2147483647 -d 1 -x 1
done
# merges + specials + 256 = V only modulo 2^32 (the sum in int overflows)
craft tokenizer "$WORK/tok_overflow.bin" 1000 2147483647 2147483647
printf 'some text\n' >"$WORK/text.txt"
expect_error "tokenizer file whose counts overflow int (encode)" \
    "tok_overflow.bin: header\[5\] merges (2147483647) + header\[6\] special tokens (2147483647) + 256 bytes != V (1000)" \
    $BIN/tokenizer encode -v "$WORK/tok_overflow.bin" -i "$WORK/text.txt" -o -
expect_error "tokenizer file whose counts overflow int (the trainer's --tokenizer)" "tok_overflow.bin: " \
    $BIN/train_gpt2 -e d2 -i "$DATA/train_000.bin" -x 1 -v 0 -s 1 --tokenizer "$WORK/tok_overflow.bin"
craft tokenizer "$WORK/tok_huge_v.bin" 16777216 0 1
expect_error "header-only tokenizer file with V = 2^24 (decode)" \
    "tok_huge_v.bin: header\[2\] (V): 16777216 tokens need at least 33554432 bytes" \
    $BIN/tokenizer decode -v "$WORK/tok_huge_v.bin" -i "$DATA/val_000.bin"

# ---------------------------------------------------------------------------------------------
# 5. Names are file names: --name and --tokenizer-name are refused with a glob character, a '/'
#    or a leading '.', and nothing outside -o is written, nothing of another data set removed.
# (a shard of another data set in -o: --name '*' used to remove it as a stale shard)
OUT=$WORK/prepared
mkdir -p "$OUT/sub"
printf 'keep me\n' >"$OUT/sub/other_train_000000.bin"
for spec in "--name|*" "--name|data*" "--name|../x" "--name|.hidden" "--tokenizer-name|../../x" \
    "--tokenizer-name|a/b.bin" "--tokenizer-name|t?k.bin"; do
    IFS='|' read -r flag value <<<"$spec"
    expect_error "tokenizer prepare $flag '$value' is refused" "bad value '.*' for $flag: " \
        $BIN/tokenizer prepare -i "$WORK/text.txt" -o "$OUT/sub" "$flag" "$value"
done
if [ "$(ls -A "$OUT/sub")" = other_train_000000.bin ] && [ "$(ls -A "$OUT")" = sub ] &&
    [ ! -e "$WORK/x" ]; then
    ok "refused names wrote nothing and removed nothing"
else
    not_ok "refused names: files written or removed ($(find "$OUT" "$WORK/x" 2>/dev/null | tr '\n' ' '))"
fi

# ---------------------------------------------------------------------------------------------
# 6. A directory where a file is expected says so.
mkdir -p "$WORK/adir.bin" "$WORK/shards_dir/train_dir.bin"
for bin in $BIN/train_gpt2 "$CU16"; do
    expect_error "$(basename "$bin"): -e DIR (not a HuggingFace one)" "adir.bin: is a directory without config.json" \
        $bin -e "$WORK/adir.bin" -i "$DATA/train_000.bin" -x 1
    expect_error "$(basename "$bin"): -i matching a directory" "train_dir.bin: is a directory, expected a file" \
        $bin -e d2 -i "$WORK/shards_dir/*.bin" -x 1
    expect_error "$(basename "$bin"): -j DIR" "adir.bin: is a directory, expected a file" \
        $bin -e d2 -i "$DATA/train_000.bin" -j "$WORK/adir.bin" -x 1
    expect_error "$(basename "$bin"): --tokenizer DIR" "adir.bin: is a directory, expected a file" \
        $bin -e d2 -i "$DATA/train_000.bin" --tokenizer "$WORK/adir.bin" -x 1 -v 0
done
expect_error "chat -v DIR (tokenizer)" "adir.bin: is a directory, expected a file" \
    $BIN/chat -e "$CPU_MODEL" -v "$WORK/adir.bin" -p hi
expect_error "test_gpt2 -s DIR (debug state)" "adir.bin: is a directory, expected a file" \
    $BIN/test_gpt2 -e "$CPU_MODEL" -s "$WORK/adir.bin"
expect_error "tokenizer show -i DIR (shard)" "adir.bin: is a directory, expected a file" \
    $BIN/tokenizer show -i "$WORK/adir.bin"

# ---------------------------------------------------------------------------------------------
# 7. Text read from a file appears in an error printably (found by tests/fuzz): a newline or a
#    terminal escape in it would break the one line, or the terminal; they are shown as \xNN.
# the -e in a state file's run record: "L\n=1C=32,..." (slot 128 = the bytes 'L' '\n' '=' '1')
craft state "$CPU_STATE" "$WORK/state_ctrl_e.bin" slot128=$((0x313d0a4c))
dir=$(resume_dir ctrl_e "$CPU_MODEL" "$WORK/state_ctrl_e.bin")
# shellcheck disable=SC2086
expect_error "a newline in the state file's -e" '-e (header\[128..\]): expected .L\\x0a=1C=32' \
    $BIN/train_gpt2 $RESUME -i "$DATA/train_00*.bin" -o "$dir"
mkdir -p "$WORK/vocab_ctrl"
$PY - "$WORK/vocab_ctrl" <<'PYEOF'
import json, sys
tokens = {"a\nb\x1b[31m": 0}
tokens.update({"k%d" % i: i + 1 for i in range(300)})
open(sys.argv[1] + "/encoder.json", "w").write(json.dumps(tokens))
open(sys.argv[1] + "/vocab.bpe", "w").write("#version: 0.2\n")
lines = ["AA== 1\x1b[2J"] + ["AA== %d" % i for i in range(1, 300)]
open(sys.argv[1] + "/ranks.tiktoken", "w").write("\n".join(lines) + "\n")
record = {"messages": [{"role": "us\x1b[31mer", "content": "x"}, {"role": "assistant", "content": "y"}]}
open(sys.argv[1] + "/sft.jsonl", "w").write(json.dumps(record) + "\n")
PYEOF
EXPECT_ERROR_AFTER_PROGRESS=1 # the tokenizer may print progress on stderr first
expect_error "a newline and an escape in an encoder.json token" \
    'encoder.json: token .a\\x0ab\\x1b\[31m. (id 0) is not spelled' \
    $BIN/tokenizer encode -v "$WORK/vocab_ctrl" -i "$WORK/text.txt" -o -
expect_error "an escape in a .tiktoken rank" 'ranks.tiktoken: line 1: rank .1\\x1b\[2J. is not in' \
    $BIN/tokenizer encode -v "$WORK/vocab_ctrl/ranks.tiktoken" -i "$WORK/text.txt" -o -
expect_error "an escape in an SFT record's role" \
    'sft.jsonl: line 1: field .messages\[0\]\.role. is .us\\x1b\[31mer.' \
    $BIN/tokenizer prepare --sft messages -i "$WORK/vocab_ctrl/sft.jsonl" -o "$WORK/sft_ctrl"
EXPECT_ERROR_AFTER_PROGRESS=0

# ---------------------------------------------------------------------------------------------
checks_summary
