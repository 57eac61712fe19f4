// Forward and backward pass of the two-layer CNN (see network_gradient.hpp). Written
// against the oneDNN 2.6 API Debian ships (operation descriptors turned into primitive
// descriptors), as engine/onednn_engine.cpp.
//
// One chunk of images, in one TBB task with its own worker (stream, primitives, buffers):
//   per image: conv (+ gate conv) -> activation derivative D (kept) -> pre *= D
//              -> region sums -> features row
//   per chunk: logits = features fc^T + fc_bias -> loss, dZ
//              fc gradient = dZ^T features, feature gradient = dZ fc
//   per image: map gradient = D * (feature gradient spread over its region / |region|)
//              -> conv backward-weights, added to the chunk's conv gradient
// The activation is pre * D for every activation (relu: D = 1[pre > 0], leaky:
// 1 or a, abs: sign(pre), gated: 1[gate >= 0]), and D is also its derivative, so the
// backward pass needs nothing else of the forward one.
#include "cvxcnn/train/network_gradient.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/util/error.hpp"
#include "util/onednn_support.hpp"

namespace cvxcnn {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
using Index = Eigen::Index;

// Images per task. Fixed (not derived from the thread count), so the chunks, and with
// them every sum, are the same on any machine load; small enough that a chunk's maps
// (8 x 784 positions x 64 filters = 1.6 MB) stay in cache.
constexpr std::size_t chunk_images = 8;
// Chunks whose gradients are held at once; later chunks wait for the next round. Bounds
// the memory of a pass over a whole dataset.
constexpr std::size_t chunks_per_round = 64;

// oneDNN takes non-const handles; the buffers passed this way are only read (sources,
// weights being reordered).
void* readable(const float* data) { return const_cast<float*>(data); }

dnnl::primitive_attr user_scratchpad() {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return attr;
}

void reorder(dnnl::stream& stream, memory from, memory to) {
    dnnl::reorder(from, to).execute(stream, from, to);
    stream.wait();
}

struct ChunkResult {
    double loss = 0.0;
    std::size_t correct = 0;
    std::vector<float> conv_gradient;  // in the backward primitive's diff-weights layout
    RowMatrixF fc_gradient;            // classes x features
};

}  // namespace

// ---- images -------------------------------------------------------------------------

NetworkImages NetworkImages::prepare(const Dataset& data, std::span<const std::size_t> indices,
                                     const Normalization& normalization) {
    if (normalization.mean.size() != static_cast<std::size_t>(data.shape.channels) ||
        normalization.std.size() != normalization.mean.size())
        throw Error(ErrorKind::bad_input, "normalization has " + std::to_string(normalization.mean.size()) +
                                              " channels, the images " + std::to_string(data.shape.channels));
    NetworkImages result;
    result.shape = data.shape;
    const std::size_t values = data.shape.values(), plane = data.shape.pixels_per_channel();
    const int channels = data.shape.channels;
    result.values.resize(indices.size() * values);
    result.labels.resize(indices.size());
    oneapi::tbb::parallel_for(std::size_t{0}, indices.size(), [&](std::size_t i) {
        if (indices[i] >= data.size())
            throw Error(ErrorKind::internal, "NetworkImages::prepare: index " + std::to_string(indices[i]) +
                                                 " of " + std::to_string(data.size()) + " images");
        const auto source = data.image(indices[i]);
        float* out = result.values.data() + i * values;
        for (int c = 0; c < channels; ++c) {
            const float mean = normalization.mean[c], inv_std = 1.0f / normalization.std[c];
            for (std::size_t pixel = 0; pixel < plane; ++pixel)
                out[pixel * channels + c] = (source[c * plane + pixel] - mean) * inv_std;
        }
        result.labels[i] = data.labels[indices[i]];
    });
    return result;
}

