// oneDNN inference engine (see onednn_engine.hpp). Written against the oneDNN 2.6 API
// Debian ships: operation descriptors (convolution_forward::desc, ...) turned into
// primitive descriptors with primitive_desc(desc, [attr,] engine), and
// post_ops::append_eltwise(scale, algorithm, alpha, beta).
//
// Execution of one batch of N images:
//   1. the batch is cut into slices of a few images whose activation maps fit in cache;
//      OpenMP threads take slices dynamically, each running its own single-threaded
//      primitives (normalize -> [reorder] -> conv(s) -> pool -> [reorder]) on them and
//      writing the slice's pooled features (or, pooling folded, its logits) into the
//      batch's buffer;
//   2. one inner product over the whole batch's features, then softmax if asked.
// Why slices in parallel rather than one primitive per stage over the whole batch: with
// 400 filters on 28x28 one batch of 64 maps is 160 MB, which every stage then streams
// through memory (measured: batch 64 2.4x slower per image than batch 1), and per-stage
// parallelism costs a barrier per primitive, which on a loaded machine turned into
// scheduler time slices (batch 64 at 21 images/s with 2 threads beside two busy
// processes). Slices keep the maps in cache and leave one barrier per batch.
#include "cvxcnn/engine/onednn_engine.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <new>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/tbb/task.h>

#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
using Arguments = std::unordered_map<int, memory>;

// Primitives can be rebuilt at any time, so a handful of image counts is enough: full
// batches and slices, and the partial ones of the last few calls.
constexpr std::size_t max_cached_shapes = 4;

// A slice's activation maps ({m, OH, OW} per image, two for gated ReLU) take about this
// much at most (but a slice holds at least one image).
constexpr std::size_t slice_activation_bytes = std::size_t{2} << 20;

// The buffers sized by the batch (inputs, features, logits) must fit in this; a larger
// --batch is refused with a message instead of exhausting memory.
constexpr std::size_t max_batch_bytes = std::size_t{2} << 30;

// Sets the calling thread's OpenMP thread count (its own ICV: other threads are not
// affected) for the lifetime of the object; `only_inside_tbb` makes it a no-op outside
// TBB tasks.
class ScopedOpenMpThreads {
public:
    explicit ScopedOpenMpThreads(int threads, bool only_inside_tbb = false) {
        if (only_inside_tbb && oneapi::tbb::task::current_context() == nullptr) return;
        previous_ = omp_get_max_threads();
        omp_set_num_threads(threads);
    }
    ScopedOpenMpThreads(const ScopedOpenMpThreads&) = delete;
    ScopedOpenMpThreads& operator=(const ScopedOpenMpThreads&) = delete;
    ~ScopedOpenMpThreads() {
        if (previous_) omp_set_num_threads(*previous_);
    }

private:
    std::optional<int> previous_;
};

// OpenMP (oneDNN's pool) and TBB (everything else) are separate pools. A oneDNN call made
// from a TBB task would start up to `threads` OpenMP threads on each of TBB's `threads`
// workers; inside a task the engine therefore runs on one OpenMP thread.
struct SingleOpenMpThreadInsideTbbTask : ScopedOpenMpThreads {
    SingleOpenMpThreadInsideTbbTask() : ScopedOpenMpThreads(1, true) {}
};

// oneDNN reports failures as dnnl::error; the library boundary speaks cvxcnn::Error.
template <typename F>
decltype(auto) translate_onednn_errors(const char* what, F&& action) {
    try {
        return action();
    } catch (const dnnl::error& error) {
        if (error.status == dnnl_out_of_memory) throw std::bad_alloc();
        throw Error(ErrorKind::internal, std::string("oneDNN failed to ") + what + ": " + error.what());
    }
}

memory::dim to_dim(std::size_t value) { return static_cast<memory::dim>(value); }

// A new attribute object each time: dnnl::primitive_attr is a shared handle, so a copy
// given post-ops would give them to every other copy too.
dnnl::primitive_attr user_scratchpad_attr(const dnnl::post_ops& post_ops = dnnl::post_ops()) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    attr.set_post_ops(post_ops);
    return attr;
}

// A oneDNN-owned buffer of the given plain layout holding a copy of `values`.
memory plain_memory(const dnnl::engine& engine, const memory::dims& dims, tag layout, const std::vector<float>& values) {
    memory result({dims, dt::f32, layout}, engine);
    std::memcpy(result.get_data_handle(), values.data(), values.size() * sizeof(float));
    return result;
}

