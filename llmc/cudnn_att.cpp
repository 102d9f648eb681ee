// cuDNN fused attention through cudnn-frontend's graph API (the one C++ file of the trainer; the
// interface and layouts are described in llmc/cudnn_att.h). Built with nvcc against the pinned
// frontend headers in build/cudnn-frontend (scripts/fetch_cudnn_frontend.sh), or with g++ against
// the emulation's CPU stand-in of the same API.
#include "cudnn_att.h"

#include <cudnn_frontend.h>

#include <map>
#include <memory>
#include <tuple>
#include <unordered_map>

namespace fe = cudnn_frontend;

// Tensor ids of the variant pack: execute() binds device pointers to these.
enum AttentionTensorId : int64_t {
    Q_ID = 1,
    K_ID,
    V_ID,
    SCALE_ID,
    O_ID,
    STATS_ID,
    DO_ID,
    DQ_ID,
    DK_ID,
    DV_ID,
};

static cudnnHandle_t cudnn_handle = nullptr;
static void *cudnn_workspace = nullptr;
static size_t cudnn_workspace_size = 0;

// Built graphs by (B, T, NH, KV, HS, backward): sampling runs the forward at other T than
// training.
typedef std::tuple<int, int, int, int, int, bool> AttentionShape;
static std::map<AttentionShape, std::shared_ptr<fe::graph::Graph>> attention_graphs;
// More shapes than this (a long sampling session) and the cache starts over instead of growing.
static const size_t max_cached_graphs = 64;

static void cudnn_check_at(cudnnStatus_t status, const char *file, int line) {
    if (status != CUDNN_STATUS_SUCCESS) {
        fatal("cuDNN error at %s:%d: %s", file, line, cudnnGetErrorString(status));
    }
}
#define cudnn_check(call) cudnn_check_at((call), __FILE__, __LINE__)

static void frontend_check(fe::error_object status, const char *what, const AttentionShape &shape) {
    if (status.is_bad()) {
        fatal("cuDNN attention %s (B=%d T=%d NH=%d KV=%d HS=%d, %s): %s (build with USE_CUDNN=0 "
              "for llmc's own attention kernels)",
              std::get<5>(shape) ? "backward" : "forward", std::get<0>(shape), std::get<1>(shape),
              std::get<2>(shape), std::get<3>(shape), std::get<4>(shape), what,
              status.get_message().c_str());
    }
}

static cudnnHandle_t attention_cudnn_handle(void) {
    if (cudnn_handle == nullptr) cudnn_check(cudnnCreate(&cudnn_handle));
    return cudnn_handle;
}

// q (heads = NH), k or v (heads = KV) as a (B, heads, T, HS) tensor inside qkv, whose rows are
// [NH*HS q | KV*HS k | KV*HS v], row = (NH + 2 KV) HS elements: the three start at element 0,
// NH HS and (NH + KV) HS of a row (the variant pack gives each its own pointer).
static void set_qkv_layout(fe::graph::Tensor_attributes &tensor, int B, int T, int heads, int HS,
                           int64_t row) {
    tensor.set_dim({B, heads, T, HS}).set_stride({T * row, HS, row, 1});
}

static std::shared_ptr<fe::graph::Tensor_attributes> qkv_tensor(fe::graph::Graph &graph,
                                                                const char *name, int64_t id, int B,
                                                                int T, int heads, int HS,
                                                                int64_t row) {
    auto tensor = fe::graph::Tensor_attributes().set_name(name).set_uid(id);
    set_qkv_layout(tensor, B, T, heads, HS, row);
    return graph.tensor(tensor);
}

// out or dout, (B, T, C) seen as (B, NH, T, HS).
static void set_btc_layout(fe::graph::Tensor_attributes &tensor, int B, int T, int NH, int HS) {
    int64_t C = (int64_t)NH * HS;
    tensor.set_dim({B, NH, T, HS}).set_stride({T * C, HS, C, 1});
}

