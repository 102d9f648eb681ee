// Loading a BPE vocabulary from the files it comes in: GPT-2's encoder.json + vocab.bpe (JSON
// through json-c: link with -ljson-c), tiktoken's .tiktoken rank files, and our tokenizer file
// (llmc/bpe.h). bpe_load picks the reader from the path. Each reader checks what it reads and
// names the file, and the line or byte, in its one-line error.
#ifndef LLMC_BPE_LOAD_H
#define LLMC_BPE_LOAD_H

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bpe.h"
#include "mmap_file.h"
#include "utils.h"

// GPT-2's files spell bytes as printable characters: bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF
// stand for themselves, the other 68 bytes are U+0100.. in increasing byte order.
static inline void gpt2_alphabet(int codepoint_to_byte[324]) {
    for (int cp = 0; cp < 324; cp++) codepoint_to_byte[cp] = -1;
    int next_extra = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        codepoint_to_byte[printable ? b : next_extra++] = b;
    }
}

// Converts a token spelled in GPT-2's alphabet (UTF-8) to its bytes; returns the byte count or -1.
static inline int gpt2_alphabet_decode(const int codepoint_to_byte[324], const uint8_t *text,
                                       size_t n, uint8_t *out, size_t out_capacity) {
    size_t pos = 0, count = 0;
    while (pos < n) {
        uint32_t cp;
        int length = utf8_decode(text, n, pos, &cp);
        if (length == 0 || cp >= 324 || codepoint_to_byte[cp] < 0 || count == out_capacity) {
            return -1;
        }
        out[count++] = (uint8_t)codepoint_to_byte[cp];
        pos += (size_t)length;
    }
    return (int)count;
}

// GPT-2: encoder.json (token -> id) and vocab.bpe ('#version' line, then one merge "a b" a line).
// Tokens that are neither single bytes nor made by a merge are special (<|endoftext|>).
static inline void bpe_load_gpt2(BPE *bpe, const char *encoder_path, const char *merges_path) {
    int alphabet[324];
    gpt2_alphabet(alphabet);
    MappedFile json_file = mmap_file_check(encoder_path);
    if (json_file.size == 0) fatal("%s: empty file, expected GPT-2's encoder.json", encoder_path);
    json_tokener *tokener = json_tokener_new();
    json_object *root =
        json_tokener_parse_ex(tokener, (const char *)json_file.data, (int)json_file.size);
    enum json_tokener_error error = json_tokener_get_error(tokener);
    if (root == NULL || error != json_tokener_success) {
        fatal("%s: not valid JSON at byte %zu: %s", encoder_path,
              json_tokener_get_parse_end(tokener),
              error == json_tokener_continue ? "unexpected end of file"
                                             : json_tokener_error_desc(error));
    }
    size_t parse_end = json_tokener_get_parse_end(tokener);
    while (parse_end < json_file.size && strchr(" \t\r\n", json_file.data[parse_end])) parse_end++;
    if (parse_end != json_file.size) {
        fatal("%s: unexpected data after the JSON object at byte %zu", encoder_path, parse_end);
    }
    if (!json_object_is_type(root, json_type_object)) {
        fatal("%s: expected a JSON object of token -> id, found a %s", encoder_path,
              json_type_to_name(json_object_get_type(root)));
    }
    int V = json_object_object_length(root);
    bpe_begin(bpe, V, encoder_path);
    char shown[4 * 40 + 1]; // a token in an error: its first 40 bytes, printable
    json_object_object_foreach(root, key, value) {
        if (!json_object_is_type(value, json_type_int)) {
            fatal("%s: token \"%s\": id is a %s, expected an integer", encoder_path,
                  printable_text(key, 40, shown, sizeof(shown)),
                  json_type_to_name(json_object_get_type(value)));
        }
        int64_t id = json_object_get_int64(value);
        if (id < 0 || id >= V) {
            fatal("%s: token \"%s\": id %lld outside 0..%d", encoder_path,
                  printable_text(key, 40, shown, sizeof(shown)), (long long)id, V - 1);
        }
        uint8_t bytes[BPE_MAX_TOKEN_BYTES];
        int n =
            gpt2_alphabet_decode(alphabet, (const uint8_t *)key, strlen(key), bytes, sizeof(bytes));
        if (n <= 0) {
            fatal("%s: token \"%s\" (id %lld) is not spelled in GPT-2's byte alphabet or is "
                  "empty or too long",
                  encoder_path, printable_text(key, 40, shown, sizeof(shown)), (long long)id);
        }
        bpe_set_token(bpe, (int32_t)id, bytes, (size_t)n);
    }
    json_object_put(root);
    json_tokener_free(tokener);
    mmap_file_close(&json_file);
    bpe_index_tokens(bpe);

    MappedFile merges_file = mmap_file_check(merges_path);
    bpe->source = merges_path;
    const char *text = (const char *)merges_file.data;
    size_t size = merges_file.size, pos = 0;
    size_t line_number = 0;
    while (pos < size) {
        const char *line = text + pos;
        const char *newline = (const char *)memchr(line, '\n', size - pos);
        size_t length = newline ? (size_t)(newline - line) : size - pos;
        pos += length + (newline ? 1 : 0);
        line_number++;
        if (length > 0 && line[length - 1] == '\r') length--;
        if (line_number == 1) {
            if (length < 8 || memcmp(line, "#version", 8) != 0) {
                fatal("%s: line 1: expected a '#version' line (GPT-2's vocab.bpe)", merges_path);
            }
            continue;
        }
        if (length == 0) continue;
        const char *space = (const char *)memchr(line, ' ', length);
        if (space == NULL || space == line || space == line + length - 1 ||
            memchr(space + 1, ' ', (size_t)(line + length - space - 1)) != NULL) {
            fatal("%s: line %zu: expected two tokens separated by one space", merges_path,
                  line_number);
        }
        int32_t ids[2];
        const char *starts[2] = {line, space + 1};
        size_t lengths[2] = {(size_t)(space - line), (size_t)(line + length - space - 1)};
        for (int k = 0; k < 2; k++) {
            uint8_t bytes[BPE_MAX_TOKEN_BYTES];
            int n = gpt2_alphabet_decode(alphabet, (const uint8_t *)starts[k], lengths[k], bytes,
                                         sizeof(bytes));
            ids[k] = n > 0 ? bpe_lookup(bpe, bytes, (size_t)n) : -1;
            if (ids[k] < 0) {
                char shown[4 * BPE_MAX_TOKEN_BYTES + 1];
                fatal("%s: line %zu: \"%s\" is not a token of %s", merges_path, line_number,
                      printable_text(starts[k], lengths[k], shown, sizeof(shown)), encoder_path);
            }
        }
        bpe_add_merge(bpe, ids[0], ids[1]);
    }
    if (line_number == 0) fatal("%s: empty file, expected GPT-2's vocab.bpe", merges_path);
    mmap_file_close(&merges_file);
    bpe->source = encoder_path;
    bpe_finish(bpe, NULL, 0, 1, -1, SPLIT_GPT2);
}

