// Multiple-choice eval files (HellaSwag), llm.c's format (magic 20240522, docs/formats.md): the
// reader that validates a whole file before the trainers use it, the rows of a batch of
// candidates (context + ending, the ending's positions masked in), their scores, and the writer
// behind `tokenizer eval-file`.
//
// A candidate is scored as llm.c does (acc_norm): its mean loss over the ending's tokens, each
// predicted from the tokens before it; the example's prediction is the candidate with the lowest
// mean (the first one on a tie). Candidates are independent rows, so a batch of B rows holds any
// B candidates, whole examples or not: B need not be a multiple of 4.
#ifndef LLMC_EVAL_LOADER_H
#define LLMC_EVAL_LOADER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats.h"
#include "utils.h"

#define EVAL_VERSION 1
#define EVAL_COMPLETIONS 4      // llm.c reads only files with 4 endings per example
#define EVAL_START 65535        // record start marker
#define EVAL_RECORD_FIELDS 6    // start, bytes, index, label, K, context length
#define EVAL_MAX_RECORD 65535   // record bytes are a uint16
#define EVAL_MAX_EXAMPLES 65535 // example indices are uint16 (llm.c's writer asserts < 2^16)

typedef struct {
    int num_examples;
    uint16_t *data; // the records as read, after the header
    // per example: label, and where its context starts in data and how long it is
    int *label;
    size_t *context_offset;
    int *context_length;
    // per candidate (example * 4 + k): where its ending starts in data, how long it is
    size_t *ending_offset;
    int *ending_length;
    int longest;   // tokens of the longest candidate (context + ending)
    int max_token; // largest token id
} EvalFile;

// The positions a candidate of n tokens runs at: every token but the last is an input.
static inline int eval_positions(int tokens) {
    return tokens - 1;
}

static inline void eval_file_free(EvalFile *ef) {
    free(ef->data);
    free(ef->label);
    free(ef->context_offset);
    free(ef->context_length);
    free(ef->ending_offset);
    free(ef->ending_length);
    memset(ef, 0, sizeof(*ef));
}

