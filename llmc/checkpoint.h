// Checkpoints in llm.c's layout (docs/formats.md): model_%08d.bin, state_%08d_%05d.bin and the
// DONE_%08d marker written last. Every file is written atomically, so the newest step with a DONE
// marker is always complete and resuming from it continues bit for bit.
#ifndef LLMC_CHECKPOINT_H
#define LLMC_CHECKPOINT_H

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataloader.h"
#include "divergence.h"
#include "formats.h"
#include "optimizer.h"
#include "utils.h"

typedef struct {
    int num_processes;
    int process_rank;
    int zero_stage; // 1: m, v and master weights are this process's shard (ZeRO-1)
    int use_master_weights;
    int step;                       // optimizer steps completed
    uint64_t rng_state;             // sampler
    uint64_t rng_state_last_update; // sampler, at the last update
    size_t num_parameters;          // of this process's shard of m, v (and master weights)
} TrainState;

static inline void checkpoint_path(char *out, size_t size, const char *dir, const char *kind,
                                   int step) {
    snprintf(out, size, "%s/%s_%08d.bin", dir, kind, step);
}

static inline void state_path(char *out, size_t size, const char *dir, int step, int rank) {
    snprintf(out, size, "%s/state_%08d_%05d.bin", dir, step, rank);
}

static inline void put_u64(int32_t *slot, uint64_t value) {
    memcpy(slot, &value, sizeof(value));
}

static inline uint64_t get_u64(const int32_t *slot) {
    uint64_t value;
    memcpy(&value, slot, sizeof(value));
    return value;
}

// What a resume must match or convert, recorded in every state file (slots 100.. of the header,
// docs/formats.md; llm.c leaves them at zero): the -e the run started from (a resume loads the
// checkpoint's weights instead, so a changed -e would be ignored), -b and -t (the loader's
// position counts samples of processes*B*T tokens), -d, and the optimizer (--optimizer: m and v
// mean other things to AdamW and Muon).
// Version 2 marks the loader rng in llm.c's 2,520-byte layout; version 1 files hold the 2,516-byte
// one this engine wrote before (a 4-byte seed), still read (state_read_loader_rng).
#define RUN_RECORD_VERSION 2
#define RUN_RECORD_VERSION_SHORT_RNG 1
#define RUN_RECORD_SLOT 100           // 100: version, 101: B, 102: T, 103: -d, 104: length of -e
#define RUN_RECORD_OPTIMIZER_SLOT 105 // OptimizerKind; 0 (AdamW) in files written before it
#define RUN_RECORD_SPEC_SLOT 128      // -e's first RUN_RECORD_SPEC_MAX bytes, in slots 128..253
#define RUN_RECORD_SPEC_MAX ((CHECKSUM_KIND_SLOT - RUN_RECORD_SPEC_SLOT) * 4)

typedef struct {
    int version; // 0: none (llm.c's state files)
    int B, T, total_batch_size;
    int optimizer;                            // OptimizerKind
    int model_spec_length;                    // of the whole -e
    char model_spec[RUN_RECORD_SPEC_MAX + 1]; // its first RUN_RECORD_SPEC_MAX bytes
} RunRecord;

// This run's record, written into each state file it writes (none until it is set).
static RunRecord checkpoint_run_record;

static inline void checkpoint_set_run_record(const char *model_spec, int B, int T,
                                             int total_batch_size) {
    RunRecord *r = &checkpoint_run_record;
    memset(r, 0, sizeof(*r));
    r->version = RUN_RECORD_VERSION;
    r->B = B;
    r->T = T;
    r->total_batch_size = total_batch_size;
    size_t length = strlen(model_spec);
    r->model_spec_length = length > INT32_MAX ? INT32_MAX : (int)length;
    memcpy(r->model_spec, model_spec, length < RUN_RECORD_SPEC_MAX ? length : RUN_RECORD_SPEC_MAX);
}

// The run's --optimizer, recorded beside the rest (after checkpoint_set_run_record).
static inline void checkpoint_set_run_optimizer(int optimizer) {
    checkpoint_run_record.optimizer = optimizer;
}

static inline void run_record_put(int32_t *header, const RunRecord *r) {
    if (r->version == 0) return;
    header[RUN_RECORD_SLOT] = r->version;
    header[RUN_RECORD_SLOT + 1] = r->B;
    header[RUN_RECORD_SLOT + 2] = r->T;
    header[RUN_RECORD_SLOT + 3] = r->total_batch_size;
    header[RUN_RECORD_SLOT + 4] = r->model_spec_length;
    header[RUN_RECORD_OPTIMIZER_SLOT] = r->optimizer;
    memcpy(&header[RUN_RECORD_SPEC_SLOT], r->model_spec, RUN_RECORD_SPEC_MAX);
}

