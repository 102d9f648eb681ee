// HuggingFace GPT-2 and Llama (LlamaForCausalLM) directories (config.json + model.safetensors),
// read without Python, and
// model_source_*: what -e names in every program (a descriptor aside), a v3/v5 model file or such
// a directory. docs/formats.md describes the layout; link with json-c.
//
// safetensors: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name
// to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the bytes after the header),
// then the raw little-endian tensors. HF's GPT-2 stores its four projection matrices as Conv1D
// weights, (in, out); ours are (out, in), so those are transposed on the way in. The output head
// is tied to wte (HF omits lm_head.weight, or stores an equal copy). Every name, dtype, shape and
// offset is checked against config.json and the file's size before anything is read.
#ifndef LLMC_SAFETENSORS_H
#define LLMC_SAFETENSORS_H

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats.h"
#include "mmap_file.h"
#include "model_config.h"
#include "utils.h"

// HF's own reader refuses larger headers; far above a GPT-2's (~30 KB for 48 layers)
#define SAFETENSORS_MAX_HEADER (100u << 20)
#define HF_CONFIG_MAX_BYTES (1u << 20)
// per layer: ln_1 w/b, c_attn w/b, attn c_proj w/b, ln_2 w/b, c_fc w/b, mlp c_proj w/b
#define HF_LAYER_TENSORS 12

// IEEE half to float (every half is exactly a float).
static inline float f16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    if (exponent == 0) { // zero or subnormal: mantissa * 2^-24
        float magnitude = (float)mantissa * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }
    uint32_t bits = exponent == 0x1f ? sign | 0x7f800000u | (mantissa << 13)
                                     : sign | ((exponent + 112u) << 23) | (mantissa << 13);
    return int_bits_to_float((int32_t)bits);
}

// A JSON value as it may appear in a one-line error (control characters as \xNN, cut short).
#define HF_SHOWN_MAX 256
static inline const char *hf_shown(json_object *value, char out[HF_SHOWN_MAX]) {
    const char *text = value != NULL ? json_object_to_json_string(value) : "none";
    return printable_text(text, strlen(text), out, HF_SHOWN_MAX);
}

// What a reader holds, in a static: a fatal() in the middle of reading exits with it still
// reachable, so LeakSanitizer (make SANITIZE=1) reports no leak for a refused file (volatile:
// stores to a static that is never read would be optimised away).
static volatile struct {
    json_object *root;
    json_tokener *tokener;
    unsigned char *seen; // hf_read_params's
} hf_reading;

// Parses a whole JSON file that must hold one object (the caller puts root and frees tokener).
// what names the JSON in errors ("JSON", "JSON header").
static inline json_object *hf_json_parse(const char *path, const char *what, const MappedFile *file,
                                         size_t offset, size_t length, json_tokener **tokener) {
    *tokener = hf_reading.tokener = json_tokener_new();
    if (*tokener == NULL) fatal("%s: cannot allocate a JSON parser", path);
    const char *text = (const char *)file->data + offset;
    json_object *root = json_tokener_parse_ex(*tokener, text, (int)length);
    hf_reading.root = root;
    enum json_tokener_error error = json_tokener_get_error(*tokener);
    if (root == NULL || error != json_tokener_success) {
        fatal("%s: %s: invalid JSON at byte %zu: %s", path, what,
              offset + json_tokener_get_parse_end(*tokener),
              error == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(error));
    }
    size_t end = json_tokener_get_parse_end(*tokener);
    while (end < length && strchr(" \t\r\n", text[end]) != NULL) end++;
    if (end != length) {
        fatal("%s: %s: unexpected bytes after the JSON object at byte %zu", path, what,
              offset + end);
    }
    if (!json_object_is_type(root, json_type_object)) {
        fatal("%s: %s: expected an object, found %s", path, what,
              json_type_to_name(json_object_get_type(root)));
    }
    return root;
}

// config.json's integer key, in 1..max; fallback_key (or NULL) is read when key is absent.
static inline int hf_config_int(const char *path, json_object *root, const char *key,
                                const char *fallback_key, int max) {
    json_object *value = NULL;
    if (!json_object_object_get_ex(root, key, &value) && fallback_key != NULL &&
        json_object_object_get_ex(root, fallback_key, &value)) {
        key = fallback_key;
    }
    if (value == NULL) fatal("%s: %s: missing (or null)", path, key);
    if (!json_object_is_type(value, json_type_int)) {
        fatal("%s: %s: expected an integer, found %s", path, key,
              json_type_to_name(json_object_get_type(value)));
    }
    int64_t number = json_object_get_int64(value);
    if (number < 1 || number > max) {
        fatal("%s: %s: expected 1..%d, found %lld", path, key, max, (long long)number);
    }
    return (int)number;
}

