/*
chat: talk to a fine-tuned GPT-2 checkpoint, or continue text with any checkpoint, on the CPU.

  ./chat -e MODEL.bin                                  interactive: a line is a user turn
  ./chat -e MODEL.bin --prompt "What is 2+3?"          one answer, then exit (scripts, tests)
  ./chat -e MODEL.bin --complete "Once upon a time"    continue the text (any model, base ones too)
  ./chat -e MODEL.bin --eval-gsm8k test.jsonl          exact-match score on GSM8K ("#### N")

Chat renders the conversation with llmc/chat_template.h; completion starts from <|endoftext|> and
the text, as training documents do. Both sample one token at a time with the key/value cache
(llmc/kv_cache.h) and the one sampler (llmc/sampler.h), and stream the text as it comes; tokens/s
go to stderr at the end. The tokenizer is the file the trainer keeps beside its checkpoints
(tokenizer.bin; else in the parent directory, or -v); for chat it must hold the chat tokens
(tokenizer prepare --sft writes them). With a tokenizer that has none (a base model), -p TEXT
continues TEXT, as llama.cpp's -p does.

When a conversation no longer leaves room for an answer, its oldest turns are dropped (the system
message is kept) and the cache is refilled with what remains: the positions of the kept tokens
change, so their keys and values must be computed again. Ctrl-C stops the answer being written and
returns to the prompt; at the prompt it quits, as /quit and end of input do.
*/
#ifndef LLMC_CHAT_GPU
#define TESTING
#include "train_gpt2.c"
#endif

#include <json-c/json.h>
#include <signal.h>
#include <unistd.h>

#include "llmc/bpe.h"
#include "llmc/chat_template.h"
#ifndef LLMC_CHAT_GPU
#include "llmc/kv_cache.h"
#endif

// ----------------------------------------------------------------------------------------------
// The backend: the CPU trainer's model (train_gpt2.c, llmc/kv_cache.h), or with LLMC_CHAT_GPU the
// CUDA trainer's (chat.cu compiles this file after train_gpt2.cu and llmc/kv_cache.cuh, whose
// KVCache, gpt2_forward_step and gpt2_free have the same names). What differs is below.

#ifdef LLMC_CHAT_GPU
static void chat_backend_init(void) {
    cuda_check(cudaSetDevice(0));
    matmul_init();
}
static void chat_backend_free(void) {
    matmul_free();
}
// generation runs one token at a time (llmc/kv_cache.cuh): no B x T activations are needed
static void chat_model_build(GPT2 *model, const char *path) {
    gpt2_build(model, path, 0, 1, 1, 0, 0, NULL);
}
// new chat-token rows at the mean embedding, as the trainer starts them
static void chat_model_grow_vocab(GPT2 *model, const char *path, int vocab_size) {
    gpt2_free(model);
    gpt2_build(model, path, 0, 1, 1, 0, vocab_size, NULL);
}
static int chat_embedding_rows_equal(const GPT2 *model, int a, int b) {
    size_t C = (size_t)model->config.channels;
    floatX *rows = (floatX *)malloc_check(2 * C * sizeof(floatX), "embedding rows");
    cuda_check(cudaMemcpy(rows, model->params.wte + (size_t)a * C, C * sizeof(floatX),
                          cudaMemcpyDeviceToHost));
    cuda_check(cudaMemcpy(rows + C, model->params.wte + (size_t)b * C, C * sizeof(floatX),
                          cudaMemcpyDeviceToHost));
    int equal = memcmp(rows, rows + C, C * sizeof(floatX)) == 0;
    free(rows);
    return equal;
}
#else
static void chat_backend_init(void) {}
static void chat_backend_free(void) {}
static void chat_model_build(GPT2 *model, const char *path) {
    gpt2_build(model, path, 0);
}
static void chat_model_grow_vocab(GPT2 *model, const char *path, int vocab_size) {
    (void)path;
    gpt2_grow_vocab(model, vocab_size);
}
static int chat_embedding_rows_equal(const GPT2 *model, int a, int b) {
    size_t C = (size_t)model->config.channels;
    const float *wte = model->params.wte;
    return memcmp(wte + (size_t)a * C, wte + (size_t)b * C, C * sizeof(float)) == 0;
}
#endif

// ----------------------------------------------------------------------------------------------
// the session: model, tokenizer, cache, the conversation in it and the sampling settings

