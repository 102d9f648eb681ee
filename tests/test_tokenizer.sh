#!/usr/bin/env bash
# Tokenizer tests (part of `make test`; alone: make tokenizer && bash tests/test_tokenizer.sh):
# ./tokenizer against tiktoken (built offline from ../shared/data/gpt2) on tinyshakespeare, gsm8k,
# code_alpaca_2k and a fuzz corpus of random Unicode; round trips; shards from prepare; BPE training
# against tests/tokenizer_reference.py's plain trainer; bad inputs. The reference side needs a
# python with tiktoken: $TOKENIZER_PYTHON, build/venv-tiktoken (scripts/install_deps.sh test), $PYTHON,
# python3, /usr/bin/python3.
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${LLMC_TOKENIZER_TEST_DIR:-$ROOT/build/test_tokenizer}
DATA=${LLMC_DATA_DIR:-$ROOT/../shared/data}
GPT2=$DATA/gpt2
rm -rf "$WORK"
mkdir -p "$WORK"
# shellcheck source=tests/lib_checks.sh
source "$ROOT/tests/lib_checks.sh"

T=$ROOT/$BIN/tokenizer
make --no-print-directory -s "$BIN/tokenizer" "$UNIT_BIN/test_tokenizer_units" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make tokenizer failed"; echo "0 passed, 1 failed"; exit 1; }

find_python() {
    for candidate in "${TOKENIZER_PYTHON:-}" "$ROOT/build/venv-tiktoken/bin/python" "${PYTHON:-}" python3 \
        /usr/bin/python3; do
        if [ -n "$candidate" ] && "$candidate" -c "import tiktoken, regex" >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
if PY=$(find_python); then
    echo "reference: $PY (tiktoken $($PY -c 'import tiktoken; print(tiktoken.__version__)'))"
    REF="$PY $ROOT/tests/tokenizer_reference.py"
else
    PY=""
    REF=false
    not_ok "no python with tiktoken found (bash scripts/install_deps.sh test makes build/venv-tiktoken, or set TOKENIZER_PYTHON): the comparisons with tiktoken cannot run"
fi

# same NAME A B: ok when files A and B are identical
same() {
    if cmp -s "$2" "$3"; then ok "$1"; else not_ok "$1 ($(cmp "$2" "$3" 2>&1 | head -c 200))"; fi
}

# ---------------------------------------------------------------------------------------------
# 1. unit checks: Unicode classes vs tiktoken's regex, hand-checked splits, merge paths, file format
CLASSES=""
if [ -n "$PY" ] && $REF classes "$WORK/classes.txt"; then CLASSES=$WORK/classes.txt; fi
$UNIT_BIN/test_tokenizer_units "$GPT2" "$CLASSES" "$WORK" >"$WORK/units.log" 2>&1
units_status=$?
while IFS= read -r line; do
    case "$line" in
    "ok - "*) ok "${line#ok - }" ;;
    "FAIL - "*) not_ok "${line#FAIL - }" ;;
    esac
done <"$WORK/units.log"
[ $units_status -eq 0 ] || grep -q "^FAIL" "$WORK/units.log" || not_ok "test_tokenizer_units: $(tail -c 300 "$WORK/units.log")"

# the scanners against PCRE2 (UTF + UCP, JIT; another regex engine) on real text, piece by piece
if make --no-print-directory -s build/bench_pretokenize >"$WORK/pcre2_build.log" 2>&1; then
    for file in "$DATA/tinyshakespeare.txt" "$DATA/sft/code_alpaca_2k.json"; do
        ./build/bench_pretokenize "$file" 1 >"$WORK/pcre2.log" 2>&1
        if [ "$(grep -c "pieces (pcre2 [0-9]*, identical)" "$WORK/pcre2.log")" -eq 2 ]; then
            ok "$(basename "$file"): GPT-2 and GPT-4 pieces identical to PCRE2's ($(grep -o '^gpt2 pattern: [0-9]* pieces' "$WORK/pcre2.log" | cut -d' ' -f3) GPT-2 pieces)"
        else
            not_ok "$(basename "$file"): pieces differ from PCRE2's: $(head -c 400 "$WORK/pcre2.log")"
        fi
    done
