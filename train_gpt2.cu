/*
GPT-2 training on an NVIDIA GPU: the same story as train_gpt2.c (config -> load -> train -> save),
with the same flags (llmc/train_options.h), files and loss, and the layers as CUDA kernels, one
header per layer in llmc/ (llmc/encoder.cuh, layernorm.cuh, ...). The llama family (arch=llama:
rmsnorm.cuh, rope.cuh, swiglu.cuh, grouped-query attention.cuh, untied head) runs beside GPT-2 in
the same buffers: llama_forward_layers / llama_backward_layers.

BF16 by default: weights, activations and gradients in bf16, fp32 master weights and AdamW state,
stochastic rounding of the updated weights. `make train_gpt2cu PRECISION=FP32` keeps everything in
fp32 (for tight checks against the CPU reference and PyTorch). Every reduction has a fixed order
(no float atomics), so a run is bit-reproducible and resume continues bit for bit.
*/
#include "llmc/cuda_common.cuh"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llmc/adamw.cuh"
#include "llmc/attention.cuh"
#include "llmc/checkpoint.h"
#include "llmc/cli.h"
#include "llmc/dataloader.h"
#include "llmc/divergence.h"
#include "llmc/encoder.cuh"
#include "llmc/formats.h"
#include "llmc/fused_classifier.cuh"
#include "llmc/gelu.cuh"
#include "llmc/global_norm.cuh"
#include "llmc/host_pipeline.cuh"
#include "llmc/layernorm.cuh"
#include "llmc/logger.h"
#include "llmc/matmul.cuh"
#include "llmc/model_config.h"
#include "llmc/multi_gpu.cuh"
#include "llmc/muon.cuh"
#include "llmc/residual.cuh"
#include "llmc/rmsnorm.cuh"
#include "llmc/rope.cuh"
#include "llmc/run_dir.h"
#include "llmc/safetensors.h"
#include "llmc/sampler.h"
#include "llmc/schedulers.h"
#include "llmc/swiglu.cuh"
#include "llmc/tokenizer.h"
#include "llmc/train_loop.h"
#include "llmc/train_options.h"
#include "llmc/utils.h"
#include "llmc/zero_shards.h"

// ----------------------------------------------------------------------------
// The model: parameters, gradients (floatX), AdamW state and master weights (fp32) on the device.

typedef struct {
    floatX *wte, *wpe, *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb;
    floatX *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb, *lnfw, *lnfb;
} ParameterTensors;

static void point_parameters(ParameterTensors *p, floatX *memory, const GPT2Config *config) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(config, sizes);
    floatX **fields[NUM_PARAMETER_TENSORS] = {&p->wte,     &p->wpe,     &p->ln1w,     &p->ln1b,
                                              &p->qkvw,    &p->qkvb,    &p->attprojw, &p->attprojb,
                                              &p->ln2w,    &p->ln2b,    &p->fcw,      &p->fcb,
                                              &p->fcprojw, &p->fcprojb, &p->lnfw,     &p->lnfb};
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        *fields[i] = memory;
        memory += sizes[i];
    }
}

// The llama family's 11 tensors (llmc/model_config.h), in the same kind of block; qnormw and
// knormw are 0 elements without QK-norm.
typedef struct {
    floatX *wte, *rms1w, *qkvw, *qnormw, *knormw, *attprojw, *rms2w, *fcw, *fcprojw, *rmsfw;
    floatX *lm_head;
} LlamaTensors;

static LlamaTensors point_llama_tensors(floatX *memory, const GPT2Config *config) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(config, sizes);
    LlamaTensors t;
    floatX **fields[NUM_LLAMA_TENSORS] = {&t.wte,     &t.rms1w,    &t.qkvw,   &t.qnormw,
                                          &t.knormw,  &t.attprojw, &t.rms2w,  &t.fcw,
                                          &t.fcprojw, &t.rmsfw,    &t.lm_head};
    for (int i = 0; i < NUM_LLAMA_TENSORS; i++) {
        *fields[i] = memory;
        memory += sizes[i];
    }
    return t;
}

// Activations kept for backward (per layer: L of them), plus the scratch buffers that forward
// and backward reuse. Sizes depend on B, T; one device allocation holds them all.
// llama (QKV = (NH + 2 KV) HS, F = ffn): ln1/ln2/lnf are the RMSNorms (no mean: 0 bytes), qkv is
// (L,B,T,QKV), RoPE'd in place without QK-norm; with QK-norm qkv keeps the projection and qkvr
// the normed, rotated copy attention reads; fch (L,B,T,2F), fch_gelu the SwiGLU output (L,B,T,F).
typedef struct {
    floatX *encoded;   // (B,T,C)
    floatX *ln1;       // (L,B,T,C)
    float *ln1_mean;   // (L,B,T)
    float *ln1_rstd;   // (L,B,T)
    floatX *qkv;       // (L,B,T,3C): q, k, v as the projection writes them, (B,T,3,NH,HS)
    float *att_lse;    // (L,B,NH,T) log-sum-exp of each attention score row (flash attention)
    floatX *atty;      // (L,B,T,C)
    floatX *residual2; // (L,B,T,C)
    floatX *ln2;       // (L,B,T,C)
    float *ln2_mean;   // (L,B,T)
    float *ln2_rstd;   // (L,B,T)
    floatX *fch;       // (L,B,T,4C) before GELU
    floatX *fch_gelu;  // (L,B,T,4C); with recompute (-r 1) one layer's (B,T,4C), redone in backward
    floatX *residual3; // (L,B,T,C)
    floatX *lnf;       // (B,T,C)
    float *lnf_mean;   // (B,T)
    float *lnf_rstd;   // (B,T)
    floatX *logits;    // (B,T,Vp); overwritten by dlogits in training
    float *losses;     // (B,T)
    // scratch
    floatX *scratch_bt4c;       // (B,T,4C): dqkv, dfch
    floatX *scratch_btc;        // (B,T,C)
    float *scratch_att_dsum;    // (B,NH,T): attention backward's rowsum(dout * out)
    floatX *dresidual;          // (B,T,C): gradient of the residual stream
    float *reduce_scratch;      // column-sum partials: 2 * REDUCE_MAX_CHUNKS * 4C (also LN)
    float *norm_scratch;        // GLOBAL_NORM_MAX_BLOCKS + 1 (the norm itself last)
    int *inputs;                // (B,T)
    int *targets;               // (B,T)
    int *encoder_plan;          // 3 * B * T + 1
    unsigned char *target_mask; // (B,T): 1 where the target is trained (SFT), when masked
    floatX *qkvr;               // llama with QK-norm: (L,B,T,QKV)
    float *qk_rstd;             // llama with QK-norm: (L, B*T*NH q rows then B*T*KV k rows)
    floatX *scratch_llama;      // llama: (B,T,max(F, QKV)): dswiglu, and the QK-norm's dqkv
} ActivationTensors;

#define NUM_ACTIVATION_BUFFERS 32
// layernorm_backward's partials (2 * LAYERNORM_BACKWARD_MAX_BLOCKS * C) fit in reduce_scratch
static_assert(LAYERNORM_BACKWARD_MAX_BLOCKS <= 4 * REDUCE_MAX_CHUNKS, "reduce_scratch too small");

// Points a into memory (NULL: only measures); returns the bytes needed. Each tensor starts on a
// 256-byte boundary.
static size_t point_activations(ActivationTensors *a, char *memory, const GPT2Config *config, int B,
                                int T, int recompute) {
    size_t L = (size_t)config->num_layers, C = (size_t)config->channels;
    size_t NH = (size_t)config->num_heads, Vp = (size_t)config->padded_vocab_size;
    size_t BT = (size_t)B * T, X = sizeof(floatX), F = sizeof(float), I = sizeof(int);
    int llama = config->arch == MODEL_ARCH_LLAMA, qknorm = llama && config->qknorm;
    size_t QKV = llama ? (size_t)llama_qkv_width(config) : 3 * C;
    size_t FF = llama ? (size_t)config->ffn : 0, KV = (size_t)config->num_kv_heads;
    size_t FCH = llama ? 2 * FF : 4 * C, ACT = llama ? FF : 4 * C; // fc's width, its activation's
    size_t mean = llama ? 0 : 1;                                   // RMSNorm keeps no mean
    size_t bt4c = 4 * C; // the widest backward gradient: GPT-2's 4C; llama's 2F or QKV
    if (llama && FCH > bt4c) bt4c = FCH;
    if (llama && QKV > bt4c) bt4c = QKV;
    // within the model caps (llmc/model_config.h) and B*T <= 2^31 every product stays below 2^62;
    // attention keeps no (B,NH,T,T) tensor, only a log-sum-exp per score row
    size_t BNHT = BT * NH;
    struct {
        void **field;
        size_t bytes;
    } table[NUM_ACTIVATION_BUFFERS] = {
        {(void **)&a->encoded, BT * C * X},
        {(void **)&a->ln1, L * BT * C * X},
        {(void **)&a->ln1_mean, mean * L * BT * F},
        {(void **)&a->ln1_rstd, L * BT * F},
        {(void **)&a->qkv, L * BT * QKV * X},
        {(void **)&a->att_lse, L * BNHT * F}, // with scratch_att_dsum: attention_stats_bytes
        {(void **)&a->atty, L * BT * C * X},
        {(void **)&a->residual2, L * BT * C * X},
        {(void **)&a->ln2, L * BT * C * X},
        {(void **)&a->ln2_mean, mean * L * BT * F},
        {(void **)&a->ln2_rstd, L * BT * F},
        {(void **)&a->fch, L * BT * FCH * X},
        {(void **)&a->fch_gelu, (recompute ? 1 : L) * BT * ACT * X},
        {(void **)&a->residual3, L * BT * C * X},
        {(void **)&a->lnf, BT * C * X},
        {(void **)&a->lnf_mean, mean * BT * F},
        {(void **)&a->lnf_rstd, BT * F},
        {(void **)&a->logits, BT * Vp * X},
        {(void **)&a->losses, BT * F},
        {(void **)&a->scratch_bt4c, BT * bt4c * X},
        {(void **)&a->scratch_btc, BT * C * X},
        {(void **)&a->scratch_att_dsum, BNHT * F},
        {(void **)&a->dresidual, BT * C * X},
        {(void **)&a->reduce_scratch, 2 * REDUCE_MAX_CHUNKS * 4 * C * F},
        {(void **)&a->norm_scratch, (GLOBAL_NORM_MAX_BLOCKS + 1) * F},
        {(void **)&a->inputs, BT * I},
        {(void **)&a->targets, BT * I},
        {(void **)&a->encoder_plan, (3 * BT + 1) * I},
        {(void **)&a->target_mask, BT},
        {(void **)&a->qkvr, qknorm ? L * BT * QKV * X : 0},
        {(void **)&a->qk_rstd, qknorm ? L * BT * (NH + KV) * F : 0},
        {(void **)&a->scratch_llama, llama ? BT * (FF > QKV ? FF : QKV) * X : 0},
    };
    size_t total = 0;
    for (int i = 0; i < NUM_ACTIVATION_BUFFERS; i++) {
        if (memory != NULL) *table[i].field = memory + total;
        size_t aligned = size_add_check(table[i].bytes, 255, "activations") / 256 * 256;
        total = size_add_check(total, aligned, "activations");
    }
    return total;
}

