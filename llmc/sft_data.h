// Instruction data for supervised fine-tuning: JSON records of four formats -> conversations ->
// tokens with a loss mask (llmc/chat_template.h) -> rows of T+1 tokens packed with whole
// conversations. Used by `tokenizer prepare --sft` (needs json-c).
//
//   alpaca    {"instruction", "input" (optional), "output"}: user = instruction, then a blank line
//             and input when it is not empty; assistant = output
//   messages  {"messages": [{"role": "system"|"user"|"assistant", "content"}, ...]}
//   sharegpt  {"conversations": [{"from": "system"|"human"|"gpt", "value"}, ...]}
//             ("user" and "assistant" are accepted for "human" and "gpt")
//   gsm8k     {"question", "answer"}: user = question, assistant = answer (with its "#### N")
//
// Packing: rows are filled from a buffer of pending conversations, each time with the longest one
// that still fits (best fit), so little of a row is padding; a row is closed when none fits and
// the rest is padded with <|endoftext|> whose mask is 0. A conversation longer than T+1 tokens is
// cut to T+1 and gets a row of its own. Conversations in one row are not masked from each other in
// attention (as in pretraining on packed documents); each starts with <|endoftext|>.
#ifndef LLMC_SFT_DATA_H
#define LLMC_SFT_DATA_H

#include <json-c/json.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bpe.h"
#include "chat_template.h"
#include "mmap_file.h"
#include "utils.h"

typedef enum { SFT_ALPACA, SFT_MESSAGES, SFT_SHAREGPT, SFT_GSM8K, SFT_NUM_FORMATS } SFTFormat;

static const char *const sft_format_names[SFT_NUM_FORMATS] = {"alpaca", "messages", "sharegpt",
                                                              "gsm8k"};

static inline int sft_format_from_name(const char *name, SFTFormat *format) {
    for (int k = 0; k < SFT_NUM_FORMATS; k++) {
        if (strcmp(name, sft_format_names[k]) == 0) {
            *format = (SFTFormat)k;
            return 1;
        }
    }
    return 0;
}

// Text a conversation's messages point into when a record's strings must be joined (alpaca).
typedef struct {
    char *data;
    size_t size, capacity;
} SFTText;

static inline void sft_text_set(SFTText *text, const char *a, size_t a_length, const char *sep,
                                const char *b, size_t b_length) {
    size_t sep_length = strlen(sep);
    size_t need = a_length + sep_length + b_length + 1;
    if (need > text->capacity) {
        text->capacity = need * 2;
        text->data = (char *)realloc(text->data, text->capacity);
        if (text->data == NULL) fatal("out of memory");
    }
    memcpy(text->data, a, a_length);
    memcpy(text->data + a_length, sep, sep_length);
    memcpy(text->data + a_length + sep_length, b, b_length);
    text->size = a_length + sep_length + b_length;
    text->data[text->size] = '\0';
}

// The string field name of object: 1 and its text, or 0 with an error naming the field (a missing
// optional field gives 1 and an empty string).
static inline int sft_string_field(json_object *object, const char *name, int optional,
                                   const char **text, size_t *length, char *error,
                                   size_t error_size) {
    json_object *value;
    *text = "";
    *length = 0;
    if (!json_object_object_get_ex(object, name, &value) || value == NULL) {
        if (optional) return 1;
        snprintf(error, error_size, "missing field '%s'", name);
        return 0;
    }
    if (!json_object_is_type(value, json_type_string)) {
        snprintf(error, error_size, "field '%s' is a JSON %s, expected a string", name,
                 json_type_to_name(json_object_get_type(value)));
        return 0;
    }
    *text = json_object_get_string(value);
    *length = (size_t)json_object_get_string_len(value);
    return 1;
}

