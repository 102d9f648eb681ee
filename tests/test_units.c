// Unit tests for the shared headers in llmc/: random numbers (bit-exact against PyTorch), bf16,
// model descriptors, learning-rate schedules, the data loader, the tokenizer and its UTF-8
// printer, the sampler, the command-line parser, model files and checkpoint state, the guards
// against divergence (fastmath on NaN, the non-finite scan, the outlier detector).
//
// usage: ./build/test_units [WORKDIR]   (temporary files go to WORKDIR/test_units, default /tmp)
// Prints "ok - NAME" or "FAIL - NAME: detail" per check, then "N passed, N failed"; exit status 0
// iff nothing failed. Fatal paths (bad files, bad flags) exit the process, so they are tested by
// tests/run_tests.sh instead.
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../llmc/checkpoint.h"
#include "../llmc/cli.h"
#include "../llmc/dataloader.h"
#include "../llmc/divergence.h"
#include "../llmc/fastmath.h"
#include "../llmc/formats.h"
#include "../llmc/matmul.h"
#include "../llmc/model_config.h"
#include "../llmc/rand.h"
#include "../llmc/sampler.h"
#include "../llmc/schedulers.h"
#include "../llmc/tokenizer.h"
#include "../llmc/utils.h"
#include "../llmc/zero_shards.h"

static int num_passed = 0, num_failed = 0;
static char detail[1024];   // why the current check failed
static char work_dir[4096]; // WORKDIR/test_units

// Inside a check: if cond is false, record the formatted reason and fail the check.
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(detail, sizeof(detail), __VA_ARGS__);                                         \
            return 0;                                                                              \
        }                                                                                          \
    } while (0)

static void run_check(const char *name, int (*check)(void)) {
    detail[0] = '\0';
    if (check()) {
        printf("ok - %s\n", name);
        num_passed++;
    } else {
        printf("FAIL - %s: %s\n", name, detail);
        num_failed++;
    }
    fflush(stdout);
}

static void work_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", work_dir, name);
}

// Removes the files in dir (not subdirectories): leftovers of an earlier run.
static void clear_dir(const char *dir) {
    char path[4400];
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) unlink(path);
    }
    if (d != NULL) closedir(d);
}

static uint32_t bits_of(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof(bits));
    return bits;
}

// got and want (float32 bit patterns) are identical.
static int bits_match(const float *got, const uint32_t *want, int n, const char *what) {
    for (int i = 0; i < n; i++) {
        CHECK(bits_of(got[i]) == want[i], "%s: element %d is 0x%08X, torch gives 0x%08X", what, i,
              bits_of(got[i]), want[i]);
    }
    return 1;
}

// ---------------------------------------------------------------------------------------------
// 1. Random numbers. Expected values: /usr/bin/python3, torch 1.13, ATEN_CPU_CAPABILITY=default,
//    float32 bit patterns of torch.manual_seed(42); torch.empty(n).uniform_() / .normal_(0, 1).

static const uint32_t TORCH_UNIFORM_20_FIRST5[5] = {0x3F61DC66, 0x3F6A3DB3, 0x3EC406B8, 0x3F75950E,
                                                    0x3EC7E8D4};
static const uint32_t TORCH_NORMAL_20[20] = {
    0x3FF6A527, 0x3FBE5F54, 0x3F669567, 0xC006C0DD, 0xBF4214E2, 0x3F8A0650, 0x3F4D0143,
    0x3FD71E93, 0x3EB63341, 0xBF2FC686, 0xBEFC9934, 0x3E774894, 0xBE6D2EED, 0x3D2B0C00,
    0xBE80CE7A, 0x3F5C1FB0, 0xBE9E9487, 0xBECA9A91, 0x3F4DAC3C, 0xBF1F20E0};
static const uint32_t TORCH_NORMAL_5[5] = {0x3EAC62AE, 0x3E03E69D, 0x3E7016E7, 0x3E6BDC6C,
                                           0xBF8FB9C2};
static const uint32_t TORCH_NORMAL_21[21] = {
    0x3FF6A527, 0x3FBE5F54, 0x3F669567, 0xC006C0DD, 0x3F2DACD5, 0x3F8A0650, 0x3F4D0143,
    0x3FD71E93, 0x3EB63341, 0xBF2FC686, 0xBEFC9934, 0x3E774894, 0xBF8E321B, 0x3D2B0C00,
    0xBE80CE7A, 0x3F5C1FB0, 0xBE9E9487, 0xBECA9A91, 0x3F4DAC3C, 0xBF1F20E0, 0xBF178D55};
// torch.manual_seed(42); torch.empty(21).normal_(0, 0.02): the std scaling, as in the model init
static const uint32_t TORCH_NORMAL_21_STD002[21] = {
    0x3D1DDA56, 0x3CF3AD38, 0x3C9392D1, 0xBD2C7BFC, 0x3C5E4DDD, 0x3CB0ABEB, 0x3C833402,
    0x3D09AD2B, 0x3BE9375D, 0xBC60FE1C, 0xBC21A9BB, 0x3B9E42EE, 0xBCB602B2, 0x3A5AF0A4,
    0xBBA4DF54, 0x3C8CE114, 0xBBCAFB8E, 0xBC01AA9A, 0x3C83A16E, 0xBC4BAF33, 0xBC41FC95};

static int test_mt19937_reference(void) {
    // the standard MT19937 outputs for seed 5489; the 10000th is the value C++11 requires
    const uint32_t want[5] = {3499211612u, 581869302u, 3890346734u, 3586334585u, 545404204u};
    TorchGenerator gen;
    torch_manual_seed(&gen, 5489);
    for (int i = 0; i < 5; i++) {
        uint32_t got = mt19937_u32(&gen.mt);
        CHECK(got == want[i], "output %d is %u, expected %u", i, got, want[i]);
    }
    uint32_t value = 0;
    for (int i = 5; i < 10000; i++) value = mt19937_u32(&gen.mt);
    CHECK(value == 4123659995u, "output 10000 is %u, expected 4123659995", value);
    return 1;
}

static int test_torch_uniform(void) {
    TorchGenerator gen;
    torch_manual_seed(&gen, 42);
    float got[5];
    for (int i = 0; i < 5; i++) got[i] = torch_uniform_float(&gen.mt);
    return bits_match(got, TORCH_UNIFORM_20_FIRST5, 5, "uniform_");
}

// torch.manual_seed(42); torch.empty(n).normal_(0, std) compared bit for bit with want.
static int normal_matches(int n, double std, const uint32_t *want) {
    float got[32];
    TorchGenerator gen;
    torch_manual_seed(&gen, 42);
    torch_normal_(&gen, got, (size_t)n, 0.0, std);
    char what[64];
    snprintf(what, sizeof(what), "normal_ n=%d std=%g", n, std);
    return bits_match(got, want, n, what);
}

static int test_torch_normal_20(void) {
    return normal_matches(20, 1.0, TORCH_NORMAL_20);
}
static int test_torch_normal_5(void) {
    return normal_matches(5, 1.0, TORCH_NORMAL_5);
}
static int test_torch_normal_21(void) {
    return normal_matches(21, 1.0, TORCH_NORMAL_21) &&
           normal_matches(21, 0.02, TORCH_NORMAL_21_STD002);
}

// ---------------------------------------------------------------------------------------------
// 2. bf16

static uint16_t bf16_of_bits(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof(value));
    return float_to_bf16(value);
}

static int test_bf16_rounding(void) {
    const uint32_t in[] = {0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x3F81FFFF,
                           0xBF818000, 0x7F7FFFFF, 0x7F800000, 0x3F800000};
    const uint16_t want[] = {0x3F80, 0x3F82, 0x3F81, 0x3F80, 0x3F82,
                             0xBF82, 0x7F80, 0x7F80, 0x3F80};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        uint16_t got = bf16_of_bits(in[i]);
        CHECK(got == want[i], "0x%08X -> 0x%04X, expected 0x%04X", in[i], got, want[i]);
    }
    return 1;
}

static int test_bf16_nan_and_inverse(void) {
    // a NaN whose payload is only in the low half must not become infinity
    const uint32_t nans[] = {0x7FC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF};
    for (size_t i = 0; i < sizeof(nans) / sizeof(nans[0]); i++) {
        uint16_t h = bf16_of_bits(nans[i]);
        CHECK(isnan(bf16_to_float(h)), "NaN 0x%08X -> 0x%04X is not NaN", nans[i], h);
    }
    const float exact[] = {1.0f, -2.5f, 0.15625f, 0x1p-130f, -0x1.fep127f, 96.0f};
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
        float back = bf16_to_float(float_to_bf16(exact[i]));
        CHECK(bits_of(back) == bits_of(exact[i]), "%g -> bf16 -> %g", (double)exact[i],
              (double)back);
    }
    CHECK(bf16_to_float(0x3F80) == 1.0f && bf16_to_float(0xC020) == -2.5f,
          "bf16_to_float(0x3F80)=%g, (0xC020)=%g", (double)bf16_to_float(0x3F80),
          (double)bf16_to_float(0xC020));
    const uint16_t halves[] = {0x0001, 0x8000, 0x4049, 0x7F7F, 0xC2F7};
    for (size_t i = 0; i < sizeof(halves) / sizeof(halves[0]); i++) {
        uint16_t back = float_to_bf16(bf16_to_float(halves[i]));
        CHECK(back == halves[i], "0x%04X -> float -> 0x%04X", halves[i], back);
    }
    return 1;
}

// ---------------------------------------------------------------------------------------------
// 3. Model descriptors

static int config_is(const GPT2Config *c, int L, int C, int NH, int V, int Vp, int maxT) {
    CHECK(c->num_layers == L && c->channels == C && c->num_heads == NH && c->vocab_size == V &&
              c->padded_vocab_size == Vp && c->max_seq_len == maxT,
          "got L=%d C=%d NH=%d V=%d Vp=%d maxT=%d, expected L=%d C=%d NH=%d V=%d Vp=%d maxT=%d",
          c->num_layers, c->channels, c->num_heads, c->vocab_size, c->padded_vocab_size,
          c->max_seq_len, L, C, NH, V, Vp, maxT);
    return 1;
}

