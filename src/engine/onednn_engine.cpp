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
//      batch's buffer; then, region path, per group: crop -> conv(s) -> inner product
//      added to the slice's logits;
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
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/tbb/task.h>

#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/util/error.hpp"
#include "util/onednn_support.hpp"

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

// With region groups the maps are small and the cache bound above would make the whole
// batch one slice on one thread: slices are capped so that the threads share a batch.
// (Measured on the Fashion-MNIST model: 8 to 32 images within noise; 16 leaves 4 slices
// of a batch of 64 for 2 threads to balance dynamically.)
constexpr std::size_t max_region_slice_images = 16;

// Layout of the region groups' activation maps. On AVX-512 the channel-blocked nChw16c
// (jit:avx512_core convolution, read as is by the inner product) ran the Fashion-MNIST
// model's groups 2x faster than what format_tag::any picks there (brgconv channels-last
// plus a reorder for the inner product): the maps are only a few positions wide, so
// blocking over channels is what fills the vectors. Elsewhere (not measured) oneDNN chooses.
memory::format_tag region_map_layout() {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto avx512 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
    return (isa & avx512) == avx512 ? tag::nChw16c : tag::any;
}

// The region path pays when the convolution work it skips is worth its extra primitives
// (~4 per group and slice): the skipped work, per image, is the sum over groups of
// filters * (OH*OW - region area) * k*k*C multiply-adds (twice for gated ReLU), and must
// reach this much per group. Measured (cvxcnn_bench_engine --region-sparse, gated, region
// path vs full maps, batch 1 / 64): 28x28 pool7 with 1 to 80 filters per group (14k to 1M
// saved per group) 1.4x to 15x faster at both batches; 28x28 pool28, 784 filters: 2.6x / 5x;
// 8x8 pool2, ~1.5 filters per group (~1.3k): 4.6x / 1.25x; 8x8 pool4, ~1.5 filters per
// group (~1.7k): 1.5x at batch 1 but 0.74x at batch 64, the only loss seen. Tiny models
// either way (10^5 images/s); the rule's job is pool1, where nothing is skipped.
constexpr double region_path_min_saved_per_group = 1024.0;

// OpenMP (oneDNN's pool) and TBB (everything else) are separate pools. A oneDNN call made
// from a TBB task would start up to `threads` OpenMP threads on each of TBB's `threads`
// workers; inside a task the engine therefore runs on one OpenMP thread.
struct SingleOpenMpThreadInsideTbbTask : ScopedOpenMpThreads {
    SingleOpenMpThreadInsideTbbTask() : ScopedOpenMpThreads(1, true) {}
};

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
memory plain_memory(const dnnl::engine& engine, const memory::dims& dims, tag layout, std::span<const float> values) {
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

// Filters that a convex-trained model wires to ONE pooling region (their fc_weight columns
// are zero for every other region): only the conv outputs pooled into that region can
// reach a logit, so the group runs its convolutions on that region alone, over a crop of
// the input (the windows of the region's outputs: halo and zero padding included).
struct RegionGroup {
    int region = 0;                  // ry * G + rx
    int out_rows = 0, out_cols = 0;  // the region's bands: the conv outputs computed
    int in_row = 0, in_col = 0;      // first input row / column read; < 0 inside the padding
    int in_rows = 0, in_cols = 0;    // input rows / columns read, halo and padding included
    std::vector<int> filters;        // model filter indices, ascending
    std::vector<float> conv_weight, conv_bias, gate_weight;  // those filters' rows (OIHW)
    // {classes, filters, out_rows, out_cols} oihw, fc[c, f, region] / |region| at every
    // position: one inner product over the activations both pools and weights them.
    std::vector<float> ip_weight;

    // Activation maps of one image, as the slice size counts them (two for gated ReLU).
    [[nodiscard]] std::size_t map_bytes_per_image(bool gated) const {
        return filters.size() * static_cast<std::size_t>(out_rows) * static_cast<std::size_t>(out_cols) *
               sizeof(float) * (gated ? 2 : 1);
    }
};

// Copies the window of `group` out of `count` normalized nchw images into `crop`
// ({count, C, in_rows, in_cols} nchw), with zeros where the window lies in the padding:
// the group's convolution then needs no padding of its own.
void copy_crop(const float* images, std::size_t count, const ImageShape& shape, const RegionGroup& group, float* crop) {
    const std::size_t row_length = static_cast<std::size_t>(group.in_cols);
    for (std::size_t plane = 0; plane < count * static_cast<std::size_t>(shape.channels); ++plane) {
        const float* source = images + plane * shape.pixels_per_channel();
        for (int y = 0; y < group.in_rows; ++y, crop += row_length) {
            const int image_row = group.in_row + y;
            if (image_row < 0 || image_row >= shape.height) {
                std::fill_n(crop, row_length, 0.0f);
                continue;
            }
            const float* line = source + static_cast<std::size_t>(image_row) * static_cast<std::size_t>(shape.width);
            for (int x = 0; x < group.in_cols; ++x) {
                const int image_column = group.in_col + x;
                crop[x] = image_column >= 0 && image_column < shape.width ? line[image_column] : 0.0f;
            }
        }
    }
}

// The model restricted to `filters` (ascending indices): their conv and gate rows, biases
// and fc_weight columns; everything else as in `model`.
Model filter_subset(const Model& model, const std::vector<int>& filters) {
    const Architecture& a = model.architecture;
    const std::size_t m = static_cast<std::size_t>(model.filters()), count = filters.size();
    const std::size_t patch = static_cast<std::size_t>(a.patch_size(model.input.channels));
    const std::size_t regions = static_cast<std::size_t>(a.pool_grid) * static_cast<std::size_t>(a.pool_grid);
    const auto classes = static_cast<std::size_t>(model.classes());
    const auto rows = [&](const Tensor& tensor, std::size_t length) {
        Tensor result = tensor;
        result.shape[0] = static_cast<std::int64_t>(count);
        result.data.resize(count * length);
        for (std::size_t j = 0; j < count; ++j)
            std::copy_n(tensor.data.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(filters[j]) * length),
                        length, result.data.begin() + static_cast<std::ptrdiff_t>(j * length));
        return result;
    };
    Model subset = model;
    subset.conv_weight = rows(model.conv_weight, patch);
    subset.conv_bias = rows(model.conv_bias, 1);
    if (a.activation == Activation::gated_relu) subset.gate_weight = rows(model.gate_weight, patch);
    subset.fc_weight = Tensor::zeros({static_cast<std::int64_t>(classes), static_cast<std::int64_t>(count * regions)});
    for (std::size_t c = 0; c < classes; ++c)
        for (std::size_t j = 0; j < count; ++j)
            std::copy_n(model.fc_weight.data.begin() +
                            static_cast<std::ptrdiff_t>((c * m + static_cast<std::size_t>(filters[j])) * regions),
                        regions, subset.fc_weight.data.begin() + static_cast<std::ptrdiff_t>((c * count + j) * regions));
    return subset;
}