typedef struct {
    GPT2Config config;
    size_t num_parameters;
    floatX *params_memory; // device
    ParameterTensors params;
    floatX *grads_memory; // device
    ParameterTensors grads;
    float *m_memory, *v_memory; // device, AdamW moments (of this process's shard)
    float *master_memory;       // device, fp32 master weights (BF16 builds; NULL in FP32)
    // Data parallelism (NULL: one process). Parameters and gradients are padded to
    // padded_parameters, a multiple of the process count; with ZeRO-1 this process owns the
    // optimizer state and master weights of [shard_offset, shard_offset + shard_size), else all.
    // rank_offsets (processes + 1): every rank's range (llmc/zero_shards.h), which the gradient
    // norm sums over with either ZeRO stage.
    MultiGpu *multi;
    size_t padded_parameters, shard_offset, shard_size;
    size_t *rank_offsets;
    int reduce_in_backward; // this backward completes the step: reduce each layer as it is done
    int max_B, max_T;
    int recompute;                    // 1: GELU outputs redone in backward instead of kept
    size_t attention_workspace_bytes; // cuDNN's (llmc/cudnn_att.h); 0 with our kernels
    char *acts_memory;                // device
    ActivationTensors acts;
    int B, T;                  // shape of the last forward
    HostPipeline pipeline;     // pinned slots of the micro-batches (llmc/host_pipeline.cuh)
    PipelineSlot *slot;        // the last forward's: its inputs make the encoder backward plan
    int *plan_counts;          // V ints, scratch of the encoder backward plan
    int pipelined;             // training steps run train_step_pipelined
    int defer_loss;            // this forward adds its loss to step_loss on the device
    int plant_early_overwrite; // LLMC_PLANT_PIPELINE=early-overwrite (planted_pipeline_bug)
    double *step_loss;         // device: the step's loss_sum (train_step_loss), when deferred
    float *grad_scale;         // device: the step's AdamW gradient scale (clip_scale)
    int has_targets;           // the last forward had targets
    int has_mask;              // ... and a loss mask (SFT)
    int dlogits_ready;         // logits already hold the loss gradient
    float mean_loss;           // of the last forward: over its trained targets; -1 without targets
    double loss_sum;           // of the last forward: sum of the trained targets' losses
    int num_targets;           // of the last forward: trained targets (B*T without a mask)
    float *losses_host;        // (max_B * max_T)
    floatX *logits_row_host;   // (Vp): one row of logits, for sampling
    MuonDeviceScratch muon;    // --optimizer muon's buffers (allocated at its first step)
    float *rope_table;         // llama: RoPE's cos | sin for positions 0..maxT-1 (llmc/rope.cuh)
    cudaStream_t stream;
} GPT2;

static const char *model_precision_note(void) {
#ifdef ENABLE_FP32
    return "fp32 weights, activations and gradients";
#else
    return "bf16 weights, activations and gradients; fp32 master weights and AdamW state";
#endif
}

// Uploads fp32 parameters (checkpoint layout): params get them rounded to floatX, and the master
// copy (BF16 builds) keeps them exactly.
static void gpt2_upload_params(GPT2 *model, const float *params) {
    size_t n = model->num_parameters;
    floatX *converted = (floatX *)malloc_check(n * sizeof(floatX), "parameter upload");
    floats_to_floatX(converted, params, n);
    cuda_check(
        cudaMemcpy(model->params_memory, converted, n * sizeof(floatX), cudaMemcpyHostToDevice));
    free(converted);
    if (model->master_memory != NULL) { // this process's shard; the padding past n stays 0
        size_t offset = model->shard_offset;
        size_t count =
            offset < n ? (n - offset < model->shard_size ? n - offset : model->shard_size) : 0;
        cuda_check(cudaMemcpy(model->master_memory, params + offset, count * sizeof(float),
                              cudaMemcpyHostToDevice));
    }
}

// fp32 copy of the device parameters (floatX values, exactly).
static float *gpt2_download_params(const GPT2 *model) {
    size_t n = model->num_parameters;
    floatX *raw = (floatX *)malloc_check(n * sizeof(floatX), "parameter download");
    cuda_check(cudaMemcpy(raw, model->params_memory, n * sizeof(floatX), cudaMemcpyDeviceToHost));
    float *params = (float *)malloc_check(n * sizeof(float), "parameters (host)");
    floatX_to_floats(params, raw, n);
    free(raw);
    return params;
}

// Bytes of device memory for the model at batch B x T (parameters, gradients, optimizer,
// activations); used to fail early with a clear message.
// How many processes share the optimizer state: all of them with ZeRO-1, else each holds it whole.
static int gpt2_optimizer_shards(const MultiGpu *multi) {
    return multi != NULL && multi->zero_stage == 1 ? multi->num_processes : 1;
}

// Of the activations, attention's fp32 statistics: the log-sum-exp (L,B,NH,T) kept for backward
// and backward's scratch D (B,NH,T). They replace the (L+1) (B,NH,T,T) matrices of before.
static size_t attention_stats_bytes(const GPT2Config *config, int B, int T) {
    return ((size_t)config->num_layers + 1) * B * T * config->num_heads * sizeof(float);
}

// shard: the parameters whose optimizer state this process keeps (all, or its ZeRO-1 range).
static size_t gpt2_memory_needed(const GPT2Config *config, int B, int T, int recompute,
                                 size_t shard, size_t *param_bytes, size_t *optimizer_bytes,
                                 size_t *activation_bytes) {
    size_t n = gpt2_num_parameters(config);
    ActivationTensors unused;
    *param_bytes = 2 * n * sizeof(floatX); // parameters + gradients
    *optimizer_bytes = 2 * shard * sizeof(float);
#ifndef ENABLE_FP32
    *optimizer_bytes += shard * sizeof(float); // master weights
#endif
    *activation_bytes = point_activations(&unused, NULL, config, B, T, recompute);
    size_t fixed = *param_bytes + *optimizer_bytes + (64 << 20); // + cuBLASLt, slack
    return size_add_check(fixed, *activation_bytes, "device memory");
}

// path_or_descriptor: a checkpoint (v3 fp32 or v5 bf16), a HuggingFace GPT-2 directory or a
// descriptor such as d12 (random init from seed, equal to PyTorch's). Allocates everything for
// batches of up to B x T. recompute = 1: GELU outputs are not kept per layer but redone in backward
// (saves L*B*T*4C values). grow_vocab_to > 0: SFT data's vocabulary size (see
// gpt2_grow_vocab_params). multi: the processes of a data-parallel run (NULL: one).
// Key/value heads: llama's KV, GPT-2's NH.
static int gpt2_kv_heads(const GPT2Config *config) {
    return config->arch == MODEL_ARCH_LLAMA ? config->num_kv_heads : config->num_heads;
}

