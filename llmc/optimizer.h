// Which optimizer a run uses (--optimizer adamw|muon) and Muon's settings: what the options, the
// checkpoint's run record and both trainers share. The CPU implementation of Muon is llmc/muon.h.
#ifndef LLMC_OPTIMIZER_H
#define LLMC_OPTIMIZER_H

#include <string.h>

typedef enum { OPTIMIZER_ADAMW = 0, OPTIMIZER_MUON = 1 } OptimizerKind;

// The quintic's coefficients (Keller Jordan's modded-nanogpt): they push every singular value of
// X (all in (0, 1] after the Frobenius normalisation) into roughly [0.7, 1.2] in 5 iterations.
#define MUON_NS_A 3.4445f
#define MUON_NS_B (-4.7750f)
#define MUON_NS_C 2.0315f
#define MUON_NORM_EPS 1e-7f
#define MUON_MAX_NS_STEPS 100

// 0 is what every state file without the field holds: AdamW.
static inline const char *optimizer_name(int kind) {
    return kind == OPTIMIZER_MUON ? "muon" : "adamw";
}

// "adamw" or "muon" -> kind; 0 if neither.
static inline int optimizer_from_name(const char *name, int *kind) {
    if (strcmp(name, "adamw") == 0) {
        *kind = OPTIMIZER_ADAMW;
    } else if (strcmp(name, "muon") == 0) {
        *kind = OPTIMIZER_MUON;
    } else {
        return 0;
    }
    return 1;
}

typedef struct {
    float learning_rate; // this step's: --muon-lr scaled by the schedule like -l
    float momentum;
    float weight_decay; // -c, as AdamW's matrices
    int ns_steps;
} MuonConfig;

#endif // LLMC_OPTIMIZER_H