// The weights in the layout the primitive chose: reordered once, when the primitives of
// an image count are created.
memory reorder_once(dnnl::stream& stream, const memory& plain, const memory::desc& wanted) {
    if (plain.get_desc() == wanted) return plain;
    memory source = plain;  // a handle: execute() wants non-const ones
    memory result(wanted, plain.get_engine());
    dnnl::reorder(source, result).execute(stream, source, result);
    stream.wait();
    return result;
}

struct Step {
    dnnl::primitive primitive;
    Arguments arguments;
};

// Things built per image count, least recently used evicted first.
template <typename T>
class ShapeCache {
public:
    template <typename Build>
    T& get(std::size_t n, Build&& build) {
        if (auto it = items_.find(n); it != items_.end()) {
            std::erase(order_, n);
            order_.push_back(n);
            return it->second;
        }
        if (items_.size() >= max_cached_shapes) {
            items_.erase(order_.front());
            order_.erase(order_.begin());
        }
        T& created = items_.emplace(n, build(n)).first->second;
        order_.push_back(n);
        return created;
    }

private:
    std::map<std::size_t, T> items_;
    std::vector<std::size_t> order_;
};

// The convolution stages for a slice of n images:
//   input slice -> [reorder] -> convolution(s) -> pooling -> [reorder] -> features slice
//   (folded pooling: -> convolution(s) -> [reorder] -> inner product -> logits slice).
// `input` and `output` own no buffer: they point into the batch's buffers, slice by slice.
// Every primitive has its own scratchpad (user scratchpad mode), so the slices of
// different threads never share one.
struct Stage {
    memory input;   // {n, C, H, W} nchw
    memory output;  // {n, m, G, G} nchw features, or {n, classes} nc logits when folded
    std::vector<Step> steps;
    std::string implementation;
};

// One per OpenMP thread of the slice loop: its own stream and slice primitives.
struct Worker {
    dnnl::stream stream;
    ShapeCache<Stage> stages;
};

// Everything sized by the batch: normalized inputs, pooled features, the inner product
// over the whole batch (pooling case), logits and softmax.
struct Head {
    memory input;     // {N, C, H, W} nchw: normalized images are written here
    memory features;  // {N, m, G, G} nchw (pooling case only)
    std::optional<Step> inner_product;
    memory logits;  // {N, classes} nc
    Step softmax;   // logits -> probabilities
    memory probabilities;
    std::string implementation;
};

}  // namespace

struct OnednnEngine::Impl {
    Model model;
    std::size_t batch;
    std::size_t slice;  // images per slice of the convolution stages
    int out_height = 0;
    int out_width = 0;
    bool fold = false;
    std::vector<float> inner_product_weight;  // fc_weight, or the folded weights when fold
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    std::vector<std::unique_ptr<Worker>> workers;
    ShapeCache<Head> heads;  // by batch size

    Impl(const Model& source, std::size_t batch_size) : model(source), batch(batch_size) {
        const Architecture& a = model.architecture;
        out_height = a.conv_output_size(model.input.height);
        out_width = a.conv_output_size(model.input.width);
        slice = std::clamp<std::size_t>(slice_activation_bytes / std::max<std::size_t>(map_bytes_per_image(), 1), 1, batch);
        const int grid = a.pool_grid;
        fold = out_height % grid != 0 || out_width % grid != 0;
        if (!fold) {
            inner_product_weight = model.fc_weight.data;
            return;
        }
        // W[c, f, y, x] = fc[c, f*R + region(y, x)] / |region|: averaging a region then
        // weighting it equals weighting each of its positions by weight / size.
        const PoolingRegions regions = make_pooling_regions(out_height, out_width, grid);
        const std::size_t m = static_cast<std::size_t>(model.filters());
        const std::size_t r_count = static_cast<std::size_t>(regions.count());
        const std::size_t positions = regions.region_of_position.size();
        inner_product_weight.resize(static_cast<std::size_t>(model.classes()) * m * positions);
        std::size_t out = 0;
        for (std::size_t c = 0; c < static_cast<std::size_t>(model.classes()); ++c)
            for (std::size_t f = 0; f < m; ++f)
                for (std::size_t p = 0; p < positions; ++p) {
                    const auto r = static_cast<std::size_t>(regions.region_of_position[p]);
                    inner_product_weight[out++] = model.fc_weight.data[(c * m + f) * r_count + r] /
                                                  static_cast<float>(regions.sizes[r]);
                }
    }

