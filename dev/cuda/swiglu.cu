/*
SwiGLU forward and backward (llmc/swiglu.cuh): out (N, F) = silu(gate) * up from inp (N, 2F) =
[gate | up]; backward writes dinp (N, 2F). Checked against a CPU reference in double at an odd N,
F a multiple of the 16-byte pack and not, and pointers one element off 16-byte alignment (the
element-by-element fallback); gates in [-6, 6] cover both tails of the sigmoid.

  make build/cuda_emu/dev/swiglu   (CPU emulation; tests/cuda_emu/run.sh runs it)
  make dev_cuda && ./build/cuda/nvcc-dev/swiglu   (on a GPU)
  LLMC_DEV_CHECK_ONLY=1: the checks without the timed runs

Tolerances (u = 2^-24; CUDA's expf is within 2 ulp, <= 4u relative; division correctly rounded):
  sig = 1 / (1 + expf(-g)): 1 + e within 5u relative (e's 4u scaled by e / (1 + e) <= 1, the
      add u), the division u: sig within 6u; silu = g sig within 7u; y = silu up within 8u, and
      dup = dout (g sig) too. The store adds U_store |y| and the reference's rounding to float u.
  dgate = dout up Q, Q = sig (1 + g (1 - sig)) (which crosses 0 near g = -1.28, so not relative):
      1 - sig within 6u sig + u |1 - sig|, times g and + 1: |g| (6u sig + 2u (1 - sig)) + u |1 +
      g (1 - sig)| <= 6u |g| + u |...|; times sig (7u): err(Q) <= 6u sig |g| + 8u |Q|; times
      dout and up (2u): |dout up| (6u sig |g|) absolute + 10u |dgate| relative.
Results with known bugs must fail the same tolerances (the planted-error lines): gate and up
swapped, silu without its factor g (plain sigmoid), and dgate without the g (1 - sig) term.
*/
#include "dev_common.cuh"

#include "../../llmc/swiglu.cuh"

#ifdef ENABLE_FP32
#define U_STORE U_FP32
#else
#define U_STORE U_BF16
#endif

enum { PLANT_NONE, PLANT_SWAPPED, PLANT_NO_G, PLANT_DGATE };

static double sigmoid(double g) {
    return 1.0 / (1.0 + exp(-g));
}

// out (N, F) and dinp (N, 2F) in double, rounded to float; *dgate_atol: the absolute part of
// dgate's bound (see the header).
static void swiglu_cpu(float *out, float *dinp, const float *inp, const float *dout, int N, int F,
                       int planted, double *dgate_atol) {
    double atol = 0.0;
    for (int n = 0; n < N; n++) {
        for (int f = 0; f < F; f++) {
            double g = inp[(size_t)n * 2 * F + f], up = inp[(size_t)n * 2 * F + F + f];
            if (planted == PLANT_SWAPPED) {
                double t = g;
                g = up;
                up = t;
            }
            double sig = sigmoid(g), dy = dout[(size_t)n * F + f];
            double silu = planted == PLANT_NO_G ? sig : g * sig;
            double q = planted == PLANT_DGATE ? sig : sig * (1.0 + g * (1.0 - sig));
            out[(size_t)n * F + f] = (float)(silu * up);
            dinp[(size_t)n * 2 * F + f] = (float)(dy * up * q);
            dinp[(size_t)n * 2 * F + F + f] = (float)(dy * silu);
            atol = fmax(atol, fabs(dy * up) * 6 * U_FP32 * sig * fabs(g));
        }
    }
    if (dgate_atol != NULL) *dgate_atol = atol;
}

typedef struct {
    int N, F, offset; // offset: elements past each allocation's start (alignment)
} SwigluShape;