// A boolean key that must have the value we implement when present.
static inline void hf_config_require_bool(const char *path, json_object *root, const char *key,
                                          int expected, const char *why) {
    char shown[HF_SHOWN_MAX];
    json_object *value = NULL;
    if (!json_object_object_get_ex(root, key, &value) || value == NULL) return;
    if (!json_object_is_type(value, json_type_boolean) ||
        json_object_get_boolean(value) != expected) {
        fatal("%s: %s: expected %s, found %s: %s", path, key, expected ? "true" : "false",
              hf_shown(value, shown), why);
    }
}

// A key that must be absent or null (a feature we do not implement).
static inline void hf_config_require_null(const char *path, json_object *root, const char *key,
                                          const char *why) {
    char shown[HF_SHOWN_MAX];
    json_object *value = NULL;
    if (json_object_object_get_ex(root, key, &value) && value != NULL) {
        fatal("%s: %s: expected null (%s), found %s", path, key, why, hf_shown(value, shown));
    }
}

// A number key (absent: fallback) that must lie in [low, high].
static inline double hf_config_number(const char *path, json_object *root, const char *key,
                                      double fallback, double low, double high) {
    char shown[HF_SHOWN_MAX];
    json_object *value = NULL;
    if (!json_object_object_get_ex(root, key, &value) || value == NULL) return fallback;
    double number = json_object_get_double(value);
    if (!(json_object_is_type(value, json_type_double) ||
          json_object_is_type(value, json_type_int)) ||
        !(number >= low && number <= high)) {
        fatal("%s: %s: expected a number in %g..%g, found %s", path, key, low, high,
              hf_shown(value, shown));
    }
    return number;
}

// config.json of a LlamaForCausalLM (model_type "llama"): our llama family without QK-norm.
// What our block does not compute is refused by key: RoPE scaling, biases, tied embeddings,
// another activation or RMSNorm epsilon, a head_dim other than hidden_size / num_attention_heads.
static inline void hf_read_llama_config(const char *path, json_object *root, GPT2Config *config) {
    char shown[HF_SHOWN_MAX];
    json_object *value = NULL;
    if (json_object_object_get_ex(root, "hidden_act", &value) &&
        (!json_object_is_type(value, json_type_string) ||
         strcmp(json_object_get_string(value), "silu") != 0)) {
        fatal("%s: hidden_act: expected \"silu\" (SwiGLU, the only MLP implemented), found %s",
              path, hf_shown(value, shown));
    }
    hf_config_require_null(path, root, "rope_scaling", "RoPE scaling is not implemented");
    hf_config_require_bool(path, root, "attention_bias", 0, "attention biases are not implemented");
    hf_config_require_bool(path, root, "mlp_bias", 0, "MLP biases are not implemented");
    hf_config_require_bool(path, root, "tie_word_embeddings", 0,
                           "llama's output head is untied; a tied one is not implemented");
    if (hf_config_number(path, root, "rms_norm_eps", 1e-6, 0, 1) != 1e-5) {
        fatal("%s: rms_norm_eps: expected 1e-05 (our RMSNorm's; HF's default is 1e-06), found %s",
              path,
              json_object_object_get_ex(root, "rms_norm_eps", &value)
                  ? hf_shown(value, shown)
                  : "none (HF's default 1e-06)");
    }
    if (hf_config_number(path, root, "pretraining_tp", 1, 0, 1e9) != 1) {
        fatal("%s: pretraining_tp: expected 1 (the sliced projections are not implemented)", path);
    }
    memset(config, 0, sizeof(*config));
    config->arch = MODEL_ARCH_LLAMA;
    config->vocab_size = hf_config_int(path, root, "vocab_size", NULL, GPT2_MAX_VOCAB);
    config->max_seq_len =
        hf_config_int(path, root, "max_position_embeddings", NULL, GPT2_MAX_SEQ_LEN);
    config->num_layers = hf_config_int(path, root, "num_hidden_layers", NULL, GPT2_MAX_LAYERS);
    config->num_heads = hf_config_int(path, root, "num_attention_heads", NULL, GPT2_MAX_HEADS);
    config->channels = hf_config_int(path, root, "hidden_size", NULL, GPT2_MAX_CHANNELS);
    config->ffn = hf_config_int(path, root, "intermediate_size", NULL, LLAMA_MAX_FFN);
    config->num_kv_heads =
        json_object_object_get_ex(root, "num_key_value_heads", &value) && value != NULL
            ? hf_config_int(path, root, "num_key_value_heads", NULL, GPT2_MAX_HEADS)
            : config->num_heads;
    config->rope_theta =
        (float)hf_config_number(path, root, "rope_theta", 10000.0, 1.0, LLAMA_MAX_ROPE_THETA);
    if (json_object_object_get_ex(root, "head_dim", &value) && value != NULL &&
        (!json_object_is_type(value, json_type_int) ||
         json_object_get_int64(value) != config->channels / config->num_heads ||
         config->channels % config->num_heads != 0)) {
        fatal("%s: head_dim: expected null or hidden_size / num_attention_heads = %d, found %s",
              path, config->channels / config->num_heads, hf_shown(value, shown));
    }
    config->padded_vocab_size = round_up_int(config->vocab_size, 128);
    const char *problem = gpt2_config_problem(config);
    if (problem != NULL) {
        fatal("%s: hidden_size, num_attention_heads, num_key_value_heads: %s (found %d, %d, %d)",
              path, problem, config->channels, config->num_heads, config->num_kv_heads);
    }
}

