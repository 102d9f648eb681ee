// The training flags shared by the CPU and CUDA trainers: one table (llmc/cli.h), one set of
// defaults, one validation, and the resume lookup, so `train_gpt2 -x 10 -b 8` and
// `train_gpt2cu -x 10 -b 8` mean the same thing. A trainer may append its own options after
// these (TRAIN_OPTIONS_MAX leaves room).
#ifndef LLMC_TRAIN_OPTIONS_H
#define LLMC_TRAIN_OPTIONS_H

#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataloader.h"
#include "divergence.h"
#include "optimizer.h"
#include "report.h"
#include "schedulers.h"
#include "utils.h"

#define TRAIN_OPTIONS_MAX 64
// -h 1: where llm.c's dev/data/hellaswag.py writes the HellaSwag val set
#define HELLASWAG_DEFAULT_PATH "dev/data/hellaswag/hellaswag_val.bin"

typedef struct {
    const char *train_pattern, *val_pattern, *model_spec, *output_dir, *tokenizer_path;
    const char *schedule_name;
    const char *hellaswag_path; // eval file (llmc/eval_loader.h); "" or "0": none
    const char *hellaswag_out;  // per-example scores of each evaluation, appended ("": none)
    int B, T, total_batch_size, max_steps, warmup_steps;
    float learning_rate, final_lr_fraction, weight_decay;
    int val_every, val_max_batches, sample_every, gen_tokens, checkpoint_every, resume, seed;
    int shuffle;
    int checkpoints_keep, major_checkpoint_every; // -nk, -nm (llm.c's): llmc/checkpoint.h
    float grad_clip, beta1, beta2, eps, temperature;
    // --optimizer muon: Muon for the blocks' matrices, AdamW for the rest (llmc/muon.h)
    const char *optimizer_name;
    float muon_lr, muon_momentum;
    int muon_ns_steps;
    int top_k;
    int loss_mask; // DATALOADER_MASKS_*: use the .mask beside each shard (SFT), -1 if present
    // outlier detector (llmc/divergence.h): z-scores above which a step's update is skipped
    float skip_loss_z, skip_norm_z;
    int outlier_window;
    // --plot LOG [--plot-out SVG]: only redraw a main.log's plot (llmc/report.h), then exit
    const char *plot_log, *plot_out;
    // set by train_options_validate
    ScheduleType schedule;
    int grad_accum_steps;
    int optimizer; // OptimizerKind
} TrainOptions;

static inline void train_options_defaults(TrainOptions *o) {
    o->train_pattern = "dev/data/tinyshakespeare/tiny_shakespeare_train.bin";
    o->val_pattern = "dev/data/tinyshakespeare/tiny_shakespeare_val.bin";
    o->model_spec = "d4";
    o->output_dir = "";
    o->tokenizer_path = "dev/data/tinyshakespeare/gpt2_tokenizer.bin";
    o->schedule_name = "cosine";
    o->hellaswag_path = "";
    o->hellaswag_out = "";
    o->B = 4;
    o->T = 64;
    o->total_batch_size = -1;
    o->max_steps = -1;
    o->warmup_steps = 0;
    o->learning_rate = 3e-4f;
    o->final_lr_fraction = 1.0f;
    o->weight_decay = 0.0f;
    o->val_every = 20;
    o->val_max_batches = 20;
    o->sample_every = 20;
    o->gen_tokens = 64;
    o->checkpoint_every = 0;
    o->resume = 0;
    o->seed = 42;
    o->shuffle = 0;
    o->checkpoints_keep = 0;
    o->major_checkpoint_every = 0;
    o->grad_clip = 1.0f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->optimizer_name = "adamw";
    o->muon_lr = 0.02f;
    o->muon_momentum = 0.95f;
    o->muon_ns_steps = 5;
    o->temperature = 1.0f;
    o->top_k = 0;
    o->loss_mask = DATALOADER_MASKS_AUTO;
    o->skip_loss_z = 5.0f;
    o->skip_norm_z = 5.0f;
    o->outlier_window = 128;
    o->plot_log = "";
    o->plot_out = "";
    o->schedule = SCHEDULE_COSINE;
    o->grad_accum_steps = 1;
    o->optimizer = OPTIMIZER_ADAMW;
}