    // Bytes of the {m, OH, OW} activation maps one image needs (two maps for gated ReLU).
    [[nodiscard]] std::size_t map_bytes_per_image() const {
        return static_cast<std::size_t>(model.filters()) * static_cast<std::size_t>(out_height) *
               static_cast<std::size_t>(out_width) * sizeof(float) *
               (model.architecture.activation == Activation::gated_relu ? 2 : 1);
    }

    [[nodiscard]] std::size_t output_per_image() const {
        const auto grid = static_cast<std::size_t>(model.architecture.pool_grid);
        return fold ? static_cast<std::size_t>(model.classes())
                    : static_cast<std::size_t>(model.filters()) * grid * grid;
    }

    // Appends a slice primitive with its own scratchpad.
    template <typename Primitive, typename PrimitiveDesc>
    void add_step(Stage& stage, const PrimitiveDesc& pd, Arguments arguments) {
        arguments.insert({DNNL_ARG_SCRATCHPAD, memory(pd.scratchpad_desc(), engine)});
        stage.steps.push_back({Primitive(pd), std::move(arguments)});
    }

    // from -> to, as a slice step (user scratchpad).
    void add_reorder(Stage& stage, const memory& from, const memory& to, const dnnl::primitive_attr& attr) {
        const dnnl::reorder::primitive_desc pd(engine, from.get_desc(), engine, to.get_desc(), attr);
        add_step<dnnl::reorder>(stage, pd, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
    }

    // Built while the calling thread is limited to one OpenMP thread: a slice runs on one
    // thread, so oneDNN picks and decomposes its kernels for one.
    Stage build_stage(std::size_t n, dnnl::stream& worker_stream) {
        const ScopedOpenMpThreads one_thread(1);
        const Architecture& a = model.architecture;
        const memory::dim images = to_dim(n), classes = model.classes(), m = model.filters();
        const memory::dim channels = model.input.channels, grid = a.pool_grid;
        Stage stage;
        stage.input = memory({{images, channels, model.input.height, model.input.width}, dt::f32, tag::nchw}, engine,
                             DNNL_MEMORY_NONE);
        stage.output = fold ? memory({{images, classes}, dt::f32, tag::nc}, engine, DNNL_MEMORY_NONE)
                            : memory({{images, m, grid, grid}, dt::f32, tag::nchw}, engine, DNNL_MEMORY_NONE);
        const dnnl::primitive_attr plain_attr = user_scratchpad_attr();

        // {n, C, H, W} (x) {m, C, k, k} -> {n, m, OH, OW}; every layout left to oneDNN.
        const memory::dims kernel_dims{m, channels, a.kernel, a.kernel};
        const memory::dims strides{a.stride, a.stride}, padding{a.padding, a.padding};
        const memory::desc any_src(stage.input.get_desc().dims(), dt::f32, tag::any);
        const memory::desc any_weights(kernel_dims, dt::f32, tag::any);
        const memory::desc bias_desc({m}, dt::f32, tag::x);
        const memory::desc any_map({images, m, out_height, out_width}, dt::f32, tag::any);
        const memory conv_weight_plain = plain_memory(engine, kernel_dims, tag::oihw, model.conv_weight.data);
        const memory conv_bias = plain_memory(engine, {m}, tag::x, model.conv_bias.data);

        dnnl::post_ops activation;
        switch (a.activation) {
            case Activation::relu: activation.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f); break;
            // oneDNN's relu with alpha is x for x > 0, alpha * x otherwise = max(a x, x) for 0 < a < 1.
            case Activation::leaky_relu:
                activation.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, a.leaky_slope, 0.0f);
                break;
            case Activation::absolute: activation.append_eltwise(1.0f, dnnl::algorithm::eltwise_abs, 0.0f, 0.0f); break;
            case Activation::gated_relu: break;  // below: needs the gate convolution
        }
        const dnnl::primitive_attr conv_attr = user_scratchpad_attr(activation);
        const dnnl::convolution_forward::primitive_desc conv_pd(
            {dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, any_src, any_weights, bias_desc,
             any_map, strides, padding, padding},
            conv_attr, engine);
        stage.implementation = std::string("conv ") + conv_pd.impl_info_str();

