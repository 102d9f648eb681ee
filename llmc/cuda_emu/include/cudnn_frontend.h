// The CPU emulation's stand-in for cudnn-frontend (and the few cuDNN handle calls beside it):
// just the part of the graph API that llmc/cudnn_att.cpp uses, with the same names and
// signatures as the pinned cudnn-frontend 1.16, so that the same glue code compiles against either.
// Scaled dot-product attention (sdpa, sdpa_backward) runs here on the CPU on exactly the tensors
// the graph describes: every dimension and stride the glue sets is used to address memory, the
// scale comes from the pass-by-value tensor, and the statistics are the natural log-sum-exp of
// each scaled score row, as cuDNN's are. A graph must be validated, built, planned and checked
// before execute, and execute needs a pointer for every tensor id; the backward's workspace is
// really used (its fp32 dQ accumulator), so a missing or short one is an error or an ASan report.
// Numerics follow a flash-attention kernel on tensor cores: fp32 scores and sums, with the
// probabilities (and dS) rounded to bf16 before they multiply V (and K, Q), as bf16 MMA needs.
// What it cannot check is listed in docs/cuda_emu.md.
#ifndef LLMC_CUDA_EMU_CUDNN_FRONTEND_H
#define LLMC_CUDA_EMU_CUDNN_FRONTEND_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <array>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "../cuda_emu.h"

// ---------------------------------------------------------------------------------------------
// cuDNN's handle (cudnn.h): only what the glue calls.
typedef enum {
    CUDNN_STATUS_SUCCESS = 0,
    CUDNN_STATUS_BAD_PARAM = 2000,
} cudnnStatus_t;
struct llmc_emu_cudnn_context {
    cudaStream_t stream;
};
typedef llmc_emu_cudnn_context *cudnnHandle_t;

inline cudnnStatus_t cudnnCreate(cudnnHandle_t *handle) {
    if (handle == nullptr) return CUDNN_STATUS_BAD_PARAM;
    *handle = new llmc_emu_cudnn_context{nullptr};
    return CUDNN_STATUS_SUCCESS;
}
inline cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
    if (handle == nullptr) return CUDNN_STATUS_BAD_PARAM;
    delete handle;
    return CUDNN_STATUS_SUCCESS;
}
inline cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
    if (handle == nullptr) return CUDNN_STATUS_BAD_PARAM;
    handle->stream = stream;
    return CUDNN_STATUS_SUCCESS;
}
inline const char *cudnnGetErrorString(cudnnStatus_t status) {
    return status == CUDNN_STATUS_SUCCESS ? "CUDNN_STATUS_SUCCESS" : "CUDNN_STATUS_BAD_PARAM";
}

namespace cudnn_frontend {

enum class DataType_t { NOT_SET, FLOAT, DOUBLE, HALF, INT8, INT32, INT64, BFLOAT16 };
enum class HeurMode_t { A, B, FALLBACK };

class error_object {
  public:
    error_object() = default;
    explicit error_object(std::string message) : bad(true), message(std::move(message)) {}
    bool is_good() const { return !bad; }
    bool is_bad() const { return bad; }
    std::string get_message() { return message; }

  private:
    bool bad = false;
    std::string message;
};
typedef error_object error_t;

namespace graph {

class Tensor_attributes {
  public:
    Tensor_attributes &set_name(const std::string &value) {
        name = value;
        return *this;
    }
    Tensor_attributes &set_uid(int64_t value) {
        uid = value;
        has_uid = true;
        return *this;
    }
    Tensor_attributes &set_dim(const std::vector<int64_t> &value) {
        dim = value;
        return *this;
    }
    Tensor_attributes &set_stride(const std::vector<int64_t> &value) {
        stride = value;
        return *this;
    }
    Tensor_attributes &set_data_type(DataType_t value) {
        data_type = value;
        return *this;
    }
    Tensor_attributes &set_is_pass_by_value(bool value) {
        pass_by_value = value;
        return *this;
    }
    Tensor_attributes &set_output(bool value) {
        output = value;
        return *this;
    }
    int64_t get_uid() const { return uid; }
    const std::string &get_name() const { return name; }

