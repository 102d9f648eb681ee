/*
Unit checks of SFT training and generation on random models (no reference files needed):
  - the KV cache's matvec_forward sums in its documented order (bit for bit, any thread count, odd
    shapes) and equals a double-precision matvec to rounding;
  - the KV-cache path (llmc/kv_cache.h) gives the full forward's logits at every position;
  - a row whose targets are all masked contributes exactly nothing: the gradients of a batch with
    it equal those of the batch without it;
  - two micro-batches normalised by the step's total equal one batch holding both rows;
  - growing V for the chat tokens sets unused rows to the mean embedding and keeps used ones.
Prints "ok - ..." / "FAIL - ..." per check and "N passed, N failed"; exits 1 on any failure.
*/
#define TESTING
#include "../train_gpt2.c"

// after the trainer: it runs the trainer's layer functions
#include "../llmc/kv_cache.h"

static int passed = 0, failed = 0;

static void check(int ok, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *format, ...) {
    va_list args;
    va_start(args, format);
    printf("%s - ", ok ? "ok" : "FAIL");
    vprintf(format, args);
    printf("\n");
    va_end(args);
    if (ok) {
        passed++;
    } else {
        failed++;
    }
}

// max |a - b| / (atol + max |b|) over n values: below 1 means "equal to tolerance".
static double max_relative_error(const float *a, const float *b, size_t n, double *max_abs) {
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= worst)) worst = d;
        if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
    }
    *max_abs = worst;
    return scale > 0 ? worst / scale : worst;
}

static void random_tokens(int *tokens, int n, int V, uint64_t *state) {
    for (int i = 0; i < n; i++) tokens[i] = (int)(xorshift_f32(state) * (float)V) % V;
}

static void test_kv_cache(const char *descriptor, int T) {
    GPT2 model;
    gpt2_build(&model, descriptor, 7);
    int V = model.config.vocab_size, Vp = model.config.padded_vocab_size;
    int *tokens = (int *)malloc_check((size_t)T * sizeof(int), "tokens");
    uint64_t rng = 1234;
    random_tokens(tokens, T, V, &rng);
    gpt2_forward(&model, tokens, NULL, 1, T);
    KVCache cache;
    kv_cache_init(&cache, &model.config, T);
    double worst = 0.0, worst_abs = 0.0;
    for (int t = 0; t < T; t++) {
        const float *logits = gpt2_forward_next(&model, &cache, tokens[t]);
        double abs_error;
        double rel =
            max_relative_error(logits, model.acts.logits + (size_t)t * Vp, (size_t)V, &abs_error);
        if (rel > worst) worst = rel;
        if (abs_error > worst_abs) worst_abs = abs_error;
    }
    // Every matmul differs in order: the full forward's sgemm adds the C products to the bias in
    // sequence (FMA or not), the cache's matvec_forward sums them in 16 lanes (its comment) and
    // adds the bias last. Different orders of C-term sums: sqrt(C) u sum|terms| per output; for the
    // logits (C = 128 or 96, |lnf| ~ 1, |wte| ~ 0.02: sum|lnf wte| ~ 1.6) ~1.1e-6, and the layers
    // before add relative errors of the same size (each layernorm rescales them): ~3e-6. 1e-5; a
    // wrong position, key or value moves logits by > 1e-2.
    check(worst_abs <= 1e-5,
          "kv cache %s: logits of %d one-token steps equal the full forward's (max |diff| %.2e, "
          "relative %.2e, tolerance 1e-5)",
          descriptor, T, worst_abs, worst);
    // after a reset the cache gives the same logits again (no state left behind)
    kv_cache_reset(&cache);
    const float *first = gpt2_forward_next(&model, &cache, tokens[0]);
    double abs_error;
    max_relative_error(first, model.acts.logits, (size_t)V, &abs_error);
    // position 0 again: the same orders of summation as above, so the same bound
    check(abs_error <= 1e-5, "kv cache %s: a reset cache starts over (max |diff| %.2e)", descriptor,
          abs_error);
    kv_cache_free(&cache);
    free(tokens);
    gpt2_free(&model);
}

