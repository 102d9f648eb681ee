// The chat template of supervised fine-tuning (SFT), shared by `tokenizer prepare --sft`,
// `tokenizer show` and `chat`, so training data and chat prompts are rendered by the same code.
//
// A conversation is rendered as
//   <|endoftext|> [<|system_start|> system <|system_end|>]
//   <|user_start|> user <|user_end|> <|assistant_start|> answer <|assistant_end|> ...
// Message text is encoded as ordinary text: a message that contains "<|user_end|>" cannot end its
// turn. The loss mask is 1 on the tokens the model learns to produce (assistant content and its
// <|assistant_end|>) and 0 on everything else; mask[i] is about token i as a *target* (predicted
// from the tokens before it).
//
// The six chat tokens are special tokens appended to the vocabulary in a fixed order (GPT-2:
// ids 50257..50262, inside the padded embedding rows of Vp = 50304) and recorded in the tokenizer
// file like <|endoftext|> (docs/formats.md); they are found again by their text.
#ifndef LLMC_CHAT_TEMPLATE_H
#define LLMC_CHAT_TEMPLATE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "utils.h"

typedef enum { CHAT_USER = 0, CHAT_ASSISTANT = 1, CHAT_SYSTEM = 2, CHAT_NUM_ROLES = 3 } ChatRole;

static const char *const chat_role_names[CHAT_NUM_ROLES] = {"user", "assistant", "system"};

// In the order they are appended to a vocabulary: start and end of each role.
#define CHAT_NUM_SPECIALS 6
static const char *const chat_special_texts[CHAT_NUM_SPECIALS] = {
    "<|user_start|>",    "<|user_end|>",     "<|assistant_start|>",
    "<|assistant_end|>", "<|system_start|>", "<|system_end|>"};

typedef struct {
    int32_t eot; // <|endoftext|>: starts every conversation
    int32_t start[CHAT_NUM_ROLES];
    int32_t end[CHAT_NUM_ROLES];
} ChatTokens;

typedef struct {
    ChatRole role;
    const char *text; // not owned
    size_t length;
} ChatMessage;

typedef struct {
    ChatMessage *messages;
    int num_messages, capacity;
} Conversation;

static inline void conversation_add(Conversation *conv, ChatRole role, const char *text,
                                    size_t length) {
    if (conv->num_messages == conv->capacity) {
        conv->capacity = conv->capacity ? 2 * conv->capacity : 8;
        conv->messages =
            (ChatMessage *)realloc(conv->messages, (size_t)conv->capacity * sizeof(ChatMessage));
        if (conv->messages == NULL) fatal("out of memory growing a conversation");
    }
    ChatMessage *m = &conv->messages[conv->num_messages++];
    m->role = role;
    m->text = text;
    m->length = length;
}

static inline void conversation_free(Conversation *conv) {
    free(conv->messages);
    memset(conv, 0, sizeof(*conv));
}

// NULL if the conversation can be trained on, else what is wrong with it: an optional system
// message first, then user and assistant taking turns, starting with user, ending with assistant.
static inline const char *conversation_problem(const Conversation *conv) {
    int first = 0;
    if (conv->num_messages > 0 && conv->messages[0].role == CHAT_SYSTEM) first = 1;
    if (conv->num_messages - first < 2) return "needs at least one user and one assistant message";
    for (int i = first; i < conv->num_messages; i++) {
        ChatRole want = (i - first) % 2 == 0 ? CHAT_USER : CHAT_ASSISTANT;
        if (conv->messages[i].role != want) {
            return conv->messages[i].role == CHAT_SYSTEM
                       ? "a system message may only come first"
                       : "user and assistant messages must alternate, starting with user";
        }
    }
    if (conv->messages[conv->num_messages - 1].role != CHAT_ASSISTANT) {
        return "the last message must be the assistant's";
    }
    return NULL;
}

// Token id of text in bpe, or -1.
static inline int32_t chat_find_token(const BPE *bpe, const char *text) {
    int32_t id = bpe_lookup(bpe, (const uint8_t *)text, strlen(text));
    return id >= 0 && bpe->kind[id] == BPE_KIND_SPECIAL ? id : -1;
}

static inline int chat_has_specials(const BPE *bpe) {
    for (int k = 0; k < CHAT_NUM_SPECIALS; k++) {
        if (chat_find_token(bpe, chat_special_texts[k]) < 0) return 0;
    }
    return 1;
}