static inline int base64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// Decodes standard base64 (with '=' padding); returns the byte count or -1.
static inline int base64_decode(const char *text, size_t n, uint8_t *out, size_t out_capacity) {
    if (n == 0 || n % 4 != 0) return -1;
    size_t count = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (text[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad > 0) return -1;
                v[k] = base64_value((uint8_t)text[i + k]);
                if (v[k] < 0) return -1;
            }
        }
        uint32_t word = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) |
                        (uint32_t)v[3];
        uint8_t bytes[3] = {(uint8_t)(word >> 16), (uint8_t)(word >> 8), (uint8_t)word};
        for (int k = 0; k < 3 - pad; k++) {
            if (count == out_capacity) return -1;
            out[count++] = bytes[k];
        }
    }
    return (int)count;
}

// tiktoken's rank files: "base64-token rank" a line, ranks 0..n-1. The token id is its rank; the
// special token <|endoftext|> gets id n (GPT-2's, r50k's and p50k's convention). Each multi-byte
// token is recorded as the merge of the first split into two tokens of lower rank.
static inline void bpe_load_tiktoken(BPE *bpe, const char *path) {
    MappedFile file = mmap_file_check(path);
    const char *text = (const char *)file.data;
    size_t size = file.size, pos = 0, line_number = 0, num_tokens = 0;
    for (size_t i = 0; i < size; i++) num_tokens += text[i] == '\n';
    if (size > 0 && text[size - 1] != '\n') num_tokens++;
    if (num_tokens < 256 || num_tokens >= BPE_MAX_VOCAB) { // the +1 below stays an int
        fatal("%s: %zu lines, expected 256..%d ranked tokens", path, num_tokens, BPE_MAX_VOCAB - 1);
    }
    bpe_begin(bpe, (int)num_tokens + 1, path);
    size_t count = 0;
    while (pos < size) {
        const char *line = text + pos;
        const char *newline = (const char *)memchr(line, '\n', size - pos);
        size_t length = newline ? (size_t)(newline - line) : size - pos;
        pos += length + (newline ? 1 : 0);
        line_number++;
        if (length == 0) continue;
        const char *space = (const char *)memchr(line, ' ', length);
        if (space == NULL) fatal("%s: line %zu: expected 'base64 rank'", path, line_number);
        uint8_t bytes[BPE_MAX_TOKEN_BYTES];
        int n = base64_decode(line, (size_t)(space - line), bytes, sizeof(bytes));
        if (n <= 0) fatal("%s: line %zu: bad base64 token", path, line_number);
        char number[24];
        size_t digits = (size_t)(line + length - space - 1);
        if (digits == 0 || digits >= sizeof(number))
            fatal("%s: line %zu: bad rank", path, line_number);
        memcpy(number, space + 1, digits);
        number[digits] = '\0';
        char *end = NULL;
        long rank = strtol(number, &end, 10);
        if (*end != '\0' || rank < 0 || (size_t)rank >= num_tokens) {
            char shown[4 * sizeof(number)];
            fatal("%s: line %zu: rank '%s' is not in 0..%zu", path, line_number,
                  printable_text(number, digits, shown, sizeof(shown)), num_tokens - 1);
        }
        bpe_set_token(bpe, (int32_t)rank, bytes, (size_t)n);
        count++;
    }
    if (count != num_tokens) fatal("%s: %zu ranked tokens but %zu lines", path, count, num_tokens);
    bpe_set_token(bpe, (int32_t)num_tokens, (const uint8_t *)"<|endoftext|>", 13);
    bpe_index_tokens(bpe);
    for (size_t id = 0; id < num_tokens; id++) {
        size_t n = bpe->length[id];
        if (n < 2) continue;
        const uint8_t *bytes = bpe_token_bytes(bpe, (int32_t)id);
        int32_t left = -1, right = -1;
        for (size_t split = 1; split < n && left < 0; split++) {
            int32_t a = bpe_lookup(bpe, bytes, split),
                    b = bpe_lookup(bpe, bytes + split, n - split);
            if (a >= 0 && b >= 0 && (size_t)a < id && (size_t)b < id) {
                left = a;
                right = b;
            }
        }
        if (left < 0) {
            fatal("%s: token of rank %zu cannot be made from two tokens of lower rank", path, id);
        }
        bpe_add_merge(bpe, left, right);
    }
    mmap_file_close(&file);
    int32_t eot = (int32_t)num_tokens;
    bpe_finish(bpe, &eot, 1, 0, eot, SPLIT_GPT2);
}

