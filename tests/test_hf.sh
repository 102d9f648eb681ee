#!/usr/bin/env bash
# HuggingFace interchange (part of `make test`; alone: make train_gpt2 test_gpt2 chat &&
# bash tests/test_hf.sh [WORK]):
#  - import: random GPT-2s made by transformers (F32 with the transformer. prefix, BF16, F16, F32
#    without the prefix) load with -e DIR in test_gpt2, whose logits, loss, gradients and steps
#    match the PyTorch reference of the same weights, and that reference's loss matches
#    transformers' own; so does the emulated test_gpt2cu; train_gpt2 and the emulated
#    train_gpt2cu train from DIR exactly as from the same weights in a model file;
#  - export: scripts/export_hf.py of v3 and v5 files, GPT2LMHeadModel.from_pretrained gives our
#    logits, test_gpt2 reads the directory back, GPT-2's tokenizer files come along; an existing
#    directory is not overwritten;
#  - hostile directories: one error line naming the file and the field, exit 1;
#  - planted errors: a directory with the final layernorm 1% off fails both comparisons;
#  - Llama (LlamaForCausalLM): import of transformers-made directories, export of v6 files, hostile
#    configs (rope_scaling, attention_bias, tied head, rms_norm_eps, KV) and tensors, by name.
# Needs a python with transformers and safetensors: $HF_PYTHON, else build/venv-hf
# (scripts/install_deps.sh test). Ends with "N passed, N failed"; exits non-zero on a failure.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
WORK=${1:-$ROOT/build/test}/hf
DATA=${LLMC_DATA_DIR:-$ROOT/../shared/data}
rm -rf "$WORK"
mkdir -p "$WORK"
# ok, not_ok, run, check, expect_error, checks_summary
# shellcheck source=tests/lib_checks.sh
source tests/lib_checks.sh

CU32=./build/cuda/emu-fp32/train_gpt2cu
TESTCU32=./build/cuda/emu-fp32/test_gpt2cu
make --no-print-directory -s "$BIN/train_gpt2" "$BIN/test_gpt2" "$BIN/chat" "$CU32" "$TESTCU32" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; echo "error: make failed"; echo "0 passed, 1 failed"; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=passive

HF_PY=""
for candidate in "${HF_PYTHON:-}" "$ROOT/build/venv-hf/bin/python"; do
    if [ -n "$candidate" ] && "$candidate" -c "import transformers, safetensors, torch" >/dev/null 2>&1; then
        HF_PY=$candidate
        break
    fi
done
if [ -z "$HF_PY" ]; then
    not_ok "no python with transformers and safetensors (bash scripts/install_deps.sh test makes build/venv-hf, or set HF_PYTHON)"
    checks_summary
    exit 1
fi
echo "reference: $HF_PY (transformers $($HF_PY -c 'import transformers; print(transformers.__version__)'))"
HF="$HF_PY $ROOT/tests/hf_reference.py"
REF="$HF_PY $ROOT/scripts/train_gpt2.py"
EXPORT="$HF_PY $ROOT/scripts/export_hf.py"
export TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1

# ---------------------------------------------------------------------------------------------
# Import. The four directories hold the same random model (seed 5): BF16 and F16 are its rounded
# copies. transformers and our loader both widen BF16/F16 to fp32 exactly, so the reference state
# of each directory (scripts/train_gpt2.py --hf, which copies transformers' weights into our
# PyTorch model) and test_gpt2 -e DIR see the same fp32 weights: test_gpt2's own fp32 tolerances
# apply to every dtype (its comments derive them), and the reference's loss must match
# transformers' to 1e-5 relative (tests/hf_reference.py derives it).
SHAPE=2,64,4,1000,64 # L, C, NH, V, maxT
for variant in f32 bf16 f16 noprefix; do
    dtype=$variant flags=()
    [ "$variant" = noprefix ] && dtype=f32 flags=(--no-prefix)
    dir=$WORK/hf_$variant
    if ! run "make_$variant" $HF make "$dir" --seed 5 --shape $SHAPE --dtype $dtype "${flags[@]}"; then
        not_ok "transformers' random GPT-2 ($variant) (see $WORK/make_$variant.log)"
        continue
    fi
    if ! run "state_$variant" $REF --hf "$dir" --seed 9 -b 3 -t 21 --steps 3 -c 0.1 \
        --write-state "$WORK/state_$variant.bin"; then
        not_ok "reference state of $variant (see $WORK/state_$variant.log)"
        continue
    fi
    if run "loss_$variant" $HF loss "$dir" "$WORK/state_$variant.bin"; then
        ok "import $variant: transformers' loss = the reference's: $(tail -1 "$WORK/loss_$variant.log")"
    else
        not_ok "import $variant: transformers' loss: $(tail -1 "$WORK/loss_$variant.log")"
    fi
    if run "test_$variant" $BIN/test_gpt2 -e "$dir" -s "$WORK/state_$variant.bin"; then
        ok "import $variant: test_gpt2 -e DIR: logits, loss, 16 gradients, 3 AdamW steps match"
    else
        not_ok "import $variant: test_gpt2 -e DIR (see $WORK/test_$variant.log)"
    fi
