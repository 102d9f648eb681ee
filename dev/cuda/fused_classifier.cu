/*
The classifier's softmax + cross-entropy + gradient, from the unfused pair of kernels (softmax
written out as probabilities, then loss and dlogits from them) to the fused one-block-per-row
kernel of llmc/fused_classifier.cuh, which never stores probabilities and reads the logits once
for the statistics and once for the gradient, in 16-byte packs (version 2) or, as before the
packed loads, one element at a time (version 3: the same kernel with packed = 0). Checked against a
CPU reference in double on random logits; timed in GB/s against the device's DRAM bandwidth
(memory-bound: about 2 bytes of traffic per FLOP).

  make build/cuda_emu/dev/fused_classifier   (CPU emulation; tests/cuda_emu/run.sh runs it)
  make dev_cuda && ./build/cuda/nvcc-dev/fused_classifier [N V]   (on a GPU)

Tolerances, from the arithmetic (u = 2^-24; worst case over every summation order, FMA or not, so
they hold for both versions, the emulation's scheduling orders and a GPU; the reference is double
on the same floatX-rounded logits, so its only error is its final rounding to float, u |ref|).
A term exp(x - max): x - max (|.| <= 8 for logits in [-4, 4]) rounds by <= 8u, expf is within
2 ulp (CUDA; 4u), so 12u. Version 2 (online, per thread k = ceil(V / (512 P)) P values, P the
pack width; version 3 has at most that many): up to k - 1
rescales of the running sum by expf (13u each) and k - 1 adds, one final rescale (13u) and the
block's 10-level tree: the row sum S is within (14k + 21)u, relative (version 1 is within less).
  losses: log S: S's relative error plus logf's 1 ulp (2u log V); two adds and the reference's
          rounding of values <= log V + 8: (14k + 21)u + (5 ln V + 20)u
  dlogits, relative: p = expf(.) * (1/S): S's error + 12u + 2u; - onehot (p << 1/2 here, so
          |p - 1| keeps p's relative error), * dloss and the reference: 3u; bf16 rounds once more,
          <= 2^-8 relative (8 significant bits). Padding columns are exactly 0 on both sides.
A result computed with a known bug (the padding columns V..Vp counted in the softmax's sum) must
fail the same tolerances: the planted-error lines.
*/
#include "dev_common.cuh"

#include "../../llmc/fused_classifier.cuh"

// CPU reference in double. summed = V; a planted bug: summed = Vp, the padding columns count too.
static void classifier_cpu(float *dlogits, float *losses, const float *logits, const int *targets,
                           float dloss, int N, int V, int Vp, int summed) {
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * Vp;
        double maxval = -INFINITY, sum = 0.0;
        for (int i = 0; i < summed; i++) maxval = fmax(maxval, x[i]);
        for (int i = 0; i < summed; i++) sum += exp(x[i] - maxval);
        losses[n] = (float)(log(sum) + maxval - x[targets[n]]);
        for (int i = 0; i < Vp; i++) {
            double p = i < V ? exp(x[i] - maxval) / sum : 0.0;
            double indicator = i == targets[n] ? 1.0 : 0.0;
            dlogits[(size_t)n * Vp + i] = i < V ? (float)((p - indicator) * dloss) : 0.0f;
        }
    }
}

// Version 1, step 1: probs (N,Vp) = softmax of each row; one block per row.
__global__ void softmax_rows_kernel1(float *probs, const floatX *logits, int V, int Vp) {
    __shared__ float shared[32];
    const floatX *x = logits + (size_t)blockIdx.x * Vp;
    float thread_max = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        thread_max = fmaxf(thread_max, to_float(x[i]));
    float row_max = block_reduce_max(thread_max, shared);
    float thread_sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) thread_sum += expf(to_float(x[i]) - row_max);
    float inv = 1.0f / block_reduce_sum(thread_sum, shared);
    for (int i = threadIdx.x; i < Vp; i += blockDim.x) {
        probs[(size_t)blockIdx.x * Vp + i] = i < V ? expf(to_float(x[i]) - row_max) * inv : 0.0f;
    }
}