// One region group's primitives for a slice:
//   crop -> [reorder] -> convolution(s) -> [reorder] -> inner product added (sum post-op)
//   to the slice's logits.
struct RegionStage {
    memory crop;  // {n, C, in_rows, in_cols} nchw; owns its buffer, filled by copy_crop
    std::vector<Step> steps;
};

// The stages for a slice of n images:
//   dense path (filters whose fc columns touch several regions, all of them when the
//   region path is off):
//     input slice -> [reorder] -> convolution(s) -> pooling -> [reorder] -> features slice
//     (folded pooling: -> convolution(s) -> [reorder] -> inner product -> logits slice);
//   region path: one RegionStage per group, each adding to the logits slice.
// `input`, `output` and `logits` own no buffer: they point into the batch's buffers, slice
// by slice. Every primitive has its own scratchpad (user scratchpad mode), so the slices
// of different threads never share one.
struct Stage {
    memory input;   // {n, C, H, W} nchw
    memory output;  // {n, m, G, G} nchw features, or {n, classes} nc logits when folded
    std::vector<Step> steps;
    memory logits;                     // {n, classes} nc, when there are region groups
    std::vector<RegionStage> regions;  // in the order of Impl::groups
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

// The weights of one convolution layer of the engine: `filters` rows of OIHW weights,
// one bias each, and the gate rows for gated ReLU (empty otherwise).
struct ConvolutionWeights {
    memory::dim filters;
    std::span<const float> weight, bias, gate;
};

}  // namespace

struct OnednnEngine::Impl {
    Model model;  // as given
    // The filters of the dense path: all those whose fc columns touch several regions
    // (all filters with a nonzero column when the region path is off).
    Model dense;
    std::vector<RegionGroup> groups;  // the region path; empty when off
    std::size_t batch;
    std::size_t slice;  // images per slice of the convolution stages
    int out_height = 0;
    int out_width = 0;
    bool fold = false;                        // dense path: pooling folded into its inner product
    // Depth 3: a hidden 1x1 convolution with ReLU between the activation and the pooling.
    // Its units mix all filters, so there is no region path: every filter runs on the
    // whole map (dense = the whole model).
    bool deep = false;
    std::vector<float> inner_product_weight;  // dense fc_weight, or the folded weights when fold
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    std::vector<std::unique_ptr<Worker>> workers;
    ShapeCache<Head> heads;  // by batch size