// Fills table (TRAIN_OPTIONS_MAX entries) with the shared options; returns how many.
static inline int train_options_table(TrainOptions *o, CliOption *table) {
    const CliOption options[] = {
        {'i', "train", OPTION_STRING, &o->train_pattern, "training shards (glob)"},
        {'j', "val", OPTION_STRING, &o->val_pattern, "validation shards (glob; empty: none)"},
        {'e', "model", OPTION_STRING, &o->model_spec,
         "model checkpoint (.bin), HuggingFace GPT-2 directory (config.json + "
         "model.safetensors) or descriptor: d2 d4 d6 d12 d24 d36 d48 d60 d72 d84, gpt3:cN (N: "
         "384 768 1024 1536 2048 2560 4096 12288), L=..,C=..,NH=..,V=..,maxT=.., or "
         "arch=llama,L=..,C=..,NH=..,KV=..,V=..,maxT=..[,ffn=..][,rope_theta=..][,qknorm=1] "
         "(both trainers, chat and chatcu)"},
        {'o', "output", OPTION_STRING, &o->output_dir,
         "output directory for main.log and checkpoints"},
        {'b', "batch-size", OPTION_INT, &o->B, "micro-batch size (sequences)"},
        {'t', "seq-len", OPTION_INT, &o->T, "sequence length"},
        {'d', "total-batch", OPTION_INT, &o->total_batch_size,
         "tokens per optimizer step; a multiple of B*T, accumulated (-1: B*T)"},
        {'x', "max-steps", OPTION_INT, &o->max_steps,
         "optimizer steps (-1: one epoch of -i; 0: none, only evaluate)"},
        {'l', "lr", OPTION_FLOAT, &o->learning_rate,
         "peak learning rate (AdamW's; with --optimizer muon, of the tensors AdamW keeps)"},
        {'u', "warmup", OPTION_INT, &o->warmup_steps, "linear warmup steps"},
        {'q', "final-lr-frac", OPTION_FLOAT, &o->final_lr_fraction,
         "final lr as a fraction of peak"},
        {'k', "schedule", OPTION_STRING, &o->schedule_name,
         "lr schedule: cosine, linear, constant, wsd"},
        {'c', "weight-decay", OPTION_FLOAT, &o->weight_decay, "AdamW weight decay (matrices only)"},
        {'v', "val-every", OPTION_INT, &o->val_every, "validate every N steps (0: never)"},
        {'h', "hellaswag", OPTION_STRING, &o->hellaswag_path,
         "eval file (tokenizer eval-file) scored at validations after step 0 and at the end; "
         "1: " HELLASWAG_DEFAULT_PATH ", 0 or empty: none"},
        {0, "hellaswag-out", OPTION_STRING, &o->hellaswag_out,
         "append each evaluated example's candidate losses and prediction to this text file"},
        {'m', "val-batches", OPTION_INT, &o->val_max_batches, "max validation batches"},
        {'s', "sample-every", OPTION_INT, &o->sample_every, "sample every N steps (0: never)"},
        {'g', "gen-tokens", OPTION_INT, &o->gen_tokens, "tokens to generate when sampling"},
        {'n', "checkpoint-every", OPTION_INT, &o->checkpoint_every,
         "write a checkpoint every N steps and at the end (0: only at the end; needs -o)"},
        {'y', "resume", OPTION_INT, &o->resume, "1: resume from the newest checkpoint in -o"},
        {0, "nk", OPTION_INT, &o->checkpoints_keep,
         "keep only the newest N checkpoints in -o, deleting older ones (0: keep all)"},
        {0, "nm", OPTION_INT, &o->major_checkpoint_every,
         "with -nk: never delete the checkpoints of steps that are multiples of M (0: none)"},
        {0, "seed", OPTION_INT, &o->seed,
         "seed of the random init (same as PyTorch's manual_seed); + rank: of --shuffle"},
        {0, "shuffle", OPTION_INT, &o->shuffle, "1: shuffle training shards and samples (seeded)"},
        {0, "grad-clip", OPTION_FLOAT, &o->grad_clip,
         "clip gradients to this global norm (0: off)"},
        {0, "beta1", OPTION_FLOAT, &o->beta1, "AdamW beta1"},
        {0, "beta2", OPTION_FLOAT, &o->beta2, "AdamW beta2"},
        {0, "eps", OPTION_FLOAT, &o->eps, "AdamW epsilon"},
        {0, "optimizer", OPTION_STRING, &o->optimizer_name,
         "adamw, or muon: Muon for the blocks' 2-D matrices (qkvw, attprojw, fcw, fcprojw), "
         "AdamW (-l) for embeddings, norms and biases"},
        {0, "muon-lr", OPTION_FLOAT, &o->muon_lr,
         "Muon's peak learning rate (scheduled like -l; -c decays its matrices too)"},
        {0, "muon-momentum", OPTION_FLOAT, &o->muon_momentum, "Muon's (Nesterov) momentum"},
        {0, "muon-ns-steps", OPTION_INT, &o->muon_ns_steps,
         "Muon's Newton-Schulz iterations per matrix and step"},
        {0, "tokenizer", OPTION_STRING, &o->tokenizer_path, "tokenizer file for printing samples"},
        {0, "temperature", OPTION_FLOAT, &o->temperature, "sampling temperature (0: argmax)"},
        {0, "top-k", OPTION_INT, &o->top_k, "sample from the k most likely tokens (0: all)"},
        {0, "mask", OPTION_INT, &o->loss_mask,
         "SFT loss masks (NAME.mask beside NAME.bin): -1 use if present, 0 ignore, 1 require"},
        {0, "skip-update-loss", OPTION_FLOAT, &o->skip_loss_z,
         "skip the update of a step whose loss z-score exceeds this (0: off)"},
        {0, "skip-update-norm", OPTION_FLOAT, &o->skip_norm_z,
         "skip the update of a step whose gradient-norm z-score exceeds this (0: off)"},
        {0, "outlier-window", OPTION_INT, &o->outlier_window,
         "steps of loss and norm the z-scores are taken over (none judged before it is full)"},
        {0, "plot", OPTION_STRING, &o->plot_log,
         "only redraw the loss plot of this main.log (into --plot-out) and exit; a run with -o "
         "writes DIR/loss.svg and DIR/report.md at its end"},
        {0, "plot-out", OPTION_STRING, &o->plot_out,
         "the SVG file --plot writes (none: loss.svg beside the main.log); replaces only an "
         "earlier plot"},
    };
    int count = (int)(sizeof(options) / sizeof(options[0]));
    for (int i = 0; i < count; i++) table[i] = options[i];
    return count;
}