// Reads and checks the whole file: header, then every record's fields against its length and the
// file's. Exits with one line naming the file, the record and the field.
static inline void eval_file_load(EvalFile *ef, const char *path) {
    memset(ef, 0, sizeof(*ef));
    FILE *file = fopen_check(path, "rb");
    size_t file_size = file_size_check(file, path);
    if (file_size < HEADER_BYTES) {
        fatal("%s: not an eval file: %zu bytes, shorter than the 1024-byte header", path,
              file_size);
    }
    int32_t header[HEADER_INTS];
    read_header(file, path, header);
    if (header[0] != EVAL_MAGIC) {
        fatal("%s: bad magic %d in header[0], expected %d (eval file)", path, header[0],
              EVAL_MAGIC);
    }
    if (header[1] != EVAL_VERSION) {
        fatal("%s: unsupported eval file version %d in header[1], expected %d", path, header[1],
              EVAL_VERSION);
    }
    int32_t n = header[2], max_bytes = header[3];
    if (n < 1 || n > EVAL_MAX_EXAMPLES) {
        fatal("%s: header[2] (number of examples): %d, expected 1..%d", path, n, EVAL_MAX_EXAMPLES);
    }
    size_t min_record = 2 * (EVAL_RECORD_FIELDS + 1 + 2 * EVAL_COMPLETIONS); // no empty part
    if (max_bytes < (int32_t)min_record || max_bytes > EVAL_MAX_RECORD) {
        fatal("%s: header[3] (longest record in bytes): %d, expected %zu..%d", path, max_bytes,
              min_record, EVAL_MAX_RECORD);
    }
    // the records' size: at least n short ones, at most n of max_bytes (bounds the allocation)
    size_t payload = file_size - HEADER_BYTES, most;
    if (!size_mul_ok((size_t)n, (size_t)max_bytes, &most)) most = SIZE_MAX;
    if (payload < (size_t)n * min_record || payload > most || payload % 2 != 0) {
        fatal("%s: %zu bytes of records for %d examples of at most %d bytes: truncated or "
              "corrupt",
              path, payload, n, max_bytes);
    }
    ef->num_examples = n;
    ef->data = (uint16_t *)malloc_check(payload, "eval file records");
    fread_check(ef->data, 1, payload, file, path, "records");
    fclose(file);
    size_t candidates = (size_t)n * EVAL_COMPLETIONS;
    ef->label = (int *)malloc_check((size_t)n * sizeof(int), "eval labels");
    ef->context_offset = (size_t *)malloc_check((size_t)n * sizeof(size_t), "eval contexts");
    ef->context_length = (int *)malloc_check((size_t)n * sizeof(int), "eval contexts");
    ef->ending_offset = (size_t *)malloc_check(candidates * sizeof(size_t), "eval endings");
    ef->ending_length = (int *)malloc_check(candidates * sizeof(int), "eval endings");

    size_t words = payload / 2, at = 0; // at: the record's first uint16
    int longest_record = 0;
    for (int i = 0; i < n; i++) {
        if (words - at < EVAL_RECORD_FIELDS) {
            fatal("%s: example %d: truncated (the file ends inside its fields)", path, i);
        }
        const uint16_t *r = ef->data + at;
        if (r[0] != EVAL_START) {
            fatal("%s: example %d: start marker %u at byte %zu, expected %d", path, i, r[0],
                  HEADER_BYTES + 2 * at, EVAL_START);
        }
        int bytes = r[1];
        if (bytes % 2 != 0 || bytes < (int)min_record || bytes > max_bytes) {
            fatal("%s: example %d: record length %d bytes, expected an even number in %zu..%d "
                  "(header[3])",
                  path, i, bytes, min_record, max_bytes);
        }
        size_t record_words = (size_t)bytes / 2;
        if (record_words > words - at) {
            fatal("%s: example %d: record of %d bytes runs past the end of the file", path, i,
                  bytes);
        }
        if (r[2] != i) fatal("%s: example %d: index field %u, expected %d", path, i, r[2], i);
        if (r[4] != EVAL_COMPLETIONS) {
            fatal("%s: example %d: %u completions, expected %d", path, i, r[4], EVAL_COMPLETIONS);
        }
        if (r[3] >= EVAL_COMPLETIONS) {
            fatal("%s: example %d: label %u, expected 0..%d", path, i, r[3], EVAL_COMPLETIONS - 1);
        }
        ef->label[i] = r[3];
        // fields, then lengths and tokens, all inside record_words (size_t: no overflow, as each
        // step adds at most 65535 to a value below record_words)
        size_t used = EVAL_RECORD_FIELDS;
        int context = r[5];
        if (context < 1) fatal("%s: example %d: empty context", path, i);
        ef->context_offset[i] = at + used;
        ef->context_length[i] = context;
        used += (size_t)context;
        for (int k = 0; k < EVAL_COMPLETIONS; k++) {
            if (used >= record_words) {
                fatal("%s: example %d: record of %d bytes ends before ending %d", path, i, bytes,
                      k);
            }
            int length = r[used];
            if (length < 1) fatal("%s: example %d: ending %d is empty", path, i, k);
            used += 1;
            ef->ending_offset[(size_t)i * EVAL_COMPLETIONS + k] = at + used;
            ef->ending_length[(size_t)i * EVAL_COMPLETIONS + k] = length;
            used += (size_t)length;
            if (used > record_words) {
                fatal("%s: example %d: ending %d (%d tokens) runs past the record's %d bytes", path,
                      i, k, length, bytes);
            }
            if (context + length > ef->longest) ef->longest = context + length;
        }
        if (used != record_words) {
            fatal("%s: example %d: record length %d bytes, but its fields take %zu", path, i, bytes,
                  2 * used);
        }
        for (size_t w = EVAL_RECORD_FIELDS; w < record_words; w++) {
            if (r[w] > ef->max_token) ef->max_token = r[w];
        }
        if (bytes > longest_record) longest_record = bytes;
        at += record_words;
    }
    if (at != words) {
        fatal("%s: %zu bytes after the last example (%d examples in header[2])", path,
              2 * (words - at), n);
    }
    if (longest_record != max_bytes) {
        fatal("%s: header[3] (longest record): %d bytes, but the longest is %d", path, max_bytes,
              longest_record);
    }
}

// Lengths and token ids as read are not yet the model's: every id must be below V and every
// candidate must fit T positions.
static inline void eval_file_check_model(const EvalFile *ef, const char *path, int vocab_size,
                                         int T) {
    if (ef->max_token >= vocab_size) {
        fatal("%s: token id %d >= the model's V=%d (an eval file of another vocabulary?)", path,
              ef->max_token, vocab_size);
    }
    if (eval_positions(ef->longest) > T) {
        fatal("%s: its longest candidate (context + ending) has %d tokens, which need -t >= %d "
              "(now %d)",
              path, ef->longest, eval_positions(ef->longest), T);
    }
}

// Fills rows candidates first..first+rows-1 as a (rows, T_batch) batch and returns T_batch, the
// positions of the longest: inputs are the candidate's tokens but the last, targets the next
// tokens, mask 1 where the target is an ending token. Past a row's end: token 0, mask 0 (causal
// attention keeps them from the row's scored positions).
static inline int eval_fill_rows(const EvalFile *ef, size_t first, int rows, int *inputs,
                                 int *targets, unsigned char *mask) {
    int T_batch = 1;
    for (int r = 0; r < rows; r++) {
        size_t c = first + (size_t)r, example = c / EVAL_COMPLETIONS;
        int positions = eval_positions(ef->context_length[example] + ef->ending_length[c]);
        if (positions > T_batch) T_batch = positions;
    }
    for (int r = 0; r < rows; r++) {
        size_t c = first + (size_t)r, example = c / EVAL_COMPLETIONS;
        const uint16_t *context = ef->data + ef->context_offset[example];
        const uint16_t *ending = ef->data + ef->ending_offset[c];
        int n_context = ef->context_length[example], n_ending = ef->ending_length[c];
        int *in = inputs + (size_t)r * T_batch, *tg = targets + (size_t)r * T_batch;
        unsigned char *m = mask + (size_t)r * T_batch;
        memset(in, 0, (size_t)T_batch * sizeof(int));
        memset(tg, 0, (size_t)T_batch * sizeof(int));
        memset(m, 0, (size_t)T_batch);
        int n = n_context + n_ending;
        for (int t = 0; t < n; t++) {
            int token = t < n_context ? context[t] : ending[t - n_context];
            if (t < n - 1) in[t] = token;
            if (t > 0) {
                tg[t - 1] = token;
                m[t - 1] = t >= n_context;
            }
        }
    }
    return T_batch;
}