done
# test_gpt2cu (fp32, on the CPU emulation) reads the same directory through train_gpt2.cu's loader
if run testcu_f16 $TESTCU32 -e "$WORK/hf_f16" -s "$WORK/state_f16.bin"; then
    ok "import f16: test_gpt2cu (emulated fp32) -e DIR matches, layer by layer and after save + reload"
else
    not_ok "import f16: test_gpt2cu -e DIR (see $WORK/testcu_f16.log)"
fi
# the prefix-less directory is the same model: the same state
check "import noprefix: the same weights as with the transformer. prefix" \
    cmp "$WORK/state_f32.bin" "$WORK/state_noprefix.bin"

# Planted: the final layernorm 1% larger (every logit 1% larger) must fail both comparisons.
if run planted_make $HF hostile "$WORK/hf_f32" "$WORK/hf_planted" planted; then
    if run planted_test $BIN/test_gpt2 -e "$WORK/hf_planted" -s "$WORK/state_f32.bin"; then
        not_ok "planted: test_gpt2 passed a directory whose logits are 1% off"
    else
        ok "planted: test_gpt2 fails a directory whose logits are 1% off: $(grep -m1 'logits' "$WORK/planted_test.log" | tr -s ' ')"
    fi
else
    not_ok "planted directory (see $WORK/planted_make.log)"
fi
if run planted_loss $HF loss "$WORK/hf_f32" "$WORK/state_f32.bin" --plant; then
    not_ok "planted: transformers' loss with logits 1% off still matched: $(tail -1 "$WORK/planted_loss.log")"
else
    ok "planted: transformers' loss with logits 1% off differs: $(tail -1 "$WORK/planted_loss.log")"
fi

# The trainers: two steps from DIR and from the same weights in a model file, on random tokens:
# the same losses and gradient norms, digit for digit.
if run hf_as_bin $REF --hf "$WORK/hf_bf16" --mode none --write-model "$WORK/hf_bf16.bin"; then
    PYTHONPATH=tests /usr/bin/python3 -c "
import random, sys
from token_shards import write_shard
rng = random.Random(3)
write_shard(sys.argv[1], [rng.randrange(1000) for _ in range(3000)])" "$WORK/train.bin"
    for trainer in "$BIN/train_gpt2" "$CU32"; do
        name=$(basename "$(dirname "$trainer")")_$(basename "$trainer")
        for source in hf_bf16 hf_bf16.bin; do
            run "${name}_$source" "$trainer" -e "$WORK/$source" -i "$WORK/train.bin" -j "" -b 2 -t 16 \
                -x 3 -s 0 -v 0 -l 1e-3
            grep -o 'step .* | norm [0-9.]*' "$WORK/${name}_$source.log" >"$WORK/${name}_$source.steps"
        done
        if [ -s "$WORK/${name}_hf_bf16.steps" ] &&
            cmp -s "$WORK/${name}_hf_bf16.steps" "$WORK/${name}_hf_bf16.bin.steps"; then
            ok "$trainer -e DIR (BF16) trains as from the same model file: $(tail -1 "$WORK/${name}_hf_bf16.steps")"
        else
            not_ok "$trainer -e DIR differs from the model file (see $WORK/${name}_hf_bf16.log, ${name}_hf_bf16.bin.log)"
        fi
    done
else
    not_ok "model file of hf_bf16 (see $WORK/hf_as_bin.log)"
fi

