/*
chat: talk to a fine-tuned GPT-2 checkpoint on the CPU, with the SFT chat template.

  ./chat -e MODEL.bin -v TOKENIZER.bin                 interactive: a line is a user turn
  ./chat -e MODEL.bin --prompt "What is 2+3?"          one answer, then exit (scripts, tests)
  ./chat -e MODEL.bin --eval-gsm8k test.jsonl -n 100   exact-match score on GSM8K ("#### N")

The conversation is rendered by llmc/chat_template.h, the answer is sampled one token at a time
with the key/value cache (llmc/kv_cache.h) and streamed until <|assistant_end|>; the next user turn
continues the same cache. TOKENIZER is the file `tokenizer prepare --sft` wrote (it holds the chat
tokens); by default tokenizer.bin beside the model, then in its parent directory.
*/
#define TESTING
#include "train_gpt2.c"

#include <json-c/json.h>
#include <unistd.h>

#include "llmc/bpe.h"
#include "llmc/chat_template.h"
#include "llmc/kv_cache.h"

// ----------------------------------------------------------------------------------------------
// the session: model, tokenizer, cache and sampling settings

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

typedef struct {
    GPT2 model;
    BPE bpe;
    ChatTokens chat;
    KVCache cache;
    BPEWork work;
    TokenList turn; // tokens of the turn being added
    float temperature, top_p;
    int top_k, max_tokens;
    uint64_t rng_state;
    float *sampler_work;
    SamplerCandidate *candidates;
    const char *system_prompt;
} ChatSession;

// Feeds tokens into the cache; returns the logits after the last one (NULL for none).
static const float *session_feed(ChatSession *s, const int32_t *tokens, size_t n) {
    const float *logits = NULL;
    for (size_t i = 0; i < n; i++) {
        logits = gpt2_forward_step(&s->model, &s->cache, tokens[i], i + 1 == n);
    }
    return logits;
}

// Starts a new conversation: <|endoftext|> and the system message, if any.
static void session_reset(ChatSession *s) {
    kv_cache_reset(&s->cache);
    s->turn.size = 0;
    token_list_push(&s->turn, s->chat.eot);
    if (s->system_prompt[0] != '\0') {
        ChatMessage system = {CHAT_SYSTEM, s->system_prompt, strlen(s->system_prompt)};
        chat_render_message(&s->bpe, &s->chat, &system, &s->turn, NULL, &s->work);
    }
    session_feed(s, s->turn.data, s->turn.size);
}

