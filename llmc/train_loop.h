// The parts of a training run that do not depend on where the model runs, shared by train_gpt2.c
// (CPU, fp32) and train_gpt2.cu (GPU): the micro-batches of a step, validation, sampling, the
// checkpoint / validation / sample cadence, the guard against divergence before each update
// (llmc/divergence.h) and the progress lines. A trainer describes its model with a TrainModel:
// the model as void * and callbacks for what differs (forward, backward, logits, checkpoint files).
#ifndef LLMC_TRAIN_LOOP_H
#define LLMC_TRAIN_LOOP_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataloader.h"
#include "divergence.h"
#include "eval_loader.h"
#include "logger.h"
#include "report.h"
#include "sampler.h"
#include "tokenizer.h"
#include "train_options.h"
#include "utils.h"

// The losses of one forward.
typedef struct {
    float mean_loss; // over its trained targets
    double loss_sum; // sum of the trained targets' losses
    int num_targets; // trained targets (B*T without a mask)
} BatchLoss;

typedef struct {
    void *model;
    int vocab_size, padded_vocab_size; // V, Vp
    // forward only (validation); target_mask may be NULL
    BatchLoss (*forward)(void *model, const int *inputs, const int *targets,
                         const unsigned char *target_mask, int B, int T);
    // forward and backward of a training micro-batch, gradients accumulating. With a mask the
    // loss is the trained targets' sum / normaliser (the step's trained target count); without,
    // the batch's mean loss times loss_scale (1/grad_accum_steps).
    // last_micro_step: this backward completes the step's gradients (a data-parallel trainer
    // starts reducing them across processes while it runs).
    BatchLoss (*forward_backward)(void *model, const int *inputs, const int *targets,
                                  const unsigned char *target_mask, int B, int T, float normaliser,
                                  float loss_scale, int last_micro_step);
    // the host logits (Vp floats) of the last position after a forward of tokens[0..length);
    // scratch (Vp floats) may hold them
    const float *(*last_logits)(void *model, const int *tokens, int length, float *scratch);
    // writes the model and state files of step and its DONE marker (see llmc/checkpoint.h),
    // refusing (checkpoint_refuse_non_finite) if any value in them is not finite
    void (*save_checkpoint)(void *model, const char *dir, int step, const DataLoader *loader,
                            uint64_t rng_state, const OutlierHistory *outliers);
    // data parallelism: this process's rank among num_processes (each with its own part of the
    // data), and a sum of host values over all of them, in place (NULL for one process)
    int process_rank, num_processes;
    void (*sum_across_processes)(void *model, double *values, int count);
    // the host per-position losses (B*T, row-major) of the last forward with targets
    const float *(*position_losses)(void *model);
} TrainModel;

// At most this many values a call: the CUDA trainer sums through a small device buffer
// (MULTI_GPU_SCRATCH in llmc/multi_gpu.cuh).
#define TRAIN_SUM_MAX_VALUES 16

static inline void train_sum_across_processes(const TrainModel *m, double *values, int count) {
    if (m->num_processes > 1 && m->sum_across_processes != NULL) {
        for (int done = 0; done < count; done += TRAIN_SUM_MAX_VALUES) {
            int n = count - done < TRAIN_SUM_MAX_VALUES ? count - done : TRAIN_SUM_MAX_VALUES;
            m->sum_across_processes(m->model, values + done, n);
        }
    }
}

// The factor that brings the global gradient norm to at most max_norm (PyTorch's
// clip_grad_norm_); 1 when no clipping is needed. The trainers' gpt2_update applies it while it
// reads the gradients, which saves a pass over them.
static inline float gpt2_clip_scale(float norm, float max_norm) {
    if (max_norm <= 0.0f) return 1.0f;
    float coef = max_norm / (norm + 1e-6f);
    return coef < 1.0f ? coef : 1.0f;
}