static int test_descriptors(void) {
    GPT2Config c;
    CHECK(gpt2_config_from_descriptor("d12", &c) == 1, "d12 not recognised");
    if (!config_is(&c, 12, 768, 12, 50257, 50304, 1024)) return 0;
    CHECK(gpt2_config_from_descriptor("gpt2:d24", &c) == 1, "gpt2:d24 not recognised");
    if (!config_is(&c, 24, 1024, 16, 50257, 50304, 1024)) return 0;
    CHECK(gpt2_config_from_descriptor("L=2,C=64,NH=4,V=1000,maxT=128", &c) == 1,
          "custom descriptor not recognised");
    if (!config_is(&c, 2, 64, 4, 1000, 1024, 128)) return 0;
    // llm.c's other shapes (train_gpt2.cu's gpt2_/gpt3_set_hyperparameters): L, C, NH, maxT
    const struct {
        const char *name;
        int L, C, NH, maxT;
    } named[] = {
        {"d60", 60, 1920, 30, 1024},          {"gpt2:d72", 72, 2880, 30, 1024},
        {"d84", 84, 3456, 36, 1024},          {"gpt3:c384", 6, 384, 6, 2048},
        {"gpt3:c768", 12, 768, 12, 2048},     {"gpt3:c1024", 24, 1024, 16, 2048},
        {"gpt3:c1536", 24, 1536, 16, 2048},   {"gpt3:c2048", 24, 2048, 16, 2048},
        {"gpt3:c2560", 32, 2560, 32, 2048},   {"gpt3:c4096", 32, 4096, 32, 2048},
        {"gpt3:c12288", 96, 12288, 96, 2048},
    };
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        CHECK(gpt2_config_from_descriptor(named[i].name, &c) == 1, "%s not recognised",
              named[i].name);
        if (!config_is(&c, named[i].L, named[i].C, named[i].NH, 50257, 50304, named[i].maxT)) {
            return 0;
        }
    }
    const char *paths[] = {"model.bin", "/tmp/d12.bin", "d12x", "./d12", "gpt3:c768.bin"};
    for (int i = 0; i < 5; i++) {
        CHECK(gpt2_config_from_descriptor(paths[i], &c) == 0, "'%s' taken for a descriptor",
              paths[i]);
    }
    return 1;
}

static int test_num_parameters(void) {
    GPT2Config c;
    gpt2_config_from_descriptor("d12", &c);
    size_t got = gpt2_num_parameters(&c);
    // from the tensor table: wte, wpe, per layer (ln1 2C, qkv 3C^2+3C, attproj C^2+C, ln2 2C,
    // fc 4C^2+4C, fcproj 4C^2+C) = 12C^2 + 13C, and lnf 2C
    size_t Vp = 50304, C = 768, maxT = 1024, L = 12;
    size_t by_table = Vp * C + maxT * C + L * (12 * C * C + 13 * C) + 2 * C;
    CHECK(by_table == 124475904u, "table formula gives %zu", by_table);
    CHECK(got == 124475904u, "gpt2_num_parameters(d12) = %zu, llm.c's figure is 124475904", got);
    return 1;
}

// ---------------------------------------------------------------------------------------------
// 4. Learning-rate schedules

// lr_scheduler_get computes in double and returns a float: one rounding, <= 2^-24 = 5.96e-8
// relative, plus double roundings (~1e-13 relative even where 1 + cos cancels to 6e-4): 1e-7.
static int close_rel(double got, double want) {
    return fabs(got - want) <= 1e-7 * fabs(want) + 1e-30;
}

// Compares the scheduler at each step with the expected values.
static int schedule_matches(const LRScheduler *s, const int *steps, const double *want, int n) {
    for (int i = 0; i < n; i++) {
        double got = lr_scheduler_get(s, steps[i]);
        CHECK(close_rel(got, want[i]), "type %d step %d: lr %.10g, expected %.10g", (int)s->type,
              steps[i], got, want[i]);
    }
    return 1;
}

static int test_schedule_cosine(void) {
    LRScheduler s = {SCHEDULE_COSINE, 1e-3f, 10, 100, 0.1f};
    double lr = (double)1e-3f, lr_min = lr * (double)0.1f;
    const int steps[] = {0, 9, 10, 55, 99};
    const double want[] = {lr / 10, lr, lr, lr_min + 0.5 * (lr - lr_min),
                           lr_min + 0.5 * (1 + cos(M_PI * 89.0 / 90.0)) * (lr - lr_min)};
    return schedule_matches(&s, steps, want, 5);
}

static int test_schedule_linear(void) {
    LRScheduler s = {SCHEDULE_LINEAR, 2e-3f, 4, 20, 0.1f};
    double lr = (double)2e-3f, lr_min = lr * (double)0.1f;
    const int steps[] = {0, 3, 4, 12, 19};
    const double want[] = {lr / 4, lr, lr, (lr + lr_min) / 2, lr - 15.0 / 16 * (lr - lr_min)};
    return schedule_matches(&s, steps, want, 5);
}

static int test_schedule_constant(void) {
    LRScheduler s = {SCHEDULE_CONSTANT, 6e-4f, 5, 50, 0.1f};
    double lr = (double)6e-4f;
    const int steps[] = {0, 2, 4, 5, 49};
    const double want[] = {lr / 5, lr * 3 / 5, lr, lr, lr};
    return schedule_matches(&s, steps, want, 5);
}

static int test_schedule_wsd(void) {
    // 100 steps: decay over the last 20 (from step 80), to lr_min = 0.1 lr
    LRScheduler s = {SCHEDULE_WSD, 1e-3f, 10, 100, 0.1f};
    double lr = (double)1e-3f, lr_min = lr * (double)0.1f;
    const int steps[] = {0, 10, 79, 80, 85, 99};
    double at85 = lr_min + (lr - lr_min) * 0.5, at99 = lr_min + (lr - lr_min) * (1 - sqrt(0.95));
    const double want[] = {lr / 10, lr, lr, lr, at85, at99};
    if (!schedule_matches(&s, steps, want, 6)) return 0;
    ScheduleType type;
    CHECK(schedule_from_name("wsd", &type) && type == SCHEDULE_WSD &&
              schedule_from_name("linear", &type) && type == SCHEDULE_LINEAR &&
              !schedule_from_name("cosinus", &type),
          "schedule_from_name maps names wrongly");
    return 1;
}

// ---------------------------------------------------------------------------------------------
// 5. Data loader. Token at position p of shard s is s * SHARD_STRIDE + p, so every token says
//    where it came from. B=2, T=8: 16 tokens per window.

#define SHARD_STRIDE 20000
#define LB 2
#define LT 8
#define LBT (LB * LT)
static const int shard_tokens[2] = {1000, 700}; // 62 and 43 samples with one process

static void write_shard(const char *path, int32_t magic, int32_t version, int n, uint32_t base) {
    int32_t header[HEADER_INTS] = {0};
    header[0] = magic;
    header[1] = version;
    header[2] = n;
    FILE *f = fopen_check(path, "wb");
    fwrite_check(header, sizeof(header), 1, f, path);
    for (int i = 0; i < n; i++) {
        uint32_t token = base + (uint32_t)i;
        uint16_t small = (uint16_t)token;
        if (magic == DATA_MAGIC_U32)
            fwrite_check(&token, 4, 1, f, path);
        else
            fwrite_check(&small, 2, 1, f, path);
    }
    fclose(f);
}

static char shard_pattern[4200];

static void write_test_shards(void) {
    char path[4200];
    for (int s = 0; s < 2; s++) {
        char name[64];
        snprintf(name, sizeof(name), "shard_%d.bin", s);
        work_path(path, sizeof(path), name);
        write_shard(path, DATA_MAGIC_U16, DATA_VERSION_U16, shard_tokens[s],
                    (uint32_t)(s * SHARD_STRIDE));
    }
    work_path(shard_pattern, sizeof(shard_pattern), "shard_*.bin");
}

static void open_loader(DataLoader *l, int rank, int procs, int shuffle, uint32_t seed) {
    dataloader_init(l, shard_pattern, LB, LT, 50257, rank, procs, shuffle, seed);
}

// The batch is one window: inputs start at token first, targets are inputs shifted by one.
static int batch_is_window(const DataLoader *l, int first) {
    for (int i = 0; i < LBT; i++) {
        CHECK(l->inputs[i] == first + i && l->targets[i] == first + i + 1,
              "window at %d: inputs[%d]=%d targets[%d]=%d", first, i, l->inputs[i], i,
              l->targets[i]);
    }
    return 1;
}

static int test_loader_windows(void) {
    DataLoader l;
    open_loader(&l, 0, 1, 0, 0);
    for (int k = 0; k < 3; k++) {
        dataloader_next_batch(&l);
        if (!batch_is_window(&l, k * LBT)) return 0;
    }
    dataloader_free(&l);
    return 1;
}

static int test_loader_shards_and_wrap(void) {
    DataLoader l;
    open_loader(&l, 0, 1, 0, 0);
    for (int k = 0; k < 62; k++) dataloader_next_batch(&l); // all of shard 0
    if (!batch_is_window(&l, 61 * LBT)) return 0;
    dataloader_next_batch(&l);
    if (!batch_is_window(&l, SHARD_STRIDE)) return 0;
    for (int k = 1; k < 43; k++) dataloader_next_batch(&l); // the rest of shard 1
    if (!batch_is_window(&l, SHARD_STRIDE + 42 * LBT)) return 0;
    dataloader_next_batch(&l); // wraps to the first shard
    if (!batch_is_window(&l, 0)) return 0;
    dataloader_free(&l);
    return 1;
}

// One epoch on each of procs ranks (shuffled or not): every batch is its rank's slot of a window
// of procs batches, no window is read by two ranks, and together they read every whole window
// (samples[s] per rank in shard s).
static int loader_ranks_cover_epoch(int procs, int shuffle, uint32_t seed, const int samples[2]) {
    static int reads[2][1000];
    memset(reads, 0, sizeof(reads));
    for (int rank = 0; rank < procs; rank++) {
        DataLoader l;
        open_loader(&l, rank, procs, shuffle, seed);
        for (int k = 0; k < samples[0] + samples[1]; k++) {
            dataloader_next_batch(&l);
            int shard = l.inputs[0] / SHARD_STRIDE, pos = l.inputs[0] % SHARD_STRIDE;
            CHECK(shard < 2 && pos + LBT <= shard_tokens[shard] &&
                      pos % (procs * LBT) == rank * LBT,
                  "rank %d of %d batch %d starts at token %d, not its slot of a window", rank,
                  procs, k, l.inputs[0]);
            if (!batch_is_window(&l, l.inputs[0])) return 0;
            for (int i = 0; i < LBT; i++) reads[shard][pos + i]++;
        }
        dataloader_free(&l);
    }
    for (int s = 0; s < 2; s++) {
        for (int p = 0; p < shard_tokens[s]; p++) {
            int want = p < samples[s] * procs * LBT ? 1 : 0;
            CHECK(reads[s][p] == want, "shard %d position %d read %d times by the %d ranks", s, p,
                  reads[s][p], procs);
        }
    }
    return 1;
}

static int test_loader_two_ranks(void) {
    const int samples[2] = {31, 21}; // (ntok - 1) / (2 * 16)
    return loader_ranks_cover_epoch(2, 0, 0, samples);
}