static void gpt2_build(GPT2 *model, const char *path_or_descriptor, uint32_t seed, int B, int T,
                       int recompute, int grow_vocab_to, MultiGpu *multi) {
    memset(model, 0, sizeof(*model));
    model->recompute = recompute;
    model->multi = multi;
    // the shape first: the memory check below runs before any large allocation
    ModelSource source;
    int from_descriptor = gpt2_config_from_descriptor(path_or_descriptor, &model->config);
    if (!from_descriptor) model_source_open(&source, path_or_descriptor, &model->config);
    model->num_parameters = gpt2_num_parameters(&model->config);
    if (T > model->config.max_seq_len) {
        fatal("bad value %d for -t: exceeds the model's maxT=%d", T, model->config.max_seq_len);
    }
    int head_size = model->config.channels / model->config.num_heads;
    if (head_size > ATTENTION_MAX_HEAD_SIZE) {
        fatal("%s: head size C/NH = %d, the attention kernels support at most %d",
              path_or_descriptor, head_size, ATTENTION_MAX_HEAD_SIZE);
    }
    int processes = multi != NULL ? multi->num_processes : 1;
    int shards = gpt2_optimizer_shards(multi);
    size_t n = model->num_parameters;
    // padded so that every process's shard has the same size (reduce-scatter, all-gather); with
    // Muon the ranges are cut between its matrices instead (llmc/zero_shards.h)
    model->padded_parameters = (n + (size_t)processes - 1) / (size_t)processes * processes;
    model->rank_offsets =
        (size_t *)malloc_check(((size_t)processes + 1) * sizeof(size_t), "rank ranges");
    zero_shard_ranges(&model->config, model->padded_parameters, processes,
                      multi != NULL && multi->whole_matrix_shards, model->rank_offsets);
    int rank = multi != NULL ? multi->process_rank : 0;
    model->shard_size = shards > 1 ? model->rank_offsets[rank + 1] - model->rank_offsets[rank] : n;
    model->shard_offset = shards > 1 ? model->rank_offsets[rank] : 0;
    size_t param_bytes, optimizer_bytes, activation_bytes;
    size_t needed = gpt2_memory_needed(&model->config, B, T, recompute, model->shard_size,
                                       &param_bytes, &optimizer_bytes, &activation_bytes);
    // cuDNN builds its attention graphs here: an unsupported shape fails before any allocation
    model->attention_workspace_bytes = attention_workspace_bytes_gqa(
        B, T, model->config.num_heads, gpt2_kv_heads(&model->config), head_size);
    needed = size_add_check(needed, model->attention_workspace_bytes, "device memory");
    size_t free_bytes = 0, total_bytes = 0;
    cuda_check(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (needed > free_bytes) {
        fatal("not enough GPU memory for B=%d T=%d and this model (%zu parameters): needs %.2f "
              "GiB (weights+grads %.2f, optimizer %.2f, activations %.2f of which attention "
              "log-sum-exp %.3f, attention workspace %.3f), %.2f GiB free of %.2f; lower -b "
              "(activations scale with B*T) or -t",
              B, T, model->num_parameters, needed / 1073741824.0, param_bytes / 1073741824.0,
              optimizer_bytes / 1073741824.0, activation_bytes / 1073741824.0,
              attention_stats_bytes(&model->config, B, T) / 1073741824.0,
              model->attention_workspace_bytes / 1073741824.0, free_bytes / 1073741824.0,
              total_bytes / 1073741824.0);
    }
    size_t padded = model->padded_parameters, shard = model->shard_size;
    float *params = (float *)malloc_check(n * sizeof(float), "parameters");
    if (from_descriptor) {
        gpt2_init_params(&model->config, params, seed);
    } else {
        model_source_read_params(&source, &model->config, params, n);
    }
    // SFT data with chat tokens: grow V into the padded rows before the weights go to the device
    if (grow_vocab_to > 0) gpt2_grow_vocab_params(&model->config, params, grow_vocab_to);
    model->params_memory = (floatX *)cuda_malloc_check(padded * sizeof(floatX), "parameters");
    model->grads_memory = (floatX *)cuda_malloc_check(padded * sizeof(floatX), "gradients");
    model->m_memory = (float *)cuda_malloc_check(shard * sizeof(float), "AdamW m");
    model->v_memory = (float *)cuda_malloc_check(shard * sizeof(float), "AdamW v");
    cuda_check(cudaMemset(model->params_memory, 0, padded * sizeof(floatX)));
    cuda_check(cudaMemset(model->grads_memory, 0, padded * sizeof(floatX)));
    cuda_check(cudaMemset(model->m_memory, 0, shard * sizeof(float)));
    cuda_check(cudaMemset(model->v_memory, 0, shard * sizeof(float)));
#ifndef ENABLE_FP32
    model->master_memory = (float *)cuda_malloc_check(shard * sizeof(float), "master weights");
    cuda_check(cudaMemset(model->master_memory, 0, shard * sizeof(float)));
#endif
    point_parameters(&model->params, model->params_memory, &model->config);
    point_parameters(&model->grads, model->grads_memory, &model->config);
    gpt2_upload_params(model, params);
    free(params);

    model->max_B = B;
    model->max_T = T;
    model->acts_memory = (char *)cuda_malloc_check(activation_bytes, "activations");
    size_t BT = (size_t)B * T;
    host_pipeline_init(&model->pipeline, 1, BT); // the trainer sets one slot per micro-batch
    model->slot = NULL;
    model->plan_counts =
        (int *)malloc_check((size_t)model->config.vocab_size * sizeof(int), "encoder plan");
    model->pipelined = 0;
    model->defer_loss = 0;
    model->plant_early_overwrite = 0;
    model->step_loss = (double *)cuda_malloc_check(sizeof(double), "step loss");
    model->grad_scale = (float *)cuda_malloc_check(sizeof(float), "gradient scale");
    model->losses_host = (float *)malloc_check(BT * sizeof(float), "losses (host)");
    model->logits_row_host = (floatX *)malloc_check(
        (size_t)model->config.padded_vocab_size * sizeof(floatX), "logits row (host)");
    cuda_check(cudaStreamCreate(&model->stream));
    model->mean_loss = -1.0f;
    model->rope_table = NULL;
    if (model->config.arch == MODEL_ARCH_LLAMA) {
        model->rope_table = rope_table_upload(model->config.max_seq_len, head_size,
                                              (double)model->config.rope_theta);
    }
}

static void gpt2_free(GPT2 *model) {
    cuda_check(cudaFree(model->params_memory));
    cuda_check(cudaFree(model->grads_memory));
    cuda_check(cudaFree(model->m_memory));
    cuda_check(cudaFree(model->v_memory));
    if (model->master_memory != NULL) cuda_check(cudaFree(model->master_memory));
    muon_device_scratch_free(&model->muon);
    free(model->rank_offsets);
    cuda_check(cudaFree(model->acts_memory));
    if (model->rope_table != NULL) cuda_check(cudaFree(model->rope_table));
    attention_free();
    cuda_check(cudaStreamDestroy(model->stream));
    host_pipeline_free(&model->pipeline);
    cuda_check(cudaFree(model->step_loss));
    cuda_check(cudaFree(model->grad_scale));
    free(model->plan_counts);
    free(model->losses_host);
    free(model->logits_row_host);
}

// GPT-2 from the uploaded inputs of the last forward to its logits.
static void gpt2_forward_layers(GPT2 *model) {
    const GPT2Config *cfg = &model->config;
    int Vp = cfg->padded_vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    int B = model->B, T = model->T;
    size_t BT = (size_t)B * T, c = (size_t)C;
    ParameterTensors p = model->params;
    ActivationTensors a = model->acts;
    cudaStream_t stream = model->stream;
    encoder_forward(a.encoded, a.inputs, p.wte, p.wpe, B, T, C, stream);
    layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, a.encoded, p.ln1w, p.ln1b, (int)BT, C, stream);
    for (int l = 0; l < L; l++) {
        const floatX *residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * c;
        floatX *ln1 = a.ln1 + l * BT * c;
        floatX *qkv = a.qkv + l * BT * 3 * c;
        float *att_lse = a.att_lse + l * BT * NH;
        floatX *atty = a.atty + l * BT * c;
        floatX *residual2 = a.residual2 + l * BT * c;
        floatX *ln2 = a.ln2 + l * BT * c;
        floatX *fch = a.fch + l * BT * 4 * c;
        floatX *fch_gelu = a.fch_gelu + (model->recompute ? 0 : l * BT * 4 * c);
        floatX *residual3 = a.residual3 + l * BT * c;
        floatX *projected = a.scratch_btc;
        matmul_forward(qkv, NULL, ln1, p.qkvw + l * 3 * c * c, p.qkvb + l * 3 * c, (int)BT, C,
                       3 * C, stream);
        attention_forward(atty, att_lse, qkv, B, T, C, NH, stream);
        matmul_forward(projected, NULL, atty, p.attprojw + l * c * c, p.attprojb + l * c, (int)BT,
                       C, C, stream);
        fused_residual_layernorm_forward(residual2, ln2, a.ln2_mean + l * BT, a.ln2_rstd + l * BT,
                                         residual, projected, p.ln2w + l * c, p.ln2b + l * c,
                                         (int)BT, C, stream);
        matmul_forward(fch_gelu, fch, ln2, p.fcw + l * 4 * c * c, p.fcb + l * 4 * c, (int)BT, C,
                       4 * C, stream);
        matmul_forward(projected, NULL, fch_gelu, p.fcprojw + l * 4 * c * c, p.fcprojb + l * c,
                       (int)BT, 4 * C, C, stream);
        // the residual add, fused with the layernorm that follows it (next layer's ln1, or lnf)
        if (l + 1 < L) {
            fused_residual_layernorm_forward(residual3, a.ln1 + (l + 1) * BT * c,
                                             a.ln1_mean + (l + 1) * BT, a.ln1_rstd + (l + 1) * BT,
                                             residual2, projected, p.ln1w + (l + 1) * c,
                                             p.ln1b + (l + 1) * c, (int)BT, C, stream);
        } else {
            fused_residual_layernorm_forward(residual3, a.lnf, a.lnf_mean, a.lnf_rstd, residual2,
                                             projected, p.lnfw, p.lnfb, (int)BT, C, stream);
        }
    }
    matmul_forward(a.logits, NULL, a.lnf, p.wte, NULL, (int)BT, C, Vp, stream);
}

// The llama family (/work/notes/llama_spec.md) from the inputs to the logits, as train_gpt2.c's
// llama_forward_logits: x = wte[inp]; per layer x +=
// attproj(attention(rope(qknorm(qkv(rms1(x)))))), x += fcproj(swiglu(fc(rms2(x)))); logits =
// lm_head(rmsf(x)).
static void llama_forward_layers(GPT2 *model) {
    const GPT2Config *cfg = &model->config;
    int Vp = cfg->padded_vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    int KV = cfg->num_kv_heads, HS = llama_head_size(cfg), F = cfg->ffn;
    int QKV = llama_qkv_width(cfg), B = model->B, T = model->T;
    size_t BT = (size_t)B * T, c = (size_t)C, w = (size_t)QKV, f = (size_t)F, hs = (size_t)HS;
    LlamaTensors p = point_llama_tensors(model->params_memory, cfg);
    ActivationTensors a = model->acts;
    cudaStream_t stream = model->stream;
    encoder_forward(a.encoded, a.inputs, p.wte, NULL, B, T, C, stream);
    for (int l = 0; l < L; l++) {
        const floatX *residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * c;
        floatX *ln1 = a.ln1 + l * BT * c;
        floatX *qkv = a.qkv + l * BT * w;
        floatX *qkvr = cfg->qknorm ? a.qkvr + l * BT * w : qkv; // what attention reads
        floatX *atty = a.atty + l * BT * c;
        floatX *residual2 = a.residual2 + l * BT * c;
        floatX *ln2 = a.ln2 + l * BT * c;
        floatX *fch = a.fch + l * BT * 2 * f;
        floatX *fch_swiglu = a.fch_gelu + (model->recompute ? 0 : l * BT * f);
        floatX *residual3 = a.residual3 + l * BT * c;
        floatX *projected = a.scratch_btc;
        rmsnorm_forward(ln1, a.ln1_rstd + l * BT, residual, p.rms1w + l * c, (int)BT, 1, C, c,
                        stream);
        matmul_forward(qkv, NULL, ln1, p.qkvw + l * w * c, NULL, (int)BT, C, QKV, stream);
        if (cfg->qknorm) { // q and k rows normed into qkvr, v copied beside them
            float *rstd = a.qk_rstd + l * BT * (NH + KV);
            rmsnorm_forward(qkvr, rstd, qkv, p.qnormw + l * hs, (int)BT, NH, HS, w, stream);
            rmsnorm_forward(qkvr + NH * hs, rstd + BT * NH, qkv + NH * hs, p.knormw + l * hs,
                            (int)BT, KV, HS, w, stream);
            copy_columns(qkvr + (NH + KV) * hs, qkv + (NH + KV) * hs, (int)BT, KV * HS, w, stream);
        }
        rope_forward(qkvr, model->rope_table, B, T, NH, KV, HS, stream);
        attention_forward_gqa(atty, a.att_lse + l * BT * NH, qkvr, B, T, NH, KV, HS, stream);
        matmul_forward(projected, NULL, atty, p.attprojw + l * c * c, NULL, (int)BT, C, C, stream);
        residual_forward(residual2, residual, projected, BT * c, stream);
        rmsnorm_forward(ln2, a.ln2_rstd + l * BT, residual2, p.rms2w + l * c, (int)BT, 1, C, c,
                        stream);
        matmul_forward(fch, NULL, ln2, p.fcw + l * 2 * f * c, NULL, (int)BT, C, 2 * F, stream);
        swiglu_forward(fch_swiglu, fch, (int)BT, F, stream);
        matmul_forward(projected, NULL, fch_swiglu, p.fcprojw + l * c * f, NULL, (int)BT, F, C,
                       stream);
        residual_forward(residual3, residual2, projected, BT * c, stream);
    }
    rmsnorm_forward(a.lnf, a.lnf_rstd, a.residual3 + (L - 1) * BT * c, p.rmsfw, (int)BT, 1, C, c,
                    stream);
    matmul_forward(a.logits, NULL, a.lnf, p.lm_head, NULL, (int)BT, C, Vp, stream);
}