// messages / sharegpt: an array of turns, each an object with a role and a text field.
static inline int sft_turns(json_object *record, const char *list_name, const char *role_name,
                            const char *text_name, Conversation *conv, char *error,
                            size_t error_size) {
    json_object *list;
    if (!json_object_object_get_ex(record, list_name, &list) || list == NULL) {
        snprintf(error, error_size, "missing field '%s'", list_name);
        return 0;
    }
    if (!json_object_is_type(list, json_type_array)) {
        snprintf(error, error_size, "field '%s' is a JSON %s, expected an array", list_name,
                 json_type_to_name(json_object_get_type(list)));
        return 0;
    }
    size_t n = json_object_array_length(list);
    for (size_t i = 0; i < n; i++) {
        json_object *turn = json_object_array_get_idx(list, i);
        char field[128];
        if (turn == NULL || !json_object_is_type(turn, json_type_object)) {
            snprintf(error, error_size, "%s[%zu] is not a JSON object", list_name, i);
            return 0;
        }
        const char *role_text, *text;
        size_t role_length, length;
        char inner[256];
        if (!sft_string_field(turn, role_name, 0, &role_text, &role_length, inner, sizeof(inner)) ||
            !sft_string_field(turn, text_name, 0, &text, &length, inner, sizeof(inner))) {
            snprintf(error, error_size, "%s[%zu]: %s", list_name, i, inner);
            return 0;
        }
        ChatRole role;
        if (strcmp(role_text, "system") == 0) {
            role = CHAT_SYSTEM;
        } else if (strcmp(role_text, "user") == 0 || strcmp(role_text, "human") == 0) {
            role = CHAT_USER;
        } else if (strcmp(role_text, "assistant") == 0 || strcmp(role_text, "gpt") == 0) {
            role = CHAT_ASSISTANT;
        } else {
            char shown[4 * 40 + 1];
            snprintf(field, sizeof(field), "%s[%zu].%s", list_name, i, role_name);
            snprintf(error, error_size,
                     "field '%s' is '%s', expected system, user/human or assistant/gpt", field,
                     printable_text(role_text, 40, shown, sizeof(shown)));
            return 0;
        }
        conversation_add(conv, role, text, length);
    }
    const char *problem = conversation_problem(conv);
    if (problem != NULL) {
        snprintf(error, error_size, "field '%s': %s", list_name, problem);
        return 0;
    }
    return 1;
}

// One JSON record -> conv (its messages point into record and scratch, valid while both live).
// Returns 0 with a one-line error naming the field.
static inline int sft_record_to_conversation(json_object *record, SFTFormat format,
                                             Conversation *conv, SFTText *scratch, char *error,
                                             size_t error_size) {
    conv->num_messages = 0;
    if (!json_object_is_type(record, json_type_object)) {
        snprintf(error, error_size, "expected a JSON object, found a %s",
                 json_type_to_name(json_object_get_type(record)));
        return 0;
    }
    const char *a, *b, *c;
    size_t a_length, b_length, c_length;
    switch (format) {
    case SFT_ALPACA:
        if (!sft_string_field(record, "instruction", 0, &a, &a_length, error, error_size) ||
            !sft_string_field(record, "input", 1, &b, &b_length, error, error_size) ||
            !sft_string_field(record, "output", 0, &c, &c_length, error, error_size)) {
            return 0;
        }
        if (b_length > 0) {
            sft_text_set(scratch, a, a_length, "\n\n", b, b_length);
            conversation_add(conv, CHAT_USER, scratch->data, scratch->size);
        } else {
            conversation_add(conv, CHAT_USER, a, a_length);
        }
        conversation_add(conv, CHAT_ASSISTANT, c, c_length);
        break;
    case SFT_GSM8K:
        if (!sft_string_field(record, "question", 0, &a, &a_length, error, error_size) ||
            !sft_string_field(record, "answer", 0, &b, &b_length, error, error_size)) {
            return 0;
        }
        conversation_add(conv, CHAT_USER, a, a_length);
        conversation_add(conv, CHAT_ASSISTANT, b, b_length);
        break;
    case SFT_MESSAGES:
        return sft_turns(record, "messages", "role", "content", conv, error, error_size);
    case SFT_SHAREGPT:
        return sft_turns(record, "conversations", "from", "value", conv, error, error_size);
    default: fatal("internal: SFT format %d", (int)format);
    }
    return 1;
}

// ----------------------------------------------------------------------------------------------
// rendered conversations and packing