// Each row's mean loss over its masked positions, from the (rows, T_batch) per-position losses
// of a forward on eval_fill_rows's batch.
static inline void eval_row_means(const float *losses, const unsigned char *mask, int rows,
                                  int T_batch, double *means) {
    for (int r = 0; r < rows; r++) {
        double sum = 0.0;
        int count = 0;
        for (int t = 0; t < T_batch; t++) {
            if (mask[(size_t)r * T_batch + t]) {
                sum += losses[(size_t)r * T_batch + t];
                count++;
            }
        }
        means[r] = count > 0 ? sum / count : 0.0;
    }
}

// The candidate with the lowest mean loss; the first on a tie.
static inline int eval_predict(const double *means) {
    int best = 0;
    for (int k = 1; k < EVAL_COMPLETIONS; k++) {
        if (means[k] < means[best]) best = k;
    }
    return best;
}

// ----------------------------------------------------------------------------------------------
// writer: examples appended one at a time, the header's count and longest record filled in last

typedef struct {
    AtomicFile file;
    int32_t header[HEADER_INTS];
    uint16_t *record;
} EvalWriter;

static inline void eval_writer_open(EvalWriter *w, const char *path) {
    memset(w->header, 0, sizeof(w->header));
    w->header[0] = EVAL_MAGIC;
    w->header[1] = EVAL_VERSION;
    w->record = (uint16_t *)malloc_check(EVAL_MAX_RECORD + 1, "eval record");
    atomic_open(&w->file, path);
    fwrite_check(w->header, sizeof(int32_t), HEADER_INTS, w->file.file, w->file.temp_path);
}

// The record's size in bytes if an example with these lengths fits the format, else 0.
static inline size_t eval_record_bytes(size_t context, const size_t *endings) {
    size_t words = EVAL_RECORD_FIELDS + context;
    for (int k = 0; k < EVAL_COMPLETIONS; k++) words += 1 + endings[k];
    return words * 2 <= EVAL_MAX_RECORD ? words * 2 : 0;
}

// Appends an example (its ids < 65535, label < 4; the caller checks, e.g. eval_record_bytes).
static inline void eval_writer_add(EvalWriter *w, int label, const int32_t *context,
                                   size_t n_context, const int32_t *const *endings,
                                   const size_t *n_endings) {
    if (w->header[2] >= EVAL_MAX_EXAMPLES) {
        fatal("%s: more than %d examples (the format's limit)", w->file.final_path,
              EVAL_MAX_EXAMPLES);
    }
    size_t bytes = eval_record_bytes(n_context, n_endings), at = 0;
    if (bytes == 0 || label < 0 || label >= EVAL_COMPLETIONS || n_context == 0) {
        fatal("internal: eval example %d does not fit the format", w->header[2]);
    }
    uint16_t *r = w->record;
    r[at++] = EVAL_START;
    r[at++] = (uint16_t)bytes;
    r[at++] = (uint16_t)w->header[2];
    r[at++] = (uint16_t)label;
    r[at++] = EVAL_COMPLETIONS;
    r[at++] = (uint16_t)n_context;
    for (size_t t = 0; t < n_context; t++) r[at++] = (uint16_t)context[t];
    for (int k = 0; k < EVAL_COMPLETIONS; k++) {
        r[at++] = (uint16_t)n_endings[k];
        for (size_t t = 0; t < n_endings[k]; t++) r[at++] = (uint16_t)endings[k][t];
    }
    fwrite_check(r, 1, bytes, w->file.file, w->file.temp_path);
    w->header[2]++;
    if ((int32_t)bytes > w->header[3]) w->header[3] = (int32_t)bytes;
}

// Writes the header's count and longest record, then renames the file into place.
static inline void eval_writer_commit(EvalWriter *w) {
    if (w->header[2] == 0) fatal("%s: no example to write", w->file.final_path);
    fseek_check(w->file.file, 0, SEEK_SET, w->file.temp_path);
    fwrite_check(w->header, sizeof(int32_t), HEADER_INTS, w->file.file, w->file.temp_path);
    atomic_commit(&w->file);
    free(w->record);
    w->record = NULL;
}

#endif // LLMC_EVAL_LOADER_H
