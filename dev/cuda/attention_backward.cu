/*
Causal self-attention backward, from the materialising version (version 1: unpermute dout,
datt = dy v^T and dv = att^T dy as batched matmuls over the (B,NH,T,T) probabilities kept from
forward, a softmax-backward kernel in place over datt, dq = datt k and dk = datt^T q, permute into
dqkv) to flash attention's (version 2, llmc/attention.cuh, FlashAttention-2's structure; version 3,
cuDNN's fused attention backward through llmc/cudnn_att.cpp, when built with cuDNN): the
probabilities recomputed tile by tile from forward's log-sum-exp, D = rowsum(dout * out) instead
of rowsum(P * dP), one kernel for dq (a thread per query, walking key tiles up to the diagonal)
and one for dk and dv (a thread per key, walking query tiles from the diagonal), each output with
one writer: no atomics, deterministic. Scores are computed twice (once per kernel), the price of
no atomics; no T x T matrix is stored.

  make build/cuda_emu/dev/attention_backward   (CPU emulation; tests/cuda_emu/run.sh runs it)
  make dev_cuda && ./build/cuda/nvcc-dev/attention_backward   (on a GPU)

Checked against a CPU reference in double at T = 1, 37, 64 and 1024 (under the emulation T = 1024
at B = NH = 1). The reference takes forward's output as the kernels get it (rounded to floatX) for
D, and computes the probabilities exactly; it also measures the exact magnitudes the bounds use:
dp_max = max |dp_ij|, G = max |dp_ij - D_i| and colsum = max_j sum_i p_ij. Bounds (u = U_FP32,
inputs in [-1, 1], |out| <= 1; score_error as in attention_common.cuh):
- a recomputed weight p = exp(s - lse), lse given within u |lse|, |s - lse| <= 2 sqrt(HS) + ln T,
  expf 4u: relative
    weight_error = score_error + (3 sqrt(HS) + 2 ln(T + 1) + 4) u
  (version 1: forward's out bound, which holds its weights' error, plus its normaliser's T u);
- dp = dout . v and D = dout . out, each an fp32 dot of HS terms of |.| <= 1: within HS^2 u
  (version 1: datt is stored, + dp_max U_store; its D = sum_j P dP carries the weights' error
  and the T-term sum times dp_max, dp's error, and the distance of the stored out from the exact
  one, HS U_store);
- ds = p (dp - D) scale, with G' = G + err(dp) + err(D) (|dp - D| as computed): within
    scale p e_ds, e_ds = (weight_error + 3u) G' + err(dp) + err(D)   (version 1: + U_store G',
    the stored dpreatt);
- dq_i = scale sum_j ds_ij k_j (sum_j p_ij = 1, T terms): dq_atol = scale (e_ds + T u G');
  dk_j = sum_i ds_ij q_i: dk_atol = dq_atol colsum;
  dv_j = sum_i p_ij dout_i: dv_atol = (weight_error + T u) colsum;
  storing in floatX adds U_store |ref| (rtol, which also covers the reference's rounding); 1%
  slack on top.
References with a known bug must fall outside the same bounds (the planted-error lines): D
dropped (ds = p dp scale: dq and dk change, dv cannot) and the causal mask off by one (each query
also sees the next key: all three change, from T = 37 on; at T = 1 nothing changes).
*/
#include "attention_common.cuh"

// The planted bugs of the reference: D dropped (ds = p dp scale; dq and dk change) and the causal
// mask off by one (each query also sees the next key; all three change, but not at T = 1).
enum { PLANTED_NONE, PLANTED_NO_DSUM, PLANTED_MASK };

