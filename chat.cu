// chat on the GPU: chat.c's program (completion, chat, GSM8K scoring) on the CUDA trainer's
// forward pass, one token at a time with a floatX key/value cache in GPU memory
// (llmc/kv_cache.cuh). Same flags and output as ./chat; build: make chatcu (PRECISION=FP32 for
// fp32; CUDA_EMU=1 on the CPU emulation, as make test does).
#define TESTING
// the trainer's training-only functions are unused here
#pragma GCC diagnostic ignored "-Wunused-function"
#include "train_gpt2.cu"

#include "llmc/kv_cache.cuh"

#define LLMC_CHAT_GPU
#include "chat.c"