// Reads dir/config.json into config (V, maxT, L, NH, C; Vp = V rounded up to 128, as our
// descriptors have it). Configurations whose model differs from ours are refused by key.
// A LlamaForCausalLM's (model_type "llama") goes to hf_read_llama_config.
static inline void hf_read_config(const char *dir, GPT2Config *config) {
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/config.json", dir) >= (int)sizeof(path)) {
        fatal("%s: path too long", dir);
    }
    MappedFile file = mmap_file_check(path);
    if (file.size == 0 || file.size > HF_CONFIG_MAX_BYTES) {
        fatal("%s: size %zu bytes: expected 1..%u (a HuggingFace GPT-2 config)", path, file.size,
              HF_CONFIG_MAX_BYTES);
    }
    char shown[HF_SHOWN_MAX];
    json_tokener *tokener;
    json_object *root = hf_json_parse(path, "JSON", &file, 0, file.size, &tokener);
    json_object *value = NULL;
    if (json_object_object_get_ex(root, "model_type", &value) &&
        json_object_is_type(value, json_type_string) &&
        strcmp(json_object_get_string(value), "llama") == 0) {
        hf_read_llama_config(path, root, config);
        json_object_put(root);
        json_tokener_free(tokener);
        hf_reading.root = NULL;
        hf_reading.tokener = NULL;
        mmap_file_close(&file);
        return;
    }
    if (json_object_object_get_ex(root, "model_type", &value) &&
        (!json_object_is_type(value, json_type_string) ||
         strcmp(json_object_get_string(value), "gpt2") != 0)) {
        fatal("%s: model_type: expected \"gpt2\" or \"llama\", found %s", path,
              hf_shown(value, shown));
    }
    // absent = HF's default, gelu_new (tanh approximation, our GELU)
    if (json_object_object_get_ex(root, "activation_function", &value) &&
        (!json_object_is_type(value, json_type_string) ||
         strcmp(json_object_get_string(value), "gelu_new") != 0)) {
        fatal("%s: activation_function: expected \"gelu_new\" (the only GELU implemented), found "
              "%s",
              path, hf_shown(value, shown));
    }
    if (json_object_object_get_ex(root, "layer_norm_epsilon", &value) &&
        (!(json_object_is_type(value, json_type_double) ||
           json_object_is_type(value, json_type_int)) ||
         json_object_get_double(value) != 1e-5)) {
        fatal("%s: layer_norm_epsilon: expected 1e-05 (our layernorm's), found %s", path,
              hf_shown(value, shown));
    }
    hf_config_require_bool(path, root, "scale_attn_by_inverse_layer_idx", 0,
                           "attention scaled by 1/layer is not implemented");
    hf_config_require_bool(path, root, "reorder_and_upcast_attn", 0,
                           "the reordered attention is not implemented");
    hf_config_require_bool(path, root, "scale_attn_weights", 1,
                           "unscaled attention is not implemented");
    hf_config_require_bool(path, root, "add_cross_attention", 0,
                           "cross-attention is not implemented");
    hf_config_require_bool(path, root, "tie_word_embeddings", 1,
                           "an untied output head is not implemented");
    memset(config, 0, sizeof(*config));
    config->vocab_size = hf_config_int(path, root, "vocab_size", NULL, GPT2_MAX_VOCAB);
    config->max_seq_len = hf_config_int(path, root, "n_positions", "n_ctx", GPT2_MAX_SEQ_LEN);
    config->num_layers = hf_config_int(path, root, "n_layer", NULL, GPT2_MAX_LAYERS);
    config->num_heads = hf_config_int(path, root, "n_head", NULL, GPT2_MAX_HEADS);
    config->channels = hf_config_int(path, root, "n_embd", NULL, GPT2_MAX_CHANNELS);
    if (json_object_object_get_ex(root, "n_inner", &value) && value != NULL &&
        (!json_object_is_type(value, json_type_int) ||
         json_object_get_int64(value) != 4 * (int64_t)config->channels)) {
        fatal("%s: n_inner: expected null or 4*n_embd = %d (our MLP's width), found %s", path,
              4 * config->channels, hf_shown(value, shown));
    }
    json_object_put(root);
    json_tokener_free(tokener);
    hf_reading.root = NULL;
    hf_reading.tokener = NULL;
    mmap_file_close(&file);
    // (GPT2_MAX_VOCAB is a multiple of 128: Vp stays within it)
    config->padded_vocab_size = round_up_int(config->vocab_size, 128);
    const char *problem = gpt2_config_problem(config);
    if (problem != NULL) {
        fatal("%s: n_embd, n_head: %s (found n_embd %d, n_head %d)", path, problem,
              config->channels, config->num_heads);
    }
}

