// tokenizer: byte-level BPE in C, with the same ids as tiktoken.
//
//   ./tokenizer encode  -v VOCAB -i TEXT_FILE -o OUT.bin     text -> one data shard (or ids, -o -)
//   ./tokenizer decode  -v VOCAB -i SHARD.bin                data shard -> text on stdout
//   ./tokenizer prepare -v VOCAB -i INPUTS... -o OUT_DIR     text/JSONL -> train/val shards
//   ./tokenizer train   -i TEXT... --vocab-size N -o VOCAB_OUT
//   ./tokenizer eval-file -v VOCAB -i FILE.jsonl -o FILE.bin  HellaSwag JSONL -> llm.c eval file
//
// VOCAB is a directory with GPT-2's encoder.json + vocab.bpe, a .tiktoken file, or our tokenizer
// file (written by train and prepare). Formats: docs/formats.md. Every output is written to a
// temporary file and renamed into place only when the whole command has succeeded; an error
// prints one line, exits 1 and leaves no output behind.
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "llmc/bpe.h"
#include "llmc/bpe_load.h"
#include "llmc/bpe_train.h"
#include "llmc/chat_template.h"
#include "llmc/cli.h"
#include "llmc/dataloader.h"
#include "llmc/eval_loader.h"
#include "llmc/formats.h"
#include "llmc/mmap_file.h"
#include "llmc/run_dir.h"
#include "llmc/sft_data.h"
#include "llmc/tokenizer.h"
#include "llmc/utils.h"

// ----------------------------------------------------------------------------------------------
// temporary files: removed at exit unless committed, so a failed command leaves nothing behind

#define MAX_TEMP_FILES 100000
static char *temp_files[MAX_TEMP_FILES];
static volatile sig_atomic_t num_temp_files = 0;

static void remove_temp_files(void) {
    for (int i = 0; i < num_temp_files; i++) {
        if (temp_files[i] != NULL) unlink(temp_files[i]);
    }
}

// Ctrl-C, kill, a closed pipe: remove the temporary files, then die of the signal as usual.
// (unlink is async-signal-safe; SIGKILL cannot be caught: what it leaves are hidden .tmpPID files.)
static void remove_temp_files_and_die(int signal_number) {
    remove_temp_files();
    signal(signal_number, SIG_DFL);
    raise(signal_number);
}

static void temp_file_register(const char *path) {
    static int registered = 0;
    if (!registered) {
        atexit(remove_temp_files);
        int signals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
        for (int i = 0; i < 4; i++) signal(signals[i], remove_temp_files_and_die);
        registered = 1;
    }
    if (num_temp_files == MAX_TEMP_FILES) fatal("too many temporary files (%d)", MAX_TEMP_FILES);
    temp_files[num_temp_files] = strdup(path);
    if (temp_files[num_temp_files] == NULL) fatal("out of memory");
    num_temp_files++;
}

// Renames a registered temporary file to its final path.
static void temp_file_commit(const char *temp_path, const char *final_path) {
    if (rename(temp_path, final_path) != 0) {
        fatal("cannot rename %s to %s: %s", temp_path, final_path, strerror(errno));
    }
    for (int i = 0; i < num_temp_files; i++) {
        if (temp_files[i] != NULL && strcmp(temp_files[i], temp_path) == 0) {
            char *name = temp_files[i];
            temp_files[i] = NULL; // before free: a signal handler may walk the list
            free(name);
        }
    }
}

static void temp_file_remove(const char *temp_path) {
    unlink(temp_path);
    for (int i = 0; i < num_temp_files; i++) {
        if (temp_files[i] != NULL && strcmp(temp_files[i], temp_path) == 0) {
            char *name = temp_files[i];
            temp_files[i] = NULL; // before free: a signal handler may walk the list
            free(name);
        }
    }
}

// ----------------------------------------------------------------------------------------------
// small helpers

static void set_threads(int threads) {
    if (threads < 0) fatal("bad value %d for --threads: expected 0 (all cores) or more", threads);
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(threads);
#else
    (void)threads;
#endif
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// The default vocabulary: ../shared/data/gpt2 from the current directory, else from the directory
// of this binary (the repository root), so the tool works from anywhere in the checkout.
static const char *default_vocab(void) {
    static char path[4096 + 64];
    const char *relative = "../shared/data/gpt2";
    if (file_exists(relative)) return relative;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(path, sizeof(path), "%s/%s", exe, relative);
            if (file_exists(path)) return path;
        }
    }
    return relative;
}

// Splits argv into the values of -i/--input (every argument after it up to the next flag) and the
// rest, which goes to cli_parse. argv[0] of the rest is "tokenizer SUBCOMMAND" for --help.
typedef struct {
    char **inputs;
    int num_inputs;
    char **rest;
    int num_rest;
} SplitArgs;

static SplitArgs split_inputs(int argc, char **argv, const char *program) {
    SplitArgs args;
    args.inputs = (char **)calloc_check((size_t)argc + 1, sizeof(char *), "arguments");
    args.rest = (char **)calloc_check((size_t)argc + 1, sizeof(char *), "arguments");
    args.num_inputs = 0;
    args.num_rest = 0;
    args.rest[args.num_rest++] = (char *)program;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-i") == 0 || strcmp(argv[i], "--input") == 0) {
            int count = 0;
            while (i + 1 < argc && (argv[i + 1][0] != '-' || strcmp(argv[i + 1], "-") == 0)) {
                args.inputs[args.num_inputs++] = argv[++i];
                count++;
            }
            if (count == 0) fatal("flag %s needs a value (see --help)", argv[i]);
        } else {
            args.rest[args.num_rest++] = argv[i];
        }
    }
    return args;
}

static void split_args_free(SplitArgs *args) {
    free(args->inputs);
    free(args->rest);
}

static SplitPattern parse_pattern(const char *name) {
    for (int k = 0; k < SPLIT_NUM_PATTERNS; k++) {
        if (strcmp(name, split_pattern_names[k]) == 0) return (SplitPattern)k;
    }
    fatal("bad value '%s' for --pattern: expected gpt2 or gpt4", name);
}

// Reads a whole input: "-" is stdin, anything else is mapped.
typedef struct {
    MappedFile mapped;
    uint8_t *owned;
    const uint8_t *data;
    size_t size;
} InputText;

static InputText input_text_open(const char *path) {
    InputText input;
    memset(&input, 0, sizeof(input));
    if (strcmp(path, "-") == 0) {
        size_t capacity = 1 << 20;
        input.owned = (uint8_t *)malloc_check(capacity, "stdin");
        for (;;) {
            if (input.size == capacity) {
                capacity *= 2;
                input.owned = (uint8_t *)realloc(input.owned, capacity);
                if (input.owned == NULL) fatal("out of memory reading stdin");
            }
            size_t got = fread(input.owned + input.size, 1, capacity - input.size, stdin);
            if (got == 0) break;
            input.size += got;
        }
        if (ferror(stdin)) fatal("stdin: read failed: %s", strerror(errno));
        input.data = input.owned;
    } else {
        input.mapped = mmap_file_check(path);
        input.data = input.mapped.data;
        input.size = input.mapped.size;
    }
    return input;
}

static void input_text_close(InputText *input) {
    free(input->owned);
    mmap_file_close(&input->mapped);
}

// Fails with the file, line and byte of the first invalid UTF-8 byte in text (if any).
static void check_utf8(const char *path, const uint8_t *text, size_t len, size_t base_offset,
                       const uint8_t *whole_file) {
    size_t bad = utf8_first_invalid(text, len);
    if (bad == len) return;
    size_t offset = base_offset + bad;
    fatal("%s: line %zu (byte %zu): invalid UTF-8 byte 0x%02x (pass --allow-invalid-utf8 1 to "
          "encode such bytes as single-byte tokens)",
          path, whole_file ? line_of(whole_file, offset) : 0, offset, text[bad]);
}

// ----------------------------------------------------------------------------------------------
// parallel encoding of one text: cut at safe points (llmc/pretokenize.h), encode the parts on all
// threads, concatenate. The ids are those of encoding the whole text at once.

#define ENCODE_CHUNK_BYTES (1 << 20)

typedef struct {
    const uint8_t *text;
    size_t len;
} Slice;

// Special tokens' texts, for cutting text where none of them spans the cut.
typedef struct {
    const uint8_t **texts;
    size_t *lengths;
    int count;
    size_t longest;
} SpecialTexts;

static SpecialTexts special_texts_of(const BPE *bpe, int allow_special) {
    SpecialTexts s = {NULL, NULL, 0, 0};
    if (!allow_special) return s;
    s.texts = (const uint8_t **)malloc_check((size_t)bpe->num_special * sizeof(uint8_t *) + 8,
                                             "specials");
    s.lengths = (size_t *)malloc_check((size_t)bpe->num_special * sizeof(size_t) + 8, "specials");
    for (int k = 0; k < bpe->num_special; k++) {
        s.texts[k] = bpe_token_bytes(bpe, bpe->special_ids[k]);
        s.lengths[k] = bpe->length[bpe->special_ids[k]];
        if (s.lengths[k] > s.longest) s.longest = s.lengths[k];
    }
    s.count = bpe->num_special;
    return s;
}

// End of a special token's text that spans position cut (starts before it, ends after), or 0.
static size_t special_spanning(const SpecialTexts *specials, const uint8_t *text, size_t len,
                               size_t cut) {
    size_t from = cut >= specials->longest ? cut - specials->longest + 1 : 0;
    size_t to = cut + specials->longest < len ? cut + specials->longest : len;
    size_t end = 0;
    for (int k = 0; k < specials->count; k++) {
        size_t n = specials->lengths[k];
        for (size_t at = from; at < cut && at + n <= to; at++) {
            if (at + n > cut && memcmp(text + at, specials->texts[k], n) == 0 && at + n > end) {
                end = at + n;
            }
        }
    }
    return end;
}

// Cuts text into slices of about target bytes at safe points, never inside a special's text.
static size_t cut_text(const uint8_t *text, size_t len, size_t target, const SpecialTexts *specials,
                       Slice **slices_out) {
    size_t capacity = len / target + 2, count = 0;
    Slice *slices = (Slice *)malloc_check(capacity * sizeof(Slice), "slices");
    size_t start = 0;
    while (start < len) {
        size_t cut = len;
        if (len - start > target + target / 2) {
            cut = pretokenize_safe_cut(text, len, start + target);
            for (size_t end; cut < len && (end = special_spanning(specials, text, len, cut)) > 0;) {
                cut = pretokenize_safe_cut(text, len, end);
            }
        }
        if (count == capacity) {
            capacity *= 2;
            slices = (Slice *)realloc(slices, capacity * sizeof(Slice));
            if (slices == NULL) fatal("out of memory");
        }
        slices[count].text = text + start;
        slices[count].len = cut - start;
        count++;
        start = cut;
    }
    *slices_out = slices;
    return count;
}

static void encode_parallel(const BPE *bpe, const uint8_t *text, size_t len, int allow_special,
                            TokenList *out) {
    Slice *slices;
    SpecialTexts specials = special_texts_of(bpe, allow_special);
    size_t num_slices = cut_text(text, len, ENCODE_CHUNK_BYTES, &specials, &slices);
    free(specials.texts);
    free(specials.lengths);
    TokenList *results = (TokenList *)calloc_check(num_slices, sizeof(TokenList), "results");
    int threads = max_threads();
    BPEWork *works = (BPEWork *)calloc_check((size_t)threads, sizeof(BPEWork), "work");
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < num_slices; i++) {
        bpe_encode(bpe, slices[i].text, slices[i].len, allow_special, &results[i],
                   &works[thread_id()]);
    }
    for (size_t i = 0; i < num_slices; i++) {
        token_list_reserve(out, results[i].size);
        memcpy(out->data + out->size, results[i].data, results[i].size * sizeof(int32_t));
        out->size += results[i].size;
        token_list_free(&results[i]);
    }
    for (int t = 0; t < threads; t++) bpe_work_free(&works[t]);
    free(works);
    free(results);
    free(slices);
}