    std::string name;
    int64_t uid = 0;
    bool has_uid = false, pass_by_value = false, output = false;
    std::vector<int64_t> dim, stride;
    DataType_t data_type = DataType_t::NOT_SET;
};
typedef std::shared_ptr<Tensor_attributes> TensorPtr;

class SDPA_attributes {
  public:
    SDPA_attributes &set_name(const std::string &value) {
        name = value;
        return *this;
    }
    SDPA_attributes &set_generate_stats(bool value) {
        generate_stats = value;
        return *this;
    }
    SDPA_attributes &set_causal_mask(bool value) {
        causal = value;
        return *this;
    }
    SDPA_attributes &set_attn_scale(TensorPtr value) {
        attn_scale = value;
        return *this;
    }
    std::string name;
    bool generate_stats = false, causal = false;
    TensorPtr attn_scale;
};

class SDPA_backward_attributes {
  public:
    SDPA_backward_attributes &set_name(const std::string &value) {
        name = value;
        return *this;
    }
    SDPA_backward_attributes &set_causal_mask(bool value) {
        causal = value;
        return *this;
    }
    SDPA_backward_attributes &set_attn_scale(TensorPtr value) {
        attn_scale = value;
        return *this;
    }
    SDPA_backward_attributes &set_deterministic_algorithm(bool value) {
        deterministic = value;
        return *this;
    }
    std::string name;
    bool causal = false, deterministic = false;
    TensorPtr attn_scale;
};

class Graph {
  public:
    Graph &set_io_data_type(DataType_t type) {
        io_type = type;
        return *this;
    }
    Graph &set_intermediate_data_type(DataType_t type) {
        intermediate_type = type;
        return *this;
    }
    Graph &set_compute_data_type(DataType_t type) {
        compute_type = type;
        return *this;
    }
    TensorPtr tensor(const Tensor_attributes &attributes) {
        tensors.push_back(std::make_shared<Tensor_attributes>(attributes));
        return tensors.back();
    }
    // outputs O and stats; stats (B,H,S,1) only with generate_stats
    std::array<TensorPtr, 2> sdpa(TensorPtr q, TensorPtr k, TensorPtr v, SDPA_attributes options) {
        if (operation != NONE)
            errors += "one attention operation per graph (the stand-in's limit); ";
        operation = FORWARD;
        Q = q, K = k, V = v, scale = options.attn_scale, causal = options.causal;
        O = tensor(Tensor_attributes().set_name(options.name + "::O"));
        stats = options.generate_stats
                    ? tensor(Tensor_attributes().set_name(options.name + "::Stats"))
                    : nullptr;
        return {O, stats};
    }
    // outputs dQ, dK, dV
    std::array<TensorPtr, 3> sdpa_backward(TensorPtr q, TensorPtr k, TensorPtr v, TensorPtr o,
                                           TensorPtr d_o, TensorPtr s,
                                           SDPA_backward_attributes options) {
        if (operation != NONE)
            errors += "one attention operation per graph (the stand-in's limit); ";
        operation = BACKWARD;
        Q = q, K = k, V = v, O = o, dO = d_o, stats = s, scale = options.attn_scale;
        causal = options.causal;
        deterministic = options.deterministic;
        dQ = tensor(Tensor_attributes().set_name(options.name + "::dQ"));
        dK = tensor(Tensor_attributes().set_name(options.name + "::dK"));
        dV = tensor(Tensor_attributes().set_name(options.name + "::dV"));
        return {dQ, dK, dV};
    }