typedef struct {
    uint8_t *data;
    size_t size, capacity;
} ByteList;

static void byte_list_push(ByteList *list, uint8_t byte) {
    if (list->size == list->capacity) {
        list->capacity = list->capacity ? 2 * list->capacity : 256;
        list->data = (uint8_t *)realloc(list->data, list->capacity);
        if (list->data == NULL) fatal("out of memory");
    }
    list->data[list->size++] = byte;
}

// Set by SIGINT: the answer being generated stops at the next token.
static volatile sig_atomic_t interrupted = 0;

static void on_interrupt(int signal_number) {
    (void)signal_number;
    interrupted = 1;
}

typedef struct {
    GPT2 model;
    BPE bpe;
    ChatTokens chat;
    int has_chat_tokens;
    KVCache cache;
    BPEWork work;
    TokenList turn;      // tokens of the turn being added
    TokenList history;   // every token in the cache, in order (history.size == cache.length)
    size_t prefix;       // history's leading <|endoftext|> and system message: never dropped
    size_t *turn_starts; // where each user turn (and the answer after it) starts in history
    int num_turns, turns_capacity;
    float temperature, top_p;
    int top_k, max_tokens; // max_tokens 0: as many as fit in the context
    int print_ids;         // 1: print token ids instead of text (tests compare them)
    int quiet;             // no notices or tokens/s on stderr (GSM8K scoring)
    int show_context;      // 1: print what the context holds after turns are dropped (tests)
    uint64_t rng_state;
    float *sampler_work;
    SamplerCandidate *candidates;
    const char *system_prompt;
} ChatSession;

// What a generation did, for the tokens/s line.
typedef struct {
    int prompt_tokens, generated;
    double prompt_seconds, generate_seconds;
    const char *stopped_by; // why it ended
} GenerationStats;

static void print_generation_stats(const ChatSession *s, const GenerationStats *stats) {
    if (s->quiet) return;
    fprintf(stderr, "[%d tokens in %.2f s: %.1f tokens/s; prompt %d tokens in %.2f s; %s]\n",
            stats->generated, stats->generate_seconds,
            stats->generate_seconds > 0 ? stats->generated / stats->generate_seconds : 0.0,
            stats->prompt_tokens, stats->prompt_seconds, stats->stopped_by);
}

// Feeds tokens into the cache (and history); returns the logits after the last one (NULL for
// none).
static const float *session_feed(ChatSession *s, const int32_t *tokens, size_t n) {
    const float *logits = NULL;
    for (size_t i = 0; i < n; i++) {
        logits = gpt2_forward_step(&s->model, &s->cache, tokens[i], i + 1 == n);
        token_list_push(&s->history, tokens[i]);
    }
    return logits;
}

// Starts a new conversation: <|endoftext|> and the system message, if any.
static void session_reset(ChatSession *s) {
    kv_cache_reset(&s->cache);
    s->history.size = 0;
    s->num_turns = 0;
    s->turn.size = 0;
    token_list_push(&s->turn, s->has_chat_tokens ? s->chat.eot : s->bpe.eot_token);
    if (s->has_chat_tokens && s->system_prompt[0] != '\0') {
        ChatMessage system = {CHAT_SYSTEM, s->system_prompt, strlen(s->system_prompt)};
        chat_render_message(&s->bpe, &s->chat, &system, &s->turn, NULL, &s->work);
    }
    if (s->turn.size + 1 > (size_t)s->cache.max_T) {
        fatal("--system: the system message is %zu tokens, too long for the context of %d",
              s->turn.size, s->cache.max_T);
    }
    session_feed(s, s->turn.data, s->turn.size);
    s->prefix = s->history.size;
}

// Drops the oldest turns until `needed` more tokens fit, keeping the system message; refills the
// cache with what is left (positions move, so keys and values are computed again). Returns the
// number of turns dropped.
static int session_make_room(ChatSession *s, size_t needed) {
    int dropped = 0;
    while (dropped < s->num_turns &&
           s->history.size - (s->turn_starts[dropped] - s->prefix) + needed >
               (size_t)s->cache.max_T) {
        dropped++;
    }
    if (dropped == 0) return 0;
    size_t from = dropped < s->num_turns ? s->turn_starts[dropped] : s->history.size;
    size_t removed = from - s->prefix;
    TokenList kept = {NULL, 0, 0};
    for (size_t i = from; i < s->history.size; i++) token_list_push(&kept, s->history.data[i]);
    for (int t = dropped; t < s->num_turns; t++) {
        s->turn_starts[t - dropped] = s->turn_starts[t] - removed;
    }
    s->num_turns -= dropped;
    // the cache is the history: rewind both to the prefix, then run the kept turns again
    s->cache.length = (int)s->prefix;
    s->history.size = s->prefix;
    session_feed(s, kept.data, kept.size);
    token_list_free(&kept);
    return dropped;
}