// The record in the header of the state file path (version 0 if it has none); checked before use.
// A file that is not a state file has none here: state_read says what is wrong with it.
static inline RunRecord run_record_read(const char *path) {
    RunRecord r;
    memset(&r, 0, sizeof(r));
    FILE *file = fopen_check(path, "rb");
    int32_t header[HEADER_INTS];
    int is_state = file_size_check(file, path) >= HEADER_BYTES &&
                   fread(header, sizeof(int32_t), HEADER_INTS, file) == HEADER_INTS &&
                   header[0] == STATE_MAGIC;
    fclose(file);
    if (!is_state) return r;
    r.version = header[RUN_RECORD_SLOT];
    if (r.version == 0) return r;
    if (r.version != RUN_RECORD_VERSION && r.version != RUN_RECORD_VERSION_SHORT_RNG) {
        fatal("%s: run record version %d in header[%d], expected %d, %d or 0 (none)", path,
              r.version, RUN_RECORD_SLOT, RUN_RECORD_VERSION, RUN_RECORD_VERSION_SHORT_RNG);
    }
    const char *names[4] = {"-b", "-t", "-d", "the length of -e"};
    for (int i = 0; i < 4; i++) {
        int value = header[RUN_RECORD_SLOT + 1 + i];
        if (value <= 0) {
            fatal("%s: %s in header[%d]: expected > 0, found %d", path, names[i],
                  RUN_RECORD_SLOT + 1 + i, value);
        }
    }
    r.B = header[RUN_RECORD_SLOT + 1];
    r.T = header[RUN_RECORD_SLOT + 2];
    if ((int64_t)r.B * r.T > INT32_MAX) { // as train_options_validate allows
        fatal("%s: -b * -t in header[%d..%d]: expected at most %d tokens, found %d * %d", path,
              RUN_RECORD_SLOT + 1, RUN_RECORD_SLOT + 2, INT32_MAX, r.B, r.T);
    }
    r.total_batch_size = header[RUN_RECORD_SLOT + 3];
    r.model_spec_length = header[RUN_RECORD_SLOT + 4];
    r.optimizer = header[RUN_RECORD_OPTIMIZER_SLOT];
    if (r.optimizer != OPTIMIZER_ADAMW && r.optimizer != OPTIMIZER_MUON) {
        fatal("%s: optimizer %d in header[%d]: expected %d (adamw) or %d (muon)", path, r.optimizer,
              RUN_RECORD_OPTIMIZER_SLOT, OPTIMIZER_ADAMW, OPTIMIZER_MUON);
    }
    memcpy(r.model_spec, &header[RUN_RECORD_SPEC_SLOT], RUN_RECORD_SPEC_MAX);
    size_t stored = strnlen(r.model_spec, RUN_RECORD_SPEC_MAX);
    size_t expected = r.model_spec_length < RUN_RECORD_SPEC_MAX ? (size_t)r.model_spec_length
                                                                : RUN_RECORD_SPEC_MAX;
    if (stored != expected) {
        fatal("%s: -e in header[%d..]: expected %zu bytes (header[%d]), found %zu", path,
              RUN_RECORD_SPEC_SLOT, expected, RUN_RECORD_SLOT + 4, stored);
    }
    return r;
}

// Writes the optimizer + loader state. master may be NULL (use_master_weights == 0).
// outliers: the outlier detector's history, after the loader state (NULL: none).
static inline void state_write_with_outliers(const char *path, const TrainState *state,
                                             const float *m, const float *v, const float *master,
                                             const DataLoader *loader,
                                             const OutlierHistory *outliers) {
    int32_t header[HEADER_INTS];
    memset(header, 0, sizeof(header));
    header[0] = STATE_MAGIC;
    header[1] = STATE_VERSION;
    header[2] = state->num_processes;
    header[3] = state->process_rank;
    header[4] = state->use_master_weights;
    header[5] = loader->should_shuffle;
    header[6] = state->zero_stage;
    header[10] = state->step;
    put_u64(&header[20], state->rng_state);
    put_u64(&header[22], state->rng_state_last_update);
    put_u64(&header[30], loader->current_shard_idx);
    put_u64(&header[32], loader->current_sample_idx);
    put_u64(&header[40], state->num_parameters);
    run_record_put(header, &checkpoint_run_record);
    outlier_history_put_header(outliers, header);
    header[CHECKSUM_KIND_SLOT] = CHECKSUM_CRC32C;
    uint32_t crc = 0;
    AtomicFile out;
    atomic_open(&out, path);
    fwrite_check(header, sizeof(int32_t), HEADER_INTS, out.file, path);
    fwrite_crc(m, sizeof(float), state->num_parameters, out.file, path, &crc);
    fwrite_crc(v, sizeof(float), state->num_parameters, out.file, path, &crc);
    if (state->use_master_weights) {
        if (master == NULL) {
            fatal("internal: state %s says master weights but none were given", path);
        }
        fwrite_crc(master, sizeof(float), state->num_parameters, out.file, path, &crc);
    }
    if (loader->should_shuffle) {
        uint64_t num_shards = loader->num_shards;
        uint64_t num_samples = loader->shard_num_samples;
        fwrite_crc(&num_shards, sizeof(num_shards), 1, out.file, path, &crc);
        fwrite_crc(loader->shard_indices, sizeof(int), loader->num_shards, out.file, path, &crc);
        fwrite_crc(&num_samples, sizeof(num_samples), 1, out.file, path, &crc);
        fwrite_crc(loader->intra_shard_indices, sizeof(int), loader->shard_num_samples, out.file,
                   path, &crc);
        fwrite_crc(&loader->shuffle_rng, sizeof(mt19937_state), 1, out.file, path, &crc);
    }
    outlier_history_write(outliers, out.file, path, &crc);
    header_checksum_write(out.file, path, header, crc);
    atomic_commit(&out);
}