// Runs the model on inputs (B,T) (host memory). With targets also computes the losses and the
// mean loss over the targets whose target_mask is 1 (NULL: all of them; SFT masks otherwise);
// with write_dlogits the classifier also leaves (softmax - onehot) / normaliser in place of the
// trained rows' logits (zero in the others), ready for gpt2_backward_normalised: the fused path
// of training. normaliser: the number of trained targets the loss is the mean over.
static void gpt2_forward_masked(GPT2 *model, const int *inputs, const int *targets,
                                const unsigned char *target_mask, int B, int T, int write_dlogits,
                                float normaliser) {
    const GPT2Config *cfg = &model->config;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size;
    if (B > model->max_B || T > model->max_T) {
        fatal("internal: forward with B=%d T=%d after allocating for B=%d T=%d", B, T, model->max_B,
              model->max_T);
    }
    for (int i = 0; i < B * T; i++) {
        if (inputs[i] < 0 || inputs[i] >= V ||
            (targets != NULL && (targets[i] < 0 || targets[i] >= V))) {
            fatal("token id out of range at position %d (input %d, target %d): must be < V=%d", i,
                  inputs[i], targets != NULL ? targets[i] : 0, V);
        }
    }
    point_activations(&model->acts, model->acts_memory, cfg, B, T, model->recompute);
    model->B = B;
    model->T = T;
    size_t BT = (size_t)B * T;
    ActivationTensors a = model->acts;
    cudaStream_t stream = model->stream;
    // through pinned memory, asynchronously: stream order keeps the device buffers safe (the
    // previous micro-batch's kernels are before this upload), the slot's event the host buffers
    PipelineSlot *slot = host_pipeline_acquire(&model->pipeline, !model->plant_early_overwrite);
    model->slot = slot;
    memcpy(slot->inputs, inputs, BT * sizeof(int));
    cuda_check(
        cudaMemcpyAsync(a.inputs, slot->inputs, BT * sizeof(int), cudaMemcpyHostToDevice, stream));
    if (targets != NULL) {
        memcpy(slot->targets, targets, BT * sizeof(int));
        cuda_check(cudaMemcpyAsync(a.targets, slot->targets, BT * sizeof(int),
                                   cudaMemcpyHostToDevice, stream));
    }
    if (targets != NULL && target_mask != NULL) {
        memcpy(slot->mask, target_mask, BT);
        cuda_check(cudaMemcpyAsync(a.target_mask, slot->mask, BT, cudaMemcpyHostToDevice, stream));
    }
    cuda_check(cudaEventRecord(slot->uploaded, stream));

    if (cfg->arch == MODEL_ARCH_LLAMA) {
        llama_forward_layers(model);
    } else {
        gpt2_forward_layers(model);
    }
    model->has_targets = targets != NULL;
    model->has_mask = targets != NULL && target_mask != NULL;
    model->dlogits_ready = 0;
    model->mean_loss = -1.0f;
    model->loss_sum = 0.0;
    model->num_targets = 0;
    if (targets != NULL) {
        fused_classifier(a.logits, a.losses, a.targets, model->has_mask ? a.target_mask : NULL,
                         1.0f / normaliser, (int)BT, V, Vp, write_dlogits, stream);
        model->dlogits_ready = write_dlogits;
        if (model->defer_loss) {
            // summed on the device into the step's loss; the host knows the count already
            loss_accumulate(model->step_loss, a.losses, model->has_mask ? a.target_mask : NULL,
                            (int)BT, !model->has_mask, stream);
            int count = (int)BT;
            if (target_mask != NULL) {
                count = 0;
                for (size_t i = 0; i < BT; i++) count += target_mask[i] != 0;
            }
            model->num_targets = count;
            model->mean_loss = NAN; // not read back: the step's loss is, at its end
            return;
        }
        cuda_check(
            cudaMemcpy(model->losses_host, a.losses, BT * sizeof(float), cudaMemcpyDeviceToHost));
        double sum = 0.0;
        int count = 0;
        for (size_t i = 0; i < BT; i++) {
            if (target_mask != NULL && target_mask[i] == 0) continue;
            sum += model->losses_host[i];
            count++;
        }
        model->loss_sum = sum;
        model->num_targets = count;
        model->mean_loss = count > 0 ? (float)(sum / count) : 0.0f;
    }
}

// Unmasked: the mean over all B*T targets, times loss_scale (1/grad_accum_steps when
// accumulating); normaliser B*T / loss_scale as in train_gpt2.c.
static inline void gpt2_forward(GPT2 *model, const int *inputs, const int *targets, int B, int T,
                                int write_dlogits, float loss_scale) {
    gpt2_forward_masked(model, inputs, targets, NULL, B, T, write_dlogits,
                        (float)(B * T) / loss_scale);
}

static void gpt2_zero_grad(GPT2 *model) {
    cuda_check(cudaMemsetAsync(model->grads_memory, 0, model->padded_parameters * sizeof(floatX),
                               model->stream));
}

// ----------------------------------------------------------------------------
// Data parallelism: gradients summed over the processes (each ran its own micro-batches with the
// loss scaled by 1/processes), by NCCL on the multi-GPU stream.

static int gpt2_uses_nccl(const GPT2 *model) {
    return model->multi != NULL && model->multi->use_nccl;
}

#ifdef LLMC_MULTI_GPU
// The collective stream starts once the compute stream has written what it reads.
static void gpt2_collective_after_compute(GPT2 *model) {
    MultiGpu *mg = model->multi;
    cuda_check(cudaEventRecord(mg->ready, model->stream));
    cuda_check(cudaStreamWaitEvent(mg->stream, mg->ready, 0));
}

// All-reduce (sum) of the gradient slices of the tensors in kinds[] (layer: that layer's slice
// of each; -1: the whole tensor), overlapping with the backward of the layers below.
static void gpt2_all_reduce_gradients(GPT2 *model, const int *kinds, int count, int layer) {
    MultiGpu *mg = model->multi;
    size_t sizes[NUM_PARAMETER_TENSORS], offsets[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(&model->config, sizes);
    size_t offset = 0;
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
        offsets[k] = offset;
        offset += sizes[k];
    }
    gpt2_collective_after_compute(model);
    nccl_check(mg, ncclGroupStart());
    for (int i = 0; i < count; i++) {
        int k = kinds[i];
        size_t n = layer < 0 ? sizes[k] : sizes[k] / (size_t)model->config.num_layers;
        floatX *slice = model->grads_memory + offsets[k] + (layer < 0 ? 0 : (size_t)layer * n);
        nccl_check(mg,
                   ncclAllReduce(slice, slice, n, nccl_floatX(), ncclSum, mg->comm, mg->stream));
    }
    nccl_check(mg, ncclGroupEnd());
}
#endif

// After layer's backward (layer < 0: the embeddings and the final layernorm, done last).
static void gpt2_reduce_layer_gradients(GPT2 *model, int layer) {
#ifdef LLMC_MULTI_GPU
    if (!model->reduce_in_backward) return;
    // ParameterTensors order: wte, wpe, ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b,
    // fcw, fcb, fcprojw, fcprojb, lnfw, lnfb
    static const int per_layer[] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    static const int shared[] = {0, 1, 14, 15};
    // llama (LlamaTensors order): wte, rms1w, qkvw, qnormw, knormw, attprojw, rms2w, fcw, fcprojw,
    // rmsfw, lm_head; qnormw and knormw may be 0 elements (an all-reduce of 0 elements is valid)
    static const int llama_per_layer[] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const int llama_shared[] = {0, 9, 10};
    int llama = model->config.arch == MODEL_ARCH_LLAMA;
    if (layer >= 0) {
        gpt2_all_reduce_gradients(model, llama ? llama_per_layer : per_layer, llama ? 8 : 12,
                                  layer);
    } else {
        gpt2_all_reduce_gradients(model, llama ? llama_shared : shared, llama ? 3 : 4, -1);
    }
#else
    (void)model;
    (void)layer;
#endif
}

// Completes the step's gradient reduction: ZeRO-0 waits for the all-reduces started during the
// last backward; ZeRO-1 reduce-scatters, leaving this process the sum of its own shard. With
// Muon's ranges (unequal, cut between matrices) each range is reduced to its owner instead: the
// same bytes per rank as a reduce-scatter (a ring reduce sends each range once through every rank
// but its root), in P grouped calls.
static inline void gpt2_reduce_gradients(GPT2 *model) {
#ifdef LLMC_MULTI_GPU
    if (!gpt2_uses_nccl(model)) return;
    MultiGpu *mg = model->multi;
    if (mg->zero_stage == 1 && mg->whole_matrix_shards) {
        gpt2_collective_after_compute(model);
        nccl_check(mg, ncclGroupStart());
        for (int r = 0; r < mg->num_processes; r++) {
            size_t begin = model->rank_offsets[r], count = model->rank_offsets[r + 1] - begin;
            if (count == 0) continue; // every rank skips it: the ranges are the same everywhere
            floatX *range = model->grads_memory + begin;
            nccl_check(mg, ncclReduce(range, range, count, nccl_floatX(), ncclSum, r, mg->comm,
                                      mg->stream));
        }
        nccl_check(mg, ncclGroupEnd());
        multi_gpu_wait(mg, mg->stream, "the gradient reduce to each range's owner");
    } else if (mg->zero_stage == 1) {
        gpt2_collective_after_compute(model);
        nccl_check(
            mg, ncclReduceScatter(model->grads_memory, model->grads_memory + model->shard_offset,
                                  model->shard_size, nccl_floatX(), ncclSum, mg->comm, mg->stream));
        multi_gpu_wait(mg, mg->stream, "the gradient reduce-scatter");
    } else {
        multi_gpu_wait(mg, mg->stream, "the gradient all-reduce");
    }
#else
    (void)model;
#endif
}

