/*
Rotary position embeddings (llmc/rope.cuh), forward and backward, in place on the q and k heads of
the qkv activation (B, T, (NH + 2 KV) HS), with the cos/sin table of llmc/rope_table.h. Checked
against a CPU reference in double over the whole buffer (v must keep its values), at GQA and
GPT-2-like (KV = NH) shapes, an odd T, HS/2 not a multiple of the 16-byte pack, and a pointer one
element off 16-byte alignment (the element-by-element fallback).

  make build/cuda_emu/dev/rope   (CPU emulation; tests/cuda_emu/run.sh runs it)
  make dev_cuda && ./build/cuda/nvcc-dev/rope   (on a GPU)
  LLMC_DEV_CHECK_ONLY=1: the checks without the timed runs

Tolerances (u = 2^-24, U_store the unit roundoff of floatX):
  table: each entry is cos or sin of an angle computed in double (relative error 2^-52, so at
      positions < 2^20 an absolute error below 2^-31) rounded once to float: within 2u of the
      exact value (|cos|, |sin| <= 1).
  rotation: a c - b s with the table's c, s: two products and a subtraction in fp32, within
      2u (|a c| + |b s|) (less with FMA); the store adds U_store |result| and the reference's own
      rounding to float u |result|: atol = 2.02 u max(|a c| + |b s|), rtol = U_store + u.
Results with known bugs must fail the same tolerances (the planted-error lines): the interleaved
pairs (2i, 2i + 1) of GPT-J instead of the half split, positions off by one, v rotated too,
backward rotating forward again; and a table built with theta^(-i/HS).
*/
#include "dev_common.cuh"

#include "../../llmc/rope.cuh"

#ifdef ENABLE_FP32
#define U_STORE U_FP32
#else
#define U_STORE U_BF16
#endif

enum { PLANT_NONE, PLANT_INTERLEAVED, PLANT_POSITION, PLANT_V, PLANT_DIRECTION };

// The reference in double: every q and k head of qkv (rows of (NH + 2 KV) HS) rotated by the
// table's values; direction 1 forward, -1 backward. *scale gets max(|a c| + |b s|).
static void rope_cpu(float *out, const float *qkv, const float *table, int B, int T, int NH, int KV,
                     int HS, int direction, int planted, double *scale) {
    size_t row_len = (size_t)(NH + 2 * KV) * HS, n = (size_t)B * T * row_len;
    memcpy(out, qkv, n * sizeof(float));
    int half = HS / 2, heads = planted == PLANT_V ? NH + 2 * KV : NH + KV;
    double largest = 0.0;
    for (int row = 0; row < B * T; row++) {
        int pos = row % T + (planted == PLANT_POSITION ? 1 : 0);
        for (int h = 0; h < heads; h++) {
            const float *x = qkv + row * row_len + (size_t)h * HS;
            float *y = out + row * row_len + (size_t)h * HS;
            for (int i = 0; i < half; i++) {
                double c = table[(size_t)pos * HS + i], s = table[(size_t)pos * HS + half + i];
                if (direction < 0 && planted != PLANT_DIRECTION) s = -s;
                int first = i, second = half + i;
                if (planted == PLANT_INTERLEAVED) first = 2 * i, second = 2 * i + 1;
                double a = x[first], b = x[second];
                y[first] = (float)(a * c - b * s);
                y[second] = (float)(b * c + a * s);
                largest = fmax(largest, fmax(fabs(a * c) + fabs(b * s), fabs(b * c) + fabs(a * s)));
            }
        }
    }
    if (scale != NULL) *scale = largest;
}

static int check_table(int maxT, int HS, double theta) {
    size_t n = (size_t)maxT * HS;
    float *table = (float *)malloc_check(n * sizeof(float), "table");
    float *exact = (float *)malloc_check(n * sizeof(float), "exact");
    float *bug = (float *)malloc_check(n * sizeof(float), "bug");
    rope_table_init(table, maxT, HS, theta);
    int half = HS / 2;
    for (int pos = 0; pos < maxT; pos++) {
        for (int i = 0; i < half; i++) {
            // the spec's angle, written independently of rope_table_init
            double angle = pos * exp(-2.0 * i / HS * log(theta));
            exact[(size_t)pos * HS + i] = (float)cos(angle);
            exact[(size_t)pos * HS + half + i] = (float)sin(angle);
            double wrong = pos * exp(-1.0 * i / HS * log(theta));
            bug[(size_t)pos * HS + i] = (float)cos(wrong);
            bug[(size_t)pos * HS + half + i] = (float)sin(wrong);
        }
    }
    printf("table: maxT=%d HS=%d theta=%g\n", maxT, HS, theta);
    int ok = check_close("table", table, exact, n, (float)(2 * U_FP32), 0.0f);
    ok &= check_catches("table with theta^(-i/HS)", bug, exact, n, (float)(2 * U_FP32), 0.0f);
    free(table);
    free(exact);
    free(bug);
    return ok;
}

typedef struct {
    int B, T, NH, KV, HS, offset; // offset: elements past the allocation's start (alignment)
} RopeShape;