// dqkv (B,T,3C) from dout (B,T,C): probabilities exact (double), D_i = dout_i . out_i from the
// given out (what the kernels read). *magnitudes (may be NULL): of this computation.
static void attention_backward_cpu(float *dqkv, BackwardMagnitudes *magnitudes, const float *dout,
                                   const float *out, const float *qkv, int B, int T, int C, int NH,
                                   int planted) {
    int HS = C / NH, extra_keys = planted == PLANTED_MASK ? 1 : 0;
    double scale = 1.0 / sqrt((double)HS);
    size_t C3 = 3 * (size_t)C;
    double *grad = (double *)calloc((size_t)B * T * C3, sizeof(double));
    double *p = (double *)malloc_check((size_t)T * sizeof(double), "attention row");
    double *colsum = (double *)malloc_check((size_t)T * sizeof(double), "column sums");
    if (grad == NULL) fatal("attention_backward_cpu: out of memory");
    BackwardMagnitudes m = {0.0, 0.0, 0.0};
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int j = 0; j < T; j++) colsum[j] = 0.0;
            for (int t = 0; t < T; t++) {
                attention_row_cpu(p, qkv, b, h, t, T, C, NH, extra_keys);
                int last = t + extra_keys < T ? t + extra_keys : T - 1;
                const float *dy = dout + ((size_t)b * T + t) * C + (size_t)h * HS;
                const float *y = out + ((size_t)b * T + t) * C + (size_t)h * HS;
                const float *q = qkv + ((size_t)b * T + t) * C3 + (size_t)h * HS;
                double *dq = grad + ((size_t)b * T + t) * C3 + (size_t)h * HS;
                double dsum = 0.0;
                if (planted != PLANTED_NO_DSUM) {
                    for (int d = 0; d < HS; d++) dsum += (double)dy[d] * y[d];
                }
                for (int j = 0; j <= last; j++) {
                    const float *k = qkv + ((size_t)b * T + j) * C3 + C + (size_t)h * HS;
                    const float *v = k + C;
                    double *dk = grad + ((size_t)b * T + j) * C3 + C + (size_t)h * HS;
                    double *dv = dk + C;
                    double dp = 0.0;
                    for (int d = 0; d < HS; d++) dp += (double)dy[d] * v[d];
                    double ds = p[j] * (dp - dsum) * scale;
                    for (int d = 0; d < HS; d++) {
                        dq[d] += ds * k[d];
                        dk[d] += ds * q[d];
                        dv[d] += p[j] * dy[d];
                    }
                    colsum[j] += p[j];
                    m.dp = fmax(m.dp, fabs(dp));
                    m.dp_d = fmax(m.dp_d, fabs(dp - dsum));
                }
            }
            for (int j = 0; j < T; j++) m.colsum = fmax(m.colsum, colsum[j]);
        }
    }
    for (size_t i = 0; i < (size_t)B * T * C3; i++) dqkv[i] = (float)grad[i];
    if (magnitudes != NULL) *magnitudes = m;
    free(grad);
    free(p);
    free(colsum);
}

// dqkv (B,T,3C) -> a check per part named in parts ("qkv": dq, dk, dv), each over B*T*C elements.
// planted: the same bounds must fail somewhere on it.
static int check_dqkv(const char *label, const char *parts, int planted, const float *dqkv,
                      const float *ref, int B, int T, int C, const BackwardBounds *bounds) {
    size_t BTC = (size_t)B * T * C;
    float *got = (float *)malloc_check(BTC * sizeof(float), "got");
    float *want = (float *)malloc_check(BTC * sizeof(float), "want");
    const double atol[3] = {bounds->dq_atol, bounds->dk_atol, bounds->dv_atol};
    const char *names[3] = {"dq", "dk", "dv"};
    int ok = 1;
    for (int which = 0; which < 3; which++) {
        if (strchr(parts, "qkv"[which]) == NULL) continue;
        for (size_t row = 0; row < (size_t)B * T; row++) {
            for (int c = 0; c < C; c++) {
                got[row * C + c] = dqkv[row * 3 * C + (size_t)which * C + c];
                want[row * C + c] = ref[row * 3 * C + (size_t)which * C + c];
            }
        }
        char name[64];
        snprintf(name, sizeof(name), "%s%s", names[which], label);
        if (planted) {
            ok &= check_catches(name, got, want, BTC, (float)atol[which], (float)bounds->rtol);
        } else {
            ok &= check_close(name, got, want, BTC, (float)atol[which], (float)bounds->rtol);
        }
    }
    free(got);
    free(want);
    return ok;
}