static inline void state_write(const char *path, const TrainState *state, const float *m,
                               const float *v, const float *master, const DataLoader *loader) {
    state_write_with_outliers(path, state, m, v, master, loader, NULL);
}

// Which process a state file belongs to: its rank among num_processes, and whether its optimizer
// state is a shard (ZeRO-1) or the whole.
typedef struct {
    int process_rank, num_processes, zero_stage;
} StateOwner;

// A saved order (what: which one) must hold each of 0..n-1 exactly once: it indexes shards and
// samples.
static inline void state_check_permutation(const char *path, const char *what, const int *order,
                                           size_t n) {
    unsigned char *seen = (unsigned char *)calloc_check(n, 1, "permutation check");
    for (size_t i = 0; i < n; i++) {
        if (order[i] < 0 || (size_t)order[i] >= n || seen[order[i]]) {
            free(seen); // LeakSanitizer counts what fatal's exit leaves unreachable
            fatal("%s: %s: expected a permutation of 0..%zu, found %d at entry %zu", path, what,
                  n - 1, order[i], i);
        }
        seen[order[i]] = 1;
    }
    free(seen);
}

// The 2,516-byte mt19937 state of this engine's state files before run record version 2: llm.c's
// layout with a 4-byte seed.
#define MT19937_SHORT_STATE_BYTES (sizeof(mt19937_state) - 4)

// Reads the loader's generator (rng_bytes: llm.c's layout or the short one) and checks it.
static inline void state_read_loader_rng(mt19937_state *rng, size_t rng_bytes, FILE *file,
                                         const char *path, uint32_t *crc) {
    unsigned char raw[sizeof(mt19937_state)];
    fread_crc(raw, 1, rng_bytes, file, path, "loader rng", crc);
    size_t seed_bytes = rng_bytes == sizeof(mt19937_state) ? 8 : 4;
    uint32_t seed32 = 0;
    memcpy(&seed32, raw, 4);
    rng->seed = seed32; // not used: llm.c leaves it unset
    memcpy(&rng->left, raw + seed_bytes, rng_bytes - seed_bytes);
    const char *problem = mt19937_state_problem(rng);
    if (problem != NULL) {
        fatal("%s: loader rng (mt19937 state, the %zu bytes before the outlier history): %s; "
              "found left %d, next %u",
              path, rng_bytes, problem, rng->left, rng->next);
    }
}