        // Input: reordered if the convolution wants another layout.
        memory conv_input = stage.input;
        if (conv_pd.src_desc() != stage.input.get_desc()) {
            conv_input = memory(conv_pd.src_desc(), engine);
            add_reorder(stage, stage.input, conv_input, plain_attr);
        }
        memory activated(conv_pd.dst_desc(), engine);
        add_step<dnnl::convolution_forward>(
            stage, conv_pd,
            {{DNNL_ARG_SRC, conv_input},
             {DNNL_ARG_WEIGHTS, reorder_once(worker_stream, conv_weight_plain, conv_pd.weights_desc())},
             {DNNL_ARG_BIAS, conv_bias},
             {DNNL_ARG_DST, activated}});

        if (a.activation == Activation::gated_relu) {
            // The first convolution gave u = conv_u(x) + b. The gate convolution (no bias)
            // then turns g.x into 1[g.x >= 0] (binary_ge with a broadcast 0; ">=": a gate on
            // its hyperplane is open, as in the reference) and multiplies by u, in one pass.
            const memory u = activated;
            const memory::desc zero_desc({1, 1, 1, 1}, dt::f32, tag::nchw);
            const memory zero = plain_memory(engine, {1, 1, 1, 1}, tag::nchw, {0.0f});
            dnnl::post_ops gate_ops;
            gate_ops.append_binary(dnnl::algorithm::binary_ge, zero_desc);
            gate_ops.append_binary(dnnl::algorithm::binary_mul, u.get_desc());
            const memory gate_weight_plain = plain_memory(engine, kernel_dims, tag::oihw, model.gate_weight.data);
            const dnnl::convolution_forward::desc gate_desc(dnnl::prop_kind::forward_inference,
                                                            dnnl::algorithm::convolution_direct, conv_pd.src_desc(),
                                                            any_weights, conv_pd.dst_desc(), strides, padding, padding);
            try {
                // Same source and destination layouts as the first convolution: one input
                // reorder serves both, and u multiplies elementwise in its own layout.
                const dnnl::convolution_forward::primitive_desc gate_pd(gate_desc, user_scratchpad_attr(gate_ops), engine);
                activated = memory(gate_pd.dst_desc(), engine);
                add_step<dnnl::convolution_forward>(
                    stage, gate_pd,
                    {{DNNL_ARG_SRC, conv_input},
                     {DNNL_ARG_WEIGHTS, reorder_once(worker_stream, gate_weight_plain, gate_pd.weights_desc())},
                     {DNNL_ARG_DST, activated},
                     {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, zero},
                     {DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, u}});
                stage.implementation += std::string(", gate conv ") + gate_pd.impl_info_str();
            } catch (const dnnl::error&) {
                // Some layouts (e.g. 1x1 kernels on few channels) have no convolution with
                // binary post-ops: the gate convolution alone, then the two binary steps.
                const dnnl::convolution_forward::primitive_desc gate_pd(gate_desc, plain_attr, engine);
                const memory gate(gate_pd.dst_desc(), engine);
                add_step<dnnl::convolution_forward>(
                    stage, gate_pd,
                    {{DNNL_ARG_SRC, conv_input},
                     {DNNL_ARG_WEIGHTS, reorder_once(worker_stream, gate_weight_plain, gate_pd.weights_desc())},
                     {DNNL_ARG_DST, gate}});
                const dnnl::binary::primitive_desc open_pd(
                    {dnnl::algorithm::binary_ge, gate.get_desc(), zero_desc, gate.get_desc()}, plain_attr, engine);
                add_step<dnnl::binary>(stage, open_pd, {{DNNL_ARG_SRC_0, gate}, {DNNL_ARG_SRC_1, zero}, {DNNL_ARG_DST, gate}});
                activated = memory(gate.get_desc(), engine);
                const dnnl::binary::primitive_desc product_pd(
                    {dnnl::algorithm::binary_mul, gate.get_desc(), u.get_desc(), gate.get_desc()}, plain_attr, engine);
                add_step<dnnl::binary>(stage, product_pd, {{DNNL_ARG_SRC_0, gate}, {DNNL_ARG_SRC_1, u}, {DNNL_ARG_DST, activated}});
                stage.implementation += std::string(", gate conv ") + gate_pd.impl_info_str() + " + binary ge, mul";
            }
        }