// GPT-2 from the gradient of the logits (in place of them) to the parameter gradients;
// num_unique: the encoder plan's (uploaded already).
static void gpt2_backward_layers(GPT2 *model, int num_unique) {
    const GPT2Config *cfg = &model->config;
    int Vp = cfg->padded_vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    int B = model->B, T = model->T;
    size_t BT = (size_t)B * T, c = (size_t)C;
    ParameterTensors p = model->params, g = model->grads;
    ActivationTensors a = model->acts;
    cudaStream_t stream = model->stream;
    float *reduce = a.reduce_scratch;
    floatX *dbtc = a.scratch_btc, *dbt4c = a.scratch_bt4c;
    matmul_backward(dbtc, g.wte, NULL, reduce, a.logits, a.lnf, p.wte, NULL, (int)BT, C, Vp,
                    stream);
    layernorm_backward(a.dresidual, g.lnfw, g.lnfb, reduce, dbtc, a.residual3 + (L - 1) * BT * c,
                       p.lnfw, a.lnf_mean, a.lnf_rstd, (int)BT, C, stream);
    for (int l = L - 1; l >= 0; l--) {
        const floatX *residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * c;
        // MLP block: dresidual holds the gradient of residual3. -r 1 redoes the forward's GELU:
        // the same kernel on the same stored fch, so the same bits (matmul_forward)
        floatX *fch = a.fch + l * BT * 4 * c;
        floatX *fch_gelu = a.fch_gelu + (model->recompute ? 0 : l * BT * 4 * c);
        if (model->recompute) gelu_forward(fch_gelu, fch, BT * 4 * c, stream);
        // dbt4c = gradient of fch: GELU's backward in the product's DGELU epilogue
        matmul_backward(dbt4c, g.fcprojw + l * 4 * c * c, g.fcprojb + l * c, reduce, a.dresidual,
                        fch_gelu, p.fcprojw + l * 4 * c * c, fch, (int)BT, 4 * C, C, stream);
        matmul_backward(dbtc, g.fcw + l * 4 * c * c, g.fcb + l * 4 * c, reduce, dbt4c,
                        a.ln2 + l * BT * c, p.fcw + l * 4 * c * c, NULL, (int)BT, C, 4 * C, stream);
        layernorm_backward(a.dresidual, g.ln2w + l * c, g.ln2b + l * c, reduce, dbtc,
                           a.residual2 + l * BT * c, p.ln2w + l * c, a.ln2_mean + l * BT,
                           a.ln2_rstd + l * BT, (int)BT, C, stream);
        // attention block: dresidual now holds the gradient of residual2
        matmul_backward(dbtc, g.attprojw + l * c * c, g.attprojb + l * c, reduce, a.dresidual,
                        a.atty + l * BT * c, p.attprojw + l * c * c, NULL, (int)BT, C, C, stream);
        attention_backward(dbt4c, a.scratch_att_dsum, dbtc, a.atty + l * BT * c,
                           a.qkv + l * BT * 3 * c, a.att_lse + l * BT * NH, B, T, C, NH, stream);
        matmul_backward(dbtc, g.qkvw + l * 3 * c * c, g.qkvb + l * 3 * c, reduce, dbt4c,
                        a.ln1 + l * BT * c, p.qkvw + l * 3 * c * c, NULL, (int)BT, C, 3 * C,
                        stream);
        layernorm_backward(a.dresidual, g.ln1w + l * c, g.ln1b + l * c, reduce, dbtc, residual,
                           p.ln1w + l * c, a.ln1_mean + l * BT, a.ln1_rstd + l * BT, (int)BT, C,
                           stream);
        gpt2_reduce_layer_gradients(model, l); // data parallel: layer l's gradients are final
    }
    encoder_backward(g.wte, g.wpe, a.dresidual, a.encoder_plan, num_unique, B, T, C, stream);
}

// The llama family's backward, as train_gpt2.c's llama_backward_layers.
static void llama_backward_layers(GPT2 *model, int num_unique) {
    const GPT2Config *cfg = &model->config;
    int Vp = cfg->padded_vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    int KV = cfg->num_kv_heads, HS = llama_head_size(cfg), F = cfg->ffn;
    int QKV = llama_qkv_width(cfg), B = model->B, T = model->T;
    size_t BT = (size_t)B * T, c = (size_t)C, w = (size_t)QKV, f = (size_t)F, hs = (size_t)HS;
    LlamaTensors p = point_llama_tensors(model->params_memory, cfg);
    LlamaTensors g = point_llama_tensors(model->grads_memory, cfg);
    ActivationTensors a = model->acts;
    cudaStream_t stream = model->stream;
    float *reduce = a.reduce_scratch;
    // dbtc: (B,T,C) gradients; dwide: dfch (B,T,2F) and dqkv; dnarrow: dswiglu (B,T,F) and,
    // with QK-norm, the gradient of the projection's qkv
    floatX *dbtc = a.scratch_btc, *dwide = a.scratch_bt4c, *dnarrow = a.scratch_llama;
    matmul_backward(dbtc, g.lm_head, NULL, reduce, a.logits, a.lnf, p.lm_head, NULL, (int)BT, C, Vp,
                    stream);
    rmsnorm_backward(a.dresidual, g.rmsfw, reduce, dbtc, a.residual3 + (L - 1) * BT * c, p.rmsfw,
                     a.lnf_rstd, (int)BT, 1, C, c, stream);
    for (int l = L - 1; l >= 0; l--) {
        const floatX *residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * c;
        floatX *qkv = a.qkv + l * BT * w;
        const floatX *qkvr = cfg->qknorm ? a.qkvr + l * BT * w : qkv;
        floatX *atty = a.atty + l * BT * c;
        // MLP block: dresidual holds the gradient of residual3; -r 1 redoes the forward's SwiGLU
        // (the same kernel on the same fch: the same bits)
        floatX *fch = a.fch + l * BT * 2 * f;
        floatX *fch_swiglu = a.fch_gelu + (model->recompute ? 0 : l * BT * f);
        if (model->recompute) swiglu_forward(fch_swiglu, fch, (int)BT, F, stream);
        matmul_backward(dnarrow, g.fcprojw + l * c * f, NULL, reduce, a.dresidual, fch_swiglu,
                        p.fcprojw + l * c * f, NULL, (int)BT, F, C, stream);
        swiglu_backward(dwide, fch, dnarrow, (int)BT, F, stream);
        matmul_backward(dbtc, g.fcw + l * 2 * f * c, NULL, reduce, dwide, a.ln2 + l * BT * c,
                        p.fcw + l * 2 * f * c, NULL, (int)BT, C, 2 * F, stream);
        rmsnorm_backward(a.dresidual, g.rms2w + l * c, reduce, dbtc, a.residual2 + l * BT * c,
                         p.rms2w + l * c, a.ln2_rstd + l * BT, (int)BT, 1, C, c, stream);
        // attention block: dresidual now holds the gradient of residual2
        matmul_backward(dbtc, g.attprojw + l * c * c, NULL, reduce, a.dresidual, atty,
                        p.attprojw + l * c * c, NULL, (int)BT, C, C, stream);
        attention_backward_gqa(dwide, a.scratch_att_dsum, dbtc, atty, qkvr, a.att_lse + l * BT * NH,
                               B, T, NH, KV, HS, stream);
        rope_backward(dwide, model->rope_table, B, T, NH, KV, HS, stream);
        floatX *dqkv = dwide;
        if (cfg->qknorm) { // rmsnorm_backward adds into dinp: start the q and k rows from 0
            const float *rstd = a.qk_rstd + l * BT * (NH + KV);
            dqkv = dnarrow;
            cuda_check(cudaMemsetAsync(dqkv, 0, BT * w * sizeof(floatX), stream));
            rmsnorm_backward(dqkv, g.qnormw + l * hs, reduce, dwide, qkv, p.qnormw + l * hs, rstd,
                             (int)BT, NH, HS, w, stream);
            rmsnorm_backward(dqkv + NH * hs, g.knormw + l * hs, reduce, dwide + NH * hs,
                             qkv + NH * hs, p.knormw + l * hs, rstd + BT * NH, (int)BT, KV, HS, w,
                             stream);
            copy_columns(dqkv + (NH + KV) * hs, dwide + (NH + KV) * hs, (int)BT, KV * HS, w,
                         stream);
        }
        matmul_backward(dbtc, g.qkvw + l * w * c, NULL, reduce, dqkv, a.ln1 + l * BT * c,
                        p.qkvw + l * w * c, NULL, (int)BT, C, QKV, stream);
        rmsnorm_backward(a.dresidual, g.rms1w + l * c, reduce, dbtc, residual, p.rms1w + l * c,
                         a.ln1_rstd + l * BT, (int)BT, 1, C, c, stream);
        gpt2_reduce_layer_gradients(model, l); // data parallel: layer l's gradients are final
    }
    encoder_backward(g.wte, NULL, a.dresidual, a.encoder_plan, num_unique, B, T, C, stream);
}

// Backward of the last forward, of the loss "sum of the trained targets' losses / normaliser";
// parameter gradients accumulate (+=). The normaliser must match the forward's when that one
// already wrote the dlogits.
static void gpt2_backward_normalised(GPT2 *model, float normaliser) {
    if (!model->has_targets) fatal("internal: backward without a forward with targets");
    const GPT2Config *cfg = &model->config;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size;
    size_t BT = (size_t)model->B * model->T, c = (size_t)cfg->channels;
    ActivationTensors a = model->acts;
    cudaStream_t stream = model->stream;
    if (!model->dlogits_ready) {
        fused_classifier(a.logits, a.losses, a.targets, model->has_mask ? a.target_mask : NULL,
                         1.0f / normaliser, (int)BT, V, Vp, 1, stream);
    }
    model->dlogits_ready = 0;
    model->has_targets = 0; // the logits now hold gradients: a second backward would be wrong
    // the encoder's plan is made on the host, into the micro-batch's pinned slot, while the GPU
    // runs the forward; the upload is ordered before encoder_backward by the stream
    PipelineSlot *slot = model->slot;
    int num_unique =
        encoder_backward_plan(slot->plan, slot->inputs, (int)BT, V, model->plan_counts);
    cuda_check(cudaMemcpyAsync(a.encoder_plan, slot->plan,
                               (2 * (size_t)num_unique + 1 + BT) * sizeof(int),
                               cudaMemcpyHostToDevice, stream));
    cuda_check(cudaEventRecord(slot->uploaded, stream));
    cuda_check(cudaMemsetAsync(a.dresidual, 0, BT * c * sizeof(floatX), stream));
    if (cfg->arch == MODEL_ARCH_LLAMA) {
        llama_backward_layers(model, num_unique);
    } else {
        gpt2_backward_layers(model, num_unique);
    }
    gpt2_reduce_layer_gradients(model, -1);
    model->reduce_in_backward = 0;
}

// Backward of the mean loss of the last forward times loss_scale (as train_gpt2.c's).
static void gpt2_backward(GPT2 *model, float loss_scale) {
    int count = model->has_mask ? model->num_targets : model->B * model->T;
    // no trained target: every row is skipped, the normaliser does not matter
    gpt2_backward_normalised(model, count > 0 ? (float)count / loss_scale : 1.0f);
}

// Global L2 norm of the gradients (deterministic; see llmc/global_norm.cuh). With several
// processes each sums the squares of its 1/processes slice of the reduced gradients (with ZeRO-1
// the only part it holds reduced), and the processes add those up: ZeRO-0 and ZeRO-1 then round
// the same sums in the same order and clip by the same bits.
// One process: the norm into device memory, returned; the host does not wait for it.
static float *gpt2_grad_norm_launch(GPT2 *model) {
    float *norm_device = model->acts.norm_scratch + GLOBAL_NORM_MAX_BLOCKS;
    global_norm(norm_device, model->acts.norm_scratch, model->grads_memory, model->num_parameters,
                model->stream);
    return norm_device;
}

static float gpt2_grad_norm(GPT2 *model) {
    float *norm_device = model->acts.norm_scratch + GLOBAL_NORM_MAX_BLOCKS;
    if (gpt2_uses_nccl(model)) {
        int rank = model->multi->process_rank;
        size_t begin = model->rank_offsets[rank], count = model->rank_offsets[rank + 1] - begin;
        float squares = 0.0f; // an empty range (Muon's cuts, many ranks) adds nothing
        if (count > 0) {
            global_norm_squared(norm_device, model->acts.norm_scratch, model->grads_memory + begin,
                                count, model->stream);
            cuda_check(cudaMemcpy(&squares, norm_device, sizeof(float), cudaMemcpyDeviceToHost));
        }
        double total = squares;
        multi_gpu_sum(model->multi, &total, 1, "the gradient norm");
        return (float)sqrt(total);
    }
    float norm;
    cuda_check(
        cudaMemcpy(&norm, gpt2_grad_norm_launch(model), sizeof(float), cudaMemcpyDeviceToHost));
    return norm;
}