    error_t validate() {
        std::string e = errors;
        if (operation == NONE) e += "no operation; ";
        if (io_type == DataType_t::NOT_SET) e += "io data type not set; ";
        if (compute_type != DataType_t::FLOAT) e += "compute data type must be FLOAT; ";
        if (scale == nullptr || !scale->pass_by_value || scale->data_type != DataType_t::FLOAT ||
            scale->dim != std::vector<int64_t>{1, 1, 1, 1}) {
            e += "attn_scale must be a pass-by-value FLOAT tensor of dim {1,1,1,1}; ";
        }
        for (const TensorPtr &t : operands()) {
            if (t == nullptr) {
                e += "a missing operand; ";
                continue;
            }
            if (t->dim.size() != 4 || t->stride.size() != 4) {
                e += t->name + ": dim and stride must have 4 entries; ";
                continue;
            }
            for (int i = 0; i < 4; i++) {
                if (t->dim[i] < 1 || t->stride[i] < 1) e += t->name + ": dim/stride < 1; ";
            }
            if (!t->has_uid) e += t->name + ": no uid; ";
        }
        if (!e.empty()) return error_t("validate: " + e);
        int64_t B = Q->dim[0], H = Q->dim[1], S = Q->dim[2], D = Q->dim[3];
        // grouped-query attention: K and V may have fewer heads, a divisor of Q's
        int64_t H_kv = K->dim[1];
        std::vector<int64_t> qkv_dim = {B, H, S, D}, kv_dim = {B, H_kv, S, D},
                             stats_dim = {B, H, S, 1};
        if (H % H_kv != 0) e += "K: its heads do not divide Q's; ";
        for (const TensorPtr &t : {K, V}) {
            if (t->dim != kv_dim)
                e += t->name + ": dim differs from {B,H_kv,S,D} (self-attention); ";
        }
        if (O->dim != qkv_dim) e += "O: dim differs from Q's; ";
        if (operation == BACKWARD) {
            for (const TensorPtr &t : {dO, dQ}) {
                if (t->dim != qkv_dim) e += t->name + ": dim differs from Q's; ";
            }
            for (const TensorPtr &t : {dK, dV}) {
                if (t->dim != kv_dim) e += t->name + ": dim differs from K's; ";
            }
        }
        if (stats != nullptr) {
            if (stats->dim != stats_dim) e += "stats: dim must be {B,H,S,1}; ";
            if (stats->data_type != DataType_t::FLOAT) e += "stats: data type must be FLOAT; ";
        }
        for (const TensorPtr &t : outputs()) {
            if (!t->output) e += t->name + ": not marked as an output; ";
        }
        std::unordered_map<int64_t, int> seen;
        for (const TensorPtr &t : operands()) {
            if (seen[t->uid]++) e += t->name + ": uid used twice; ";
        }
        if (!e.empty()) return error_t("validate: " + e);
        validated = true;
        return error_t();
    }
    error_t build_operation_graph(cudnnHandle_t handle) {
        if (!validated || handle == nullptr) return error_t("build_operation_graph: not validated");
        built = true;
        return error_t();
    }
    error_t create_execution_plans(const std::vector<HeurMode_t> &modes) {
        if (!built || modes.empty()) return error_t("create_execution_plans: graph not built");
        planned = true;
        return error_t();
    }
    // What cuDNN's fused flash attention needs (the documented constraints, conservatively).
    error_t check_support(cudnnHandle_t handle) {
        if (!planned || handle == nullptr) return error_t("check_support: no execution plans");
        std::string e;
        if (io_type != DataType_t::BFLOAT16)
            e += "io data type must be BFLOAT16 (the stand-in's); ";
        if (Q->dim[3] % 8 != 0 || Q->dim[3] > 128)
            e += "head dim must be a multiple of 8, <= 128; ";
        for (const TensorPtr &t : operands()) {
            if (t->stride[3] != 1) e += t->name + ": the last dimension must have stride 1; ";
        }
        if (!e.empty()) return error_t("check_support: " + e);
        supported = true;
        return error_t();
    }
    error_t build_plans(cudnnHandle_t handle) {
        if (!supported || handle == nullptr) return error_t("build_plans: support not checked");
        plans_built = true;
        return error_t();
    }
    // backward: an fp32 dQ accumulator of B*H*S*D floats, as a deterministic kernel needs
    int64_t get_workspace_size() const {
        return operation == BACKWARD && Q != nullptr && Q->dim.size() == 4
                   ? Q->dim[0] * Q->dim[1] * Q->dim[2] * Q->dim[3] * (int64_t)sizeof(float)
                   : 0;
    }