# ---------------------------------------------------------------------------------------------
# Export: v3 and v5 files of a small model with GPT-2's vocabulary (so the tokenizer files come
# along) and of one without (none written).
if run export_ref /usr/bin/python3 scripts/train_gpt2.py --model L=2,C=64,NH=4,V=50257,maxT=64 \
    --seed 4 -b 2 -t 19 --steps 2 --write-model "$WORK/ours.bin" \
    --write-model-bf16 "$WORK/ours_bf16.bin" --write-state "$WORK/ours_state.bin"; then
    for kind in fp32 bf16; do
        model=$WORK/ours.bin
        [ $kind = bf16 ] && model=$WORK/ours_bf16.bin
        out=$WORK/export_$kind
        if ! run "export_$kind" $EXPORT -i "$model" -o "$out"; then
            not_ok "export_hf.py $kind (see $WORK/export_$kind.log)"
            continue
        fi
        # transformers against our reference's logits for the same file (fp32; BF16 values widen
        # exactly): tests/hf_reference.py's tolerance
        if run "logits_$kind" $HF logits "$out" "$model"; then
            ok "export $kind: from_pretrained gives our logits: $(tail -1 "$WORK/logits_$kind.log")"
        else
            not_ok "export $kind: from_pretrained's logits: $(tail -1 "$WORK/logits_$kind.log")"
        fi
    done
    # read back by test_gpt2: fp32 exactly the model; bf16 with section 1's bf16 tolerances
    if run export_back $BIN/test_gpt2 -e "$WORK/export_fp32" -s "$WORK/ours_state.bin"; then
        ok "export fp32: test_gpt2 -e DIR matches the original model's reference state"
    else
        not_ok "export fp32: test_gpt2 -e DIR (see $WORK/export_back.log)"
    fi
    if run export_back_bf16 $BIN/test_gpt2 -e "$WORK/export_bf16" -s "$WORK/ours_state.bin" \
        --logits-tol 5e-2 --loss-tol 1e-3 --grad-tol 1e9 --step-tol 1e-3; then
        ok "export bf16: test_gpt2 -e DIR within the bf16 tolerances of the fp32 state"
    else
        not_ok "export bf16: test_gpt2 -e DIR (see $WORK/export_back_bf16.log)"
    fi
    if run logits_planted $HF logits "$WORK/export_fp32" "$WORK/ours.bin" --plant; then
        not_ok "planted: from_pretrained's logits 1% off still matched: $(tail -1 "$WORK/logits_planted.log")"
    else
        ok "planted: from_pretrained's logits 1% off are caught: $(tail -1 "$WORK/logits_planted.log")"
    fi
    check "export: GPT-2's tokenizer files, read by transformers" $HF_PY -c "
import sys
from transformers import GPT2Tokenizer
ids = GPT2Tokenizer.from_pretrained(sys.argv[1]).encode('Hello world')
assert ids == [15496, 995], ids
assert open(sys.argv[1] + '/vocab.json', 'rb').read() == open(sys.argv[2] + '/encoder.json', 'rb').read()
" "$WORK/export_fp32" "$DATA/gpt2"
    # an existing non-empty directory: refused, left as it was
    before=$(ls -l --time-style=full-iso "$WORK/export_fp32" | md5sum)
    expect_error "export: existing directory" "export_fp32: exists and is not an empty directory" \
        $EXPORT -i "$WORK/ours.bin" -o "$WORK/export_fp32"
    check "export: the existing directory is unchanged" test "$before" = "$(ls -l --time-style=full-iso "$WORK/export_fp32" | md5sum)"
else
    not_ok "reference model for export (see $WORK/export_ref.log)"
fi
if run export_v1000_ref $REF --hf "$WORK/hf_f32" --mode none --write-model "$WORK/v1000.bin" &&
    run export_v1000 $EXPORT -i "$WORK/v1000.bin" -o "$WORK/export_v1000"; then
    check "export V=1000: no tokenizer files (not GPT-2's vocabulary), said so" \
        bash -c "[ ! -e '$WORK/export_v1000/vocab.json' ] && grep -q 'not GPT-2' '$WORK/export_v1000.log'"
else
    not_ok "export V=1000 (see $WORK/export_v1000.log)"
fi