#ifdef LLMC_MULTI_GPU
// LLMC_PLANT_ZERO_MUON=skip-broadcast (tests/test_muon.sh): every rank skips the broadcast of the
// last rank's range after a ZeRO-1 Muon step, so the others keep stale weights there; the test
// must see the model differ from ZeRO-0's. Returns the skipped rank, or -1.
static int planted_zero_muon_skip(const MultiGpu *mg) {
    const char *plant = getenv("LLMC_PLANT_ZERO_MUON");
    return plant != NULL && strcmp(plant, "skip-broadcast") == 0 ? mg->num_processes - 1 : -1;
}
#endif

// AdamW step t (1-based), one launch per tensor so weight decay applies to matrices only. With
// ZeRO-1 each process updates the part of each tensor inside its shard, then the processes
// all-gather the parameters. The rounding of element i depends on i and t only, so ZeRO-1 and
// ZeRO-0 store the same bits. device_scale (NULL: grad_scale) as in adamw_update. With muon (NULL:
// AdamW everywhere) the blocks' 2-D matrices take a Muon step instead (llmc/muon.cuh), their
// momentum in m. ZeRO-0: every process holds all of it and computes the same update. ZeRO-1: the
// ranges are cut between matrices (llmc/zero_shards.h), so each matrix has one owner, which alone
// holds its momentum, runs its Newton-Schulz iterations and then broadcasts its whole range.
static void gpt2_update_scaled(GPT2 *model, const AdamWConfig *opt, const MuonConfig *muon, int t,
                               float grad_scale, const float *device_scale) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(&model->config, sizes);
    // stochastic rounding seed: a function of the step only, so a resumed run rounds the same way
    uint32_t seed = hash_u32((uint32_t)t, 0x5eed1234u);
    size_t shard_begin = model->shard_offset, shard_end = model->shard_offset + model->shard_size;
    size_t offset = 0;
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
        size_t begin = offset > shard_begin ? offset : shard_begin;
        size_t end = offset + sizes[k] < shard_end ? offset + sizes[k] : shard_end;
        offset += sizes[k];
        if (begin >= end) continue; // none of this tensor is in the shard
        size_t local = begin - shard_begin;
        float *master = model->master_memory != NULL ? model->master_memory + local : NULL;
        BlockMatrixShape shape;
        if (muon != NULL && gpt2_block_matrix_shape(&model->config, k, &shape)) {
            size_t matrix = (size_t)shape.rows * shape.cols, tensor_begin = offset - sizes[k];
            for (int l = 0; l < shape.layers; l++) {
                size_t at = tensor_begin + (size_t)l * matrix;   // this matrix's first element
                if (at + matrix <= begin || at >= end) continue; // another rank's
                if (at < begin || at + matrix > end) {
                    fatal("internal: Muon needs whole matrices, but %s layer %d is split across "
                          "ranks",
                          model_tensor_name(&model->config, k), l);
                }
                size_t in_shard = at - shard_begin;
                muon_update_matrix_device(
                    model->params_memory + at,
                    model->master_memory != NULL ? model->master_memory + in_shard : NULL,
                    model->grads_memory + at, model->m_memory + in_shard, shape.rows, shape.cols,
                    grad_scale, device_scale, muon, seed, at, &model->muon, model->stream);
            }
            continue;
        }
        adamw_update(model->params_memory + begin, master, model->grads_memory + begin,
                     model->m_memory + local, model->v_memory + local, end - begin, opt, t,
                     model_tensor_is_decayed(&model->config, k), grad_scale, device_scale, seed,
                     begin, model->stream);
    }
#ifdef LLMC_MULTI_GPU
    if (gpt2_uses_nccl(model) && model->multi->zero_stage == 1) {
        MultiGpu *mg = model->multi;
        if (mg->whole_matrix_shards) { // unequal ranges: each owner broadcasts its own
            int skipped = planted_zero_muon_skip(mg);
            nccl_check(mg, ncclGroupStart());
            for (int r = 0; r < mg->num_processes; r++) {
                size_t begin = model->rank_offsets[r], count = model->rank_offsets[r + 1] - begin;
                if (count == 0 || r == skipped) continue; // the same on every rank
                floatX *range = model->params_memory + begin;
                nccl_check(mg, ncclBroadcast(range, range, count, nccl_floatX(), r, mg->comm,
                                             model->stream));
            }
            nccl_check(mg, ncclGroupEnd());
        } else {
            nccl_check(mg, ncclAllGather(model->params_memory + model->shard_offset,
                                         model->params_memory, model->shard_size, nccl_floatX(),
                                         mg->comm, model->stream));
        }
    }
#endif
}

static void gpt2_update(GPT2 *model, const AdamWConfig *opt, const MuonConfig *muon, int t,
                        float grad_scale) {
    gpt2_update_scaled(model, opt, muon, t, grad_scale, NULL);
}

// params: gpt2_download_params's copy.
static void gpt2_write_params(const GPT2 *model, const char *path, const float *params) {
#ifdef ENABLE_FP32
    model_write(path, &model->config, params, MODEL_VERSION_FP32);
#else
    model_write(path, &model->config, params, MODEL_VERSION_BF16); // exact: params are bf16
#endif
}

#ifndef TESTING
// ----------------------------------------------------------------------------
// Training

// LLMC_PLANT_PIPELINE (tests/test_host_pipeline.sh): a planted pipeline bug the tests must catch.
// "sync": a cudaDeviceSynchronize after each micro-batch; "one-slot": one pinned slot for all
// micro-batches (the host then waits for the slot each micro-batch); "early-overwrite": one slot,
// not waited for (the host overwrites a slot the GPU may not have read yet); "early-read": the
// step's loss and norm read before the wait; "clip-ulp": the device's clip threshold one ulp low.
static const char *planted_pipeline_bug(void) {
    const char *plant = getenv("LLMC_PLANT_PIPELINE");
    return plant != NULL ? plant : "";
}

// One optimizer step of one process with the host pipeline (llmc/host_pipeline.cuh): the
// micro-batches' uploads are asynchronous, their losses summed on the device, the clip scale
// computed there and read by AdamW, and the host waits once, for the step's loss and norm. When
// the outlier detector may skip this step's update (its window is full) the host must judge
// first: the update is then launched after that one wait. Returns the verdict (as the host path's
// train_guard_step); *loss and *norm as that path's.
static OutlierVerdict train_step_pipelined(GPT2 *model, const TrainModel *train_model,
                                           DataLoader *loader, StepBatches *batches,
                                           const TrainOptions *opt, const AdamWConfig *adamw,
                                           const MuonConfig *muon, OutlierDetector *detector,
                                           int step, float *loss, float *norm) {
    cudaStream_t stream = model->stream;
    cuda_check(cudaMemsetAsync(model->step_loss, 0, sizeof(double), stream));
    int skip_update;
    StepLossForm form;
    double unused_loss_sum; // the BatchLosses are placeholders here
    train_accumulate_micro_steps(train_model, loader, batches, opt->grad_accum_steps, &skip_update,
                                 &form, &unused_loss_sum);
    gpt2_reduce_gradients(model); // one process: nothing to reduce
    float *norm_device = gpt2_grad_norm_launch(model);
    double loss_divisor = form.masked ? form.total : (double)form.micro_steps * form.processes;
    float max_norm = opt->grad_clip;
    if (strcmp(planted_pipeline_bug(), "clip-ulp") == 0) max_norm = nextafterf(max_norm, 0.0f);
    clip_scale(model->grad_scale, norm_device, model->step_loss, loss_divisor, max_norm, stream);
    int host_judges = outlier_detector_may_skip(detector);
    if (!skip_update && !host_judges) {
        gpt2_update_scaled(model, adamw, muon, step + 1, 1.0f, model->grad_scale);
    }
    // the one wait of the step: its loss and norm, for the log and the divergence checks
    StepReadback *readback = model->pipeline.readback;
    cuda_check(cudaMemcpyAsync(&readback->loss_sum, model->step_loss, sizeof(double),
                               cudaMemcpyDeviceToHost, stream));
    cuda_check(cudaMemcpyAsync(&readback->norm, norm_device, sizeof(float), cudaMemcpyDeviceToHost,
                               stream));
    if (strcmp(planted_pipeline_bug(), "early-read") != 0) {
        cuda_check(cudaStreamSynchronize(stream));
    }
    *loss = train_step_loss(train_model, &form, readback->loss_sum);
    *norm = readback->norm;
    if (strcmp(planted_pipeline_bug(), "early-read") == 0) {
        cuda_check(cudaStreamSynchronize(stream));
    }
    OutlierVerdict verdict = {NAN, NAN, 0, 0};
    if (skip_update) {
        printf("step %d: no trained target in the whole step: no update\n", step + 1);
        return verdict;
    }
    // a non-finite loss or norm stops the run here; the device has skipped the update already
    verdict = train_guard_step(detector, opt, step, *loss, *norm);
    if (host_judges && !outlier_verdict_skips(&verdict)) {
        gpt2_update_scaled(model, adamw, muon, step + 1, 1.0f, model->grad_scale);
    }
    return verdict;
}

// Dense bf16 tensor-core peak (FLOP/s) for devices we know, else 0 (MFU is then not printed).
static double device_bf16_peak(const char *name) {
    if (strstr(name, "H100") != NULL || strstr(name, "H200") != NULL || strstr(name, "GH200")) {
        return strstr(name, "PCIe") != NULL ? 756e12 : 989e12;
    }
    if (strstr(name, "A100") != NULL) return 312e12;
    if (strstr(name, "A10G") != NULL) return 70e12;
    if (strstr(name, "L4") != NULL) return 121e12;
    if (strstr(name, "4090") != NULL) return 165e12;
    return 0.0;
}

// The model for llmc/train_loop.h: the callbacks behind a TrainModel.
static BatchLoss batch_loss(const GPT2 *model) {
    BatchLoss loss = {model->mean_loss, model->loss_sum, model->num_targets};
    return loss;
}

static BatchLoss train_forward(void *model, const int *inputs, const int *targets,
                               const unsigned char *target_mask, int B, int T) {
    gpt2_forward_masked((GPT2 *)model, inputs, targets, target_mask, B, T, 0, 1.0f);
    return batch_loss((GPT2 *)model);
}