typedef struct {
    TokenList tokens; // all conversations back to back
    TokenList mask;   // one 0/1 per token
    size_t *offsets;  // conversation i is tokens [offsets[i], offsets[i + 1])
    size_t count, capacity;
} SFTConversations;

static inline void sft_conversations_add(SFTConversations *all, const BPE *bpe,
                                         const ChatTokens *chat, const Conversation *conv,
                                         BPEWork *work) {
    if (all->count + 2 > all->capacity) {
        all->capacity = all->capacity ? 2 * all->capacity : 1024;
        all->offsets = (size_t *)realloc(all->offsets, all->capacity * sizeof(size_t));
        if (all->offsets == NULL) fatal("out of memory");
    }
    if (all->count == 0) all->offsets[0] = 0;
    chat_render(bpe, chat, conv, 0, &all->tokens, &all->mask, work);
    all->count++;
    all->offsets[all->count] = all->tokens.size;
}

static inline void sft_conversations_free(SFTConversations *all) {
    token_list_free(&all->tokens);
    token_list_free(&all->mask);
    free(all->offsets);
    memset(all, 0, sizeof(*all));
}

// `tokenizer prepare --sft`'s reader: every record of one JSON array or JSON Lines file (told
// apart by the first character), rendered into all. Any problem is fatal, naming the file, the
// line and the field; so is invalid UTF-8 in a message unless allow_invalid.
static inline size_t sft_read_file(const char *path, SFTFormat format, int allow_invalid,
                                   const BPE *bpe, const ChatTokens *chat, SFTConversations *all,
                                   BPEWork *work) {
    MappedFile mapped = mmap_file_check(path);
    const uint8_t *data = mapped.data;
    size_t size = mapped.size, pos = 0, records = 0;
    if (size > (size_t)INT_MAX) { // json-c takes an int length
        fatal("%s: %zu bytes: SFT inputs are limited to 2 GB a file (split it)", path, size);
    }
    while (pos < size && strchr(" \t\r\n", data[pos]) != NULL) pos++;
    if (pos == size) fatal("%s: empty file: no records", path);
    int is_array = data[pos] == '[';
    if (is_array) pos++;
    json_tokener *tokener = json_tokener_new();
    if (tokener == NULL) fatal("out of memory");
    Conversation conv = {0};
    SFTText scratch = {0};
    size_t line = 1, line_start = 0; // line of byte line_start: counted on as records move forward
    for (;;) {
        while (pos < size && strchr(" \t\r\n", data[pos]) != NULL) pos++;
        if (is_array) {
            if (pos < size && data[pos] == ']') break;
            if (records > 0) {
                if (pos >= size || data[pos] != ',') {
                    fatal("%s: line %zu: expected ',' or ']' after record %zu of the JSON array",
                          path, line_of(data, pos < size ? pos : size - 1), records);
                }
                pos++;
                while (pos < size && strchr(" \t\r\n", data[pos]) != NULL) pos++;
            }
            if (pos >= size)
                fatal("%s: line %zu: the JSON array is not closed", path, line_of(data, size - 1));
        } else if (pos >= size) {
            break;
        }
        for (; line_start < pos; line_start++) line += data[line_start] == '\n';
        size_t end = size;
        if (!is_array) { // one record per line
            const uint8_t *newline = (const uint8_t *)memchr(data + pos, '\n', size - pos);
            if (newline != NULL) end = (size_t)(newline - data);
        }
        json_tokener_reset(tokener);
        json_object *record =
            json_tokener_parse_ex(tokener, (const char *)data + pos, (int)(end - pos));
        enum json_tokener_error error = json_tokener_get_error(tokener);
        if (record == NULL || error != json_tokener_success) {
            fatal("%s: line %zu: not valid JSON: %s", path, line,
                  error == json_tokener_continue ? "the record ends inside a value"
                                                 : json_tokener_error_desc(error));
        }
        size_t parse_end = pos + json_tokener_get_parse_end(tokener);
        if (!is_array) {
            while (parse_end < end && strchr(" \t\r", data[parse_end]) != NULL) parse_end++;
            if (parse_end != end) {
                fatal("%s: line %zu: unexpected text after the JSON record", path, line);
            }
        }
        char message[512];
        if (!sft_record_to_conversation(record, format, &conv, &scratch, message,
                                        sizeof(message))) {
            fatal("%s: line %zu: %s (format %s)", path, line, message, sft_format_names[format]);
        }
        if (!allow_invalid) {
            for (int m = 0; m < conv.num_messages; m++) {
                const ChatMessage *msg = &conv.messages[m];
                size_t bad = utf8_first_invalid((const uint8_t *)msg->text, msg->length);
                if (bad < msg->length) {
                    fatal("%s: line %zu: invalid UTF-8 byte 0x%02x in the %s message %s", path,
                          line, (unsigned char)msg->text[bad], chat_role_names[msg->role],
                          INVALID_UTF8_HINT);
                }
            }
        }
        sft_conversations_add(all, bpe, chat, &conv, work);
        json_object_put(record);
        records++;
        pos = parse_end;
    }
    json_tokener_free(tokener);
    conversation_free(&conv);
    free(scratch.data);
    mmap_file_close(&mapped);
    if (records == 0) fatal("%s: no records", path);
    return records;
}