// shuffled, 3 ranks: 999 / 48 = 20 and 699 / 48 = 14 samples per rank
static int test_loader_three_ranks_shuffled(void) {
    const int samples[2] = {20, 14};
    return loader_ranks_cover_epoch(3, 1, 11, samples);
}

// One shuffled epoch (105 batches): order[k] = shard * 1000 + sample of batch k.
static int shuffled_epoch(DataLoader *l, int *order) {
    static int seen[2][62];
    memset(seen, 0, sizeof(seen));
    for (int k = 0; k < 105; k++) {
        dataloader_next_batch(l);
        int shard = l->inputs[0] / SHARD_STRIDE, pos = l->inputs[0] % SHARD_STRIDE;
        CHECK(shard < 2 && pos % LBT == 0 && pos + LBT < shard_tokens[shard],
              "batch %d starts at token %d, not a window", k, l->inputs[0]);
        if (!batch_is_window(l, l->inputs[0])) return 0;
        seen[shard][pos / LBT]++;
        order[k] = shard * 1000 + pos / LBT;
        CHECK(k == 0 || shard == order[k - 1] / 1000 || k == (shard == 1 ? 62 : 43),
              "batch %d switches to shard %d mid-shard", k, shard); // one shard after the other
    }
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < (s == 0 ? 62 : 43); i++) {
            CHECK(seen[s][i] == 1, "shard %d sample %d seen %d times in an epoch", s, i,
                  seen[s][i]);
        }
    }
    return 1;
}

static int test_loader_shuffle(void) {
    int a[105], a2[105], b[105], c[105];
    DataLoader la, lb, lc;
    open_loader(&la, 0, 1, 1, 2);
    open_loader(&lb, 0, 1, 1, 2);
    open_loader(&lc, 0, 1, 1, 5);
    if (!shuffled_epoch(&la, a) || !shuffled_epoch(&lb, b) || !shuffled_epoch(&lc, c)) return 0;
    if (!shuffled_epoch(&la, a2)) return 0; // the second epoch is complete too
    int in_order = 1;
    for (int k = 0; k < 105; k++) in_order &= a[k] == (k < 62 ? k : 1000 + k - 62);
    CHECK(!in_order, "shuffled epoch is in file order");
    CHECK(memcmp(a, b, sizeof(a)) == 0, "same seed gives different orders");
    CHECK(memcmp(a, c, sizeof(a)) != 0, "seeds 2 and 5 give the same order");
    CHECK(memcmp(a, a2, sizeof(a)) != 0, "second epoch is not reshuffled");
    // with these seeds the shard order is permuted too: not every epoch starts with shard 0
    CHECK(a[0] / 1000 + a2[0] / 1000 + c[0] / 1000 > 0, "every epoch starts with shard 0");
    dataloader_free(&la);
    dataloader_free(&lb);
    dataloader_free(&lc);
    return 1;
}

// The next n batches of a and b are equal.
static int same_batches(DataLoader *a, DataLoader *b, int n) {
    for (int k = 0; k < n; k++) {
        dataloader_next_batch(a);
        dataloader_next_batch(b);
        CHECK(memcmp(a->inputs, b->inputs, LBT * sizeof(int)) == 0 &&
                  memcmp(a->targets, b->targets, LBT * sizeof(int)) == 0,
              "batch %d after resume: inputs start %d vs %d", k, a->inputs[0], b->inputs[0]);
    }
    return 1;
}

static int test_loader_resume(void) {
    const int skip[2] = {70, 62}; // inside shard 1; exactly at the end of shard 0
    for (int t = 0; t < 2; t++) {
        DataLoader a, b;
        open_loader(&a, 0, 1, 0, 0);
        for (int k = 0; k < skip[t]; k++) dataloader_next_batch(&a);
        open_loader(&b, 0, 1, 0, 0);
        dataloader_resume(&b, a.current_shard_idx, a.current_sample_idx);
        if (!same_batches(&a, &b, 10)) return 0;
        CHECK(a.inputs[0] == SHARD_STRIDE + (skip[t] + 9 - 62) * LBT,
              "after %d + 10 batches at token %d", skip[t], a.inputs[0]);
        dataloader_free(&a);
        dataloader_free(&b);
    }
    return 1;
}

static int test_loader_uint32(void) {
    char path[4200];
    work_path(path, sizeof(path), "u32_shard.bin");
    write_shard(path, DATA_MAGIC_U32, DATA_VERSION_U32, 100, 70000); // ids above 65535
    DataLoader l;
    dataloader_init(&l, path, LB, LT, 100000, 0, 1, 0, 0);
    CHECK(l.token_bytes == 4, "token_bytes %d", l.token_bytes);
    dataloader_next_batch(&l);
    dataloader_next_batch(&l);
    if (!batch_is_window(&l, 70000 + LBT)) return 0;
    dataloader_free(&l);
    return 1;
}

// ---------------------------------------------------------------------------------------------
// 6. Tokenizer and UTF-8 printer

static void write_tokenizer(const char *path, int version, int V, int eot, const char **tokens,
                            const int *lengths) {
    int32_t header[HEADER_INTS] = {0};
    header[0] = TOKENIZER_MAGIC;
    header[1] = version;
    header[2] = V;
    header[3] = eot;
    FILE *f = fopen_check(path, "wb");
    fwrite_check(header, sizeof(header), 1, f, path);
    for (int i = 0; i < V; i++) {
        unsigned char length = (unsigned char)lengths[i];
        fwrite_check(&length, 1, 1, f, path);
        fwrite_check(tokens[i], 1, length, f, path);
    }
    fclose(f);
}

static int test_tokenizer_utf8(void) {
    // "é" split over tokens 1 and 2, a control character, an invalid byte + a stray continuation
    const char *tokens[5] = {"Hi\n\t", "\xC3", "\xA9", "\x01", "\xFF\xA9"};
    const int lengths[5] = {4, 1, 1, 1, 2};
    char path[4200];
    work_path(path, sizeof(path), "tokenizer_v2.bin");
    write_tokenizer(path, 2, 5, 4, tokens, lengths);
    Tokenizer tok;
    tokenizer_init(&tok, path);
    CHECK(tok.vocab_size == 5 && tok.eot_token == 4, "V=%d eot=%d", tok.vocab_size, tok.eot_token);
    CHECK(tok.token_lengths[0] == 4 && memcmp(tok.token_bytes[0], "Hi\n\t", 4) == 0 &&
              tok.token_bytes[2][0] == 0xA9,
          "token bytes read wrongly");
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&text, &size);
    Utf8Printer printer;
    utf8_printer_init(&printer, mem);
    // é, control, invalid, text, a lead byte cut off by text, bad id, a lead byte left at the end
    const int sequence[] = {0, 1, 2, 3, 4, 0, 1, 0, 99, 1};
    for (int i = 0; i < 10; i++) tokenizer_print_token(&tok, &printer, sequence[i]);
    utf8_printer_flush(&printer);
    fclose(mem);
    const char *want = "Hi\n\t\xC3\xA9\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDHi\n\t\xEF\xBF\xBDHi\n\t"
                       "\xEF\xBF\xBD\xEF\xBF\xBD";
    int same = size == strlen(want) && memcmp(text, want, size) == 0;
    char shown[256] = "";
    for (size_t i = 0; i < size && i < 60; i++) {
        snprintf(shown + strlen(shown), sizeof(shown) - strlen(shown), "%02X ",
                 (unsigned char)text[i]);
    }
    free(text);
    tokenizer_free(&tok);
    CHECK(same, "printed %zu bytes: %s", size, shown);
    return 1;
}

static int test_tokenizer_v1_eot(void) {
    enum { V = 50257 };
    static const char *tokens[V];
    static int lengths[V];
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz";
    for (int i = 0; i < V; i++) {
        tokens[i] = &alphabet[i % 26];
        lengths[i] = 1;
    }
    char path[4200];
    work_path(path, sizeof(path), "tokenizer_v1.bin");
    write_tokenizer(path, 1, V, 0, tokens, lengths); // version 1: slot 3 is not read
    Tokenizer tok;
    tokenizer_init(&tok, path);
    CHECK(tok.vocab_size == V && tok.eot_token == 50256, "V=%d eot=%d", tok.vocab_size,
          tok.eot_token);
    CHECK(tok.token_bytes[50256][0] == 'a' + 50256 % 26, "last token byte %c",
          tok.token_bytes[50256][0]);
    tokenizer_free(&tok);
    return 1;
}

// ---------------------------------------------------------------------------------------------
// 7. Sampler

static const float sampler_logits[5] = {1.0f, 2.0f, 0.5f, 3.0f, -1.0f}; // argmax 3

static int test_sampler_argmax(void) {
    float work[5];
    uint64_t rng = 1337;
    CHECK(sample_token(sampler_logits, 5, 0.0f, 0, &rng, work) == 3, "temperature 0 not argmax");
    for (int i = 0; i < 1000; i++) {
        int t = sample_token(sampler_logits, 5, 1.0f, 1, &rng, work);
        CHECK(t == 3, "top_k=1 draw %d gave token %d", i, t);
    }
    return 1;
}

// Frequencies over 20000 draws are within 0.02 of the softmax of logits / temperature over the
// top_k largest logits (top_k <= 0: all).
static int frequencies_match(float temperature, int top_k) {
    double p[5], sum = 0.0;
    for (int i = 0; i < 5; i++) {
        int rank = 0;
        for (int j = 0; j < 5; j++) rank += sampler_logits[j] > sampler_logits[i];
        p[i] = top_k > 0 && rank >= top_k ? 0.0 : exp(sampler_logits[i] / temperature);
        sum += p[i];
    }
    int counts[5] = {0};
    float work[5];
    uint64_t rng = 42;
    for (int k = 0; k < 20000; k++)
        counts[sample_token(sampler_logits, 5, temperature, top_k, &rng, work)]++;
    for (int i = 0; i < 5; i++) {
        double freq = counts[i] / 20000.0;
        // sampling, not rounding: binomial sd sqrt(p (1 - p) / 20000) <= 0.0035, so 0.02 is >= 5.6
        // sd (the seeded draws are fixed); a wrong temperature or top_k +-1 moves some p by >= 0.09
        CHECK(fabs(freq - p[i] / sum) <= 0.02, "T=%g top_k=%d: token %d frequency %.4f, p=%.4f",
              (double)temperature, top_k, i, freq, p[i] / sum);
    }
    return 1;
}

static int test_sampler_frequencies(void) {
    return frequencies_match(1.0f, 0) && frequencies_match(2.0f, 0) && frequencies_match(1.0f, 2);
}