// Checks both versions at one shape; returns 1 when everything passed.
static int check_shape(AttentionShape shape) {
    int B = shape.B, T = shape.T, NH = shape.NH, HS = shape.HS, C = NH * HS;
    size_t BT = (size_t)B * T, BTC = BT * C, BNHT = BT * NH;
    printf("B=%d T=%d NH=%d HS=%d:\n", B, T, NH, HS);
    float *qkv = (float *)malloc_check(3 * BTC * sizeof(float), "qkv");
    float *dout = (float *)malloc_check(BTC * sizeof(float), "dout");
    fill_uniform(qkv, 3 * BTC, -1.0f, 1.0f, 21 + T);
    fill_uniform(dout, BTC, -1.0f, 1.0f, 31 + T);
    round_to_floatX(qkv, 3 * BTC);
    round_to_floatX(dout, BTC);
    // forward's results as the flash kernels keep them: out in floatX, lse in fp32
    float *out = (float *)malloc_check(BTC * sizeof(float), "out");
    float *lse = (float *)malloc_check(BNHT * sizeof(float), "lse");
    attention_forward_cpu(out, lse, qkv, B, T, C, NH, 0);
    round_to_floatX(out, BTC);
    float *dqkv_ref = (float *)malloc_check(3 * BTC * sizeof(float), "dqkv_ref");
    float *no_dsum = (float *)malloc_check(3 * BTC * sizeof(float), "dqkv without D");
    float *shifted_mask = (float *)malloc_check(3 * BTC * sizeof(float), "dqkv mask off by one");
    BackwardMagnitudes magnitudes;
    attention_backward_cpu(dqkv_ref, &magnitudes, dout, out, qkv, B, T, C, NH, PLANTED_NONE);
    attention_backward_cpu(no_dsum, NULL, dout, out, qkv, B, T, C, NH, PLANTED_NO_DSUM);
    attention_backward_cpu(shifted_mask, NULL, dout, out, qkv, B, T, C, NH, PLANTED_MASK);
    round_to_floatX(no_dsum, 3 * BTC);
    round_to_floatX(shifted_mask, 3 * BTC);

    AttentionBuffers d = attention_buffers_alloc(shape, 1);
    copy_to_floatX(d.qkv, qkv, 3 * BTC);
    copy_to_floatX(d.dout, dout, BTC);
    copy_to_floatX(d.out, out, BTC);
    cuda_check(cudaMemcpy(d.lse, lse, BNHT * sizeof(float), cudaMemcpyHostToDevice));
    int all_ok = 1;
    for (int version = 1; version <= ATTENTION_VERSIONS; version++) {
        if (!attention_version_runs(version, HS)) continue;
        // cuDNN (version 3) rounds P and dS to bf16 for its tensor-core products, as version 1
        // stores att and datt: version 1's bounds and planted checks
        int materialised = version != 2;
        BackwardBounds bounds = attention_backward_bounds(T, HS, &magnitudes, materialised);
        printf(" version %d%s:\n", version, attention_version_name(version));
        if (version == 1) {
            attention_forward_materialised(d.y, d.qkvr, d.att, d.scratch, d.qkv, B, T, C, NH, 0);
            attention_backward_materialised(d.dqkv, d.dqkvr, d.datt, d.scratch, d.dout, d.qkvr,
                                            d.att, B, T, C, NH, 0);
        } else if (version == 2) {
            attention_backward_flash(d.dqkv, d.dsum, d.dout, d.out, d.qkv, d.lse, B, T, C, NH, 0);
        } else {
            attention_backward_version3(d.dqkv, d.dout, d.out, d.qkv, d.lse, B, T, NH, HS);
        }
        cuda_check(cudaDeviceSynchronize());
        float *dqkv = download_to_floats(d.dqkv, 3 * BTC);
        all_ok &= check_dqkv("", "qkv", 0, dqkv, dqkv_ref, B, T, C, &bounds);
        // dv does not depend on D; at T = 1 the shifted mask changes nothing. Version 1's dk
        // bound (its worst case times the largest column sum, which key 0 alone reaches) is far
        // above its errors in BF16, so these bugs pass it: only its dq and dv are planted-checked.
        all_ok &= check_dqkv(", D dropped", materialised ? "q" : "qk", 1, no_dsum, dqkv_ref, B, T,
                             C, &bounds);
        if (T > 1) {
            all_ok &= check_dqkv(", mask off by one", materialised ? "qv" : "qkv", 1, shifted_mask,
                                 dqkv_ref, B, T, C, &bounds);
        }
        free(dqkv);
    }
    attention_buffers_free(&d);
    free(qkv);
    free(dout);
    free(out);
    free(lse);
    free(dqkv_ref);
    free(no_dsum);
    free(shifted_mask);
    return all_ok;
}