// Where an HF tensor goes: our tensor, its layer (-1: not per layer), the HF shape, transposed.
typedef struct {
    int tensor;     // index into the 16 parameter tensors; -1: lm_head.weight (the tied head)
    int layer;      // -1 for wte, wpe, ln_f, lm_head
    int rank;       // 1 or 2
    size_t dims[2]; // HF's shape
    int transpose;  // Conv1D weight: HF (in, out) -> ours (out, in)
} HfTensorPlace;

// Parses "N." (a layer number without leading zeros, < L); returns the rest or NULL.
static inline const char *hf_parse_layer(const char *name, int L, int *layer) {
    if (name[0] < '0' || name[0] > '9' || (name[0] == '0' && name[1] != '.')) return NULL;
    long value = 0;
    const char *p = name;
    while (*p >= '0' && *p <= '9') {
        value = value * 10 + (*p - '0');
        if (value >= L) return NULL;
        p++;
    }
    if (*p != '.') return NULL;
    *layer = (int)value;
    return p + 1;
}

// Maps a tensor name (its "transformer." prefix removed) to where it goes; 0 for names we do not
// read (the causal-mask buffers attn.bias and attn.masked_bias), -1 for unknown names.
static inline int hf_tensor_place(const char *name, const GPT2Config *config,
                                  HfTensorPlace *place) {
    size_t C = (size_t)config->channels;
    memset(place, 0, sizeof(*place));
    place->layer = -1;
    static const struct {
        const char *name;
        int tensor, transpose;
        size_t rows_per_C, cols_per_C; // HF shape in units of C; cols 0: rank 1
    } per_layer[HF_LAYER_TENSORS] = {
        {"ln_1.weight", 2, 0, 1, 0},        {"ln_1.bias", 3, 0, 1, 0},
        {"attn.c_attn.weight", 4, 1, 1, 3}, {"attn.c_attn.bias", 5, 0, 3, 0},
        {"attn.c_proj.weight", 6, 1, 1, 1}, {"attn.c_proj.bias", 7, 0, 1, 0},
        {"ln_2.weight", 8, 0, 1, 0},        {"ln_2.bias", 9, 0, 1, 0},
        {"mlp.c_fc.weight", 10, 1, 1, 4},   {"mlp.c_fc.bias", 11, 0, 4, 0},
        {"mlp.c_proj.weight", 12, 1, 4, 1}, {"mlp.c_proj.bias", 13, 0, 1, 0},
    };
    if (strncmp(name, "h.", 2) == 0) {
        int layer;
        const char *rest = hf_parse_layer(name + 2, config->num_layers, &layer);
        if (rest == NULL) return -1;
        if (strcmp(rest, "attn.bias") == 0 || strcmp(rest, "attn.masked_bias") == 0) return 0;
        for (int i = 0; i < HF_LAYER_TENSORS; i++) {
            if (strcmp(rest, per_layer[i].name) != 0) continue;
            place->tensor = per_layer[i].tensor;
            place->layer = layer;
            place->transpose = per_layer[i].transpose;
            place->rank = per_layer[i].cols_per_C ? 2 : 1;
            place->dims[0] = per_layer[i].rows_per_C * C;
            place->dims[1] = per_layer[i].cols_per_C * C;
            return 1;
        }
        return -1;
    }
    if (strcmp(name, "wte.weight") == 0 || strcmp(name, "lm_head.weight") == 0) {
        place->tensor = name[0] == 'w' ? 0 : -1;
        place->rank = 2;
        place->dims[0] = (size_t)config->vocab_size;
        place->dims[1] = C;
        return 1;
    }
    if (strcmp(name, "wpe.weight") == 0) {
        place->tensor = 1;
        place->rank = 2;
        place->dims[0] = (size_t)config->max_seq_len;
        place->dims[1] = C;
        return 1;
    }
    if (strcmp(name, "ln_f.weight") == 0 || strcmp(name, "ln_f.bias") == 0) {
        place->tensor = name[5] == 'w' ? 14 : 15;
        place->rank = 1;
        place->dims[0] = C;
        return 1;
    }
    return -1;
}

// The element of a tensor's bytes at index, as float.
static inline float hf_element(const uint8_t *data, int element_bytes, int is_bf16, size_t index) {
    if (element_bytes == 4) {
        float value;
        memcpy(&value, data + 4 * index, 4);
        return value;
    }
    uint16_t half;
    memcpy(&half, data + 2 * index, 2);
    return is_bf16 ? bf16_to_float(half) : f16_to_float(half);
}