// Reads a state file written by state_write (or llm.c) and positions the loader. Every field is
// checked before it is used (against the file's length, the run and the data), and the checksum
// when the file has one, before anything reaches the loader.
// expected_parameters: what this process holds; m, v (and master if requested) are filled.
// owner (NULL: not checked): the process that must have written it; a file of another process
// count or ZeRO stage is refused, since the shards and the loaders' positions would not line up.
// outliers (NULL: dropped): the outlier detector's history, empty if the file has none.
static inline void state_read_with_outliers(const char *path, TrainState *state,
                                            size_t expected_parameters, float *m, float *v,
                                            float *master, DataLoader *loader,
                                            const StateOwner *owner, OutlierHistory *outliers) {
    FILE *file = fopen_check(path, "rb");
    size_t file_size = file_size_check(file, path);
    if (file_size < HEADER_BYTES) {
        fatal("%s: not a state file: %zu bytes, shorter than the 1024-byte header", path,
              file_size);
    }
    int32_t header[HEADER_INTS];
    read_header(file, path, header);
    if (header[0] != STATE_MAGIC) {
        fatal("%s: bad magic %d in header[0], expected %d (state file)", path, header[0],
              STATE_MAGIC);
    }
    if (header[1] != STATE_VERSION) {
        fatal("%s: unsupported state version %d in header[1], expected %d", path, header[1],
              STATE_VERSION);
    }
    if (owner != NULL && header[2] != owner->num_processes) {
        fatal("%s: written by %d processes (header[2]), this run has %d: resume with the same "
              "number of processes",
              path, header[2], owner->num_processes);
    }
    if (owner != NULL && header[6] != owner->zero_stage) {
        fatal("%s: written with ZeRO stage %d (header[6]), this run has -z %d: resume with the "
              "same -z",
              path, header[6], owner->zero_stage);
    }
    if (owner != NULL && header[3] != owner->process_rank) {
        fatal("%s: written by rank %d (header[3]), read by rank %d", path, header[3],
              owner->process_rank);
    }
    if (header[2] < 1 || header[3] < 0 || header[3] >= header[2]) {
        fatal("%s: header[2..3]: expected a process count >= 1 and a rank below it, found %d and "
              "%d",
              path, header[2], header[3]);
    }
    const int flag_slots[3] = {4, 5, 6};
    const char *flag_names[3] = {"master weights", "loader shuffling", "ZeRO stage"};
    for (int k = 0; k < 3; k++) {
        int32_t value = header[flag_slots[k]];
        if (value != 0 && value != 1) {
            fatal("%s: header[%d] (%s): expected 0 or 1, found %d", path, flag_slots[k],
                  flag_names[k], value);
        }
    }
    int checksum = header_has_checksum(header, path);
    state->num_processes = header[2];
    state->process_rank = header[3];
    state->use_master_weights = header[4];
    state->zero_stage = header[6];
    state->step = header[10];
    state->rng_state = get_u64(&header[20]);
    state->rng_state_last_update = get_u64(&header[22]);
    uint64_t shard_idx = get_u64(&header[30]);
    uint64_t sample_idx = get_u64(&header[32]);
    uint64_t stored_parameters = get_u64(&header[40]);
    if (stored_parameters != 0 && stored_parameters != expected_parameters) {
        fatal("%s: holds %llu parameters (header[40..41]) but the model has %zu", path,
              (unsigned long long)stored_parameters, expected_parameters);
    }
    if (header[5] != loader->should_shuffle) {
        fatal("%s: loader shuffling is %d in header[5] but this run has %d; resume with the same "
              "setting",
              path, header[5], loader->should_shuffle);
    }
    if (state->step < 0) {
        fatal("%s: bad step %d in header[10]", path, state->step);
    }
    if (state->rng_state == 0) { // xorshift never leaves 0: sampling would repeat one token
        fatal("%s: header[20..21] (sampler rng state): expected a nonzero value, found 0", path);
    }
    if (shard_idx >= loader->num_shards) {
        fatal("%s: header[30..31] (loader shard index): expected < %zu (the shards -i matches), "
              "found %llu",
              path, loader->num_shards, (unsigned long long)shard_idx);
    }
    // the optimizer state's length, then the loader's, against the file's before any is read
    state->num_parameters = expected_parameters;
    size_t floats = size_mul_check(expected_parameters, state->use_master_weights ? 3 : 2, path);
    size_t optimizer_end = size_add_check(HEADER_BYTES, size_mul_check(floats, 4, path), path);
    // the outlier detector's history comes last (header[50] values of loss and of norm)
    size_t outlier_bytes = outlier_history_bytes(header, path);
    size_t optimizer_and_outliers = size_add_check(optimizer_end, outlier_bytes, path);
    // the loader rng's bytes: llm.c's layout, or ours before run record version 2
    int32_t record_version = header[RUN_RECORD_SLOT];
    if (record_version != 0 && record_version != RUN_RECORD_VERSION &&
        record_version != RUN_RECORD_VERSION_SHORT_RNG) {
        fatal("%s: run record version %d in header[%d], expected %d, %d or 0 (none)", path,
              record_version, RUN_RECORD_SLOT, RUN_RECORD_VERSION, RUN_RECORD_VERSION_SHORT_RNG);
    }
    size_t rng_bytes = record_version == RUN_RECORD_VERSION_SHORT_RNG ? MT19937_SHORT_STATE_BYTES
                                                                      : sizeof(mt19937_state);
    size_t shuffle_min = 2 * sizeof(uint64_t) + rng_bytes; // counts and generator
    if (loader->should_shuffle
            ? file_size < optimizer_and_outliers || file_size - optimizer_and_outliers < shuffle_min
            : file_size != optimizer_and_outliers) {
        fatal("%s: file is %zu bytes, expected %s%zu for %zu parameters of optimizer state%s "
              "and %zu bytes of outlier history (header[4] = %d, header[5] = %d, header[50] = %d)",
              path, file_size, loader->should_shuffle ? "more than " : "", optimizer_and_outliers,
              expected_parameters, state->use_master_weights ? " with master weights" : "",
              outlier_bytes, header[4], header[5], header[50]);
    }
    uint32_t crc = 0;
    fread_crc(m, sizeof(float), expected_parameters, file, path, "AdamW m", &crc);
    fread_crc(v, sizeof(float), expected_parameters, file, path, "AdamW v", &crc);
    if (state->use_master_weights && master != NULL) {
        fread_crc(master, sizeof(float), expected_parameters, file, path, "master weights", &crc);
    } else if (state->use_master_weights && checksum) { // not wanted, but checksummed
        const size_t chunk = 1 << 20;
        float *buffer = (float *)malloc_check(chunk * sizeof(float), "master weights (skipped)");
        for (size_t done = 0; done < expected_parameters; done += chunk) {
            size_t count = expected_parameters - done < chunk ? expected_parameters - done : chunk;
            fread_crc(buffer, sizeof(float), count, file, path, "master weights", &crc);
        }
        free(buffer);
    } else if (state->use_master_weights) {
        fseek_check(file, (long)(expected_parameters * sizeof(float)), SEEK_CUR, path);
    }
    int *sample_order = NULL;
    uint64_t num_samples = 0;
    mt19937_state shuffle_rng;
    memset(&shuffle_rng, 0, sizeof(shuffle_rng));
    if (loader->should_shuffle) {
        uint64_t num_shards;
        fread_crc(&num_shards, sizeof(num_shards), 1, file, path, "loader shard count", &crc);
        if (num_shards != loader->num_shards) {
            fatal("%s: loader shard count (after the optimizer state): saved %llu shards, the -i "
                  "pattern now matches %zu",
                  path, (unsigned long long)num_shards, loader->num_shards);
        }
        if ((file_size - optimizer_and_outliers - shuffle_min) / sizeof(int) < num_shards) {
            fatal("%s: file is %zu bytes, too short for the shard order of %llu shards", path,
                  file_size, (unsigned long long)num_shards);
        }
        fread_crc(loader->shard_indices, sizeof(int), loader->num_shards, file, path,
                  "loader shard order", &crc);
        state_check_permutation(path, "loader shard order (after the optimizer state)",
                                loader->shard_indices, loader->num_shards);
        fread_crc(&num_samples, sizeof(num_samples), 1, file, path, "loader sample count", &crc);
        // the saved (now checked) shard order says which shard this is: its sample count must be
        // the saved one, and the file must hold exactly that many indices, before any allocation
        dataloader_load_shard(loader, (size_t)shard_idx);
        if (num_samples != loader->shard_num_samples) {
            fatal("%s: loader sample count (after the shard order): saved %llu samples, %s now "
                  "has %zu (data or -b/-t changed)",
                  path, (unsigned long long)num_samples, loader->shard_path,
                  loader->shard_num_samples);
        }
        long position = ftell(file);
        size_t rest = position < 0 ? 0 : file_size - (size_t)position;
        size_t order_bytes = size_mul_check((size_t)num_samples, sizeof(int), path);
        size_t expected_rest =
            size_add_check(size_add_check(order_bytes, rng_bytes, path), outlier_bytes, path);
        if (rest != expected_rest) {
            fatal("%s: %zu bytes after the loader sample count, expected %zu for %llu sample "
                  "indices, the loader rng (%zu bytes with run record version %d in header[%d]) "
                  "and the outlier history (truncated or corrupt)",
                  path, rest, expected_rest, (unsigned long long)num_samples, rng_bytes,
                  record_version, RUN_RECORD_SLOT);
        }
        sample_order = (int *)malloc_check(order_bytes, "loader sample order");
        fread_crc(sample_order, sizeof(int), (size_t)num_samples, file, path, "loader sample order",
                  &crc);
        state_check_permutation(path, "loader sample order (after the sample count)", sample_order,
                                (size_t)num_samples);
        state_read_loader_rng(&shuffle_rng, rng_bytes, file, path, &crc);
    } else {
        dataloader_load_shard(loader, (size_t)shard_idx);
    }
    if (sample_idx > loader->shard_num_samples) {
        fatal("%s: header[32..33] (loader sample index): expected <= %zu (the samples of %s), "
              "found %llu",
              path, loader->shard_num_samples, loader->shard_path, (unsigned long long)sample_idx);
    }
    outlier_history_read(outliers, header, file, path, &crc);
    long position = ftell(file);
    if (position < 0 || (size_t)position != file_size) {
        fatal("%s: %zu unexpected trailing bytes (corrupt, or written for other settings)", path,
              file_size - (size_t)position);
    }
    if (checksum) header_checksum_verify(header, crc, path);
    fclose(file);
    // everything checked: the loader takes the saved position, order and generator
    if (loader->should_shuffle) {
        free(loader->intra_shard_indices);
        loader->intra_shard_indices = sample_order;
        loader->intra_capacity = (size_t)num_samples;
        loader->shuffle_rng = shuffle_rng;
    }
    dataloader_resume(loader, (size_t)shard_idx, (size_t)sample_idx);
}