int main(void) {
    int all_ok = attention_check_shapes("attention_backward", check_shape);
    // LLMC_DEV_CHECK_ONLY=1 (under compute-sanitizer): the checks without the timed runs
    if (getenv("LLMC_DEV_CHECK_ONLY") != NULL) {
        printf("%s\n", all_ok ? "PASS" : "FAIL");
        return all_ok ? 0 : 1;
    }
    AttentionShape timed = attention_timed_shape();
    int B = timed.B, T = timed.T, NH = timed.NH, HS = timed.HS, C = NH * HS;
    int repeats = DEV_EMULATED ? 1 : 20;
    size_t BTC = (size_t)B * T * C, BNHT = (size_t)B * NH * T;
    AttentionBuffers d = attention_buffers_alloc(timed, 1);
    // forward once, for version 1's att and version 2's out and lse
    attention_forward_materialised(d.out, d.qkvr, d.att, d.scratch, d.qkv, B, T, C, NH, 0);
    attention_forward_flash(d.out, d.lse, d.qkv, B, T, C, NH, 0);
    printf("timing, B=%d T=%d NH=%d HS=%d (%d repeats; GB/s of each version's own traffic; causal "
           "useful FLOPs 5 B NH T^2 HS, %.1f GFLOP; the kernels do 7, scores and dP twice):\n",
           B, T, NH, HS, repeats, 5.0 * BNHT * T * HS / 1e9);
    double X = sizeof(floatX);
    // version 1: unpermute (2BTC), the matmuls read att twice and write/read datt (4 B NH T^2),
    // softmax backward reads att and r+w datt (3 B NH T^2), q k v dy read, dq dk dv written,
    // permuted (6BTC)
    double bytes_v1 = (2.0 * BTC + 7.0 * BNHT * T + 4.0 * BTC + 3.0 * BTC + 6.0 * BTC) * X;
    double bytes_v2 = (3.0 * BTC + 2.0 * BTC + 3.0 * BTC) * X + 2.0 * BNHT * sizeof(float);
    float ms1 = time_ms(
        [&]() {
            attention_backward_materialised(d.dqkv, d.dqkvr, d.datt, d.scratch, d.dout, d.qkvr,
                                            d.att, B, T, C, NH, 0);
        },
        repeats);
    report_bandwidth("version 1 (materialising)", ms1, bytes_v1);
    float ms2 = time_ms(
        [&]() {
            attention_backward_flash(d.dqkv, d.dsum, d.dout, d.out, d.qkv, d.lse, B, T, C, NH, 0);
        },
        repeats);
    report_bandwidth("version 2 (flash)", ms2, bytes_v2);
    printf("  version 2: %.1f TFLOP/s (5 B NH T^2 HS)%s\n",
           5.0 * BNHT * T * HS / (ms2 * 1e-3) / 1e12,
           DEV_EMULATED ? " (emulated: not a GPU time)" : "");
    if (attention_version_runs(3, HS)) {
        float ms3 = time_ms(
            [&]() {
                attention_backward_version3(d.dqkv, d.dout, d.out, d.qkv, d.lse, B, T, NH, HS);
            },
            repeats);
        report_bandwidth("version 3 (cuDNN)", ms3, bytes_v2);
        printf("  version 3: %.1f TFLOP/s (5 B NH T^2 HS)%s\n",
               5.0 * BNHT * T * HS / (ms3 * 1e-3) / 1e12,
               DEV_EMULATED ? " (emulated: the stand-in on the CPU, not cuDNN)" : "");
    }
    attention_buffers_free(&d);
    printf("%s\n", all_ok ? "PASS" : "FAIL");
    return all_ok ? 0 : 1;
}