// An opened model.safetensors: its JSON header parsed, the tensors' bytes after it.
typedef struct {
    char path[4096];
    MappedFile file;
    json_tokener *tokener;
    json_object *root;
    const uint8_t *buffer;
    uint64_t buffer_size;
} HfSafetensors;

static inline void hf_safetensors_open(HfSafetensors *st, const char *dir) {
    char *path = st->path;
    if (snprintf(path, sizeof(st->path), "%s/model.safetensors", dir) >= (int)sizeof(st->path)) {
        fatal("%s: path too long", dir);
    }
    MappedFile file = mmap_file_check(path);
    if (file.size < 8) {
        fatal("%s: header length: file is %zu bytes, shorter than the 8-byte header length", path,
              file.size);
    }
    uint64_t header_length = 0;
    for (int i = 7; i >= 0; i--) header_length = header_length << 8 | file.data[i];
    if (header_length < 2 || header_length > SAFETENSORS_MAX_HEADER ||
        header_length > file.size - 8) {
        fatal("%s: header length (bytes 0..7): expected 2..%llu (at most %u and the %zu bytes "
              "after it), found %llu",
              path,
              (unsigned long long)(file.size - 8 < SAFETENSORS_MAX_HEADER ? file.size - 8
                                                                          : SAFETENSORS_MAX_HEADER),
              SAFETENSORS_MAX_HEADER, file.size - 8, (unsigned long long)header_length);
    }
    st->file = file;
    st->root = hf_json_parse(path, "JSON header", &file, 8, (size_t)header_length, &st->tokener);
    st->buffer = file.data + 8 + header_length;
    st->buffer_size = file.size - 8 - header_length;
}

static inline void hf_safetensors_close(HfSafetensors *st) {
    json_object_put(st->root);
    json_tokener_free(st->tokener);
    hf_reading.root = NULL;
    hf_reading.tokener = NULL;
    mmap_file_close(&st->file);
}

// A header entry is an object with a string dtype (checked before a tensor's name decides whether
// it is read at all, so that a malformed entry is refused either way).
static inline void hf_tensor_entry_check(const char *path, const char *full_name,
                                         json_object *entry) {
    if (entry == NULL || !json_object_is_type(entry, json_type_object)) {
        fatal("%s: tensor %s: expected an object of dtype, shape, data_offsets", path, full_name);
    }
    json_object *dtype = NULL;
    json_object_object_get_ex(entry, "dtype", &dtype);
    if (!json_object_is_type(dtype, json_type_string)) {
        fatal("%s: tensor %s: dtype: missing or not a string", path, full_name);
    }
}

// One tensor's entry of the JSON header: checks its dtype (F32, BF16 or F16), its shape (rank
// dims) and its data_offsets (count * element size bytes within the buffer); returns its bytes.
static inline const uint8_t *hf_tensor_data(const HfSafetensors *st, const char *full_name,
                                            json_object *entry, int rank, const size_t dims[2],
                                            int *element_bytes_out, int *is_bf16) {
    const char *path = st->path;
    char shown[HF_SHOWN_MAX];
    json_object *dtype = NULL, *shape = NULL, *offsets_json = NULL;
    json_object_object_get_ex(entry, "dtype", &dtype);
    json_object_object_get_ex(entry, "shape", &shape);
    json_object_object_get_ex(entry, "data_offsets", &offsets_json);
    const char *type = json_object_get_string(dtype);
    int element_bytes = strcmp(type, "F32") == 0                                ? 4
                        : strcmp(type, "BF16") == 0 || strcmp(type, "F16") == 0 ? 2
                                                                                : 0;
    if (element_bytes == 0) {
        fatal("%s: tensor %s: dtype: expected F32, BF16 or F16, found %s", path, full_name,
              hf_shown(dtype, shown));
    }
    *element_bytes_out = element_bytes;
    *is_bf16 = strcmp(type, "BF16") == 0;
    if (!json_object_is_type(shape, json_type_array) ||
        json_object_array_length(shape) != (size_t)rank) {
        fatal("%s: tensor %s: shape: expected %d dimension(s), found %s", path, full_name, rank,
              hf_shown(shape, shown));
    }
    size_t count = 1;
    for (int d = 0; d < rank; d++) {
        json_object *dim = json_object_array_get_idx(shape, (size_t)d);
        if (!json_object_is_type(dim, json_type_int) ||
            json_object_get_int64(dim) != (int64_t)dims[d]) {
            if (rank == 1) {
                fatal("%s: tensor %s: shape: expected [%zu] from config.json, found %s", path,
                      full_name, dims[0], hf_shown(shape, shown));
            }
            fatal("%s: tensor %s: shape: expected [%zu, %zu] from config.json, found %s", path,
                  full_name, dims[0], dims[1], hf_shown(shape, shown));
        }
        count *= dims[d]; // within the caps of config: no overflow
    }
    if (!json_object_is_type(offsets_json, json_type_array) ||
        json_object_array_length(offsets_json) != 2) {
        fatal("%s: tensor %s: data_offsets: expected [begin, end]", path, full_name);
    }
    int64_t bounds[2];
    for (int k = 0; k < 2; k++) {
        json_object *bound = json_object_array_get_idx(offsets_json, (size_t)k);
        if (!json_object_is_type(bound, json_type_int)) {
            fatal("%s: tensor %s: data_offsets: expected two integers, found %s", path, full_name,
                  hf_shown(offsets_json, shown));
        }
        bounds[k] = json_object_get_int64(bound);
    }
    size_t bytes = size_mul_check(count, (size_t)element_bytes, path);
    if (bounds[0] < 0 || bounds[1] < bounds[0] || (uint64_t)bounds[1] > st->buffer_size ||
        (uint64_t)(bounds[1] - bounds[0]) != bytes) {
        fatal("%s: tensor %s: data_offsets: expected %zu bytes (%zu %s values) within the "
              "%llu bytes after the header, found [%lld, %lld]",
              path, full_name, bytes, count, type, (unsigned long long)st->buffer_size,
              (long long)bounds[0], (long long)bounds[1]);
    }
    return st->buffer + bounds[0];
}