// ----------------------------------------------------------------------------------------------
// data shards

static int shard_token_bytes(int vocab_size) {
    return vocab_size <= 65536 ? 2 : 4;
}

typedef struct {
    FILE *file;
    char temp_path[4096 + 32];
    int token_bytes;
    size_t num_tokens;
    void *buffer; // conversion buffer
    size_t buffer_capacity;
} ShardFile;

static void shard_open(ShardFile *shard, const char *temp_path, int token_bytes) {
    memset(shard, 0, sizeof(*shard));
    snprintf(shard->temp_path, sizeof(shard->temp_path), "%s", temp_path);
    temp_file_register(shard->temp_path);
    shard->file = fopen_check(shard->temp_path, "wb");
    shard->token_bytes = token_bytes;
    int32_t header[HEADER_INTS];
    memset(header, 0, sizeof(header));
    fwrite_check(header, sizeof(int32_t), HEADER_INTS, shard->file, shard->temp_path);
}

static void shard_append(ShardFile *shard, const int32_t *ids, size_t n) {
    if (shard->num_tokens + n > (size_t)INT32_MAX) {
        fatal("%s: more than %d tokens do not fit a shard's int32 count", shard->temp_path,
              INT32_MAX);
    }
    if (shard->token_bytes == 4) {
        fwrite_check(ids, sizeof(int32_t), n, shard->file, shard->temp_path);
    } else {
        if (n > shard->buffer_capacity) {
            free(shard->buffer);
            shard->buffer_capacity = n < 65536 ? 65536 : n;
            shard->buffer = malloc_check(shard->buffer_capacity * 2, "shard buffer");
        }
        uint16_t *out = (uint16_t *)shard->buffer;
        for (size_t i = 0; i < n; i++) out[i] = (uint16_t)ids[i];
        fwrite_check(out, sizeof(uint16_t), n, shard->file, shard->temp_path);
    }
    shard->num_tokens += n;
}

// Writes the header, flushes and closes (the file stays under its temporary name).
static void shard_close(ShardFile *shard) {
    int32_t header[HEADER_INTS];
    memset(header, 0, sizeof(header));
    header[0] = shard->token_bytes == 2 ? DATA_MAGIC_U16 : DATA_MAGIC_U32;
    header[1] = shard->token_bytes == 2 ? DATA_VERSION_U16 : DATA_VERSION_U32;
    header[2] = (int32_t)shard->num_tokens;
    fseek_check(shard->file, 0, SEEK_SET, shard->temp_path);
    fwrite_check(header, sizeof(int32_t), HEADER_INTS, shard->file, shard->temp_path);
    if (fflush(shard->file) != 0 || fsync(fileno(shard->file)) != 0 || fclose(shard->file) != 0) {
        fatal("%s: flush/close failed: %s", shard->temp_path, strerror(errno));
    }
    shard->file = NULL;
    free(shard->buffer);
    shard->buffer = NULL;
}

// ----------------------------------------------------------------------------------------------
// encode