// --plot: redraws the plot of a main.log and exits (0, or 1 with one line); without it, nothing.
static inline void train_options_plot_command(const TrainOptions *o) {
    if (o->plot_log[0] == '\0') {
        if (o->plot_out[0] != '\0') fatal("--plot-out needs --plot MAIN_LOG");
        return;
    }
    report_plot_command(o->plot_log, o->plot_out);
    exit(0);
}

// Checks the flags before any file is touched; sets schedule and grad_accum_steps. -d counts the
// tokens of a step over all num_processes processes (each runs B*T per micro-batch).
static inline void train_options_validate(TrainOptions *o, int num_processes) {
    if (!schedule_from_name(o->schedule_name, &o->schedule)) {
        fatal("bad value '%s' for -k: expected cosine, linear, constant or wsd", o->schedule_name);
    }
    if (o->B <= 0) fatal("bad value %d for -b: must be >= 1", o->B);
    if (o->max_steps < -1) {
        fatal("bad value %d for -x: expected -1 (one epoch), 0 (no step) or a step count",
              o->max_steps);
    }
    if (strcmp(o->hellaswag_path, "1") == 0) o->hellaswag_path = HELLASWAG_DEFAULT_PATH;
    if (strcmp(o->hellaswag_path, "0") == 0) o->hellaswag_path = "";
    if (o->hellaswag_out[0] != '\0' && o->hellaswag_path[0] == '\0') {
        fatal("--hellaswag-out needs -h FILE");
    }
    if (o->T <= 0) fatal("bad value %d for -t: must be >= 1", o->T);
    // a micro-step's positions are indexed with int everywhere: B*T*processes must fit one
    size_t micro_tokens;
    if (!size_mul_ok((size_t)o->B * (size_t)o->T, (size_t)num_processes, &micro_tokens) ||
        micro_tokens > 2147483647u) {
        fatal("bad values -b %d -t %d: B*T%s = %.0f tokens per micro-step, expected at most "
              "2147483647",
              o->B, o->T, num_processes > 1 ? "*processes" : "",
              (double)o->B * o->T * num_processes);
    }
    int tokens_per_micro_step = (int)micro_tokens;
    if (o->total_batch_size == -1) o->total_batch_size = tokens_per_micro_step;
    if (o->total_batch_size <= 0 || o->total_batch_size % tokens_per_micro_step != 0) {
        if (num_processes > 1) {
            fatal("bad value %d for -d: must be a positive multiple of B*T*processes = %d*%d*%d",
                  o->total_batch_size, o->B, o->T, num_processes);
        }
        fatal("bad value %d for -d: must be a positive multiple of B*T = %d", o->total_batch_size,
              o->B * o->T);
    }
    if (o->learning_rate < 0.0f) fatal("bad value %g for -l: must be >= 0", o->learning_rate);
    if (o->warmup_steps < 0) fatal("bad value %d for -u: must be >= 0", o->warmup_steps);
    if (o->final_lr_fraction < 0.0f || o->final_lr_fraction > 1.0f) {
        fatal("bad value %g for -q: must be in [0, 1]", o->final_lr_fraction);
    }
    if (o->val_every < 0 || o->val_max_batches < 0 || o->sample_every < 0 || o->gen_tokens < 0 ||
        o->checkpoint_every < 0) {
        fatal("-v, -m, -s, -g and -n must be >= 0");
    }
    if (o->resume != 0 && o->resume != 1) fatal("bad value %d for -y: expected 0 or 1", o->resume);
    if (o->shuffle != 0 && o->shuffle != 1) {
        fatal("bad value %d for --shuffle: expected 0 or 1", o->shuffle);
    }
    if (o->resume && o->output_dir[0] == '\0') fatal("-y 1 needs -o DIR to find the checkpoint in");
    if (o->checkpoint_every > 0 && o->output_dir[0] == '\0') {
        fatal("-n needs -o DIR to write into");
    }
    if (o->checkpoints_keep < 0 || o->major_checkpoint_every < 0) {
        fatal("bad value %d for -%s: must be >= 0",
              o->checkpoints_keep < 0 ? o->checkpoints_keep : o->major_checkpoint_every,
              o->checkpoints_keep < 0 ? "nk" : "nm");
    }
    if (o->checkpoints_keep > 0 && o->output_dir[0] == '\0') {
        fatal("-nk needs -o DIR, the directory whose checkpoints it deletes");
    }
    if (o->loss_mask < -1 || o->loss_mask > 1) {
        fatal("bad value %d for --mask: expected -1, 0 or 1", o->loss_mask);
    }
    if (o->skip_loss_z < 0.0f || o->skip_norm_z < 0.0f) {
        fatal("bad value %g for --skip-update-%s: must be >= 0 (0: off)",
              o->skip_loss_z < 0.0f ? o->skip_loss_z : o->skip_norm_z,
              o->skip_loss_z < 0.0f ? "loss" : "norm");
    }
    if (o->outlier_window < 2 || o->outlier_window > OUTLIER_WINDOW_MAX) {
        fatal("bad value %d for --outlier-window: must be in 2..%d", o->outlier_window,
              OUTLIER_WINDOW_MAX);
    }
    if (!optimizer_from_name(o->optimizer_name, &o->optimizer)) {
        fatal("bad value '%s' for --optimizer: expected adamw or muon", o->optimizer_name);
    }
    if (!(o->muon_lr >= 0.0f)) fatal("bad value %g for --muon-lr: must be >= 0", o->muon_lr);
    if (!(o->muon_momentum >= 0.0f && o->muon_momentum < 1.0f)) {
        fatal("bad value %g for --muon-momentum: must be in [0, 1)", o->muon_momentum);
    }
    if (o->muon_ns_steps < 1 || o->muon_ns_steps > MUON_MAX_NS_STEPS) {
        fatal("bad value %d for --muon-ns-steps: must be in 1..%d", o->muon_ns_steps,
              MUON_MAX_NS_STEPS);
    }
    o->grad_accum_steps = o->total_batch_size / tokens_per_micro_step;
}