static int check_shape(RopeShape sh, int repeats) {
    int B = sh.B, T = sh.T, NH = sh.NH, KV = sh.KV, HS = sh.HS;
    size_t n = (size_t)B * T * (NH + 2 * KV) * HS;
    int maxT = T + 5; // more rows than used: the table is indexed by position, HS floats apart
    printf("B=%d T=%d NH=%d KV=%d HS=%d%s:\n", B, T, NH, KV, HS,
           sh.offset ? " (qkv one element off 16-byte alignment)" : "");
    float *qkv = (float *)malloc_check(n * sizeof(float), "qkv");
    fill_uniform(qkv, n, -2.0f, 2.0f, 91 + T + HS);
    round_to_floatX(qkv, n);
    float *table = (float *)malloc_check((size_t)maxT * HS * sizeof(float), "table");
    rope_table_init(table, maxT, HS, 10000.0);
    float *ref = (float *)malloc_check(n * sizeof(float), "ref");
    float *bug = (float *)malloc_check(n * sizeof(float), "bug");
    floatX *d_base = (floatX *)cuda_malloc_check((n + 1) * sizeof(floatX), "qkv");
    floatX *d_qkv = d_base + sh.offset;
    float *d_table = rope_table_upload(maxT, HS, 10000.0);
    int all_ok = 1;
    for (int direction = 1; direction >= -1; direction -= 2) {
        double scale = 0.0;
        rope_cpu(ref, qkv, table, B, T, NH, KV, HS, direction, PLANT_NONE, &scale);
        float atol = (float)(2.02 * U_FP32 * scale), rtol = (float)(U_STORE + U_FP32);
        copy_to_floatX(d_qkv, qkv, n);
        if (direction > 0) {
            rope_forward(d_qkv, d_table, B, T, NH, KV, HS, 0);
        } else {
            rope_backward(d_qkv, d_table, B, T, NH, KV, HS, 0);
        }
        cuda_check(cudaDeviceSynchronize());
        float *got = download_to_floats(d_qkv, n);
        all_ok &= check_close(direction > 0 ? "forward" : "backward", got, ref, n, atol, rtol);
        free(got);
        int plants[] = {PLANT_INTERLEAVED, PLANT_POSITION, PLANT_V, PLANT_DIRECTION};
        const char *names[] = {"interleaved pairs", "positions off by one", "v rotated too",
                               "backward rotating forward"};
        for (int p = 0; p < 4; p++) {
            if (plants[p] == PLANT_DIRECTION && direction > 0) continue;
            rope_cpu(bug, qkv, table, B, T, NH, KV, HS, direction, plants[p], NULL);
            round_to_floatX(bug, n);
            all_ok &= check_catches(names[p], bug, ref, n, atol, rtol);
        }
    }
    if (repeats > 0) {
        // q and k read and written; v untouched; the table from L2
        double bytes = 2.0 * B * T * (NH + KV) * HS * sizeof(floatX);
        float ms = time_ms([&]() { rope_forward(d_qkv, d_table, B, T, NH, KV, HS, 0); }, repeats);
        report_bandwidth("rope_forward", ms, bytes);
        ms = time_ms([&]() { rope_backward(d_qkv, d_table, B, T, NH, KV, HS, 0); }, repeats);
        report_bandwidth("rope_backward", ms, bytes);
    }
    cuda_check(cudaFree(d_base));
    cuda_check(cudaFree(d_table));
    free(qkv);
    free(table);
    free(ref);
    free(bug);
    return all_ok;
}

int main(void) {
    cudaDeviceProp props;
    cuda_check(cudaGetDeviceProperties(&props, 0));
    printf("rope: %s, device %s\n", PRECISION_NAME, props.name);
    int timed = getenv("LLMC_DEV_CHECK_ONLY") == NULL;
    int repeats = DEV_EMULATED ? 1 : 50;
    int all_ok = check_table(4096, 64, 10000.0);
    all_ok &= check_table(64, 18, 500000.0);
    // emulated: small GQA and KV = NH heads; HS = 16 (one bf16 pack per half), 18 (none), 64;
    // on a GPU the timed shape is a d12 llama with KV = 4 at B = 16, T = 1024
    RopeShape shapes[] = {
        {2, 37, 4, 2, 16, 0},
        {2, 37, 4, 4, 16, 0},
        {1, 33, 4, 2, 18, 0},
        {2, 21, 2, 1, 64, 0},
        {2, 37, 4, 2, 16, 1},
        {DEV_EMULATED ? 1 : 16, DEV_EMULATED ? 64 : 1024, DEV_EMULATED ? 4 : 12,
         DEV_EMULATED ? 2 : 4, 64, 0},
    };
    int count = (int)(sizeof(shapes) / sizeof(shapes[0]));
    for (int i = 0; i < count; i++) {
        all_ok &= check_shape(shapes[i], timed && i == count - 1 ? repeats : 0);
    }
    printf("%s\n", all_ok ? "PASS" : "FAIL");
    return all_ok ? 0 : 1;
}
