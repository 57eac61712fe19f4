// Reference forward pass (see reference_engine.hpp).
#include "cvxcnn/engine/reference_engine.hpp"

#include <algorithm>
#include <cmath>
#include <span>
#include <string>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using ConstMap = Eigen::Map<const RowMatrixF>;
using ConstVectorMap = Eigen::Map<const Eigen::VectorXf>;

// Per-thread work space, reused across images: sizes never change within one call, so
// after the first image no task allocates.
struct Scratch {
    RowMatrixF patches;  // K x h, one row per output position
    RowMatrixF pre;      // K x m, pre-activations, then activations
    RowMatrixF gate;     // K x m, gate pre-activations (gated ReLU only)
    RowMatrixF hidden;   // K x m2, the hidden 1x1 layer's activations (depth 3 only)
    RowMatrixF pooled;   // R x channels pooled (m, or m2 at depth 3), region sums, then averages
    Eigen::VectorXf features;  // m*R, index f*R + r = (f*G + gy)*G + gx
};

// Patch matrix of one C x H x W image, as extract_patches builds it for one sample:
// row = oy*OW + ox, columns (c, ky, kx), zeros where the kernel covers padding.
void im2col(const float* image, const ImageShape& shape, const Architecture& a, int out_height, int out_width,
            RowMatrixF& patches) {
    const int k = a.kernel;
    const std::size_t plane = shape.pixels_per_channel();
    for (int oy = 0; oy < out_height; ++oy)
        for (int ox = 0; ox < out_width; ++ox) {
            float* out = patches.data() + (static_cast<Eigen::Index>(oy) * out_width + ox) * patches.cols();
            const int y0 = oy * a.stride - a.padding, x0 = ox * a.stride - a.padding;
            for (int c = 0; c < shape.channels; ++c)
                for (int ky = 0; ky < k; ++ky) {
                    const int y = y0 + ky;
                    if (y < 0 || y >= shape.height) {
                        out = std::fill_n(out, k, 0.0f);
                        continue;
                    }
                    const float* line = image + c * plane + static_cast<std::size_t>(y) * shape.width;
                    for (int kx = 0; kx < k; ++kx) {
                        const int x = x0 + kx;
                        *out++ = (x >= 0 && x < shape.width) ? line[x] : 0.0f;
                    }
                }
        }
}

void apply_activation(const Architecture& a, RowMatrixF& pre, const RowMatrixF& gate) {
    switch (a.activation) {
        case Activation::relu: pre = pre.cwiseMax(0.0f); break;
        // ">= 0": a gate exactly on its hyperplane is open, as the sign patterns D = 1[Xg >= 0].
        case Activation::gated_relu: pre = (gate.array() >= 0.0f).select(pre.array(), 0.0f).matrix(); break;
        case Activation::leaky_relu: pre = pre.cwiseMax(a.leaky_slope * pre); break;
        case Activation::absolute: pre = pre.cwiseAbs(); break;
    }
}

}  // namespace

