// Checkpoints in llm.c's layout (docs/formats.md): model_%08d.bin, state_%08d_%05d.bin and the
// DONE_%08d marker written last. Every file is written atomically, so the newest step with a DONE
// marker is always complete and resuming from it continues bit for bit.
#ifndef LLMC_CHECKPOINT_H
#define LLMC_CHECKPOINT_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dataloader.h"
#include "divergence.h"
#include "formats.h"
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
    outlier_history_put_header(outliers, header);
    AtomicFile out;
    atomic_open(&out, path);
    fwrite_check(header, sizeof(int32_t), HEADER_INTS, out.file, path);
    fwrite_check(m, sizeof(float), state->num_parameters, out.file, path);
    fwrite_check(v, sizeof(float), state->num_parameters, out.file, path);
    if (state->use_master_weights) {
        if (master == NULL) {
            fatal("internal: state %s says master weights but none were given", path);
        }
        fwrite_check(master, sizeof(float), state->num_parameters, out.file, path);
    }
    if (loader->should_shuffle) {
        uint64_t num_shards = loader->num_shards;
        uint64_t num_samples = loader->shard_num_samples;
        fwrite_check(&num_shards, sizeof(num_shards), 1, out.file, path);
        fwrite_check(loader->shard_indices, sizeof(int), loader->num_shards, out.file, path);
        fwrite_check(&num_samples, sizeof(num_samples), 1, out.file, path);
        fwrite_check(loader->intra_shard_indices, sizeof(int), loader->shard_num_samples, out.file,
                     path);
        fwrite_check(&loader->shuffle_rng, sizeof(mt19937_state), 1, out.file, path);
    }
    outlier_history_write(outliers, out.file, path);
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

// Reads a state file written by state_write (or llm.c) and positions the loader.
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
    state->num_processes = header[2];
    state->process_rank = header[3];
    state->use_master_weights = header[4];
    state->zero_stage = header[6];
    state->step = header[10];
    state->rng_state = get_u64(&header[20]);
    state->rng_state_last_update = get_u64(&header[22]);
    size_t shard_idx = (size_t)get_u64(&header[30]);
    size_t sample_idx = (size_t)get_u64(&header[32]);
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
    state->num_parameters = expected_parameters;
    size_t floats = expected_parameters * (state->use_master_weights ? 3 : 2);
    if (file_size < HEADER_BYTES + floats * sizeof(float)) {
        fatal("%s: file is %zu bytes, too short for %zu parameters of optimizer state", path,
              file_size, expected_parameters);
    }
    fread_check(m, sizeof(float), expected_parameters, file, path, "AdamW m");
    fread_check(v, sizeof(float), expected_parameters, file, path, "AdamW v");
    if (state->use_master_weights) {
        if (master == NULL) {
            fseek_check(file, (long)(expected_parameters * sizeof(float)), SEEK_CUR, path);
        } else {
            fread_check(master, sizeof(float), expected_parameters, file, path, "master weights");
        }
    }
    if (loader->should_shuffle) {
        uint64_t num_shards, num_samples;
        fread_check(&num_shards, sizeof(num_shards), 1, file, path, "loader shard count");
        if (num_shards != loader->num_shards) {
            fatal("%s: saved loader had %llu shards, the -i pattern now matches %zu", path,
                  (unsigned long long)num_shards, loader->num_shards);
        }
        fread_check(loader->shard_indices, sizeof(int), loader->num_shards, file, path,
                    "loader shard order");
        fread_check(&num_samples, sizeof(num_samples), 1, file, path, "loader sample count");
        if (num_samples > (1ull << 31)) {
            fatal("%s: bad loader sample count %llu", path, (unsigned long long)num_samples);
        }
        int *order = (int *)malloc_check(num_samples * sizeof(int), "loader sample order");
        fread_check(order, sizeof(int), num_samples, file, path, "loader sample order");
        fread_check(&loader->shuffle_rng, sizeof(mt19937_state), 1, file, path, "loader rng");
        dataloader_resume(loader, shard_idx, sample_idx);
        if (num_samples != loader->shard_num_samples) {
            fatal("%s: saved shard had %llu samples, %s now has %zu (data or B/T changed)", path,
                  (unsigned long long)num_samples, loader->shard_path, loader->shard_num_samples);
        }
        free(loader->intra_shard_indices);
        loader->intra_shard_indices = order;
        loader->intra_capacity = num_samples;
    } else {
        dataloader_resume(loader, shard_idx, sample_idx);
    }
    outlier_history_read(outliers, header, file, path);
    long position = ftell(file);
    if (position < 0 || (size_t)position != file_size) {
        fatal("%s: %zu unexpected trailing bytes (corrupt, or written for other settings)", path,
              file_size - (size_t)position);
    }
    fclose(file);
}

static inline void state_read(const char *path, TrainState *state, size_t expected_parameters,
                              float *m, float *v, float *master, DataLoader *loader,
                              const StateOwner *owner) {
    state_read_with_outliers(path, state, expected_parameters, m, v, master, loader, owner, NULL);
}

// The newest step in dir with a DONE marker, or -1 if there is none.
static inline int checkpoint_find_latest(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -1;
    }
    int latest = -1;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        int step;
        char extra;
        if (sscanf(entry->d_name, "DONE_%d%c", &step, &extra) == 1 && step > latest) {
            latest = step;
        }
    }
    closedir(d);
    return latest;
}

static inline void checkpoint_mark_done(const char *dir, int step) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/DONE_%08d", dir, step);
    AtomicFile out;
    atomic_open(&out, path);
    atomic_commit(&out);
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

// Reads the state file of step for process owner into m, v (and master, when not NULL and the
// file has master weights: see the result's use_master_weights) and the outlier detector's
// history, and positions the loader; a file of another process count or ZeRO stage is refused
// (state_read).
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
    TrainState state;
    state_read_with_outliers(path, &state, num_parameters, m, v, master, loader, &owner, outliers);
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
