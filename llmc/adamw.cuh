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

// One element: the arithmetic of torch.optim.AdamW. param is the master value (or the fp32 value
// of params[i]); returns the new one, and updates mi, vi in place.
__device__ __forceinline__ float adamw_element(float param, float g, float *mi, float *vi,
                                               float beta1, float beta2, float eps, float step_size,
                                               float bias_correction2_sqrt, float decay) {
    param *= decay;
    *mi += (g - *mi) * (1.0f - beta1);
    *vi = *vi * beta2 + (1.0f - beta2) * g * g;
    float denom = sqrtf(*vi) / bias_correction2_sqrt + eps;
    return param - step_size * (*mi / denom);
}

// Thread k updates elements [k * x128::size, (k + 1) * x128::size): with packed set (every pointer
// 16-byte aligned) one 16-byte load of the gradients and parameters and x128::size / 4 of each fp32
// tensor (m, v, master), all issued before the arithmetic; a partial last pack, or packed = 0, goes
// element by element. Same arithmetic and rounding index per element either way: same bits.
__global__ void adamw_kernel(floatX *params, float *master, const floatX *grads, float *m, float *v,
                             size_t n, float beta1, float beta2, float eps, float step_size,
                             float bias_correction2_sqrt, float decay, float grad_scale,
                             const float *device_scale, uint32_t seed, uint32_t index_offset,
                             int packed) {
    const int F = f128::size; // fp32 values per 16 bytes
    size_t first = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (first >= n) return;
    if (device_scale != NULL) { // computed on the device (clip_scale): NaN skips the update
        grad_scale = *device_scale;
        if (isnan(grad_scale)) return;
    }
    if (packed && first + x128::size <= n) {
        x128 g_pack = load128cs(grads + first); // every optimizer tensor is read once: streaming
        x128 p_pack = master != NULL ? x128() : load128cs(params + first);
        f128 m_pack[x128::size / F], v_pack[x128::size / F], master_pack[x128::size / F];
        LLMC_UNROLL
        for (int j = 0; j < x128::size / F; j++) {
            m_pack[j] = load128cs(m + first + j * F);
            v_pack[j] = load128cs(v + first + j * F);
            if (master != NULL) master_pack[j] = load128cs(master + first + j * F);
        }
        LLMC_UNROLL
        for (int k = 0; k < x128::size; k++) {
            float param = master != NULL ? master_pack[k / F][k % F] : to_float(p_pack[k]);
            param = adamw_element(param, to_float(g_pack[k]) * grad_scale, &m_pack[k / F][k % F],
                                  &v_pack[k / F][k % F], beta1, beta2, eps, step_size,
                                  bias_correction2_sqrt, decay);
            if (master != NULL) master_pack[k / F][k % F] = param;
            stochastic_round(param, &p_pack[k], index_offset + (uint32_t)(first + k), seed);
        }
        LLMC_UNROLL
        for (int j = 0; j < x128::size / F; j++) {
            store128cs(m + first + j * F, m_pack[j]);
            store128cs(v + first + j * F, v_pack[j]);
            if (master != NULL) store128cs(master + first + j * F, master_pack[j]);
        }
        store128(params + first, p_pack); // the next forward reads the parameters: keep in L2
        return;
    }
    size_t end = first + x128::size < n ? first + x128::size : n;
    for (size_t i = first; i < end; i++) {
        float mi = m[i], vi = v[i];
        float param = master != NULL ? master[i] : to_float(params[i]);
        param = adamw_element(param, to_float(grads[i]) * grad_scale, &mi, &vi, beta1, beta2, eps,
                              step_size, bias_correction2_sqrt, decay);
        m[i] = mi;
        v[i] = vi;
        if (master != NULL) master[i] = param;
        stochastic_round(param, &params[i], index_offset + (uint32_t)i, seed);
    }
}

// Step t (1-based) on tensor slices of n elements; decay applies only where decayed is set. The
// gradients are scaled by *device_scale when it is not NULL (device memory, read by the kernel, so
// the host need not wait for it; NaN there skips the update), else by grad_scale.
static inline void adamw_update(floatX *params, float *master, const floatX *grads, float *m,
                                float *v, size_t n, const AdamWConfig *opt, int t, int decayed,
                                float grad_scale, const float *device_scale, uint32_t seed,
                                size_t index_offset, cudaStream_t stream) {
    double bias_correction1 = 1.0 - pow(opt->beta1, t);
    double bias_correction2 = 1.0 - pow(opt->beta2, t);
    float step_size = (float)(opt->learning_rate / bias_correction1);
    float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    float decay = decayed ? 1.0f - opt->learning_rate * opt->weight_decay : 1.0f;
    const int block = 256;
    int packed = is_aligned16(params) && is_aligned16(grads) && is_aligned16(m) &&
                 is_aligned16(v) && (master == NULL || is_aligned16(master));
    LLMC_LAUNCH(adamw_kernel, ceil_div(ceil_div((long long)n, x128::size), block), block, 0, stream)
    (params, master, grads, m, v, n, opt->beta1, opt->beta2, opt->eps, step_size,
     bias_correction2_sqrt, decay, grad_scale, device_scale, seed, (uint32_t)index_offset, packed);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_ADAMW_CUH