// Samples up to `limit` tokens after logits and streams them to out (text, or ids with print_ids);
// the bytes also go to answer (if not NULL). Stops before a special token (returned in *stop_token,
// else -1), at the limit, when the context is full, or on Ctrl-C.
static int session_generate(ChatSession *s, const float *logits, int limit,
                            const char *limit_reason, FILE *out, ByteList *answer, int *stop_token,
                            GenerationStats *stats) {
    Utf8Printer printer;
    utf8_printer_init(&printer, out != NULL ? out : stdout);
    int V = s->model.config.vocab_size, n = 0;
    double start = now_seconds();
    *stop_token = -1;
    stats->stopped_by = limit_reason;
    for (;; n++) {
        if (n >= limit) break;
        if (interrupted) {
            stats->stopped_by = "stopped by Ctrl-C";
            break;
        }
        int next = sample_token_top_p(logits, V, s->temperature, s->top_k, s->top_p, &s->rng_state,
                                      s->sampler_work, s->candidates);
        if (s->bpe.kind[next] == BPE_KIND_SPECIAL) {
            *stop_token = next;
            stats->stopped_by = next == s->bpe.eot_token && !s->has_chat_tokens
                                    ? "<|endoftext|>"
                                    : "end of the answer";
            break;
        }
        const uint8_t *bytes = bpe_token_bytes(&s->bpe, next);
        for (int k = 0; k < s->bpe.length[next]; k++) {
            if (answer != NULL) byte_list_push(answer, bytes[k]);
            if (out != NULL && !s->print_ids) utf8_printer_put(&printer, bytes[k]);
        }
        if (out != NULL && s->print_ids) fprintf(out, "%d ", next);
        if (out != NULL) fflush(out);
        if (s->cache.length >= s->cache.max_T) { // printed, but there is no room to run it
            n++;
            stats->stopped_by = "the context is full";
            break;
        }
        logits = session_feed(s, &next, 1);
    }
    if (out != NULL) utf8_printer_flush(&printer);
    stats->generated = n;
    stats->generate_seconds = now_seconds() - start;
    return n;
}

// One line on stderr: the tokens in the context as text, special tokens by name, newlines as \n.
static void session_print_context(const ChatSession *s) {
    fprintf(stderr, "[context:");
    for (size_t i = 0; i < s->history.size; i++) {
        const uint8_t *bytes = bpe_token_bytes(&s->bpe, s->history.data[i]);
        for (int k = 0; k < s->bpe.length[s->history.data[i]]; k++) {
            if (bytes[k] == '\n') {
                fputs("\\n", stderr);
            } else {
                fputc(bytes[k], stderr);
            }
        }
    }
    fprintf(stderr, "]\n");
}

// Tokens the answer may use: --max-tokens, or what is left of the context (one kept for the end
// token that closes the turn).
static int session_answer_room(const ChatSession *s) {
    int left = s->cache.max_T - s->cache.length - 1;
    if (left < 0) left = 0;
    return s->max_tokens > 0 && s->max_tokens < left ? s->max_tokens : left;
}