static int cmd_encode(int argc, char **argv) {
    const char *vocab = default_vocab();
    const char *output = "";
    int allow_special = 0, allow_invalid = 0, threads = 0;
    CliOption options[] = {
        {'v', "vocab", OPTION_STRING, &vocab,
         "vocabulary: dir with encoder.json + vocab.bpe, .tiktoken, or tokenizer .bin"},
        {'o', "output", OPTION_STRING, &output,
         "output data shard (.bin), or - for ids, one a line"},
        {0, "special", OPTION_INT, &allow_special,
         "1: the text of a special token (<|endoftext|>) becomes that token"},
        {0, "allow-invalid-utf8", OPTION_INT, &allow_invalid,
         "1: encode bytes that are not UTF-8 as single-byte tokens (else an error)"},
        {'t', "threads", OPTION_INT, &threads, "threads (0: all cores)"},
    };
    const char *summary =
        "Encodes a text file (-i FILE, or - for stdin) into exactly its token ids, "
        "with no extra tokens.";
    SplitArgs args = split_inputs(argc, argv, "tokenizer encode");
    for (int i = 1; i < args.num_rest; i++) {
        if (strcmp(args.rest[i], "--help") == 0) {
            cli_print_usage("tokenizer encode -i TEXT_FILE", summary, options, 5);
            printf("  %-28s input text file, - for stdin\n", "-i, --input FILE");
            split_args_free(&args);
            return 0;
        }
    }
    cli_parse(args.num_rest, args.rest, summary, options, 5);
    if (args.num_inputs != 1)
        fatal("encode needs one input file (-i FILE), got %d", args.num_inputs);
    if (output[0] == '\0') fatal("encode needs an output (-o OUT.bin, or -o - for ids)");
    set_threads(threads);
    const char *path = args.inputs[0];

    BPE bpe;
    bpe_load(&bpe, vocab);
    InputText input = input_text_open(path);
    if (input.size == 0) fatal("%s: empty input: no text to encode", path);
    if (!allow_invalid) check_utf8(path, input.data, input.size, 0, input.data);
    double start = now_seconds();
    TokenList tokens = {0};
    encode_parallel(&bpe, input.data, input.size, allow_special, &tokens);
    double seconds = now_seconds() - start;

    if (strcmp(output, "-") == 0) {
        char line[16];
        for (size_t i = 0; i < tokens.size; i++) {
            int n = snprintf(line, sizeof(line), "%d\n", tokens.data[i]);
            fwrite(line, 1, (size_t)n, stdout);
        }
        if (fflush(stdout) != 0) fatal("stdout: write failed: %s", strerror(errno));
    } else {
        char temp_path[4096 + 32];
        snprintf(temp_path, sizeof(temp_path), "%s.tmp%d", output, (int)getpid());
        ShardFile shard;
        shard_open(&shard, temp_path, shard_token_bytes(bpe.vocab_size));
        shard_append(&shard, tokens.data, tokens.size);
        shard_close(&shard);
        temp_file_commit(temp_path, output);
        fprintf(stderr, "%s: %zu bytes -> %zu tokens in %.3f s (%.1f MB/s) -> %s\n", path,
                input.size, tokens.size, seconds, input.size / 1e6 / (seconds > 0 ? seconds : 1e-9),
                output);
    }
    token_list_free(&tokens);
    input_text_close(&input);
    bpe_free(&bpe);
    split_args_free(&args);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// decode

static int cmd_decode(int argc, char **argv) {
    const char *vocab = default_vocab();
    CliOption options[] = {
        {'v', "vocab", OPTION_STRING, &vocab,
         "vocabulary: dir with encoder.json + vocab.bpe, .tiktoken, or tokenizer .bin (llm.c's "
         "too)"},
    };
    const char *summary = "Prints the text of a data shard (-i SHARD.bin): the raw bytes of its "
                          "tokens, <|endoftext|> spelled out.";
    SplitArgs args = split_inputs(argc, argv, "tokenizer decode");
    for (int i = 1; i < args.num_rest; i++) {
        if (strcmp(args.rest[i], "--help") == 0) {
            cli_print_usage("tokenizer decode -i SHARD.bin", summary, options, 1);
            printf("  %-28s data shard\n", "-i, --input FILE");
            split_args_free(&args);
            return 0;
        }
    }
    cli_parse(args.num_rest, args.rest, summary, options, 1);
    if (args.num_inputs != 1)
        fatal("decode needs one shard (-i SHARD.bin), got %d", args.num_inputs);
    const char *path = args.inputs[0];

    // any tokenizer file decodes, llm.c's decode-only ones too
    int V;
    const uint8_t *const *token_bytes;
    const int *token_lengths;
    Tokenizer table;
    BPE bpe;
    memset(&table, 0, sizeof(table));
    memset(&bpe, 0, sizeof(bpe));
    uint8_t **bpe_bytes = NULL;
    int *bpe_lengths = NULL;
    struct stat st;
    int is_file_format = stat(vocab, &st) == 0 && !S_ISDIR(st.st_mode) &&
                         !path_ends_with(vocab, ".json") && !path_ends_with(vocab, ".tiktoken");
    if (is_file_format) {
        tokenizer_init(&table, vocab);
        V = table.vocab_size;
        token_bytes = (const uint8_t *const *)table.token_bytes;
        token_lengths = table.token_lengths;
    } else {
        bpe_load(&bpe, vocab);
        V = bpe.vocab_size;
        bpe_bytes = (uint8_t **)malloc_check((size_t)V * sizeof(uint8_t *), "decode table");
        bpe_lengths = (int *)malloc_check((size_t)V * sizeof(int), "decode table");
        for (int id = 0; id < V; id++) {
            bpe_bytes[id] = (uint8_t *)bpe_token_bytes(&bpe, id);
            bpe_lengths[id] = bpe.length[id];
        }
        token_bytes = (const uint8_t *const *)bpe_bytes;
        token_lengths = bpe_lengths;
    }

    FILE *file = fopen_check(path, "rb");
    int width;
    size_t num_tokens = dataloader_check_shard(file, path, &width);
    const size_t chunk = 1 << 16;
    uint8_t *raw = (uint8_t *)malloc_check(chunk * 4, "decode buffer");
    for (size_t done = 0; done < num_tokens; done += chunk) {
        size_t count = num_tokens - done < chunk ? num_tokens - done : chunk;
        fread_check(raw, (size_t)width, count, file, path, "tokens");
        for (size_t i = 0; i < count; i++) {
            uint32_t id;
            if (width == 2) {
                uint16_t v;
                memcpy(&v, raw + 2 * i, 2);
                id = v;
            } else {
                memcpy(&id, raw + 4 * i, 4);
            }
            if (id >= (uint32_t)V) {
                fatal("%s: token %zu is %u, outside the vocabulary of %s (V=%d)", path, done + i,
                      id, vocab, V);
            }
            fwrite(token_bytes[id], 1, (size_t)token_lengths[id], stdout);
        }
    }
    if (fflush(stdout) != 0) fatal("stdout: write failed: %s", strerror(errno));
    fclose(file);
    free(raw);
    if (is_file_format) {
        tokenizer_free(&table);
    } else {
        free(bpe_bytes);
        free(bpe_lengths);
        bpe_free(&bpe);
    }
    split_args_free(&args);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// prepare: inputs -> documents -> batches encoded on all threads -> ordered token stream -> shards

typedef enum { INPUT_TEXT, INPUT_JSONL, INPUT_JSON } InputKind;

typedef struct {
    char *path;
    InputKind kind;
    size_t size;
} InputFile;

typedef struct {
    InputFile *files;
    size_t count, capacity;
    size_t total_bytes;
} InputList;

static void input_list_add(InputList *list, const char *path, size_t size) {
    if (list->count == list->capacity) {
        list->capacity = list->capacity ? 2 * list->capacity : 64;
        list->files = (InputFile *)realloc(list->files, list->capacity * sizeof(InputFile));
        if (list->files == NULL) fatal("out of memory");
    }
    InputFile *file = &list->files[list->count++];
    file->path = strdup(path);
    if (file->path == NULL) fatal("out of memory");
    file->kind = path_ends_with(path, ".jsonl")  ? INPUT_JSONL
                 : path_ends_with(path, ".json") ? INPUT_JSON
                                                 : INPUT_TEXT;
    file->size = size;
    list->total_bytes += size;
}

static void input_list_free(InputList *list) {
    for (size_t i = 0; i < list->count; i++) free(list->files[i].path);
    free(list->files);
}

static int skip_hidden(const struct dirent *entry) {
    return entry->d_name[0] != '.';
}

// Files as given; directories recursively: their regular files in sorted order, hidden ones
// skipped.
static void collect_inputs(InputList *list, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) fatal("cannot open input %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        input_list_add(list, path, (size_t)st.st_size);
        return;
    }
    struct dirent **entries;
    int n = scandir(path, &entries, skip_hidden, alphasort);
    if (n < 0) fatal("cannot list directory %s: %s", path, strerror(errno));
    for (int i = 0; i < n; i++) {
        char child[4096];
        size_t length = strlen(path);
        snprintf(child, sizeof(child), "%s%s%s", path, length && path[length - 1] == '/' ? "" : "/",
                 entries[i]->d_name);
        struct stat child_st;
        if (stat(child, &child_st) == 0 &&
            (S_ISDIR(child_st.st_mode) || S_ISREG(child_st.st_mode))) {
            collect_inputs(list, child);
        }
        free(entries[i]);
    }
    free(entries);
}

enum { DOCS_BLANK_LINES = 1, DOCS_DOUBLE_NEWLINE = 2 };

typedef struct {
    const char *fields[16]; // JSON fields whose strings make a document, joined by "\n"
    char *field_names[16];
    int num_fields;
    int allow_invalid;
    // text files: 0 one document a file; DOCS_BLANK_LINES a new document after each blank-line
    // run; DOCS_DOUBLE_NEWLINE after each "\n\n" (llm.c's tinyshakespeare.py: text.split("\n\n"))
    int blank_line_documents;
} PrepareOptions;

#define BATCH_BYTES (1 << 20)

// One unit of parallel work: parts of text (documents or pieces of one), or a run of JSONL lines.
typedef struct {
    const InputFile *input;
    const uint8_t *file_data; // the whole input (its mapping), for line numbers in errors
    Slice *slices;
    uint8_t *starts_document; // (num_slices) 1 if slice i starts a document (eot goes before it)
    size_t num_slices, slices_capacity;
    const uint8_t *lines; // JSONL: lines_length bytes of whole lines, the first is first_line
    size_t lines_length, first_line;
    size_t input_bytes;
    size_t documents;
    TokenList tokens;
    int failed;
    char error[640];
} Batch;

static void batch_add_slice(Batch *batch, const uint8_t *text, size_t len, int starts_document) {
    if (batch->num_slices == batch->slices_capacity) {
        batch->slices_capacity = batch->slices_capacity ? 2 * batch->slices_capacity : 64;
        batch->slices = (Slice *)realloc(batch->slices, batch->slices_capacity * sizeof(Slice));
        batch->starts_document = (uint8_t *)realloc(batch->starts_document, batch->slices_capacity);
        if (batch->slices == NULL || batch->starts_document == NULL) fatal("out of memory");
    }
    batch->slices[batch->num_slices].text = text;
    batch->slices[batch->num_slices].len = len;
    batch->starts_document[batch->num_slices] = (uint8_t)starts_document;
    batch->num_slices++;
    batch->input_bytes += len;
}

static void batch_reset(Batch *batch) {
    batch->num_slices = 0;
    batch->lines = NULL;
    batch->lines_length = 0;
    batch->first_line = 0;
    batch->input_bytes = 0;
    batch->documents = 0;
    batch->tokens.size = 0;
    batch->failed = 0;
    batch->error[0] = '\0';
}

typedef struct {
    uint8_t *data;
    size_t size, capacity;
} ByteBuffer;

static void byte_buffer_append(ByteBuffer *buffer, const void *data, size_t n) {
    if (buffer->size + n > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 4096;
        while (capacity < buffer->size + n) capacity *= 2;
        buffer->data = (uint8_t *)realloc(buffer->data, capacity);
        if (buffer->data == NULL) fatal("out of memory");
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->size, data, n);
    buffer->size += n;
}

// The document of one JSON object: its fields' strings joined by "\n" (empty ones left out).
// Returns NULL, or an error message in error.
static int json_document(json_object *object, const PrepareOptions *options, ByteBuffer *doc,
                         char *error, size_t error_size) {
    doc->size = 0;
    if (!json_object_is_type(object, json_type_object)) {
        snprintf(error, error_size, "expected a JSON object, found a %s",
                 json_type_to_name(json_object_get_type(object)));
        return 0;
    }
    for (int k = 0; k < options->num_fields; k++) {
        json_object *value;
        if (!json_object_object_get_ex(object, options->fields[k], &value)) {
            snprintf(error, error_size, "no field '%s' (set the field with --field)",
                     options->fields[k]);
            return 0;
        }
        if (!json_object_is_type(value, json_type_string)) {
            snprintf(error, error_size, "field '%s' is not a string (JSON %s)", options->fields[k],
                     json_type_to_name(json_object_get_type(value)));
            return 0;
        }
        int length = json_object_get_string_len(value);
        if (length == 0) continue;
        if (doc->size > 0) byte_buffer_append(doc, "\n", 1);
        byte_buffer_append(doc, json_object_get_string(value), (size_t)length);
    }
    return 1;
}

// Records an error for the batch (the first one stops it).
static void batch_fail(Batch *batch, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void batch_fail(Batch *batch, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(batch->error, sizeof(batch->error), format, args);
    va_end(args);
    batch->failed = 1;
}

static void batch_encode_document(Batch *batch, const BPE *bpe, BPEWork *work, const uint8_t *text,
                                  size_t len, int starts_document) {
    if (starts_document) {
        token_list_push(&batch->tokens, bpe->eot_token);
        batch->documents++;
    }
    bpe_encode_ordinary(bpe, text, len, &batch->tokens, work);
}

static void batch_run(Batch *batch, const BPE *bpe, BPEWork *work, const PrepareOptions *options,
                      ByteBuffer *doc) {
    const char *path = batch->input->path;
    if (batch->lines == NULL) { // text, or a JSON array's documents (checked when read)
        for (size_t i = 0; i < batch->num_slices; i++) {
            const Slice *s = &batch->slices[i];
            if (!options->allow_invalid && batch->input->kind == INPUT_TEXT) {
                size_t bad = utf8_first_invalid(s->text, s->len);
                if (bad < s->len) {
                    size_t offset = (size_t)(s->text - batch->file_data) + bad;
                    batch_fail(batch, "%s: line %zu (byte %zu): invalid UTF-8 byte 0x%02x %s", path,
                               line_of(batch->file_data, offset), offset, s->text[bad],
                               INVALID_UTF8_HINT);
                    return;
                }
            }
            batch_encode_document(batch, bpe, work, s->text, s->len, batch->starts_document[i]);
        }
        return;
    }
    json_tokener *tokener = json_tokener_new();
    if (tokener == NULL) fatal("out of memory");
    const uint8_t *text = batch->lines, *end = batch->lines + batch->lines_length;
    size_t line_number = batch->first_line;
    for (; text < end; line_number++) {
        const uint8_t *newline = (const uint8_t *)memchr(text, '\n', (size_t)(end - text));
        size_t length = newline ? (size_t)(newline - text) : (size_t)(end - text);
        const uint8_t *line = text;
        text += length + (newline ? 1 : 0);
        size_t blank = 0;
        while (blank < length && strchr(" \t\r", line[blank]) != NULL) blank++;
        if (blank == length) continue; // blank lines carry no record
        json_tokener_reset(tokener);
        json_object *object = json_tokener_parse_ex(tokener, (const char *)line, (int)length);
        enum json_tokener_error error = json_tokener_get_error(tokener);
        if (object == NULL || error != json_tokener_success) {
            batch_fail(batch, "%s: line %zu: not valid JSON at column %zu: %s", path, line_number,
                       json_tokener_get_parse_end(tokener) + 1,
                       error == json_tokener_continue ? "the line ends inside a value"
                                                      : json_tokener_error_desc(error));
            if (object != NULL) json_object_put(object);
            break;
        }
        size_t parse_end = json_tokener_get_parse_end(tokener);
        while (parse_end < length && strchr(" \t\r", line[parse_end]) != NULL) parse_end++;
        char message[300];
        int ok = 1;
        if (parse_end != length) {
            snprintf(message, sizeof(message), "unexpected text after the JSON value at column %zu",
                     parse_end + 1);
            ok = 0;
        } else {
            ok = json_document(object, options, doc, message, sizeof(message));
        }
        json_object_put(object);
        if (!ok) {
            batch_fail(batch, "%s: line %zu: %s", path, line_number, message);
            break;
        }
        if (doc->size == 0) continue; // an empty document adds nothing, not even an eot
        if (!options->allow_invalid) {
            size_t bad = utf8_first_invalid(doc->data, doc->size);
            if (bad < doc->size) {
                batch_fail(batch, "%s: line %zu: invalid UTF-8 byte 0x%02x in the text %s", path,
                           line_number, doc->data[bad], INVALID_UTF8_HINT);
                break;
            }
        }
        batch_encode_document(batch, bpe, work, doc->data, doc->size, 1);
    }
    json_tokener_free(tokener);
}

// The current input and where its next batch starts. Batches point into the input's mapping (or,
// for a JSON array, into the buffer of its documents), so a finished input is retired and freed
// only after the round that holds its batches.
typedef struct {
    MappedFile mapped;
    uint8_t *owned;
    Slice *json_docs;
} RetiredInput;

typedef struct {
    const InputList *inputs;
    const PrepareOptions *options;
    size_t next_file;
    const InputFile *file;
    MappedFile mapped;
    size_t position;     // TEXT and JSONL: next byte; JSON: next document
    size_t line;         // JSONL: number of the line at position
    int in_document;     // TEXT: position is inside a document cut into slices
    size_t document_end; // ... which ends here
    ByteBuffer owned;    // JSON: the documents, back to back
    Slice *json_docs;
    size_t num_json_docs;
    RetiredInput *retired;
    size_t num_retired, retired_capacity;
} InputCursor;

static void cursor_retire(InputCursor *cursor) {
    if (cursor->num_retired == cursor->retired_capacity) {
        cursor->retired_capacity = cursor->retired_capacity ? 2 * cursor->retired_capacity : 16;
        cursor->retired = (RetiredInput *)realloc(cursor->retired,
                                                  cursor->retired_capacity * sizeof(RetiredInput));
        if (cursor->retired == NULL) fatal("out of memory");
    }
    RetiredInput *r = &cursor->retired[cursor->num_retired++];
    r->mapped = cursor->mapped;
    r->owned = cursor->owned.data;
    r->json_docs = cursor->json_docs;
    memset(&cursor->mapped, 0, sizeof(cursor->mapped));
    memset(&cursor->owned, 0, sizeof(cursor->owned));
    cursor->json_docs = NULL;
    cursor->num_json_docs = 0;
}

// Frees the inputs retired so far (call when no batch refers to them any more).
static void cursor_free_retired(InputCursor *cursor) {
    for (size_t i = 0; i < cursor->num_retired; i++) {
        mmap_file_close(&cursor->retired[i].mapped);
        free(cursor->retired[i].owned);
        free(cursor->retired[i].json_docs);
    }
    cursor->num_retired = 0;
}

static void cursor_open_json(InputCursor *cursor) {
    const InputFile *input = cursor->file;
    json_tokener *tokener = json_tokener_new();
    json_object *root =
        json_tokener_parse_ex(tokener, (const char *)cursor->mapped.data, (int)cursor->mapped.size);
    enum json_tokener_error error = json_tokener_get_error(tokener);
    if (root == NULL || error != json_tokener_success) {
        size_t at = json_tokener_get_parse_end(tokener);
        fatal("%s: line %zu: not valid JSON: %s", input->path, line_of(cursor->mapped.data, at),
              error == json_tokener_continue ? "unexpected end of file"
                                             : json_tokener_error_desc(error));
    }
    if (!json_object_is_type(root, json_type_array)) {
        fatal("%s: expected a JSON array of objects (.json), found a %s (JSON Lines files end in "
              ".jsonl)",
              input->path, json_type_to_name(json_object_get_type(root)));
    }
    size_t n = json_object_array_length(root);
    cursor->json_docs = (Slice *)malloc_check((n + 1) * sizeof(Slice), "documents");
    size_t *offsets = (size_t *)malloc_check((n + 1) * sizeof(size_t), "documents");
    size_t count = 0;
    ByteBuffer doc = {0};
    for (size_t i = 0; i < n; i++) {
        char message[300];
        if (!json_document(json_object_array_get_idx(root, i), cursor->options, &doc, message,
                           sizeof(message))) {
            fatal("%s: element %zu of the array: %s", input->path, i, message);
        }
        if (doc.size == 0) continue;
        size_t bad = utf8_first_invalid(doc.data, doc.size);
        if (!cursor->options->allow_invalid && bad < doc.size) {
            fatal("%s: element %zu of the array: invalid UTF-8 byte 0x%02x in the text %s",
                  input->path, i, doc.data[bad], INVALID_UTF8_HINT);
        }
        offsets[count] = cursor->owned.size;
        cursor->json_docs[count].len = doc.size;
        byte_buffer_append(&cursor->owned, doc.data, doc.size);
        count++;
    }
    for (size_t i = 0; i < count; i++) cursor->json_docs[i].text = cursor->owned.data + offsets[i];
    cursor->num_json_docs = count;
    free(offsets);
    free(doc.data);
    json_object_put(root);
    json_tokener_free(tokener);
}

// Moves to the next input with something in it; returns 0 when there is none.
static int cursor_next_file(InputCursor *cursor) {
    while (cursor->next_file < cursor->inputs->count) {
        cursor_retire(cursor);
        cursor->file = &cursor->inputs->files[cursor->next_file++];
        cursor->mapped = mmap_file_check(cursor->file->path);
        cursor->position = 0;
        cursor->line = 1;
        cursor->in_document = 0;
        if (cursor->mapped.size == 0) continue;
        if (cursor->file->kind == INPUT_JSON) cursor_open_json(cursor);
        return 1;
    }
    cursor_retire(cursor);
    cursor->file = NULL;
    return 0;
}

// End of the text file's document that starts at pos: the file's end, or with blank-line
// documents the start of the next one (after "\n\n" and any further newlines, before another
// character), or with double-newline documents right after the next "\n\n".
static size_t text_document_end(const InputCursor *cursor, size_t pos) {
    const uint8_t *text = cursor->mapped.data;
    size_t size = cursor->mapped.size;
    if (!cursor->options->blank_line_documents) return size;
    const uint8_t *hit = find_bytes(text + pos, size - pos, "\n\n", 2);
    if (hit == NULL) return size;
    size_t p = (size_t)(hit - text) + 2;
    if (cursor->options->blank_line_documents == DOCS_DOUBLE_NEWLINE) return p;
    while (p < size && text[p] == '\n') p++;
    return p;
}

static size_t cursor_input_end(const InputCursor *cursor) {
    return cursor->file->kind == INPUT_JSON ? cursor->num_json_docs : cursor->mapped.size;
}

// Fills batch with about BATCH_BYTES of the next input; returns 0 when the inputs are done.
// A batch never spans two inputs.
static int cursor_fill_batch(InputCursor *cursor, Batch *batch) {
    batch_reset(batch);
    while (cursor->file == NULL || cursor->position >= cursor_input_end(cursor)) {
        if (!cursor_next_file(cursor)) return 0;
    }
    const InputFile *input = cursor->file;
    batch->input = input;
    batch->file_data = cursor->mapped.data;
    const uint8_t *text = cursor->mapped.data;
    size_t size = cursor->mapped.size;
    if (input->kind == INPUT_JSONL) {
        size_t start = cursor->position;
        size_t end = start + BATCH_BYTES < size ? start + BATCH_BYTES : size;
        if (end < size) {
            const uint8_t *newline = (const uint8_t *)memchr(text + end, '\n', size - end);
            end = newline ? (size_t)(newline - text) + 1 : size;
        }
        batch->lines = text + start;
        batch->lines_length = end - start;
        batch->first_line = cursor->line;
        batch->input_bytes = end - start;
        for (size_t i = start; i < end; i++) cursor->line += text[i] == '\n';
        cursor->position = end;
        return 1;
    }
    if (input->kind == INPUT_JSON) {
        while (cursor->position < cursor->num_json_docs && batch->input_bytes < BATCH_BYTES) {
            const Slice *doc = &cursor->json_docs[cursor->position++];
            batch_add_slice(batch, doc->text, doc->len, 1);
        }
        return 1;
    }
    // text: whole documents, and long ones cut at safe points (pretokenize_safe_cut)
    while (cursor->position < size && batch->input_bytes < BATCH_BYTES) {
        size_t start = cursor->position;
        int starts_document = !cursor->in_document;
        size_t end = cursor->in_document ? cursor->document_end : text_document_end(cursor, start);
        size_t room = BATCH_BYTES - batch->input_bytes;
        if (end - start > room + room / 2) {
            size_t cut = pretokenize_safe_cut(text, end, start + room);
            if (cut < end) {
                batch_add_slice(batch, text + start, cut - start, starts_document);
                cursor->position = cut;
                cursor->in_document = 1;
                cursor->document_end = end;
                continue;
            }
        }
        batch_add_slice(batch, text + start, end - start, starts_document);
        cursor->position = end;
        cursor->in_document = 0;
    }
    return 1;
}

// The token stream becomes shards. Every shard is written under a temporary name and renamed only
// when the whole run has succeeded. With --val-tokens N the first N tokens are the val split, so
// shards are written as the tokens come. With --val-fraction F (the default, 0.1) the split point,
// int(n * (1 - F)), is known only at the end: the stream is cut into chunks of shard_size tokens,
// which are the train shards as they are, except the chunk holding the split point; the val tokens
// after it are copied into val shards.
typedef struct {
    char temp_path[4096 + 64];
    size_t num_tokens;
} Chunk;

typedef struct {
    const char *dir, *name;
    int token_bytes;
    size_t shard_size;
    long long val_tokens; // >= 0: val first; < 0: val_fraction at the end
    double val_fraction;
    size_t total;
    ShardFile current;
    int current_open;
    Chunk *chunks; // in stream order; with val first, chunk k is val while k < num_val_chunks
    size_t num_chunks, chunks_capacity;
    size_t num_val_chunks; // val-first: how many chunks belong to val
    size_t val_written;    // val-first: tokens sent to val so far
} ShardStream;

static void stream_open_chunk(ShardStream *stream) {
    if (stream->num_chunks == stream->chunks_capacity) {
        stream->chunks_capacity = stream->chunks_capacity ? 2 * stream->chunks_capacity : 16;
        stream->chunks = (Chunk *)realloc(stream->chunks, stream->chunks_capacity * sizeof(Chunk));
        if (stream->chunks == NULL) fatal("out of memory");
    }
    Chunk *chunk = &stream->chunks[stream->num_chunks++];
    snprintf(chunk->temp_path, sizeof(chunk->temp_path), "%s/.%s_chunk_%06zu.tmp%d", stream->dir,
             stream->name, stream->num_chunks - 1, (int)getpid());
    chunk->num_tokens = 0;
    shard_open(&stream->current, chunk->temp_path, stream->token_bytes);
    stream->current_open = 1;
}

static void stream_close_chunk(ShardStream *stream) {
    if (!stream->current_open) return;
    stream->chunks[stream->num_chunks - 1].num_tokens = stream->current.num_tokens;
    shard_close(&stream->current);
    stream->current_open = 0;
}

static void stream_append(ShardStream *stream, const int32_t *ids, size_t n) {
    while (n > 0) {
        // val first: the val part ends its last chunk early at exactly val_tokens
        int in_val = stream->val_tokens >= 0 && stream->val_written < (size_t)stream->val_tokens;
        if (!stream->current_open) {
            stream_open_chunk(stream);
            if (in_val) stream->num_val_chunks++;
        }
        size_t room = stream->shard_size - stream->current.num_tokens;
        if (in_val && (size_t)stream->val_tokens - stream->val_written < room) {
            room = (size_t)stream->val_tokens - stream->val_written;
        }
        size_t take = n < room ? n : room;
        shard_append(&stream->current, ids, take);
        if (in_val) stream->val_written += take;
        stream->total += take;
        ids += take;
        n -= take;
        if (take == room) stream_close_chunk(stream);
    }
}

// Copies tokens [from, to) of the stream (fraction mode: chunk k holds tokens k*shard_size..)
// into a new shard file.
static void stream_copy(ShardStream *stream, size_t from, size_t to, const char *temp_path) {
    ShardFile shard;
    shard_open(&shard, temp_path, stream->token_bytes);
    size_t width = (size_t)stream->token_bytes;
    uint8_t *buffer = (uint8_t *)malloc_check((1 << 20) * width, "copy buffer");
    while (from < to) {
        size_t k = from / stream->shard_size, offset = from % stream->shard_size;
        size_t count = stream->chunks[k].num_tokens - offset;
        if (count > to - from) count = to - from;
        if (count > (1 << 20)) count = 1 << 20;
        FILE *file = fopen_check(stream->chunks[k].temp_path, "rb");
        fseek_check(file, (long)(HEADER_BYTES + offset * width), SEEK_SET,
                    stream->chunks[k].temp_path);
        fread_check(buffer, width, count, file, stream->chunks[k].temp_path, "tokens");
        fclose(file);
        if (fwrite(buffer, width, count, shard.file) != count) {
            fatal("%s: write failed: %s", temp_path, strerror(errno));
        }
        shard.num_tokens += count;
        from += count;
    }
    free(buffer);
    shard_close(&shard);
}

typedef struct {
    char temp_path[4096 + 64];
    char final_path[4096 + 64];
    size_t num_tokens;
} FinalShard;

static void final_shard_set(FinalShard *shard, const ShardStream *stream, const char *split,
                            size_t index, const char *temp_path, size_t num_tokens) {
    snprintf(shard->temp_path, sizeof(shard->temp_path), "%s", temp_path);
    snprintf(shard->final_path, sizeof(shard->final_path), "%s/%s_%s_%06zu.bin", stream->dir,
             stream->name, split, index);
    shard->num_tokens = num_tokens;
}

// Decides the final shards (train, then val); returns how many, in *out.
static size_t stream_finish(ShardStream *stream, FinalShard **out, size_t *num_train,
                            size_t *num_val) {
    stream_close_chunk(stream);
    size_t n = stream->total, S = stream->shard_size;
    FinalShard *shards =
        (FinalShard *)calloc_check(stream->num_chunks + n / S + 4, sizeof(FinalShard), "shards");
    size_t count = 0;
    *num_train = 0;
    *num_val = 0;
    if (stream->val_tokens >= 0) {
        size_t val_index = 0, train_index = 0;
        for (size_t k = 0; k < stream->num_chunks; k++) {
            int is_val = k < stream->num_val_chunks;
            final_shard_set(&shards[count++], stream, is_val ? "val" : "train",
                            is_val ? val_index++ : train_index++, stream->chunks[k].temp_path,
                            stream->chunks[k].num_tokens);
            *(is_val ? num_val : num_train) += stream->chunks[k].num_tokens;
        }
        *out = shards;
        return count;
    }
    size_t train_tokens = (size_t)((double)n * (1.0 - stream->val_fraction));
    if (train_tokens > n) train_tokens = n;
    size_t full = train_tokens / S;
    for (size_t k = 0; k < full; k++) { // whole chunks are train shards as they are
        final_shard_set(&shards[count++], stream, "train", k, stream->chunks[k].temp_path, S);
    }
    char temp_path[4096 + 64];
    if (train_tokens > full * S) {
        snprintf(temp_path, sizeof(temp_path), "%s/.%s_train_%06zu.tmp%d", stream->dir,
                 stream->name, full, (int)getpid());
        stream_copy(stream, full * S, train_tokens, temp_path);
        final_shard_set(&shards[count++], stream, "train", full, temp_path,
                        train_tokens - full * S);
    }
    size_t val_index = 0;
    for (size_t from = train_tokens; from < n; from += S, val_index++) {
        size_t to = from + S < n ? from + S : n;
        snprintf(temp_path, sizeof(temp_path), "%s/.%s_val_%06zu.tmp%d", stream->dir, stream->name,
                 val_index, (int)getpid());
        stream_copy(stream, from, to, temp_path);
        final_shard_set(&shards[count++], stream, "val", val_index, temp_path, to - from);
    }
    for (size_t k = full; k < stream->num_chunks; k++)
        temp_file_remove(stream->chunks[k].temp_path);
    *num_train = train_tokens;
    *num_val = n - train_tokens;
    *out = shards;
    return count;
}

// Removes NAME_SPLIT_*.bin shards of an earlier run that this run did not replace.
static void remove_stale_shards(const char *dir, const char *name, const FinalShard *shards,
                                size_t count) {
    const char *splits[2] = {"train", "val"};
    for (int s = 0; s < 2; s++) {
        char pattern[4096 + 64];
        snprintf(pattern, sizeof(pattern), "%s/%s_%s_*.bin", dir, name, splits[s]);
        glob_t found;
        if (glob(pattern, 0, NULL, &found) != 0) continue;
        for (size_t i = 0; i < found.gl_pathc; i++) {
            int ours = 0;
            for (size_t k = 0; k < count && !ours; k++) {
                ours = strcmp(found.gl_pathv[i], shards[k].final_path) == 0;
            }
            if (!ours) {
                if (unlink(found.gl_pathv[i]) != 0) {
                    fatal("cannot remove the stale shard %s: %s", found.gl_pathv[i],
                          strerror(errno));
                }
                printf("removed stale shard %s\n", found.gl_pathv[i]);
            }
        }
        globfree(&found);
    }
}

static void format_count(char *out, size_t size, size_t value) {
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%zu", value);
    size_t k = 0;
    for (int i = 0; i < n && k + 2 < size; i++) {
        if (i > 0 && (n - i) % 3 == 0) out[k++] = ',';
        out[k++] = digits[i];
    }
    out[k] = '\0';
}

static void print_progress(size_t bytes_done, size_t bytes_total, size_t tokens, double elapsed,
                           int final) {
    static double last = 0;
    int tty = isatty(fileno(stderr));
    if (!final && elapsed - last < (tty ? 0.25 : 10.0)) return;
    last = elapsed;
    double rate = elapsed > 0 ? bytes_done / 1e6 / elapsed : 0;
    double eta = rate > 0 ? (bytes_total - bytes_done) / 1e6 / rate : 0;
    char count[40];
    format_count(count, sizeof(count), tokens);
    fprintf(stderr, "%sprepare: %.1f/%.1f MB (%3.0f%%) | %s tokens | %.1f MB/s | ETA %dm%02ds%s",
            tty ? "\r" : "", bytes_done / 1e6, bytes_total / 1e6,
            bytes_total ? 100.0 * bytes_done / bytes_total : 100.0, count, rate, (int)eta / 60,
            (int)eta % 60, tty && !final ? "" : "\n");
    fflush(stderr);
}

// ----------------------------------------------------------------------------------------------
// prepare --sft: instruction data -> packed rows of T+1 tokens + loss masks (llmc/sft_data.h)

typedef struct {
    const char *vocab, *out_dir, *name, *tokenizer_name;
    SFTFormat format;
    int seq_len, shard_size, allow_invalid;
    double val_fraction;
} SFTPrepareOptions;

// Writes rows [first_row, first_row + num_rows) as a token shard and its mask shard, under
// temporary names (registered, committed by the caller).
static void sft_write_shard(const SFTPacked *packed, size_t first_row, size_t num_rows, int T,
                            int vocab_size, const char *temp_tokens, const char *temp_mask) {
    size_t row_length = (size_t)T + 1;
    size_t start = first_row * row_length, count = num_rows * row_length;
    ShardFile shard;
    shard_open(&shard, temp_tokens, shard_token_bytes(vocab_size));
    shard_append(&shard, packed->tokens.data + start, count);
    shard_close(&shard);
    MaskShardInfo info = {count, T, vocab_size, 0};
    uint8_t *bytes = (uint8_t *)malloc_check(count, "mask bytes");
    for (size_t i = 0; i < count; i++) {
        bytes[i] = (uint8_t)packed->mask.data[start + i];
        info.trained += bytes[i];
    }
    temp_file_register(temp_mask);
    FILE *file = fopen_check(temp_mask, "wb");
    int32_t header[HEADER_INTS];
    mask_header_fill(header, &info);
    fwrite_check(header, sizeof(int32_t), HEADER_INTS, file, temp_mask);
    fwrite_check(bytes, 1, count, file, temp_mask);
    if (fflush(file) != 0 || fsync(fileno(file)) != 0 || fclose(file) != 0) {
        fatal("%s: flush/close failed: %s", temp_mask, strerror(errno));
    }
    free(bytes);
}

// Removes NAME_SPLIT_*.mask files of an earlier run that this run did not write.
static void remove_stale_masks(const char *dir, const char *name, char (*written)[4096 + 64],
                               size_t count) {
    const char *splits[2] = {"train", "val"};
    for (int s = 0; s < 2; s++) {
        char pattern[4096 + 64];
        snprintf(pattern, sizeof(pattern), "%s/%s_%s_*.mask", dir, name, splits[s]);
        glob_t found;
        if (glob(pattern, 0, NULL, &found) != 0) continue;
        for (size_t i = 0; i < found.gl_pathc; i++) {
            int ours = 0;
            for (size_t k = 0; k < count && !ours; k++)
                ours = strcmp(found.gl_pathv[i], written[k]) == 0;
            if (!ours && unlink(found.gl_pathv[i]) != 0) {
                fatal("cannot remove the stale mask shard %s: %s", found.gl_pathv[i],
                      strerror(errno));
            }
        }
        globfree(&found);
    }
}

static int prepare_sft(const SFTPrepareOptions *options, const SplitArgs *args) {
    double start = now_seconds();
    int T = options->seq_len;
    InputList inputs = {0};
    for (int i = 0; i < args->num_inputs; i++) collect_inputs(&inputs, args->inputs[i]);
    BPE bpe;
    bpe_load(&bpe, options->vocab);
    chat_add_specials(&bpe, options->vocab);
    ChatTokens chat;
    chat_tokens_init(&chat, &bpe, options->vocab);
    SFTConversations all = {0};
    BPEWork work = {0};
    for (size_t f = 0; f < inputs.count; f++) {
        sft_read_file(inputs.files[f].path, options->format, options->allow_invalid, &bpe, &chat,
                      &all, &work);
    }
    SFTPacked packed;
    sft_pack(&all, T, bpe.eot_token, &packed);
    if (packed.rows == 0) {
        fatal("no conversation has a trained token within T+1 = %d tokens (%zu read)", T + 1,
              all.count);
    }
    size_t val_rows = (size_t)((double)packed.rows * options->val_fraction);
    if (options->val_fraction > 0 && val_rows == 0 && packed.rows > 1) val_rows = 1;
    size_t train_rows = packed.rows - val_rows;
    size_t rows_per_shard = (size_t)options->shard_size / ((size_t)T + 1);
    if (rows_per_shard == 0) rows_per_shard = 1;

    make_dir_check(options->out_dir);
    run_dir_remove_stale_temp_files(options->out_dir); // a killed prepare's
    size_t max_shards = packed.rows / rows_per_shard + 4;
    char(*temp_paths)[4096 + 64] = calloc_check(2 * max_shards, sizeof(*temp_paths), "paths");
    char(*final_paths)[4096 + 64] = calloc_check(2 * max_shards, sizeof(*final_paths), "paths");
    char(*final_masks)[4096 + 64] = calloc_check(max_shards, sizeof(*final_masks), "paths");
    FinalShard *shards = (FinalShard *)calloc_check(max_shards, sizeof(FinalShard), "shards");
    size_t num_files = 0, num_shards = 0;
    for (int split = 0; split < 2; split++) {
        size_t first = split == 0 ? 0 : train_rows, end = split == 0 ? train_rows : packed.rows;
        for (size_t row = first, index = 0; row < end; row += rows_per_shard, index++) {
            size_t n = end - row < rows_per_shard ? end - row : rows_per_shard;
            const char *split_name = split == 0 ? "train" : "val";
            char *temp_tokens = temp_paths[num_files], *temp_mask = temp_paths[num_files + 1];
            snprintf(temp_tokens, 4096 + 64, "%s/.%s_%s_%06zu.bin.tmp%d", options->out_dir,
                     options->name, split_name, index, (int)getpid());
            snprintf(temp_mask, 4096 + 64, "%s/.%s_%s_%06zu.mask.tmp%d", options->out_dir,
                     options->name, split_name, index, (int)getpid());
            snprintf(final_paths[num_files], 4096 + 64, "%s/%s_%s_%06zu.bin", options->out_dir,
                     options->name, split_name, index);
            snprintf(final_paths[num_files + 1], 4096 + 64, "%s/%s_%s_%06zu.mask", options->out_dir,
                     options->name, split_name, index);
            snprintf(final_masks[num_shards], 4096 + 64, "%s", final_paths[num_files + 1]);
            sft_write_shard(&packed, row, n, T, bpe.vocab_size, temp_tokens, temp_mask);
            snprintf(shards[num_shards].final_path, sizeof(shards[num_shards].final_path), "%s",
                     final_paths[num_files]);
            shards[num_shards].num_tokens = n * ((size_t)T + 1);
            num_shards++;
            num_files += 2;
        }
    }
    char tokenizer_path[4096 + 256] = "";
    if (options->tokenizer_name[0] != '\0') { // first: if it fails, no shard is committed
        snprintf(tokenizer_path, sizeof(tokenizer_path), "%s/%s", options->out_dir,
                 options->tokenizer_name);
        bpe_write_file(&bpe, tokenizer_path);
    }
    for (size_t k = 0; k < num_files; k++) temp_file_commit(temp_paths[k], final_paths[k]);
    remove_stale_shards(options->out_dir, options->name, shards, num_shards);
    remove_stale_masks(options->out_dir, options->name, final_masks, num_shards);

    size_t total = packed.rows * ((size_t)T + 1);
    printf("prepare --sft %s: %zu file(s), %zu conversations: %zu packed, %zu truncated to T+1 = "
           "%d tokens, %zu dropped (nothing trained within T+1)\n",
           sft_format_names[options->format], inputs.count, all.count, packed.packed,
           packed.truncated, T + 1, packed.dropped);
    printf("  %zu rows x %d tokens = %zu tokens: %zu trained targets (%.1f%%), %zu padding "
           "(%.1f%%) -> train %zu rows / val %zu rows in %s/ in %.2f s\n",
           packed.rows, T + 1, total, packed.trained, 100.0 * packed.trained / total,
           packed.padding, 100.0 * packed.padding / total, train_rows, val_rows, options->out_dir,
           now_seconds() - start);
    for (size_t k = 0; k < num_shards; k++) {
        printf("  %s (+ .mask): %zu tokens\n", shards[k].final_path, shards[k].num_tokens);
    }
    if (tokenizer_path[0] != '\0') {
        printf("  %s: tokenizer (V=%d, chat tokens %d..%d)\n", tokenizer_path, bpe.vocab_size,
               chat.start[CHAT_USER], chat.end[CHAT_SYSTEM]);
    }
    free(temp_paths);
    free(final_paths);
    free(final_masks);
    free(shards);
    sft_packed_free(&packed);
    sft_conversations_free(&all);
    bpe_work_free(&work);
    bpe_free(&bpe);
    input_list_free(&inputs);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// show: a packed SFT shard as text, trained spans in [[ ]]

static void show_token(const BPE *bpe, int32_t id) {
    fwrite(bpe_token_bytes(bpe, id), 1, bpe->length[id], stdout);
}

static int cmd_show(int argc, char **argv) {
    const char *vocab = default_vocab();
    const char *input = "";
    int max_rows = -1;
    CliOption options[] = {
        {'v', "vocab", OPTION_STRING, &vocab,
         "vocabulary (the tokenizer file written by prepare --sft, or GPT-2's directory)"},
        {'i', "input", OPTION_STRING, &input, "token shard NAME.bin with its NAME.mask beside it"},
        {'n', "rows", OPTION_INT, &max_rows, "print at most this many rows (-1: all)"},
    };
    cli_parse(argc, argv,
              "Prints each packed row of an SFT shard as text: trained (mask 1) spans between [[ "
              "and ]], special tokens by name, trailing padding as a count.",
              options, (int)(sizeof(options) / sizeof(options[0])));
    if (input[0] == '\0') fatal("show needs a shard (-i NAME.bin)");
    char mask_path[4096 + 8];
    if (!mask_path_of(input, mask_path, sizeof(mask_path))) {
        fatal("%s: expected a token shard named *.bin (its mask is *.mask)", input);
    }
    FILE *token_file = fopen_check(input, "rb");
    int token_bytes;
    size_t num_tokens = dataloader_check_shard(token_file, input, &token_bytes);
    if (!file_exists(mask_path)) fatal("%s: no mask shard %s beside it", input, mask_path);
    FILE *mask_file = fopen_check(mask_path, "rb");
    MaskShardInfo info = mask_read_header(mask_file, mask_path);
    if (info.num_tokens != num_tokens) {
        fatal("%s: %zu tokens in header[2], but %s has %zu", mask_path, info.num_tokens, input,
              num_tokens);
    }
    uint8_t *raw = (uint8_t *)malloc_check(num_tokens * (size_t)token_bytes, "tokens");
    uint8_t *mask = (uint8_t *)malloc_check(num_tokens, "mask");
    fread_check(raw, (size_t)token_bytes, num_tokens, token_file, input, "tokens");
    fread_check(mask, 1, num_tokens, mask_file, mask_path, "mask");
    fclose(token_file);
    fclose(mask_file);
    BPE bpe;
    bpe_load(&bpe, vocab);
    chat_add_specials(&bpe, vocab);
    int32_t *ids = (int32_t *)malloc_check(num_tokens * sizeof(int32_t), "ids");
    for (size_t i = 0; i < num_tokens; i++) {
        uint32_t id;
        if (token_bytes == 2) {
            uint16_t v;
            memcpy(&v, raw + 2 * i, 2);
            id = v;
        } else {
            memcpy(&id, raw + 4 * i, 4);
        }
        if (id >= (uint32_t)bpe.vocab_size) {
            fatal("%s: token %u at position %zu is outside the vocabulary of %s (V=%d)", input, id,
                  i, vocab, bpe.vocab_size);
        }
        if (mask[i] > 1)
            fatal("%s: mask byte %u at position %zu: expected 0 or 1", mask_path, mask[i], i);
        ids[i] = (int32_t)id;
    }
    size_t row_length = (size_t)info.seq_len + 1, rows = num_tokens / row_length;
    for (size_t r = 0; r < rows && (max_rows < 0 || r < (size_t)max_rows); r++) {
        const int32_t *row = ids + r * row_length;
        const uint8_t *row_mask = mask + r * row_length;
        size_t end = row_length, trained = 0;
        while (end > 1 && row[end - 1] == bpe.eot_token && row_mask[end - 1] == 0) end--;
        for (size_t t = 0; t < row_length; t++) trained += row_mask[t];
        printf("=== row %zu: %zu trained targets ===\n", r, trained);
        int open = 0;
        for (size_t t = 0; t < end; t++) {
            if (row_mask[t] && !open) fputs("[[", stdout);
            if (!row_mask[t] && open) fputs("]]", stdout);
            open = row_mask[t];
            show_token(&bpe, row[t]);
        }
        if (open) fputs("]]", stdout);
        if (end < row_length) printf("[padding: %zu x <|endoftext|>]", row_length - end);
        printf("\n");
    }
    free(raw);
    free(mask);
    free(ids);
    bpe_free(&bpe);
    return 0;
}

static int cmd_prepare(int argc, char **argv) {
    const char *vocab = default_vocab();
    const char *out_dir = "", *name = "data", *field = "text", *docs = "file";
    const char *val_fraction_text = "0.1", *tokenizer_name = "tokenizer.bin";
    int shard_size = 100000000, val_tokens = -1, allow_invalid = 0, threads = 0;
    const char *sft = "";
    int seq_len = 1024;
    CliOption options[] = {
        {'v', "vocab", OPTION_STRING, &vocab,
         "vocabulary: dir with encoder.json + vocab.bpe, .tiktoken, or tokenizer .bin"},
        {'o', "output", OPTION_STRING, &out_dir, "output directory (created if missing)"},
        {0, "name", OPTION_STRING, &name, "shards are NAME_train_%06d.bin, NAME_val_%06d.bin"},
        {0, "field", OPTION_STRING, &field,
         "JSON field(s) holding the text; a,b: fields joined by a newline"},
        {0, "docs", OPTION_STRING, &docs,
         "text files: 'file' (one document each), 'blank-lines' (a document after each blank "
         "line run) or 'double-newline' (after each \"\\n\\n\", as llm.c's tinyshakespeare.py)"},
        {0, "shard-size", OPTION_INT, &shard_size, "tokens per shard"},
        {0, "val-fraction", OPTION_STRING, &val_fraction_text,
         "last fraction of the tokens that goes to val"},
        {0, "val-tokens", OPTION_INT, &val_tokens,
         "instead: the first N tokens go to val (-1: use --val-fraction)"},
        {0, "tokenizer-name", OPTION_STRING, &tokenizer_name,
         "tokenizer file written into the output directory (empty: none)"},
        {0, "allow-invalid-utf8", OPTION_INT, &allow_invalid,
         "1: encode bytes that are not UTF-8 as single-byte tokens (else an error)"},
        {'t', "threads", OPTION_INT, &threads, "threads (0: all cores)"},
        {0, "sft", OPTION_STRING, &sft,
         "instruction data instead of text: alpaca, messages, sharegpt or gsm8k (JSON or JSONL); "
         "writes packed rows of T+1 tokens with a .mask beside each shard (docs/formats.md)"},
        {0, "seq-len", OPTION_INT, &seq_len, "with --sft: T, the trainer's -t (rows are T+1)"},
    };
    int num_options = (int)(sizeof(options) / sizeof(options[0]));
    const char *summary =
        "Makes training shards from text files, directories and JSON Lines (.jsonl; .json: an "
        "array of objects). Each document is preceded by <|endoftext|>; empty ones are skipped.";
    SplitArgs args = split_inputs(argc, argv, "tokenizer prepare");
    for (int i = 1; i < args.num_rest; i++) {
        if (strcmp(args.rest[i], "--help") == 0) {
            cli_print_usage("tokenizer prepare -i INPUTS...", summary, options, num_options);
            printf("  %-28s input files and directories\n", "-i, --input PATH...");
            split_args_free(&args);
            return 0;
        }
    }
    cli_parse(args.num_rest, args.rest, summary, options, num_options);
    if (args.num_inputs == 0) fatal("prepare needs inputs (-i PATH...)");
    if (out_dir[0] == '\0') fatal("prepare needs an output directory (-o DIR)");
    if (shard_size <= 0) fatal("bad value %d for --shard-size: expected at least 1", shard_size);
    // names are file names in -o: a '/' would leave it, a glob character would make the stale-
    // shard cleanup match other data sets' files
    const char *name_problem = file_name_problem(name);
    if (name_problem != NULL) {
        fatal("bad value '%s' for --name: %s (expected a file name: no '/', no * ? [ ] \\, not "
              "starting with '.')",
              name, name_problem);
    }
    const char *tokenizer_name_problem =
        tokenizer_name[0] != '\0' ? file_name_problem(tokenizer_name) : NULL;
    if (tokenizer_name_problem != NULL) {
        fatal("bad value '%s' for --tokenizer-name: %s (expected a file name: no '/', no * ? [ ] "
              "\\, not starting with '.'; empty: none)",
              tokenizer_name, tokenizer_name_problem);
    }
    char *end = NULL;
    double val_fraction = strtod(val_fraction_text, &end);
    if (end == val_fraction_text || *end != '\0' || !(val_fraction >= 0 && val_fraction < 1)) {
        fatal("bad value '%s' for --val-fraction: expected a number in [0, 1)", val_fraction_text);
    }
    if (sft[0] != '\0') {
        SFTPrepareOptions sft_options = {vocab,          out_dir,       name,
                                         tokenizer_name, SFT_ALPACA,    seq_len,
                                         shard_size,     allow_invalid, val_fraction};
        if (!sft_format_from_name(sft, &sft_options.format)) {
            fatal("bad value '%s' for --sft: expected alpaca, messages, sharegpt or gsm8k", sft);
        }
        if (seq_len < 2 || seq_len > GPT2_MAX_SEQ_LEN) { // the model's maxT cap
            fatal("bad value %d for --seq-len: expected 2..%d", seq_len, GPT2_MAX_SEQ_LEN);
        }
        if (val_tokens >= 0) fatal("--val-tokens does not apply to --sft (use --val-fraction)");
        int status = prepare_sft(&sft_options, &args);
        split_args_free(&args);
        return status;
    }
    PrepareOptions prepare;
    memset(&prepare, 0, sizeof(prepare));
    prepare.allow_invalid = allow_invalid;
    if (strcmp(docs, "file") == 0) {
        prepare.blank_line_documents = 0;
    } else if (strcmp(docs, "blank-lines") == 0) {
        prepare.blank_line_documents = DOCS_BLANK_LINES;
    } else if (strcmp(docs, "double-newline") == 0) {
        prepare.blank_line_documents = DOCS_DOUBLE_NEWLINE;
    } else {
        fatal("bad value '%s' for --docs: expected file, blank-lines or double-newline", docs);
    }
    for (const char *p = field; *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t length = comma ? (size_t)(comma - p) : strlen(p);
        if (length == 0 || prepare.num_fields == 16) fatal("bad value '%s' for --field", field);
        prepare.field_names[prepare.num_fields] = strndup(p, length);
        if (prepare.field_names[prepare.num_fields] == NULL) fatal("out of memory");
        prepare.fields[prepare.num_fields] = prepare.field_names[prepare.num_fields];
        prepare.num_fields++;
        p += length + (comma ? 1 : 0);
    }
    set_threads(threads);
    int num_threads = max_threads();

    InputList inputs = {0};
    for (int i = 0; i < args.num_inputs; i++) collect_inputs(&inputs, args.inputs[i]);
    if (inputs.total_bytes == 0)
        fatal("empty input: the %zu input file(s) hold no text", inputs.count);
    BPE bpe;
    bpe_load(&bpe, vocab);
    make_dir_check(out_dir);
    run_dir_remove_stale_temp_files(out_dir); // a killed prepare's

    ShardStream stream;
    memset(&stream, 0, sizeof(stream));
    stream.dir = out_dir;
    stream.name = name;
    stream.token_bytes = shard_token_bytes(bpe.vocab_size);
    stream.shard_size = (size_t)shard_size;
    stream.val_tokens = val_tokens;
    stream.val_fraction = val_fraction;

    InputCursor cursor;
    memset(&cursor, 0, sizeof(cursor));
    cursor.inputs = &inputs;
    cursor.options = &prepare;
    int round_size = 4 * num_threads < 8 ? 8 : 4 * num_threads;
    Batch *batches = (Batch *)calloc_check((size_t)round_size, sizeof(Batch), "batches");
    BPEWork *works = (BPEWork *)calloc_check((size_t)num_threads, sizeof(BPEWork), "work");
    ByteBuffer *docs_buffers =
        (ByteBuffer *)calloc_check((size_t)num_threads, sizeof(ByteBuffer), "docs");
    size_t bytes_done = 0, documents = 0;
    double start = now_seconds();
    for (;;) {
        int count = 0;
        while (count < round_size && cursor_fill_batch(&cursor, &batches[count])) count++;
        if (count == 0) break;
#pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < count; i++) {
            int t = thread_id();
            batch_run(&batches[i], &bpe, &works[t], &prepare, &docs_buffers[t]);
        }
        for (int i = 0; i < count; i++) { // in input order, so the first error is the earliest
            if (batches[i].failed) fatal("%s", batches[i].error);
            stream_append(&stream, batches[i].tokens.data, batches[i].tokens.size);
            bytes_done += batches[i].input_bytes;
            documents += batches[i].documents;
        }
        cursor_free_retired(&cursor);
        print_progress(bytes_done, inputs.total_bytes, stream.total, now_seconds() - start, 0);
    }
    cursor_free_retired(&cursor);
    if (stream.total == 0)
        fatal("empty input: no documents in the %zu input file(s)", inputs.count);
    print_progress(inputs.total_bytes, inputs.total_bytes, stream.total, now_seconds() - start, 1);

    FinalShard *shards;
    size_t num_train, num_val;
    size_t num_shards = stream_finish(&stream, &shards, &num_train, &num_val);
    char tokenizer_path[4096 + 256] = "";
    if (tokenizer_name[0] != '\0') { // first (it is atomic): if it fails, no shard is committed
        snprintf(tokenizer_path, sizeof(tokenizer_path), "%s/%s", out_dir, tokenizer_name);
        bpe_write_file(&bpe, tokenizer_path);
    }
    for (size_t k = 0; k < num_shards; k++) {
        temp_file_commit(shards[k].temp_path, shards[k].final_path);
    }
    remove_stale_shards(out_dir, name, shards, num_shards);
    char total[40], train[40], val[40];
    format_count(total, sizeof(total), stream.total);
    format_count(train, sizeof(train), num_train);
    format_count(val, sizeof(val), num_val);
    printf("prepare: %zu file(s), %zu documents, %s tokens (eot included) -> train %s / val %s "
           "tokens in %zu shard(s) (uint%d) in %s/ in %.2f s\n",
           inputs.count, documents, total, train, val, num_shards, 8 * stream.token_bytes, out_dir,
           now_seconds() - start);
    for (size_t k = 0; k < num_shards; k++) {
        printf("  %s: %zu tokens\n", shards[k].final_path, shards[k].num_tokens);
    }
    if (tokenizer_path[0] != '\0')
        printf("  %s: tokenizer (V=%d)\n", tokenizer_path, bpe.vocab_size);

    for (int i = 0; i < round_size; i++) {
        free(batches[i].slices);
        free(batches[i].starts_document);
        token_list_free(&batches[i].tokens);
    }
    for (int t = 0; t < num_threads; t++) {
        bpe_work_free(&works[t]);
        free(docs_buffers[t].data);
    }
    free(batches);
    free(works);
    free(docs_buffers);
    free(shards);
    free(stream.chunks);
    free(cursor.retired);
    for (int k = 0; k < prepare.num_fields; k++) free(prepare.field_names[k]);
    bpe_free(&bpe);
    input_list_free(&inputs);
    split_args_free(&args);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// train

static int cmd_train(int argc, char **argv) {
    const char *output = "", *pattern_name = "gpt2", *special_list = "";
    int vocab_size = 0, allow_invalid = 0, threads = 0;
    CliOption options[] = {
        {'o', "output", OPTION_STRING, &output, "tokenizer file to write (.bin, docs/formats.md)"},
        {0, "vocab-size", OPTION_INT, &vocab_size,
         "vocabulary size: 256 bytes + merges + special tokens"},
        {0, "pattern", OPTION_STRING, &pattern_name, "split pattern: gpt2 or gpt4 (cl100k)"},
        {0, "special", OPTION_STRING, &special_list,
         "more special tokens after <|endoftext|>, comma-separated"},
        {0, "allow-invalid-utf8", OPTION_INT, &allow_invalid,
         "1: train on bytes that are not UTF-8 too (else an error)"},
        {'t', "threads", OPTION_INT, &threads, "threads (0: all cores)"},
    };
    int num_options = (int)(sizeof(options) / sizeof(options[0]));
    const char *summary = "Trains a byte-level BPE vocabulary on text files and writes a tokenizer "
                          "file that encode, decode and prepare load (and llm.c reads).";
    SplitArgs args = split_inputs(argc, argv, "tokenizer train");
    for (int i = 1; i < args.num_rest; i++) {
        if (strcmp(args.rest[i], "--help") == 0) {
            cli_print_usage("tokenizer train -i TEXT...", summary, options, num_options);
            printf("  %-28s text files and directories\n", "-i, --input PATH...");
            split_args_free(&args);
            return 0;
        }
    }
    cli_parse(args.num_rest, args.rest, summary, options, num_options);
    if (args.num_inputs == 0) fatal("train needs text inputs (-i PATH...)");
    if (output[0] == '\0') fatal("train needs an output file (-o VOCAB_OUT.bin)");
    if (vocab_size <= 0) fatal("train needs --vocab-size N (at least 257)");
    SplitPattern pattern = parse_pattern(pattern_name);
    const char *specials[64];
    int num_specials = 0;
    specials[num_specials++] = "<|endoftext|>";
    for (const char *p = special_list; *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t length = comma ? (size_t)(comma - p) : strlen(p);
        if (length == 0 || length > BPE_MAX_TOKEN_BYTES || num_specials == 64) {
            fatal("bad value '%s' for --special: comma-separated tokens of 1..255 bytes",
                  special_list);
        }
        char *token = strndup(p, length);
        for (int k = 0; k < num_specials; k++) {
            if (strcmp(specials[k], token) == 0) fatal("--special: '%s' is given twice", token);
        }
        specials[num_specials++] = token;
        p += length + (comma ? 1 : 0);
    }
    set_threads(threads);
    int num_threads = max_threads();

    InputList inputs = {0};
    for (int i = 0; i < args.num_inputs; i++) collect_inputs(&inputs, args.inputs[i]);
    if (inputs.total_bytes == 0)
        fatal("empty input: the %zu input file(s) hold no text", inputs.count);
    double start = now_seconds();
    PieceCounts *counts =
        (PieceCounts *)calloc_check((size_t)num_threads, sizeof(PieceCounts), "counts");
    for (int t = 0; t < num_threads; t++) piece_counts_init(&counts[t]);
    SpecialTexts special_texts = {NULL, NULL, num_specials, 0};
    special_texts.texts = (const uint8_t **)malloc_check(64 * sizeof(uint8_t *), "specials");
    special_texts.lengths = (size_t *)malloc_check(64 * sizeof(size_t), "specials");
    for (int k = 0; k < num_specials; k++) {
        special_texts.texts[k] = (const uint8_t *)specials[k];
        special_texts.lengths[k] = strlen(specials[k]);
        if (special_texts.lengths[k] > special_texts.longest)
            special_texts.longest = special_texts.lengths[k];
    }
    size_t bytes_done = 0;
    for (size_t f = 0; f < inputs.count; f++) {
        const char *path = inputs.files[f].path;
        MappedFile mapped = mmap_file_check(path);
        if (!allow_invalid) check_utf8(path, mapped.data, mapped.size, 0, mapped.data);
        Slice *slices;
        size_t num_slices =
            cut_text(mapped.data, mapped.size, ENCODE_CHUNK_BYTES, &special_texts, &slices);
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t i = 0; i < num_slices; i++) {
            count_pieces(&counts[thread_id()], slices[i].text, slices[i].len, pattern, specials,
                         num_specials);
        }
        free(slices);
        bytes_done += mapped.size;
        mmap_file_close(&mapped);
    }
    for (int t = 1; t < num_threads; t++) { // one table of counts
        for (size_t i = 0; i <= counts[t].mask; i++) {
            const PieceSlot *s = &counts[t].slots[i];
            if (s->used)
                piece_counts_add(&counts[0], counts[t].arena + s->offset, s->length, s->count);
        }
        piece_counts_free(&counts[t]);
    }
    double counted = now_seconds();
    fprintf(stderr,
            "train: %zu file(s), %.1f MB, %zu distinct pieces counted in %.2f s (%d threads)\n",
            inputs.count, bytes_done / 1e6, counts[0].num_used, counted - start, num_threads);

    BPETrainConfig config = {vocab_size, pattern, specials, num_specials, isatty(fileno(stderr))};
    BPE bpe;
    int merges = bpe_train(&bpe, &counts[0], &config);
    if (merges < vocab_size - 256 - num_specials) {
        fprintf(stderr, "note: the text has no more pairs to merge after %d merges: V = %d\n",
                merges, bpe.vocab_size);
    }
    bpe_write_file(&bpe, output);
    printf("train: %d merges + 256 bytes + %d special tokens = V %d (%s pattern) in %.2f s -> %s\n",
           merges, num_specials, bpe.vocab_size, split_pattern_names[pattern],
           now_seconds() - start, output);
    piece_counts_free(&counts[0]);
    free(counts);
    free(special_texts.texts);
    free(special_texts.lengths);
    bpe_free(&bpe);
    input_list_free(&inputs);
    split_args_free(&args);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// eval-file: HellaSwag-style JSONL -> llm.c's eval file (llmc/eval_loader.h), as llm.c's
// dev/data/hellaswag.py writes it: context tokens = encode(ctx), ending k = encode(" " + ending)

// Why a JSONL line is not an example (message), or 1 with its fields.
static int hellaswag_fields(json_object *object, const char **ctx, json_object **endings,
                            int *label, char *message, size_t size) {
    if (!json_object_is_type(object, json_type_object)) {
        snprintf(message, size, "expected a JSON object, found %s",
                 json_type_to_name(json_object_get_type(object)));
        return 0;
    }
    json_object *value;
    if (!json_object_object_get_ex(object, "ctx", &value) ||
        !json_object_is_type(value, json_type_string)) {
        snprintf(message, size, "\"ctx\" missing or not a string");
        return 0;
    }
    *ctx = json_object_get_string(value);
    if (!json_object_object_get_ex(object, "endings", endings) ||
        !json_object_is_type(*endings, json_type_array)) {
        snprintf(message, size, "\"endings\" missing or not an array");
        return 0;
    }
    size_t count = json_object_array_length(*endings);
    if (count != EVAL_COMPLETIONS) {
        snprintf(message, size, "%zu endings, expected %d", count, EVAL_COMPLETIONS);
        return 0;
    }
    for (int k = 0; k < EVAL_COMPLETIONS; k++) {
        if (!json_object_is_type(json_object_array_get_idx(*endings, (size_t)k),
                                 json_type_string)) {
            snprintf(message, size, "ending %d is not a string", k);
            return 0;
        }
    }
    if (!json_object_object_get_ex(object, "label", &value) ||
        !json_object_is_type(value, json_type_int)) {
        snprintf(message, size, "\"label\" missing or not an integer");
        return 0;
    }
    int64_t number = json_object_get_int64(value);
    if (number < 0 || number >= EVAL_COMPLETIONS) {
        snprintf(message, size, "label %lld out of range 0..%d", (long long)number,
                 EVAL_COMPLETIONS - 1);
        return 0;
    }
    *label = (int)number;
    return 1;
}

static int cmd_eval_file(int argc, char **argv) {
    const char *vocab = default_vocab();
    const char *output = "";
    int max_len = 1024, skip_bad = 0;
    CliOption options[] = {
        {'v', "vocab", OPTION_STRING, &vocab,
         "vocabulary: dir with encoder.json + vocab.bpe, .tiktoken, or tokenizer .bin"},
        {'o', "output", OPTION_STRING, &output, "output eval file (.bin)"},
        {'t', "max-len", OPTION_INT, &max_len,
         "maxT: every candidate (context + ending) must have fewer tokens (llm.c's check)"},
        {0, "skip-bad", OPTION_INT, &skip_bad,
         "1: skip bad lines (each printed with its line number, then counted); 0: refuse them"},
    };
    int num_options = (int)(sizeof(options) / sizeof(options[0]));
    const char *summary =
        "Writes llm.c's multiple-choice eval file (magic 20240522) from HellaSwag-style JSONL: "
        "one object a line with ctx, endings (4 strings) and label (0..3).";
    SplitArgs args = split_inputs(argc, argv, "tokenizer eval-file");
    for (int i = 1; i < args.num_rest; i++) {
        if (strcmp(args.rest[i], "--help") == 0) {
            cli_print_usage("tokenizer eval-file -i FILE.jsonl", summary, options, num_options);
            printf("  %-28s input JSONL file\n", "-i, --input FILE");
            split_args_free(&args);
            return 0;
        }
    }
    cli_parse(args.num_rest, args.rest, summary, options, num_options);
    if (args.num_inputs != 1) {
        fatal("eval-file needs one input file (-i FILE.jsonl), got %d", args.num_inputs);
    }
    if (output[0] == '\0') fatal("eval-file needs an output (-o FILE.bin)");
    if (max_len < 2) fatal("bad value %d for --max-len: must be >= 2", max_len);
    if (skip_bad != 0 && skip_bad != 1) {
        fatal("bad value %d for --skip-bad: expected 0 or 1", skip_bad);
    }
    const char *path = args.inputs[0];
    BPE bpe;
    bpe_load(&bpe, vocab);
    if (bpe.vocab_size > EVAL_START) {
        fatal("%s: %d tokens: the eval file stores ids below %d (uint16)", vocab, bpe.vocab_size,
              EVAL_START);
    }
    InputText input = input_text_open(path);
    json_tokener *tokener = json_tokener_new();
    if (tokener == NULL) fatal("out of memory");
    BPEWork work;
    memset(&work, 0, sizeof(work));
    TokenList context = {0}, endings[EVAL_COMPLETIONS];
    memset(endings, 0, sizeof(endings));
    ByteBuffer text = {0};
    EvalWriter writer;
    eval_writer_open(&writer, output);
    size_t line_number = 0, skipped = 0, longest = 0;
    const uint8_t *at = input.data, *end = input.data + input.size;
    while (at < end) {
        line_number++;
        const uint8_t *newline = (const uint8_t *)memchr(at, '\n', (size_t)(end - at));
        size_t length = newline ? (size_t)(newline - at) : (size_t)(end - at);
        const uint8_t *line = at;
        at += length + (newline ? 1 : 0);
        size_t blank = 0;
        while (blank < length && strchr(" \t\r", line[blank]) != NULL) blank++;
        if (blank == length) continue; // blank lines carry no example
        char message[300] = "";
        if (length > INT_MAX) {
            fatal("%s: line %zu: longer than %d bytes", path, line_number, INT_MAX);
        }
        json_tokener_reset(tokener);
        json_object *object = json_tokener_parse_ex(tokener, (const char *)line, (int)length);
        enum json_tokener_error error = json_tokener_get_error(tokener);
        const char *ctx = NULL;
        json_object *ending_array = NULL;
        int label = 0, ok = object != NULL && error == json_tokener_success;
        if (!ok) {
            snprintf(message, sizeof(message), "not valid JSON at column %zu: %s",
                     json_tokener_get_parse_end(tokener) + 1,
                     error == json_tokener_continue ? "the line ends inside a value"
                                                    : json_tokener_error_desc(error));
        } else {
            size_t parse_end = json_tokener_get_parse_end(tokener);
            while (parse_end < length && strchr(" \t\r", line[parse_end]) != NULL) parse_end++;
            if (parse_end != length) {
                snprintf(message, sizeof(message),
                         "unexpected text after the JSON value at column %zu", parse_end + 1);
                ok = 0;
            } else {
                ok =
                    hellaswag_fields(object, &ctx, &ending_array, &label, message, sizeof(message));
            }
        }
        size_t ending_lengths[EVAL_COMPLETIONS];
        const int32_t *ending_ids[EVAL_COMPLETIONS];
        if (ok) {
            context.size = 0;
            bpe_encode_ordinary(&bpe, (const uint8_t *)ctx, strlen(ctx), &context, &work);
            if (context.size == 0) {
                snprintf(message, sizeof(message), "\"ctx\" has no tokens");
                ok = 0;
            }
        }
        for (int k = 0; ok && k < EVAL_COMPLETIONS; k++) {
            json_object *ending = json_object_array_get_idx(ending_array, (size_t)k);
            text.size = 0;
            byte_buffer_append(&text, " ", 1); // GPT-2's words start with their space
            byte_buffer_append(&text, json_object_get_string(ending),
                               (size_t)json_object_get_string_len(ending));
            endings[k].size = 0;
            bpe_encode_ordinary(&bpe, text.data, text.size, &endings[k], &work);
            ending_lengths[k] = endings[k].size;
            ending_ids[k] = endings[k].data;
            if (context.size + endings[k].size >= (size_t)max_len) {
                snprintf(message, sizeof(message),
                         "candidate %d has %zu tokens (context %zu + ending %zu), too long for "
                         "--max-len %d (must be fewer)",
                         k, context.size + endings[k].size, context.size, endings[k].size, max_len);
                ok = 0;
            }
        }
        if (ok && eval_record_bytes(context.size, ending_lengths) == 0) {
            snprintf(message, sizeof(message), "the example exceeds the format's %d-byte record",
                     EVAL_MAX_RECORD);
            ok = 0;
        }
        if (object != NULL) json_object_put(object);
        if (!ok) {
            if (!skip_bad) {
                fatal("%s: line %zu: %s (--skip-bad 1 skips such lines)", path, line_number,
                      message);
            }
            fprintf(stderr, "%s: line %zu: skipped: %s\n", path, line_number, message);
            skipped++;
            continue;
        }
        eval_writer_add(&writer, label, context.data, context.size, ending_ids, ending_lengths);
        for (int k = 0; k < EVAL_COMPLETIONS; k++) {
            if (context.size + ending_lengths[k] > longest) {
                longest = context.size + ending_lengths[k];
            }
        }
    }
    int written = writer.header[2];
    if (written == 0) fatal("%s: no example to write (%zu line(s) skipped)", path, skipped);
    eval_writer_commit(&writer);
    fprintf(stderr, "%s: %d examples (%zu line(s) skipped), longest candidate %zu tokens -> %s\n",
            path, written, skipped, longest, output);
    for (int k = 0; k < EVAL_COMPLETIONS; k++) token_list_free(&endings[k]);
    token_list_free(&context);
    free(text.data);
    bpe_work_free(&work);
    json_tokener_free(tokener);
    input_text_close(&input);
    bpe_free(&bpe);
    split_args_free(&args);
    return 0;
}

// ----------------------------------------------------------------------------------------------

static void print_main_usage(void) {
    printf("usage: tokenizer COMMAND [options]   (tokenizer COMMAND --help for each)\n"
           "Byte-level BPE in C, with the same ids as tiktoken.\n\n"
           "commands:\n"
           "  encode  -v VOCAB -i TEXT_FILE -o OUT.bin   a text file -> its token ids as one data "
           "shard (-o -: one id a line)\n"
           "  decode  -v VOCAB -i SHARD.bin              a data shard -> its text on stdout\n"
           "  prepare -v VOCAB -i INPUTS... -o OUT_DIR   text, directories, JSONL -> train/val "
           "shards\n"
           "  train   -i TEXT... --vocab-size N -o VOCAB_OUT   train a BPE vocabulary\n"
           "  prepare --sft FORMAT --seq-len T -v VOCAB -i FILES... -o OUT_DIR   instruction data "
           "-> packed token + mask shards\n"
           "  show    -v VOCAB -i SHARD.bin             an SFT shard's rows, trained spans in [[ "
           "]]\n"
           "  eval-file -v VOCAB -i FILE.jsonl -o FILE.bin   HellaSwag-style JSONL -> llm.c's "
           "eval file (-h of the trainers)\n\n"
           "VOCAB: a directory with GPT-2's encoder.json + vocab.bpe (default %s), a .tiktoken "
           "file, or a tokenizer file from train/prepare.\n",
           default_vocab());
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_main_usage();
        return argc < 2 ? 1 : 0;
    }
    const char *command = argv[1];
    if (strcmp(command, "encode") == 0) return cmd_encode(argc - 1, argv + 1);
    if (strcmp(command, "decode") == 0) return cmd_decode(argc - 1, argv + 1);
    if (strcmp(command, "prepare") == 0) return cmd_prepare(argc - 1, argv + 1);
    if (strcmp(command, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(command, "show") == 0) return cmd_show(argc - 1, argv + 1);
    if (strcmp(command, "eval-file") == 0) return cmd_eval_file(argc - 1, argv + 1);
    fatal("unknown command '%s': expected encode, decode, prepare, train, show or eval-file (see "
          "--help)",
          command);
}