// matvec_forward's documented order, written out one product at a time (kv_cache.h)
static float matvec_row_in_documented_order(const float *inp, const float *w, float bias, int C) {
    float lanes[MATVEC_LANES] = {0};
    int C16 = C - C % MATVEC_LANES;
    for (int i = 0; i < C16; i++) lanes[i % MATVEC_LANES] += inp[i] * w[i];
    for (int width = MATVEC_LANES / 2; width >= 1; width /= 2) {
        for (int k = 0; k < width; k++) lanes[k] += lanes[k + width];
    }
    float sum = lanes[0];
    for (int i = C16; i < C; i++) sum += inp[i] * w[i];
    return sum + bias;
}

// max over outputs of |out - exact| / bound, bound = (C + 1) u (sum |inp w| + |bias|): any order of
// C + 1 float additions of the rounded products is within that (Higham's gamma_n, n u < 0.01).
static double matvec_error_over_bound(const float *out, const float *inp, const float *w,
                                      const float *bias, int C, int OC) {
    double worst = 0.0;
    for (int o = 0; o < OC; o++) {
        double exact = bias[o], magnitude = fabs((double)bias[o]);
        for (int i = 0; i < C; i++) {
            exact += (double)inp[i] * w[(size_t)o * C + i];
            magnitude += fabs((double)inp[i] * w[(size_t)o * C + i]);
        }
        double bound = (C + 1) * ldexp(1.0, -24) * magnitude;
        double ratio = fabs(out[o] - exact) / bound;
        if (!(ratio <= worst)) worst = ratio;
    }
    return worst;
}

static void test_matvec(void) {
    // C: a multiple of 16, with a remainder, under 16; OC: whole blocks of 4 and a short last one
    const int shapes[][2] = {{768, 13}, {37, 10}, {5, 3}, {96, 4}};
#ifdef _OPENMP
    int max_threads = omp_get_max_threads();
#endif
    uint64_t rng = 4242;
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int C = shapes[s][0], OC = shapes[s][1];
        float *inp = (float *)malloc_check((size_t)C * sizeof(float), "matvec inp");
        float *w = (float *)malloc_check((size_t)OC * C * sizeof(float), "matvec w");
        float *bias = (float *)malloc_check((size_t)OC * sizeof(float), "matvec bias");
        float *out = (float *)malloc_check((size_t)OC * sizeof(float), "matvec out");
        float *out_threads = (float *)malloc_check((size_t)OC * sizeof(float), "matvec out");
        float *expected = (float *)malloc_check((size_t)OC * sizeof(float), "matvec expected");
        for (int i = 0; i < C; i++) inp[i] = 2.0f * xorshift_f32(&rng) - 1.0f;
        for (size_t i = 0; i < (size_t)OC * C; i++) w[i] = 2.0f * xorshift_f32(&rng) - 1.0f;
        for (int o = 0; o < OC; o++) bias[o] = 2.0f * xorshift_f32(&rng) - 1.0f;
#ifdef _OPENMP
        omp_set_num_threads(1);
#endif
        matvec_forward(out, inp, w, bias, C, OC);
#ifdef _OPENMP
        omp_set_num_threads(3); // a thread count that splits the blocks unevenly
#endif
        matvec_forward(out_threads, inp, w, bias, C, OC);
#ifdef _OPENMP
        omp_set_num_threads(max_threads);
#endif
        for (int o = 0; o < OC; o++) {
            expected[o] = matvec_row_in_documented_order(inp, w + (size_t)o * C, bias[o], C);
        }
        check(memcmp(out, expected, (size_t)OC * sizeof(float)) == 0 &&
                  memcmp(out_threads, expected, (size_t)OC * sizeof(float)) == 0,
              "matvec C=%d OC=%d: the documented order bit for bit, on 1 and 3 threads", C, OC);
        double ratio = matvec_error_over_bound(out, inp, w, bias, C, OC);
        check(ratio <= 1.0,
              "matvec C=%d OC=%d: equals the double matvec to rounding (error/bound %.2e)", C, OC,
              ratio);
        // planted error: the last row's weight at the largest |inp| (near 1 for uniform inputs) off
        // by 1 moves its output by about that, far above the bound ((C + 1)^2 u = 0.04 at C = 768)
        int j = 0;
        for (int i = 1; i < C; i++) j = fabsf(inp[i]) > fabsf(inp[j]) ? i : j;
        float *planted = w + (size_t)(OC - 1) * C + j, kept = *planted;
        *planted += 1.0f;
        matvec_forward(out, inp, w, bias, C, OC);
        *planted = kept;
        check(matvec_error_over_bound(out, inp, w, bias, C, OC) > 1.0,
              "matvec C=%d OC=%d: a planted weight error is caught", C, OC);
        free(inp), free(w), free(bias), free(out), free(out_threads), free(expected);
    }
}

