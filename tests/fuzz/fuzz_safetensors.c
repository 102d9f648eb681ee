// libFuzzer harness: HuggingFace GPT-2 and Llama directories, config.json + model.safetensors, as
// -e DIR reads them in every program (llmc/safetensors.h: model_source_open, then
// model_source_read_params). One input holds both files: config.json, a NUL byte, the
// safetensors file.
#include "fuzz.h"

#include "../../llmc/safetensors.h"

static char model_dir[4096], config_path[4096], tensors_path[4096];

static void load_model(void *context) {
    (void)context;
    ModelSource source;
    GPT2Config config;
    model_source_open(&source, model_dir, &config);
    size_t n = gpt2_num_parameters(&config);
    float *params = (float *)malloc_check(n * sizeof(float), "parameters");
    model_source_read_params(&source, &config, params, n);
    free(params);
}

static void fuzz_init(void) {
    fuzz_path(model_dir, sizeof(model_dir), "hf");
    make_dir_check(model_dir);
    snprintf(config_path, sizeof(config_path), "%s/config.json", model_dir);
    snprintf(tensors_path, sizeof(tensors_path), "%s/model.safetensors", model_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *split = (const uint8_t *)memchr(data, '\0', size);
    size_t config_size = split != NULL ? (size_t)(split - data) : size;
    fuzz_write_file(config_path, data, config_size);
    fuzz_write_file(tensors_path, split != NULL ? split + 1 : data + size,
                    split != NULL ? size - config_size - 1 : 0);
    const char *paths[] = {config_path, tensors_path, NULL};
    fuzz_load(load_model, NULL, paths);
    return 0;
}

static void write_seed_file(const char *dir, const char *name, const char *config,
                            int config_length, const char *header, size_t used, size_t offset,
                            int element);

// One seed: a tiny GPT-2 (L layers, C channels) as transformers saves it, with random values in
// dtype ("F32", "BF16", "F16"); prefix "transformer." or ""; with_buffers adds the attn.bias
// buffers older checkpoints carry, and lm_head.weight a copy of wte.
static void write_seed(const char *dir, const char *name, int L, int C, int V, int maxT,
                       const char *dtype, const char *prefix, int with_buffers) {
    char header[16384], config[1024];
    size_t used = 0, offset = 0;
    int element = strcmp(dtype, "F32") == 0 ? 4 : 2;
    used += (size_t)snprintf(header + used, sizeof(header) - used,
                             "{\"__metadata__\":{\"format\":\"pt\"}");
#define SEED_TENSOR(tensor_name, rows, cols)                                                       \
    do {                                                                                           \
        size_t bytes = (size_t)(rows) * (size_t)((cols) ? (cols) : 1) * (size_t)element;           \
        if ((cols) > 0) {                                                                          \
            used += (size_t)snprintf(header + used, sizeof(header) - used,                         \
                                     ",\"%s%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],"              \
                                     "\"data_offsets\":[%zu,%zu]}",                                \
                                     prefix, tensor_name, dtype, (int)(rows), (int)(cols), offset, \
                                     offset + bytes);                                              \
        } else {                                                                                   \
            used +=                                                                                \
                (size_t)snprintf(header + used, sizeof(header) - used,                             \
                                 ",\"%s%s\":{\"dtype\":\"%s\",\"shape\":[%d],"                     \
                                 "\"data_offsets\":[%zu,%zu]}",                                    \
                                 prefix, tensor_name, dtype, (int)(rows), offset, offset + bytes); \
        }                                                                                          \
        offset += bytes;                                                                           \
    } while (0)
    SEED_TENSOR("wte.weight", V, C);
    SEED_TENSOR("wpe.weight", maxT, C);
    for (int l = 0; l < L; l++) {
        char t[64];
        const struct {
            const char *suffix;
            int rows, cols;
        } parts[] = {{"ln_1.weight", C, 0},
                     {"ln_1.bias", C, 0},
                     {"attn.c_attn.weight", C, 3 * C},
                     {"attn.c_attn.bias", 3 * C, 0},
                     {"attn.c_proj.weight", C, C},
                     {"attn.c_proj.bias", C, 0},
                     {"ln_2.weight", C, 0},
                     {"ln_2.bias", C, 0},
                     {"mlp.c_fc.weight", C, 4 * C},
                     {"mlp.c_fc.bias", 4 * C, 0},
                     {"mlp.c_proj.weight", 4 * C, C},
                     {"mlp.c_proj.bias", C, 0}};
        for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++) {
            snprintf(t, sizeof(t), "h.%d.%s", l, parts[k].suffix);
            SEED_TENSOR(t, parts[k].rows, parts[k].cols);
        }
        if (with_buffers) {
            snprintf(t, sizeof(t), "h.%d.attn.bias", l);
            used += (size_t)snprintf(header + used, sizeof(header) - used,
                                     ",\"%s%s\":{\"dtype\":\"F32\",\"shape\":[1,1,%d,%d],"
                                     "\"data_offsets\":[0,0]}",
                                     prefix, t, maxT, maxT);
        }
    }
    SEED_TENSOR("ln_f.weight", C, 0);
    SEED_TENSOR("ln_f.bias", C, 0);
    size_t wte_bytes = (size_t)V * (size_t)C * (size_t)element;
    if (with_buffers) {
        used += (size_t)snprintf(header + used, sizeof(header) - used,
                                 ",\"lm_head.weight\":{\"dtype\":\"%s\",\"shape\":[%d,%d],"
                                 "\"data_offsets\":[0,%zu]}",
                                 dtype, V, C, wte_bytes);
    }
#undef SEED_TENSOR
    used += (size_t)snprintf(header + used, sizeof(header) - used, "}");
    int config_length =
        snprintf(config, sizeof(config),
                 "{\"model_type\":\"gpt2\",\"vocab_size\":%d,\"n_positions\":%d,\"n_embd\":%d,"
                 "\"n_layer\":%d,\"n_head\":2,\"n_inner\":null,\"activation_function\":"
                 "\"gelu_new\",\"layer_norm_epsilon\":1e-05,\"scale_attn_by_inverse_layer_idx\":"
                 "false,\"reorder_and_upcast_attn\":false,\"tie_word_embeddings\":true}",
                 V, maxT, C, L);
    write_seed_file(dir, name, config, config_length, header, used, offset, element);
}