static inline void hf_read_llama_params(const char *dir, const GPT2Config *config, float *params);

// Reads dir/model.safetensors into params (our layout, num_parameters of config; wte's padded
// rows V..Vp-1 zero), after hf_read_config filled config. params NULL: only checks the names,
// dtypes, shapes and offsets (so nothing is allocated for a file that cannot hold the model).
static inline void hf_read_params(const char *dir, const GPT2Config *config, float *params) {
    if (config->arch == MODEL_ARCH_LLAMA) {
        hf_read_llama_params(dir, config, params);
        return;
    }
    HfSafetensors st;
    hf_safetensors_open(&st, dir);
    const char *path = st.path;
    json_object *root = st.root;

    size_t sizes[NUM_PARAMETER_TENSORS], offsets[NUM_PARAMETER_TENSORS];
    gpt2_parameter_sizes(config, sizes);
    size_t total = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        offsets[i] = total;
        total += sizes[i];
    }
    int L = config->num_layers;
    // seen: 4 global tensors (wte, wpe, ln_f w/b) then L * 12 per-layer ones
    size_t slots = 4 + (size_t)L * HF_LAYER_TENSORS;
    unsigned char *seen = (unsigned char *)calloc_check(slots, 1, "safetensors names");
    hf_reading.seen = seen;
    const char *lm_head_data = NULL;
    int lm_head_bytes = 0, lm_head_bf16 = 0;
    if (params != NULL) memset(params, 0, total * sizeof(float)); // wte's padded rows stay zero
    struct json_object_iterator it = json_object_iter_begin(root);
    struct json_object_iterator end = json_object_iter_end(root);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        const char *raw_name = json_object_iter_peek_name(&it);
        char full_name[256]; // as it may appear in an error
        printable_text(raw_name, strlen(raw_name), full_name, sizeof(full_name));
        json_object *entry = json_object_iter_peek_value(&it);
        if (strcmp(raw_name, "__metadata__") == 0) continue;
        const char *name = strncmp(raw_name, "transformer.", 12) == 0 ? raw_name + 12 : raw_name;
        HfTensorPlace place;
        int known = hf_tensor_place(name, config, &place);
        if (known < 0) {
            fatal("%s: tensor %s: not a tensor of a GPT-2 with n_layer %d (expected wte, wpe, "
                  "h.0..h.%d.*, ln_f, lm_head)",
                  path, full_name, L, L - 1);
        }
        hf_tensor_entry_check(path, full_name, entry);
        if (known == 0) continue; // a buffer HF writes and ignores on load
        int element_bytes, is_bf16;
        const uint8_t *data =
            hf_tensor_data(&st, full_name, entry, place.rank, place.dims, &element_bytes, &is_bf16);
        size_t count = place.rank == 2 ? place.dims[0] * place.dims[1] : place.dims[0];
        size_t slot = place.tensor == -1 ? slots // lm_head: not a slot of its own
                      : place.layer < 0
                          ? (size_t)(place.tensor == 0   ? 0
                                     : place.tensor == 1 ? 1
                                                         : place.tensor - 12)
                          : 4 + (size_t)place.layer * HF_LAYER_TENSORS + (size_t)(place.tensor - 2);
        if (slot < slots && seen[slot]) {
            fatal("%s: tensor %s: given twice (with and without the transformer. prefix?)", path,
                  full_name);
        }
        if (place.tensor == -1) {
            if (lm_head_data != NULL) fatal("%s: tensor %s: given twice", path, full_name);
            lm_head_data = (const char *)data;
            lm_head_bytes = element_bytes;
            lm_head_bf16 = is_bf16;
            continue;
        }
        seen[slot] = 1;
        if (params == NULL) continue;
        float *dst = params + offsets[place.tensor];
        if (place.layer >= 0) dst += (size_t)place.layer * (sizes[place.tensor] / (size_t)L);
        if (place.transpose) { // HF (in, out) -> ours (out, in)
            size_t in = place.dims[0], out = place.dims[1];
            for (size_t i = 0; i < in; i++) {
                for (size_t o = 0; o < out; o++) {
                    dst[o * in + i] = hf_element(data, element_bytes, is_bf16, i * out + o);
                }
            }
        } else {
            for (size_t i = 0; i < count; i++) {
                dst[i] = hf_element(data, element_bytes, is_bf16, i);
            }
        }
    }
    for (size_t slot = 0; slot < slots; slot++) {
        if (seen[slot]) continue;
        static const char *const globals[4] = {"wte.weight", "wpe.weight", "ln_f.weight",
                                               "ln_f.bias"};
        static const char *const layer_names[HF_LAYER_TENSORS] = {
            "ln_1.weight",        "ln_1.bias",        "attn.c_attn.weight", "attn.c_attn.bias",
            "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",        "ln_2.bias",
            "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias"};
        if (slot < 4) fatal("%s: tensor %s: missing", path, globals[slot]);
        fatal("%s: tensor h.%zu.%s: missing (config.json: n_layer %d)", path,
              (slot - 4) / HF_LAYER_TENSORS, layer_names[(slot - 4) % HF_LAYER_TENSORS], L);
    }
    if (lm_head_data != NULL && params != NULL) { // must be the tied head, a copy of wte
        size_t count = (size_t)config->vocab_size * (size_t)config->channels;
        for (size_t i = 0; i < count; i++) {
            float value = hf_element((const uint8_t *)lm_head_data, lm_head_bytes, lm_head_bf16, i);
            if (memcmp(&value, &params[i], sizeof(float)) != 0) {
                fatal("%s: tensor lm_head.weight: differs from wte.weight at element %zu (%g, "
                      "%g): an untied output head is not implemented",
                      path, i, (double)value, (double)params[i]);
            }
        }
    }
    free(seen);
    hf_reading.seen = NULL;
    hf_safetensors_close(&st);
}