// How a step's loss is made from its micro-batches' losses (train_step_loss).
typedef struct {
    int masked;      // loss masks: loss_sum is the trained targets' sum, over total of them
    double total;    // masked: the step's trained targets over all processes
    int micro_steps; // unmasked: loss_sum is the sum of micro_steps batch means
    int processes;   // unmasked: each process's mean weighs 1/processes
} StepLossForm;

// The step's loss (over all processes) from this process's loss_sum (see StepLossForm).
static inline float train_step_loss(const TrainModel *m, const StepLossForm *form,
                                    double loss_sum) {
    if (form->masked) {
        train_sum_across_processes(m, &loss_sum, 1);
        return form->total > 0 ? (float)(loss_sum / form->total) : 0.0f;
    }
    double step_loss = loss_sum / form->micro_steps;
    train_sum_across_processes(m, &step_loss, 1);
    return (float)(step_loss / form->processes);
}

// Forward and backward over the grad_accum_steps micro-batches of one optimizer step. With loss
// masks every trained target of the step, on any process, weighs 1/total, whichever micro-batch
// holds it, and *skip_update says that the step has none. The gradients are the step's over all
// processes once summed across them. *form and *loss_sum (the sum of the BatchLosses the model
// returned) make the step's loss with train_step_loss; a model that sums its losses on the device
// (train_gpt2.cu) ignores *loss_sum and passes its own sum there, read once per step.
static inline void train_accumulate_micro_steps(const TrainModel *m, DataLoader *loader,
                                                StepBatches *batches, int grad_accum_steps,
                                                int *skip_update, StepLossForm *form,
                                                double *loss_sum) {
    int B = loader->B, T = loader->T, P = m->num_processes > 1 ? m->num_processes : 1;
    *loss_sum = 0.0;
    *skip_update = 0;
    memset(form, 0, sizeof(*form));
    form->micro_steps = grad_accum_steps;
    form->processes = P;
    if (loader->has_masks) {
        step_batches_load(batches, loader);
        double total = (double)batches->total_targets;
        train_sum_across_processes(m, &total, 1);
        size_t BT = (size_t)B * T;
        int last = grad_accum_steps - 1;
        // one process skips micro-batches without trained targets (they add nothing); several
        // run them all, so that every process reduces its gradients at the same point
        if (P == 1) {
            while (last >= 0 && batches->num_targets[last] == 0) last--;
        }
        for (int micro = 0; micro <= last; micro++) {
            if (P == 1 && batches->num_targets[micro] == 0) continue;
            BatchLoss loss = m->forward_backward(
                m->model, batches->inputs + micro * BT, batches->targets + micro * BT,
                batches->target_mask + micro * BT, B, T, total > 0 ? (float)total : 1.0f, 1.0f,
                micro == last);
            *loss_sum += loss.loss_sum;
        }
        *skip_update = total == 0;
        form->masked = 1;
        form->total = total;
        return;
    }
    // each process's mean loss weighs 1/P: the sum over processes is the whole step's mean
    float loss_scale = 1.0f / (float)(grad_accum_steps * P);
    for (int micro = 0; micro < grad_accum_steps; micro++) {
        dataloader_next_batch(loader);
        BatchLoss loss = m->forward_backward(m->model, loader->inputs, loader->targets, NULL, B, T,
                                             0.0f, loss_scale, micro == grad_accum_steps - 1);
        *loss_sum += loss.mean_loss;
    }
}

// train_accumulate_micro_steps, returning the step's loss (over all processes).
static inline float train_accumulate(const TrainModel *m, DataLoader *loader, StepBatches *batches,
                                     int grad_accum_steps, int *skip_update) {
    StepLossForm form;
    double loss_sum;
    train_accumulate_micro_steps(m, loader, batches, grad_accum_steps, skip_update, &form,
                                 &loss_sum);
    return train_step_loss(m, &form, loss_sum);
}

