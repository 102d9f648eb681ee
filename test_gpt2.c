/*
Checks the CPU trainer against a PyTorch reference dump (scripts/train_gpt2.py --write-state):
logits, loss and every gradient tensor of one batch, then the losses of the reference's AdamW
steps on that batch. Prints the error of each tensor, names the first tensor and element that is
out of tolerance, and exits 0 only if everything passes.

  ./test_gpt2 -e MODEL.bin -s DEBUG_STATE.bin
  ./test_gpt2 -e MODEL.bin --init d2 --seed 42   (C random init equals PyTorch's, bit for bit)
*/
#define TESTING
#include "train_gpt2.c"

// |got - want| <= atol + rtol * |want| for every element; reports the worst and the first bad one.
typedef struct {
    double max_abs_error;
    double max_reference;
    size_t first_bad; // SIZE_MAX if none
} Comparison;

static Comparison compare(const float *got, const float *want, size_t n, size_t stride_in,
                          size_t row_length, double atol, double rtol) {
    // got may be strided (logits are Vp wide, the reference V wide): element i of want is at
    // got[(i / row_length) * stride_in + i % row_length].
    Comparison c = {0.0, 0.0, SIZE_MAX};
    for (size_t i = 0; i < n; i++) {
        float g = got[(i / row_length) * stride_in + i % row_length];
        double error = fabs((double)g - (double)want[i]);
        if (!(error <= atol + rtol * fabs((double)want[i])) && c.first_bad == SIZE_MAX) {
            c.first_bad = i; // NaN lands here too
        }
        if (!(error <= c.max_abs_error)) c.max_abs_error = error;
        if (fabs((double)want[i]) > c.max_reference) c.max_reference = fabs((double)want[i]);
    }
    return c;
}

static int failures = 0;

static void report(const char *name, Comparison c, const float *got, const float *want,
                   size_t stride_in, size_t row_length, double tolerance_note) {
    int ok = c.first_bad == SIZE_MAX;
    printf("  %-10s max|diff| %.3e  max|ref| %.3e  %s\n", name, c.max_abs_error, c.max_reference,
           ok ? "ok" : "FAIL");
    if (!ok) {
        size_t i = c.first_bad;
        float g = got[(i / row_length) * stride_in + i % row_length];
        printf("    first bad element of %s: [%zu] got %.9g, want %.9g (tolerance %.1e)\n", name, i,
               g, want[i], tolerance_note);
        failures++;
    }
}