// Gradients of the masked loss of (inputs, targets, mask) with B rows, normalised by normaliser.
static float *masked_grads(GPT2 *model, const int *inputs, const int *targets,
                           const unsigned char *mask, int B, int T, float normaliser) {
    gpt2_zero_grad(model);
    gpt2_forward_masked(model, inputs, targets, mask, B, T);
    gpt2_backward_normalised(model, normaliser);
    float *copy = (float *)malloc_check(model->num_parameters * sizeof(float), "grads copy");
    memcpy(copy, model->grads_memory, model->num_parameters * sizeof(float));
    return copy;
}

static void test_masked_rows(void) {
    const int B = 2, T = 24;
    GPT2 model;
    gpt2_build(&model, "L=2,C=64,NH=4,V=1000,maxT=64", 3);
    gpt2_allocate_activations(&model, B, T);
    int V = model.config.vocab_size;
    int inputs[2 * 24], targets[2 * 24];
    unsigned char mask[2 * 24];
    uint64_t rng = 99;
    random_tokens(inputs, B * T, V, &rng);
    random_tokens(targets, B * T, V, &rng);
    int trained = 0;
    for (int t = 0; t < T; t++) {
        mask[t] = (unsigned char)(t % 3 != 0); // row 0: two targets in three
        mask[T + t] = 0;                       // row 1: nothing trained
        trained += mask[t];
    }
    size_t n = model.num_parameters;
    float *both = masked_grads(&model, inputs, targets, mask, B, T, (float)trained);
    float loss_both = model.mean_loss;
    float *first = masked_grads(&model, inputs, targets, mask, 1, T, (float)trained);
    float loss_first = model.mean_loss;
    double abs_error;
    double rel = max_relative_error(both, first, n, &abs_error);
    // exact, whatever the sgemm kernel or thread count: row 1's gradients are exact zeros (0 * x),
    // and every parameter gradient adds its rows in the same order whatever B (sgemm: k = 0..K-1;
    // column sums: row by row), so B=2 only appends + 0 (or FMA with a 0 factor) to each sum
    check(rel == 0.0 && loss_both == loss_first,
          "a row with all targets masked adds zero gradient: grads of B=2 equal B=1 exactly "
          "(relative %.2e) and the loss is the same (%.6f, %.6f)",
          rel, loss_both, loss_first);
    // the masked row's own tokens: their wte rows get no classifier gradient from row 1. Changing
    // row 1's targets must not change any gradient.
    int targets_changed[2 * 24];
    memcpy(targets_changed, targets, sizeof(targets));
    for (int t = 0; t < T; t++) targets_changed[T + t] = (targets[T + t] + 1) % V;
    float *changed = masked_grads(&model, inputs, targets_changed, mask, B, T, (float)trained);
    int identical = memcmp(changed, both, n * sizeof(float)) == 0;
    check(identical, "the targets of a fully masked row do not change any gradient bit");
    // the test can fail: without the mask, row 1 does contribute
    float *unmasked = masked_grads(&model, inputs, targets, NULL, B, T, (float)trained);
    rel = max_relative_error(unmasked, both, n, &abs_error);
    // row 1's 24 targets are half of the batch's loss: an O(1) change, far above any rounding
    check(rel > 1e-3, "(control) without the mask the gradients differ (relative %.2e)", rel);

    // accumulation: rows as two micro-batches of B=1, each normalised by the step's total,
    // summed, equal one B=2 batch normalised by the same total
    for (int t = 0; t < T; t++) {
        mask[T + t] = (unsigned char)(t % 2);
        trained += mask[T + t];
    }
    float *whole = masked_grads(&model, inputs, targets, mask, B, T, (float)trained);
    gpt2_zero_grad(&model);
    for (int row = 0; row < B; row++) {
        gpt2_forward_masked(&model, inputs + row * T, targets + row * T, mask + row * T, 1, T);
        gpt2_backward_normalised(&model, (float)trained);
    }
    rel = max_relative_error(model.grads_memory, whole, n, &abs_error);
    // sgemm's weight gradients carry on from the stored sum (exact, as above); only the column sums
    // over the 48 rows (matmul bias, layernorm weight and bias) are taken as two 24-row partials
    // added instead of one pass: <= (47 + 24) u sum_n|term| worst case, u = 2^-24, and sum_n|term|
    // <= 2.3 max|grad| here (attprojb): <= 9.7e-6 max|grad|. A lost micro-batch is O(1).
    check(rel <= 1e-5,
          "two masked micro-batches normalised by the step's %d trained targets equal one batch "
          "(relative %.2e)",
          trained, rel);
    free(both);
    free(first);
    free(changed);
    free(unmasked);
    free(whole);
    gpt2_free(&model);
}