// Adds a user turn and generates the answer; streams it to out (if not NULL) and returns it in
// answer (bytes, NUL-terminated). The answer ends at <|assistant_end|>, after max_tokens, when the
// context is full or on Ctrl-C. Returns 0 if the message alone does not fit in the context.
static int session_answer(ChatSession *s, const char *user_text, FILE *out, ByteList *answer) {
    s->turn.size = 0;
    ChatMessage user = {CHAT_USER, user_text, strlen(user_text)};
    chat_render_message(&s->bpe, &s->chat, &user, &s->turn, NULL, &s->work);
    token_list_push(&s->turn, s->chat.start[CHAT_ASSISTANT]);
    answer->size = 0;
    byte_list_push(answer, 0); // an empty answer when the message does not fit
    answer->size = 0;
    // room for the message, the answer (--max-tokens, else a quarter of the context) and its end
    size_t max_T = (size_t)s->cache.max_T;
    size_t answer_room = s->max_tokens > 0 ? (size_t)s->max_tokens : max_T / 4;
    if (s->prefix + s->turn.size + 1 > max_T) {
        if (!s->quiet) {
            fprintf(stderr, "error: the message is %zu tokens, too long for the context of %d%s\n",
                    s->turn.size, s->cache.max_T, s->prefix > 1 ? " with the system message" : "");
        }
        return 0;
    }
    int dropped = session_make_room(s, s->turn.size + answer_room + 1);
    if (dropped > 0 && !s->quiet) {
        fprintf(stderr, "[context full (%d tokens): dropped the oldest %d turn(s)%s; %d left]\n",
                s->cache.max_T, dropped, s->prefix > 1 ? ", kept the system message" : "",
                s->num_turns);
        if (s->show_context) session_print_context(s);
    }
    if (s->num_turns == s->turns_capacity) {
        s->turns_capacity = s->turns_capacity ? 2 * s->turns_capacity : 16;
        s->turn_starts =
            (size_t *)realloc(s->turn_starts, (size_t)s->turns_capacity * sizeof(size_t));
        if (s->turn_starts == NULL) fatal("out of memory growing the conversation");
    }
    s->turn_starts[s->num_turns++] = s->history.size;
    GenerationStats stats = {(int)s->turn.size, 0, 0.0, 0.0, ""};
    double start = now_seconds();
    const float *logits = session_feed(s, s->turn.data, s->turn.size);
    stats.prompt_seconds = now_seconds() - start;
    int stop_token, room = session_answer_room(s);
    session_generate(s, logits, room,
                     room == s->max_tokens ? "--max-tokens reached" : "the context is full", out,
                     answer, &stop_token, &stats);
    byte_list_push(answer, 0);
    answer->size--;
    if (out != NULL) {
        fprintf(out, "\n");
        fflush(out); // the answer before the tokens/s line on stderr
    }
    print_generation_stats(s, &stats);
    // close the turn so the conversation goes on in the template's shape
    if (s->cache.length < s->cache.max_T) {
        int32_t end = s->chat.end[CHAT_ASSISTANT];
        gpt2_forward_step(&s->model, &s->cache, end, 0);
        token_list_push(&s->history, end);
    }
    return 1;
}

// Continues text (after <|endoftext|>, as training documents start): prints the text, then what
// the model writes after it, until <|endoftext|>, --max-tokens or the end of the context.
static void session_complete(ChatSession *s, const char *text, FILE *out) {
    s->system_prompt = ""; // a chat message has no place in plain text
    session_reset(s);
    s->turn.size = 0;
    bpe_encode_ordinary(&s->bpe, (const uint8_t *)text, strlen(text), &s->turn, &s->work);
    if (s->cache.length + s->turn.size + 1 > (size_t)s->cache.max_T) {
        fatal("--complete: the text is %zu tokens, too long for the context of %d (one token is "
              "<|endoftext|>, and one more is needed for an answer)",
              s->turn.size, s->cache.max_T);
    }
    if (!s->print_ids) fwrite(text, 1, strlen(text), out);
    fflush(out);
    GenerationStats stats = {(int)s->turn.size + 1, 0, 0.0, 0.0, ""};
    double start = now_seconds();
    // an empty text: the logits after <|endoftext|>, which session_reset ran last
    const float *logits =
        s->turn.size > 0 ? session_feed(s, s->turn.data, s->turn.size) : s->cache.logits;
    stats.prompt_seconds = now_seconds() - start;
    int left = s->cache.max_T - s->cache.length + 1; // the last token needs no room after it
    int limited = s->max_tokens > 0 && s->max_tokens < left;
    int stop_token;
    session_generate(s, logits, limited ? s->max_tokens : left,
                     limited ? "--max-tokens reached" : "the context is full", out, NULL,
                     &stop_token, &stats);
    fprintf(out, "\n");
    fflush(out); // the text before the tokens/s line on stderr
    print_generation_stats(s, &stats);
}

// ----------------------------------------------------------------------------------------------
// GSM8K exact match: the number after "####" in the answer against the reference's