NetworkImages NetworkImages::prepare(const Dataset& data, const Normalization& normalization) {
    std::vector<std::size_t> all(data.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    return prepare(data, all, normalization);
}

// ---- weight decay -------------------------------------------------------------------

namespace {

// 1 / |region|^2 for every fc column (feature f*R + r).
std::vector<double> fc_decay_factors(const Model& model) {
    const Architecture& a = model.architecture;
    const PoolingRegions regions = make_pooling_regions(a.conv_output_size(model.input.height),
                                                        a.conv_output_size(model.input.width), a.pool_grid);
    std::vector<double> factors(static_cast<std::size_t>(model.features()));
    const int region_count = regions.count();
    for (std::size_t j = 0; j < factors.size(); ++j) {
        const double size = regions.sizes[j % static_cast<std::size_t>(region_count)];
        factors[j] = 1.0 / (size * size);
    }
    return factors;
}

}  // namespace

double weight_decay(const Model& model) {
    double conv = 0.0;
    for (const float w : model.conv_weight.data) conv += static_cast<double>(w) * w;
    const std::vector<double> factors = fc_decay_factors(model);
    double fc = 0.0;
    for (std::size_t i = 0; i < model.fc_weight.data.size(); ++i) {
        const double w = model.fc_weight.data[i];
        fc += w * w * factors[i % factors.size()];
    }
    return 0.5 * (conv + fc);
}

void add_weight_decay_gradient(const Model& model, double beta, NetworkGradient& gradient) {
    if (gradient.conv_weight.size() != model.conv_weight.data.size() ||
        gradient.fc_weight.size() != model.fc_weight.data.size())
        throw Error(ErrorKind::internal, "add_weight_decay_gradient: gradient and model differ in size");
    for (std::size_t i = 0; i < gradient.conv_weight.size(); ++i)
        gradient.conv_weight[i] += static_cast<float>(beta * model.conv_weight.data[i]);
    const std::vector<double> factors = fc_decay_factors(model);
    for (std::size_t i = 0; i < gradient.fc_weight.size(); ++i)
        gradient.fc_weight[i] += static_cast<float>(beta * factors[i % factors.size()] * model.fc_weight.data[i]);
}

// ---- the evaluator --------------------------------------------------------------------

namespace {

// One TBB worker's oneDNN objects and buffers, sized once.
struct Worker {
    dnnl::stream stream;
    dnnl::convolution_forward conv;
    std::optional<dnnl::convolution_forward> gate_conv;
    dnnl::convolution_backward_weights conv_backward;
    memory src, pre_map, gate_map, diff_map, diff_weights;
    memory conv_scratchpad, gate_scratchpad, backward_scratchpad;
    RowMatrixF pre;          // positions x m: pre-activations, then activations
    RowMatrixF gate;         // positions x m: gate pre-activations (gated only)
    RowMatrixF derivatives;  // (chunk * positions) x m: D of each image, then its map gradient
    RowMatrixF pooled;       // regions x m
    RowMatrixF features;     // chunk x (m * regions)
    RowMatrixF logits;       // chunk x classes
    RowMatrixF dlogits;      // chunk x classes
    RowMatrixF dfeatures;    // chunk x (m * regions)
    std::vector<float> image_diff_weights;
};

}  // namespace

struct NetworkEvaluator::Impl {
    Architecture architecture;
    ImageShape input;
    int filters = 0;
    int classes = 0;
    Loss loss = Loss::cross_entropy;
    bool gated = false;
    int positions = 0;
    int region_count = 0;
    Index features = 0;
    std::vector<int> region_of_position;
    std::vector<float> inverse_region_size;

    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    dnnl::convolution_forward::primitive_desc conv_pd;
    std::optional<dnnl::convolution_forward::primitive_desc> gate_pd;
    dnnl::convolution_backward_weights::primitive_desc backward_pd;
    memory conv_weights, gate_weights, conv_bias;  // in the primitives' layouts, set per evaluate
    memory::desc plain_weights_desc;
    std::size_t diff_weights_floats = 0;

    oneapi::tbb::enumerable_thread_specific<std::unique_ptr<Worker>> workers;
    std::vector<ChunkResult> chunks;

    Impl(const Model& model, Loss loss_kind);
    Worker& worker();
    void load_weights(const Model& model);
    void run_chunk(const Model& model, const NetworkImages& images, std::span<const std::size_t> indices,
                   bool backward, RowMatrixF* logits, std::size_t first_row, ChunkResult& result);
};

NetworkEvaluator::Impl::Impl(const Model& model, Loss loss_kind)
    : architecture(model.architecture), input(model.input), filters(model.filters()), classes(model.classes()),
      loss(loss_kind), gated(model.architecture.activation == Activation::gated_relu) {
    validate(model);
    if (model.has_hidden_layer())
        throw Error(ErrorKind::bad_input, "the model has a hidden 1x1 layer (depth 3): gradient training and its "
                                          "evaluator cover two-layer networks only");
    if (filters < 1) throw Error(ErrorKind::bad_input, "the network needs at least one filter");
    const Architecture& a = architecture;
    const int out_h = a.conv_output_size(input.height), out_w = a.conv_output_size(input.width);
    const PoolingRegions regions = make_pooling_regions(out_h, out_w, a.pool_grid);
    positions = out_h * out_w;
    region_count = regions.count();
    features = static_cast<Index>(filters) * region_count;
    region_of_position = regions.region_of_position;
    for (const int size : regions.sizes) inverse_region_size.push_back(1.0f / static_cast<float>(size));

    translate_onednn_errors("create the training primitives", [&] {
        const memory::dims src_dims{1, input.channels, input.height, input.width};
        const memory::dims weight_dims{filters, input.channels, a.kernel, a.kernel};
        const memory::dims map_dims{1, filters, out_h, out_w};
        const memory::dims strides{a.stride, a.stride}, padding{a.padding, a.padding};
        // Channels-last maps and images; the weights in whatever layout the kernels want.
        const memory::desc src_desc(src_dims, dt::f32, tag::nhwc), map_desc(map_dims, dt::f32, tag::nhwc);
        const memory::desc any_weights(weight_dims, dt::f32, tag::any);
        const memory::desc bias_desc({filters}, dt::f32, tag::a);
        plain_weights_desc = memory::desc(weight_dims, dt::f32, tag::oihw);
        conv_pd = dnnl::convolution_forward::primitive_desc(
            {dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src_desc, any_weights, bias_desc,
             map_desc, strides, padding, padding},
            user_scratchpad(), engine);
        if (gated)
            gate_pd = dnnl::convolution_forward::primitive_desc(
                {dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_desc, any_weights,
                 map_desc, strides, padding, padding},
                user_scratchpad(), engine);
        backward_pd = dnnl::convolution_backward_weights::primitive_desc(
            {dnnl::algorithm::convolution_direct, src_desc, any_weights, map_desc, strides, padding, padding},
            user_scratchpad(), engine, conv_pd);
        conv_weights = memory(conv_pd.weights_desc(), engine);
        conv_bias = memory(bias_desc, engine);
        if (gated) gate_weights = memory(gate_pd->weights_desc(), engine);
        diff_weights_floats = backward_pd.diff_weights_desc().get_size() / sizeof(float);
    });
}

Worker& NetworkEvaluator::Impl::worker() {
    std::unique_ptr<Worker>& slot = workers.local();
    if (slot) return *slot;
    auto w = std::make_unique<Worker>();
    const Index features_per_chunk = features;
    w->pre.resize(positions, filters);
    if (gated) w->gate.resize(positions, filters);
    w->derivatives.resize(static_cast<Index>(chunk_images) * positions, filters);
    w->pooled.resize(region_count, filters);
    w->features.resize(static_cast<Index>(chunk_images), features_per_chunk);
    w->logits.resize(static_cast<Index>(chunk_images), classes);
    w->dlogits.resize(static_cast<Index>(chunk_images), classes);
    w->dfeatures.resize(static_cast<Index>(chunk_images), features_per_chunk);
    w->image_diff_weights.resize(diff_weights_floats);
    translate_onednn_errors("create a training worker", [&] {
        w->stream = dnnl::stream(engine);
        w->conv = dnnl::convolution_forward(conv_pd);
        w->conv_backward = dnnl::convolution_backward_weights(backward_pd);
        w->src = memory(conv_pd.src_desc(), engine, nullptr);
        w->pre_map = memory(conv_pd.dst_desc(), engine, w->pre.data());
        w->diff_map = memory(backward_pd.diff_dst_desc(), engine, nullptr);
        w->diff_weights = memory(backward_pd.diff_weights_desc(), engine, w->image_diff_weights.data());
        w->conv_scratchpad = memory(conv_pd.scratchpad_desc(), engine);
        w->backward_scratchpad = memory(backward_pd.scratchpad_desc(), engine);
        if (gated) {
            w->gate_conv = dnnl::convolution_forward(*gate_pd);
            w->gate_map = memory(gate_pd->dst_desc(), engine, w->gate.data());
            w->gate_scratchpad = memory(gate_pd->scratchpad_desc(), engine);
        }
    });
    slot = std::move(w);
    return *slot;
}

void NetworkEvaluator::Impl::load_weights(const Model& model) {
    if (!(model.architecture == architecture) || !(model.input == input) || model.filters() != filters ||
        model.classes() != classes || model.conv_weight.data.size() != plain_weights_desc.get_size() / sizeof(float) ||
        model.fc_weight.data.size() != static_cast<std::size_t>(classes) * static_cast<std::size_t>(features) ||
        model.conv_bias.data.size() != static_cast<std::size_t>(filters) ||
        model.fc_bias.data.size() != static_cast<std::size_t>(classes))
        throw Error(ErrorKind::bad_input, "the network evaluator was built for another model shape");
    translate_onednn_errors("load the convolution weights", [&] {
        const ScopedOpenMpThreads one_thread(1);
        reorder(stream, memory(plain_weights_desc, engine, readable(model.conv_weight.data.data())), conv_weights);
        reorder(stream, memory(conv_bias.get_desc(), engine, readable(model.conv_bias.data.data())), conv_bias);
        if (gated)
            reorder(stream, memory(plain_weights_desc, engine, readable(model.gate_weight.data.data())), gate_weights);
    });
}

void NetworkEvaluator::Impl::run_chunk(const Model& model, const NetworkImages& images,
                                       std::span<const std::size_t> indices, bool backward, RowMatrixF* logits_out,
                                       std::size_t first_row, ChunkResult& result) {
    Worker& w = worker();
    const auto count = static_cast<Index>(indices.size());
    const Architecture& a = architecture;
    const Eigen::Map<const RowMatrixF> fc(model.fc_weight.data.data(), classes, features);
    const Eigen::Map<const Eigen::RowVectorXf> fc_bias(model.fc_bias.data.data(), classes);

    // ---- forward, image by image, into the chunk's feature rows
    for (Index j = 0; j < count; ++j) {
        w.src.set_data_handle(readable(images.image(indices[static_cast<std::size_t>(j)])));
        w.conv.execute(w.stream, {{DNNL_ARG_SRC, w.src},
                                  {DNNL_ARG_WEIGHTS, conv_weights},
                                  {DNNL_ARG_BIAS, conv_bias},
                                  {DNNL_ARG_DST, w.pre_map},
                                  {DNNL_ARG_SCRATCHPAD, w.conv_scratchpad}});
        if (gated)
            w.gate_conv->execute(w.stream, {{DNNL_ARG_SRC, w.src},
                                            {DNNL_ARG_WEIGHTS, gate_weights},
                                            {DNNL_ARG_DST, w.gate_map},
                                            {DNNL_ARG_SCRATCHPAD, w.gate_scratchpad}});
        w.stream.wait();
        auto pre = w.pre.array();
        auto d = w.derivatives.middleRows(j * positions, positions).array();
        switch (a.activation) {
            case Activation::relu: d = (pre > 0.0f).cast<float>(); break;
            case Activation::leaky_relu: d = (pre > 0.0f).select(pre.Constant(positions, filters, 1.0f), a.leaky_slope); break;
            case Activation::absolute: d = pre.sign(); break;
            // ">= 0": a gate on its hyperplane is open, as in the reference engine.
            case Activation::gated_relu: d = (w.gate.array() >= 0.0f).cast<float>(); break;
        }
        pre *= d;
        w.pooled.setZero();
        for (int p = 0; p < positions; ++p) w.pooled.row(region_of_position[static_cast<std::size_t>(p)]) += w.pre.row(p);
        // Feature f*R + r = average of filter f over region r: the row is the m x R transpose.
        Eigen::Map<RowMatrixF> row(w.features.row(j).data(), filters, region_count);
        row = w.pooled.transpose() * Eigen::Map<const Eigen::VectorXf>(inverse_region_size.data(), region_count).asDiagonal();
    }

    // ---- linear layer and loss, for the whole chunk
    auto features_used = w.features.topRows(count);
    auto z = w.logits.topRows(count);
    z.noalias() = features_used * fc.transpose();
    z.rowwise() += fc_bias;
    if (logits_out) logits_out->middleRows(static_cast<Index>(first_row), count) = z;
    auto dz = w.dlogits.topRows(count);
    result.loss = 0.0;
    result.correct = 0;
    for (Index j = 0; j < count; ++j) {
        const int y = images.labels[indices[static_cast<std::size_t>(j)]];
        Index best = 0;
        for (Index c = 1; c < classes; ++c)
            if (z(j, c) > z(j, best)) best = c;
        result.correct += best == y;
        if (loss == Loss::cross_entropy) {
            const double top = z(j, best);
            double sum = 0.0;
            for (Index c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(z(j, c)) - top);
            result.loss += top + std::log(sum) - z(j, y);
            for (Index c = 0; c < classes; ++c)
                dz(j, c) = static_cast<float>(std::exp(static_cast<double>(z(j, c)) - top) / sum - (c == y ? 1.0 : 0.0));
        } else {
            for (Index c = 0; c < classes; ++c) {
                const double r = static_cast<double>(z(j, c)) - (c == y ? 1.0 : 0.0);
                result.loss += 0.5 * r * r;
                dz(j, c) = static_cast<float>(r);
            }
        }
    }
    if (!backward) return;

    // ---- backward
    result.fc_gradient.noalias() = dz.transpose() * features_used;
    auto dfeatures = w.dfeatures.topRows(count);
    dfeatures.noalias() = dz * fc;
    std::fill(result.conv_gradient.begin(), result.conv_gradient.end(), 0.0f);
    const Eigen::Map<const Eigen::VectorXf> inverse_size(inverse_region_size.data(), region_count);
    for (Index j = 0; j < count; ++j) {
        // Gradient of the region sums: the feature gradient (an m x R map) over |region|.
        const Eigen::Map<const RowMatrixF> dfeature_map(dfeatures.row(j).data(), filters, region_count);
        w.pooled = inverse_size.asDiagonal() * dfeature_map.transpose();
        auto gradient = w.derivatives.middleRows(j * positions, positions);
        for (int p = 0; p < positions; ++p)
            gradient.row(p).array() *= w.pooled.row(region_of_position[static_cast<std::size_t>(p)]).array();
        w.src.set_data_handle(readable(images.image(indices[static_cast<std::size_t>(j)])));
        w.diff_map.set_data_handle(gradient.data());
        w.conv_backward.execute(w.stream, {{DNNL_ARG_SRC, w.src},
                                           {DNNL_ARG_DIFF_DST, w.diff_map},
                                           {DNNL_ARG_DIFF_WEIGHTS, w.diff_weights},
                                           {DNNL_ARG_SCRATCHPAD, w.backward_scratchpad}});
        w.stream.wait();
        for (std::size_t i = 0; i < result.conv_gradient.size(); ++i) result.conv_gradient[i] += w.image_diff_weights[i];
    }
}

NetworkEvaluator::NetworkEvaluator(const Model& model, Loss loss) : impl_(std::make_unique<Impl>(model, loss)) {}
NetworkEvaluator::NetworkEvaluator(NetworkEvaluator&&) noexcept = default;
NetworkEvaluator& NetworkEvaluator::operator=(NetworkEvaluator&&) noexcept = default;
NetworkEvaluator::~NetworkEvaluator() = default;

LossSum NetworkEvaluator::evaluate(const Model& model, const NetworkImages& images,
                                   std::span<const std::size_t> indices, NetworkGradient* gradient,
                                   RowMatrixF* logits) {
    Impl& s = *impl_;
    if (!(images.shape == s.input))
        throw Error(ErrorKind::bad_input, "images are " + to_string(images.shape) + " but the network expects " +
                                              to_string(s.input) + " (channels x height x width)");
    for (const std::size_t i : indices)
        if (i >= images.size())
            throw Error(ErrorKind::bad_input, "image index " + std::to_string(i) + " out of range (" +
                                                  std::to_string(images.size()) + " images)");
    s.load_weights(model);
    const bool backward = gradient != nullptr;
    if (logits) logits->resize(static_cast<Index>(indices.size()), s.classes);
    if (backward) {
        gradient->conv_weight.assign(model.conv_weight.data.size(), 0.0f);
        gradient->fc_weight.assign(model.fc_weight.data.size(), 0.0f);
    }
    std::vector<float> conv_sum(backward ? s.diff_weights_floats : 0, 0.0f);
    Eigen::Map<RowMatrixF> fc_sum(backward ? gradient->fc_weight.data() : nullptr, backward ? s.classes : 0,
                                  backward ? s.features : 0);

    LossSum total;
    total.images = indices.size();
    const std::size_t chunk_count = (indices.size() + chunk_images - 1) / chunk_images;
    if (s.chunks.size() < std::min(chunk_count, chunks_per_round)) s.chunks.resize(std::min(chunk_count, chunks_per_round));
    for (std::size_t round = 0; round < chunk_count; round += chunks_per_round) {
        const std::size_t in_round = std::min(chunks_per_round, chunk_count - round);
        oneapi::tbb::parallel_for(std::size_t{0}, in_round, [&](std::size_t slot) {
            const ScopedOpenMpThreads one_thread(1);
            const std::size_t first = (round + slot) * chunk_images;
            const std::size_t count = std::min(chunk_images, indices.size() - first);
            ChunkResult& result = s.chunks[slot];
            if (backward) {
                result.conv_gradient.resize(s.diff_weights_floats);
                result.fc_gradient.resize(s.classes, s.features);
            }
            translate_onednn_errors("run the network", [&] {
                s.run_chunk(model, images, indices.subspan(first, count), backward, logits, first, result);
            });
        });
        // In chunk order: the same sums for any thread count.
        for (std::size_t slot = 0; slot < in_round; ++slot) {
            const ChunkResult& result = s.chunks[slot];
            total.loss += result.loss;
            total.correct += result.correct;
            if (!backward) continue;
            for (std::size_t i = 0; i < conv_sum.size(); ++i) conv_sum[i] += result.conv_gradient[i];
            fc_sum += result.fc_gradient;
        }
    }
    if (backward)
        translate_onednn_errors("reorder the convolution gradient", [&] {
            const ScopedOpenMpThreads one_thread(1);
            reorder(s.stream, memory(s.backward_pd.diff_weights_desc(), s.engine, conv_sum.data()),
                    memory(s.plain_weights_desc, s.engine, gradient->conv_weight.data()));
        });
    return total;
}

LossSum NetworkEvaluator::evaluate(const Model& model, const NetworkImages& images, NetworkGradient* gradient,
                                   RowMatrixF* logits) {
    std::vector<std::size_t> all(images.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    return evaluate(model, images, all, gradient, logits);
}

NetworkObjective network_objective(const Model& model, const Dataset& data, double beta, Loss loss) {
    if (data.size() == 0) throw Error(ErrorKind::bad_input, "the objective needs at least one image");
    NetworkEvaluator evaluator(model, loss);
    const NetworkImages images = NetworkImages::prepare(data, model.normalization);
    const LossSum sum = evaluator.evaluate(model, images);
    NetworkObjective result;
    const double n = static_cast<double>(data.size());
    result.loss = sum.loss / n;
    result.weight_decay = weight_decay(model);
    result.objective = result.loss + beta * result.weight_decay;
    result.accuracy = static_cast<double>(sum.correct) / n;
    return result;
}

}  // namespace cvxcnn