// Adds a user turn and generates the answer; streams it to out (if not NULL) and returns it in
// answer (bytes, NUL-terminated). The answer ends at <|assistant_end|> or after max_tokens.
static void session_answer(ChatSession *s, const char *user_text, FILE *out, ByteList *answer) {
    s->turn.size = 0;
    ChatMessage user = {CHAT_USER, user_text, strlen(user_text)};
    chat_render_message(&s->bpe, &s->chat, &user, &s->turn, NULL, &s->work);
    token_list_push(&s->turn, s->chat.start[CHAT_ASSISTANT]);
    // keep room for the answer and its end token; a conversation that outgrows the context starts
    // over with this turn
    if ((size_t)s->cache.length + s->turn.size + (size_t)s->max_tokens + 1 >
        (size_t)s->cache.max_T) {
        if (out != NULL)
            fprintf(stderr, "[context full (maxT %d): new conversation]\n", s->cache.max_T);
        TokenList saved = s->turn;
        s->turn = (TokenList){0};
        session_reset(s);
        token_list_free(&s->turn);
        s->turn = saved;
        if ((size_t)s->cache.length + s->turn.size + 1 > (size_t)s->cache.max_T) {
            fatal("the message is %zu tokens, too long for the model's context of %d", s->turn.size,
                  s->cache.max_T);
        }
    }
    const float *logits = session_feed(s, s->turn.data, s->turn.size);
    answer->size = 0;
    Utf8Printer printer;
    utf8_printer_init(&printer, out != NULL ? out : stdout);
    int V = s->model.config.vocab_size;
    for (int n = 0; n < s->max_tokens && s->cache.length < s->cache.max_T; n++) {
        int next = sample_token_top_p(logits, V, s->temperature, s->top_k, s->top_p, &s->rng_state,
                                      s->sampler_work, s->candidates);
        if (next == s->chat.end[CHAT_ASSISTANT]) break;
        if (s->bpe.kind[next] == BPE_KIND_SPECIAL) break; // any other special token ends it too
        const uint8_t *bytes = bpe_token_bytes(&s->bpe, next);
        for (int k = 0; k < s->bpe.length[next]; k++) {
            byte_list_push(answer, bytes[k]);
            if (out != NULL) utf8_printer_put(&printer, bytes[k]);
        }
        if (out != NULL) fflush(out);
        logits = gpt2_forward_next(&s->model, &s->cache, next);
    }
    if (out != NULL) utf8_printer_flush(&printer);
    byte_list_push(answer, 0);
    answer->size--;
    // close the turn so the conversation goes on in the template's shape
    if (s->cache.length < s->cache.max_T) {
        gpt2_forward_step(&s->model, &s->cache, s->chat.end[CHAT_ASSISTANT], 0);
    }
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
    ByteList answer = {0};
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

int main(int argc, char **argv) {
    const char *model_path = "", *tokenizer_path = "", *prompt = "", *system_prompt = "";
    const char *eval_path = "";
    float temperature = 0.7f, top_p = 0.9f;
    int top_k = 0, max_tokens = 256, seed = 42, eval_count = 100, verbose = 0, context = 0;
    CliOption options[] = {
        {'e', "model", OPTION_STRING, &model_path,
         "fine-tuned model checkpoint (.bin) or HuggingFace GPT-2 directory"},
        {'v', "tokenizer", OPTION_STRING, &tokenizer_path,
         "tokenizer with the chat tokens (from tokenizer prepare --sft; default: tokenizer.bin "
         "beside the model or in its parent directory)"},
        {0, "temperature", OPTION_FLOAT, &temperature, "sampling temperature (0: greedy)"},
        {0, "top-k", OPTION_INT, &top_k, "sample from the k most likely tokens (0: all)"},
        {0, "top-p", OPTION_FLOAT, &top_p, "nucleus sampling: smallest set of probability p"},
        {0, "seed", OPTION_INT, &seed, "sampling seed"},
        {0, "max-tokens", OPTION_INT, &max_tokens, "longest answer, in tokens"},
        {0, "context", OPTION_INT, &context, "context length (0: the model's maxT)"},
        {0, "system", OPTION_STRING, &system_prompt, "system message at the start"},
        {'p', "prompt", OPTION_STRING, &prompt, "answer this one message and exit"},
        {0, "eval-gsm8k", OPTION_STRING, &eval_path,
         "score exact match on a GSM8K JSONL file (greedy with --temperature 0)"},
        {'n', "eval-count", OPTION_INT, &eval_count, "problems to score (first N; 0: all)"},
        {0, "verbose", OPTION_INT, &verbose, "1: print each scored problem"},
    };
    cli_parse(argc, argv, "Chat with an SFT checkpoint (CPU, key/value cache).", options,
              (int)(sizeof(options) / sizeof(options[0])));
    if (model_path[0] == '\0') fatal("-e MODEL is required (see --help)");
    if (max_tokens < 1) fatal("bad value %d for --max-tokens: expected at least 1", max_tokens);
    if (!(top_p > 0.0f && top_p <= 1.0f)) fatal("bad value %g for --top-p: expected (0, 1]", top_p);
    char found[4096 + 32];
    if (tokenizer_path[0] == '\0')
        tokenizer_path = find_tokenizer(model_path, found, sizeof(found));
    if (tokenizer_path[0] == '\0') {
        fatal("no tokenizer.bin beside %s or in its parent directory: give -v TOKENIZER (the "
              "tokenizer.bin that tokenizer prepare --sft wrote)",
              model_path);
    }

    ChatSession s;
    memset(&s, 0, sizeof(s));
    gpt2_build(&s.model, model_path, 0);
    bpe_read_file(&s.bpe, tokenizer_path);
    chat_tokens_init(&s.chat, &s.bpe, tokenizer_path);
    if (s.bpe.vocab_size > s.model.config.vocab_size &&
        s.bpe.vocab_size <= s.model.config.padded_vocab_size) {
        // a base model, never fine-tuned: its chat-token rows start at the mean embedding, as
        // the trainer would start them (useful as the "before SFT" baseline)
        gpt2_grow_vocab(&s.model, s.bpe.vocab_size);
    }
    if (s.bpe.vocab_size != s.model.config.vocab_size) {
        fatal("%s: V=%d, but the model %s has V=%d: use the tokenizer of the SFT data the model "
              "was fine-tuned on",
              tokenizer_path, s.bpe.vocab_size, model_path, s.model.config.vocab_size);
    }
    kv_cache_init(&s.cache, &s.model.config, context);
    s.temperature = temperature;
    s.top_p = top_p;
    s.top_k = top_k;
    s.max_tokens = max_tokens;
    s.rng_state = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 1;
    s.system_prompt = system_prompt;
    s.sampler_work =
        (float *)malloc_check((size_t)s.model.config.vocab_size * sizeof(float), "work");
    s.candidates = (SamplerCandidate *)malloc_check(
        (size_t)s.model.config.vocab_size * sizeof(SamplerCandidate), "candidates");
    ByteList answer = {0};

    if (eval_path[0] != '\0') {
        eval_gsm8k(&s, eval_path, eval_count, verbose);
    } else if (prompt[0] != '\0') {
        session_reset(&s);
        session_answer(&s, prompt, stdout, &answer);
        printf("\n");
    } else {
        int tty = isatty(fileno(stdin));
        if (tty) {
            printf("chat with %s (context %d tokens). Empty line or Ctrl-D: quit; /reset: new "
                   "conversation.\n",
                   model_path, s.cache.max_T);
        }
        session_reset(&s);
        char *line = NULL;
        size_t capacity = 0;
        for (;;) {
            if (tty) printf("\nuser> ");
            fflush(stdout);
            ssize_t length = getline(&line, &capacity, stdin);
            if (length < 0) break;
            while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r')) {
                line[--length] = '\0';
            }
            if (length == 0) break;
            if (strcmp(line, "/reset") == 0) {
                session_reset(&s);
                continue;
            }
            if (tty) printf("assistant> ");
            session_answer(&s, line, stdout, &answer);
            printf("\n");
        }
        free(line);
    }
    free(answer.data);
    free(s.sampler_work);
    free(s.candidates);
    token_list_free(&s.turn);
    bpe_work_free(&s.work);
    kv_cache_free(&s.cache);
    bpe_free(&s.bpe);
    gpt2_free(&s.model);
    return 0;
}
