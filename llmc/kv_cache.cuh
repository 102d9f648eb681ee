// Generation on the GPU with a key/value cache: the CUDA counterpart of llmc/kv_cache.h, with the
// same names (KVCache, gpt2_forward_step, ...) for train_gpt2.cu's GPT2. One new token at a time
// runs through the trainer's own kernels (encoder, layernorm, cuBLASLt matmuls with their GELU
// epilogue, the fused residual + layernorm) at B = T = 1, attends to the keys and values the
// earlier tokens left in the cache (floatX: bf16 in BF16 builds, in GPU memory) with the
// one-query kernel below, and copies its logits to the host for sampling. Included after
// train_gpt2.cu (`#define TESTING` + `#include "train_gpt2.cu"`).
#ifndef LLMC_KV_CACHE_CUH
#define LLMC_KV_CACHE_CUH

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int max_T, L, C, NH, Vp;
    int length;            // tokens in the cache: the next token goes to this position
    floatX *keys, *values; // device, (L, max_T, C)
    floatX *buffers;       // device: the one token's activations, carved below
    floatX *x, *x_next, *ln, *qkv, *atty, *projected, *residual2, *fch, *fch_gelu;
    floatX *logits_device; // (Vp)
    float *mean_rstd;      // device, 2 floats
    int *token;            // device, 1 int
    floatX *logits_host;   // (Vp), pinned
    float *logits;         // (Vp) host: the last logits computed, returned to the caller
} KVCache;

// The one-query attention's dynamic shared memory (scores of up to max_T keys, 32 floats for the
// block reductions) must fit the default 48 KiB.
#define KV_CACHE_MAX_T ((48 * 1024) / 4 - 64)

static inline void kv_cache_init(KVCache *cache, const GPT2Config *config, int max_T) {
    memset(cache, 0, sizeof(*cache));
    if (max_T <= 0 || max_T > config->max_seq_len) max_T = config->max_seq_len;
    if (max_T > KV_CACHE_MAX_T) {
        fatal("kv cache: context %d exceeds the %d positions the GPU generation supports", max_T,
              KV_CACHE_MAX_T);
    }
    cache->max_T = max_T;
    cache->L = config->num_layers;
    cache->C = config->channels;
    cache->NH = config->num_heads;
    cache->Vp = config->padded_vocab_size;
    size_t C = (size_t)cache->C, cached = (size_t)cache->L * max_T * C;
    cache->keys = (floatX *)cuda_malloc_check(cached * sizeof(floatX), "kv cache keys");
    cache->values = (floatX *)cuda_malloc_check(cached * sizeof(floatX), "kv cache values");
    // x, x_next, ln, atty, projected, residual2 (C each), qkv (3C), fch, fch_gelu (4C), logits
    size_t sizes[] = {C, C, C, 3 * C, C, C, C, 4 * C, 4 * C, (size_t)cache->Vp};
    floatX **slots[] = {&cache->x,        &cache->x_next,       &cache->ln,        &cache->qkv,
                        &cache->atty,     &cache->projected,    &cache->residual2, &cache->fch,
                        &cache->fch_gelu, &cache->logits_device};
    size_t total = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) total += sizes[i];
    cache->buffers = (floatX *)cuda_malloc_check(total * sizeof(floatX), "kv activations");
    floatX *next = cache->buffers;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        *slots[i] = next;
        next += sizes[i];
    }
    cache->mean_rstd = (float *)cuda_malloc_check(2 * sizeof(float), "kv ln stats");
    cache->token = (int *)cuda_malloc_check(sizeof(int), "kv token");
    cuda_check(cudaMallocHost((void **)&cache->logits_host, (size_t)cache->Vp * sizeof(floatX)));
    cache->logits = (float *)malloc_check((size_t)cache->Vp * sizeof(float), "kv logits");
}

static inline void kv_cache_reset(KVCache *cache) {
    cache->length = 0;
}

static inline void kv_cache_free(KVCache *cache) {
    cuda_check(cudaFree(cache->keys));
    cuda_check(cudaFree(cache->values));
    cuda_check(cudaFree(cache->buffers));
    cuda_check(cudaFree(cache->mean_rstd));
    cuda_check(cudaFree(cache->token));
    cuda_check(cudaFreeHost(cache->logits_host));
    free(cache->logits);
    memset(cache, 0, sizeof(*cache));
}

// Copies the new token's k and v (qkv's second and third C values) to position pos of the layer's
// keys and values (max_T, C).
__global__ void kv_cache_store_kernel(floatX *keys, floatX *values, const floatX *qkv, int pos,
                                      int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C) return;
    keys[(size_t)pos * C + i] = qkv[C + i];
    values[(size_t)pos * C + i] = qkv[2 * C + i];
}