// Mean loss over up to max_batches validation batches from the start of the val data; with loss
// masks, the mean over all their trained targets.
static inline float evaluate(const TrainModel *m, DataLoader *loader, int max_batches) {
    dataloader_reset(loader);
    double sum = 0.0, masked_sum = 0.0;
    long long masked_count = 0;
    int batches = 0;
    for (int i = 0; i < max_batches; i++) {
        dataloader_next_batch(loader);
        BatchLoss loss = m->forward(m->model, loader->inputs, loader->targets, loader->target_mask,
                                    loader->B, loader->T);
        sum += loss.mean_loss;
        masked_sum += loss.loss_sum;
        masked_count += loss.num_targets;
        batches++;
        // stop after one pass over a small val set instead of wrapping around
        if (loader->current_shard_idx == loader->num_shards - 1 &&
            loader->current_sample_idx >= loader->shard_num_samples) {
            break;
        }
    }
    // each process saw its own part of the val data (the same number of batches)
    double totals[4] = {sum, masked_sum, (double)masked_count, (double)batches};
    train_sum_across_processes(m, totals, 4);
    if (loader->has_masks) return totals[2] > 0 ? (float)(totals[1] / totals[2]) : 0.0f;
    return (float)(totals[0] / totals[3]);
}

// HellaSwag-style evaluation (-h): the eval file, checked against the model, and the host rows of
// one batch of candidates.
typedef struct {
    EvalFile file;
    const char *path, *out_path;
    int B, T;
    int *inputs, *targets;
    unsigned char *mask;
    double *means;      // per candidate, this process's (0 elsewhere) until summed
    double *prediction; // per example, likewise
} TrainEval;

static inline void train_eval_init(TrainEval *e, const char *path, const char *out_path,
                                   int vocab_size, int B, int T) {
    memset(e, 0, sizeof(*e));
    eval_file_load(&e->file, path);
    eval_file_check_model(&e->file, path, vocab_size, T);
    e->path = path;
    e->out_path = out_path;
    e->B = B;
    e->T = T;
    size_t BT = (size_t)B * T, candidates = (size_t)e->file.num_examples * EVAL_COMPLETIONS;
    e->inputs = (int *)malloc_check(BT * sizeof(int), "eval inputs");
    e->targets = (int *)malloc_check(BT * sizeof(int), "eval targets");
    e->mask = (unsigned char *)malloc_check(BT, "eval mask");
    e->means = (double *)malloc_check(candidates * sizeof(double), "eval losses");
    e->prediction =
        (double *)malloc_check((size_t)e->file.num_examples * sizeof(double), "eval predictions");
    printf("hellaswag: %d examples from %s, longest candidate %d tokens\n", e->file.num_examples,
           path, e->file.longest);
}

static inline void train_eval_free(TrainEval *e) {
    eval_file_free(&e->file);
    free(e->inputs);
    free(e->targets);
    free(e->mask);
    free(e->means);
    free(e->prediction);
}