        if (!fold) {
            // {n, m, OH, OW} -> {n, m, G, G}: equal bands are one average pooling with
            // kernel = stride = band size (no padding, so include/exclude padding agree).
            const memory::dims band{out_height / grid, out_width / grid};
            const dnnl::pooling_forward::primitive_desc pool_pd(
                {dnnl::prop_kind::forward_inference, dnnl::algorithm::pooling_avg_exclude_padding,
                 activated.get_desc(), memory::desc(stage.output.get_desc().dims(), dt::f32, tag::any), band, band,
                 {0, 0}, {0, 0}},
                plain_attr, engine);
            stage.implementation += std::string(", pool ") + pool_pd.impl_info_str();
            if (pool_pd.dst_desc() == stage.output.get_desc()) {
                add_step<dnnl::pooling_forward>(stage, pool_pd, {{DNNL_ARG_SRC, activated}, {DNNL_ARG_DST, stage.output}});
            } else {
                const memory pooled(pool_pd.dst_desc(), engine);
                add_step<dnnl::pooling_forward>(stage, pool_pd, {{DNNL_ARG_SRC, activated}, {DNNL_ARG_DST, pooled}});
                add_reorder(stage, pooled, stage.output, plain_attr);
            }
            return stage;
        }

        // Folded pooling: the inner product reads the whole map, in the layout it prefers.
        const memory::dims weight_dims{classes, m, out_height, out_width};
        const dnnl::inner_product_forward::primitive_desc ip_pd(
            {dnnl::prop_kind::forward_inference, memory::desc(activated.get_desc().dims(), dt::f32, tag::any),
             memory::desc(weight_dims, dt::f32, tag::any), memory::desc({classes}, dt::f32, tag::x),
             stage.output.get_desc()},
            plain_attr, engine);
        memory features = activated;
        if (ip_pd.src_desc() != activated.get_desc()) {
            features = memory(ip_pd.src_desc(), engine);
            add_reorder(stage, activated, features, plain_attr);
        }
        const memory ip_weight_plain = plain_memory(engine, weight_dims, tag::oihw, inner_product_weight);
        add_step<dnnl::inner_product_forward>(
            stage, ip_pd,
            {{DNNL_ARG_SRC, features},
             {DNNL_ARG_WEIGHTS, reorder_once(worker_stream, ip_weight_plain, ip_pd.weights_desc())},
             {DNNL_ARG_BIAS, plain_memory(engine, {classes}, tag::x, model.fc_bias.data)},
             {DNNL_ARG_DST, stage.output}});
        stage.implementation += std::string(", folded pooling ip ") + ip_pd.impl_info_str();
        return stage;
    }

    Head build_head(std::size_t n) {
        const memory::dim images = to_dim(n), classes = model.classes(), m = model.filters();
        const memory::dim grid = model.architecture.pool_grid;
        Head head;
        head.input = memory({{images, model.input.channels, model.input.height, model.input.width}, dt::f32, tag::nchw},
                            engine);
        head.logits = memory({{images, classes}, dt::f32, tag::nc}, engine);
        head.probabilities = memory(head.logits.get_desc(), engine);
        const dnnl::softmax_forward::primitive_desc softmax_pd(
            {dnnl::prop_kind::forward_inference, head.logits.get_desc(), 1}, engine);
        head.softmax = {dnnl::softmax_forward(softmax_pd),
                        {{DNNL_ARG_SRC, head.logits}, {DNNL_ARG_DST, head.probabilities}}};
        head.implementation = std::string("softmax ") + softmax_pd.impl_info_str();

        if (m == 0) {  // no filter, no feature: the logits are fc_bias, written once
            auto* logits = static_cast<float*>(head.logits.get_data_handle());
            for (std::size_t i = 0; i < n; ++i)
                std::copy(model.fc_bias.data.begin(), model.fc_bias.data.end(), logits + i * model.fc_bias.data.size());
            return head;
        }
        if (fold) return head;  // the slices write the logits

        // {N, m, G, G} -> {N, classes} over the whole batch. fc_weight's feature index
        // (f*G + gy)*G + gx is exactly the oihw flattening of {classes, m, G, G}. The
        // features are plain nchw: with channels-last features (what the convolutions
        // choose for few input channels) this GEMM was measured ~50x slower.
        head.features = memory({{images, m, grid, grid}, dt::f32, tag::nchw}, engine);
        const memory::dims weight_dims{classes, m, grid, grid};
        const dnnl::inner_product_forward::primitive_desc ip_pd(
            {dnnl::prop_kind::forward_inference, head.features.get_desc(), memory::desc(weight_dims, dt::f32, tag::any),
             memory::desc({classes}, dt::f32, tag::x), head.logits.get_desc()},
            engine);
        const memory ip_weight_plain = plain_memory(engine, weight_dims, tag::oihw, inner_product_weight);
        head.inner_product = Step{dnnl::inner_product_forward(ip_pd),
                                  {{DNNL_ARG_SRC, head.features},
                                   {DNNL_ARG_WEIGHTS, reorder_once(stream, ip_weight_plain, ip_pd.weights_desc())},
                                   {DNNL_ARG_BIAS, plain_memory(engine, {classes}, tag::x, model.fc_bias.data)},
                                   {DNNL_ARG_DST, head.logits}}};
        head.implementation = std::string("ip ") + ip_pd.impl_info_str() + ", " + head.implementation;
        return head;
    }

    Head& head(std::size_t n) { return heads.get(n, [this](std::size_t k) { return build_head(k); }); }

    Stage& stage(Worker& worker, std::size_t n) {
        return worker.stages.get(n, [&](std::size_t k) { return build_stage(k, worker.stream); });
    }

    // Workers 0..threads-1 with the slice primitives a batch of n images needs, built
    // here, before the parallel loop, so that the loop only looks them up.
    void prepare_workers(int threads, std::size_t n) {
        while (workers.size() < static_cast<std::size_t>(threads))
            workers.push_back(std::make_unique<Worker>(Worker{dnnl::stream(engine), {}}));
        for (int t = 0; t < threads; ++t) {
            if (n >= slice) (void)stage(*workers[static_cast<std::size_t>(t)], slice);
            if (n % slice != 0) (void)stage(*workers[static_cast<std::size_t>(t)], n % slice);
        }
    }

    std::string implementation(std::size_t n) {
        if (model.filters() == 0) return head(n).implementation;
        prepare_workers(1, std::min(n, slice));
        return stage(*workers[0], std::min(n, slice)).implementation + ", " + head(n).implementation;
    }

    void check_input(std::span<const float> images, std::size_t count) const {
        const std::size_t values = model.input.values();
        if (images.size() / values != count || images.size() % values != 0)
            throw Error(ErrorKind::bad_input, "image buffer holds " + std::to_string(images.size()) + " values but " +
                                                  std::to_string(count) + " images of " + to_string(model.input) +
                                                  " need " + std::to_string(count * values));
    }

    // Slice `index` of a batch of n images taken from `source`: copy and normalize its
    // images into the batch input, then run its stages into the batch's output buffer.
    void run_slice(Worker& worker, Head& h, const float* source, std::size_t n, std::size_t index) {
        const std::size_t values = model.input.values();
        const std::size_t first = index * slice, count = std::min(slice, n - first);
        auto* input = static_cast<float*>(h.input.get_data_handle()) + first * values;
        std::copy_n(source + first * values, count * values, input);
        // The reference's own normalization code, so both engines see the same inputs.
        for (std::size_t i = 0; i < count; ++i)
            model.normalization.apply(std::span<float>(input + i * values, values), model.input);
        auto* output = static_cast<float*>(fold ? h.logits.get_data_handle() : h.features.get_data_handle());
        Stage& s = stage(worker, count);  // prepared: a lookup
        s.input.set_data_handle(input);
        s.output.set_data_handle(output + first * output_per_image());
        for (auto& step : s.steps) step.primitive.execute(worker.stream, step.arguments);
        worker.stream.wait();
    }

    // One batch of n images: the slices in parallel, then the batch's inner product.
    void forward(Head& h, const float* source, std::size_t n) {
        const std::size_t slices = (n + slice - 1) / slice;
        const int threads =
            static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(omp_get_max_threads(), 1)), slices));
        prepare_workers(threads, n);
        if (threads == 1) {
            for (std::size_t i = 0; i < slices; ++i) run_slice(*workers[0], h, source, n, i);
        } else {
            // Exceptions must not leave an OpenMP region: the first is kept and rethrown.
            std::exception_ptr failure;
#pragma omp parallel num_threads(threads)
            {
                Worker& worker = *workers[static_cast<std::size_t>(omp_get_thread_num())];
                // Dynamic: a thread the OS preempts does not hold up slices others could run.
#pragma omp for schedule(dynamic, 1)
                for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(slices); ++i) {
                    try {
                        run_slice(worker, h, source, n, static_cast<std::size_t>(i));
                    } catch (...) {
#pragma omp critical(cvxcnn_engine_failure)
                        if (!failure) failure = std::current_exception();
                    }
                }
            }
            if (failure) std::rethrow_exception(failure);
        }
        if (h.inner_product) h.inner_product->primitive.execute(stream, h.inner_product->arguments);
    }

    // Runs every batch; `probabilities` adds the softmax.
    RowMatrixF run(std::span<const float> images, std::size_t count, bool probabilities) {
        check_input(images, count);
        const SingleOpenMpThreadInsideTbbTask one_thread_inside_tbb;
        const std::size_t values = model.input.values();
        const auto classes = static_cast<std::size_t>(model.classes());
        RowMatrixF result(static_cast<Eigen::Index>(count), model.classes());
        for (std::size_t first = 0; first < count; first += batch) {
            const std::size_t n = std::min(batch, count - first);
            Head& h = head(n);
            if (model.filters() > 0) forward(h, images.data() + first * values, n);
            if (probabilities) h.softmax.primitive.execute(stream, h.softmax.arguments);
            stream.wait();
            const memory& output = probabilities ? h.probabilities : h.logits;
            const auto* values_out = static_cast<const float*>(output.get_data_handle());
            std::copy_n(values_out, n * classes, result.data() + first * classes);
        }
        return result;
    }

    RowMatrixF run(const Dataset& images, bool probabilities) {
        if (!(images.shape == model.input))
            throw Error(ErrorKind::bad_input, "images are " + to_string(images.shape) + " but the model expects " +
                                                  to_string(model.input) + " (channels x height x width)");
        return run(images.images, images.size(), probabilities);
    }
};

