// Causal self-attention through cuDNN's fused (flash) attention, forward and backward, for BF16
// builds (USE_CUDNN=1, the default there). The graph code is C++ (cudnn-frontend) and lives alone
// in llmc/cudnn_att.cpp; this header is the C-like interface train_gpt2.cu calls through
// llmc/attention.cuh. Layouts are those of our own kernels: q, k and v read in place from the qkv
// projection's rows [NH*HS q | KV*HS k | KV*HS v] (GPT-2: KV == NH, (B,T,3,NH,HS); llama's
// grouped-query attention: KV < NH key/value heads, query head h using kv head h / (NH / KV)), out
// written as (B,T,C), C = NH * HS, and the softmax statistics kept as the natural log-sum-exp of
// each scaled score row, lse (B,NH,T) in fp32, the same numbers our kernel keeps.
// Under the emulation (LLMC_CUDA_EMU) the same file compiles against a CPU stand-in of the
// frontend (llmc/cuda_emu/include/cudnn_frontend.h, docs/cuda_emu.md says what it cannot check).
#ifndef LLMC_CUDNN_ATT_H
#define LLMC_CUDNN_ATT_H

#include "cuda_common.cuh"

// cuDNN's fused attention needs a head size that is a multiple of 8, at most 128 here (the
// largest size our trainer accepts); other sizes run on our own kernels.
static inline int attention_cudnn_supports(int HS) {
    return HS % 8 == 0 && HS <= 128;
}

// out (B,T,C) and lse (B,NH,T) are written from qkv (B,T,(NH + 2 KV) HS).
void attention_forward_cudnn(floatX *out, float *lse, const floatX *qkv, int B, int T, int NH,
                             int KV, int HS, cudaStream_t stream);
// dqkv (B,T,(NH + 2 KV) HS) is overwritten from dout (B,T,C) and forward's out, lse and qkv.
// Deterministic (cuDNN's deterministic backward algorithm): the same bits every run.
void attention_backward_cudnn(floatX *dqkv, const floatX *dout, const floatX *out,
                              const floatX *qkv, const float *lse, int B, int T, int NH, int KV,
                              int HS, cudaStream_t stream);
// Builds (and caches) the forward and backward graphs for this shape and returns the larger of
// their workspaces in bytes, which is then allocated once: the trainer's memory plan prints it.
size_t attention_cudnn_workspace_bytes(int B, int T, int NH, int KV, int HS);
// Frees the cached graphs, the workspace and the cuDNN handle.
void attention_cudnn_free(void);

#endif // LLMC_CUDNN_ATT_H
