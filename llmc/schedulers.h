// Learning-rate schedules, identical to get_lr() in scripts/train_gpt2.py.
// Every schedule starts with a linear warmup over `warmup_steps`: lr * (step + 1) / warmup.
//   cosine:   lr_min + 0.5 * (1 + cos(pi * ratio)) * (lr - lr_min), ratio over the post-warmup
//   steps linear:   lr - ratio * (lr - lr_min) constant: lr wsd:      warmup, stable at lr, then
//   over the last 20% of steps lr_min + (lr - lr_min) * (1 - sqrt(p))
// with lr_min = lr * final_fraction.
#ifndef LLMC_SCHEDULERS_H
#define LLMC_SCHEDULERS_H

#include <math.h>
#include <string.h>

#include "utils.h"

typedef enum { SCHEDULE_COSINE, SCHEDULE_LINEAR, SCHEDULE_CONSTANT, SCHEDULE_WSD } ScheduleType;

typedef struct {
    ScheduleType type;
    float learning_rate;
    int warmup_steps;
    int max_steps;
    float final_fraction;
} LRScheduler;

// Returns 1 and sets *type if name is a known schedule.
static inline int schedule_from_name(const char *name, ScheduleType *type) {
    if (strcmp(name, "cosine") == 0)
        *type = SCHEDULE_COSINE;
    else if (strcmp(name, "linear") == 0)
        *type = SCHEDULE_LINEAR;
    else if (strcmp(name, "constant") == 0)
        *type = SCHEDULE_CONSTANT;
    else if (strcmp(name, "wsd") == 0)
        *type = SCHEDULE_WSD;
    else
        return 0;
    return 1;
}

static inline float lr_scheduler_get(const LRScheduler *s, int step) {
    double lr = s->learning_rate;
    double lr_min = lr * s->final_fraction;
    if (step < s->warmup_steps) {
        return (float)(lr * (step + 1) / s->warmup_steps);
    }
    int decay_steps = s->max_steps - s->warmup_steps;
    double ratio = decay_steps > 0 ? (double)(step - s->warmup_steps) / decay_steps : 0.0;
    switch (s->type) {
    case SCHEDULE_COSINE:
        return (float)(lr_min + 0.5 * (1.0 + cos(3.14159265358979323846 * ratio)) * (lr - lr_min));
    case SCHEDULE_LINEAR: return (float)(lr - ratio * (lr - lr_min));
    case SCHEDULE_CONSTANT: return (float)lr;
    case SCHEDULE_WSD: {
        int decay_start = s->max_steps - (int)(0.2 * s->max_steps);
        if (step < decay_start) {
            return (float)lr;
        }
        double progress = (double)(step - decay_start) / (s->max_steps - decay_start);
        return (float)(lr_min + (lr - lr_min) * (1.0 - sqrt(progress)));
    }
    }
    return (float)lr;
}

#endif // LLMC_SCHEDULERS_H