// Scores every example (each process a contiguous share, its candidates B rows a forward, each
// batch only as long as its longest candidate), prints "hellaswag: N/M = acc" and logs llm.c's
// "s:%d eval:%f"; with an output file, appends each example's line there. Returns the accuracy.
static inline float train_eval_run(const TrainModel *m, TrainEval *e, int step, Logger *logger) {
    int n = e->file.num_examples, P = m->num_processes > 1 ? m->num_processes : 1;
    int per_process = (n + P - 1) / P;
    int start = per_process * m->process_rank;
    int end = start + per_process < n ? start + per_process : n;
    if (start > n) start = n;
    size_t candidates = (size_t)n * EVAL_COMPLETIONS;
    memset(e->means, 0, candidates * sizeof(double));
    memset(e->prediction, 0, (size_t)n * sizeof(double));
    double started = now_seconds();
    size_t last = (size_t)end * EVAL_COMPLETIONS;
    for (size_t first = (size_t)start * EVAL_COMPLETIONS; first < last; first += (size_t)e->B) {
        int rows = last - first < (size_t)e->B ? (int)(last - first) : e->B;
        int T_batch = eval_fill_rows(&e->file, first, rows, e->inputs, e->targets, e->mask);
        m->forward(m->model, e->inputs, e->targets, NULL, rows, T_batch);
        eval_row_means(m->position_losses(m->model), e->mask, rows, T_batch, e->means + first);
    }
    double correct = 0.0;
    for (int i = start; i < end; i++) {
        int predicted = eval_predict(e->means + (size_t)i * EVAL_COMPLETIONS);
        e->prediction[i] = predicted;
        correct += predicted == e->file.label[i];
    }
    train_sum_across_processes(m, &correct, 1);
    if (e->out_path[0] != '\0') { // every process's scores, for rank 0 to write
        train_sum_across_processes(m, e->means, (int)candidates);
        train_sum_across_processes(m, e->prediction, n);
    }
    float accuracy = (float)(correct / n);
    if (m->process_rank == 0) {
        printf("hellaswag: %d/%d = %.4f (step %d, %.1f s)\n", (int)correct, n, accuracy, step,
               now_seconds() - started);
        logger_write(logger, "s:%d eval:%.4f\n", step, accuracy); // llm.c's line
        if (e->out_path[0] != '\0') {
            FILE *out = fopen_check(e->out_path, "a");
            for (int i = 0; i < n; i++) {
                const double *means = e->means + (size_t)i * EVAL_COMPLETIONS;
                fprintf(out, "%d %d %d %d %.9g %.9g %.9g %.9g\n", step, i, e->file.label[i],
                        (int)e->prediction[i], means[0], means[1], means[2], means[3]);
            }
            if (ferror(out) || fclose(out) != 0) fatal("%s: write failed", e->out_path);
        }
    }
    return accuracy;
}

// The text of the last sample printed and the step it was taken at, for the run's report.md
// (llmc/report.h). One trainer per process, so one per program.
static char *train_last_sample = NULL;
static int train_last_sample_step = -1;

// Generates up to num_tokens tokens after <|endoftext|> and prints them (or their ids); keeps
// the text in train_last_sample.
static inline void sample_and_print(const TrainModel *m, const Tokenizer *tokenizer, int eot_token,
                                    int num_tokens, int max_T, float temperature, int top_k,
                                    uint64_t *rng_state) {
    int V = m->vocab_size, Vp = m->padded_vocab_size;
    int *tokens = (int *)malloc_check(((size_t)num_tokens + 1) * sizeof(int), "sample tokens");
    float *scratch = (float *)malloc_check((size_t)Vp * sizeof(float), "sample logits");
    float *work = (float *)malloc_check((size_t)V * sizeof(float), "sampler scratch");
    tokens[0] = eot_token;
    Utf8Printer printer, kept_printer;
    utf8_printer_init(&printer, stdout);
    char *kept = NULL;
    size_t kept_size = 0;
    FILE *kept_file = open_memstream(&kept, &kept_size);
    if (kept_file == NULL) fatal("out of memory for the sample's text");
    utf8_printer_init(&kept_printer, kept_file);
    printf("generating:\n---\n");
    for (int n = 1; n <= num_tokens; n++) {
        // sliding window over the last max_T tokens
        int start = n > max_T ? n - max_T : 0;
        const float *logits = m->last_logits(m->model, tokens + start, n - start, scratch);
        int next = sample_token(logits, V, temperature, top_k, rng_state, work);
        tokens[n] = next;
        if (tokenizer != NULL) {
            tokenizer_print_token(tokenizer, &printer, next);
            tokenizer_print_token(tokenizer, &kept_printer, next);
            fflush(stdout);
        } else {
            printf("%d ", next);
            fprintf(kept_file, "%d ", next);
        }
    }
    utf8_printer_flush(&printer);
    utf8_printer_flush(&kept_printer);
    if (ferror(kept_file) || fclose(kept_file) != 0) fatal("out of memory for the sample's text");
    free(train_last_sample);
    train_last_sample = kept;
    printf("\n---\n");
    free(tokens);
    free(scratch);
    free(work);
}