# ---------------------------------------------------------------------------------------------
# Hostile directories: one error line naming the file and the field, exit 1 (test_gpt2; the
# trainers and chat share the loader, llmc/safetensors.h). case | pattern
HOSTILE=(
    "truncated|model.safetensors: tensor .*: data_offsets"
    "header_length|model.safetensors: header length"
    "offsets|model.safetensors: tensor transformer.wpe.weight: data_offsets"
    "shape|model.safetensors: tensor transformer.h.0.mlp.c_fc.weight: shape"
    "dtype|model.safetensors: tensor transformer.ln_f.weight: dtype"
    "missing|model.safetensors: tensor ln_f.bias: missing"
    "unknown|model.safetensors: tensor transformer.h.99.mlp.c_fc.weight"
    "untied|model.safetensors: tensor lm_head.weight: differs from wte"
    "activation|config.json: activation_function"
    "epsilon|config.json: layer_norm_epsilon"
    "inverse_layer|config.json: scale_attn_by_inverse_layer_idx"
    "upcast|config.json: reorder_and_upcast_attn"
    "n_embd|model.safetensors: tensor transformer.h.0.attn.c_attn.bias: shape"
)
for entry in "${HOSTILE[@]}"; do
    IFS='|' read -r case pattern <<<"$entry"
    if ! run "hostile_$case" $HF hostile "$WORK/hf_f32" "$WORK/bad_$case" "$case"; then
        not_ok "hostile $case: not written (see $WORK/hostile_$case.log)"
        continue
    fi
    expect_error "hostile $case" "bad_$case/$pattern" $BIN/test_gpt2 -e "$WORK/bad_$case" -s "$WORK/state_f32.bin"
done
expect_error "hostile: a directory without config.json" "empty_dir: is a directory without config.json" \
    bash -c "mkdir -p '$WORK/empty_dir' && $BIN/train_gpt2 -e '$WORK/empty_dir' -i '$WORK/train.bin' -j ''"
expect_error "hostile: train_gpt2 -e DIR" "bad_offsets/model.safetensors: tensor transformer.wpe.weight: data_offsets" \
    $BIN/train_gpt2 -e "$WORK/bad_offsets" -i "$WORK/train.bin" -j ""
expect_error "hostile: train_gpt2cu -e DIR" "bad_shape/model.safetensors: tensor transformer.h.0.mlp.c_fc.weight: shape" \
    $CU32 -e "$WORK/bad_shape" -i "$WORK/train.bin" -j ""
# (chat loads the model before its tokenizer, through train_gpt2.c's gpt2_build as test_gpt2)
expect_error "hostile: chat -e DIR" "bad_dtype/model.safetensors: tensor transformer.ln_f.weight: dtype" \
    $BIN/chat -e "$WORK/bad_dtype" -v "$WORK/no_tokenizer.bin"
# scripts/train_gpt2.py --hf refuses the same configurations
for case in activation epsilon inverse_layer upcast; do
    key=$(sed -n "s/^    \"$case\": \"config.json \([a-z_]*\) .*/\1/p" tests/hf_reference.py)
    expect_error "train_gpt2.py --hf refuses $case" "config.json: $key: expected" \
        $REF --hf "$WORK/bad_$case" --mode none --write-model "$WORK/refused.bin"
done


# ---------------------------------------------------------------------------------------------
# Llama (LlamaForCausalLM, issue 20). Import: a random Llama made by transformers (KV < NH,
# rope_theta 500000, F32) loads with -e DIR in test_gpt2, whose logits, loss, gradients and
# steps match the PyTorch reference of the same weights (--hf DIR), whose loss matches
# transformers'; the tolerances are the GPT-2 import's above (and test_gpt2's, tests/test_llama.sh).
# Export: scripts/export_hf.py of a v6 file: transformers' logits equal our reference's, test_gpt2
# reads the directory back; a QK-norm model is refused. Planted: the final norm 1% larger fails.
LLAMA_SHAPE=2,64,4,2,1000,64,160 # L, C, NH, KV, V, maxT, ffn
for dtype in f32; do # (BF16 and F16 go through the same conversion as the GPT-2 import's above)
    D=$WORK/llama_$dtype
    if run "llama_make_$dtype" $HF make-llama "$D" --seed 9 --shape "$LLAMA_SHAPE" --rope-theta 500000 --dtype "$dtype" &&
        run "llama_ref_$dtype" $REF --hf "$D" --seed 9 -b 2 -t 23 --steps 10 -l 1e-3 --write-state "$WORK/llama_state_$dtype.bin"; then
        ok "llama import $dtype: transformers' random Llama and its reference state"
    else
        not_ok "llama import $dtype: making the directory or its reference (see $WORK/llama_make_$dtype.log, $WORK/llama_ref_$dtype.log)"
        continue
    fi
    if run "llama_test_$dtype" $BIN/test_gpt2 -e "$D" -s "$WORK/llama_state_$dtype.bin"; then
        ok "llama import $dtype: test_gpt2 -e DIR: logits, loss, 11 gradients, 10 AdamW steps match PyTorch"
    else
        not_ok "llama import $dtype: test_gpt2 -e DIR (see $WORK/llama_test_$dtype.log)"
    fi
    if summary=$($HF loss "$D" "$WORK/llama_state_$dtype.bin" 2>&1); then
        ok "llama import $dtype: transformers' loss = the reference's: $summary"
    else
        not_ok "llama import $dtype: transformers' loss vs the reference's: $summary"
    fi