static int test_xorshift_reference(void) {
    // xorshift64* (>>12, <<25, >>27, * 0x2545F4914F6CDD1D, top 32 bits), as llm.c's random_u32;
    // expected values computed from that definition in Python
    const uint32_t want[3] = {989205090u, 818269915u, 1335155955u};
    uint64_t state = 1337;
    for (int i = 0; i < 3; i++) {
        uint32_t got = xorshift_u32(&state);
        CHECK(got == want[i], "output %d is %u, expected %u", i, got, want[i]);
    }
    CHECK(state == 0x3d2c1dcad58d5564ull, "state after 3 draws 0x%llx", (unsigned long long)state);
    return 1;
}

static int test_sampler_deterministic(void) {
    float work[5];
    uint64_t a = 7, b = 7, c = 8;
    int differs = 0;
    for (int k = 0; k < 200; k++) {
        int ta = sample_token(sampler_logits, 5, 1.0f, 0, &a, work);
        int tb = sample_token(sampler_logits, 5, 1.0f, 0, &b, work);
        int tc = sample_token(sampler_logits, 5, 1.0f, 0, &c, work);
        CHECK(ta == tb, "draw %d: %d vs %d with the same seed", k, ta, tb);
        differs |= ta != tc;
    }
    CHECK(differs, "seeds 7 and 8 give the same 200 tokens");
    return 1;
}

// ---------------------------------------------------------------------------------------------
// 8. Command line

static int test_cli_parse(void) {
    int batch = 4, seed = 0, steps = 42, val_every = 0, val_steps = 0;
    float lr = 1.0f, frac = 1.0f;
    const char *out_dir = "";
    CliOption options[] = {
        {'b', "batch-size", OPTION_INT, &batch, "batch"},
        {'l', "learning-rate", OPTION_FLOAT, &lr, "lr"},
        {'o', "output-dir", OPTION_STRING, &out_dir, "dir"},
        {0, "seed", OPTION_INT, &seed, "seed"},
        {'q', "final-fraction", OPTION_FLOAT, &frac, "fraction"},
        {'x', "max-steps", OPTION_INT, &steps, "steps"},
        {0, "val-every", OPTION_INT, &val_every, "every"},
        {'m', "val-max-steps", OPTION_INT, &val_steps, "val steps"},
    };
    char line[] = "prog -b 7 --learning-rate 3.14159e-4 -o /tmp/run --seed -5 -q 0.25 "
                  "--batch-size 9 --val-max-steps 11 --val-every 3";
    char *argv[32];
    int argc = 0;
    for (char *word = strtok(line, " "); word != NULL; word = strtok(NULL, " "))
        argv[argc++] = word;
    cli_parse(argc, argv, "test", options, 8);
    CHECK(batch == 9, "batch %d (last of -b 7, --batch-size 9)", batch);
    CHECK(val_every == 3 && val_steps == 11, "val-every %d val-max-steps %d", val_every, val_steps);
    CHECK(lr == 3.14159e-4f && frac == 0.25f, "lr %g frac %g", (double)lr, (double)frac);
    CHECK(strcmp(out_dir, "/tmp/run") == 0, "output dir '%s'", out_dir);
    CHECK(seed == -5, "seed %d", seed);
    CHECK(steps == 42, "unset option changed to %d", steps);
    return 1;
}

// ---------------------------------------------------------------------------------------------
// 9. Model files

static size_t file_bytes(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

// Number of entries in work_dir whose name contains ".tmp" (leftovers of atomic writes).
static int temp_files_left(void) {
    DIR *d = opendir(work_dir);
    int count = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) count += strstr(e->d_name, ".tmp") != NULL;
    if (d != NULL) closedir(d);
    return count;
}

// The file's checksum recomputed from its bytes as docs/formats.md describes it (the bytes after
// the header, then the header with slot 255 as 0); 1 if header[255] holds it.
static int file_checksum_matches(const char *path) {
    FILE *f = fopen_check(path, "rb");
    size_t size = file_size_check(f, path);
    unsigned char *bytes = (unsigned char *)malloc_check(size, "file bytes");
    fread_check(bytes, 1, size, f, path, "file");
    fclose(f);
    int32_t header[HEADER_INTS];
    memcpy(header, bytes, HEADER_BYTES);
    uint32_t stored = (uint32_t)header[255];
    header[255] = 0;
    uint32_t crc = crc32c_update_portable(0, bytes + HEADER_BYTES, size - HEADER_BYTES);
    crc = crc32c_update_portable(crc, header, HEADER_BYTES);
    free(bytes);
    return header[254] == CHECKSUM_CRC32C && crc == stored;
}

// Rewrites header slots 254..255 of path (0, 0: a file as llm.c writes it, without checksum).
static void set_checksum_slots(const char *path, int32_t kind, int32_t value) {
    FILE *f = fopen(path, "r+b");
    if (f == NULL) fatal("cannot open %s for update", path);
    int32_t slots[2] = {kind, value};
    fseek_check(f, 254 * 4, SEEK_SET, path);
    fwrite_check(slots, 4, 2, f, path);
    fclose(f);
}

static int test_crc32c(void) {
    // the standard check value, and RFC 3720's 32 zero bytes / 32 bytes 0xff test vectors
    uint32_t check = crc32c_update(0, "123456789", 9);
    CHECK(check == 0xE3069283u, "crc32c(\"123456789\") = 0x%08x, expected 0xe3069283", check);
    CHECK(crc32c_update_portable(0, "123456789", 9) == 0xE3069283u, "portable version differs");
    unsigned char zeros[32] = {0}, ones[32];
    memset(ones, 0xff, sizeof(ones));
    CHECK(crc32c_update(0, zeros, 32) == 0x8A9136AAu, "32 zero bytes: 0x%08x",
          crc32c_update(0, zeros, 32));
    CHECK(crc32c_update(0, ones, 32) == 0x62A8AB43u, "32 0xff bytes: 0x%08x",
          crc32c_update(0, ones, 32));
    // random bytes, every length and alignment up to 70, in one piece and continued in two
    unsigned char data[200];
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < sizeof(data); i++) data[i] = (unsigned char)xorshift_u32(&state);
    for (size_t offset = 0; offset < 9; offset++) {
        for (size_t n = 0; n <= 70; n++) {
            uint32_t whole = crc32c_update(0, data + offset, n);
            uint32_t portable = crc32c_update_portable(0, data + offset, n);
            uint32_t split = crc32c_update(crc32c_update(0, data + offset, n / 3),
                                           data + offset + n / 3, n - n / 3);
            CHECK(whole == portable && whole == split,
                  "offset %zu length %zu: 0x%08x, portable 0x%08x, in two pieces 0x%08x", offset, n,
                  whole, portable, split);
        }
    }
    // one flipped bit changes it
    uint32_t before = crc32c_update(0, data, sizeof(data));
    data[77] ^= 0x10;
    CHECK(crc32c_update(0, data, sizeof(data)) != before, "a flipped bit keeps the CRC");
    return 1;
}

static int test_size_checks(void) {
    size_t out = 0;
    CHECK(size_mul_ok(1ull << 31, 1ull << 32, &out) && out == 1ull << 63, "2^31 * 2^32");
    CHECK(!size_mul_ok(1ull << 32, 1ull << 32, &out), "2^32 * 2^32 does not overflow");
    CHECK(!size_mul_ok(SIZE_MAX / 3 + 1, 3, &out), "(max/3 + 1) * 3 does not overflow");
    CHECK(size_add_ok(SIZE_MAX - 1, 1, &out) && out == SIZE_MAX, "max-1 + 1");
    CHECK(!size_add_ok(SIZE_MAX, 1, &out), "max + 1 does not overflow");
    CHECK(size_mul_check(65536, 65536, "test") == 1ull << 32, "size_mul_check");
    const char *good[] = {"data", "tinyshakespeare", "tok-1.bin", "a.b"};
    const char *bad[] = {"", "*", "a*", "x?", "[ab]", "../x", "a/b", ".hidden", ".", "..", "a\\b"};
    for (int i = 0; i < 4; i++) {
        CHECK(file_name_problem(good[i]) == NULL, "'%s' refused: %s", good[i],
              file_name_problem(good[i]));
    }
    for (int i = 0; i < 11; i++) {
        CHECK(file_name_problem(bad[i]) != NULL, "'%s' accepted as a file name", bad[i]);
    }
    return 1;
}

// Model shapes beyond a cap are refused; at the caps every size still fits.
static int test_model_caps(void) {
    GPT2Config c;
    gpt2_config_from_descriptor("L=2,C=64,NH=4,V=1000,maxT=128", &c);
    CHECK(gpt2_config_problem(&c) == NULL, "a small model is refused");
    GPT2Config big = {GPT2_MAX_SEQ_LEN,
                      GPT2_MAX_VOCAB,
                      GPT2_MAX_VOCAB,
                      GPT2_MAX_LAYERS,
                      GPT2_MAX_HEADS,
                      GPT2_MAX_CHANNELS,
                      0,
                      0,
                      0,
                      0,
                      0.0f};
    CHECK(gpt2_config_problem(&big) == NULL, "the largest shape is refused: %s",
          gpt2_config_problem(&big));
    size_t n = gpt2_num_parameters(&big); // 12 L C^2 + ... ~ 5.4e13: no overflow
    CHECK(n > 12ull * GPT2_MAX_LAYERS * GPT2_MAX_CHANNELS * GPT2_MAX_CHANNELS, "%zu", n);
    int *fields[] = {&c.max_seq_len, &c.vocab_size, &c.num_layers, &c.num_heads, &c.channels};
    const int limits[] = {GPT2_MAX_SEQ_LEN, GPT2_MAX_VOCAB, GPT2_MAX_LAYERS, GPT2_MAX_HEADS,
                          GPT2_MAX_CHANNELS};
    for (int k = 0; k < 5; k++) {
        GPT2Config saved = c;
        *fields[k] = limits[k] + 1;
        const char *problem = gpt2_config_problem(&c);
        c = saved;
        CHECK(problem != NULL, "field %d above its cap accepted", k);
    }
    // llama at its caps: every parameter tensor and the total still fit 64 bits
    GPT2Config llama = big;
    llama.arch = MODEL_ARCH_LLAMA;
    llama.num_kv_heads = GPT2_MAX_HEADS;
    llama.ffn = LLAMA_MAX_FFN;
    llama.qknorm = 1;
    llama.rope_theta = (float)LLAMA_MAX_ROPE_THETA;
    CHECK(gpt2_config_problem(&llama) == NULL, "the largest llama shape is refused: %s",
          gpt2_config_problem(&llama));
    CHECK(gpt2_num_parameters(&llama) > 3ull * GPT2_MAX_LAYERS * LLAMA_MAX_FFN * GPT2_MAX_CHANNELS,
          "llama parameter count");
    llama.ffn = LLAMA_MAX_FFN + 1;
    CHECK(gpt2_config_problem(&llama) != NULL, "ffn above its cap accepted");
    return 1;
}

