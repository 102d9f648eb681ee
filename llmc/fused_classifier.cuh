// Softmax + cross-entropy + its gradient in one kernel, one block per row of logits (B*T, Vp):
// one read pass finds the row's max and sum of exponentials (online, per thread, then merged in
// a fixed order), the loss is log-sum-exp minus the target's logit, and with write_dlogits a
// second pass overwrites the logits with dloss * (softmax - onehot(target)). Probabilities are
// never stored. Padding columns (V..Vp) get zero gradient. With a loss mask (SFT), rows whose
// mask is 0 still get their loss computed (callers sum only trained rows) but zero gradient.
#ifndef LLMC_FUSED_CLASSIFIER_CUH
#define LLMC_FUSED_CLASSIFIER_CUH

#include "cuda_common.cuh"

// Online softmax statistics: adds value to (max, sum of exp(x - max)).
__device__ __forceinline__ void online_softmax_add(float value, float *max, float *sum) {
    if (value > *max) {
        *sum = *sum * expf(*max - value) + 1.0f;
        *max = value;
    } else {
        *sum += expf(value - *max);
    }
}

// packed (Vp a multiple of x128::size, logits 16-byte aligned): thread t reads 16-byte packs t,
// t + blockDim.x, ... of the row (columns >= V skipped); otherwise one element at a time.
__global__ void fused_classifier_kernel(floatX *logits, float *losses, const int *targets,
                                        const unsigned char *mask, float dloss, int V, int Vp,
                                        int write_dlogits, int packed) {
    __shared__ float shared[32];
    size_t row = blockIdx.x;
    floatX *x = logits + row * Vp;
    const int width = packed ? x128::size : 1;
    float thread_max = -INFINITY, thread_sum = 0.0f;
    for (int i = threadIdx.x * width; i < V; i += blockDim.x * width) {
        if (packed) {
            x128 pack = load128(x + i); // read again below: keep it cached
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++) { // compile-time indices: pack stays in registers
                if (i + k < V) online_softmax_add(to_float(pack[k]), &thread_max, &thread_sum);
            }
        } else {
            online_softmax_add(to_float(x[i]), &thread_max, &thread_sum);
        }
    }
    float row_max = block_reduce_max(thread_max, shared);
    float scaled = thread_max == -INFINITY ? 0.0f : thread_sum * expf(thread_max - row_max);
    float row_sum = block_reduce_sum(scaled, shared);
    int target = targets[row];
    if (threadIdx.x == 0) {
        losses[row] = logf(row_sum) + row_max - to_float(x[target]);
    }
    if (!write_dlogits) return;
    __syncthreads(); // everyone has read x[target] before it is overwritten
    float inv_sum = 1.0f / row_sum;
    float row_dloss = mask == NULL || mask[row] != 0 ? dloss : 0.0f;
    for (int i = threadIdx.x * width; i < Vp; i += blockDim.x * width) {
        if (packed) {
            x128 pack = load128cs(x + i); // the logits' last read
            x128 grad;
            LLMC_UNROLL
            for (int k = 0; k < x128::size; k++) {
                float gradient = 0.0f;
                if (i + k < V) {
                    float prob = expf(to_float(pack[k]) - row_max) * inv_sum;
                    gradient = (prob - (i + k == target ? 1.0f : 0.0f)) * row_dloss;
                }
                grad[k] = from_float<floatX>(gradient);
            }
            store128(x + i, grad);
        } else {
            float gradient = 0.0f;
            if (i < V) {
                float prob = expf(to_float(x[i]) - row_max) * inv_sum;
                gradient = (prob - (i == target ? 1.0f : 0.0f)) * row_dloss;
            }
            x[i] = from_float<floatX>(gradient);
        }
    }
}

// logits (N,Vp), losses (N), targets (N), mask (N, or NULL: every row trained) on the device.
static inline void fused_classifier(floatX *logits, float *losses, const int *targets,
                                    const unsigned char *mask, float dloss, int N, int V, int Vp,
                                    int write_dlogits, cudaStream_t stream) {
    const int block = 512;
    int packed = Vp % x128::size == 0 && is_aligned16(logits);
    LLMC_LAUNCH(fused_classifier_kernel, N, block, 0, stream)
    (logits, losses, targets, mask, dloss, V, Vp, write_dlogits, packed);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_FUSED_CLASSIFIER_CUH