static inline void state_read(const char *path, TrainState *state, size_t expected_parameters,
                              float *m, float *v, float *master, DataLoader *loader,
                              const StateOwner *owner) {
    state_read_with_outliers(path, state, expected_parameters, m, v, master, loader, owner, NULL);
}

// The newest step below `before` in dir with a DONE marker, or -1 if there is none.
static inline int checkpoint_find_latest_before(const char *dir, int before) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -1;
    }
    int latest = -1;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        int step;
        char extra;
        if (sscanf(entry->d_name, "DONE_%d%c", &step, &extra) == 1 && step > latest &&
            step < before) {
            latest = step;
        }
    }
    closedir(d);
    return latest;
}

// The newest step in dir with a DONE marker, or -1 if there is none.
static inline int checkpoint_find_latest(const char *dir) {
    return checkpoint_find_latest_before(dir, INT_MAX);
}

// The newest step of dir to resume from: a DONE marker whose model file and rank 0's state file
// are there; -1 if there is none. A marker without them (a stray DONE, copied alone or left
// when they were deleted) is passed over with a warning for the one before it.
static inline int checkpoint_find_resumable(const char *dir) {
    for (int step = checkpoint_find_latest(dir); step >= 0;) {
        char model[4096], state[4096];
        checkpoint_path(model, sizeof(model), dir, "model", step);
        state_path(state, sizeof(state), dir, step, 0);
        const char *missing = !file_exists(model) ? model : !file_exists(state) ? state : NULL;
        if (missing == NULL) return step;
        int previous = checkpoint_find_latest_before(dir, step);
        printf("warning: %s/DONE_%08d marks step %d complete, but %s is missing: %s\n", dir, step,
               step, missing,
               previous >= 0 ? "falling back to the checkpoint before it"
                             : "no earlier checkpoint is complete");
        step = previous;
    }
    return -1;
}