static std::shared_ptr<fe::graph::Tensor_attributes> scale_tensor(fe::graph::Graph &graph) {
    return graph.tensor(fe::graph::Tensor_attributes()
                            .set_name("attn_scale")
                            .set_uid(SCALE_ID)
                            .set_dim({1, 1, 1, 1})
                            .set_stride({1, 1, 1, 1})
                            .set_is_pass_by_value(true)
                            .set_data_type(fe::DataType_t::FLOAT));
}

static std::shared_ptr<fe::graph::Graph> build_attention_graph(const AttentionShape &shape) {
    auto [B, T, NH, KV, HS, backward] = shape;
    int64_t row = (int64_t)(NH + 2 * KV) * HS;
    auto graph = std::make_shared<fe::graph::Graph>();
    graph->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    auto Q = qkv_tensor(*graph, "Q", Q_ID, B, T, NH, HS, row);
    auto K = qkv_tensor(*graph, "K", K_ID, B, T, KV, HS, row);
    auto V = qkv_tensor(*graph, "V", V_ID, B, T, KV, HS, row);
    auto scale = scale_tensor(*graph);
    if (!backward) {
        auto options = fe::graph::SDPA_attributes()
                           .set_name("attention_forward")
                           .set_generate_stats(true)
                           .set_causal_mask(true)
                           .set_attn_scale(scale);
        auto [O, stats] = graph->sdpa(Q, K, V, options);
        O->set_output(true).set_uid(O_ID);
        set_btc_layout(*O, B, T, NH, HS);
        stats->set_output(true)
            .set_uid(STATS_ID)
            .set_data_type(fe::DataType_t::FLOAT)
            .set_dim({B, NH, T, 1})
            .set_stride({(int64_t)NH * T, T, 1, 1});
    } else {
        auto O = graph->tensor(fe::graph::Tensor_attributes().set_name("O").set_uid(O_ID));
        set_btc_layout(*O, B, T, NH, HS);
        auto dO = graph->tensor(fe::graph::Tensor_attributes().set_name("dO").set_uid(DO_ID));
        set_btc_layout(*dO, B, T, NH, HS);
        auto stats = graph->tensor(fe::graph::Tensor_attributes()
                                       .set_name("stats")
                                       .set_uid(STATS_ID)
                                       .set_dim({B, NH, T, 1})
                                       .set_stride({(int64_t)NH * T, T, 1, 1})
                                       .set_data_type(fe::DataType_t::FLOAT));
        auto options = fe::graph::SDPA_backward_attributes()
                           .set_name("attention_backward")
                           .set_causal_mask(true)
                           .set_attn_scale(scale)
                           .set_deterministic_algorithm(true);
        auto [dQ, dK, dV] = graph->sdpa_backward(Q, K, V, O, dO, stats, options);
        // dK and dV have the kv heads' shape: cuDNN sums them over each group's query heads
        dQ->set_output(true).set_uid(DQ_ID);
        set_qkv_layout(*dQ, B, T, NH, HS, row);
        dK->set_output(true).set_uid(DK_ID);
        set_qkv_layout(*dK, B, T, KV, HS, row);
        dV->set_output(true).set_uid(DV_ID);
        set_qkv_layout(*dV, B, T, KV, HS, row);
    }
    cudnnHandle_t handle = attention_cudnn_handle();
    frontend_check(graph->validate(), "validate", shape);
    frontend_check(graph->build_operation_graph(handle), "build_operation_graph", shape);
    frontend_check(graph->create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans",
                   shape);
    frontend_check(graph->check_support(handle), "check_support", shape);
    frontend_check(graph->build_plans(handle), "build_plans", shape);
    return graph;
}

static std::shared_ptr<fe::graph::Graph> attention_graph(const AttentionShape &shape) {
    auto found = attention_graphs.find(shape);
    if (found != attention_graphs.end()) return found->second;
    if (attention_graphs.size() >= max_cached_graphs) attention_graphs.clear();
    auto graph = build_attention_graph(shape);
    attention_graphs[shape] = graph;
    return graph;
}