    error_t execute(cudnnHandle_t handle, std::unordered_map<int64_t, void *> &pack,
                    void *workspace) const {
        if (!plans_built || handle == nullptr) return error_t("execute: plans not built");
        for (const TensorPtr &t : operands()) {
            auto found = pack.find(t->uid);
            if (found == pack.end() || found->second == nullptr) {
                return error_t("execute: no pointer for tensor " + t->name);
            }
        }
        if (get_workspace_size() > 0 && workspace == nullptr) {
            return error_t("execute: the graph needs a workspace");
        }
        // stream order: the emulation runs streams synchronously, so work done now is in order
        float attn_scale = *(const float *)pack.at(scale->uid);
        if (operation == FORWARD) {
            forward(pack, attn_scale);
        } else {
            backward(pack, attn_scale, (float *)workspace);
        }
        return error_t();
    }

  private:
    enum Operation { NONE, FORWARD, BACKWARD };
    std::vector<TensorPtr> outputs() const {
        if (operation == FORWARD)
            return stats ? std::vector<TensorPtr>{O, stats} : std::vector<TensorPtr>{O};
        return {dQ, dK, dV};
    }
    std::vector<TensorPtr> operands() const {
        std::vector<TensorPtr> all = {Q, K, V, O};
        if (stats != nullptr) all.push_back(stats);
        if (operation == BACKWARD) all.insert(all.end(), {dO, dQ, dK, dV});
        return all;
    }
    static size_t offset(const Tensor_attributes &t, int64_t b, int64_t h, int64_t s) {
        return (size_t)(b * t.stride[0] + h * t.stride[1] + s * t.stride[2]);
    }
    static float load(const void *base, const Tensor_attributes &t, int64_t b, int64_t h, int64_t s,
                      int64_t d) {
        unsigned short bits;
        memcpy(&bits, (const char *)base + 2 * (offset(t, b, h, s) + (size_t)d * t.stride[3]), 2);
        return llmc_emu::bf16_bits_to_float(bits);
    }
    static void store(void *base, const Tensor_attributes &t, int64_t b, int64_t h, int64_t s,
                      int64_t d, float value) {
        unsigned short bits = llmc_emu::float_to_bf16_bits(value);
        memcpy((char *)base + 2 * (offset(t, b, h, s) + (size_t)d * t.stride[3]), &bits, 2);
    }
    static float round_bf16(float x) {
        return llmc_emu::bf16_bits_to_float(llmc_emu::float_to_bf16_bits(x));
    }
    // The key/value head query head h reads (grouped-query attention; h itself when they match).
    int64_t kv_head(int64_t h) const { return h / (Q->dim[1] / K->dim[1]); }
    // Scaled scores of query s against keys 0..last (last = s when causal, else S - 1).
    float score(const void *q, const void *k, float attn_scale, int64_t b, int64_t h, int64_t s,
                int64_t j) const {
        float dot = 0.0f;
        for (int64_t d = 0; d < Q->dim[3]; d++) {
            dot += load(q, *Q, b, h, s, d) * load(k, *K, b, kv_head(h), j, d);
        }
        return dot * attn_scale;
    }
    int64_t last_key(int64_t s) const { return causal ? s : Q->dim[2] - 1; }

    void forward(const std::unordered_map<int64_t, void *> &pack, float attn_scale) const {
        int64_t B = Q->dim[0], H = Q->dim[1], S = Q->dim[2], D = Q->dim[3];
        const void *q = pack.at(Q->uid), *k = pack.at(K->uid), *v = pack.at(V->uid);
        void *out = pack.at(O->uid);
        float *lse = stats != nullptr ? (float *)pack.at(stats->uid) : nullptr;
#pragma omp parallel for collapse(2)
        for (int64_t b = 0; b < B; b++) {
            for (int64_t h = 0; h < H; h++) {
                std::vector<float> p(S), o(D);
                for (int64_t s = 0; s < S; s++) {
                    float max = -INFINITY, sum = 0.0f;
                    for (int64_t j = 0; j <= last_key(s); j++) {
                        p[j] = score(q, k, attn_scale, b, h, s, j);
                        max = fmaxf(max, p[j]);
                    }
                    for (int64_t j = 0; j <= last_key(s); j++) {
                        p[j] = expf(p[j] - max);
                        sum += p[j];
                    }
                    for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
                    for (int64_t j = 0; j <= last_key(s); j++) {
                        float pj = round_bf16(p[j]);
                        for (int64_t d = 0; d < D; d++) {
                            o[d] += pj * load(v, *V, b, kv_head(h), j, d);
                        }
                    }
                    for (int64_t d = 0; d < D; d++) store(out, *O, b, h, s, d, o[d] / sum);
                    if (lse != nullptr) lse[offset(*stats, b, h, s)] = max + logf(sum);
                }
            }
        }
    }

