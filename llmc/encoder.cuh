// Token + position embedding. Forward: out (B,T,C) = wte[inp] + wpe[t] (wpe NULL, llama: wte[inp]
// only, copied exactly). Backward is
// deterministic: the host groups the batch's positions by token (encoder_backward_plan) so each
// wte row is summed by one thread per channel in a fixed order, with no atomics.
#ifndef LLMC_ENCODER_CUH
#define LLMC_ENCODER_CUH

#include "cuda_common.cuh"

// Thread k computes elements [k * x128::size, (k + 1) * x128::size) of out. packed (C a multiple
// of the pack and every pointer 16-byte aligned, so a pack never crosses a row): three 16-byte
// accesses; otherwise element by element. The same sum per element either way: same bits.
__global__ void encoder_forward_kernel(floatX *out, const int *inp, const floatX *wte,
                                       const floatX *wpe, int B, int T, int C, int packed) {
    size_t first = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    size_t total = (size_t)B * T * C;
    if (first >= total) return;
    if (packed) {
        size_t bt = first / C;
        int c = (int)(first % C);
        int t = (int)(bt % T);
        // wte and wpe rows are reused by other positions: plain loads that stay in L2
        x128 token_pack = load128(wte + (size_t)inp[bt] * C + c);
        if (wpe == NULL) {
            store128(out + first, token_pack);
            return;
        }
        x128 position_pack = load128(wpe + (size_t)t * C + c);
        x128 sum;
        LLMC_UNROLL
        for (int k = 0; k < x128::size; k++) {
            sum[k] = from_float<floatX>(to_float(token_pack[k]) + to_float(position_pack[k]));
        }
        store128(out + first, sum); // the first layernorm reads it next
        return;
    }
    size_t end = first + x128::size < total ? first + x128::size : total;
    for (size_t idx = first; idx < end; idx++) {
        size_t bt = idx / C;
        int c = (int)(idx % C);
        int t = (int)(bt % T);
        int token = inp[bt];
        if (wpe == NULL) {
            out[idx] = wte[(size_t)token * C + c];
            continue;
        }
        out[idx] = from_float<floatX>(to_float(wte[(size_t)token * C + c]) +
                                      to_float(wpe[(size_t)t * C + c]));
    }
}

static inline void encoder_forward(floatX *out, const int *inp, const floatX *wte,
                                   const floatX *wpe, int B, int T, int C, cudaStream_t stream) {
    const int block = 256;
    int packed = C % x128::size == 0 && is_aligned16(out) && is_aligned16(wte) && is_aligned16(wpe);
    LLMC_LAUNCH(encoder_forward_kernel, ceil_div(ceil_div((long long)B * T * C, x128::size), block),
                block, 0, stream)
    (out, inp, wte, wpe, B, T, C, packed);
    cuda_check(cudaGetLastError());
}

// dwpe[t, c] += sum over b of dout[b, t, c], in order of b.
__global__ void encoder_backward_wpe_kernel(floatX *dwpe, const floatX *dout, int B, int T, int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)T * C) return;
    float sum = 0.0f;
    for (int b = 0; b < B; b++) sum += to_float(dout[(size_t)b * T * C + idx]);
    dwpe[idx] = from_float<floatX>(to_float(dwpe[idx]) + sum);
}

// One block row per distinct token: dwte[token, c] += dout[pos, c] over that token's positions
// (in increasing order). plan = [unique tokens (U) | offsets (U+1) | positions (B*T)].
__global__ void encoder_backward_wte_kernel(floatX *dwte, const floatX *dout, const int *plan,
                                            int num_unique, int C) {
    int u = blockIdx.x; // x: the number of distinct tokens can exceed gridDim.y's 65535
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int *offsets = plan + num_unique;
    const int *positions = offsets + num_unique + 1;
    float sum = 0.0f;
    for (int i = offsets[u]; i < offsets[u + 1]; i++) {
        sum += to_float(dout[(size_t)positions[i] * C + c]);
    }
    size_t at = (size_t)plan[u] * C + c;
    dwte[at] = from_float<floatX>(to_float(dwte[at]) + sum);
}

// Groups the positions of inputs (B*T) by token on the host: fills plan (capacity 3*B*T + 1 ints)
// and returns the number of distinct tokens. Counting sort keeps positions in increasing order.
static inline int encoder_backward_plan(int *plan, const int *inputs, int BT, int V,
                                        int *counts /* V ints of scratch */) {
    memset(counts, 0, (size_t)V * sizeof(int));
    for (int i = 0; i < BT; i++) counts[inputs[i]]++;
    int num_unique = 0;
    for (int v = 0; v < V; v++) {
        if (counts[v] > 0) plan[num_unique++] = v;
    }
    int *offsets = plan + num_unique;
    int *positions = offsets + num_unique + 1;
    offsets[0] = 0;
    for (int u = 0; u < num_unique; u++) {
        int token = plan[u];
        offsets[u + 1] = offsets[u] + counts[token];
        counts[token] = offsets[u]; // now the next free slot of this token
    }
    for (int i = 0; i < BT; i++) positions[counts[inputs[i]]++] = i;
    return num_unique;
}

// plan_device holds the plan made by encoder_backward_plan (already copied to the device).
static inline void encoder_backward(floatX *dwte, floatX *dwpe, const floatX *dout,
                                    const int *plan_device, int num_unique, int B, int T, int C,
                                    cudaStream_t stream) {
    const int block = 256;
    if (dwpe != NULL) { // NULL: no position embedding (llama)
        LLMC_LAUNCH(encoder_backward_wpe_kernel, ceil_div((long long)T * C, block), block, 0,
                    stream)
        (dwpe, dout, B, T, C);
        cuda_check(cudaGetLastError());
    }
    dim3 grid(num_unique, ceil_div(C, block));
    LLMC_LAUNCH(encoder_backward_wte_kernel, grid, block, 0, stream)
    (dwte, dout, plan_device, num_unique, C);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_ENCODER_CUH