static BatchLoss train_forward_backward(void *model, const int *inputs, const int *targets,
                                        const unsigned char *target_mask, int B, int T,
                                        float normaliser, float loss_scale, int last_micro_step) {
    GPT2 *gpt2 = (GPT2 *)model;
    // the last backward of a step reduces each layer's gradients as soon as they are done
    gpt2->reduce_in_backward =
        last_micro_step && gpt2_uses_nccl(gpt2) && gpt2->multi->zero_stage == 0;
    gpt2->defer_loss = gpt2->pipelined; // validation's forwards read their losses at once
    if (target_mask != NULL) {
        gpt2_forward_masked(gpt2, inputs, targets, target_mask, B, T, 1, normaliser);
        gpt2_backward_normalised(gpt2, normaliser);
    } else {
        gpt2_forward(gpt2, inputs, targets, B, T, 1, loss_scale);
        gpt2_backward(gpt2, loss_scale);
    }
    gpt2->defer_loss = 0;
    if (strcmp(planted_pipeline_bug(), "sync") == 0) cuda_check(cudaDeviceSynchronize());
    return batch_loss(gpt2);
}

static const float *train_position_losses(void *model) {
    return ((GPT2 *)model)->losses_host;
}

static const float *train_last_logits(void *model, const int *tokens, int length, float *scratch) {
    GPT2 *gpt2 = (GPT2 *)model;
    size_t Vp = (size_t)gpt2->config.padded_vocab_size;
#ifdef LLMC_USE_CUDNN
    // cuDNN builds a graph per sequence length (a GPU's build takes milliseconds to seconds):
    // run the context padded to the next power of two (at most max_T), so that sampling builds
    // about log2(max_T) graphs, not one per token. Attention is causal, so the padding after the
    // last token changes none of the logits read here.
    int padded = 1;
    while (padded < length) padded *= 2;
    if (padded > gpt2->max_T) padded = gpt2->max_T;
    int *padded_tokens = (int *)malloc_check((size_t)padded * sizeof(int), "sampling context");
    memcpy(padded_tokens, tokens, (size_t)length * sizeof(int));
    for (int t = length; t < padded; t++) padded_tokens[t] = tokens[length - 1];
    gpt2_forward(gpt2, padded_tokens, NULL, 1, padded, 0, 1.0f);
    free(padded_tokens);
#else
    gpt2_forward(gpt2, tokens, NULL, 1, length, 0, 1.0f);
#endif
    cuda_check(cudaMemcpy(gpt2->logits_row_host, gpt2->acts.logits + (size_t)(length - 1) * Vp,
                          Vp * sizeof(floatX), cudaMemcpyDeviceToHost));
    floatX_to_floats(scratch, gpt2->logits_row_host, Vp);
    return scratch;
}

static void sum_across_processes(void *model, double *values, int count) {
    multi_gpu_sum(((GPT2 *)model)->multi, values, count, "a sum of losses or target counts");
}

static StateOwner gpt2_state_owner(const GPT2 *model) {
    StateOwner owner = {0, 1, 0};
    if (model->multi != NULL) {
        owner.process_rank = model->multi->process_rank;
        owner.num_processes = model->multi->num_processes;
        owner.zero_stage = model->multi->zero_stage;
    }
    return owner;
}

// Rank 0 writes the model file (every rank has the same parameters), each rank its own state
// file (its shard of the optimizer with ZeRO-1, and its loader's position); the DONE marker
// follows once all of them are written. Every value is checked on the host copies before any
// file is written, and all ranks stop if one of them found a non-finite value.
static void save_checkpoint(void *model, const char *dir, int step, const DataLoader *loader,
                            uint64_t rng_state, const OutlierHistory *outliers) {
    GPT2 *gpt2 = (GPT2 *)model;
    StateOwner owner = gpt2_state_owner(gpt2);
    size_t n = gpt2->shard_size;
    float *params = owner.process_rank == 0 ? gpt2_download_params(gpt2) : NULL;
    float *m = (float *)malloc_check(n * sizeof(float), "AdamW m (host)");
    float *v = (float *)malloc_check(n * sizeof(float), "AdamW v (host)");
    float *master = NULL;
    cuda_check(cudaMemcpy(m, gpt2->m_memory, n * sizeof(float), cudaMemcpyDeviceToHost));
    cuda_check(cudaMemcpy(v, gpt2->v_memory, n * sizeof(float), cudaMemcpyDeviceToHost));
    if (gpt2->master_memory != NULL) {
        master = (float *)malloc_check(n * sizeof(float), "master weights (host)");
        cuda_check(
            cudaMemcpy(master, gpt2->master_memory, n * sizeof(float), cudaMemcpyDeviceToHost));
    }
    CheckedTensor tensors[] = {{"weights", params, gpt2->num_parameters},
                               {"AdamW m", m, n},
                               {"AdamW v", v, n},
                               {"master weights", master, n}};
    char problem[256] = "a non-finite value on another rank";
    double found = tensors_find_non_finite(tensors, 4, problem, sizeof(problem));
    if (gpt2->multi != NULL) multi_gpu_sum(gpt2->multi, &found, 1, "the checkpoint's value check");
    if (found > 0.0) checkpoint_refuse_non_finite(dir, step, problem);
    char path[4096];
    checkpoint_path(path, sizeof(path), dir, "model", step);
    if (params != NULL) gpt2_write_params(gpt2, path, params);
    checkpoint_write_process_state(dir, step, owner, n, m, v, master, loader, rng_state, outliers);
    free(params);
    free(m);
    free(v);
    free(master);
    if (gpt2->multi != NULL) multi_gpu_barrier(gpt2->multi, "the checkpoint's state files");
    if (owner.process_rank == 0) {
        checkpoint_mark_done(dir, step);
        printf("checkpoint: wrote %s/model_%08d.bin and %d state file(s) (step %d)\n", dir, step,
               owner.num_processes, step);
    }
}

// Loads AdamW state (and master weights, if the file has them) from a checkpoint's state file
// and the outlier detector's history; returns the sampler's rng state.
static uint64_t load_state(GPT2 *model, const char *dir, int step, DataLoader *loader,
                           OutlierDetector *detector) {
    size_t n = model->shard_size;
    float *m = (float *)malloc_check(n * sizeof(float), "AdamW m (host)");
    float *v = (float *)malloc_check(n * sizeof(float), "AdamW v (host)");
    float *master = (float *)malloc_check(n * sizeof(float), "master weights (host)");
    OutlierHistory outliers;
    TrainState state = checkpoint_read_process_state(dir, step, gpt2_state_owner(model), n, m, v,
                                                     master, loader, &outliers);
    cuda_check(cudaMemcpy(model->m_memory, m, n * sizeof(float), cudaMemcpyHostToDevice));
    cuda_check(cudaMemcpy(model->v_memory, v, n * sizeof(float), cudaMemcpyHostToDevice));
    // without master weights in the file (FP32 runs, CPU trainer) the model file's are exact
    if (model->master_memory != NULL && state.use_master_weights) {
        cuda_check(
            cudaMemcpy(model->master_memory, master, n * sizeof(float), cudaMemcpyHostToDevice));
    }
    free(m);
    free(v);
    free(master);
    outlier_detector_restore(detector, &outliers);
    return state.rng_state;
}