// The tokenizer for samples, when -z names one whose vocabulary is the model's; else samples
// print as ids. Returns whether it is loaded; *eot_token is the token samples start from.
static inline int train_load_tokenizer(Tokenizer *tokenizer, const char *path, int vocab_size,
                                       int *eot_token) {
    int have_tokenizer = path[0] != '\0' && file_exists(path);
    if (have_tokenizer) {
        tokenizer_init(tokenizer, path);
        if (tokenizer->vocab_size != vocab_size) {
            printf("note: tokenizer has V=%d, model V=%d: samples print as ids\n",
                   tokenizer->vocab_size, vocab_size);
            tokenizer_free(tokenizer);
            have_tokenizer = 0;
        }
    }
    *eot_token = have_tokenizer ? tokenizer->eot_token : 50256;
    if (*eot_token >= vocab_size) *eot_token = vocab_size - 1;
    return have_tokenizer;
}

// A file's size and CRC-32C (0, 0 if it cannot be opened): to tell whether two files are equal.
static inline uint32_t train_file_crc(const char *path, size_t *size) {
    *size = 0;
    FILE *file = fopen(path, "rb");
    if (file == NULL) return 0;
    unsigned char buffer[1 << 16];
    uint32_t crc = 0;
    size_t got;
    while ((got = fread(buffer, 1, sizeof(buffer), file)) > 0) {
        crc = crc32c_update(crc, buffer, got);
        *size += got;
    }
    fclose(file);
    return crc;
}

// Keeps the tokenizer beside the checkpoints, as output_dir/tokenizer.bin, so that chat finds it
// with the model: tokenizer.bin beside the first training shard (tokenizer prepare writes it with
// the data; SFT data's holds the chat tokens), else the --tokenizer file, the first whose V is the
// model's. With neither, a note says so and nothing is written. A different tokenizer.bin already
// there (another run's) is replaced, with a note.
static inline void train_keep_tokenizer(const char *output_dir, const char *first_shard,
                                        const char *tokenizer_path, int vocab_size) {
    if (output_dir[0] == '\0') return;
    char beside_data[4096];
    const char *slash = strrchr(first_shard, '/');
    int dir_length = slash == NULL ? 1 : (int)(slash - first_shard);
    snprintf(beside_data, sizeof(beside_data), "%.*s/tokenizer.bin", dir_length,
             slash == NULL ? "." : first_shard);
    const char *candidates[2] = {beside_data, tokenizer_path};
    const char *source = NULL;
    for (int i = 0; i < 2 && source == NULL; i++) {
        if (candidates[i][0] == '\0' || !file_exists(candidates[i])) continue;
        int32_t header[HEADER_INTS];
        size_t file_size;
        FILE *file = tokenizer_file_open(candidates[i], header, &file_size);
        fclose(file);
        if (header[2] == vocab_size) source = candidates[i];
    }
    if (source == NULL) {
        printf(
            "note: no tokenizer with the model's V=%d (%s, --tokenizer %s): none kept beside the "
            "checkpoints; chat will need -v\n",
            vocab_size, beside_data, tokenizer_path[0] ? tokenizer_path : "none");
        return;
    }
    char target[4096 + 16];
    snprintf(target, sizeof(target), "%s/tokenizer.bin", output_dir);
    size_t source_size, target_size;
    uint32_t source_crc = train_file_crc(source, &source_size);
    uint32_t target_crc = train_file_crc(target, &target_size);
    if (file_exists(target) && source_size == target_size && source_crc == target_crc) return;
    if (file_exists(target)) {
        printf("note: %s differs from %s: replaced by it\n", target, source);
    }
    FILE *in = fopen_check(source, "rb");
    AtomicFile out;
    atomic_open(&out, target);
    unsigned char buffer[1 << 16];
    size_t got;
    while ((got = fread(buffer, 1, sizeof(buffer), in)) > 0) {
        fwrite_check(buffer, 1, got, out.file, out.temp_path);
    }
    if (ferror(in)) fatal("%s: read error while copying it to %s", source, target);
    fclose(in);
    atomic_commit(&out);
    printf("tokenizer: %s kept beside the checkpoints as %s\n", source, target);
}

