#include "cvxcnn/recover/cnn_from_convex.hpp"

#include <cmath>
#include <utility>

#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

struct ActiveGroup {
    int block;  // i * R + r
    int label;  // class c
    float norm;
};

}  // namespace

Model recover_gated_cnn(const ConvexFeatures& layout, const RowMatrixF& generators, const RowMatrixF& weights,
                        const PatchMatrices& patches, std::vector<std::string> class_names,
                        const Normalization& normalization) {
    const Architecture& architecture = patches.architecture();
    if (architecture.activation != Activation::gated_relu)
        throw Error(ErrorKind::internal, "recover_gated_cnn: the architecture is not gated");
    const int h = layout.block_width;
    const int classes = static_cast<int>(class_names.size());
    if (weights.rows() != static_cast<Eigen::Index>(layout.blocks()) * h || weights.cols() != classes ||
        generators.rows() != layout.patterns || generators.cols() != h)
        throw Error(ErrorKind::internal, "recover_gated_cnn: solution, patterns and layout disagree in size");

    // Fixed order (block, then class) so the filter order is the same on every run.
    std::vector<ActiveGroup> active;
    for (int b = 0; b < layout.blocks(); ++b)
        for (int c = 0; c < classes; ++c) {
            const float norm = weights.block(static_cast<Eigen::Index>(b) * h, c, h, 1).norm();
            if (norm > 0.0f) active.push_back({b, c, norm});
        }

    const int m = static_cast<int>(active.size());
    const int regions = layout.regions;
    // Zero tensors of the right shapes (the gate filters for gated ReLU only).
    Model model = make_model(architecture, patches.input_shape(), std::move(class_names), m);
    model.normalization = normalization;

    const auto& sizes = patches.regions().sizes;
    oneapi::tbb::parallel_for(0, m, [&](int f) {
        const ActiveGroup& group = active[f];
        const int pattern = group.block / regions;
        const int region = group.block % regions;
        const float scale = std::sqrt(group.norm);
        float* filter = model.conv_weight.data.data() + static_cast<std::size_t>(f) * h;
        float* gate = model.gate_weight.data.data() + static_cast<std::size_t>(f) * h;
        for (int j = 0; j < h; ++j) {
            filter[j] = weights(static_cast<Eigen::Index>(group.block) * h + j, group.label) / scale;
            gate[j] = generators(pattern, j);
        }
        const std::size_t feature = static_cast<std::size_t>(f) * regions + region;
        model.fc_weight.data[static_cast<std::size_t>(group.label) * model.fc_weight.shape[1] + feature] =
            scale * static_cast<float>(sizes[region]);
    });
    return model;
}

Model recover_cone_cnn(const ConvexFeatures& layout, const RowMatrixD& positive, const RowMatrixD& negative,
                       const PatchMatrices& patches, std::vector<std::string> class_names,
                       const Normalization& normalization) {
    const Architecture& architecture = patches.architecture();
    if (architecture.activation == Activation::gated_relu)
        throw Error(ErrorKind::internal, "recover_cone_cnn: the architecture is gated; use recover_gated_cnn");
    // The layout's features are the network's only if the activations agree off the pattern.
    if (FeatureActivation::of(architecture).inactive_slope() != layout.activation.inactive_slope())
        throw Error(ErrorKind::internal, "recover_cone_cnn: the features were built for " +
                                             std::string(to_string(layout.activation.activation)) +
                                             ", the architecture is " + to_string(architecture));
    const int h = layout.block_width;
    const int classes = static_cast<int>(class_names.size());
    const Eigen::Index rows = static_cast<Eigen::Index>(layout.blocks()) * h;
    if (positive.rows() != rows || negative.rows() != rows || positive.cols() != classes || negative.cols() != classes)
        throw Error(ErrorKind::internal, "recover_cone_cnn: solution and layout disagree in size");

    // Fixed order (block, class, then v before w) so the filter order is the same on every run.
    struct ConeFilter {
        int block;
        int label;
        double norm;
        const RowMatrixD* weights;
        float sign;
    };
    std::vector<ConeFilter> filters;
    for (int b = 0; b < layout.blocks(); ++b)
        for (int c = 0; c < classes; ++c)
            for (const auto& [weights, sign] : {std::pair{&positive, 1.0f}, std::pair{&negative, -1.0f}}) {
                const double norm = weights->block(static_cast<Eigen::Index>(b) * h, c, h, 1).norm();
                if (norm > 0.0) filters.push_back({b, c, norm, weights, sign});
            }

    const int m = static_cast<int>(filters.size());
    const int regions = layout.regions;
    // Zero tensors of the right shapes (the gate filters for gated ReLU only).
    Model model = make_model(architecture, patches.input_shape(), std::move(class_names), m);
    model.normalization = normalization;

    const auto& sizes = patches.regions().sizes;
    oneapi::tbb::parallel_for(0, m, [&](int f) {
        const ConeFilter& filter = filters[static_cast<std::size_t>(f)];
        const int region = filter.block % regions;
        const double scale = std::sqrt(filter.norm);
        float* out = model.conv_weight.data.data() + static_cast<std::size_t>(f) * h;
        for (int j = 0; j < h; ++j)
            out[j] = static_cast<float>((*filter.weights)(static_cast<Eigen::Index>(filter.block) * h + j, filter.label) / scale);
        const std::size_t feature = static_cast<std::size_t>(f) * regions + region;
        model.fc_weight.data[static_cast<std::size_t>(filter.label) * model.fc_weight.shape[1] + feature] =
            filter.sign * static_cast<float>(scale * sizes[region]);
    });
    return model;
}

double recovered_weight_decay(const Model& model, const PoolingRegions& regions) {
    const int m = model.filters();
    const int region_count = regions.count();
    const std::size_t h = m == 0 ? 0 : model.conv_weight.data.size() / static_cast<std::size_t>(m);
    const std::size_t features = static_cast<std::size_t>(m) * region_count;
    double total = 0.0;
    for (int f = 0; f < m; ++f) {
        double filter = 0.0;
        for (std::size_t j = 0; j < h; ++j) filter += std::pow(model.conv_weight.data[f * h + j], 2);
        double output = 0.0;
        for (int c = 0; c < model.classes(); ++c)
            for (int r = 0; r < region_count; ++r) {
                const double a = model.fc_weight.data[c * features + static_cast<std::size_t>(f) * region_count + r] /
                                 regions.sizes[r];
                output += a * a;
            }
        total += 0.5 * (filter + output);
    }
    return total;
}

}  // namespace cvxcnn