    Impl(const Model& source, std::size_t batch_size, RegionPath region_path) : model(source), batch(batch_size) {
        const Architecture& a = model.architecture;
        out_height = a.conv_output_size(model.input.height);
        out_width = a.conv_output_size(model.input.width);
        const int grid = a.pool_grid;
        fold = out_height % grid != 0 || out_width % grid != 0;
        deep = model.has_hidden_layer();
        if (deep) dense = model;
        else split_filters(region_path);

        std::size_t map_bytes = map_bytes_per_image();
        for (const RegionGroup& group : groups)
            map_bytes = std::max(map_bytes, group.map_bytes_per_image(a.activation == Activation::gated_relu));
        slice = std::clamp<std::size_t>(slice_activation_bytes / std::max<std::size_t>(map_bytes, 1), 1, batch);
        if (!groups.empty()) slice = std::min(slice, max_region_slice_images);

        if (!fold) {
            inner_product_weight = dense.fc_weight.data;
            return;
        }
        // W[c, f, y, x] = fc[c, f*R + region(y, x)] / |region|: averaging a region then
        // weighting it equals weighting each of its positions by weight / size.
        const PoolingRegions regions = make_pooling_regions(out_height, out_width, grid);
        const std::size_t m = static_cast<std::size_t>(dense_channels());
        const std::size_t r_count = static_cast<std::size_t>(regions.count());
        const std::size_t positions = regions.region_of_position.size();
        inner_product_weight.resize(static_cast<std::size_t>(model.classes()) * m * positions);
        std::size_t out = 0;
        for (std::size_t c = 0; c < static_cast<std::size_t>(model.classes()); ++c)
            for (std::size_t f = 0; f < m; ++f)
                for (std::size_t p = 0; p < positions; ++p) {
                    const auto r = static_cast<std::size_t>(regions.region_of_position[p]);
                    inner_product_weight[out++] = dense.fc_weight.data[(c * m + f) * r_count + r] /
                                                  static_cast<float>(regions.sizes[r]);
                }
    }