else
    not_ok "build/bench_pretokenize does not build (PCRE2: apt-get install libpcre2-dev): $(tail -c 200 "$WORK/pcre2_build.log")"
fi

# ---------------------------------------------------------------------------------------------
# 2. identical ids to tiktoken's gpt2 encoding. Whole files, read as text: tinyshakespeare.txt,
#    gsm8k's train.jsonl and test.jsonl and code_alpaca_2k.json as raw JSON text (mostly ASCII:
#    non-ASCII is escaped); their decoded text fields are compared in section 3 (prepare).
$REF fuzz "$WORK/fuzz1.txt" --seed 1 --size 3000000 2>/dev/null
$REF fuzz "$WORK/fuzz2.txt" --seed 2 --size 2000000 2>/dev/null
CORPORA="tinyshakespeare:$DATA/tinyshakespeare.txt gsm8k_train:$DATA/gsm8k/train.jsonl \
gsm8k_test:$DATA/gsm8k/test.jsonl code_alpaca_2k:$DATA/sft/code_alpaca_2k.json \
fuzz1:$WORK/fuzz1.txt fuzz2:$WORK/fuzz2.txt"
for entry in $CORPORA; do
    name=${entry%%:*}
    file=${entry#*:}
    [ -n "$PY" ] || break
    $T encode -i "$file" -o - >"$WORK/$name.ours" 2>"$WORK/$name.err" || { not_ok "encode $name: $(cat "$WORK/$name.err")"; continue; }
    $REF encode "$file" >"$WORK/$name.ref"
    n=$(wc -l <"$WORK/$name.ref")
    bytes=$(wc -c <"$file")
    same "$name ($bytes bytes): $n ids identical to tiktoken gpt2" "$WORK/$name.ours" "$WORK/$name.ref"
done
if [ -n "$PY" ]; then
    # the GPT-4 (cl100k) split pattern, with GPT-2's ranks: our file with header[7] = 1
    $T prepare -i "$DATA/tinyshakespeare.txt" -o "$WORK/gpt2_prepared" --tokenizer-name tok.bin >/dev/null 2>&1
    $PY -c "import struct,sys; d=bytearray(open(sys.argv[1],'rb').read()); struct.pack_into('<i', d, 28, 1); open(sys.argv[2],'wb').write(d)" \
        "$WORK/gpt2_prepared/tok.bin" "$WORK/gpt2_gpt4pattern.bin"
    $T encode -v "$WORK/gpt2_gpt4pattern.bin" -i "$WORK/fuzz1.txt" -o - >"$WORK/fuzz1_gpt4.ours" 2>/dev/null
    $REF encode --pattern gpt4 "$WORK/fuzz1.txt" >"$WORK/fuzz1_gpt4.ref"
    same "fuzz1, GPT-4 split pattern (cl100k) with GPT-2's ranks: ids identical to tiktoken" "$WORK/fuzz1_gpt4.ours" "$WORK/fuzz1_gpt4.ref"
    # <|endoftext|> as a special token where asked (encode --special 1 = tiktoken allowed_special="all")
    $T encode --special 1 -i "$WORK/fuzz2.txt" -o - >"$WORK/fuzz2_special.ours" 2>/dev/null
    $REF encode --special "$WORK/fuzz2.txt" >"$WORK/fuzz2_special.ref"
    eots=$(grep -cx 50256 "$WORK/fuzz2_special.ref")
    same "fuzz2 with <|endoftext|> special ($eots eot tokens): identical to tiktoken" "$WORK/fuzz2_special.ours" "$WORK/fuzz2_special.ref"
    # the same vocabulary from a .tiktoken file, and one with V > 65536 (uint32 shards below)
    $REF write-tiktoken "$WORK/gpt2.tiktoken"
    $T encode -v "$WORK/gpt2.tiktoken" -i "$WORK/fuzz1.txt" -o - >"$WORK/fuzz1_tiktoken_file.ours" 2>/dev/null
    same "GPT-2 loaded from a .tiktoken rank file gives the same ids" "$WORK/fuzz1_tiktoken_file.ours" "$WORK/fuzz1.ref"
    $REF write-tiktoken "$WORK/big.tiktoken" --extra 20000
    $T encode -v "$WORK/big.tiktoken" -i "$WORK/fuzz2.txt" -o - >"$WORK/fuzz2_big.ours" 2>/dev/null
    $REF encode --tiktoken-file "$WORK/big.tiktoken" "$WORK/fuzz2.txt" >"$WORK/fuzz2_big.ref"
    same "a 70,257-token .tiktoken vocabulary: ids identical to tiktoken" "$WORK/fuzz2_big.ours" "$WORK/fuzz2_big.ref"
fi
# the thread count changes nothing
$T encode -t 1 -i "$DATA/tinyshakespeare.txt" -o "$WORK/ts_t1.bin" 2>/dev/null
$T encode -t 2 -i "$DATA/tinyshakespeare.txt" -o "$WORK/ts_t2.bin" 2>/dev/null
same "encode with 1 and 2 threads: identical shards" "$WORK/ts_t1.bin" "$WORK/ts_t2.bin"
if [ -n "$PY" ]; then
    $T encode -t 3 --special 1 -i "$WORK/fuzz2.txt" -o "$WORK/fuzz2_t3.bin" 2>/dev/null
    $T encode -t 1 --special 1 -i "$WORK/fuzz2.txt" -o "$WORK/fuzz2_t1.bin" 2>/dev/null
    same "encode --special 1 with 1 and 3 threads: identical shards" "$WORK/fuzz2_t1.bin" "$WORK/fuzz2_t3.bin"
fi

# ---------------------------------------------------------------------------------------------
# 3. decode(encode(x)) == x: text, JSON, fuzz, and bytes that are not UTF-8
head -c 300000 /dev/urandom >"$WORK/random_bytes.bin" 2>/dev/null || $PY -c "import os; open('$WORK/random_bytes.bin','wb').write(os.urandom(300000))"
for entry in tinyshakespeare:$DATA/tinyshakespeare.txt gsm8k_train:$DATA/gsm8k/train.jsonl \
    code_alpaca_2k:$DATA/sft/code_alpaca_2k.json fuzz1:$WORK/fuzz1.txt fuzz2:$WORK/fuzz2.txt; do
    name=${entry%%:*}
    file=${entry#*:}
    [ -f "$file" ] || continue
    $T encode -i "$file" -o "$WORK/rt_$name.bin" 2>/dev/null && $T decode -i "$WORK/rt_$name.bin" >"$WORK/rt_$name.txt"
    same "decode(encode($name)) == $name" "$WORK/rt_$name.txt" "$file"
done
$T encode --allow-invalid-utf8 1 -i "$WORK/random_bytes.bin" -o "$WORK/rt_random.bin" 2>/dev/null &&
    $T decode -i "$WORK/rt_random.bin" >"$WORK/rt_random.out"
same "decode(encode(300 KB of random bytes, --allow-invalid-utf8 1)) == the bytes" "$WORK/rt_random.out" "$WORK/random_bytes.bin"
$T prepare -i "$DATA/tinyshakespeare.txt" -o "$WORK/gpt2_prepared" --tokenizer-name tok.bin >/dev/null 2>&1
$T decode -v "$WORK/gpt2_prepared/tok.bin" -i "$WORK/rt_tinyshakespeare.bin" >"$WORK/rt_ts_bin.txt" 2>/dev/null
same "decode with our tokenizer file (extended, header[4] = 1)" "$WORK/rt_ts_bin.txt" "$DATA/tinyshakespeare.txt"

# ---------------------------------------------------------------------------------------------
# 4. prepare: documents, shards, val split, uint32, directories, JSON fields
if [ -n "$PY" ]; then
    # tinyshakespeare: byte-identical to dev/data/tinyshakespeare.py
    $PY dev/data/tinyshakespeare.py -o "$WORK/ts_python" >/dev/null 2>&1
    bash dev/data/tinyshakespeare.sh "$WORK/ts_c" >"$WORK/ts_c.log" 2>&1
    if cmp -s "$WORK/ts_c/tiny_shakespeare_train.bin" "$WORK/ts_python/tiny_shakespeare_train.bin" &&
        cmp -s "$WORK/ts_c/tiny_shakespeare_val.bin" "$WORK/ts_python/tiny_shakespeare_val.bin"; then
        ok "dev/data/tinyshakespeare.sh (no Python) writes the same shards as tinyshakespeare.py, byte for byte"
    else
        not_ok "tinyshakespeare.sh shards differ from tinyshakespeare.py's (see $WORK/ts_c.log)"
    fi
    # gsm8k JSONL, two fields, both files
    $T prepare -i "$DATA/gsm8k/train.jsonl" "$DATA/gsm8k/test.jsonl" --field question,answer -o "$WORK/gsm8k" \
        --val-fraction 0 --tokenizer-name "" >"$WORK/gsm8k.log" 2>&1
    $REF shard-ids "$WORK"/gsm8k/data_train_*.bin >"$WORK/gsm8k_docs.ours"
    $REF docs "$DATA/gsm8k/train.jsonl" "$DATA/gsm8k/test.jsonl" --field question,answer >"$WORK/gsm8k_docs.ref"
    same "prepare gsm8k train+test JSONL (question + \"\\n\" + answer, 8,792 documents): eot + tiktoken ids of each" \
        "$WORK/gsm8k_docs.ours" "$WORK/gsm8k_docs.ref"
    # code_alpaca: a JSON array, three fields (empty ones left out)
    $T prepare -i "$DATA/sft/code_alpaca_2k.json" --field instruction,input,output -o "$WORK/alpaca" \
        --val-fraction 0 --tokenizer-name "" >"$WORK/alpaca.log" 2>&1
    $REF shard-ids "$WORK"/alpaca/data_train_*.bin >"$WORK/alpaca_docs.ours"
    $REF docs "$DATA/sft/code_alpaca_2k.json" --field instruction,input,output >"$WORK/alpaca_docs.ref"
    same "prepare code_alpaca_2k.json (instruction, input, output joined by \"\\n\"): eot + tiktoken ids of each" \
        "$WORK/alpaca_docs.ours" "$WORK/alpaca_docs.ref"
    # small shards: train shards then val shards are the whole stream; val = the last int(n*0.1)
    $T prepare -i "$DATA/gsm8k/train.jsonl" "$DATA/gsm8k/test.jsonl" --field question,answer -o "$WORK/gsm8k_small" \
        --shard-size 100000 --tokenizer-name "" >"$WORK/gsm8k_small.log" 2>&1
    $REF shard-ids "$WORK"/gsm8k_small/data_train_*.bin "$WORK"/gsm8k_small/data_val_*.bin >"$WORK/gsm8k_small.ours"
    n=$(wc -l <"$WORK/gsm8k_docs.ref")
    n_val=$(ls "$WORK"/gsm8k_small/data_val_*.bin | wc -l)
    n_train=$(ls "$WORK"/gsm8k_small/data_train_*.bin | wc -l)
    train_tokens=$($REF shard-ids "$WORK"/gsm8k_small/data_train_*.bin | wc -l)
    want_train=$($PY -c "print(int($n * (1.0 - 0.1)))")
    if cmp -s "$WORK/gsm8k_small.ours" "$WORK/gsm8k_docs.ref" && [ "$train_tokens" -eq "$want_train" ]; then
        ok "prepare --shard-size 100000: $n_train train + $n_val val shards hold the stream in order; train = int(n*0.9) = $want_train"
    else
        not_ok "prepare --shard-size 100000: shards do not add up (train $train_tokens, want $want_train)"
    fi
    # val first (--val-tokens), llm.c's FineWeb layout
    $T prepare -i "$DATA/gsm8k/train.jsonl" "$DATA/gsm8k/test.jsonl" --field question,answer -o "$WORK/gsm8k_valfirst" \
        --shard-size 300000 --val-tokens 120000 --tokenizer-name "" >/dev/null 2>&1
    $REF shard-ids "$WORK"/gsm8k_valfirst/data_val_*.bin "$WORK"/gsm8k_valfirst/data_train_*.bin >"$WORK/gsm8k_valfirst.ours"
    val_tokens=$($REF shard-ids "$WORK"/gsm8k_valfirst/data_val_*.bin | wc -l)
    if cmp -s "$WORK/gsm8k_valfirst.ours" "$WORK/gsm8k_docs.ref" && [ "$val_tokens" -eq 120000 ]; then
        ok "prepare --val-tokens 120000: the first 120,000 tokens are val, the rest train shards of 300,000"
    else
        not_ok "prepare --val-tokens: val has $val_tokens tokens or the stream differs"
    fi
    # V > 65536: uint32 shards [20240801, 7, n], ids as tiktoken's
    $T prepare -v "$WORK/big.tiktoken" -i "$WORK/fuzz2.txt" -o "$WORK/big" --val-fraction 0 --tokenizer-name big.bin >/dev/null 2>&1
    header=$($PY -c "import struct; print(*struct.unpack_from('<3i', open('$WORK/big/data_train_000000.bin','rb').read()))" 2>/dev/null)
    $REF shard-ids "$WORK/big/data_train_000000.bin" | tail -n +2 >"$WORK/big.ours"
    if [ "${header% *}" = "20240801 7" ] && cmp -s "$WORK/big.ours" "$WORK/fuzz2_big.ref"; then
        ok "V = 70,257: uint32 shard (header $header), ids identical to tiktoken"
    else
        not_ok "uint32 shard: header '$header' or ids differ"
    fi
    $T decode -v "$WORK/big/big.bin" -i "$WORK/big/data_train_000000.bin" | tail -c +14 >"$WORK/big_decoded.txt"
    same "uint32 shard decodes with the tokenizer file prepare wrote (V = 70,257)" "$WORK/big_decoded.txt" "$WORK/fuzz2.txt"
    # a directory: its files in sorted order, each text file one document
    mkdir -p "$WORK/dir_in/sub"
    head -c 20000 "$WORK/fuzz1.txt" >"$WORK/dir_in/b.txt"
    head -c 30000 "$DATA/tinyshakespeare.txt" >"$WORK/dir_in/a.txt"
    head -n 50 "$DATA/gsm8k/test.jsonl" >"$WORK/dir_in/sub/c.jsonl"
    : >"$WORK/dir_in/empty.txt"
    $T prepare -i "$WORK/dir_in" -o "$WORK/dir_out" --field question --val-fraction 0 --tokenizer-name "" >/dev/null 2>&1
    $REF shard-ids "$WORK/dir_out/data_train_000000.bin" >"$WORK/dir.ours"
    $REF docs "$WORK/dir_in/a.txt" "$WORK/dir_in/b.txt" "$WORK/dir_in/empty.txt" "$WORK/dir_in/sub/c.jsonl" --field question >"$WORK/dir.ref"
    same "prepare a directory: files in sorted order (subdirectories too), empty ones skipped" "$WORK/dir.ours" "$WORK/dir.ref"
fi
# progress line
$T prepare -i "$DATA/gsm8k/train.jsonl" -o "$WORK/progress" --field question --tokenizer-name "" >/dev/null 2>"$WORK/progress.err"
if grep -q "prepare: .*MB.*tokens.*MB/s.*ETA" "$WORK/progress.err"; then ok "prepare prints a progress line: $(tail -1 "$WORK/progress.err")"; else not_ok "no progress line"; fi
# the tokenizer file prepare writes is llm.c's (header, V records) and loads in our trainer's reader
if [ -n "$PY" ]; then
    $PY - "$WORK/gpt2_prepared/tok.bin" "$GPT2" >"$WORK/llmc_read.log" 2>&1 <<'EOF'
import struct, sys
sys.path.insert(0, "dev/data")
import data_common as dc
raw = open(sys.argv[1], "rb").read()
h = struct.unpack_from("<256i", raw)
assert h[:4] == (20240328, 2, 50257, 50256), h[:8]
pos, table = 1024, []
for _ in range(h[2]):  # what llm.c's tokenizer_init reads
    n = raw[pos]; table.append(raw[pos + 1:pos + 1 + n]); pos += 1 + n
assert table == dc.gpt2_token_bytes(sys.argv[2])
assert len(raw) == pos + 8 * h[5] + 4 * h[6] and (h[4], h[5], h[6], h[7]) == (1, 50000, 1, 0)
print("ok")
EOF
    check "prepare's tokenizer file: llm.c's header and 50,257 token records, then 50,000 merges and 1 special" grep -q ok "$WORK/llmc_read.log"
fi

# ---------------------------------------------------------------------------------------------
# 5. BPE training vs the plain Python trainer
head -c 100000 "$DATA/tinyshakespeare.txt" >"$WORK/train_a.txt"
if [ -n "$PY" ]; then
    head -c 40000 "$WORK/fuzz2.txt" | $PY -c "import sys; sys.stdout.write(sys.stdin.buffer.read().decode('utf-8','ignore'))" >"$WORK/train_b.txt"
    printf 'hello<|endoftext|>world <|user|> aaaaaaaaaa bbbb<|user|>end' >>"$WORK/train_b.txt"
    for spec in "gpt2|600|" "gpt4|600|<|user|>"; do
        IFS='|' read -r pattern vocab special <<<"$spec"
        special=${spec#*|*|}
        $T train -i "$WORK/train_a.txt" "$WORK/train_b.txt" --vocab-size "$vocab" --pattern "$pattern" \
            --special "$special" -o "$WORK/trained_$pattern.bin" >"$WORK/train_$pattern.log" 2>&1
        $REF dump-merges "$WORK/trained_$pattern.bin" >"$WORK/merges_$pattern.ours" 2>/dev/null
        $REF train "$WORK/merges_$pattern.ref" "$WORK/train_a.txt" "$WORK/train_b.txt" --vocab-size "$vocab" \
            --pattern "$pattern" --special "$special"
        count=$(wc -l <"$WORK/merges_$pattern.ref")
        same "train ($pattern pattern, V=$vocab, specials <|endoftext|>${special:+,$special}): the $count merges equal the Python reference's" \
            "$WORK/merges_$pattern.ours" "$WORK/merges_$pattern.ref"
        $T encode -v "$WORK/trained_$pattern.bin" -i "$WORK/fuzz1.txt" -o - >"$WORK/trained_$pattern.ours" 2>/dev/null
        $REF encode-trained "$WORK/trained_$pattern.bin" "$WORK/fuzz1.txt" >"$WORK/trained_$pattern.ref"
        same "the trained ($pattern) tokenizer encodes fuzz1 as tiktoken does with its ranks" "$WORK/trained_$pattern.ours" "$WORK/trained_$pattern.ref"
        $T encode -v "$WORK/trained_$pattern.bin" -i "$WORK/fuzz1.txt" -o "$WORK/trained_$pattern.shard" 2>/dev/null
        $T decode -v "$WORK/trained_$pattern.bin" -i "$WORK/trained_$pattern.shard" >"$WORK/trained_$pattern.txt"
        same "the trained ($pattern) tokenizer round-trips fuzz1" "$WORK/trained_$pattern.txt" "$WORK/fuzz1.txt"
    done
fi
$T train -t 1 -i "$DATA/tinyshakespeare.txt" --vocab-size 2000 -o "$WORK/train_t1.bin" >/dev/null 2>&1
$T train -t 2 -i "$DATA/tinyshakespeare.txt" --vocab-size 2000 -o "$WORK/train_t2.bin" >/dev/null 2>&1
same "train with 1 and 2 threads: identical tokenizer files" "$WORK/train_t1.bin" "$WORK/train_t2.bin"
$T train -i "$WORK/train_a.txt" --vocab-size 100000 -o "$WORK/train_small.bin" >"$WORK/train_small.log" 2>&1
if grep -q "no more pairs" "$WORK/train_small.log" && [ -f "$WORK/train_small.bin" ]; then
    ok "train stops early when the text runs out of pairs: $(grep -o 'V = [0-9]*' "$WORK/train_small.log")"
else
    not_ok "train with a vocabulary larger than the text allows (see $WORK/train_small.log)"
fi

# ---------------------------------------------------------------------------------------------
# 6. bad input: exit 1, one line "error: ..." naming the file and field/line, nothing left behind
EXPECT_ERROR_AFTER_PROGRESS=1 # lib_checks.sh's expect_error: the tokenizer prints progress on stderr
BAD=$WORK/bad
mkdir -p "$BAD/vocab_truncated" "$BAD/vocab_badline" "$BAD/vocab_nomerges"
head -c 500000 "$GPT2/encoder.json" >"$BAD/vocab_truncated/encoder.json"
cp "$GPT2/vocab.bpe" "$BAD/vocab_truncated/"
cp "$GPT2/encoder.json" "$BAD/vocab_badline/"
sed '1000s/.*/this line is garbled/' "$GPT2/vocab.bpe" >"$BAD/vocab_badline/vocab.bpe"
cp "$GPT2/encoder.json" "$BAD/vocab_nomerges/"
head -c 1024 "$WORK/gpt2_prepared/tok.bin" >"$BAD/header_only.bin" 2>/dev/null
head -c 600000 "$WORK/gpt2_prepared/tok.bin" >"$BAD/truncated_tokenizer.bin" 2>/dev/null
echo "some text" >"$BAD/text.txt"
: >"$BAD/empty.txt"
printf 'line one\nline two \xff\xfe here\n' >"$BAD/latin.txt"
expect_error "missing vocabulary" "nonexistent_vocab" $T encode -v "$BAD/nonexistent_vocab" -i "$BAD/text.txt" -o "$BAD/x.bin"
expect_error "truncated encoder.json" "encoder.json: not valid JSON at byte" $T encode -v "$BAD/vocab_truncated" -i "$BAD/text.txt" -o "$BAD/x.bin"
expect_error "garbled vocab.bpe line" "vocab.bpe: line 1000" $T encode -v "$BAD/vocab_badline" -i "$BAD/text.txt" -o "$BAD/x.bin"
expect_error "missing vocab.bpe" "no vocab.bpe" $T encode -v "$BAD/vocab_nomerges" -i "$BAD/text.txt" -o "$BAD/x.bin"
expect_error "truncated tokenizer file" "truncated_tokenizer.bin" $T encode -v "$BAD/truncated_tokenizer.bin" -i "$BAD/text.txt" -o "$BAD/x.bin"
expect_error "tokenizer file with a header only" "header_only.bin" $T encode -v "$BAD/header_only.bin" -i "$BAD/text.txt" -o "$BAD/x.bin"
if [ -n "$PY" ]; then
    $PY dev/data/tinyshakespeare.py -o "$BAD/llmc_plain" >/dev/null 2>&1
    expect_error "llm.c's decode-only tokenizer file" "decode-only" $T encode -v "$BAD/llmc_plain/gpt2_tokenizer.bin" -i "$BAD/text.txt" -o "$BAD/x.bin"
fi
expect_error "empty input (encode)" "empty.txt: empty input" $T encode -i "$BAD/empty.txt" -o "$BAD/x.bin"
expect_error "empty input (prepare)" "empty input" $T prepare -i "$BAD/empty.txt" -o "$BAD/out_empty"
expect_error "non-UTF-8 input (encode)" "latin.txt: line 2 (byte 18): invalid UTF-8 byte 0xff" $T encode -i "$BAD/latin.txt" -o "$BAD/x.bin"
expect_error "non-UTF-8 input (prepare)" "latin.txt: line 2 (byte 18): invalid UTF-8" $T prepare -i "$BAD/latin.txt" -o "$BAD/out_latin"
expect_error "missing input file" "nothing.txt" $T encode -i "$BAD/nothing.txt" -o "$BAD/x.bin"
# JSONL errors late in a long input, after shards were written: nothing is left behind
# (12 MB: more than one round of batches, so chunks are on disk when the error comes)
cat "$DATA/gsm8k/train.jsonl" "$DATA/gsm8k/train.jsonl" "$DATA/gsm8k/train.jsonl" >"$BAD/broken.jsonl"
echo '{"question": "unterminated' >>"$BAD/broken.jsonl"
cp "$DATA/gsm8k/train.jsonl" "$BAD/nofield.jsonl"
echo '{"prompt": "no question field"}' >>"$BAD/nofield.jsonl"
cp "$DATA/gsm8k/train.jsonl" "$BAD/notstring.jsonl"
echo '{"question": 42}' >>"$BAD/notstring.jsonl"
printf '{"question": "caf\xe9"}\n' >"$BAD/latin.jsonl"
lines=$(($(wc -l <"$DATA/gsm8k/train.jsonl") + 1))
broken_line=$(wc -l <"$BAD/broken.jsonl")
mkdir -p "$BAD/out_jsonl"
echo "keep me" >"$BAD/out_jsonl/unrelated.txt"
expect_error "JSONL line that is not JSON" "broken.jsonl: line $broken_line: not valid JSON" \
    $T prepare -t 2 -i "$BAD/broken.jsonl" -o "$BAD/out_jsonl" --field question --shard-size 20000
leftovers=$(ls -A "$BAD/out_jsonl" | grep -v '^unrelated.txt$' | wc -l)
[ "$leftovers" -eq 0 ] && ok "no shard or temporary file left after the JSONL error on line $broken_line (shard size 20000)" ||
    not_ok "files left after a failed prepare: $(ls -A "$BAD/out_jsonl" | head -5 | tr '\n' ' ')"
# interrupted (Ctrl-C) while chunks are on disk: they are removed too
$T prepare -t 1 -i "$BAD/broken.jsonl" -o "$BAD/out_jsonl" --field question --shard-size 20000 >/dev/null 2>&1 &
prepare_pid=$!
sleep 0.2
kill -INT $prepare_pid 2>/dev/null
wait $prepare_pid
leftovers=$(ls -A "$BAD/out_jsonl" | grep -v '^unrelated.txt$' | wc -l)
[ "$leftovers" -eq 0 ] && ok "prepare interrupted with SIGINT leaves no temporary file" ||
    not_ok "files left after SIGINT: $(ls -A "$BAD/out_jsonl" | head -5 | tr '\n' ' ')"
expect_error "JSONL line without the field" "nofield.jsonl: line $lines: no field 'question'" \
    $T prepare -i "$BAD/nofield.jsonl" -o "$BAD/out_jsonl" --field question --shard-size 20000
expect_error "JSONL field that is not a string" "notstring.jsonl: line $lines: field 'question' is not a string" \
    $T prepare -i "$BAD/notstring.jsonl" -o "$BAD/out_jsonl" --field question
expect_error "JSONL text that is not UTF-8" "latin.jsonl: line 1: invalid UTF-8 byte 0xe9" \
    $T prepare -i "$BAD/latin.jsonl" -o "$BAD/out_jsonl" --field question
leftovers=$(ls -A "$BAD/out_jsonl" | grep -v '^unrelated.txt$' | wc -l)
[ "$leftovers" -eq 0 ] && [ -f "$BAD/out_jsonl/unrelated.txt" ] && ok "after five failed prepares the output directory holds only what it held" ||
    not_ok "files left in the output directory: $(ls -A "$BAD/out_jsonl" | tr '\n' ' ')"
printf '\x20\x4e\x61\x01\x00\x00\x00\x00' >"$BAD/short.bin"
# a uint16 shard [20240520, 1, 3] holding 1, 60000, 2
{ printf '\x88\xd8\x34\x01\x01\x00\x00\x00\x03\x00\x00\x00'; head -c 1012 /dev/zero; printf '\x01\x00\x60\xea\x02\x00'; } >"$BAD/bad_id.bin"
expect_error "decode: token outside the vocabulary" "bad_id.bin: token 1 is 60000" $T decode -i "$BAD/bad_id.bin"
expect_error "decode: not a shard" "short.bin" $T decode -i "$BAD/short.bin"
expect_error "train: vocabulary too small" "vocab-size 200 is too small" $T train -i "$BAD/text.txt" --vocab-size 200 -o "$BAD/t.bin"
expect_error "unknown command" "unknown command 'encdoe'" $T encdoe -i x
expect_error "unknown flag" "unknown flag '--frobnicate'" $T encode --frobnicate 1
expect_error "encode without -o" "needs an output" $T encode -i "$BAD/text.txt"
expect_error "bad --docs" "--docs" $T prepare -i "$BAD/text.txt" -o "$BAD/o" --docs paragraphs
[ ! -e "$BAD/x.bin" ] && [ ! -e "$BAD/t.bin" ] && [ -z "$(ls "$BAD" | grep tmp)" ] &&
    ok "no output and no temporary file after the failed commands" || not_ok "failed commands left files: $(ls "$BAD")"
for command in encode decode prepare train; do
    if $T $command --help >"$WORK/help.out" 2>&1 && grep -q "usage: tokenizer $command" "$WORK/help.out"; then
        ok "tokenizer $command --help"
    else
        not_ok "tokenizer $command --help: $(head -c 200 "$WORK/help.out")"
    fi
done

# ---------------------------------------------------------------------------------------------
checks_summary