static inline int path_ends_with(const char *path, const char *suffix) {
    size_t n = strlen(path), k = strlen(suffix);
    return n >= k && strcmp(path + n - k, suffix) == 0;
}

// Loads a vocabulary from: a directory holding encoder.json + vocab.bpe; an encoder.json (its
// vocab.bpe beside it); a .tiktoken rank file; or our tokenizer file (anything else).
static inline void bpe_load(BPE *bpe, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) fatal("cannot open vocabulary %s: %s", path, strerror(errno));
    char encoder[4096], merges[4096];
    if (S_ISDIR(st.st_mode) || path_ends_with(path, ".json")) {
        if (S_ISDIR(st.st_mode)) {
            snprintf(encoder, sizeof(encoder), "%s/encoder.json", path);
            snprintf(merges, sizeof(merges), "%s/vocab.bpe", path);
        } else {
            snprintf(encoder, sizeof(encoder), "%s", path);
            const char *slash = strrchr(path, '/');
            int dir_length = slash ? (int)(slash - path) : 1;
            snprintf(merges, sizeof(merges), "%.*s/vocab.bpe", dir_length, slash ? path : ".");
        }
        // the error names the vocabulary paths rather than a bare "cannot open"
        if (!file_exists(encoder))
            fatal("%s: no encoder.json (GPT-2 vocabulary) at %s", path, encoder);
        if (!file_exists(merges)) fatal("%s: no vocab.bpe (GPT-2 merges) at %s", path, merges);
        bpe_load_gpt2(bpe, encoder, merges);
    } else if (path_ends_with(path, ".tiktoken")) {
        bpe_load_tiktoken(bpe, path);
    } else {
        bpe_read_file(bpe, path);
    }
}

#endif // LLMC_BPE_LOAD_H
