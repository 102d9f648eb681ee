// AdamW on one parameter tensor, written as torch.optim.AdamW (and the CPU trainer) computes it.
// BF16 builds keep fp32 master weights: the update reads and writes the master copy and stores
// the bf16 parameter by stochastic rounding (seeded per step, hashed per element: reproducible).
// FP32 builds update the parameters directly (master is NULL).
#ifndef LLMC_ADAMW_CUH
#define LLMC_ADAMW_CUH

#include "cuda_common.cuh"

typedef struct {
    float learning_rate, beta1, beta2, eps, weight_decay;
} AdamWConfig;

__global__ void adamw_kernel(floatX *params, float *master, const floatX *grads, float *m, float *v,
                             size_t n, float beta1, float beta2, float eps, float step_size,
                             float bias_correction2_sqrt, float decay, float grad_scale,
                             uint32_t seed, uint32_t index_offset) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = to_float(grads[i]) * grad_scale;
    float param = master != NULL ? master[i] : to_float(params[i]);
    param *= decay;
    float mi = m[i], vi = v[i];
    mi += (g - mi) * (1.0f - beta1);
    vi = vi * beta2 + (1.0f - beta2) * g * g;
    float denom = sqrtf(vi) / bias_correction2_sqrt + eps;
    param -= step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
    if (master != NULL) master[i] = param;
    stochastic_round(param, &params[i], index_offset + (uint32_t)i, seed);
}

// Step t (1-based) on tensor slices of n elements; decay applies only where decayed is set.
static inline void adamw_update(floatX *params, float *master, const floatX *grads, float *m,
                                float *v, size_t n, const AdamWConfig *opt, int t, int decayed,
                                float grad_scale, uint32_t seed, size_t index_offset,
                                cudaStream_t stream) {
    double bias_correction1 = 1.0 - pow(opt->beta1, t);
    double bias_correction2 = 1.0 - pow(opt->beta2, t);
    float step_size = (float)(opt->learning_rate / bias_correction1);
    float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    float decay = decayed ? 1.0f - opt->learning_rate * opt->weight_decay : 1.0f;
    const int block = 256;
    LLMC_LAUNCH(adamw_kernel, ceil_div((long long)n, block), block, 0, stream)
    (params, master, grads, m, v, n, opt->beta1, opt->beta2, opt->eps, step_size,
     bias_correction2_sqrt, decay, grad_scale, seed, (uint32_t)index_offset);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_ADAMW_CUH