// The final answer of a GSM8K-style text: what follows the last "####", without commas, spaces
// and a trailing period; "" if there is none.
static void gsm8k_final_answer(const char *text, char *out, size_t size) {
    const char *mark = NULL;
    for (const char *p = strstr(text, "####"); p != NULL; p = strstr(p + 4, "####")) mark = p;
    size_t k = 0;
    if (mark != NULL) {
        for (const char *p = mark + 4; *p != '\0' && *p != '\n' && k + 1 < size; p++) {
            if (*p == ',' || *p == ' ' || *p == '$') continue;
            out[k++] = *p;
        }
    }
    while (k > 0 && out[k - 1] == '.') k--;
    out[k] = '\0';
}

static int eval_gsm8k(ChatSession *s, const char *path, int count, int verbose) {
    FILE *file = fopen_check(path, "r");
    char *line = NULL;
    size_t capacity = 0;
    int seen = 0, correct = 0, formatted = 0, line_number = 0;
    ByteList answer = {NULL, 0, 0};
    double start = now_seconds();
    while (count <= 0 || seen < count) {
        ssize_t length = getline(&line, &capacity, file);
        if (length < 0) break;
        line_number++;
        if (length <= 1) continue;
        json_object *record = json_tokener_parse(line);
        json_object *question, *reference;
        if (record == NULL || !json_object_object_get_ex(record, "question", &question) ||
            !json_object_object_get_ex(record, "answer", &reference) ||
            !json_object_is_type(question, json_type_string) ||
            !json_object_is_type(reference, json_type_string)) {
            fatal("%s: line %d: expected a JSON object with string fields 'question' and 'answer'",
                  path, line_number);
        }
        session_reset(s);
        session_answer(s, json_object_get_string(question), NULL, &answer);
        if (interrupted) { // Ctrl-C: the score of the problems answered so far
            json_object_put(record);
            break;
        }
        char got[64], want[64];
        gsm8k_final_answer((const char *)answer.data, got, sizeof(got));
        gsm8k_final_answer(json_object_get_string(reference), want, sizeof(want));
        int ok = want[0] != '\0' && strcmp(got, want) == 0;
        correct += ok;
        formatted += got[0] != '\0'; // the answer ends in "#### <something>", as trained
        seen++;
        if (verbose) {
            printf("%4d %s got '%s' want '%s'\n", seen, ok ? "ok  " : "miss", got, want);
            fflush(stdout);
        }
        json_object_put(record);
    }
    fclose(file);
    free(line);
    free(answer.data);
    printf("gsm8k exact match: %d / %d = %.1f%% (%s, first %d problems, temperature %g, %.1f s); "
           "%d answers give a '#### N' final answer\n",
           correct, seen, seen > 0 ? 100.0 * correct / seen : 0.0, path, seen, s->temperature,
           now_seconds() - start, formatted);
    return 0;
}

// ----------------------------------------------------------------------------------------------

// The chat tokens' embedding rows of a model that never trained on conversations: the trainer (and
// chat, for a base model) starts each new row at the mean embedding, so they are all equal until
// training moves them. <|user_start|> and <|assistant_start|> are inputs of every SFT
// conversation, so any SFT step gives them different gradients and different rows. (A model made
// with random chat rows and never fine-tuned is not caught.)
static int chat_tokens_untrained(const GPT2 *model, const ChatTokens *chat) {
    return chat_embedding_rows_equal(model, chat->start[CHAT_USER], chat->start[CHAT_ASSISTANT]);
}

// Interactive chat over stdin: a line is a user message (an empty line an empty message); /reset
// starts over, /quit or end of input ends. Ctrl-C during an answer stops it; at the prompt, quits.
static void chat_interactive(ChatSession *s, const char *model_path) {
    int tty = isatty(fileno(stdin));
    if (tty) {
        printf("chat with %s (context %d tokens). /reset: new conversation; /quit, Ctrl-D: quit; "
               "Ctrl-C: stop an answer (at the prompt: quit).\n",
               model_path, s->cache.max_T);
    }
    session_reset(s);
    char *line = NULL;
    size_t capacity = 0;
    ByteList answer = {NULL, 0, 0};
    for (;;) {
        if (tty) printf("\nuser> ");
        fflush(stdout);
        interrupted = 0;
        ssize_t length = getline(&line, &capacity, stdin);
        if (length < 0) { // end of input, or Ctrl-C at the prompt (read returns EINTR)
            if (tty) printf("\n");
            break;
        }
        while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r')) {
            line[--length] = '\0';
        }
        if (strcmp(line, "/quit") == 0) break;
        if (strcmp(line, "/reset") == 0) {
            session_reset(s);
            fprintf(stderr, "[new conversation: the earlier turns are forgotten]\n");
            continue;
        }
        if (tty) printf("assistant> ");
        fflush(stdout);
        session_answer(s, line, stdout, &answer);
    }
    free(line);
    free(answer.data);
}

