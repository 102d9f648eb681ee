// Guards against a diverging run, shared by both trainers: a step whose loss or gradient norm is
// not finite stops the run before its update (which would write NaN into the weights and the
// AdamW moments), a checkpoint holding a non-finite value is never written, and an outlier
// detector (llm.c's idea: the z-score of the loss and of the gradient norm against a moving
// window) skips the update of a spike step.
#ifndef LLMC_DIVERGENCE_H
#define LLMC_DIVERGENCE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "utils.h"

// ----------------------------------------------------------------------------
// Non-finite values

// Index of the first non-finite (NaN or infinite) value of values[0..count), or count when all
// are finite. Tests the exponent bits a chunk at a time (a loop that vectorises), so the scan is
// one pass at memory speed; only a chunk that has one is searched element by element.
static inline size_t first_non_finite(const float *values, size_t count) {
    const size_t chunk = 4096;
    for (size_t start = 0; start < count; start += chunk) {
        size_t end = count - start < chunk ? count : start + chunk;
        uint32_t found = 0;
        for (size_t i = start; i < end; i++) {
            uint32_t bits;
            memcpy(&bits, values + i, sizeof(bits));
            found |= (uint32_t)((bits & 0x7f800000u) == 0x7f800000u);
        }
        if (found) {
            for (size_t i = start; i < end; i++) {
                if (!isfinite(values[i])) return i;
            }
        }
    }
    return count;
}

// One tensor a checkpoint is about to hold (values NULL or count 0: not held by this process).
typedef struct {
    const char *name;
    const float *values;
    size_t count;
} CheckedTensor;

// 1 when a value of the tensors is not finite, with *problem naming the first (tensor, element,
// value); else 0.
static inline int tensors_find_non_finite(const CheckedTensor *tensors, int count, char *problem,
                                          size_t size) {
    for (int k = 0; k < count; k++) {
        if (tensors[k].values == NULL) continue;
        size_t i = first_non_finite(tensors[k].values, tensors[k].count);
        if (i < tensors[k].count) {
            float value = tensors[k].values[i];
            snprintf(problem, size, "%s[%zu]: expected a finite value, found %g", tensors[k].name,
                     i, isnan(value) ? (double)NAN : (double)value);
            return 1;
        }
    }
    return 0;
}

// Stops before any file of the checkpoint of step is written: the newest complete checkpoint
// stays the one -y 1 resumes. problem: tensors_find_non_finite's (or why this process stops).
static inline void checkpoint_refuse_non_finite(const char *dir, int step, const char *problem)
    __attribute__((noreturn));
static inline void checkpoint_refuse_non_finite(const char *dir, int step, const char *problem) {
    fatal("%s/model_%08d.bin: %s: the checkpoint of step %d is not written (the run diverged); "
          "lower -l or enable --grad-clip, and resume from the last checkpoint with -y 1",
          dir, step, problem, step);
}

// Stops the run when step's (0-based) loss or gradient norm is not finite, before its update.
static inline void divergence_check_step(int step, float loss, float norm, const char *output_dir) {
    if (isfinite(loss) && isfinite(norm)) return;
    const char *what = isfinite(loss) ? "gradient norm" : "loss";
    float value = isfinite(loss) ? norm : loss;
    if (isnan(value)) value = NAN; // "nan", not "-nan"
    if (output_dir[0] == '\0') {
        fatal("step %d: %s: expected a finite value, found %g: the run diverged and stopped before "
              "the update; lower -l or enable --grad-clip (e.g. 1)",
              step + 1, what, (double)value);
    }
    fatal("step %d: %s: expected a finite value, found %g: the run diverged and stopped before the "
          "update; lower -l or enable --grad-clip (e.g. 1), and resume from the last checkpoint in "
          "%s with -y 1",
          step + 1, what, (double)value, output_dir);
}

// ----------------------------------------------------------------------------
// Outlier detector: the z-score of a step's loss and of its gradient norm against the last
// `window` accepted values of each; a step whose z-score exceeds a threshold is a spike and its
// update is skipped. A spike's value stays out of its window, so that it does not widen what
// counts as normal; but from the OUTLIER_ADMIT_AFTER+1-th spike of a signal in a row on, the
// values enter the window (still skipped while they stand out), so a lasting change of level is
// learned within a few steps instead of stalling the run.