    // Sorts the filters by the regions their fc_weight columns touch: none -> dropped (it
    // cannot change a logit), one -> that region's group, several -> the dense path. The
    // groups go to the dense path too when the region path is off or would not pay.
    void split_filters(RegionPath region_path) {
        const Architecture& a = model.architecture;
        const PoolingRegions regions = make_pooling_regions(out_height, out_width, a.pool_grid);
        const int m = model.filters(), classes = model.classes(), r_count = regions.count();
        const auto fc = [&](int c, int f, int r) {
            return model.fc_weight.data[(static_cast<std::size_t>(c) * static_cast<std::size_t>(m) +
                                         static_cast<std::size_t>(f)) *
                                            static_cast<std::size_t>(r_count) +
                                        static_cast<std::size_t>(r)];
        };
        std::vector<std::vector<int>> by_region(static_cast<std::size_t>(r_count));
        std::vector<int> dense_filters, sparse_filters;
        for (int f = 0; f < m; ++f) {
            int touched = 0, last = 0;
            for (int r = 0; r < r_count && touched < 2; ++r)
                for (int c = 0; c < classes; ++c)
                    if (fc(c, f, r) != 0.0f) {
                        ++touched;
                        last = r;
                        break;
                    }
            if (touched == 1) {
                by_region[static_cast<std::size_t>(last)].push_back(f);
                sparse_filters.push_back(f);
            } else if (touched > 1) {
                dense_filters.push_back(f);
            }
        }
        if (region_path == RegionPath::never ||
            (region_path == RegionPath::automatic && !region_path_pays(by_region, regions))) {
            dense_filters.insert(dense_filters.end(), sparse_filters.begin(), sparse_filters.end());
            std::ranges::sort(dense_filters);
            dense = filter_subset(model, dense_filters);
            return;
        }
        dense = filter_subset(model, dense_filters);

        const std::size_t patch = static_cast<std::size_t>(a.patch_size(model.input.channels));
        const bool gated = a.activation == Activation::gated_relu;
        for (int r = 0; r < r_count; ++r) {
            std::vector<int>& filters = by_region[static_cast<std::size_t>(r)];
            if (filters.empty()) continue;
            RegionGroup group;
            group.region = r;
            const int ry = r / a.pool_grid, rx = r % a.pool_grid;
            const int out_row = regions.row_begin(ry), out_col = regions.column_begin(rx);
            group.out_rows = regions.row_begin(ry + 1) - out_row;
            group.out_cols = regions.column_begin(rx + 1) - out_col;
            // Output (oy, ox) reads input rows oy*s - p .. oy*s - p + k - 1 (columns alike).
            group.in_row = out_row * a.stride - a.padding;
            group.in_col = out_col * a.stride - a.padding;
            group.in_rows = (group.out_rows - 1) * a.stride + a.kernel;
            group.in_cols = (group.out_cols - 1) * a.stride + a.kernel;
            for (const int f : filters) {
                const auto first = model.conv_weight.data.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(f) * patch);
                group.conv_weight.insert(group.conv_weight.end(), first, first + static_cast<std::ptrdiff_t>(patch));
                group.conv_bias.push_back(model.conv_bias.data[static_cast<std::size_t>(f)]);
                if (gated) {
                    const auto gate = model.gate_weight.data.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(f) * patch);
                    group.gate_weight.insert(group.gate_weight.end(), gate, gate + static_cast<std::ptrdiff_t>(patch));
                }
            }
            const auto size = static_cast<float>(regions.sizes[static_cast<std::size_t>(r)]);
            const std::size_t positions = static_cast<std::size_t>(group.out_rows) * static_cast<std::size_t>(group.out_cols);
            for (int c = 0; c < classes; ++c)
                for (const int f : filters) group.ip_weight.insert(group.ip_weight.end(), positions, fc(c, f, r) / size);
            group.filters = std::move(filters);
            groups.push_back(std::move(group));
        }
    }

    // The rule of region_path_min_saved_per_group: the multiply-adds per image the groups
    // skip, against the number of groups.
    [[nodiscard]] bool region_path_pays(const std::vector<std::vector<int>>& by_region,
                                        const PoolingRegions& regions) const {
        const Architecture& a = model.architecture;
        const double window = static_cast<double>(a.patch_size(model.input.channels)) *
                              (a.activation == Activation::gated_relu ? 2.0 : 1.0);
        double saved = 0.0, groups_count = 0.0;
        for (std::size_t r = 0; r < by_region.size(); ++r) {
            if (by_region[r].empty()) continue;
            groups_count += 1.0;
            const double skipped_positions = static_cast<double>(regions.region_of_position.size()) - regions.sizes[r];
            saved += static_cast<double>(by_region[r].size()) * skipped_positions * window;
        }
        return groups_count > 0.0 && saved >= region_path_min_saved_per_group * groups_count;
    }

    // Bytes of the dense path's {m, OH, OW} activation maps for one image (two maps for
    // gated ReLU).
    [[nodiscard]] std::size_t map_bytes_per_image() const {
        const std::size_t maps = static_cast<std::size_t>(dense.filters()) *
                                     (model.architecture.activation == Activation::gated_relu ? 2 : 1) +
                                 static_cast<std::size_t>(deep ? dense.hidden_units() : 0);
        return maps * static_cast<std::size_t>(out_height) * static_cast<std::size_t>(out_width) * sizeof(float);
    }

    // Channels of the dense path's pooled map: its filters, or at depth 3 the hidden units
    // (none when there is no filter: the hidden units then output ReLU(0) = 0).
    [[nodiscard]] int dense_channels() const noexcept {
        if (!deep) return dense.filters();
        return dense.filters() > 0 ? dense.hidden_units() : 0;
    }

    [[nodiscard]] std::size_t output_per_image() const {
        const auto grid = static_cast<std::size_t>(model.architecture.pool_grid);
        return fold ? static_cast<std::size_t>(model.classes())
                    : static_cast<std::size_t>(dense_channels()) * grid * grid;
    }

    // Appends a slice primitive with its own scratchpad.
    template <typename Primitive, typename PrimitiveDesc>
    void add_step(std::vector<Step>& steps, const PrimitiveDesc& pd, Arguments arguments) {
        arguments.insert({DNNL_ARG_SCRATCHPAD, memory(pd.scratchpad_desc(), engine)});
        steps.push_back({Primitive(pd), std::move(arguments)});
    }

    // from -> to, as a slice step (user scratchpad).
    void add_reorder(std::vector<Step>& steps, const memory& from, const memory& to, const dnnl::primitive_attr& attr) {
        const dnnl::reorder::primitive_desc pd(engine, from.get_desc(), engine, to.get_desc(), attr);
        add_step<dnnl::reorder>(steps, pd, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
    }

    // Appends [input reorder] -> convolution(s) with the activation, over `input` (plain
    // {n, C, h, w}), to `steps` and describes them in `implementation`; returns the
    // activation map {n, filters, oh, ow} in the layout oneDNN chose.
    memory add_activated_convolution(std::vector<Step>& steps, std::string& implementation, const memory& input,
                                     const ConvolutionWeights& weights, memory::dim padding_size,
                                     dnnl::stream& worker_stream, tag map_layout = tag::any) {
        const Architecture& a = model.architecture;
        const memory::dims input_dims = input.get_desc().dims();
        const memory::dim images = input_dims[0], channels = input_dims[1], m = weights.filters;
        const auto output_size = [&](memory::dim side) { return (side + 2 * padding_size - a.kernel) / a.stride + 1; };
        const dnnl::primitive_attr plain_attr = user_scratchpad_attr();

        // {n, C, h, w} (x) {m, C, k, k} -> {n, m, oh, ow}; layouts left to oneDNN (the
        // map's too, unless map_layout names one).
        const memory::dims kernel_dims{m, channels, a.kernel, a.kernel};
        const memory::dims strides{a.stride, a.stride}, padding{padding_size, padding_size};
        const memory::desc any_src(input_dims, dt::f32, tag::any);
        const memory::desc any_weights(kernel_dims, dt::f32, tag::any);
        const memory::desc bias_desc({m}, dt::f32, tag::x);
        const memory::desc map_desc({images, m, output_size(input_dims[2]), output_size(input_dims[3])}, dt::f32,
                                   map_layout);
        const memory conv_weight_plain = plain_memory(engine, kernel_dims, tag::oihw, weights.weight);
        const memory conv_bias = plain_memory(engine, {m}, tag::x, weights.bias);

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
             map_desc, strides, padding, padding},
            conv_attr, engine);
        implementation = std::string("conv ") + conv_pd.impl_info_str();

        // Input: reordered if the convolution wants another layout.
        memory conv_input = input;
        if (conv_pd.src_desc() != input.get_desc()) {
            conv_input = memory(conv_pd.src_desc(), engine);
            add_reorder(steps, input, conv_input, plain_attr);
        }
        memory activated(conv_pd.dst_desc(), engine);
        add_step<dnnl::convolution_forward>(
            steps, conv_pd,
            {{DNNL_ARG_SRC, conv_input},
             {DNNL_ARG_WEIGHTS, reorder_once(worker_stream, conv_weight_plain, conv_pd.weights_desc())},
             {DNNL_ARG_BIAS, conv_bias},
             {DNNL_ARG_DST, activated}});
        if (a.activation != Activation::gated_relu) return activated;

        // The first convolution gave u = conv_u(x) + b. The gate convolution (no bias)
        // then turns g.x into 1[g.x >= 0] (binary_ge with a broadcast 0; ">=": a gate on
        // its hyperplane is open, as in the reference) and multiplies by u, in one pass.
        const memory u = activated;
        const memory::desc zero_desc({1, 1, 1, 1}, dt::f32, tag::nchw);
        const memory zero = plain_memory(engine, {1, 1, 1, 1}, tag::nchw, std::vector<float>{0.0f});
        dnnl::post_ops gate_ops;
        gate_ops.append_binary(dnnl::algorithm::binary_ge, zero_desc);
        gate_ops.append_binary(dnnl::algorithm::binary_mul, u.get_desc());
        const memory gate_weight_plain = plain_memory(engine, kernel_dims, tag::oihw, weights.gate);
        const dnnl::convolution_forward::desc gate_desc(dnnl::prop_kind::forward_inference,
                                                        dnnl::algorithm::convolution_direct, conv_pd.src_desc(),
                                                        any_weights, conv_pd.dst_desc(), strides, padding, padding);
        try {
            // Same source and destination layouts as the first convolution: one input
            // reorder serves both, and u multiplies elementwise in its own layout.
            const dnnl::convolution_forward::primitive_desc gate_pd(gate_desc, user_scratchpad_attr(gate_ops), engine);
            activated = memory(gate_pd.dst_desc(), engine);
            add_step<dnnl::convolution_forward>(
                steps, gate_pd,
                {{DNNL_ARG_SRC, conv_input},
                 {DNNL_ARG_WEIGHTS, reorder_once(worker_stream, gate_weight_plain, gate_pd.weights_desc())},
                 {DNNL_ARG_DST, activated},
                 {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, zero},
                 {DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, u}});
            implementation += std::string(", gate conv ") + gate_pd.impl_info_str();
        } catch (const dnnl::error&) {
            // Some layouts (e.g. 1x1 kernels on few channels) have no convolution with
            // binary post-ops: the gate convolution alone, then the two binary steps.
            const dnnl::convolution_forward::primitive_desc gate_pd(gate_desc, plain_attr, engine);
            const memory gate(gate_pd.dst_desc(), engine);
            add_step<dnnl::convolution_forward>(
                steps, gate_pd,
                {{DNNL_ARG_SRC, conv_input},
                 {DNNL_ARG_WEIGHTS, reorder_once(worker_stream, gate_weight_plain, gate_pd.weights_desc())},
                 {DNNL_ARG_DST, gate}});
            const dnnl::binary::primitive_desc open_pd(
                {dnnl::algorithm::binary_ge, gate.get_desc(), zero_desc, gate.get_desc()}, plain_attr, engine);
            add_step<dnnl::binary>(steps, open_pd, {{DNNL_ARG_SRC_0, gate}, {DNNL_ARG_SRC_1, zero}, {DNNL_ARG_DST, gate}});
            activated = memory(gate.get_desc(), engine);
            const dnnl::binary::primitive_desc product_pd(
                {dnnl::algorithm::binary_mul, gate.get_desc(), u.get_desc(), gate.get_desc()}, plain_attr, engine);
            add_step<dnnl::binary>(steps, product_pd, {{DNNL_ARG_SRC_0, gate}, {DNNL_ARG_SRC_1, u}, {DNNL_ARG_DST, activated}});
            implementation += std::string(", gate conv ") + gate_pd.impl_info_str() + " + binary ge, mul";
        }
        return activated;
    }

    // The dense path of a slice: convolutions over the whole map, then pooling into the
    // features slice, or (folded) the inner product into the logits slice.
    void add_dense_steps(Stage& stage, memory::dim images, dnnl::stream& worker_stream) {
        const Architecture& a = model.architecture;
        const memory::dim classes = model.classes(), m = dense_channels(), grid = a.pool_grid;
        stage.output = fold ? memory({{images, classes}, dt::f32, tag::nc}, engine, DNNL_MEMORY_NONE)
                            : memory({{images, m, grid, grid}, dt::f32, tag::nchw}, engine, DNNL_MEMORY_NONE);
        const dnnl::primitive_attr plain_attr = user_scratchpad_attr();
        memory activated = add_activated_convolution(
            stage.steps, stage.implementation, stage.input,
            {dense.filters(), dense.conv_weight.data, dense.conv_bias.data, dense.gate_weight.data}, a.padding,
            worker_stream);
        if (deep) activated = add_hidden_convolution(stage.steps, stage.implementation, activated, worker_stream);

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
                add_step<dnnl::pooling_forward>(stage.steps, pool_pd,
                                                {{DNNL_ARG_SRC, activated}, {DNNL_ARG_DST, stage.output}});
            } else {
                const memory pooled(pool_pd.dst_desc(), engine);
                add_step<dnnl::pooling_forward>(stage.steps, pool_pd, {{DNNL_ARG_SRC, activated}, {DNNL_ARG_DST, pooled}});
                add_reorder(stage.steps, pooled, stage.output, plain_attr);
            }
            return;
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
            add_reorder(stage.steps, activated, features, plain_attr);
        }
        const memory ip_weight_plain = plain_memory(engine, weight_dims, tag::oihw, inner_product_weight);
        add_step<dnnl::inner_product_forward>(
            stage.steps, ip_pd,
            {{DNNL_ARG_SRC, features},
             {DNNL_ARG_WEIGHTS, reorder_once(worker_stream, ip_weight_plain, ip_pd.weights_desc())},
             {DNNL_ARG_BIAS, plain_memory(engine, {classes}, tag::x, model.fc_bias.data)},
             {DNNL_ARG_DST, stage.output}});
        stage.implementation += std::string(", folded pooling ip ") + ip_pd.impl_info_str();
    }

    // Depth 3: {n, m, oh, ow} -> 1x1 convolution {m2, m, 1, 1} (no bias) with ReLU fused as
    // a post-op -> {n, m2, oh, ow}, in the layout oneDNN picks.
    memory add_hidden_convolution(std::vector<Step>& steps, std::string& implementation, const memory& activated,
                                  dnnl::stream& worker_stream) {
        const memory::dims map_dims = activated.get_desc().dims();
        const memory::dim m = map_dims[1], m2 = dense.hidden_units();
        const memory::dims weight_dims{m2, m, 1, 1};
        dnnl::post_ops relu;
        relu.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
        const dnnl::convolution_forward::primitive_desc pd(
            {dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
             memory::desc(map_dims, dt::f32, tag::any), memory::desc(weight_dims, dt::f32, tag::any),
             memory::desc({map_dims[0], m2, map_dims[2], map_dims[3]}, dt::f32, tag::any), {1, 1}, {0, 0}, {0, 0}},
            user_scratchpad_attr(relu), engine);
        implementation += std::string(", hidden 1x1 conv ") + pd.impl_info_str();
        memory source = activated;
        if (pd.src_desc() != activated.get_desc()) {
            source = memory(pd.src_desc(), engine);
            add_reorder(steps, activated, source, user_scratchpad_attr());
        }
        const memory weight_plain = plain_memory(engine, weight_dims, tag::oihw, dense.hidden_weight.data);
        memory hidden(pd.dst_desc(), engine);
        add_step<dnnl::convolution_forward>(
            steps, pd,
            {{DNNL_ARG_SRC, source},
             {DNNL_ARG_WEIGHTS, reorder_once(worker_stream, weight_plain, pd.weights_desc())},
             {DNNL_ARG_DST, hidden}});
        return hidden;
    }

    // One region group of a slice: its crop, convolutions over the region's outputs only
    // (padding already in the crop), and an inner product with the pooling folded into its
    // weights, added to the slice's logits by a sum post-op.
    RegionStage build_region_stage(const RegionGroup& group, const memory& logits, memory::dim images,
                                   dnnl::stream& worker_stream, std::string& implementation) {
        const memory::dim classes = model.classes(), m = to_dim(group.filters.size());
        RegionStage region;
        region.crop = memory({{images, model.input.channels, group.in_rows, group.in_cols}, dt::f32, tag::nchw}, engine);
        const memory activated = add_activated_convolution(
            region.steps, implementation, region.crop, {m, group.conv_weight, group.conv_bias, group.gate_weight}, 0,
            worker_stream, region_map_layout());

        dnnl::post_ops accumulate;
        accumulate.append_sum(1.0f);
        const memory::dims weight_dims{classes, m, group.out_rows, group.out_cols};
        const auto inner_product = [&](const memory::desc& source) {
            return dnnl::inner_product_forward::primitive_desc(
                {dnnl::prop_kind::forward_inference, source, memory::desc(weight_dims, dt::f32, tag::any),
                 logits.get_desc()},
                user_scratchpad_attr(accumulate), engine);
        };
        // The map as the convolution wrote it (the gemm inner product reads blocked
        // layouts); otherwise whatever the inner product wants, after a reorder.
        memory features = activated;
        dnnl::inner_product_forward::primitive_desc ip_pd;
        try {
            ip_pd = inner_product(activated.get_desc());
        } catch (const dnnl::error&) {
            ip_pd = inner_product(memory::desc(activated.get_desc().dims(), dt::f32, tag::any));
            features = memory(ip_pd.src_desc(), engine);
            add_reorder(region.steps, activated, features, user_scratchpad_attr());
            implementation += ", reorder";
        }
        const memory ip_weight_plain = plain_memory(engine, weight_dims, tag::oihw, group.ip_weight);
        add_step<dnnl::inner_product_forward>(
            region.steps, ip_pd,
            {{DNNL_ARG_SRC, features},
             {DNNL_ARG_WEIGHTS, reorder_once(worker_stream, ip_weight_plain, ip_pd.weights_desc())},
             {DNNL_ARG_DST, logits}});
        implementation += std::string(", ip ") + ip_pd.impl_info_str();
        return region;
    }

    // Built while the calling thread is limited to one OpenMP thread: a slice runs on one
    // thread, so oneDNN picks and decomposes its kernels for one.
    Stage build_stage(std::size_t n, dnnl::stream& worker_stream) {
        const ScopedOpenMpThreads one_thread(1);
        const memory::dim images = to_dim(n);
        Stage stage;
        stage.input = memory({{images, model.input.channels, model.input.height, model.input.width}, dt::f32, tag::nchw},
                             engine, DNNL_MEMORY_NONE);
        if (dense_channels() > 0) add_dense_steps(stage, images, worker_stream);
        if (groups.empty()) return stage;

        stage.logits = memory({{images, model.classes()}, dt::f32, tag::nc}, engine, DNNL_MEMORY_NONE);
        std::string first_group;  // the groups differ in sizes only: the first one speaks for all
        for (const RegionGroup& group : groups) {
            std::string text;
            stage.regions.push_back(build_region_stage(group, stage.logits, images, worker_stream, text));
            if (first_group.empty()) first_group = std::move(text);
        }
        std::size_t filters = 0;
        for (const RegionGroup& group : groups) filters += group.filters.size();
        if (!stage.implementation.empty()) stage.implementation += ", ";
        stage.implementation += "regions " + std::to_string(groups.size()) + " groups of " + std::to_string(filters) +
                                " filters: " + first_group;
        return stage;
    }

    Head build_head(std::size_t n) {
        const memory::dim images = to_dim(n), classes = model.classes(), m = dense_channels();
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

        if (!runs_filters()) {  // no filter reaches a logit: the logits are fc_bias, written once
            auto* logits = static_cast<float*>(head.logits.get_data_handle());
            for (std::size_t i = 0; i < n; ++i)
                std::copy(model.fc_bias.data.begin(), model.fc_bias.data.end(), logits + i * model.fc_bias.data.size());
            return head;
        }
        if (m == 0 || fold) return head;  // the slices write the logits

        // {N, m, G, G} -> {N, classes} over the whole batch. fc_weight's feature index
        // (f*G + gy)*G + gx is exactly the oihw flattening of {classes, m, G, G}. The
        // features are plain nchw: with channels-last features (what the convolutions
        // choose for few input channels) this GEMM was measured ~50x slower. With region
        // groups the slices have already written their share of the logits: added to.
        head.features = memory({{images, m, grid, grid}, dt::f32, tag::nchw}, engine);
        const memory::dims weight_dims{classes, m, grid, grid};
        dnnl::post_ops add_to_regions;
        if (!groups.empty()) add_to_regions.append_sum(1.0f);
        dnnl::primitive_attr attr;
        attr.set_post_ops(add_to_regions);
        const dnnl::inner_product_forward::primitive_desc ip_pd(
            {dnnl::prop_kind::forward_inference, head.features.get_desc(), memory::desc(weight_dims, dt::f32, tag::any),
             memory::desc({classes}, dt::f32, tag::x), head.logits.get_desc()},
            attr, engine);
        const memory ip_weight_plain = plain_memory(engine, weight_dims, tag::oihw, inner_product_weight);
        head.inner_product = Step{dnnl::inner_product_forward(ip_pd),
                                  {{DNNL_ARG_SRC, head.features},
                                   {DNNL_ARG_WEIGHTS, reorder_once(stream, ip_weight_plain, ip_pd.weights_desc())},
                                   {DNNL_ARG_BIAS, plain_memory(engine, {classes}, tag::x, model.fc_bias.data)},
                                   {DNNL_ARG_DST, head.logits}}};
        head.implementation = std::string("ip ") + ip_pd.impl_info_str() + ", " + head.implementation;
        return head;
    }

    // False when no filter can change a logit (none, or all fc columns zero).
    [[nodiscard]] bool runs_filters() const noexcept { return dense_channels() > 0 || !groups.empty(); }

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
        if (!runs_filters()) return head(n).implementation;
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
    // images into the batch input, then run its stages into the batch's output buffers.
    void run_slice(Worker& worker, Head& h, const float* source, std::size_t n, std::size_t index) {
        const std::size_t values = model.input.values();
        const std::size_t first = index * slice, count = std::min(slice, n - first);
        auto* input = static_cast<float*>(h.input.get_data_handle()) + first * values;
        std::copy_n(source + first * values, count * values, input);
        // The reference's own normalization code, so both engines see the same inputs.
        for (std::size_t i = 0; i < count; ++i)
            model.normalization.apply(std::span<float>(input + i * values, values), model.input);
        Stage& s = stage(worker, count);  // prepared: a lookup
        s.input.set_data_handle(input);
        if (!groups.empty()) {
            // The region inner products add to the logits rows, which start at what the
            // other paths leave there: fc_bias without a dense path, 0 when the batch's
            // inner product adds bias and dense features afterwards; the folded dense
            // path writes them (bias included) before the groups run.
            const auto classes = static_cast<std::size_t>(model.classes());
            float* logits = static_cast<float*>(h.logits.get_data_handle()) + first * classes;
            s.logits.set_data_handle(logits);
            if (dense_channels() == 0) {
                for (std::size_t i = 0; i < count; ++i) std::ranges::copy(model.fc_bias.data, logits + i * classes);
            } else if (!fold) {
                std::fill_n(logits, count * classes, 0.0f);
            }
            for (std::size_t g = 0; g < groups.size(); ++g)
                copy_crop(input, count, model.input, groups[g], static_cast<float*>(s.regions[g].crop.get_data_handle()));
        }
        if (dense_channels() > 0) {
            auto* output = static_cast<float*>(fold ? h.logits.get_data_handle() : h.features.get_data_handle());
            s.output.set_data_handle(output + first * output_per_image());
            for (auto& step : s.steps) step.primitive.execute(worker.stream, step.arguments);
        }
        for (auto& region : s.regions)
            for (auto& step : region.steps) step.primitive.execute(worker.stream, step.arguments);
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
            if (runs_filters()) forward(h, images.data() + first * values, n);
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

OnednnEngine::OnednnEngine(const Model& model, std::size_t batch, RegionPath region_path) {
    validate(model);
    if (batch == 0) throw Error(ErrorKind::bad_input, "engine: batch size must be >= 1");
    const auto grid = static_cast<double>(model.architecture.pool_grid);
    const double per_image = static_cast<double>(model.input.values()) +
                             static_cast<double>(model.pooled_channels()) * grid * grid + 2.0 * model.classes();
    const double bytes = per_image * sizeof(float) * static_cast<double>(batch);
    if (bytes > static_cast<double>(max_batch_bytes))
        throw Error(ErrorKind::limit, "--batch " + std::to_string(batch) + ": the buffers of one batch would need " +
                                          std::to_string(static_cast<long long>(bytes / (1 << 20))) +
                                          " MiB, more than the engine's " + std::to_string(max_batch_bytes >> 20) +
                                          " MiB; lower --batch");
    impl_ = std::make_unique<Impl>(model, batch, region_path);
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
int OnednnEngine::region_filters() const noexcept {
    std::size_t filters = 0;
    for (const auto& group : impl_->groups) filters += group.filters.size();
    return static_cast<int>(filters);
}

std::string OnednnEngine::implementation(std::size_t batch) {
    if (batch == 0) throw Error(ErrorKind::bad_input, "engine: batch size must be >= 1");
    return translate_onednn_errors("create primitives", [&] {
        const SingleOpenMpThreadInsideTbbTask one_thread_inside_tbb;
        return impl_->implementation(batch);
    });
}

}  // namespace cvxcnn