// tokenizer.bin beside the model file, or in its parent directory ("" if neither exists).
static const char *find_tokenizer(const char *model_path, char *out, size_t size) {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", model_path);
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL) {
            snprintf(dir, sizeof(dir), "%s", up == 0 ? "." : "..");
        } else {
            *slash = '\0';
        }
        snprintf(out, size, "%s/tokenizer.bin", dir);
        if (file_exists(out)) return out;
    }
    return "";
}

static const char not_given[] = ""; // --complete "" (continue from nothing) differs from no flag

int main(int argc, char **argv) {
    const char *model_path = "", *tokenizer_path = "", *prompt = "", *system_prompt = "";
    const char *eval_path = "", *complete = not_given;
    float temperature = 0.7f, top_p = 0.9f;
    int top_k = 0, max_tokens = 0, seed = 42, eval_count = 100, verbose = 0, context = 0;
    int print_ids = 0;
    CliOption options[] = {
        {'e', "model", OPTION_STRING, &model_path,
         "model checkpoint (.bin) or HuggingFace GPT-2 directory"},
        {'v', "tokenizer", OPTION_STRING, &tokenizer_path,
         "tokenizer file (default: tokenizer.bin beside the model, where the trainer keeps it, or "
         "in its parent directory); chat needs one with the chat tokens"},
        {0, "temperature", OPTION_FLOAT, &temperature, "sampling temperature (0: greedy)"},
        {0, "temp", OPTION_FLOAT, &temperature, "same as --temperature (llama.cpp's name)"},
        {0, "top-k", OPTION_INT, &top_k, "sample from the k most likely tokens (0: all)"},
        {0, "top-p", OPTION_FLOAT, &top_p, "nucleus sampling: smallest set of probability p"},
        {0, "seed", OPTION_INT, &seed, "sampling seed"},
        {'n', "max-tokens", OPTION_INT, &max_tokens,
         "longest answer or continuation, in tokens (0: what fits in the context)"},
        {0, "n-predict", OPTION_INT, &max_tokens, "same as --max-tokens (llama.cpp's name)"},
        {0, "context", OPTION_INT, &context, "context length (0: the model's maxT)"},
        {0, "system", OPTION_STRING, &system_prompt, "system message at the start"},
        {'p', "prompt", OPTION_STRING, &prompt,
         "answer this one message and exit; with a tokenizer without chat tokens (a base "
         "model): continue this text, as --complete"},
        {0, "complete", OPTION_STRING, &complete,
         "continue this text (any model, no chat template) and exit"},
        {0, "eval-gsm8k", OPTION_STRING, &eval_path,
         "score exact match on a GSM8K JSONL file (greedy with --temperature 0)"},
        {0, "eval-count", OPTION_INT, &eval_count, "problems to score (first N; 0: all)"},
        {0, "verbose", OPTION_INT, &verbose,
         "1: print each scored problem; in chat, what the context holds after turns are dropped"},
        {0, "ids", OPTION_INT, &print_ids, "1: print the generated token ids instead of text"},
    };
    cli_parse(argc, argv,
              "Chat with an SFT checkpoint, or continue text with any checkpoint (CPU, key/value "
              "cache).\n"
              "  ./chat -e MODEL                       interactive: a line is a message; /reset, "
              "/quit\n"
              "  ./chat -e MODEL -p \"What is 2+3?\"     one answer\n"
              "  ./chat -e MODEL --complete \"TEXT\"     continue TEXT (-p/-n/--temp: llama.cpp "
              "spellings)\n"
              "Ctrl-C stops an answer; at the prompt it quits. Tokens/s go to stderr.",
              options, (int)(sizeof(options) / sizeof(options[0])));
    if (model_path[0] == '\0') fatal("-e MODEL is required (see --help)");
    if (max_tokens < 0)
        fatal("bad value %d for --max-tokens: expected 0 (what fits) or more", max_tokens);
    if (top_k < 0) fatal("bad value %d for --top-k: expected 0 (all) or more", top_k);
    if (!(top_p > 0.0f && top_p <= 1.0f)) fatal("bad value %g for --top-p: expected (0, 1]", top_p);
    if (context < 0) fatal("bad value %d for --context: expected 0 (maxT) or more", context);
    int modes = (complete != not_given) + (prompt[0] != '\0') + (eval_path[0] != '\0');
    if (modes > 1) fatal("--complete, --prompt and --eval-gsm8k are separate modes: give one");
    char found[4096 + 32];
    if (tokenizer_path[0] == '\0')
        tokenizer_path = find_tokenizer(model_path, found, sizeof(found));
    if (tokenizer_path[0] == '\0') {
        fatal("no tokenizer.bin beside %s or in its parent directory: give -v TOKENIZER (the "
              "tokenizer file of the training data)",
              model_path);
    }

    ChatSession s;
    memset(&s, 0, sizeof(s));
    chat_backend_init();
    chat_model_build(&s.model, model_path);
    bpe_read_file(&s.bpe, tokenizer_path);
    s.has_chat_tokens = chat_has_specials(&s.bpe);
    // a base model's tokenizer: -p continues text, as llama.cpp's -p does
    if (complete == not_given && prompt[0] != '\0' && !s.has_chat_tokens) complete = prompt;
    int completing = complete != not_given;
    if (!completing && !s.has_chat_tokens) {
        fatal("%s: no special token <|user_start|>: a base model's tokenizer, without the chat "
              "tokens: continue text with --complete TEXT, or chat with the tokenizer file of "
              "tokenizer prepare --sft (-v)",
              tokenizer_path);
    }
    if (s.has_chat_tokens) {
        chat_tokens_init(&s.chat, &s.bpe, tokenizer_path);
        if (s.bpe.vocab_size > s.model.config.vocab_size &&
            s.bpe.vocab_size <= s.model.config.padded_vocab_size) {
            // a base model, never fine-tuned: its chat-token rows start at the mean embedding, as
            // the trainer would start them (useful as the "before SFT" baseline)
            chat_model_grow_vocab(&s.model, model_path, s.bpe.vocab_size);
        }
    }
    if (s.bpe.vocab_size != s.model.config.vocab_size) {
        fatal("%s: V=%d, but the model %s has V=%d: use the tokenizer of the data the model was "
              "trained on",
              tokenizer_path, s.bpe.vocab_size, model_path, s.model.config.vocab_size);
    }
    if (!completing && chat_tokens_untrained(&s.model, &s.chat)) {
        fprintf(stderr,
                "warning: %s: the chat tokens were never trained (<|user_start|> and "
                "<|assistant_start|> have the same embedding): answers will not follow the chat "
                "template; fine-tune it (README: SFT), or use --complete\n",
                model_path);
    }
    kv_cache_init(&s.cache, &s.model.config, context);
    s.temperature = temperature;
    s.top_p = top_p;
    s.top_k = top_k;
    s.max_tokens = max_tokens;
    s.print_ids = print_ids;
    s.show_context = verbose;
    s.rng_state = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 1;
    s.system_prompt = system_prompt;
    s.sampler_work =
        (float *)malloc_check((size_t)s.model.config.vocab_size * sizeof(float), "work");
    s.candidates = (SamplerCandidate *)malloc_check(
        (size_t)s.model.config.vocab_size * sizeof(SamplerCandidate), "candidates");
    // Ctrl-C sets a flag (no SA_RESTART: a read waiting at the prompt returns, and chat quits)
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);

    int status = 0;
    if (completing) {
        session_complete(&s, complete, stdout);
    } else if (eval_path[0] != '\0') {
        s.quiet = 1;
        eval_gsm8k(&s, eval_path, eval_count, verbose);
    } else if (prompt[0] != '\0') {
        ByteList answer = {NULL, 0, 0};
        session_reset(&s);
        if (!session_answer(&s, prompt, stdout, &answer)) status = 1;
        free(answer.data);
    } else {
        chat_interactive(&s, model_path);
    }
    free(s.sampler_work);
    free(s.candidates);
    free(s.turn_starts);
    token_list_free(&s.turn);
    token_list_free(&s.history);
    bpe_work_free(&s.work);
    kv_cache_free(&s.cache);
    bpe_free(&s.bpe);
    gpt2_free(&s.model);
    chat_backend_free();
    return status;
}