// Version 1, step 2: loss = -log(prob[target]); dlogits = (probs - onehot) * dloss.
__global__ void crossentropy_backward_kernel1(floatX *dlogits, float *losses, const float *probs,
                                              const int *targets, float dloss, int V, int Vp) {
    size_t row = blockIdx.x;
    int target = targets[row];
    if (threadIdx.x == 0) losses[row] = -logf(probs[row * Vp + target]);
    for (int i = threadIdx.x; i < Vp; i += blockDim.x) {
        float p = probs[row * Vp + i];
        float gradient = i < V ? (p - (i == target ? 1.0f : 0.0f)) * dloss : 0.0f;
        dlogits[row * Vp + i] = from_float<floatX>(gradient);
    }
}

int main(int argc, char **argv) {
    int N = DEV_EMULATED ? 32 : 8 * 1024, V = DEV_EMULATED ? 1000 : 50257;
    if (argc == 3) {
        N = atoi(argv[1]);
        V = atoi(argv[2]);
    }
    if (N <= 0 || V <= 0) fatal("usage: fused_classifier [N V]");
    int Vp = (V + 127) / 128 * 128;
    int repeats = DEV_EMULATED ? 1 : 20;
    cudaDeviceProp props;
    cuda_check(cudaGetDeviceProperties(&props, 0));
    printf("fused_classifier: N=%d V=%d Vp=%d, %s, device %s\n", N, V, Vp, PRECISION_NAME,
           props.name);
    size_t NV = (size_t)N * Vp;
    float *logits = (float *)malloc_check(NV * sizeof(float), "logits");
    fill_uniform(logits, NV, -4.0f, 4.0f, 7);
    round_to_floatX(logits, NV);
    int *targets = (int *)malloc_check((size_t)N * sizeof(int), "targets");
    for (int n = 0; n < N; n++) targets[n] = (int)(((unsigned)n * 2654435761u) % (unsigned)V);
    float dloss = 1.0f / N;
    float *dlogits_ref = (float *)malloc_check(NV * sizeof(float), "dlogits_ref");
    float *losses_ref = (float *)malloc_check((size_t)N * sizeof(float), "losses_ref");
    classifier_cpu(dlogits_ref, losses_ref, logits, targets, dloss, N, V, Vp, V);

    floatX *d_logits = upload_floatX(logits, NV);
    floatX *d_work = (floatX *)cuda_malloc_check(NV * sizeof(floatX), "logits copy");
    float *d_probs = (float *)cuda_malloc_check(NV * sizeof(float), "probs");
    float *d_losses = (float *)cuda_malloc_check((size_t)N * sizeof(float), "losses");
    int *d_targets = (int *)cuda_malloc_check((size_t)N * sizeof(int), "targets");
    cuda_check(cudaMemcpy(d_targets, targets, (size_t)N * sizeof(int), cudaMemcpyHostToDevice));
    // the bounds of the file header
    const double u = U_FP32, k = ceil_div(V, 512 * x128::size) * x128::size,
                 sum_rtol = (14 * k + 21) * u;
    const float loss_atol = (float)(sum_rtol + (5 * log((double)V) + 20) * u);
    const double grad_fp32 = sum_rtol + 17 * u;
#ifdef ENABLE_FP32
    const float grad_rtol = (float)grad_fp32;
#else
    const float grad_rtol = (float)(U_BF16 + (1 + U_BF16) * grad_fp32);
#endif
    // each version overwrites d_work (a copy of the logits) with the gradient
    auto run_version = [&](int version) {
        cuda_check(cudaMemcpy(d_work, d_logits, NV * sizeof(floatX), cudaMemcpyDeviceToDevice));
        if (version == 1) {
            LLMC_LAUNCH(softmax_rows_kernel1, N, 512, 0, 0)(d_probs, d_work, V, Vp);
            cuda_check(cudaGetLastError());
            LLMC_LAUNCH(crossentropy_backward_kernel1, N, 512, 0, 0)
            (d_work, d_losses, d_probs, d_targets, dloss, V, Vp);
            cuda_check(cudaGetLastError());
        } else if (version == 2) {
            fused_classifier(d_work, d_losses, d_targets, NULL, dloss, N, V, Vp, 1, 0);
        } else { // the same kernel element by element (before the 16-byte packs)
            LLMC_LAUNCH(fused_classifier_kernel, N, 512, 0, 0)
            (d_work, d_losses, d_targets, NULL, dloss, V, Vp, 1, 0);
            cuda_check(cudaGetLastError());
        }
    };
    int all_ok = 1;
    for (int version = 1; version <= 3; version++) {
        printf("version %d%s:\n", version,
               version == 2   ? " (llmc/fused_classifier.cuh, 16-byte packs)"
               : version == 3 ? " (llmc/fused_classifier.cuh, element by element)"
                              : "");
        run_version(version);
        cuda_check(cudaDeviceSynchronize());
        float *dlogits = download_to_floats(d_work, NV);
        float *losses = (float *)malloc_check((size_t)N * sizeof(float), "losses");
        cuda_check(cudaMemcpy(losses, d_losses, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost));
        all_ok &= check_close("losses", losses, losses_ref, (size_t)N, loss_atol, 0.0f);
        all_ok &= check_close("dlogits", dlogits, dlogits_ref, NV, 0.0f, grad_rtol);
        free(dlogits);
        free(losses);
    }
    {
        // the same tolerances against a result with a known bug, stored as the kernels store it
        // (the first 64 rows at most: the GPU's sizes would double the reference's time)
        int rows = N < 64 ? N : 64;
        size_t rows_V = (size_t)rows * Vp;
        float *dlogits_bug = (float *)malloc_check(rows_V * sizeof(float), "dlogits_bug");
        float *losses_bug = (float *)malloc_check((size_t)rows * sizeof(float), "losses_bug");
        classifier_cpu(dlogits_bug, losses_bug, logits, targets, dloss, rows, V, Vp, Vp);
        round_to_floatX(dlogits_bug, rows_V);
        all_ok &= check_catches("losses with the padding columns in the sum", losses_bug,
                                losses_ref, (size_t)rows, loss_atol, 0.0f);
        all_ok &= check_catches("dlogits with the padding columns in the sum", dlogits_bug,
                                dlogits_ref, rows_V, 0.0f, grad_rtol);
        free(dlogits_bug);
        free(losses_bug);
    }
    printf("timing (%d repeats; each includes a copy of the logits, counted in the bytes):\n",
           repeats);
    // fused: copy (read + write) + read twice + write once; unfused also writes and reads probs
    double bytes_fused = 5.0 * NV * sizeof(floatX);
    double bytes_unfused = 5.0 * NV * sizeof(floatX) + 2.0 * NV * sizeof(float);
    for (int version = 1; version <= 3; version++) {
        float ms = time_ms([&]() { run_version(version); }, repeats);
        report_bandwidth(version == 1   ? "version 1 (unfused)"
                         : version == 2 ? "version 2 (fused, packed)"
                                        : "version 3 (fused, scalar)",
                         ms, version == 1 ? bytes_unfused : bytes_fused);
    }
    cuda_check(cudaFree(d_logits));
    cuda_check(cudaFree(d_work));
    cuda_check(cudaFree(d_probs));
    cuda_check(cudaFree(d_losses));
    cuda_check(cudaFree(d_targets));
    free(logits);
    free(targets);
    free(dlogits_ref);
    free(losses_ref);
    printf("%s\n", all_ok ? "PASS" : "FAIL");
    return all_ok ? 0 : 1;
}