static size_t graph_workspace_bytes(const fe::graph::Graph &graph) {
    int64_t bytes = graph.get_workspace_size();
    return bytes > 0 ? (size_t)bytes : 0;
}

// Makes the workspace hold at least bytes (grows only; normally sized once at start-up).
static void *attention_workspace(size_t bytes) {
    if (bytes > cudnn_workspace_size) {
        if (cudnn_workspace != nullptr) cuda_check(cudaFree(cudnn_workspace));
        cuda_check(cudaMalloc(&cudnn_workspace, bytes));
        cudnn_workspace_size = bytes;
    }
    return cudnn_workspace;
}

static void execute_attention(const AttentionShape &shape,
                              std::unordered_map<int64_t, void *> &variant_pack,
                              cudaStream_t stream) {
    auto graph = attention_graph(shape);
    void *workspace = attention_workspace(graph_workspace_bytes(*graph));
    cudnn_check(cudnnSetStream(attention_cudnn_handle(), stream));
    frontend_check(graph->execute(attention_cudnn_handle(), variant_pack, workspace), "execute",
                   shape);
}

// C = NH * HS: where k starts in a qkv row; v follows KV * HS later.
void attention_forward_cudnn(floatX *out, float *lse, const floatX *qkv, int B, int T, int NH,
                             int KV, int HS, cudaStream_t stream) {
    size_t C = (size_t)NH * HS, KVC = (size_t)KV * HS;
    float scale = 1.0f / sqrtf((float)HS);
    std::unordered_map<int64_t, void *> variant_pack = {
        {Q_ID, (void *)qkv},        {K_ID, (void *)(qkv + C)}, {V_ID, (void *)(qkv + C + KVC)},
        {SCALE_ID, (void *)&scale}, {O_ID, (void *)out},       {STATS_ID, (void *)lse}};
    execute_attention(AttentionShape(B, T, NH, KV, HS, false), variant_pack, stream);
}

void attention_backward_cudnn(floatX *dqkv, const floatX *dout, const floatX *out,
                              const floatX *qkv, const float *lse, int B, int T, int NH, int KV,
                              int HS, cudaStream_t stream) {
    size_t C = (size_t)NH * HS, KVC = (size_t)KV * HS;
    float scale = 1.0f / sqrtf((float)HS);
    std::unordered_map<int64_t, void *> variant_pack = {{Q_ID, (void *)qkv},
                                                        {K_ID, (void *)(qkv + C)},
                                                        {V_ID, (void *)(qkv + C + KVC)},
                                                        {SCALE_ID, (void *)&scale},
                                                        {O_ID, (void *)out},
                                                        {DO_ID, (void *)dout},
                                                        {STATS_ID, (void *)lse},
                                                        {DQ_ID, (void *)dqkv},
                                                        {DK_ID, (void *)(dqkv + C)},
                                                        {DV_ID, (void *)(dqkv + C + KVC)}};
    execute_attention(AttentionShape(B, T, NH, KV, HS, true), variant_pack, stream);
}

size_t attention_cudnn_workspace_bytes(int B, int T, int NH, int KV, int HS) {
    size_t forward =
        graph_workspace_bytes(*attention_graph(AttentionShape(B, T, NH, KV, HS, false)));
    size_t backward =
        graph_workspace_bytes(*attention_graph(AttentionShape(B, T, NH, KV, HS, true)));
    size_t bytes = forward > backward ? forward : backward;
    attention_workspace(bytes);
    return bytes;
}

void attention_cudnn_free(void) {
    attention_graphs.clear();
    if (cudnn_workspace != nullptr) cuda_check(cudaFree(cudnn_workspace));
    cudnn_workspace = nullptr;
    cudnn_workspace_size = 0;
    if (cudnn_handle != nullptr) cudnn_check(cudnnDestroy(cudnn_handle));
    cudnn_handle = nullptr;
}