OnednnEngine::OnednnEngine(const Model& model, std::size_t batch) {
    validate(model);
    if (batch == 0) throw Error(ErrorKind::bad_input, "engine: batch size must be >= 1");
    const auto grid = static_cast<double>(model.architecture.pool_grid);
    const double per_image = static_cast<double>(model.input.values()) +
                             static_cast<double>(model.filters()) * grid * grid + 2.0 * model.classes();
    const double bytes = per_image * sizeof(float) * static_cast<double>(batch);
    if (bytes > static_cast<double>(max_batch_bytes))
        throw Error(ErrorKind::limit, "--batch " + std::to_string(batch) + ": the buffers of one batch would need " +
                                          std::to_string(static_cast<long long>(bytes / (1 << 20))) +
                                          " MiB, more than the engine's " + std::to_string(max_batch_bytes >> 20) +
                                          " MiB; lower --batch");
    impl_ = std::make_unique<Impl>(model, batch);
}

OnednnEngine::OnednnEngine(OnednnEngine&&) noexcept = default;
OnednnEngine& OnednnEngine::operator=(OnednnEngine&&) noexcept = default;
OnednnEngine::~OnednnEngine() = default;

RowMatrixF OnednnEngine::logits(const Dataset& images) {
    return translate_onednn_errors("compute logits", [&] { return impl_->run(images, false); });
}

RowMatrixF OnednnEngine::logits(std::span<const float> images, std::size_t count) {
    return translate_onednn_errors("compute logits", [&] { return impl_->run(images, count, false); });
}

RowMatrixF OnednnEngine::probabilities(const Dataset& images) {
    return translate_onednn_errors("compute probabilities", [&] { return impl_->run(images, true); });
}

RowMatrixF OnednnEngine::probabilities(std::span<const float> images, std::size_t count) {
    return translate_onednn_errors("compute probabilities", [&] { return impl_->run(images, count, true); });
}

const Model& OnednnEngine::model() const noexcept { return impl_->model; }
std::size_t OnednnEngine::batch() const noexcept { return impl_->batch; }
bool OnednnEngine::folds_pooling() const noexcept { return impl_->fold; }

std::string OnednnEngine::implementation(std::size_t batch) {
    if (batch == 0) throw Error(ErrorKind::bad_input, "engine: batch size must be >= 1");
    return translate_onednn_errors("create primitives", [&] {
        const SingleOpenMpThreadInsideTbbTask one_thread_inside_tbb;
        return impl_->implementation(batch);
    });
}

}  // namespace cvxcnn