#define OUTLIER_WINDOW_MAX 1024
#define OUTLIER_ADMIT_AFTER 2

// One signal's history: the accepted values, oldest first.
typedef struct {
    float values[OUTLIER_WINDOW_MAX];
    int count;
    int outliers_in_a_row;
} OutlierWindow;

// What a checkpoint keeps of the detector (in the state file), so a resumed run judges the
// following steps exactly as the straight run does.
typedef struct {
    OutlierWindow loss, norm;
} OutlierHistory;

typedef struct {
    int window;                           // values per signal before any step is judged
    float loss_threshold, norm_threshold; // z-scores above which the update is skipped (0: off)
    OutlierHistory history;
} OutlierDetector;

// The detector's verdict on one step.
typedef struct {
    double loss_z, norm_z; // NaN while a window is not full
    int skip_loss, skip_norm;
} OutlierVerdict;

// 1 when the verdict skips the step's update (either signal was a spike).
static inline int outlier_verdict_skips(const OutlierVerdict *verdict) {
    return verdict->skip_loss || verdict->skip_norm;
}

static inline void outlier_detector_init(OutlierDetector *detector, int window,
                                         float loss_threshold, float norm_threshold) {
    memset(detector, 0, sizeof(*detector));
    detector->window = window;
    detector->loss_threshold = loss_threshold;
    detector->norm_threshold = norm_threshold;
}

// z-score of value against a full window (two passes in double: the same bits on every resume);
// NaN while it fills, 0 when all its values are equal.
static inline double outlier_window_z(const OutlierWindow *w, int window, float value) {
    if (w->count < window) return NAN;
    double sum = 0.0;
    for (int i = 0; i < w->count; i++) sum += w->values[i];
    double mean = sum / w->count, squares = 0.0;
    for (int i = 0; i < w->count; i++) {
        double d = w->values[i] - mean;
        squares += d * d;
    }
    double std_dev = sqrt(squares / w->count);
    return std_dev > 0.0 ? (value - mean) / std_dev : 0.0;
}

// Keeps the newest `window` values of w (a resumed run may set another --outlier-window).
static inline void outlier_window_trim(OutlierWindow *w, int window) {
    if (w->count <= window) return;
    memmove(w->values, w->values + (w->count - window), (size_t)window * sizeof(float));
    w->count = window;
}

static inline void outlier_window_push(OutlierWindow *w, int window, float value) {
    if (w->count == window) {
        memmove(w->values, w->values + 1, (size_t)(window - 1) * sizeof(float));
        w->count--;
    }
    w->values[w->count++] = value;
}

// Judges one signal: 1 when z exceeds threshold (> 0); updates its window and spike count.
static inline int outlier_window_judge(OutlierWindow *w, int window, float threshold, float value,
                                       double *z) {
    *z = outlier_window_z(w, window, value);
    int outlier = threshold > 0.0f && isfinite(*z) && *z > threshold;
    w->outliers_in_a_row = outlier ? w->outliers_in_a_row + 1 : 0;
    if (!outlier || w->outliers_in_a_row > OUTLIER_ADMIT_AFTER) {
        outlier_window_push(w, window, value);
    }
    return outlier;
}

// Judges a step by its (finite) loss and gradient norm.
static inline OutlierVerdict outlier_detector_judge(OutlierDetector *detector, float loss,
                                                    float norm) {
    OutlierVerdict verdict;
    OutlierHistory *h = &detector->history;
    verdict.skip_loss = outlier_window_judge(&h->loss, detector->window, detector->loss_threshold,
                                             loss, &verdict.loss_z);
    verdict.skip_norm = outlier_window_judge(&h->norm, detector->window, detector->norm_threshold,
                                             norm, &verdict.norm_z);
    return verdict;
}

// 1 when outlier_detector_judge may skip the next step: a signal with a threshold has a full
// window (while its window fills, its z-score is NaN and never skips). Otherwise a trainer may
// launch the update before it knows the step's loss and norm.
static inline int outlier_detector_may_skip(const OutlierDetector *detector) {
    const OutlierHistory *h = &detector->history;
    return (detector->loss_threshold > 0.0f && h->loss.count >= detector->window) ||
           (detector->norm_threshold > 0.0f && h->norm.count >= detector->window);
}