int main(int argc, char **argv) {
    TrainOptions opt;
    train_options_defaults(&opt);
    CliOption options[TRAIN_OPTIONS_MAX];
    int num_options = train_options_table(&opt, options);
    int recompute = 0; // the GPU trainer's own option, after the shared ones
    options[num_options++] = {
        'r', "recompute", OPTION_INT, &recompute,
        "1: redo GELU (llama: SwiGLU) in backward instead of keeping it per layer (less "
        "memory, a little more compute, the same bits)"};
    int gemm_autotune = 0;
    options[num_options++] = {0, "gemm-autotune", OPTION_INT, &gemm_autotune,
                              "1: time cuBLASLt's top algorithms once per matrix shape and keep "
                              "the fastest (faster; the last bits may then differ between runs)"};
    MultiGpuOptions multi_options; // data parallelism: llmc/multi_gpu.cuh, docs/multi_gpu.md
    multi_gpu_options_defaults(&multi_options);
    num_options += multi_gpu_options_table(&multi_options, options + num_options);
    cli_parse(argc, argv,
              "Trains GPT-2 (or a llama-family model) on NVIDIA GPUs (" PRECISION_NAME
              " build). Same flags as train_gpt2, "
              "plus data parallelism: mpirun -np N ./train_gpt2cu ... (docs/multi_gpu.md).",
              options, num_options);
    train_options_plot_command(&opt); // --plot: only redraw a plot
    if (recompute != 0 && recompute != 1) fatal("bad value %d for -r: expected 0 or 1", recompute);
    if (gemm_autotune != 0 && gemm_autotune != 1) {
        fatal("bad value %d for --gemm-autotune: expected 0 or 1", gemm_autotune);
    }
    MultiGpu multi;
    multi_gpu_init(&multi, &multi_options, &argc, &argv);
    int rank = multi.process_rank, processes = multi.num_processes;
    // one voice: rank 0 prints progress and writes main.log (errors still reach stderr)
    if (rank != 0 && freopen("/dev/null", "w", stdout) == NULL) fatal("rank %d: /dev/null", rank);
    train_options_validate(&opt, processes);
    // Muon with ZeRO-1: each matrix is owned by one rank (its range is cut between matrices)
    multi.whole_matrix_shards = opt.optimizer == OPTIMIZER_MUON;
    // one trainer per output directory: rank 0 locks it for the whole run before any rank reads
    // it (a second run's rank 0 then stops that whole run; llmc/run_dir.h)
    if (rank == 0 && opt.output_dir[0] != '\0') run_dir_claim(opt.output_dir);
    multi_gpu_barrier(&multi, "rank 0's lock on the output directory");
    char resume_model_path[4096];
    int start_step = train_options_resume(&opt, resume_model_path, sizeof(resume_model_path));
    int B = opt.B, T = opt.T;

    cudaDeviceProp props;
    cuda_check(cudaGetDeviceProperties(&props, multi.local_device));
    double peak_flops = device_bf16_peak(props.name);
    printf("device: %s, %d SMs, %.1f GiB, compute %d.%d | %s\n", props.name,
           props.multiProcessorCount, props.totalGlobalMem / 1073741824.0, props.major, props.minor,
           model_precision_note());
    if (multi.use_nccl) {
        printf("data parallel: %d process(es) via %s, NCCL id check %02x | ZeRO-%d: %s\n",
               processes, multi.method, multi.id_check, multi.zero_stage,
               multi.zero_stage == 0 ? "every rank keeps all optimizer state"
               : multi.whole_matrix_shards
                   ? "optimizer state and master weights sharded across ranks, each Muon matrix "
                     "whole on one rank"
                   : "AdamW state and master weights sharded across ranks");
    }
    multi_gpu_after_init(&multi, &multi_options);
    matmul_init();
    matmul_set_autotune(gemm_autotune);

    GPT2 model;
    // SFT data: its chat tokens may be new to the model (V grows into the padded rows)
    int data_vocab =
        opt.loss_mask != DATALOADER_MASKS_OFF ? dataloader_mask_vocab_size(opt.train_pattern) : 0;
    gpt2_build(&model, opt.model_spec, (uint32_t)opt.seed, B, T, recompute, data_vocab, &multi);
    gpt2_config_print(&model.config, model.num_parameters);
    size_t param_bytes, optimizer_bytes, activation_bytes;
    gpt2_memory_needed(&model.config, B, T, recompute, model.shard_size, &param_bytes,
                       &optimizer_bytes, &activation_bytes);
    size_t model_bytes =
        param_bytes + optimizer_bytes + activation_bytes + model.attention_workspace_bytes;
    printf("memory plan: %.3f GiB = weights+grads %.3f, optimizer %.3f, activations %.3f (of which "
           "attention log-sum-exp %.4f; no (B,NH,T,T) tensor), attention workspace %.4f\n",
           model_bytes / 1073741824.0, param_bytes / 1073741824.0, optimizer_bytes / 1073741824.0,
           activation_bytes / 1073741824.0,
           attention_stats_bytes(&model.config, B, T) / 1073741824.0,
           model.attention_workspace_bytes / 1073741824.0);
    if (multi.zero_stage == 1 && multi.whole_matrix_shards && processes > 1) {
        // rank 0 prints every rank's range (the ranges are a function of the shape and P)
        for (int r = 0; r < processes; r++) {
            size_t begin = model.rank_offsets[r], end = model.rank_offsets[r + 1], elements;
            int owned;
            zero_shard_muon_matrices(&model.config, begin, end, &owned, &elements);
            printf("memory plan, ZeRO-1 with Muon: rank %d owns parameters [%zu, %zu): the "
                   "momentum and master weights of %d whole Muon matrices (%zu parameters) live "
                   "only there, with AdamW's m, v and master weights of the other %zu\n",
                   r, begin, end, owned, elements, end - begin - elements);
        }
    }
    printf("attention: %s\n",
           attention_implementation_gqa(model.config.num_heads, gpt2_kv_heads(&model.config),
                                        model.config.channels / model.config.num_heads));
    // each rank reads its own B rows of every window of processes * B rows (llmc/dataloader.h)
    DataLoader train_loader, val_loader;
    dataloader_init_with_masks(&train_loader, opt.train_pattern, B, T, model.config.vocab_size,
                               rank, processes, opt.shuffle, (uint32_t)opt.seed, opt.loss_mask);
    int have_val = opt.val_pattern[0] != '\0' && opt.val_every > 0;
    if (have_val) {
        dataloader_init_with_masks(&val_loader, opt.val_pattern, B, T, model.config.vocab_size,
                                   rank, processes, 0, 0, opt.loss_mask);
    }
    StepBatches step_batches; // masked training loads a whole step ahead (see StepBatches)
    memset(&step_batches, 0, sizeof(step_batches));
    if (train_loader.has_masks) {
        step_batches_init(&step_batches, &train_loader, opt.grad_accum_steps);
        printf(
            "loss masks: on (SFT); the loss is the mean over the trained targets of each step\n");
    }
    int max_steps = opt.max_steps;
    if (max_steps < 0) max_steps = train_epoch_steps(&train_loader, opt.grad_accum_steps);
    Tokenizer tokenizer;
    int eot_token;
    int have_tokenizer =
        train_load_tokenizer(&tokenizer, opt.tokenizer_path, model.config.vocab_size, &eot_token);
    if (rank == 0) {
        train_keep_tokenizer(opt.output_dir, train_loader.glob_result.gl_pathv[0],
                             opt.tokenizer_path, model.config.vocab_size);
    }

    TrainEval eval;
    int have_eval = opt.hellaswag_path[0] != '\0';
    if (have_eval) {
        train_eval_init(&eval, opt.hellaswag_path, opt.hellaswag_out, model.config.vocab_size, B,
                        T);
    }

    uint64_t rng_state = 1337;
    OutlierDetector detector;
    outlier_detector_init(&detector, opt.outlier_window, opt.skip_loss_z, opt.skip_norm_z);
    if (start_step > 0) {
        rng_state = load_state(&model, opt.output_dir, start_step, &train_loader, &detector);
        printf("resume: from step %d of %s\n", start_step, opt.output_dir);
    }
    if (max_steps == 0) {
        printf("-x 0: no training step, only evaluation\n");
    } else if (start_step >= max_steps) {
        printf("nothing to do: step %d already reached -x %d\n", start_step, max_steps);
    }
    Logger logger;
    logger_init(&logger, rank == 0 ? opt.output_dir : "", start_step);
    LRScheduler scheduler = {opt.schedule, opt.learning_rate, opt.warmup_steps, max_steps,
                             opt.final_lr_fraction};
    AdamWConfig adamw = {opt.learning_rate, opt.beta1, opt.beta2, opt.eps, opt.weight_decay};
    // Muon's lr follows the same schedule from its own peak
    LRScheduler muon_scheduler = {opt.schedule, opt.muon_lr, opt.warmup_steps, max_steps,
                                  opt.final_lr_fraction};
    MuonConfig muon = {opt.muon_lr, opt.muon_momentum, opt.weight_decay, opt.muon_ns_steps};
    int use_muon = opt.optimizer == OPTIMIZER_MUON;
    train_print_optimizer(&opt, &model.config);
    int tokens_per_step = opt.total_batch_size;
    const GPT2Config *cfg = &model.config;
    // training FLOPs per token: 6 per parameter (forward + backward) plus attention's scores and
    // weighted sum, 6 * L * C * T (PaLM's accounting, which llm.c also uses)
    double flops_per_token = 6.0 * (double)model.num_parameters +
                             6.0 * cfg->num_layers * (double)cfg->channels * (double)T;
    printf("train: %zu shard(s) from %s | B=%d T=%d x %d process(es), %d tokens/step (%d "
           "micro-steps) | %d steps\n",
           train_loader.num_shards, opt.train_pattern, B, T, processes, tokens_per_step,
           opt.grad_accum_steps, max_steps);

    TrainModel train_model = {&model,
                              model.config.vocab_size,
                              model.config.padded_vocab_size,
                              train_forward,
                              train_forward_backward,
                              train_last_logits,
                              save_checkpoint,
                              rank,
                              processes,
                              sum_across_processes,
                              train_position_losses};
    // the host pipeline: one pinned slot per micro-batch; one process (with several, the norm and
    // the loss are summed across processes on the host) unless LLMC_SYNC_PIPELINE=1 asks for the
    // host path (blocking read-backs, host clip scale: the reference tests/test_host_pipeline.sh
    // compares the pipeline against, bit for bit)
    int one_slot = strcmp(planted_pipeline_bug(), "one-slot") == 0 ||
                   strcmp(planted_pipeline_bug(), "early-overwrite") == 0;
    model.plant_early_overwrite = strcmp(planted_pipeline_bug(), "early-overwrite") == 0;
    host_pipeline_free(&model.pipeline);
    host_pipeline_init(&model.pipeline, one_slot ? 1 : opt.grad_accum_steps, (size_t)B * T);
    const char *sync_pipeline = getenv("LLMC_SYNC_PIPELINE");
    int use_sync_pipeline = sync_pipeline != NULL && strcmp(sync_pipeline, "1") == 0;
    model.pipelined = !gpt2_uses_nccl(&model) && !use_sync_pipeline;
    StepTimer timer = {0.0, 0};
    double run_start = now_seconds();
    for (int step = start_step; step <= max_steps; step++) {
        train_checkpoint_validate_sample(
            &train_model, &opt, step, start_step, max_steps, &train_loader,
            have_val ? &val_loader : NULL, have_eval ? &eval : NULL,
            have_tokenizer ? &tokenizer : NULL, eot_token, &rng_state, &detector, &logger);
        if (step == max_steps) break;

        double start = now_seconds();
        gpt2_zero_grad(&model);
        float loss, norm, lr = lr_scheduler_get(&scheduler, step);
        adamw.learning_rate = lr;
        muon.learning_rate = lr_scheduler_get(&muon_scheduler, step);
        OutlierVerdict verdict = {NAN, NAN, 0, 0};
        if (model.pipelined) {
            verdict = train_step_pipelined(&model, &train_model, &train_loader, &step_batches, &opt,
                                           &adamw, use_muon ? &muon : NULL, &detector, step, &loss,
                                           &norm);
        } else {
            int skip_update;
            loss = train_accumulate(&train_model, &train_loader, &step_batches,
                                    opt.grad_accum_steps, &skip_update);
            gpt2_reduce_gradients(&model);
            norm = gpt2_grad_norm(&model);
            float grad_scale = gpt2_clip_scale(norm, opt.grad_clip);
            if (skip_update) {
                printf("step %d: no trained target in the whole step: no update\n", step + 1);
            } else {
                verdict = train_guard_step(&detector, &opt, step, loss, norm);
                if (!outlier_verdict_skips(&verdict)) {
                    gpt2_update(&model, &adamw, use_muon ? &muon : NULL, step + 1, grad_scale);
                }
            }
#ifdef LLMC_MULTI_GPU
            if (multi.use_nccl) multi_gpu_wait(&multi, model.stream, "the step's parameter update");
#endif
            cuda_check(cudaStreamSynchronize(model.stream));
        }
        double elapsed = now_seconds() - start;
        char mfu[32] = "";
        if (peak_flops > 0.0) { // per GPU: the step's tokens are spread over the processes
            snprintf(mfu, sizeof(mfu), " | MFU %.1f%%",
                     100.0 * (tokens_per_step / elapsed) * flops_per_token /
                         (peak_flops * processes));
        }
        train_report_step(&timer, &logger, step, start_step, max_steps, loss, lr, norm, elapsed,
                          tokens_per_step, mfu, &verdict);
    }
    train_report_done(&timer, tokens_per_step);
    matmul_algo_cache_report();
    // everything is allocated up front, so the memory in use now is the run's peak
    size_t free_bytes = 0, total_bytes = 0;
    cuda_check(cudaMemGetInfo(&free_bytes, &total_bytes));
    printf("device memory: %.2f GiB in use of %.2f (all processes; this run's buffers: %.2f)\n",
           (total_bytes - free_bytes) / 1073741824.0, total_bytes / 1073741824.0,
           model_bytes / 1073741824.0);

    logger_free(&logger);
    char device[320]; // DIR/report.md and DIR/loss.svg (llmc/report.h)
    snprintf(device, sizeof(device), "%s, %s, %d process(es)", props.name, PRECISION_NAME,
             processes);
    RunReport report =
        train_report_init(&opt, &timer, &model.config, model.num_parameters, device, start_step,
                          max_steps, processes, now_seconds() - run_start);
    if (peak_flops > 0.0 && timer.train_seconds > 0.0) { // as the progress line's, over the run
        report.mfu_percent = 100.0 * (tokens_per_step * timer.timed_steps / timer.train_seconds) *
                             flops_per_token / (peak_flops * processes);
    }
    train_report_finish(&report, rank);
    if (train_loader.has_masks) step_batches_free(&step_batches);
    dataloader_free(&train_loader);
    if (have_val) dataloader_free(&val_loader);
    if (have_eval) train_eval_free(&eval);
    if (have_tokenizer) tokenizer_free(&tokenizer);
    gpt2_free(&model);
    matmul_free();
    multi_gpu_free(&multi);
    return 0;
}
#endif // TESTING
