// libFuzzer harness: training state files (state_%08d_%05d.bin), as a resume reads them
// (llmc/checkpoint.h: checkpoint_read_process_state: the run record, then state_read, or
// state_read_resized when the record's -b/-t differ), with a loader over two small shards the
// harness writes; a resumed loader then reads batches from the position the file gave it. Seeds
// with and without the outlier detector's history (llmc/divergence.h) after the loader state.
#include "fuzz.h"

#include "../../llmc/checkpoint.h"

#define STATE_PARAMS 37 // parameters of the (imaginary) model
#define STATE_B 2
#define STATE_T 4
#define STATE_V 500
#define STATE_STEP 3
#define STATE_MODEL "fuzz_model.bin" // the -e in the run record

static char data_pattern[4096], input_path[4096];
static float m[STATE_PARAMS], v[STATE_PARAMS], master[STATE_PARAMS];
static OutlierHistory outliers; // the outlier detector's history (llmc/divergence.h)

// Two shards of random tokens: 61 and 45 tokens, 7 and 5 samples of B*T.
static void write_shards(const char *dir) {
    for (int s = 0; s < 2; s++) {
        size_t count = s == 0 ? 61 : 45;
        int32_t header[HEADER_INTS];
        memset(header, 0, sizeof(header));
        header[0] = DATA_MAGIC_U16;
        header[1] = DATA_VERSION_U16;
        header[2] = (int32_t)count;
        uint8_t bytes[HEADER_BYTES + 2 * 61];
        memcpy(bytes, header, HEADER_BYTES);
        for (size_t i = 0; i < count; i++) {
            uint16_t token = (uint16_t)(fuzz_random() % STATE_V);
            memcpy(bytes + HEADER_BYTES + 2 * i, &token, 2);
        }
        char name[64], path[4096];
        snprintf(name, sizeof(name), "%s/data_%03d.bin", dir, s);
        snprintf(path, sizeof(path), "%s", name);
        fuzz_write_file(path, bytes, HEADER_BYTES + 2 * count);
    }
}

typedef struct {
    int shuffle, with_master;
} StateRun;

static void load_state(void *context) {
    const StateRun *run = (const StateRun *)context;
    DataLoader loader;
    dataloader_init(&loader, data_pattern, STATE_B, STATE_T, STATE_V, 0, 1, run->shuffle, 1337);
    StateOwner owner = {0, 1, 0};
    TrainState state =
        checkpoint_read_process_state(fuzz_temp_dir(), STATE_STEP, owner, STATE_PARAMS, m, v,
                                      run->with_master ? master : NULL, &loader, &outliers);
    if (state.num_parameters != STATE_PARAMS) abort();
    for (int i = 0; i < 20; i++) dataloader_next_batch(&loader); // on from the saved position
    dataloader_free(&loader);
}

static void fuzz_init(void) {
    write_shards(fuzz_temp_dir());
    snprintf(data_pattern, sizeof(data_pattern), "%s/data_*.bin", fuzz_temp_dir());
    state_path(input_path, sizeof(input_path), fuzz_temp_dir(), STATE_STEP, 0);
    checkpoint_set_run_record(STATE_MODEL, STATE_B, STATE_T, STATE_B * STATE_T);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(input_path, data, size);
    // the loader shuffles as the file says (header[5]), else resume refuses it at once; the
    // caller may not want the master weights: header[7] (unused) picks that
    int32_t header[8] = {0};
    memcpy(header, data, size < sizeof(header) ? size : sizeof(header));
    StateRun run = {header[5] == 1, (header[7] & 1) == 0};
    const char *paths[] = {input_path, data_pattern, NULL};
    fuzz_load(load_state, &run, paths);
    return 0;
}

// One state file by state_write: the loader moved `batches` batches on, with or without shuffling
// and master weights; record_B/record_T: the -b/-t in its run record (0: none, llm.c's files);
// history: that many values of the outlier detector's history (0: none, llm.c's files).
static void write_state(const char *dir, const char *name, int shuffle, int with_master,
                        int batches, int record_B, int record_T, int checksum, int history) {
    DataLoader loader;
    int B = record_B > 0 ? record_B : STATE_B, T = record_T > 0 ? record_T : STATE_T;
    dataloader_init(&loader, data_pattern, B, T, STATE_V, 0, 1, shuffle, 1337);
    for (int i = 0; i < batches; i++) dataloader_next_batch(&loader);
    memset(&checkpoint_run_record, 0, sizeof(checkpoint_run_record));
    if (record_B > 0) checkpoint_set_run_record(STATE_MODEL, B, T, B * T);
    for (int i = 0; i < STATE_PARAMS; i++) {
        m[i] = (float)fuzz_random() / 4294967296.0f - 0.5f;
        v[i] = (float)fuzz_random() / 4294967296.0f;
        master[i] = (float)fuzz_random() / 4294967296.0f - 0.5f;
    }
    TrainState state = {
        1, 0, 0, with_master, STATE_STEP, 0x9e3779b97f4a7c15ull, 0x1234567ull, STATE_PARAMS};
    char path[4096];
    fuzz_seed_path(path, sizeof(path), dir, name);
    memset(&outliers, 0, sizeof(outliers));
    outliers.loss.count = outliers.norm.count = history;
    outliers.loss.outliers_in_a_row = history > 0;
    for (int i = 0; i < history; i++) {
        outliers.loss.values[i] = 4.0f + (float)fuzz_random() / 4294967296.0f;
        outliers.norm.values[i] = 1.0f + (float)fuzz_random() / 4294967296.0f;
    }
    state_write_with_outliers(path, &state, m, v, with_master ? master : NULL, &loader,
                              history > 0 ? &outliers : NULL);
    dataloader_free(&loader);
    if (!checksum) { // as llm.c writes them
        size_t size;
        uint8_t *bytes = fuzz_read_file(path, &size);
        memset(bytes + CHECKSUM_KIND_SLOT * 4, 0, 8);
        fuzz_write_file(path, bytes, size);
        free(bytes);
    }
}

static void fuzz_write_seeds(const char *dir) {
    write_shards(fuzz_temp_dir());
    snprintf(data_pattern, sizeof(data_pattern), "%s/data_*.bin", fuzz_temp_dir());
    write_state(dir, "plain.bin", 0, 0, 3, STATE_B, STATE_T, 1, 0);
    write_state(dir, "plain_no_checksum.bin", 0, 0, 9, STATE_B, STATE_T, 0, 0);
    write_state(dir, "master.bin", 0, 1, 5, STATE_B, STATE_T, 1, 6);
    write_state(dir, "shuffled.bin", 1, 0, 4, STATE_B, STATE_T, 1, 6);
    write_state(dir, "shuffled_master_no_checksum.bin", 1, 1, 10, STATE_B, STATE_T, 0, 0);
    write_state(dir, "llmc_without_record.bin", 0, 0, 2, 0, 0, 0, 0);
    write_state(dir, "resized_b1_t8.bin", 0, 0, 2, 1, 8, 0, 0); // resumed with -b 2 -t 4
    write_state(dir, "shuffled_resized.bin", 1, 0, 2, 4, 2, 0, 0);
}
