// libFuzzer harness: llm.c's multiple-choice eval files (HellaSwag, magic 20240522), as the
// trainers' -h reads them (llmc/eval_loader.h): the whole file checked, then checked against a
// model (V, T), then every candidate filled into batches of EVAL_B rows (not a multiple of 4) and
// scored.
#include "fuzz.h"

#include "../../llmc/eval_loader.h"

#define EVAL_B 3
#define EVAL_T 48
#define EVAL_V 1000

static char input_path[4096];

static void load_eval(void *context) {
    (void)context;
    EvalFile ef;
    eval_file_load(&ef, input_path);
    eval_file_check_model(&ef, input_path, EVAL_V, EVAL_T);
    int inputs[EVAL_B * EVAL_T], targets[EVAL_B * EVAL_T];
    unsigned char mask[EVAL_B * EVAL_T];
    float losses[EVAL_B * EVAL_T];
    size_t candidates = (size_t)ef.num_examples * EVAL_COMPLETIONS;
    double *means = (double *)malloc_check(candidates * sizeof(double), "means");
    for (size_t first = 0; first < candidates; first += EVAL_B) {
        int rows = candidates - first < EVAL_B ? (int)(candidates - first) : EVAL_B;
        int T_batch = eval_fill_rows(&ef, first, rows, inputs, targets, mask);
        if (T_batch < 1 || T_batch > EVAL_T) {
            fprintf(stderr, "fuzz: batch of %d positions for T=%d\n", T_batch, EVAL_T);
            abort();
        }
        for (int r = 0; r < rows; r++) {
            int masked = 0;
            for (int t = 0; t < T_batch; t++) {
                int i = r * T_batch + t;
                if (inputs[i] < 0 || inputs[i] >= EVAL_V || targets[i] < 0 ||
                    targets[i] >= EVAL_V) {
                    fprintf(stderr, "fuzz: token %d / %d (V=%d)\n", inputs[i], targets[i], EVAL_V);
                    abort();
                }
                masked += mask[i];
                losses[i] = (float)(targets[i] % 17) * 0.25f;
            }
            if (masked != ef.ending_length[first + (size_t)r]) {
                fprintf(stderr, "fuzz: %d masked positions for an ending of %d tokens\n", masked,
                        ef.ending_length[first + (size_t)r]);
                abort();
            }
        }
        eval_row_means(losses, mask, rows, T_batch, means + first);
    }
    int correct = 0;
    for (int i = 0; i < ef.num_examples; i++) {
        correct += eval_predict(means + (size_t)i * EVAL_COMPLETIONS) == ef.label[i];
    }
    if (correct < 0 || correct > ef.num_examples) abort();
    free(means);
    eval_file_free(&ef);
}

static void fuzz_init(void) {
    fuzz_path(input_path, sizeof(input_path), "eval.bin");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(input_path, data, size);
    const char *paths[] = {input_path, NULL};
    fuzz_load(load_eval, NULL, paths);
    return 0;
}

// An eval file of count examples with random lengths (context + ending < max_len) and tokens.
static void write_eval(const char *dir, const char *name, int count, int max_len) {
    char path[4096];
    EvalWriter writer;
    eval_writer_open(&writer, fuzz_seed_path(path, sizeof(path), dir, name));
    int32_t context[EVAL_T], endings[EVAL_COMPLETIONS][EVAL_T];
    const int32_t *ending_ids[EVAL_COMPLETIONS];
    size_t ending_lengths[EVAL_COMPLETIONS];
    for (int i = 0; i < count; i++) {
        size_t n_context = 1 + fuzz_random() % (uint32_t)(max_len / 2);
        for (size_t t = 0; t < n_context; t++) context[t] = (int32_t)(fuzz_random() % EVAL_V);
        for (int k = 0; k < EVAL_COMPLETIONS; k++) {
            ending_lengths[k] = 1 + fuzz_random() % (uint32_t)(max_len - 1 - n_context);
            for (size_t t = 0; t < ending_lengths[k]; t++) {
                endings[k][t] = (int32_t)(fuzz_random() % EVAL_V);
            }
            ending_ids[k] = endings[k];
        }
        eval_writer_add(&writer, (int)(fuzz_random() % EVAL_COMPLETIONS), context, n_context,
                        ending_ids, ending_lengths);
    }
    eval_writer_commit(&writer);
}

static void fuzz_write_seeds(const char *dir) {
    write_eval(dir, "one.bin", 1, 8);
    write_eval(dir, "some.bin", 7, 20);
    write_eval(dir, "long.bin", 3, EVAL_T);
}