// The llama descriptor's defaults: KV = NH, rope_theta 10000, ffn the multiple of 64 nearest 8C/3.
static int test_llama_descriptor(void) {
    GPT2Config c;
    CHECK(gpt2_config_from_descriptor("arch=llama,L=2,C=64,NH=4,V=300,maxT=32", &c) == 1,
          "arch=llama not recognised");
    CHECK(c.arch == MODEL_ARCH_LLAMA && c.num_kv_heads == 4 && c.ffn == 192 && c.qknorm == 0 &&
              c.rope_theta == 10000.0f && c.padded_vocab_size == 384,
          "defaults: KV %d ffn %d qknorm %d theta %g Vp %d", c.num_kv_heads, c.ffn, c.qknorm,
          (double)c.rope_theta, c.padded_vocab_size);
    // 8C/3: 170.7 -> 192, 2048 -> 2048, 96 (a tie between 64 and 128) -> 128, 32 -> 64 (not 0)
    const int channels[] = {64, 768, 36, 12}, ffn[] = {192, 2048, 128, 64};
    for (int i = 0; i < 4; i++) {
        CHECK(llama_default_ffn(channels[i]) == ffn[i], "C=%d: ffn %d, expected %d", channels[i],
              llama_default_ffn(channels[i]), ffn[i]);
    }
    CHECK(gpt2_config_from_descriptor(
              "arch=llama,L=1,C=32,NH=4,KV=1,ffn=80,rope_theta=5e5,qknorm=1", &c) == 1 &&
              c.num_kv_heads == 1 && c.ffn == 80 && c.rope_theta == 500000.0f && c.qknorm == 1,
          "explicit llama fields");
    return 1;
}

// Versions 6/7: the llama fields in header[8..12], read back to the same config and parameters.
static int test_llama_model_round_trip(void) {
    GPT2Config c, back;
    gpt2_config_from_descriptor("arch=llama,L=1,C=32,NH=4,KV=2,V=100,maxT=16,qknorm=1", &c);
    size_t n = gpt2_num_parameters(&c);
    float *params = (float *)malloc_check(n * sizeof(float), "params");
    float *read = (float *)malloc_check(n * sizeof(float), "read");
    gpt2_init_params(&c, params, 77);
    for (int version = 3; version <= 5; version += 2) {
        char path[4200];
        work_path(path, sizeof(path), "llama.bin");
        model_write(path, &c, params, version); // 3 -> 6, 5 -> 7
        FILE *f = fopen_check(path, "rb");
        int32_t raw[HEADER_INTS];
        fread_check(raw, 4, HEADER_INTS, f, path, "header");
        int want_version = version == 3 ? 6 : 7;
        CHECK(raw[1] == want_version && raw[8] == 1 && raw[9] == 2 && raw[10] == c.ffn &&
                  raw[11] == 1 && raw[12] == float_to_int_bits(10000.0f),
              "v%d header[8..12] %d %d %d %d %d", raw[1], raw[8], raw[9], raw[10], raw[11],
              raw[12]);
        fseek_check(f, 0, SEEK_SET, path);
        int got_version = model_read_header(f, path, &back);
        CHECK(got_version == want_version && memcmp(&back, &c, sizeof(c)) == 0,
              "read back version %d, config differs", got_version);
        model_read_params(f, path, got_version, read, n);
        fclose(f);
        for (size_t i = 0; i < n; i++) {
            float want = version == 3 ? params[i] : bf16_to_float(float_to_bf16(params[i]));
            CHECK(bits_of(read[i]) == bits_of(want), "v%d parameter %zu", want_version, i);
        }
    }
    free(params);
    free(read);
    return 1;
}

// The generator's saved position: every state reached by drawing passes, out-of-table ones fail.
static int test_mt19937_state_check(void) {
    TorchGenerator gen;
    torch_manual_seed(&gen, 42);
    for (int draws = 0; draws < 1500; draws++) {
        const char *problem = mt19937_state_problem(&gen.mt);
        CHECK(problem == NULL, "after %d draws (left %d, next %u): %s", draws, gen.mt.left,
              gen.mt.next, problem);
        mt19937_u32(&gen.mt);
    }
    mt19937_state bad = gen.mt;
    bad.next = 624;
    bad.left = 2; // would read state[624]
    CHECK(mt19937_state_problem(&bad) != NULL, "next 624 with left 2 accepted");
    bad = gen.mt;
    bad.next = 0xFFFFFFF0u; // next + left wraps in 32 bits
    CHECK(mt19937_state_problem(&bad) != NULL, "next 0xFFFFFFF0 accepted");
    bad = gen.mt;
    bad.left = 0;
    CHECK(mt19937_state_problem(&bad) != NULL, "left 0 accepted");
    bad = gen.mt;
    bad.matrix_a[1] ^= 1;
    CHECK(mt19937_state_problem(&bad) != NULL, "a changed matrix_a accepted");
    return 1;
}

static int test_model_round_trip(void) {
    GPT2Config c, back;
    gpt2_config_from_descriptor("L=1,C=32,NH=2,V=100,maxT=16", &c);
    size_t n = gpt2_num_parameters(&c);
    float *params = (float *)malloc_check(n * sizeof(float), "params");
    float *read = (float *)malloc_check(n * sizeof(float), "read");
    gpt2_init_params(&c, params, 1234);
    CHECK(params[0] != 0.0f && params[100 * 32 - 1] != 0.0f && params[100 * 32] == 0.0f,
          "init: wte[0]=%g, last real row %g, padding %g", (double)params[0],
          (double)params[100 * 32 - 1], (double)params[100 * 32]);
    for (int version = 3; version <= 5; version += 2) {
        char path[4200];
        work_path(path, sizeof(path), version == 3 ? "model_v3.bin" : "model_v5.bin");
        model_write(path, &c, params, version);
        size_t bytes = file_bytes(path), want = 1024 + n * (version == 3 ? 4 : 2);
        CHECK(bytes == want, "v%d file is %zu bytes, expected %zu", version, bytes, want);
        CHECK(temp_files_left() == 0, "a .tmp file is left after writing v%d", version);
        FILE *f = fopen_check(path, "rb");
        int32_t raw[HEADER_INTS];
        fread_check(raw, 4, HEADER_INTS, f, path, "header");
        CHECK(raw[0] == 20240326 && raw[1] == version && raw[2] == 16 && raw[3] == 100 &&
                  raw[4] == 1 && raw[5] == 2 && raw[6] == 32 && raw[7] == 128,
              "v%d header %d %d %d %d %d %d %d %d", version, raw[0], raw[1], raw[2], raw[3], raw[4],
              raw[5], raw[6], raw[7]);
        for (int i = 8; i < CHECKSUM_KIND_SLOT; i++) {
            CHECK(raw[i] == 0, "v%d header slot %d is %d, unused slots must be 0", version, i,
                  raw[i]);
        }
        CHECK(file_checksum_matches(path),
              "v%d: header[254..255] = 0x%08x 0x%08x is not the "
              "CRC-32C of docs/formats.md",
              version, raw[254], raw[255]);
        fseek_check(f, 0, SEEK_SET, path);
        int got_version = model_read_header(f, path, &back);
        CHECK(got_version == version && memcmp(&back, &c, sizeof(c)) == 0,
              "read back version %d, config differs", got_version);
        model_read_params(f, path, version, read, n);
        fclose(f);
        // without checksum slots (as llm.c writes it) the same file loads the same
        set_checksum_slots(path, 0, 0);
        float *again = (float *)malloc_check(n * sizeof(float), "again");
        f = fopen_check(path, "rb");
        model_read_header(f, path, &back);
        model_read_params(f, path, version, again, n);
        fclose(f);
        int same = memcmp(again, read, n * sizeof(float)) == 0;
        free(again);
        CHECK(same, "v%d without checksum reads other parameters", version);
        for (size_t i = 0; i < n; i++) {
            float want_value = version == 3 ? params[i] : bf16_to_float(float_to_bf16(params[i]));
            CHECK(bits_of(read[i]) == bits_of(want_value), "v%d parameter %zu: %g, expected %g",
                  version, i, (double)read[i], (double)want_value);
            // bf16 keeps 8 significant bits: off by at most half an ulp, 2^-8 relative
            CHECK(fabsf(read[i] - params[i]) <= fabsf(params[i]) * 0x1p-8f,
                  "v%d parameter %zu: %g is too far from %g", version, i, (double)read[i],
                  (double)params[i]);
        }
    }
    free(params);
    free(read);
    return 1;
}

// ---------------------------------------------------------------------------------------------
// 10. Checkpoint state

static int test_state_round_trip(void) {
    const size_t n = 1000;
    float *m = (float *)malloc_check(3 * n * sizeof(float), "m");
    float *v = m + n, *master = m + 2 * n;
    float *got = (float *)malloc_check(3 * n * sizeof(float), "got");
    for (size_t i = 0; i < n; i++) {
        m[i] = sinf((float)i) * 1e-3f;
        v[i] = (float)i * 1e-7f + 1e-9f;
        master[i] = cosf((float)i);
    }
    DataLoader a, b;
    open_loader(&a, 0, 1, 0, 0);
    for (int k = 0; k < 70; k++) dataloader_next_batch(&a);
    TrainState saved = {1, 0, 0, 1, 70, 0x123456789ABCDEF0ull, 0x0FEDCBA987654321ull, n};
    char path[4200];
    work_path(path, sizeof(path), "state_plain.bin");
    state_write(path, &saved, m, v, master, &a);
    CHECK(file_bytes(path) == 1024 + 3 * n * 4, "state file is %zu bytes", file_bytes(path));
    CHECK(temp_files_left() == 0, "a .tmp file is left after state_write");
    // header layout of docs/formats.md (llm.c's slots plus our parameter count), zeros elsewhere
    int32_t raw[HEADER_INTS];
    FILE *f = fopen_check(path, "rb");
    fread_check(raw, 4, HEADER_INTS, f, path, "header");
    fclose(f);
    // magic, version, processes, rank, master weights, shuffle; step
    int32_t want[HEADER_INTS] = {20240527, 1, 1, 0, 1, 0};
    want[10] = 70;
    want[20] = (int32_t)0x9ABCDEF0, want[21] = 0x12345678; // rng_state, low word first
    want[22] = (int32_t)0x87654321, want[23] = 0x0FEDCBA9; // rng_state_last_update
    want[30] = 1, want[32] = 8;                            // loader shard, sample
    want[40] = 1000;                                       // number of parameters
    want[254] = CHECKSUM_CRC32C, want[255] = raw[255];     // checked below
    CHECK(file_checksum_matches(path),
          "header[254..255] = 0x%08x 0x%08x is not the CRC-32C of "
          "docs/formats.md",
          raw[254], raw[255]);
    for (int i = 0; i < HEADER_INTS; i++) {
        CHECK(raw[i] == want[i], "header slot %d is %d, expected %d", i, raw[i], want[i]);
    }
    open_loader(&b, 0, 1, 0, 0);
    TrainState loaded;
    memset(&loaded, 0, sizeof(loaded));
    state_read(path, &loaded, n, got, got + n, got + 2 * n, &b, NULL);
    CHECK(memcmp(got, m, 3 * n * sizeof(float)) == 0, "m, v or master weights differ");
    CHECK(loaded.step == 70 && loaded.rng_state == saved.rng_state &&
              loaded.rng_state_last_update == saved.rng_state_last_update &&
              loaded.use_master_weights == 1 && loaded.num_parameters == n,
          "step %d rng %llx/%llx master %d", loaded.step, (unsigned long long)loaded.rng_state,
          (unsigned long long)loaded.rng_state_last_update, loaded.use_master_weights);
    CHECK(b.current_shard_idx == 1 && b.current_sample_idx == 8,
          "loader at shard %zu sample %zu, expected 1, 8", b.current_shard_idx,
          b.current_sample_idx);
    if (!same_batches(&a, &b, 50)) return 0; // crosses the wrap to the first shard
    dataloader_free(&a);
    dataloader_free(&b);
    free(m);
    free(got);
    return 1;
}