// A LlamaForCausalLM's tensors: "model.embed_tokens.weight", "model.norm.weight",
// "lm_head.weight", and per layer "model.layers.N." + these; nn.Linear's (out, in) is our layout,
// so nothing is transposed: q, k, v are row blocks of our qkvw, gate and up of our fcw.
#define HF_LLAMA_LAYER_TENSORS 9
static inline void hf_read_llama_params(const char *dir, const GPT2Config *config, float *params) {
    HfSafetensors st;
    hf_safetensors_open(&st, dir);
    const char *path = st.path;
    size_t sizes[NUM_PARAMETER_TENSORS], offsets[NUM_PARAMETER_TENSORS], total = 0;
    gpt2_parameter_sizes(config, sizes);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        offsets[i] = total;
        total += sizes[i];
    }
    int L = config->num_layers;
    size_t C = (size_t)config->channels, V = (size_t)config->vocab_size;
    size_t HS = (size_t)llama_head_size(config), F = (size_t)config->ffn;
    size_t NH = (size_t)config->num_heads, KV = (size_t)config->num_kv_heads;
    const struct {
        const char *name;
        int tensor;
        size_t rows, cols, first_row; // cols 0: rank 1; first_row: within our layer's tensor
    } globals[3] = {{"model.embed_tokens.weight", 0, V, C, 0},
                    {"model.norm.weight", 9, C, 0, 0},
                    {"lm_head.weight", 10, V, C, 0}},
      per_layer[HF_LLAMA_LAYER_TENSORS] = {
          {"input_layernorm.weight", 1, C, 0, 0},
          {"self_attn.q_proj.weight", 2, NH * HS, C, 0},
          {"self_attn.k_proj.weight", 2, KV * HS, C, NH * HS},
          {"self_attn.v_proj.weight", 2, KV * HS, C, (NH + KV) * HS},
          {"self_attn.o_proj.weight", 5, C, C, 0},
          {"post_attention_layernorm.weight", 6, C, 0, 0},
          {"mlp.gate_proj.weight", 7, F, C, 0},
          {"mlp.up_proj.weight", 7, F, C, F},
          {"mlp.down_proj.weight", 8, C, F, 0}};
    size_t slots = 3 + (size_t)L * HF_LLAMA_LAYER_TENSORS;
    unsigned char *seen = (unsigned char *)calloc_check(slots, 1, "safetensors names");
    hf_reading.seen = seen;
    if (params != NULL) memset(params, 0, total * sizeof(float)); // padded rows stay zero
    struct json_object_iterator it = json_object_iter_begin(st.root);
    struct json_object_iterator end = json_object_iter_end(st.root);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        const char *name = json_object_iter_peek_name(&it);
        char full_name[256]; // as it may appear in an error
        printable_text(name, strlen(name), full_name, sizeof(full_name));
        json_object *entry = json_object_iter_peek_value(&it);
        if (strcmp(name, "__metadata__") == 0) continue;
        int index = -1, layer = -1;
        for (int g = 0; g < 3; g++) {
            if (strcmp(name, globals[g].name) == 0) index = g;
        }
        int ignored = 0;
        if (index < 0 && strncmp(name, "model.layers.", 13) == 0) {
            const char *rest = hf_parse_layer(name + 13, L, &layer);
            for (int k = 0; rest != NULL && k < HF_LLAMA_LAYER_TENSORS; k++) {
                if (strcmp(rest, per_layer[k].name) == 0) index = k;
            }
            ignored = rest != NULL && strcmp(rest, "self_attn.rotary_emb.inv_freq") == 0;
        }
        if (ignored) continue; // a buffer older transformers wrote, recomputed on load
        if (index < 0) {
            fatal("%s: tensor %s: not a tensor of a LlamaForCausalLM with num_hidden_layers %d "
                  "(expected model.embed_tokens, model.layers.0..%d.*, model.norm, lm_head)",
                  path, full_name, L, L - 1);
        }
        hf_tensor_entry_check(path, full_name, entry);
        int tensor = layer < 0 ? globals[index].tensor : per_layer[index].tensor;
        size_t rows = layer < 0 ? globals[index].rows : per_layer[index].rows;
        size_t cols = layer < 0 ? globals[index].cols : per_layer[index].cols;
        size_t first_row = layer < 0 ? 0 : per_layer[index].first_row;
        size_t dims[2] = {rows, cols};
        int element_bytes, is_bf16;
        const uint8_t *data =
            hf_tensor_data(&st, full_name, entry, cols ? 2 : 1, dims, &element_bytes, &is_bf16);
        size_t slot =
            layer < 0 ? (size_t)index : 3 + (size_t)layer * HF_LLAMA_LAYER_TENSORS + (size_t)index;
        if (seen[slot]) fatal("%s: tensor %s: given twice", path, full_name);
        seen[slot] = 1;
        if (params == NULL) continue;
        float *dst = params + offsets[tensor] + first_row * (cols ? cols : 1);
        if (layer >= 0) dst += (size_t)layer * (sizes[tensor] / (size_t)L);
        size_t count = rows * (cols ? cols : 1);
        for (size_t i = 0; i < count; i++) dst[i] = hf_element(data, element_bytes, is_bf16, i);
    }
    for (size_t slot = 0; slot < slots; slot++) {
        if (seen[slot]) continue;
        if (slot < 3) fatal("%s: tensor %s: missing", path, globals[slot].name);
        fatal("%s: tensor model.layers.%zu.%s: missing (config.json: num_hidden_layers %d)", path,
              (slot - 3) / HF_LLAMA_LAYER_TENSORS,
              per_layer[(slot - 3) % HF_LLAMA_LAYER_TENSORS].name, L);
    }
    free(seen);
    hf_reading.seen = NULL;
    hf_safetensors_close(&st);
}