RowMatrixF reference_logits(const Model& model, const Dataset& images, std::size_t batch) {
    validate(model);  // every tensor size used below is then guaranteed
    if (batch == 0) throw Error(ErrorKind::bad_input, "reference_logits: batch size must be >= 1");
    if (!(images.shape == model.input))
        throw Error(ErrorKind::bad_input, "images are " + to_string(images.shape) + " but the model expects " +
                                              to_string(model.input) + " (channels x height x width)");
    const std::size_t n = images.size();
    const std::size_t values = images.shape.values();
    if (images.images.size() != n * values)
        throw Error(ErrorKind::bad_input, "dataset holds " + std::to_string(images.images.size()) + " values but " +
                                              std::to_string(n) + " labels of " + to_string(images.shape) +
                                              " images need " + std::to_string(n * values));

    const Architecture& a = model.architecture;
    const int classes = model.classes();
    const int m = model.filters();
    const int h = a.patch_size(images.shape.channels);
    const int out_height = a.conv_output_size(images.shape.height);
    const int out_width = a.conv_output_size(images.shape.width);
    const int positions = out_height * out_width;
    const PoolingRegions regions = make_pooling_regions(out_height, out_width, a.pool_grid);
    const int region_count = regions.count();
    const bool gated = a.activation == Activation::gated_relu;
    // Depth 3: the hidden 1x1 convolution mixes the m activations at each position.
    const bool deep = model.has_hidden_layer();
    const int pooled_channels = model.pooled_channels();

    // OIHW flattened per filter is exactly a row in patch column order (c, ky, kx).
    const ConstMap weight(model.conv_weight.data.data(), m, h);
    const ConstMap gate_weight(gated ? model.gate_weight.data.data() : nullptr, gated ? m : 0, h);
    const Eigen::Map<const Eigen::RowVectorXf> bias(model.conv_bias.data.data(), m);
    const ConstMap hidden_weight(deep ? model.hidden_weight.data.data() : nullptr, deep ? pooled_channels : 0, m);
    const ConstMap fc(model.fc_weight.data.data(), classes, static_cast<Eigen::Index>(pooled_channels) * region_count);
    const ConstVectorMap fc_bias(model.fc_bias.data.data(), classes);

    RowMatrixF logits(static_cast<Eigen::Index>(n), classes);
    const std::size_t batch_size = std::min(batch, std::max<std::size_t>(n, 1));
    std::vector<float> normalized(batch_size * values);
    oneapi::tbb::enumerable_thread_specific<Scratch> scratch;

    for (std::size_t first = 0; first < n; first += batch_size) {
        const std::size_t count = std::min(batch_size, n - first);
        // One task per image: it normalizes its slot of the batch copy, then runs the
        // network on it. No state is shared between images, hence thread-independence.
        oneapi::tbb::parallel_for(oneapi::tbb::blocked_range<std::size_t>(0, count), [&](const auto& range) {
            Scratch& s = scratch.local();
            s.patches.resize(positions, h);
            s.pre.resize(positions, m);
            if (gated) s.gate.resize(positions, m);
            if (deep) s.hidden.resize(positions, pooled_channels);
            s.pooled.resize(region_count, pooled_channels);
            s.features.resize(static_cast<Eigen::Index>(pooled_channels) * region_count);
            for (std::size_t j = range.begin(); j != range.end(); ++j) {
                const std::size_t i = first + j;
                const std::span<float> image(normalized.data() + j * values, values);
                const auto source = images.image(i);
                std::copy(source.begin(), source.end(), image.begin());
                model.normalization.apply(image, images.shape);

                auto row = logits.row(static_cast<Eigen::Index>(i));
                if (m == 0 || pooled_channels == 0) {  // no filter, no feature: the linear layer is its bias alone
                    row = fc_bias.transpose();
                    continue;
                }
                im2col(image.data(), images.shape, a, out_height, out_width, s.patches);
                s.pre.noalias() = s.patches * weight.transpose();
                s.pre.rowwise() += bias;
                if (gated) s.gate.noalias() = s.patches * gate_weight.transpose();
                apply_activation(a, s.pre, s.gate);
                if (deep) s.hidden.noalias() = (s.pre * hidden_weight.transpose()).cwiseMax(0.0f);
                const RowMatrixF& pooled_map = deep ? s.hidden : s.pre;

                s.pooled.setZero();
                for (int p = 0; p < positions; ++p) s.pooled.row(regions.region_of_position[p]) += pooled_map.row(p);
                for (int r = 0; r < region_count; ++r) {
                    const auto size = static_cast<float>(regions.sizes[r]);
                    for (int f = 0; f < pooled_channels; ++f)
                        s.features[static_cast<Eigen::Index>(f) * region_count + r] = s.pooled(r, f) / size;
                }
                row.noalias() = (fc * s.features + fc_bias).transpose();
            }
        });
    }
    return logits;
}

RowMatrixF softmax_rows(const RowMatrixF& logits) {
    RowMatrixF result(logits.rows(), logits.cols());
    if (logits.cols() == 0) return result;
    for (Eigen::Index i = 0; i < logits.rows(); ++i) {
        const float top = logits.row(i).maxCoeff();
        // exp(x - max) <= 1 with at least one term equal to 1: no overflow, sum >= 1.
        result.row(i) = (logits.row(i).array() - top).exp();
        result.row(i) /= result.row(i).sum();
    }
    return result;
}

std::vector<std::int32_t> argmax_rows(const RowMatrixF& matrix) {
    if (matrix.rows() > 0 && matrix.cols() == 0)
        throw Error(ErrorKind::bad_input, "argmax_rows: matrix has " + std::to_string(matrix.rows()) +
                                              " rows but no columns");
    std::vector<std::int32_t> result(static_cast<std::size_t>(matrix.rows()));
    for (Eigen::Index i = 0; i < matrix.rows(); ++i) {
        Eigen::Index best = 0;
        // Strict '>' keeps the first of equal maxima.
        for (Eigen::Index j = 1; j < matrix.cols(); ++j)
            if (matrix(i, j) > matrix(i, best)) best = j;
        result[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(best);
    }
    return result;
}

}  // namespace cvxcnn