static int test_state_shuffled(void) {
    const size_t n = 10;
    float m[10], v[10], m2[10], v2[10];
    for (size_t i = 0; i < n; i++) {
        m[i] = (float)i + 0.5f;
        v[i] = 1.0f / ((float)i + 1.0f);
    }
    DataLoader a, b;
    open_loader(&a, 0, 1, 1, 7);
    for (int k = 0; k < 70; k++) dataloader_next_batch(&a);
    TrainState saved = {1, 0, 0, 0, 70, 99, 98, n};
    char path[4200];
    work_path(path, sizeof(path), "state_shuffled.bin");
    state_write(path, &saved, m, v, NULL, &a);
    // another seed (whose shard order differs from seed 7's): only the restored permutations and
    // generator can make the batches agree
    open_loader(&b, 0, 1, 1, 2);
    CHECK(memcmp(a.shard_indices, b.shard_indices, 2 * sizeof(int)) != 0,
          "seeds 7 and 2 give the same shard order");
    CHECK(file_checksum_matches(path), "shuffled state: header[255] is not its CRC-32C");
    set_checksum_slots(path, 0, 0); // as llm.c writes it: loads without the check
    TrainState loaded;
    state_read(path, &loaded, n, m2, v2, NULL, &b, NULL);
    CHECK(memcmp(m, m2, sizeof(m)) == 0 && memcmp(v, v2, sizeof(v)) == 0, "m or v differ");
    CHECK(memcmp(a.shard_indices, b.shard_indices, 2 * sizeof(int)) == 0,
          "shard order not restored");
    if (!same_batches(&a, &b, 150)) return 0; // past the end of the epoch: a reshuffle
    dataloader_free(&a);
    dataloader_free(&b);
    return 1;
}

// -nk/-nm housekeeping deletes only names that are exactly our checkpoint files' names.
static int test_checkpoint_file_names(void) {
    const struct {
        const char *name;
        int step;
    } names[] = {
        {"DONE_00000012", 12},
        {"model_00000012.bin", 12},
        {"state_00000012_00003.bin", 12},
        {"DONE_123456789", 123456789},
        {"DONE_0000012", -1},
        {"DONE_00000012x", -1},
        {"DONE_00000012.tmp77", -1},
        {"model_00000012.bin.bak", -1},
        {"model_12.bin", -1},
        {"state_00000012_3.bin", -1},
        {"state_00000012.bin", -1},
        {"model_+0000012.bin", -1},
        {"DONE_99999999999", -1},
        {"main.log", -1},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int got = checkpoint_file_step(names[i].name);
        CHECK(got == names[i].step, "%s: step %d, expected %d", names[i].name, got, names[i].step);
    }
    return 1;
}

static int test_find_latest(void) {
    char dir[4200], path[4300];
    work_path(dir, sizeof(dir), "ckpt");
    make_dir_check(dir);
    clear_dir(dir);
    CHECK(checkpoint_find_latest(dir) == -1, "empty directory gives %d",
          checkpoint_find_latest(dir));
    const int steps[] = {3, 12, 7};
    for (int i = 0; i < 3; i++) checkpoint_mark_done(dir, steps[i]);
    const char *decoys[] = {"DONE_00000003.tmp123", "DONE_00000040x", "model_00000050.bin",
                            "state_00000060_00000.bin"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, decoys[i]);
        fclose(fopen_check(path, "wb"));
    }
    snprintf(path, sizeof(path), "%s/DONE_00000012", dir);
    CHECK(file_exists(path), "checkpoint_mark_done did not create DONE_00000012");
    int latest = checkpoint_find_latest(dir);
    CHECK(latest == 12, "latest step %d, expected 12", latest);
    snprintf(path, sizeof(path), "%s/does_not_exist", dir);
    CHECK(checkpoint_find_latest(path) == -1, "missing directory does not give -1");
    return 1;
}

// ---------------------------------------------------------------------------------------------

// The rounding bound for C[i][j] of sgemm against matmul_reference. Both add the K products to C's
// old value (accumulate) in the same order, k = 0..K-1 (sgemm's KC blocks carry on from C in
// fp32); a kernel differs only in using FMA (the portable one does not: built as C11, without
// contraction, it equals the reference bit for bit). Running error bound of recursive summation
// (Higham, Accuracy and Stability 4.2): each add is off by <= u |its result| and each rounded
// product by <= u |a b|, u = 2^-24, so |result - exact| <= u sum_k |s_k| (+ u sum_k |a_k b_k| with
// product rounding), s_k the partial sums. Two results: <= u (2 sum|s_k| + sum|a_k b_k|), with 1%
// for the FMA chain's partial sums differing from the reference's (by K u of them at most, K u <
// 1e-4 here). Independent of the kernel, CPU and thread count.
static float sgemm_error_bound(const float *a, size_t a_row, size_t a_col, const float *b,
                               size_t b_row, size_t b_col, float c_old, int i, int j, int K,
                               int accumulate) {
    float sum = accumulate ? c_old : 0.0f;
    double partial_sums = 0.0, products = 0.0;
    for (int k = 0; k < K; k++) {
        float product =
            a[(size_t)i * a_row + (size_t)k * a_col] * b[(size_t)k * b_row + (size_t)j * b_col];
        sum += product;
        partial_sums += fabsf(sum);
        products += fabsf(product);
    }
    return (float)(1.01 * 0x1p-24 * (2.0 * partial_sums + products));
}

// How many elements of got (M,N) lie outside sgemm_error_bound of want (the reference for A, B and
// the old C c0); the first one is described in detail.
static int sgemm_outside_bound(const float *got, const float *want, const float *a,
                               const size_t *lay, const float *b, const float *c0, int M, int N,
                               int K, int accumulate, const char *kernel, int layout) {
    int outside = 0;
    for (int i = 0; i < M * N; i++) {
        float bound = sgemm_error_bound(a, lay[0], lay[1], b, lay[2], lay[3], c0[i], i / N, i % N,
                                        K, accumulate);
        if (!(fabsf(got[i] - want[i]) <= bound) && outside++ == 0) {
            snprintf(detail, sizeof(detail),
                     "%s, %dx%dx%d layout %d acc %d: C[%d] = %.7g, reference %.7g, bound %.2g",
                     kernel, M, N, K, layout, accumulate, i, (double)got[i], (double)want[i],
                     (double)bound);
        }
    }
    return outside;
}

// sgemm against matmul_reference for every kernel this CPU has: the trainer's three layouts
// (forward: B = W^T; backward: B plain; weight gradient: A = dout^T), odd sizes that leave
// partial tiles, K across several KC blocks, accumulation, and bit-identical across thread counts.
// planted = 1: sgemm runs with K - 1 (the last product left out, an off-by-one), which must fall
// outside the bound somewhere for every kernel, shape, layout and accumulation.
static int sgemm_against_reference(int planted) {
    SgemmKernel kernels[3];
    int num_kernels = sgemm_available_kernels(kernels);
    // {400, 70, 50}: M much larger than N, so threads split C by rows (the dW products)
    const int shapes[][3] = {{37, 83, 401}, {6, 16, 1}, {64, 130, 768}, {5, 7, 3}, {400, 70, 50}};
    TorchGenerator gen;
    torch_manual_seed(&gen, 7);
    for (int s = 0; s < 5; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *a = (float *)malloc_check((size_t)M * K * sizeof(float), "a");
        float *b = (float *)malloc_check((size_t)K * N * sizeof(float), "b");
        float *c0 = (float *)malloc_check((size_t)M * N * sizeof(float), "c0");
        float *want = (float *)malloc_check((size_t)M * N * sizeof(float), "want");
        float *got = (float *)malloc_check((size_t)M * N * sizeof(float), "got");
        float *got1 = (float *)malloc_check((size_t)M * N * sizeof(float), "got1");
        torch_normal_(&gen, a, (size_t)M * K, 0.0, 1.0);
        torch_normal_(&gen, b, (size_t)K * N, 0.0, 1.0);
        torch_normal_(&gen, c0, (size_t)M * N, 0.0, 1.0);
        // layout: A(i,k) = a[i*a_row + k*a_col], B(k,j) = b[k*b_row + j*b_col]
        const size_t layouts[3][4] = {{K, 1, 1, K}, {K, 1, N, 1}, {1, M, N, 1}};
        for (int kn = 0; kn < num_kernels; kn++) {
            for (int l = 0; l < 3; l++) {
                for (int accumulate = 0; accumulate < 2; accumulate++) {
                    const size_t *lay = layouts[l];
                    memcpy(want, c0, (size_t)M * N * sizeof(float));
                    memcpy(got, c0, (size_t)M * N * sizeof(float));
                    memcpy(got1, c0, (size_t)M * N * sizeof(float));
                    matmul_reference(want, N, a, lay[0], lay[1], b, lay[2], lay[3], M, N, K,
                                     accumulate);
                    sgemm_with_kernel(kernels[kn], got, N, a, lay[0], lay[1], b, lay[2], lay[3], M,
                                      N, K - planted, accumulate);
                    if (planted) {
                        int outside = sgemm_outside_bound(got, want, a, lay, b, c0, M, N, K,
                                                          accumulate, kernels[kn].name, l);
                        CHECK(outside > 0,
                              "%s, %dx%dx%d layout %d acc %d: the last product left out, yet every "
                              "element is within the bound",
                              kernels[kn].name, M, N, K, l, accumulate);
                        continue;
                    }
#ifdef _OPENMP
                    // another thread count: 1, or 3 (a split of C in rows or columns)
                    int threads = omp_get_max_threads();
                    omp_set_num_threads(threads == 1 ? 3 : 1);
#endif
                    sgemm_with_kernel(kernels[kn], got1, N, a, lay[0], lay[1], b, lay[2], lay[3], M,
                                      N, K, accumulate);
#ifdef _OPENMP
                    omp_set_num_threads(threads);
#endif
                    if (sgemm_outside_bound(got, want, a, lay, b, c0, M, N, K, accumulate,
                                            kernels[kn].name, l) > 0) {
                        return 0; // detail says which element
                    }
                    for (int i = 0; i < M * N; i++) {
                        // bit-exact by design: the split decides who computes C[i], not its order
                        CHECK(got[i] == got1[i], "%s, %dx%dx%d: results depend on thread count",
                              kernels[kn].name, M, N, K);
                    }
                }
            }
        }
        free(a), free(b), free(c0), free(want), free(got), free(got1);
    }
    return 1;
}

