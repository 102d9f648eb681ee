// The training step's host pipeline (docs/gpu_performance.md, "Host pipeline"): each micro-batch
// goes through its own slot of pinned host memory (tokens, targets, mask, encoder-backward plan),
// uploaded with cudaMemcpyAsync on the model's stream, so the host prepares micro-batch k+1 while
// the GPU runs k; the step's loss is summed and its clip factor computed on the device, and the
// host reads loss and norm once, at the end of the step.
#ifndef LLMC_HOST_PIPELINE_CUH
#define LLMC_HOST_PIPELINE_CUH

#include "cuda_common.cuh"

// One micro-batch's pinned host buffers. `uploaded` is recorded after the slot's last upload:
// the host rewrites the slot only once the GPU has read it.
typedef struct {
    int *inputs, *targets; // B*T each
    int *plan;             // 3*B*T + 1: encoder_backward_plan's
    unsigned char *mask;   // B*T
    cudaEvent_t uploaded;
} PipelineSlot;

// What the host reads back once per step (pinned).
typedef struct {
    double loss_sum; // the step's sum of micro-batch losses (train_step_loss's loss_sum)
    float norm;      // the global gradient norm
} StepReadback;

typedef struct {
    PipelineSlot *slots;
    int num_slots, next;
    size_t max_BT;
    StepReadback *readback; // pinned
} HostPipeline;

// num_slots: micro-batches per step (at least 1). Each step ends with a host wait that completes
// everything, so a ring of one slot per micro-batch never has to wait for a slot.
static inline void host_pipeline_init(HostPipeline *p, int num_slots, size_t max_BT) {
    memset(p, 0, sizeof(*p));
    p->num_slots = num_slots < 1 ? 1 : num_slots;
    p->max_BT = max_BT;
    p->slots = (PipelineSlot *)calloc((size_t)p->num_slots, sizeof(PipelineSlot));
    if (p->slots == NULL) fatal("out of host memory for %d pipeline slots", p->num_slots);
    size_t ints = 2 * max_BT + 3 * max_BT + 1;
    for (int i = 0; i < p->num_slots; i++) {
        PipelineSlot *s = &p->slots[i];
        char *memory = NULL;
        cuda_check(cudaMallocHost((void **)&memory, ints * sizeof(int) + max_BT));
        s->inputs = (int *)memory;
        s->targets = s->inputs + max_BT;
        s->plan = s->targets + max_BT;
        s->mask = (unsigned char *)(s->plan + 3 * max_BT + 1);
        cuda_check(cudaEventCreateWithFlags(&s->uploaded, cudaEventDisableTiming));
    }
    cuda_check(cudaMallocHost((void **)&p->readback, sizeof(StepReadback)));
}

static inline void host_pipeline_free(HostPipeline *p) {
    if (p->slots == NULL) return;
    for (int i = 0; i < p->num_slots; i++) {
        cuda_check(cudaEventDestroy(p->slots[i].uploaded));
        cuda_check(cudaFreeHost(p->slots[i].inputs));
    }
    cuda_check(cudaFreeHost(p->readback));
    free(p->slots);
    memset(p, 0, sizeof(*p));
}

// The next slot of the ring, once the GPU has read what it held. In training that is always the
// case already (see host_pipeline_init); cudaEventQuery does not block.
// check 0 (only LLMC_PLANT_PIPELINE=early-overwrite, a planted bug) skips the event.
static inline PipelineSlot *host_pipeline_acquire(HostPipeline *p, int check) {
    PipelineSlot *s = &p->slots[p->next];
    p->next = (p->next + 1) % p->num_slots;
    if (!check) return s;
    cudaError_t status = cudaEventQuery(s->uploaded);
    if (status == cudaErrorNotReady) {
        cuda_check(cudaEventSynchronize(s->uploaded));
    } else if (status != cudaSuccess) {
        cuda_check(status);
    }
    return s;
}

// *step_sum += the loss of one micro-batch, summed as the host did before (the losses of
// positions with a nonzero mask, or all, one after another in double, in position order): the
// same bits. add_mean: add the mean (rounded to float, as BatchLoss.mean_loss), else the sum.
// One block: chunks are staged in shared memory by all threads, and thread 0 adds them up in
// order (a sequential sum is what the bits require; at B*T = 16K it is a few microseconds).
#define LOSS_SUM_BLOCK 256
__global__ void loss_accumulate_kernel(double *step_sum, const float *losses,
                                       const unsigned char *mask, int n, int add_mean) {
    __shared__ float chunk[LOSS_SUM_BLOCK];
    __shared__ unsigned char keep[LOSS_SUM_BLOCK];
    double sum = 0.0;
    int count = 0;
    for (int base = 0; base < n; base += LOSS_SUM_BLOCK) {
        int i = base + (int)threadIdx.x;
        chunk[threadIdx.x] = i < n ? losses[i] : 0.0f;
        keep[threadIdx.x] = i < n && (mask == NULL || mask[i] != 0);
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int j = 0; j < LOSS_SUM_BLOCK; j++) {
                if (!keep[j]) continue;
                sum += chunk[j];
                count++;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x != 0) return;
    double mean = count > 0 ? (double)(float)(sum / count) : 0.0;
    *step_sum += add_mean ? mean : sum;
}

static inline void loss_accumulate(double *step_sum, const float *losses, const unsigned char *mask,
                                   int n, int add_mean, cudaStream_t stream) {
    LLMC_LAUNCH(loss_accumulate_kernel, 1, LOSS_SUM_BLOCK, 0, stream)
    (step_sum, losses, mask, n, add_mean);
    cuda_check(cudaGetLastError());
}

// *scale = the AdamW gradient scale of the step: gpt2_clip_scale (llmc/train_loop.h) of *norm,
// the same float operations; NaN when the norm or the step's loss, (float)(*loss_sum /
// loss_divisor), is not finite: AdamW then skips the update, as the host stops the run before it.
__global__ void clip_scale_kernel(float *scale, const float *norm, const double *loss_sum,
                                  double loss_divisor, float max_norm) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    float n = *norm;
    float loss = loss_divisor > 0.0 ? (float)(*loss_sum / loss_divisor) : 0.0f;
    if (!isfinite(n) || !isfinite(loss)) {
        *scale = NAN;
        return;
    }
    float coef = max_norm > 0.0f ? max_norm / (n + 1e-6f) : 1.0f;
    *scale = coef < 1.0f ? coef : 1.0f;
}

static inline void clip_scale(float *scale, const float *norm, const double *loss_sum,
                              double loss_divisor, float max_norm, cudaStream_t stream) {
    LLMC_LAUNCH(clip_scale_kernel, 1, 1, 0, stream)(scale, norm, loss_sum, loss_divisor, max_norm);
    cuda_check(cudaGetLastError());
}

#endif // LLMC_HOST_PIPELINE_CUH