static void test_grow_vocab(void) {
    GPT2 model;
    gpt2_build(&model, "L=1,C=32,NH=2,V=300,maxT=16", 5);
    int C = model.config.channels;
    float *wte = model.params.wte;
    wte[(size_t)301 * C] = 0.5f; // row 301 "used" already: must be kept
    gpt2_grow_vocab(&model, 303);
    double mean0 = 0.0;
    for (int v = 0; v < 300; v++) mean0 += wte[(size_t)v * C];
    mean0 /= 300;
    // exact: gpt2_grow_vocab_params adds the same floats in double in the same order and rounds
    // sum / 300 to float once, as (float)mean0 does
    int ok = model.config.vocab_size == 303 && wte[(size_t)300 * C] == (float)mean0 &&
             wte[(size_t)302 * C] == (float)mean0 && wte[(size_t)301 * C] == 0.5f &&
             wte[(size_t)303 * C] == 0.0f;
    check(ok, "growing V 300 -> 303: unused rows become the mean embedding, a used row is kept, "
              "rows past V stay zero");
    gpt2_free(&model);
}

// llama: its untied output head (lm_head, the last tensor) grows the same way as wte.
static void test_grow_vocab_llama(void) {
    GPT2 model;
    gpt2_build(&model, "arch=llama,L=1,C=32,NH=2,V=300,maxT=16", 5);
    int C = model.config.channels;
    size_t sizes[NUM_PARAMETER_TENSORS], offset = 0;
    gpt2_parameter_sizes(&model.config, sizes);
    for (int k = 0; k < NUM_LLAMA_TENSORS - 1; k++) offset += sizes[k];
    float *lm_head = model.params_memory + offset;
    gpt2_grow_vocab(&model, 302);
    double mean0 = 0.0;
    for (int v = 0; v < 300; v++) mean0 += lm_head[(size_t)v * C];
    mean0 /= 300;
    int ok = model.config.vocab_size == 302 && lm_head[(size_t)300 * C] == (float)mean0 &&
             lm_head[(size_t)301 * C] == (float)mean0 && lm_head[(size_t)302 * C] == 0.0f &&
             model.params_memory[(size_t)300 * C] != 0.0f; // wte's new row too
    check(ok, "llama: growing V 300 -> 302 sets the new rows of wte and of lm_head to their means");
    gpt2_free(&model);
}

int main(void) {
    test_matvec();
    test_kv_cache("d2", 40);
    test_kv_cache("L=3,C=96,NH=3,V=50257,maxT=128", 77);
    // the llama family: GQA (KV < NH, and KV = 1), QK-norm, RoPE at the cached positions
    test_kv_cache("arch=llama,L=2,C=64,NH=4,KV=2,V=300,maxT=64,qknorm=1", 45);
    test_kv_cache("arch=llama,L=1,C=96,NH=6,KV=1,V=1000,maxT=64,rope_theta=500000", 33);
    test_masked_rows();
    test_grow_vocab();
    test_grow_vocab_llama();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