// ------------------------------------------------------------------------------------------------
// -e's model, a file or a HuggingFace directory: the shape first (a trainer checks its memory
// before allocating), then the parameters.

typedef struct {
    const char *path;
    FILE *file;  // a model file; NULL for a directory
    int version; // 3 or 5 for a model file, 0 for a directory
} ModelSource;

static inline int path_is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// Opens path (a v3/v5 model file, or a directory with config.json and model.safetensors) and
// reads its shape into config.
static inline void model_source_open(ModelSource *source, const char *path, GPT2Config *config) {
    memset(source, 0, sizeof(*source));
    source->path = path;
    if (path_is_directory(path)) {
        char config_path[4096];
        snprintf(config_path, sizeof(config_path), "%s/config.json", path);
        if (!file_exists(config_path)) {
            fatal("%s: is a directory without config.json: expected a model file (.bin) or a "
                  "HuggingFace GPT-2 directory (config.json + model.safetensors)",
                  path);
        }
        hf_read_config(path, config);
        hf_read_params(path, config, NULL);
        return;
    }
    source->file = fopen_check(path, "rb");
    source->version = model_read_header(source->file, path, config);
}

// Reads the parameters (fp32, our layout) of an opened source, and closes it.
static inline void model_source_read_params(ModelSource *source, const GPT2Config *config,
                                            float *params, size_t num_parameters) {
    if (source->file == NULL) {
        hf_read_params(source->path, config, params);
        return;
    }
    model_read_params(source->file, source->path, source->version, params, num_parameters);
    fclose(source->file);
    source->file = NULL;
}

// Closes an opened source without reading its parameters (a caller that needed the shape only).
static inline void model_source_close(ModelSource *source) {
    if (source->file != NULL) fclose(source->file);
    source->file = NULL;
}

#endif // LLMC_SAFETENSORS_H