static int test_sgemm_kernels(void) {
    return sgemm_against_reference(0);
}

static int test_sgemm_planted(void) {
    return sgemm_against_reference(1);
}

// ---------------------------------------------------------------------------------------------
// 11. Guards against divergence (llmc/divergence.h, llmc/fastmath.h)

// NaN in, NaN out (tests/test_divergence.sh also runs this under UBSan: no float-to-int cast of
// NaN); infinities clamp to the finite ends.
static int test_fastmath_nan(void) {
    volatile float nan_in = NAN, inf_in = INFINITY;
    CHECK(isnan(exp_approx(nan_in)), "exp_approx(NaN) = %g", exp_approx(nan_in));
    CHECK(isnan(tanh_approx(nan_in)), "tanh_approx(NaN) = %g", tanh_approx(nan_in));
    CHECK(isnan(tanh_approx(-nan_in)), "tanh_approx(-NaN) = %g", tanh_approx(-nan_in));
    CHECK(isfinite(exp_approx(inf_in)) && exp_approx(-inf_in) < 1e-37f,
          "exp_approx(+-inf) = %g, %g", exp_approx(inf_in), exp_approx(-inf_in));
    CHECK(tanh_approx(inf_in) == 1.0f && tanh_approx(-inf_in) == -1.0f, "tanh_approx(+-inf)");
    uint64_t rng = 77;
    for (int i = 0; i < 1000; i++) { // still accurate on random finite inputs
        float x = (xorshift_f32(&rng) - 0.5f) * 40.0f;
        float want = expf(x), got = exp_approx(x);
        CHECK(fabsf(got - want) <= 1e-6f * want, "exp_approx(%g) = %g, expf %g", x, got, want);
    }
    return 1;
}

static int test_first_non_finite(void) {
    const size_t n = 10000; // several of the scan's chunks
    float *values = (float *)malloc_check(n * sizeof(float), "values");
    uint64_t rng = 5;
    for (size_t i = 0; i < n; i++) values[i] = (xorshift_f32(&rng) - 0.5f) * 3e38f;
    CHECK(first_non_finite(values, n) == n, "finite values: found one at %zu",
          first_non_finite(values, n));
    const float planted[3] = {NAN, INFINITY, -INFINITY};
    const size_t where[3] = {9999, 4096, 17};
    for (int k = 0; k < 3; k++) {
        size_t later = where[k] + 1 + (n - 1 - where[k]) / 2; // does not hide the first
        float saved = values[where[k]], saved_later = later < n ? values[later] : 0.0f;
        values[where[k]] = planted[k];
        if (later < n) values[later] = planted[k];
        CHECK(first_non_finite(values, n) == where[k], "%g at %zu: found at %zu",
              (double)planted[k], where[k], first_non_finite(values, n));
        values[where[k]] = saved;
        if (later < n) values[later] = saved_later;
    }
    CheckedTensor tensors[2] = {{"AdamW m", values, n}, {"AdamW v", values, 100}};
    char problem[256];
    CHECK(!tensors_find_non_finite(tensors, 2, problem, sizeof(problem)), "finite tensors flagged");
    values[42] = NAN;
    tensors[0].count = 40; // only v reaches element 42
    CHECK(tensors_find_non_finite(tensors, 2, problem, sizeof(problem)) &&
              strcmp(problem, "AdamW v[42]: expected a finite value, found nan") == 0,
          "problem: '%s'", problem);
    free(values);
    return 1;
}

// Fills a detector's windows with random losses around 3 and norms around 1.
static void fill_detector(OutlierDetector *d, uint64_t *rng, int steps) {
    for (int i = 0; i < steps; i++) {
        OutlierVerdict v = outlier_detector_judge(d, 3.0f + 0.1f * xorshift_f32(rng),
                                                  1.0f + 0.05f * xorshift_f32(rng));
        (void)v;
    }
}

static int test_outlier_detector(void) {
    OutlierDetector d;
    outlier_detector_init(&d, 16, 5.0f, 5.0f);
    uint64_t rng = 11;
    for (int i = 0; i < 16; i++) { // no verdict while the windows fill, even on a spike
        OutlierVerdict v =
            outlier_detector_judge(&d, i == 9 ? 100.0f : 3.0f + 0.1f * xorshift_f32(&rng),
                                   1.0f + 0.05f * xorshift_f32(&rng));
        CHECK(isnan(v.loss_z) && !v.skip_loss && !v.skip_norm, "step %d judged too early", i);
    }
    fill_detector(&d, &rng, 16); // the early spike has left the window
    // z-score against the window, computed here directly
    double sum = 0.0, squares = 0.0;
    for (int i = 0; i < 16; i++) sum += d.history.loss.values[i];
    for (int i = 0; i < 16; i++) {
        double diff = d.history.loss.values[i] - sum / 16;
        squares += diff * diff;
    }
    double want = ((double)3.3f - sum / 16) / sqrt(squares / 16);
    OutlierVerdict v = outlier_detector_judge(&d, 3.3f, 1.0f);
    CHECK(fabs(v.loss_z - want) < 1e-9 && want > 5.0, "z %g, expected %g (> 5)", v.loss_z, want);
    CHECK(v.skip_loss && !v.skip_norm, "a loss spike: skip_loss %d skip_norm %d", v.skip_loss,
          v.skip_norm);
    CHECK(d.history.loss.count == 16 && d.history.loss.values[15] != 3.3f &&
              d.history.norm.values[15] == 1.0f,
          "the spike entered the loss window, or the norm was left out");
    // a lasting change: the first OUTLIER_ADMIT_AFTER spikes in a row stay out, later ones enter
    // and the window learns the new level (here the 4th 10.0 in a row is no longer a spike)
    for (int k = 2; k <= 3; k++) {
        v = outlier_detector_judge(&d, 10.0f, 1.0f);
        CHECK(v.skip_loss && d.history.loss.outliers_in_a_row == k,
              "spike %d: skip %d, %d in a row", k, v.skip_loss, d.history.loss.outliers_in_a_row);
        int admitted = d.history.loss.values[15] == 10.0f;
        CHECK(admitted == (k > OUTLIER_ADMIT_AFTER), "spike %d in a row admitted: %d", k, admitted);
    }
    v = outlier_detector_judge(&d, 10.0f, 1.0f);
    CHECK(!v.skip_loss && d.history.loss.outliers_in_a_row == 0, "4th: z %g, skipped", v.loss_z);
    v = outlier_detector_judge(&d, 3.05f, 30.0f); // a norm spike alone
    CHECK(!v.skip_loss && v.skip_norm && d.history.loss.outliers_in_a_row == 0,
          "norm spike: skip_loss %d skip_norm %d", v.skip_loss, v.skip_norm);
    OutlierDetector off;
    outlier_detector_init(&off, 16, 0.0f, 0.0f); // thresholds 0: never skips
    fill_detector(&off, &rng, 20);
    v = outlier_detector_judge(&off, 1e6f, 1e6f);
    CHECK(!v.skip_loss && !v.skip_norm && v.loss_z > 5.0, "detector off skipped (z %g)", v.loss_z);
    // a resumed run with a smaller window keeps the newest values
    OutlierDetector resumed;
    outlier_detector_init(&resumed, 8, 5.0f, 5.0f);
    outlier_detector_restore(&resumed, &d.history);
    CHECK(resumed.history.loss.count == 8 &&
              memcmp(resumed.history.loss.values, d.history.loss.values + 8, 8 * sizeof(float)) ==
                  0,
          "restore into a window of 8 kept %d values", resumed.history.loss.count);
    return 1;
}

// The detector's history rides in the state file after llm.c's fields (docs/formats.md).
static int test_state_outlier_history(void) {
    const size_t n = 10;
    float m[10], v[10], m2[10], v2[10];
    uint64_t rng = 3;
    for (size_t i = 0; i < n; i++) {
        m[i] = xorshift_f32(&rng);
        v[i] = xorshift_f32(&rng);
    }
    DataLoader a, b;
    open_loader(&a, 0, 1, 0, 0);
    TrainState saved = {1, 0, 0, 0, 12, 99, 98, n};
    OutlierDetector d;
    outlier_detector_init(&d, 16, 5.0f, 5.0f);
    fill_detector(&d, &rng, 20);
    d.history.loss.outliers_in_a_row = 2;
    d.history.norm.outliers_in_a_row = 1;
    char path[4200];
    work_path(path, sizeof(path), "state_outliers.bin");
    state_write_with_outliers(path, &saved, m, v, NULL, &a, &d.history);
    CHECK(file_bytes(path) == 1024 + 2 * n * 4 + 2 * 16 * 4, "state file is %zu bytes",
          file_bytes(path));
    int32_t raw[HEADER_INTS];
    FILE *f = fopen_check(path, "rb");
    fread_check(raw, 4, HEADER_INTS, f, path, "header");
    float tail[32];
    fseek_check(f, (long)(1024 + 2 * n * 4), SEEK_SET, path);
    fread_check(tail, 4, 32, f, path, "history");
    fclose(f);
    CHECK(raw[50] == 16 && raw[51] == 2 && raw[52] == 1, "header[50..52] = %d %d %d", raw[50],
          raw[51], raw[52]);
    CHECK(memcmp(tail, d.history.loss.values, 16 * 4) == 0 &&
              memcmp(tail + 16, d.history.norm.values, 16 * 4) == 0,
          "losses then norms, oldest first, after the moments");
    open_loader(&b, 0, 1, 0, 0);
    TrainState loaded;
    OutlierHistory history;
    state_read_with_outliers(path, &loaded, n, m2, v2, NULL, &b, NULL, &history);
    CHECK(memcmp(&history, &d.history, sizeof(history)) == 0, "history differs");
    CHECK(memcmp(m, m2, sizeof(m)) == 0 && memcmp(v, v2, sizeof(v)) == 0, "m or v differ");
    dataloader_free(&b);
    open_loader(&b, 0, 1, 0, 0);
    state_read(path, &loaded, n, m2, v2, NULL, &b, NULL); // a reader without history skips it
    CHECK(loaded.step == 12, "step %d after reading past the history", loaded.step);
    dataloader_free(&a);
    dataloader_free(&b);
    return 1;
}