// config.json, NUL, then the safetensors file (header of used bytes, offset bytes of random values)
static void write_seed_file(const char *dir, const char *name, const char *config,
                            int config_length, const char *header, size_t used, size_t offset,
                            int element) {
    size_t total = (size_t)config_length + 1 + 8 + used + offset;
    uint8_t *bytes = (uint8_t *)malloc_check(total, "seed");
    memcpy(bytes, config, (size_t)config_length);
    bytes[config_length] = 0;
    uint8_t *tensors = bytes + config_length + 1;
    for (int i = 0; i < 8; i++) tensors[i] = (uint8_t)((uint64_t)used >> (8 * i));
    memcpy(tensors + 8, header, used);
    uint8_t *values = tensors + 8 + used;
    for (size_t i = 0; i < offset; i += (size_t)element) {
        float value = (float)fuzz_random() / 4294967296.0f - 0.5f;
        if (element == 4) {
            memcpy(values + i, &value, 4);
        } else { // BF16's bits; as F16 bits they are other, still finite, values mostly
            uint16_t half = float_to_bf16(value);
            memcpy(values + i, &half, 2);
        }
    }
    char path[4096];
    fuzz_write_file(fuzz_seed_path(path, sizeof(path), dir, name), bytes, total);
    free(bytes);
}

// A tiny LlamaForCausalLM (L layers, C channels, NH 2 heads of which KV, ffn F) in F32.
static void write_llama_seed(const char *dir, const char *name, int L, int C, int KV, int F,
                             int V) {
    char header[16384], config[1024], t[96];
    size_t used = 0, offset = 0;
    int HS = C / 2;
    used += (size_t)snprintf(header, sizeof(header), "{");
    const struct {
        const char *suffix;
        int rows, cols;
    } parts[] = {{"input_layernorm.weight", C, 0},        {"self_attn.q_proj.weight", 2 * HS, C},
                 {"self_attn.k_proj.weight", KV * HS, C}, {"self_attn.v_proj.weight", KV * HS, C},
                 {"self_attn.o_proj.weight", C, C},       {"post_attention_layernorm.weight", C, 0},
                 {"mlp.gate_proj.weight", F, C},          {"mlp.up_proj.weight", F, C},
                 {"mlp.down_proj.weight", C, F}};
    for (int k = -1; k < L * 9 + 2; k++) { // -1: embed_tokens; the last two: norm, lm_head
        int rows = V, cols = C;
        if (k >= 0 && k < L * 9) {
            snprintf(t, sizeof(t), "model.layers.%d.%s", k / 9, parts[k % 9].suffix);
            rows = parts[k % 9].rows;
            cols = parts[k % 9].cols;
        } else {
            snprintf(t, sizeof(t), "%s",
                     k < 0 ? "model.embed_tokens.weight"
                           : (k == L * 9 ? "model.norm.weight" : "lm_head.weight"));
            if (k == L * 9) rows = C, cols = 0;
        }
        size_t bytes = (size_t)rows * (size_t)(cols ? cols : 1) * 4;
        used += (size_t)snprintf(header + used, sizeof(header) - used,
                                 "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d%s%.0d],"
                                 "\"data_offsets\":[%zu,%zu]}",
                                 k < 0 ? "" : ",", t, rows, cols ? "," : "", cols, offset,
                                 offset + bytes);
        offset += bytes;
    }
    used += (size_t)snprintf(header + used, sizeof(header) - used, "}");
    int config_length =
        snprintf(config, sizeof(config),
                 "{\"model_type\":\"llama\",\"vocab_size\":%d,\"max_position_embeddings\":8,"
                 "\"hidden_size\":%d,\"intermediate_size\":%d,\"num_hidden_layers\":%d,"
                 "\"num_attention_heads\":2,\"num_key_value_heads\":%d,\"rms_norm_eps\":1e-05,"
                 "\"rope_theta\":10000.0,\"rope_scaling\":null,\"hidden_act\":\"silu\","
                 "\"attention_bias\":false,\"tie_word_embeddings\":false}",
                 V, C, F, L, KV);
    write_seed_file(dir, name, config, config_length, header, used, offset, 4);
}

static void fuzz_write_seeds(const char *dir) {
    write_llama_seed(dir, "llama_gqa", 1, 4, 1, 6, 9);
    write_seed(dir, "f32_prefix", 1, 4, 10, 4, "F32", "transformer.", 0);
    write_seed(dir, "bf16_plain", 2, 4, 7, 3, "BF16", "", 0);
    write_seed(dir, "f16_buffers", 1, 2, 5, 2, "F16", "transformer.", 1);
}
