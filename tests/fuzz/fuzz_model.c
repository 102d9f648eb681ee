// libFuzzer harness: model files, versions 3 (fp32) and 5 (bf16), llama 6 and 7, as the trainers,
// test_gpt2 and chat read them (llmc/formats.h: model_read_header, then model_read_params).
#include "fuzz.h"

#include "../../llmc/formats.h"

static char input_path[4096];

static void load_model(void *context) {
    (void)context;
    FILE *file = fopen_check(input_path, "rb");
    GPT2Config config;
    int version = model_read_header(file, input_path, &config);
    size_t n = gpt2_num_parameters(&config);
    float *params = (float *)malloc_check(n * sizeof(float), "parameters");
    model_read_params(file, input_path, version, params, n);
    free(params);
    fclose(file);
}

static void fuzz_init(void) {
    fuzz_path(input_path, sizeof(input_path), "model.bin");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(input_path, data, size);
    const char *paths[] = {input_path, NULL};
    fuzz_load(load_model, NULL, paths);
    return 0;
}

// Tiny models by model_write (both versions, with the checksum it writes) and the same without
// the checksum (llm.c's files, which leave slots 254..255 at 0).
static void fuzz_write_seeds(const char *dir) {
    const GPT2Config configs[] = {
        {.max_seq_len = 4,
         .vocab_size = 10,
         .padded_vocab_size = 16,
         .num_layers = 1,
         .num_heads = 2,
         .channels = 4},
        {.max_seq_len = 3,
         .vocab_size = 7,
         .padded_vocab_size = 7,
         .num_layers = 2,
         .num_heads = 1,
         .channels = 2},
        {.max_seq_len = 4, // llama (versions 6 and 7)
         .vocab_size = 9,
         .padded_vocab_size = 16,
         .num_layers = 1,
         .num_heads = 2,
         .channels = 4,
         .arch = MODEL_ARCH_LLAMA,
         .num_kv_heads = 1,
         .ffn = 3,
         .qknorm = 1,
         .rope_theta = 10000.0f},
    };
    for (int c = 0; c < 3; c++) {
        size_t n = gpt2_num_parameters(&configs[c]);
        float *params = (float *)malloc_check(n * sizeof(float), "seed parameters");
        for (size_t i = 0; i < n; i++) params[i] = (float)fuzz_random() / 4294967296.0f - 0.5f;
        for (int version = 3; version <= 5; version += 2) {
            char name[64], path[4096];
            snprintf(name, sizeof(name), "model%d_v%d.bin", c, version);
            model_write(fuzz_seed_path(path, sizeof(path), dir, name), &configs[c], params,
                        version);
            size_t size;
            uint8_t *bytes = fuzz_read_file(path, &size);
            memset(bytes + CHECKSUM_KIND_SLOT * 4, 0, 8);
            snprintf(name, sizeof(name), "model%d_v%d_no_checksum.bin", c, version);
            fuzz_write_file(fuzz_seed_path(path, sizeof(path), dir, name), bytes, size);
            free(bytes);
        }
        free(params);
    }
}