static inline void checkpoint_mark_done(const char *dir, int step) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/DONE_%08d", dir, step);
    AtomicFile out;
    atomic_open(&out, path);
    atomic_commit(&out);
}

// The step of a checkpoint file name of ours: DONE_%08d, model_%08d.bin or state_%08d_%05d.bin,
// exactly as the trainers write them (the number printed back must give the name again); -1 for
// any other name, which housekeeping never touches.
static inline int checkpoint_file_step(const char *name) {
    const char *prefixes[3] = {"DONE_", "model_", "state_"};
    for (int kind = 0; kind < 3; kind++) {
        size_t n = strlen(prefixes[kind]);
        if (strncmp(name, prefixes[kind], n) != 0 || name[n] < '0' || name[n] > '9') continue;
        char *end = NULL;
        long step = strtol(name + n, &end, 10);
        if (step > INT_MAX) return -1;
        long rank = 0;
        if (kind == 2) {
            if (end[0] != '_' || end[1] < '0' || end[1] > '9') return -1;
            rank = strtol(end + 1, NULL, 10);
            if (rank > INT_MAX) return -1;
        }
        char again[64];
        if (kind == 0) snprintf(again, sizeof(again), "DONE_%08d", (int)step);
        if (kind == 1) snprintf(again, sizeof(again), "model_%08d.bin", (int)step);
        if (kind == 2) snprintf(again, sizeof(again), "state_%08d_%05d.bin", (int)step, (int)rank);
        return strcmp(again, name) == 0 ? (int)step : -1;
    }
    return -1;
}

static inline int compare_int_descending(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

// Removes the files of step in dir whose names are our checkpoint's (checkpoint_file_step): the
// model and state files first and the DONE marker last, so an interrupted removal leaves a marker
// that resume passes over and the next housekeeping removes. Returns how many it removed.
static inline int checkpoint_remove_step(const char *dir, int step) {
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    int removed = 0;
    char path[4096 + 256];
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (strncmp(entry->d_name, "DONE_", 5) == 0) continue;
        if (checkpoint_file_step(entry->d_name) != step) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
        struct stat info;
        if (lstat(path, &info) != 0 || S_ISDIR(info.st_mode)) continue; // only files, links
        if (remove(path) == 0) {
            removed++;
        } else {
            printf("warning: %s: cannot delete (%s)\n", path, strerror(errno));
        }
    }
    closedir(d);
    snprintf(path, sizeof(path), "%s/DONE_%08d", dir, step);
    if (remove(path) == 0) {
        removed++;
    } else if (errno != ENOENT) {
        printf("warning: %s: cannot delete (%s)\n", path, strerror(errno));
    }
    return removed;
}

// llm.c's -nk/-nm housekeeping, run after a checkpoint is complete: of the complete checkpoints in
// dir (a DONE marker), the newest keep stay and so does every step that is a multiple of
// major_every (> 0); the others' files are deleted. Nothing but our checkpoint files is touched,
// and no files of a step without a marker (an unfinished write). keep <= 0: nothing is deleted.
// (llm.c deletes the one checkpoint keep*-n steps back; this keeps the newest keep whatever
// their steps, e.g. the last step's checkpoint off the -n cadence, and earlier runs' in dir.)
static inline void checkpoint_prune(const char *dir, int keep, int major_every) {
    if (keep <= 0) return;
    DIR *d = opendir(dir);
    if (d == NULL) return;
    int *steps = NULL;
    size_t count = 0, capacity = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (strncmp(entry->d_name, "DONE_", 5) != 0) continue;
        int step = checkpoint_file_step(entry->d_name);
        if (step < 0) continue;
        if (count == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            int *grown = (int *)realloc(steps, capacity * sizeof(int));
            if (grown == NULL) fatal("out of memory listing the checkpoints of %s", dir);
            steps = grown;
        }
        steps[count++] = step;
    }
    closedir(d);
    if (count > 1) qsort(steps, count, sizeof(int), compare_int_descending);
    for (size_t i = (size_t)keep; i < count; i++) {
        if (major_every > 0 && steps[i] % major_every == 0) continue;
        int removed = checkpoint_remove_step(dir, steps[i]);
        printf("checkpoint: deleted step %d (%d files): -nk %d keeps the newest %d%s\n", steps[i],
               removed, keep, keep, major_every > 0 ? " and the multiples of -nm" : "");
    }
    free(steps);
}