// With -y 1, points model_spec at the newest complete checkpoint in -o (path stored in
// path_buffer) and returns its step; returns 0 for a fresh start. Refuses to start fresh in a
// directory that already holds checkpoints. Records this run's -e, -b, -t, -d for its state
// files, which a resume checks them against (llmc/checkpoint.h).
static inline int train_options_resume(TrainOptions *o, char *path_buffer, size_t size) {
    checkpoint_set_run_record(o->model_spec, o->B, o->T, o->total_batch_size);
    checkpoint_set_run_optimizer(o->optimizer);
    int latest = o->output_dir[0] != '\0' ? checkpoint_find_latest(o->output_dir) : -1;
    if (o->resume) {
        int step = latest >= 0 ? checkpoint_find_resumable(o->output_dir) : -1;
        if (step < 0) {
            printf("resume: no complete checkpoint in %s, starting from scratch\n", o->output_dir);
            return 0;
        }
        checkpoint_path(path_buffer, size, o->output_dir, "model", step);
        o->model_spec = path_buffer;
        return step;
    }
    if (latest >= 0) {
        fatal("%s already holds checkpoints (newest: step %d): resume with -y 1 or choose "
              "another -o",
              o->output_dir, latest);
    }
    return 0;
}

// -x -1: one epoch of the training data, in optimizer steps (at least 1).
static inline int train_epoch_steps(DataLoader *loader, int grad_accum_steps) {
    size_t samples = 0;
    for (size_t s = 0; s < loader->num_shards; s++) {
        dataloader_load_shard(loader, s);
        samples += loader->shard_num_samples;
    }
    dataloader_reset(loader);
    int steps = (int)(samples / (size_t)grad_accum_steps);
    return steps < 1 ? 1 : steps;
}

#endif // LLMC_TRAIN_OPTIONS_H