static int check_shape(SwigluShape sh, int repeats) {
    int N = sh.N, F = sh.F;
    size_t n_in = (size_t)N * 2 * F, n_out = (size_t)N * F;
    printf("N=%d F=%d%s:\n", N, F, sh.offset ? " (pointers one element off alignment)" : "");
    float *inp = (float *)malloc_check(n_in * sizeof(float), "inp");
    float *dout = (float *)malloc_check(n_out * sizeof(float), "dout");
    for (int n = 0; n < N; n++) {
        fill_uniform(inp + (size_t)n * 2 * F, (size_t)F, -6.0f, 6.0f, 101 + n);
        fill_uniform(inp + (size_t)n * 2 * F + F, (size_t)F, -2.0f, 2.0f, 1101 + n);
    }
    fill_uniform(dout, n_out, -1.0f, 1.0f, 102);
    round_to_floatX(inp, n_in);
    round_to_floatX(dout, n_out);
    float *out_ref = (float *)malloc_check(n_out * sizeof(float), "out_ref");
    float *dinp_ref = (float *)malloc_check(n_in * sizeof(float), "dinp_ref");
    float *out_bug = (float *)malloc_check(n_out * sizeof(float), "out_bug");
    float *dinp_bug = (float *)malloc_check(n_in * sizeof(float), "dinp_bug");
    double dgate_atol = 0.0;
    swiglu_cpu(out_ref, dinp_ref, inp, dout, N, F, PLANT_NONE, &dgate_atol);
    const double u = U_FP32;
    const float out_rtol = (float)(1.01 * (8 * u + U_STORE + u));
    const float dinp_rtol = (float)(1.01 * (10 * u + U_STORE + u));
    const float dinp_atol = (float)(1.01 * dgate_atol);
    floatX *d_inp_base = (floatX *)cuda_malloc_check((n_in + 1) * sizeof(floatX), "inp");
    floatX *d_dout_base = (floatX *)cuda_malloc_check((n_out + 1) * sizeof(floatX), "dout");
    floatX *d_out_base = (floatX *)cuda_malloc_check((n_out + 1) * sizeof(floatX), "out");
    floatX *d_dinp_base = (floatX *)cuda_malloc_check((n_in + 1) * sizeof(floatX), "dinp");
    floatX *d_inp = d_inp_base + sh.offset, *d_dout = d_dout_base + sh.offset;
    floatX *d_out = d_out_base + sh.offset, *d_dinp = d_dinp_base + sh.offset;
    copy_to_floatX(d_inp, inp, n_in);
    copy_to_floatX(d_dout, dout, n_out);
    int packed = swiglu_packed(F, d_out, d_inp, NULL);
    int all_ok = 1;
    // the wrappers, then (when they used packs) the kernels element by element
    for (int version = 0; version <= packed; version++) {
        printf(" %s:\n", version == 1 ? "the kernels element by element"
                         : packed     ? "swiglu_forward/backward (16-byte packs)"
                                      : "swiglu_forward/backward (element by element)");
        if (version == 0) {
            swiglu_forward(d_out, d_inp, N, F, 0);
            swiglu_backward(d_dinp, d_inp, d_dout, N, F, 0);
        } else {
            int blocks = ceil_div((long long)N * ceil_div(F, x128::size), 256);
            LLMC_LAUNCH(swiglu_forward_kernel, blocks, 256, 0, 0)(d_out, d_inp, N, F, 0);
            LLMC_LAUNCH(swiglu_backward_kernel, blocks, 256, 0, 0)(d_dinp, d_inp, d_dout, N, F, 0);
            cuda_check(cudaGetLastError());
        }
        cuda_check(cudaDeviceSynchronize());
        float *got_out = download_to_floats(d_out, n_out);
        float *got_dinp = download_to_floats(d_dinp, n_in);
        all_ok &= check_close("out", got_out, out_ref, n_out, 0.0f, out_rtol);
        all_ok &= check_close("dinp", got_dinp, dinp_ref, n_in, dinp_atol, dinp_rtol);
        free(got_out);
        free(got_dinp);
    }
    int plants[] = {PLANT_SWAPPED, PLANT_NO_G, PLANT_DGATE};
    const char *names[] = {"gate and up swapped", "silu without g", "dgate without g (1 - sig)"};
    for (int p = 0; p < 3; p++) {
        swiglu_cpu(out_bug, dinp_bug, inp, dout, N, F, plants[p], NULL);
        round_to_floatX(out_bug, n_out);
        round_to_floatX(dinp_bug, n_in);
        char label[64];
        if (plants[p] != PLANT_DGATE) {
            snprintf(label, sizeof(label), "out, %s", names[p]);
            all_ok &= check_catches(label, out_bug, out_ref, n_out, 0.0f, out_rtol);
        }
        snprintf(label, sizeof(label), "dinp, %s", names[p]);
        all_ok &= check_catches(label, dinp_bug, dinp_ref, n_in, dinp_atol, dinp_rtol);
    }
    if (repeats > 0) {
        double X = sizeof(floatX);
        float ms = time_ms([&]() { swiglu_forward(d_out, d_inp, N, F, 0); }, repeats);
        report_bandwidth("swiglu_forward", ms, 3.0 * n_out * X);
        ms = time_ms([&]() { swiglu_backward(d_dinp, d_inp, d_dout, N, F, 0); }, repeats);
        report_bandwidth("swiglu_backward", ms, 5.0 * n_out * X);
    }
    cuda_check(cudaFree(d_inp_base));
    cuda_check(cudaFree(d_dout_base));
    cuda_check(cudaFree(d_out_base));
    cuda_check(cudaFree(d_dinp_base));
    free(inp);
    free(dout);
    free(out_ref);
    free(dinp_ref);
    free(out_bug);
    free(dinp_bug);
    return all_ok;
}

int main(void) {
    cudaDeviceProp props;
    cuda_check(cudaGetDeviceProperties(&props, 0));
    printf("swiglu: %s, device %s\n", PRECISION_NAME, props.name);
    int timed = getenv("LLMC_DEV_CHECK_ONLY") == NULL;
    int repeats = DEV_EMULATED ? 1 : 50;
    // emulated: odd N; F = 64 (packs), 100 (not a bf16 pack multiple), 64 off alignment; on a
    // GPU the timed shape is a d12 llama's (ffn 2048) at B*T = 16384
    SwigluShape shapes[] = {
        {37, 64, 0},
        {37, 100, 0},
        {37, 64, 1},
        {DEV_EMULATED ? 64 : 16 * 1024, DEV_EMULATED ? 256 : 2048, 0},
    };
    int count = (int)(sizeof(shapes) / sizeof(shapes[0]));
    int all_ok = 1;
    for (int i = 0; i < count; i++) {
        all_ok &= check_shape(shapes[i], timed && i == count - 1 ? repeats : 0);
    }
    printf("%s\n", all_ok ? "PASS" : "FAIL");
    return all_ok ? 0 : 1;
}