// Shapes whose Muon ranges at P=4 tests/test_muon.sh trains: the llama's fcw (131072) is more
// than twice S=66328, so the cuts 2S and 3S both move to its end and rank 2's range is empty;
// the GPT-2's wte+wpe (68096) hold ranks 0 and 1, which own no Muon matrix.
#define ZERO_EMPTY_RANGE_MODEL "arch=llama,L=1,C=32,NH=4,KV=2,V=1000,maxT=64,ffn=2048"
#define ZERO_NO_MATRIX_MODEL "L=1,C=64,NH=4,V=1000,maxT=64"

// ZeRO-1's ranges (llmc/zero_shards.h): with AdamW r*S; with Muon every matrix on exactly one
// rank, the ranges tiling [0, padded) in order, each within one matrix of S.
static int test_zero_shard_ranges(void) {
    const char *models[] = {"d12", "L=2,C=64,NH=4,V=1000,maxT=64",
                            "arch=llama,L=3,C=128,NH=4,KV=2,V=1000,maxT=64", ZERO_EMPTY_RANGE_MODEL,
                            ZERO_NO_MATRIX_MODEL};
    const int counts[] = {1, 2, 3, 4, 8, 64};
    const int num_models = sizeof(models) / sizeof(models[0]);
    const int num_counts = sizeof(counts) / sizeof(counts[0]);
    for (int m = 0; m < num_models; m++) {
        GPT2Config config;
        CHECK(gpt2_config_from_descriptor(models[m], &config) == 1, "%s", models[m]);
        size_t n = gpt2_num_parameters(&config), largest = 0;
        int total_matrices = 0;
        for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
            BlockMatrixShape shape;
            if (!gpt2_block_matrix_shape(&config, k, &shape)) continue;
            total_matrices += shape.layers;
            size_t size = (size_t)shape.rows * shape.cols;
            if (size > largest) largest = size;
        }
        for (int c = 0; c < num_counts; c++) {
            int P = counts[c];
            size_t padded = (n + P - 1) / P * P, S = padded / P, offsets[65];
            zero_shard_ranges(&config, padded, P, 0, offsets);
            for (int r = 0; r <= P; r++) {
                CHECK(offsets[r] == (size_t)r * S, "%s P=%d adamw: rank %d starts at %zu",
                      models[m], P, r, offsets[r]);
            }
            zero_shard_ranges(&config, padded, P, 1, offsets);
            CHECK(offsets[0] == 0 && offsets[P] == padded, "%s P=%d: not [0, padded)", models[m],
                  P);
            int owned = 0;
            for (int r = 0; r < P; r++) {
                CHECK(offsets[r] <= offsets[r + 1], "%s P=%d: rank %d's range is negative",
                      models[m], P, r);
                size_t begin = offsets[r], inside_begin, inside_end, elements;
                CHECK(r == 0 ||
                          !zero_shard_matrix_around(&config, begin, &inside_begin, &inside_end),
                      "%s P=%d: rank %d starts inside a matrix", models[m], P, r);
                size_t moved =
                    begin > (size_t)r * S ? begin - (size_t)r * S : (size_t)r * S - begin;
                CHECK(2 * moved <= largest, "%s P=%d: cut %d moved by %zu (largest matrix %zu)",
                      models[m], P, r, moved, largest);
                int matrices;
                zero_shard_muon_matrices(&config, begin, offsets[r + 1], &matrices, &elements);
                owned += matrices;
            }
            CHECK(owned == total_matrices, "%s P=%d: %d of %d matrices owned", models[m], P, owned,
                  total_matrices);
        }
    }
    // the two edge cases at P=4: an empty range, and non-empty ranges without a Muon matrix
    GPT2Config config;
    size_t offsets[5], elements;
    int matrices, empty = -1, without_matrix = 0;
    gpt2_config_from_descriptor(ZERO_EMPTY_RANGE_MODEL, &config);
    zero_shard_ranges(&config, gpt2_num_parameters(&config), 4, 1, offsets); // n = 4 * 66328
    for (int r = 0; r < 4; r++) {
        if (offsets[r] == offsets[r + 1]) empty = r;
    }
    CHECK(empty == 2 && offsets[2] == 166976,
          "%s P=4: rank %d empty at %zu, expected rank 2 at "
          "166976",
          ZERO_EMPTY_RANGE_MODEL, empty, offsets[2]);
    gpt2_config_from_descriptor(ZERO_NO_MATRIX_MODEL, &config);
    zero_shard_ranges(&config, gpt2_num_parameters(&config), 4, 1, offsets); // n = 4 * 29936
    for (int r = 0; r < 4; r++) {
        zero_shard_muon_matrices(&config, offsets[r], offsets[r + 1], &matrices, &elements);
        if (offsets[r] < offsets[r + 1] && matrices == 0) without_matrix++;
    }
    CHECK(without_matrix == 2, "%s P=4: %d non-empty ranges without a Muon matrix, expected 2",
          ZERO_NO_MATRIX_MODEL, without_matrix);
    // planted: a cut inside fcw of layer 0 is seen (d12: wte, wpe, ln1, qkvw, ...)
    GPT2Config d12;
    gpt2_config_from_descriptor("d12", &d12);
    size_t sizes[NUM_PARAMETER_TENSORS], fcw = 0, begin, end;
    gpt2_parameter_sizes(&d12, sizes);
    for (int k = 0; k < 10; k++) fcw += sizes[k];
    CHECK(zero_shard_matrix_around(&d12, fcw + 5, &begin, &end) && begin == fcw &&
              end == fcw + 4 * 768 * 768,
          "a cut inside d12's fcw[0] is not found");
    CHECK(!zero_shard_matrix_around(&d12, fcw, &begin, &end), "fcw[0]'s start counted as inside");
    return 1;
}

int main(int argc, char **argv) {
    const char *base = argc > 1 ? argv[1] : "/tmp";
    snprintf(work_dir, sizeof(work_dir), "%s/test_units", base);
    make_dir_check(work_dir);
    clear_dir(work_dir);
    write_test_shards();

    run_check("mt19937 seed 5489 gives the reference outputs", test_mt19937_reference);
    run_check("torch uniform_ seed 42 bit-exact", test_torch_uniform);
    run_check("torch normal_ n=20 (blocks of 16, redrawn tail) bit-exact", test_torch_normal_20);
    run_check("torch normal_ n=5 (double path) bit-exact", test_torch_normal_5);
    run_check("torch normal_ n=21 (partial last block), std 1 and 0.02, bit-exact",
              test_torch_normal_21);
    run_check("bf16 rounds to nearest even", test_bf16_rounding);
    run_check("bf16 keeps NaN, round-trips exact values", test_bf16_nan_and_inverse);
    run_check("descriptors d12, gpt2:d24, llm.c's d60..d84 and gpt3:cN, custom; paths are not "
              "descriptors",
              test_descriptors);
    run_check("d12 has 124475904 parameters", test_num_parameters);
    run_check("lr cosine with warmup", test_schedule_cosine);
    run_check("lr linear", test_schedule_linear);
    run_check("lr constant", test_schedule_constant);
    run_check("lr wsd and schedule names", test_schedule_wsd);
    run_check("loader: consecutive windows, targets shifted by one", test_loader_windows);
    run_check("loader: next shard, then wrap to the first", test_loader_shards_and_wrap);
    run_check("loader: 2 ranks read disjoint windows covering every sample", test_loader_two_ranks);
    run_check("loader: shuffled epochs cover each sample once, seeded", test_loader_shuffle);
    run_check("loader: 3 shuffled ranks never read the same window, together cover the epoch",
              test_loader_three_ranks_shuffled);
    run_check("loader: resume continues with the same batches", test_loader_resume);
    run_check("loader: uint32 shard", test_loader_uint32);
    run_check("tokenizer v2 + UTF-8 printer output bytes", test_tokenizer_utf8);
    run_check("tokenizer v1 has eot 50256", test_tokenizer_v1_eot);
    run_check("sampler: temperature 0 and top_k=1 give argmax", test_sampler_argmax);
    run_check("sampler: frequencies within 0.02 of softmax", test_sampler_frequencies);
    run_check("sgemm: every kernel here matches matmul_reference in all layouts",
              test_sgemm_kernels);
    run_check("sgemm: the bound catches a planted error (the last product left out) everywhere",
              test_sgemm_planted);
    run_check("xorshift64* reference outputs", test_xorshift_reference);
    run_check("sampler: deterministic per seed", test_sampler_deterministic);
    run_check("cli: short and long flags fill int, float, string", test_cli_parse);
    run_check("CRC-32C: check value, RFC 3720 vectors, portable == hardware, continued",
              test_crc32c);
    run_check("overflow-checked sizes; file names without '/', glob characters, leading '.'",
              test_size_checks);
    run_check("model shape caps: the largest shape fits 64 bits, one more is refused",
              test_model_caps);
    run_check("llama descriptor: defaults (KV, ffn nearest 8C/3, rope_theta) and explicit fields",
              test_llama_descriptor);
    run_check("llama model file v6/v7 round trip: header[8..12], config, parameters",
              test_llama_model_round_trip);
    run_check("mt19937 saved state: every reachable position passes, out-of-table ones fail",
              test_mt19937_state_check);
    run_check("model file v3/v5 round trip, size, checksum, atomic write; loads without checksum",
              test_model_round_trip);
    run_check("state file round trip (m, v, master, step, rng, loader)", test_state_round_trip);
    run_check("state file restores a shuffled loader exactly", test_state_shuffled);
    run_check("checkpoint_find_latest picks the newest DONE marker", test_find_latest);
    run_check("-nk housekeeping: only our exact checkpoint names give a step",
              test_checkpoint_file_names);
    run_check("fastmath: exp/tanh of NaN are NaN, of +-inf finite", test_fastmath_nan);
    run_check("first_non_finite finds the first NaN/inf in any chunk", test_first_non_finite);
    run_check("outlier detector: z-score, skip, spikes kept out then admitted, off, restore",
              test_outlier_detector);
    run_check("state file keeps the outlier detector's history (header[50..52], after the loader)",
              test_state_outlier_history);
    run_check("ZeRO-1 ranges: equal with AdamW; with Muon each matrix on one rank, cuts within a "
              "matrix of r*S; an empty range and ranges without a matrix at P=4",
              test_zero_shard_ranges);

    printf("%d passed, %d failed\n", num_passed, num_failed);
    return num_failed == 0 ? 0 : 1;
}