// What runs before training step `step` (and once after the last): a checkpoint (with the
// outlier detector's history), validation on val_loader (NULL: none), the eval file (eval, NULL:
// none; as llm.c, not at step 0 unless it is the last) and a sample, each at its cadence. The
// checkpoint comes first, so a resumed run repeats validation and sampling exactly.
static inline void
train_checkpoint_validate_sample(const TrainModel *m, const TrainOptions *opt, int step,
                                 int start_step, int max_steps, const DataLoader *train_loader,
                                 DataLoader *val_loader, TrainEval *eval,
                                 const Tokenizer *tokenizer, int eot_token, uint64_t *rng_state,
                                 const OutlierDetector *detector, Logger *logger) {
    int last_step = step == max_steps;
    if (opt->output_dir[0] != '\0' && step > start_step &&
        ((opt->checkpoint_every > 0 && step % opt->checkpoint_every == 0) || last_step)) {
        m->save_checkpoint(m->model, opt->output_dir, step, train_loader, *rng_state,
                           &detector->history);
        // (rank 0 alone: every rank's state file is written before the checkpoint's DONE marker)
        if (m->process_rank == 0) {
            checkpoint_prune(opt->output_dir, opt->checkpoints_keep, opt->major_checkpoint_every);
        }
    }
    if (val_loader != NULL && (step % opt->val_every == 0 || last_step)) {
        float val_loss = evaluate(m, val_loader, opt->val_max_batches);
        printf("step %d: val loss %.6f\n", step, val_loss);
        logger_log_val(logger, step, val_loss);
    }
    if (eval != NULL &&
        ((step > 0 && opt->val_every > 0 && step % opt->val_every == 0) || last_step)) {
        train_eval_run(m, eval, step, logger);
    }
    if (m->process_rank == 0 && opt->gen_tokens > 0 && opt->sample_every > 0 &&
        ((step > 0 && step % opt->sample_every == 0) || last_step)) {
        sample_and_print(m, tokenizer, eot_token, opt->gen_tokens, opt->T, opt->temperature,
                         opt->top_k, rng_state);
        train_last_sample_step = step;
    }
}

// Before step's update: stops the run when its loss or gradient norm is not finite, then asks
// the outlier detector whether the step is a spike. A spike's update is skipped: its gradients
// are dropped, but the step counts (its data is consumed, the schedule and step number move on).
static inline OutlierVerdict train_guard_step(OutlierDetector *detector, const TrainOptions *opt,
                                              int step, float loss, float norm) {
    divergence_check_step(step, loss, norm, opt->output_dir);
    return outlier_detector_judge(detector, loss, norm);
}

// --optimizer muon: the line saying which tensors take Muon (the parameter table's block matrices,
// gpt2_block_matrix_shape) and which AdamW, with their learning rates. Nothing for AdamW.
static inline void train_print_optimizer(const TrainOptions *opt, const GPT2Config *config) {
    if (opt->optimizer != OPTIMIZER_MUON) return;
    char matrices[256] = "";
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
        BlockMatrixShape shape;
        if (!gpt2_block_matrix_shape(config, k, &shape)) continue;
        size_t used = strlen(matrices);
        snprintf(matrices + used, sizeof(matrices) - used, "%s%s", used > 0 ? ", " : "",
                 model_tensor_name(config, k));
    }
    printf("optimizer: muon (lr %g, momentum %g, %d Newton-Schulz steps) for %s; adamw (lr %g) for "
           "the rest\n",
           opt->muon_lr, opt->muon_momentum, opt->muon_ns_steps, matrices, opt->learning_rate);
}