// Replaces bpe with the same vocabulary plus the chat tokens it lacks, appended after its last id
// in chat_special_texts order (ids of existing tokens do not change).
static inline void chat_add_specials(BPE *bpe, const char *source) {
    const char *missing[CHAT_NUM_SPECIALS];
    int num_missing = 0;
    for (int k = 0; k < CHAT_NUM_SPECIALS; k++) {
        const char *text = chat_special_texts[k];
        int32_t id = bpe_lookup(bpe, (const uint8_t *)text, strlen(text));
        if (id >= 0 && bpe->kind[id] != BPE_KIND_SPECIAL) {
            fatal("%s: token %d is '%s' but not a special token: cannot use it for chat", source,
                  id, text);
        }
        if (id < 0) missing[num_missing++] = text;
    }
    if (num_missing == 0) return;
    BPE grown;
    int old_V = bpe->vocab_size;
    bpe_begin(&grown, old_V + num_missing, source);
    for (int id = 0; id < old_V; id++) {
        bpe_set_token(&grown, id, bpe_token_bytes(bpe, id), bpe->length[id]);
    }
    for (int k = 0; k < num_missing; k++) {
        bpe_set_token(&grown, old_V + k, (const uint8_t *)missing[k], strlen(missing[k]));
    }
    bpe_index_tokens(&grown);
    for (int i = 0; i < bpe->num_merges; i++) {
        bpe_add_merge(&grown, bpe->merges[2 * i], bpe->merges[2 * i + 1]);
    }
    int32_t *specials = (int32_t *)malloc_check(
        (size_t)(bpe->num_special + num_missing) * sizeof(int32_t), "special tokens");
    memcpy(specials, bpe->special_ids, (size_t)bpe->num_special * sizeof(int32_t));
    for (int k = 0; k < num_missing; k++) specials[bpe->num_special + k] = old_V + k;
    bpe_finish(&grown, specials, bpe->num_special + num_missing, 0, bpe->eot_token, bpe->pattern);
    free(specials);
    bpe_free(bpe);
    *bpe = grown;
}

// Finds the chat tokens in bpe; fails naming source if any is missing.
static inline void chat_tokens_init(ChatTokens *tokens, const BPE *bpe, const char *source) {
    tokens->eot = bpe->eot_token;
    for (int k = 0; k < CHAT_NUM_SPECIALS; k++) {
        int32_t id = chat_find_token(bpe, chat_special_texts[k]);
        if (id < 0) {
            fatal("%s: no special token %s: use the tokenizer file written by tokenizer prepare "
                  "--sft",
                  source, chat_special_texts[k]);
        }
        // chat_special_texts pairs (start, end) per role in the order user, assistant, system
        if (k % 2 == 0) {
            tokens->start[k / 2] = id;
        } else {
            tokens->end[k / 2] = id;
        }
    }
}

static inline void chat_push(TokenList *tokens, TokenList *mask, int32_t id, int trained) {
    token_list_push(tokens, id);
    if (mask != NULL) token_list_push(mask, trained);
}

// Appends one message, start and end tokens included; assistant content and end are trained.
static inline void chat_render_message(const BPE *bpe, const ChatTokens *chat,
                                       const ChatMessage *message, TokenList *tokens,
                                       TokenList *mask, BPEWork *work) {
    int trained = message->role == CHAT_ASSISTANT;
    chat_push(tokens, mask, chat->start[message->role], 0);
    size_t before = tokens->size;
    bpe_encode_ordinary(bpe, (const uint8_t *)message->text, message->length, tokens, work);
    if (mask != NULL) {
        for (size_t i = before; i < tokens->size; i++) token_list_push(mask, trained);
    }
    chat_push(tokens, mask, chat->end[message->role], trained);
}

// Appends the whole conversation (its leading <|endoftext|> included) to tokens and, if mask is
// not NULL, one 0/1 entry per token to mask. With open_assistant, ends with <|assistant_start|>:
// the prompt from which the model writes the next answer.
static inline void chat_render(const BPE *bpe, const ChatTokens *chat, const Conversation *conv,
                               int open_assistant, TokenList *tokens, TokenList *mask,
                               BPEWork *work) {
    chat_push(tokens, mask, chat->eot, 0);
    for (int i = 0; i < conv->num_messages; i++) {
        chat_render_message(bpe, chat, &conv->messages[i], tokens, mask, work);
    }
    if (open_assistant) chat_push(tokens, mask, chat->start[CHAT_ASSISTANT], 0);
}

#endif // LLMC_CHAT_TEMPLATE_H