static int check_init(const GPT2 *model, const char *descriptor, int seed) {
    GPT2Config config;
    if (!gpt2_config_from_descriptor(descriptor, &config)) {
        fatal("--init %s: not a model descriptor", descriptor);
    }
    const GPT2Config *m = &model->config;
    if (memcmp(&config, m, sizeof(config)) != 0) {
        fatal("--init %s: shape differs from the model file's", descriptor);
    }
    size_t n = model->num_parameters;
    float *params = (float *)malloc_check(n * sizeof(float), "init params");
    gpt2_init_params(&config, params, (uint32_t)seed);
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(&config, sizes);
    size_t offset = 0, mismatches = 0;
    for (int k = 0; k < model_num_tensors(&config); k++) {
        size_t bad = 0, first = SIZE_MAX;
        for (size_t i = 0; i < sizes[k]; i++) {
            if (memcmp(&params[offset + i], &model->params_memory[offset + i], sizeof(float)) !=
                0) {
                if (first == SIZE_MAX) first = i;
                bad++;
            }
        }
        if (bad > 0) {
            printf("  %-10s %zu of %zu values differ; first [%zu]: C %.9g, reference %.9g\n",
                   model_tensor_name(&config, k), bad, sizes[k], first, params[offset + first],
                   model->params_memory[offset + first]);
        }
        mismatches += bad;
        offset += sizes[k];
    }
    free(params);
    printf("init %s seed %d: %s (%zu parameters compared bit for bit)\n", descriptor, seed,
           mismatches == 0 ? "identical" : "DIFFERENT", n);
    return mismatches == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    const char *model_path = "";
    const char *state_path_arg = "";
    const char *init_descriptor = "";
    int seed = 42;
    // Both sides compute in fp32 (u = 2^-24 = 6e-8) and differ only in the order of additions
    // (our sgemm's K blocks, FMA or not; PyTorch's BLAS; layernorm in double here). A sum of K
    // terms then differs by ~sqrt(K)*u*sum|terms| (random-walk rounding; worst case K*u).
    // logits: the last of ~4L+2 such sums of K <= 4C terms on O(1) normalised activations: at d4
    // (K = 1024, 18 sums) sqrt(18)*sqrt(1024)*u = 8e-6 of 1 + |logit|, under 1e-5 (measured 9e-7).
    float logits_tol = 1e-5f;
    // loss: the fp32 mean of n = B*T <= 256 losses of ~10.8, two running sums differing by
    // ~u*sqrt(2n/3)*10.8 = 8.5e-6 = 8e-7 relative; the logits' errors average out (measured 9e-8).
    float loss_tol = 1e-5f;
    // gradients: sums over B*T <= 256 positions of backward signals whose chain is ~2x the
    // forward's: ~2x the logits' error, 1e-4 * |ref| leaves a margin over it; an element whose sum
    // cancels (|ref| << its terms, each at most ~max|ref|) keeps the terms' absolute error: the
    // floor.
    float grad_tol = 1e-4f, grad_floor = 2e-5f;
    // step losses: AdamW's lr*m/sqrt(v) is scale-free, so a weight whose gradient is well above the
    // rounding noise moves by the same lr*(1 +- u); one whose gradient is at noise level may move
    // by up to lr the other way, but the loss is first-order insensitive to it (its gradient is
    // that noise): the losses keep the loss's own rounding plus lr * noise (measured <= 1e-7
    // relative).
    float step_tol = 1e-5f;
    // Muon step losses: the Newton-Schulz (NS) output is a fixed function of the normalised
    // momentum U (||U||_F = 1), not scale-free per weight as AdamW's, so the two sides' differences
    // pass through it. Each NS product rounds in fp32 by ~sqrt(K)*u of its terms (K <= 4C = 512
    // at these shapes: 1.4e-6), on top of the gradients' own difference (measured ~1e-7
    // relative). An iteration X -> aX + bX^3 + cX^5 (per singular value s) multiplies an error by
    // at most |p'(s)| <= a = 3.44 on s in [0, 1.2], so 5 iterations carry ~5 * 3.44^5 * 1.4e-6 =
    // 3.4e-3 into X, which has grown by the normalisation from norm 1 to ~sqrt(min(R, Cc)) >= 8:
    // <= 4e-4 relative in the update, worst case. To first order that changes a step's loss
    // change (<= 0.6 here) by the same fraction: <= 2.5e-5 relative per step, so 10 steps stay
    // under 2e-4 relative even in the worst case (measured <= 3e-7: the singular values leave the
    // amplifying region after two iterations). A 1% error in a, or a missing Nesterov term, moves
    // the losses by >= 2e-3 relative (tests/test_muon.sh plants both).
    float muon_step_tol = 2e-4f;
    CliOption options[] = {
        {'e', "model", OPTION_STRING, &model_path,
         "reference model file (v3 fp32 or v5 bf16) or HuggingFace GPT-2 directory"},
        {'s', "state", OPTION_STRING, &state_path_arg, "reference debug state"},
        {0, "init", OPTION_STRING, &init_descriptor,
         "instead: check that C's random init of this descriptor equals the model file"},
        {0, "seed", OPTION_INT, &seed, "seed for --init"},
        {0, "logits-tol", OPTION_FLOAT, &logits_tol, "logits: |diff| <= tol * (1 + |ref|)"},
        {0, "loss-tol", OPTION_FLOAT, &loss_tol, "loss: relative tolerance"},
        {0, "grad-tol", OPTION_FLOAT, &grad_tol,
         "gradients: |diff| <= grad-tol * |ref| + grad-floor * max|ref| (of the tensor; wte: of "
         "the row)"},
        {0, "grad-floor", OPTION_FLOAT, &grad_floor, "see --grad-tol"},
        {0, "step-tol", OPTION_FLOAT, &step_tol, "AdamW step losses: relative tolerance"},
        {0, "muon-step-tol", OPTION_FLOAT, &muon_step_tol,
         "step losses of a Muon reference: relative tolerance"},
    };
    cli_parse(argc, argv, "Checks train_gpt2.c against a PyTorch reference dump.", options,
              (int)(sizeof(options) / sizeof(options[0])));
    if (model_path[0] == '\0') fatal("-e MODEL is required (see --help)");

    GPT2 model;
    gpt2_build(&model, model_path, 0);
    gpt2_config_print(&model.config, model.num_parameters);
    if (init_descriptor[0] != '\0') {
        int status = check_init(&model, init_descriptor, seed);
        gpt2_free(&model);
        return status;
    }
    if (state_path_arg[0] == '\0') fatal("-s DEBUG_STATE is required (see --help)");
    DebugState ref;
    debug_state_read(state_path_arg, &model.config, &ref);
    int B = ref.B, T = ref.T, V = ref.V, Vp = model.config.padded_vocab_size;
    printf("reference: B=%d T=%d, %d step losses\n", B, T, ref.n_steps);
    if (ref.target_mask != NULL) {
        int trained = 0;
        for (int i = 0; i < B * T; i++) trained += ref.target_mask[i];
        printf("loss mask: %d of %d targets trained\n", trained, B * T);
    }

    // forward and backward on the reference batch
    gpt2_forward_masked(&model, ref.inputs, ref.targets, ref.target_mask, B, T);
    printf("forward:\n");
    Comparison c = compare(model.acts.logits, ref.logits, (size_t)B * T * V, (size_t)Vp, (size_t)V,
                           logits_tol, logits_tol);
    report("logits", c, model.acts.logits, ref.logits, (size_t)Vp, (size_t)V, logits_tol);
    if (!debug_state_check_loss(model.mean_loss, ref.loss, loss_tol)) failures++;

    gpt2_zero_grad(&model);
    gpt2_backward(&model, 1.0f);
    printf("backward:\n");
    size_t sizes[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(&model.config, sizes);
    // The floor scales with the largest reference value of the tensor, except for wte: its
    // gradient (tied embedding + classifier) spans orders of magnitude between the rows of
    // tokens in the batch and all others, so there it scales with each row's largest value and
    // an error in a small row is still seen. llama's untied wte (rows of the batch's tokens
    // only) and lm_head (the classifier) likewise.
    size_t row_lengths[NUM_PARAMETER_TENSORS];
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) row_lengths[k] = sizes[k] > 0 ? sizes[k] : 1;
    row_lengths[0] = (size_t)model.config.channels;
    if (model.config.arch == MODEL_ARCH_LLAMA) row_lengths[10] = (size_t)model.config.channels;
    size_t offset = 0;
    for (int k = 0; k < model_num_tensors(&model.config); k++) {
        const float *want = ref.grads + offset;
        const float *got = model.grads_memory + offset;
        Comparison total = {0.0, 0.0, SIZE_MAX};
        double first_bad_tolerance = 0.0;
        for (size_t row = 0; row < sizes[k]; row += row_lengths[k]) {
            double scale = 0.0;
            for (size_t i = row; i < row + row_lengths[k]; i++) {
                scale = fmax(scale, fabs((double)want[i]));
            }
            double atol = grad_floor * scale;
            c = compare(got + row, want + row, row_lengths[k], row_lengths[k], row_lengths[k], atol,
                        grad_tol);
            if (c.first_bad != SIZE_MAX && total.first_bad == SIZE_MAX) {
                total.first_bad = row + c.first_bad;
                first_bad_tolerance = atol + grad_tol * fabs((double)want[total.first_bad]);
            }
            total.max_abs_error = fmax(total.max_abs_error, c.max_abs_error);
            total.max_reference = fmax(total.max_reference, c.max_reference);
        }
        report(model_tensor_name(&model.config, k), total, got, want, sizes[k], sizes[k],
               first_bad_tolerance);
        offset += sizes[k];
    }

    if (ref.n_steps > 0) {
        printf("AdamW steps on the same batch (lr %g, betas %g %g, eps %g, wd %g, clip %g):\n",
               ref.lr, ref.beta1, ref.beta2, ref.eps, ref.weight_decay, ref.grad_clip);
        AdamWConfig adamw = {ref.lr, ref.beta1, ref.beta2, ref.eps, ref.weight_decay};
        MuonConfig muon = {ref.muon_lr, ref.muon_momentum, ref.weight_decay, ref.muon_ns_steps};
        if (ref.muon) {
            printf("  with Muon for the blocks' matrices (lr %g, momentum %g, %d Newton-Schulz "
                   "steps; tolerance %g)\n",
                   ref.muon_lr, ref.muon_momentum, ref.muon_ns_steps, muon_step_tol);
            step_tol = muon_step_tol;
        }
        for (int step = 0; step < ref.n_steps; step++) {
            gpt2_forward_masked(&model, ref.inputs, ref.targets, ref.target_mask, B, T);
            if (!debug_state_check_step_loss(step, model.mean_loss, ref.step_losses[step],
                                             step_tol)) {
                failures++;
            }
            gpt2_zero_grad(&model);
            gpt2_backward(&model, 1.0f);
            float norm = gpt2_grad_norm(&model);
            gpt2_update(&model, &adamw, ref.muon ? &muon : NULL, step + 1,
                        gpt2_clip_scale(norm, ref.grad_clip));
        }
    }
    printf("%s: %d check(s) failed\n", failures == 0 ? "PASS" : "FAIL", failures);
    debug_state_free(&ref);
    gpt2_free(&model);
    return failures == 0 ? 0 : 1;
}