// The state file of step for process owner (AdamW moments, master weights when not NULL, the
// loader's position, the sampler's rng, the outlier detector's history when not NULL). The model
// file comes first and the DONE marker (checkpoint_mark_done) after every process has written its
// state.
static inline void checkpoint_write_process_state(const char *dir, int step, StateOwner owner,
                                                  size_t num_parameters, const float *m,
                                                  const float *v, const float *master,
                                                  const DataLoader *loader, uint64_t rng_state,
                                                  const OutlierHistory *outliers) {
    TrainState state;
    memset(&state, 0, sizeof(state));
    state.num_processes = owner.num_processes;
    state.process_rank = owner.process_rank;
    state.zero_stage = owner.zero_stage;
    state.use_master_weights = master != NULL;
    state.step = step;
    state.rng_state = rng_state;
    state.rng_state_last_update = rng_state;
    state.num_parameters = num_parameters;
    char path[4096];
    state_path(path, sizeof(path), dir, step, owner.process_rank);
    state_write_with_outliers(path, &state, m, v, master, loader, outliers);
}

// A one-process trainer's state file for step, then the DONE marker that completes the
// checkpoint. The trainer writes the model file first.
static inline void checkpoint_write_state(const char *dir, int step, size_t num_parameters,
                                          const float *m, const float *v, const float *master,
                                          const DataLoader *loader, uint64_t rng_state,
                                          const OutlierHistory *outliers) {
    StateOwner owner = {0, 1, 0};
    checkpoint_write_process_state(dir, step, owner, num_parameters, m, v, master, loader,
                                   rng_state, outliers);
    checkpoint_mark_done(dir, step);
    printf("checkpoint: wrote %s/model_%08d.bin and state (step %d)\n", dir, step, step);
}

// Refuses a resume whose -e is not the one the run started from: the weights come from the
// checkpoint, so the new -e would be ignored. path's saved record against this run's
// (checkpoint_run_record).
static inline void run_record_check_model(const char *path, const RunRecord *saved) {
    const RunRecord *now = &checkpoint_run_record;
    size_t compared =
        (size_t)(saved->model_spec_length < RUN_RECORD_SPEC_MAX ? saved->model_spec_length
                                                                : RUN_RECORD_SPEC_MAX);
    if (saved->model_spec_length != now->model_spec_length ||
        memcmp(saved->model_spec, now->model_spec, compared) != 0) {
        char spec[4 * RUN_RECORD_SPEC_MAX + 1]; // the file's bytes, printable
        fatal("%s: -e (header[%d..]): expected '%s%s', the model this run started from, found "
              "'%s%s': resume with that -e, or start a new run in another -o",
              path, RUN_RECORD_SPEC_SLOT,
              printable_text(saved->model_spec, RUN_RECORD_SPEC_MAX, spec, sizeof(spec)),
              saved->model_spec_length > RUN_RECORD_SPEC_MAX ? "..." : "", now->model_spec,
              now->model_spec_length > RUN_RECORD_SPEC_MAX ? "..." : "");
    }
}

// Refuses a resume with another optimizer: AdamW's m, v and Muon's momentum (in m, v = 0) cannot
// stand in for each other. A state file without a record (llm.c's) holds AdamW moments.
static inline void run_record_check_optimizer(const char *path, const RunRecord *saved) {
    int now = checkpoint_run_record.optimizer;
    int then = saved->version != 0 ? saved->optimizer : OPTIMIZER_ADAMW;
    if (now == then) return;
    if (saved->version == 0) {
        fatal("%s: no run record (llm.c's state file): its m and v are AdamW's, this run has "
              "--optimizer %s: resume with --optimizer adamw, or start a new run in another -o",
              path, optimizer_name(now));
    }
    fatal("%s: optimizer (header[%d]): the checkpoint was written by --optimizer %s, this run has "
          "--optimizer %s: resume with --optimizer %s, or start a new run in another -o",
          path, RUN_RECORD_OPTIMIZER_SLOT, optimizer_name(then), optimizer_name(now),
          optimizer_name(then));
}

// States what a changed -d changes from the checkpoint of step on.
static inline void run_record_note_batch(const RunRecord *saved, int step,
                                         const DataLoader *loader) {
    const RunRecord *now = &checkpoint_run_record;
    if (saved->total_batch_size == now->total_batch_size) return;
    int window = loader->num_processes * now->B * now->T;
    printf("resume: -d %d, the checkpoint's was %d (header[%d]): from step %d on each step takes "
           "%d tokens (%d micro-step(s) of processes*B*T = %d) instead of %d; the data continues "
           "where it stopped and the learning-rate schedule (by step) is the same\n",
           now->total_batch_size, saved->total_batch_size, RUN_RECORD_SLOT + 3, step,
           now->total_batch_size, now->total_batch_size / window, window, saved->total_batch_size);
}