typedef struct {
    TokenList tokens; // rows * (T+1)
    TokenList mask;
    size_t rows;
    size_t truncated; // conversations cut to T+1 tokens
    size_t dropped;   // conversations with nothing trained left after the cut
    size_t packed;    // conversations in the rows
    size_t padding;   // padding tokens
    size_t trained;   // tokens with mask 1
} SFTPacked;

#define SFT_PACK_BUFFER 1000

// Packs conversations, in order through a buffer of SFT_PACK_BUFFER pending ones, into rows of
// T+1 tokens (see the top of this file). Deterministic.
static inline void sft_pack(const SFTConversations *all, int T, int32_t pad_token, SFTPacked *out) {
    memset(out, 0, sizeof(*out));
    size_t row_length = (size_t)T + 1;
    size_t *pending = (size_t *)malloc_check(SFT_PACK_BUFFER * sizeof(size_t), "pack buffer");
    size_t num_pending = 0, next = 0;
    for (;;) {
        // refill the buffer in input order; drop what cannot train anything
        while (num_pending < SFT_PACK_BUFFER && next < all->count) {
            size_t i = next++;
            size_t start = all->offsets[i], length = all->offsets[i + 1] - start;
            if (length > row_length) {
                out->truncated++;
                length = row_length;
            }
            int trains = 0;
            for (size_t k = 1; k < length && !trains; k++) trains = all->mask.data[start + k];
            if (!trains) {
                out->dropped++;
                continue;
            }
            pending[num_pending++] = i;
        }
        if (num_pending == 0) break;
        size_t used = 0;
        for (;;) {
            size_t best = SIZE_MAX, best_length = 0;
            for (size_t p = 0; p < num_pending; p++) {
                size_t i = pending[p];
                size_t length = all->offsets[i + 1] - all->offsets[i];
                if (length > row_length) length = row_length;
                if (length <= row_length - used && length > best_length) {
                    best = p;
                    best_length = length;
                }
            }
            if (best == SIZE_MAX) break;
            size_t start = all->offsets[pending[best]];
            for (size_t k = 0; k < best_length; k++) {
                token_list_push(&out->tokens, all->tokens.data[start + k]);
                token_list_push(&out->mask, all->mask.data[start + k]);
                out->trained += (size_t)all->mask.data[start + k];
            }
            used += best_length;
            out->packed++;
            // keep the buffer in input order so ties go to the earliest conversation
            memmove(pending + best, pending + best + 1, (num_pending - best - 1) * sizeof(size_t));
            num_pending--;
        }
        for (; used < row_length; used++) {
            token_list_push(&out->tokens, pad_token);
            token_list_push(&out->mask, 0);
            out->padding++;
        }
        out->rows++;
    }
    free(pending);
}

static inline void sft_packed_free(SFTPacked *packed) {
    token_list_free(&packed->tokens);
    token_list_free(&packed->mask);
}

#endif // LLMC_SFT_DATA_H