done
if run llama_v6 $REF --model "arch=llama,L=2,C=64,NH=4,KV=1,V=50257,maxT=64" --seed 4 --mode none \
    --write-model "$WORK/llama.bin" && run llama_export $EXPORT -i "$WORK/llama.bin" -o "$WORK/llama_export" &&
    [ -f "$WORK/llama_export/vocab.json" ]; then
    if summary=$($HF logits "$WORK/llama_export" "$WORK/llama.bin" 2>&1); then
        ok "llama export: LlamaForCausalLM.from_pretrained gives our logits: $summary"
    else
        not_ok "llama export: transformers' logits vs ours: $summary"
    fi
    if summary=$($HF logits "$WORK/llama_export" "$WORK/llama.bin" --plant 2>&1); then
        not_ok "(planted) llama export: the final norm 1% larger passes the logits comparison: $summary"
    else
        ok "(planted) llama export: the final norm 1% larger fails the logits comparison: $summary"
    fi
    if run llama_export_init $BIN/test_gpt2 -e "$WORK/llama_export" --init "arch=llama,L=2,C=64,NH=4,KV=1,V=50257,maxT=64" --seed 4; then
        ok "llama export: test_gpt2 reads the directory back bit for bit (the random init of its descriptor)"
    else
        not_ok "llama export: reading the directory back (see $WORK/llama_export_init.log)"
    fi
else
    not_ok "llama export (see $WORK/llama_v6.log, $WORK/llama_export.log)"
fi
$REF --model "arch=llama,L=1,C=32,NH=2,V=100,maxT=64,qknorm=1" --mode none --write-model "$WORK/llama_qk.bin" >/dev/null 2>&1
expect_error "llama export refuses QK-norm" "qknorm=1 (header\[11\]): LlamaForCausalLM has no QK-norm" \
    $EXPORT -i "$WORK/llama_qk.bin" -o "$WORK/llama_qk_export"
LLAMA_HOSTILE=(
    "rope_scaling|config.json: rope_scaling: expected null"
    "attention_bias|config.json: attention_bias: expected false"
    "tied|config.json: tie_word_embeddings: expected false"
    "rms_eps|config.json: rms_norm_eps: expected 1e-05"
    "kv_heads|config.json: hidden_size, num_attention_heads, num_key_value_heads: NH must be divisible by KV"
    "llama_missing|model.safetensors: tensor model.norm.weight: missing"
    "llama_shape|model.safetensors: tensor model.layers.0.self_attn.k_proj.weight: shape"
)
for entry in "${LLAMA_HOSTILE[@]}"; do
    IFS='|' read -r case pattern <<<"$entry"
    if ! run "hostile_$case" $HF hostile "$WORK/llama_f32" "$WORK/bad_$case" "$case"; then
        not_ok "llama hostile $case: not written (see $WORK/hostile_$case.log)"
        continue
    fi
    expect_error "llama hostile $case" "bad_$case/$pattern" $BIN/test_gpt2 -e "$WORK/bad_$case" -s "$WORK/llama_state_f32.bin"
done
for case in rope_scaling tied; do
    expect_error "train_gpt2.py --hf refuses llama $case" "config.json: .*expected" \
        $REF --hf "$WORK/bad_$case" --mode none --write-model "$WORK/refused.bin"
done

checks_summary