// One query against keys 0..pos of one layer: block h is head h. out (C) = softmax(q . k_t *
// scale) weighted sum of v_t. Scores in dynamic shared memory (pos + 1 floats, then 32 floats for
// the reductions); fp32 throughout, out rounded to floatX once, as the flash kernel does.
__global__ void attention_forward_step_kernel(floatX *out, const floatX *q, const floatX *keys,
                                              const floatX *values, int pos, int C, int HS,
                                              float scale) {
    LLMC_EXTERN_SHARED(float, shared);
    float *scores = shared, *reduce = shared + pos + 1;
    int h = blockIdx.x;
    const floatX *q_head = q + (size_t)h * HS;
    float local_max = -INFINITY;
    for (int t = threadIdx.x; t <= pos; t += blockDim.x) {
        const floatX *k = keys + (size_t)t * C + (size_t)h * HS;
        float dot = 0.0f;
        for (int d = 0; d < HS; d++) dot += to_float(q_head[d]) * to_float(k[d]);
        scores[t] = dot * scale;
        local_max = fmaxf(local_max, scores[t]);
    }
    float max = block_reduce_max(local_max, reduce);
    float local_sum = 0.0f;
    for (int t = threadIdx.x; t <= pos; t += blockDim.x) {
        scores[t] = expf(scores[t] - max);
        local_sum += scores[t];
    }
    // its barriers also make every thread's scores visible to all
    float sum = block_reduce_sum(local_sum, reduce);
    for (int d = threadIdx.x; d < HS; d += blockDim.x) {
        const floatX *v = values + (size_t)h * HS + d;
        float acc = 0.0f;
        for (int t = 0; t <= pos; t++) acc += scores[t] * to_float(v[(size_t)t * C]);
        out[(size_t)h * HS + d] = from_float<floatX>(acc / sum);
    }
}

static inline void attention_forward_step(floatX *out, const floatX *qkv, const floatX *keys,
                                          const floatX *values, int pos, int C, int NH,
                                          cudaStream_t stream) {
    int HS = C / NH;
    size_t shared_bytes = ((size_t)pos + 1 + 32) * sizeof(float);
    LLMC_LAUNCH(attention_forward_step_kernel, NH, 128, shared_bytes, stream)
    (out, qkv, keys, values, pos, C, HS, 1.0f / sqrtf((float)HS));
    cuda_check(cudaGetLastError());
}

// Runs token at position cache->length and stores its keys and values. With want_logits, returns
// the logits (Vp host floats; only the first V are real) of the token after it, else NULL (a
// prompt's tokens but the last need none). Fails when full.
static inline const float *gpt2_forward_step(GPT2 *model, KVCache *cache, int token,
                                             int want_logits) {
    const GPT2Config *cfg = &model->config;
    int pos = cache->length, C = cache->C, L = cache->L;
    if (pos >= cache->max_T) {
        fatal("internal: kv cache full (%d tokens): reset it before running more", cache->max_T);
    }
    if (token < 0 || token >= cfg->vocab_size) {
        fatal("token id %d out of range: must be < V=%d", token, cfg->vocab_size);
    }
    ParameterTensors p = model->params;
    cudaStream_t stream = model->stream;
    size_t c = (size_t)C;
    float *mean = cache->mean_rstd, *rstd = cache->mean_rstd + 1;
    cuda_check(cudaMemcpyAsync(cache->token, &token, sizeof(int), cudaMemcpyHostToDevice, stream));
    encoder_forward(cache->x, cache->token, p.wte, p.wpe + (size_t)pos * c, 1, 1, C, stream);
    layernorm_forward(cache->ln, mean, rstd, cache->x, p.ln1w, p.ln1b, 1, C, stream);
    for (int l = 0; l < L; l++) {
        floatX *keys = cache->keys + (size_t)l * cache->max_T * c;
        floatX *values = cache->values + (size_t)l * cache->max_T * c;
        matmul_forward(cache->qkv, NULL, cache->ln, p.qkvw + l * 3 * c * c, p.qkvb + l * 3 * c, 1,
                       C, 3 * C, stream);
        LLMC_LAUNCH(kv_cache_store_kernel, ceil_div(C, 256), 256, 0, stream)
        (keys, values, cache->qkv, pos, C);
        cuda_check(cudaGetLastError());
        attention_forward_step(cache->atty, cache->qkv, keys, values, pos, C, cache->NH, stream);
        matmul_forward(cache->projected, NULL, cache->atty, p.attprojw + l * c * c,
                       p.attprojb + l * c, 1, C, C, stream);
        fused_residual_layernorm_forward(cache->residual2, cache->ln, mean, rstd, cache->x,
                                         cache->projected, p.ln2w + l * c, p.ln2b + l * c, 1, C,
                                         stream);
        matmul_forward(cache->fch_gelu, cache->fch, cache->ln, p.fcw + l * 4 * c * c,
                       p.fcb + l * 4 * c, 1, C, 4 * C, stream);
        matmul_forward(cache->projected, NULL, cache->fch_gelu, p.fcprojw + l * 4 * c * c,
                       p.fcprojb + l * c, 1, 4 * C, C, stream);
        // the residual add with the layernorm after it (next layer's ln1, or lnf), as in forward
        const floatX *weight = l + 1 < L ? p.ln1w + (l + 1) * c : p.lnfw;
        const floatX *bias = l + 1 < L ? p.ln1b + (l + 1) * c : p.lnfb;
        fused_residual_layernorm_forward(cache->x_next, cache->ln, mean, rstd, cache->residual2,
                                         cache->projected, weight, bias, 1, C, stream);
        floatX *swap = cache->x;
        cache->x = cache->x_next;
        cache->x_next = swap;
    }
    cache->length++;
    if (!want_logits) return NULL;
    matmul_forward(cache->logits_device, NULL, cache->ln, p.wte, NULL, 1, C, cache->Vp, stream);
    cuda_check(cudaMemcpyAsync(cache->logits_host, cache->logits_device,
                               (size_t)cache->Vp * sizeof(floatX), cudaMemcpyDeviceToHost, stream));
    cuda_check(cudaStreamSynchronize(stream));
    floatX_to_floats(cache->logits, cache->logits_host, (size_t)cache->Vp);
    return cache->logits;
}

static inline const float *gpt2_forward_next(GPT2 *model, KVCache *cache, int token) {
    return gpt2_forward_step(model, cache, token, 1);
}

#endif // LLMC_KV_CACHE_CUH