    // dK and dV of a kv head sum over its group's query heads, in head order (one head: MHA).
    void backward(const std::unordered_map<int64_t, void *> &pack, float attn_scale,
                  float *dq_accumulator) const {
        int64_t B = Q->dim[0], H = Q->dim[1], S = Q->dim[2], D = Q->dim[3], H_kv = K->dim[1];
        int64_t group = H / H_kv;
        const float *lse = (const float *)pack.at(stats->uid);
        const void *q = pack.at(Q->uid), *k = pack.at(K->uid), *v = pack.at(V->uid);
        const void *out = pack.at(O->uid), *dout = pack.at(dO->uid);
        void *dq_out = pack.at(dQ->uid), *dk_out = pack.at(dK->uid), *dv_out = pack.at(dV->uid);
#pragma omp parallel for collapse(2)
        for (int64_t b = 0; b < B; b++) {
            for (int64_t g = 0; g < H_kv; g++) {
                std::vector<float> dk((size_t)(S * D), 0.0f), dv((size_t)(S * D), 0.0f);
                for (int64_t h = g * group; h < (g + 1) * group; h++) {
                    float *dq = dq_accumulator + (size_t)((b * H + h) * S * D);
                    for (int64_t i = 0; i < S * D; i++) dq[i] = 0.0f;
                    for (int64_t s = 0; s < S; s++) {
                        float row_dsum = 0.0f; // D = rowsum(dO * O)
                        for (int64_t d = 0; d < D; d++) {
                            row_dsum += load(dout, *dO, b, h, s, d) * load(out, *O, b, h, s, d);
                        }
                        float row_lse = lse[offset(*stats, b, h, s)];
                        for (int64_t j = 0; j <= last_key(s); j++) {
                            float p = expf(score(q, k, attn_scale, b, h, s, j) - row_lse);
                            float dp = 0.0f;
                            for (int64_t d = 0; d < D; d++) {
                                dp += load(dout, *dO, b, h, s, d) * load(v, *V, b, g, j, d);
                            }
                            float ds = round_bf16(p * (dp - row_dsum));
                            float p16 = round_bf16(p);
                            for (int64_t d = 0; d < D; d++) {
                                dq[s * D + d] += ds * load(k, *K, b, g, j, d);
                                dk[j * D + d] += ds * load(q, *Q, b, h, s, d);
                                dv[j * D + d] += p16 * load(dout, *dO, b, h, s, d);
                            }
                        }
                    }
                    for (int64_t s = 0; s < S; s++) {
                        for (int64_t d = 0; d < D; d++) {
                            store(dq_out, *dQ, b, h, s, d, dq[s * D + d] * attn_scale);
                        }
                    }
                }
                for (int64_t s = 0; s < S; s++) {
                    for (int64_t d = 0; d < D; d++) {
                        store(dk_out, *dK, b, g, s, d, dk[s * D + d] * attn_scale);
                        store(dv_out, *dV, b, g, s, d, dv[s * D + d]);
                    }
                }
            }
        }
    }

    Operation operation = NONE;
    std::string errors;
    DataType_t io_type = DataType_t::NOT_SET, intermediate_type = DataType_t::NOT_SET,
               compute_type = DataType_t::NOT_SET;
    std::vector<TensorPtr> tensors;
    TensorPtr Q, K, V, O, stats, dO, dQ, dK, dV, scale;
    bool causal = false, deterministic = false;
    bool validated = false, built = false, planned = false, supported = false, plans_built = false;
};

} // namespace graph
} // namespace cudnn_frontend

#endif // LLMC_CUDA_EMU_CUDNN_FRONTEND_H