// A resumed run's detector continues from a checkpoint's history.
static inline void outlier_detector_restore(OutlierDetector *detector,
                                            const OutlierHistory *history) {
    detector->history = *history;
    outlier_window_trim(&detector->history.loss, detector->window);
    outlier_window_trim(&detector->history.norm, detector->window);
}

// ----------------------------------------------------------------------------
// The history in the state file (docs/formats.md): header slot 50 holds the number of values per
// signal (0 in llm.c's files: no history), 51 and 52 the loss's and the norm's spikes in a row;
// after the loader state come the loss values, then the norm values (float32, oldest first).
// llm.c's reader stops before them, so it still reads our files.

#define OUTLIER_HEADER_SLOT 50

// history NULL: none (the slots stay 0, nothing follows the loader state).
static inline void outlier_history_put_header(const OutlierHistory *history, int32_t *header) {
    if (history == NULL) return;
    header[OUTLIER_HEADER_SLOT] = history->loss.count;
    header[OUTLIER_HEADER_SLOT + 1] = history->loss.outliers_in_a_row;
    header[OUTLIER_HEADER_SLOT + 2] = history->norm.outliers_in_a_row;
}

static inline void outlier_history_write(const OutlierHistory *history, FILE *file,
                                         const char *path, uint32_t *crc) {
    if (history == NULL) return;
    if (history->norm.count != history->loss.count) {
        fatal("internal: outlier windows of %d and %d values", history->loss.count,
              history->norm.count);
    }
    fwrite_crc(history->loss.values, sizeof(float), (size_t)history->loss.count, file, path, crc);
    fwrite_crc(history->norm.values, sizeof(float), (size_t)history->norm.count, file, path, crc);
}

// The number of values of each signal a state file's header announces, checked.
static inline int outlier_history_count(const int32_t *header, const char *path) {
    int count = header[OUTLIER_HEADER_SLOT];
    if (count < 0 || count > OUTLIER_WINDOW_MAX) {
        fatal("%s: header[%d]: expected 0..%d outlier-detector values, found %d", path,
              OUTLIER_HEADER_SLOT, OUTLIER_WINDOW_MAX, count);
    }
    return count;
}

// The bytes of history after the loader state (a loss and a norm per value).
static inline size_t outlier_history_bytes(const int32_t *header, const char *path) {
    return (size_t)outlier_history_count(header, path) * 2 * sizeof(float);
}

// Reads the history a state file's header announces (none: all zero) into *history (NULL: read
// and dropped); validates every field; crc takes the bytes read.
static inline void outlier_history_read(OutlierHistory *history, const int32_t *header, FILE *file,
                                        const char *path, uint32_t *crc) {
    OutlierHistory dropped;
    if (history == NULL) history = &dropped;
    memset(history, 0, sizeof(*history));
    int count = outlier_history_count(header, path);
    for (int k = 1; k <= 2; k++) {
        int in_a_row = header[OUTLIER_HEADER_SLOT + k];
        if (in_a_row < 0) {
            fatal("%s: header[%d]: expected a count of spikes >= 0, found %d", path,
                  OUTLIER_HEADER_SLOT + k, in_a_row);
        }
    }
    history->loss.count = history->norm.count = count;
    history->loss.outliers_in_a_row = header[OUTLIER_HEADER_SLOT + 1];
    history->norm.outliers_in_a_row = header[OUTLIER_HEADER_SLOT + 2];
    fread_crc(history->loss.values, sizeof(float), (size_t)count, file, path,
              "outlier-detector losses", crc);
    fread_crc(history->norm.values, sizeof(float), (size_t)count, file, path,
              "outlier-detector gradient norms", crc);
    for (int i = 0; i < count; i++) {
        if (!isfinite(history->loss.values[i]) || !isfinite(history->norm.values[i])) {
            fatal("%s: outlier-detector value %d: expected a finite loss and norm, found %g, %g",
                  path, i, (double)history->loss.values[i], (double)history->norm.values[i]);
        }
    }
}

#endif // LLMC_DIVERGENCE_H