// Step times for the ETA and the summary; the first step of a run (allocation, warm-up) is left
// out.
typedef struct {
    double train_seconds;
    int timed_steps;
} StepTimer;

// The progress line of step (0-based) that took elapsed seconds, and its main.log line; suffix
// ends the line ("" or the trainer's own fields). verdict (NULL: not judged): a skipped update
// is said on both lines, with the z-scores.
static inline void train_report_step(StepTimer *timer, Logger *logger, int step, int start_step,
                                     int max_steps, float loss, float lr, float norm,
                                     double elapsed, int tokens_per_step, const char *suffix,
                                     const OutlierVerdict *verdict) {
    if (step > start_step) {
        timer->train_seconds += elapsed;
        timer->timed_steps++;
    }
    double mean_step = timer->timed_steps > 0 ? timer->train_seconds / timer->timed_steps : elapsed;
    char eta[32];
    format_duration(mean_step * (max_steps - step - 1), eta, sizeof(eta));
    char skipped[192] = "", log_fields[160] = ""; // room for z-scores up to ~1e60 in %f
    if (verdict != NULL && outlier_verdict_skips(verdict)) {
        snprintf(skipped, sizeof(skipped),
                 " | update skipped: loss z-score %.2f, norm z-score %.2f", verdict->loss_z,
                 verdict->norm_z);
        snprintf(log_fields, sizeof(log_fields), " skipped:1 zloss:%.3f znorm:%.3f",
                 verdict->loss_z, verdict->norm_z);
    }
    printf("step %5d/%d | loss %.6f | lr %.2e | norm %.4f | %.1f ms | %.0f tok/s | ETA %s%s%s\n",
           step + 1, max_steps, loss, lr, norm, elapsed * 1e3, tokens_per_step / elapsed, eta,
           suffix, skipped);
    fflush(stdout);
    logger_log_train(logger, step, loss, lr, norm, log_fields);
}

static inline void train_report_done(const StepTimer *timer, int tokens_per_step) {
    if (timer->timed_steps > 0) {
        printf("done: %d steps, mean %.1f ms/step, %.0f tok/s\n", timer->timed_steps + 1,
               1e3 * timer->train_seconds / timer->timed_steps,
               tokens_per_step * timer->timed_steps / timer->train_seconds);
    }
}

// The end of a run with -o (rank 0): DIR/report.md and DIR/loss.svg (llmc/report.h), with what
// the options, the step timer and the last sample say; the trainer fills in its model and device.
static inline RunReport train_report_init(const TrainOptions *opt, const StepTimer *timer,
                                          const GPT2Config *config, size_t num_parameters,
                                          const char *device, int start_step, int max_steps,
                                          int processes, double wall_seconds) {
    RunReport r;
    memset(&r, 0, sizeof(r));
    r.output_dir = opt->output_dir;
    r.model = opt->model_spec;
    r.config = *config;
    r.num_parameters = num_parameters;
    r.device = device;
    r.train_pattern = opt->train_pattern;
    r.val_pattern = opt->val_every > 0 ? opt->val_pattern : "";
    r.B = opt->B;
    r.T = opt->T;
    r.tokens_per_step = opt->total_batch_size;
    r.grad_accum_steps = opt->grad_accum_steps;
    r.processes = processes;
    r.start_step = start_step;
    r.max_steps = max_steps;
    r.wall_seconds = wall_seconds;
    r.train_seconds = timer->train_seconds;
    r.timed_steps = timer->timed_steps;
    r.mfu_percent = -1.0;
    r.sample = train_last_sample;
    r.sample_step = train_last_sample_step;
    return r;
}

// Writes the report (rank 0 of a run with -o) and frees the last sample.
static inline void train_report_finish(const RunReport *r, int process_rank) {
    if (process_rank == 0 && r->output_dir[0] != '\0') report_write_run(r);
    free(train_last_sample);
    train_last_sample = NULL;
}

#endif // LLMC_TRAIN_LOOP_H