// The loader's position is a sample index in units of processes*B*T tokens (processes*B rows with
// loss masks): reads path (state_read) in the checkpoint's units, then moves the loader to the
// same token in this run's units, or refuses where that is not exact (a shuffled order is a
// permutation of samples of the old size; a position that is not a multiple of the new size).
static inline void state_read_resized(const char *path, TrainState *state, size_t num_parameters,
                                      float *m, float *v, float *master, DataLoader *loader,
                                      const StateOwner *owner, const RunRecord *saved,
                                      OutlierHistory *outliers) {
    int B = loader->B, T = loader->T;
    char change[160] = "";
    if (saved->B != B) {
        snprintf(change, sizeof(change), "-b changed from %d (header[%d]) to %d", saved->B,
                 RUN_RECORD_SLOT + 1, B);
    }
    if (saved->T != T) {
        size_t used = strlen(change);
        snprintf(change + used, sizeof(change) - used, "%s-t changed from %d (header[%d]) to %d",
                 used > 0 ? ", " : "", saved->T, RUN_RECORD_SLOT + 2, T);
    }
    if (loader->should_shuffle) { // (a shuffled checkpoint resumed unshuffled: state_read refuses)
        fatal("%s: %s: the shuffled order is a permutation of samples of the checkpoint's B*T, "
              "which cannot be converted: resume with -b %d -t %d",
              path, change, saved->B, saved->T);
    }
    const char *unit = loader->has_masks ? "row" : "token";
    size_t P = (size_t)loader->num_processes;
    size_t saved_window = P * saved->B * (loader->has_masks ? 1 : (size_t)saved->T);
    size_t window = P * B * (loader->has_masks ? 1 : (size_t)T);
    loader->B = saved->B; // the shard's sample count in the checkpoint's units
    loader->T = saved->T;
    state_read_with_outliers(path, state, num_parameters, m, v, master, loader, owner, outliers);
    loader->B = B;
    loader->T = T;
    size_t saved_sample = loader->current_sample_idx;
    size_t position = saved_sample * saved_window;
    if (position % window != 0) {
        fatal("%s: %s: the loader stopped at %s %zu of %s, not a multiple of this run's %zu %ss "
              "per sample (processes*B%s): resume with -b %d -t %d",
              path, change, unit, position, loader->shard_path, window, unit,
              loader->has_masks ? "" : "*T", saved->B, saved->T);
    }
    dataloader_resume(loader, loader->current_shard_idx, position / window);
    printf("resume: %s: the loader continues exactly where it stopped, at %s %zu of %s (sample "
           "%zu of %zu %ss, was %zu of %zu)\n",
           change, unit, position, loader->shard_path, position / window, window, unit,
           saved_sample, saved_window);
}

// Reads the state file of step for process owner into m, v (and master, when not NULL and the
// file has master weights: see the result's use_master_weights) and the outlier detector's
// history, and positions the loader; a file of another process count or ZeRO stage is refused
// (state_read). This run's -e, -b, -t and -d are checked against the file's record
// (run_record_check_model, state_read_resized, run_record_note_batch).
static inline TrainState checkpoint_read_process_state(const char *dir, int step, StateOwner owner,
                                                       size_t num_parameters, float *m, float *v,
                                                       float *master, DataLoader *loader,
                                                       OutlierHistory *outliers) {
    char path[4096];
    state_path(path, sizeof(path), dir, step, owner.process_rank);
    if (!file_exists(path)) {
        fatal("%s: missing: this checkpoint was written by fewer processes than the %d of this "
              "run; resume with the same number of processes",
              path, owner.num_processes);
    }
    RunRecord saved = run_record_read(path);
    if (checkpoint_run_record.version != 0) run_record_check_optimizer(path, &saved);
    int resized = 0;
    if (saved.version != 0 && checkpoint_run_record.version != 0) {
        run_record_check_model(path, &saved);
        resized = saved.B != loader->B || saved.T != loader->T;
    } else if (checkpoint_run_record.version != 0) {
        printf("resume: %s has no record of the run's -e, -b, -t, -d (llm.c's state file, or an "
               "older llmc's): they are not checked\n",
               path);
    }
    TrainState state;
    if (resized) {
        state_read_resized(path, &state, num_parameters, m, v, master, loader, &owner, &saved,
                           outliers);
    } else {
        state_read_with_outliers(path, &state, num_parameters, m, v, master, loader, &owner,
                                 outliers);
    }
    if (saved.version != 0 && checkpoint_run_record.version != 0) {
        run_record_note_batch(&saved, step, loader);
    }
    if (state.step != step) {
        fatal("%s: step %d in header[10] does not match the file name (step %d)", path, state.step,
              step);
    }
    return state;
}

// The one-process trainer's: checkpoint_read_process_state for rank 0 of 1.
static inline TrainState checkpoint_read_state(const char *dir, int step, size_t num_parameters,
                                               float *m, float *v, float *master,
                                               DataLoader *loader, OutlierHistory *outliers) {
    StateOwner owner = {0, 1, 0};
    return checkpoint_read_process_state(dir, step, owner, num_parameters, m, v, master, loader,
                                         outliers);
}

#endif // LLMC_CHECKPOINT_H
