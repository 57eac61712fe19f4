#include "cvxcnn/problem/convex_features.hpp"

#include <cstdint>
#include <string>

#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {

void FeatureActivation::validate() const {
    if (activation == Activation::leaky_relu && !(leaky_slope > 0.0f && leaky_slope < 1.0f))
        throw Error(ErrorKind::bad_input,
                    "leaky ReLU slope " + std::to_string(leaky_slope) + ": must be in (0, 1) (e.g. --arch ...-leaky0.1-...)");
}

std::size_t convex_feature_bytes(std::size_t samples, std::size_t patterns, std::size_t regions,
                                 std::size_t block_width) {
    const long double bytes = static_cast<long double>(samples) * patterns * regions * block_width * sizeof(float);
    return bytes >= static_cast<long double>(SIZE_MAX) ? SIZE_MAX : static_cast<std::size_t>(bytes);
}

namespace {

// Which patterns are active on a task's samples at one position: entry (j, i) is
// D_{i,k}[begin + j]. Bytes, so the scatter loop below reads both sources the same way.
using Activity = Eigen::Matrix<std::uint8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Zero features of the right size, after the memory check.
ConvexFeatures allocate_features(const PatchMatrices& patches, int pattern_count, const FeatureActivation& activation,
                                 std::optional<std::size_t> max_bytes) {
    activation.validate();
    const Eigen::Index n = patches.samples();
    const int h = patches.patch_size();
    const int region_count = patches.regions().count();
    if (pattern_count == 0) throw Error(ErrorKind::bad_input, "--patterns: no sign patterns to build features from");
    const std::size_t bytes = convex_feature_bytes(n, pattern_count, region_count, h);
    if (max_bytes && bytes > *max_bytes)
        throw Error(ErrorKind::limit,
                    "the convex program needs " + std::to_string(bytes >> 20) + " MiB of features (" +
                        std::to_string(n) + " samples x " + std::to_string(pattern_count) + " patterns x " +
                        std::to_string(region_count) + " regions x " + std::to_string(h) +
                        " values), over --max-memory " + std::to_string(*max_bytes >> 20) +
                        " MiB; lower --patterns, the pooling grid or the number of samples");

    ConvexFeatures features;
    features.patterns = pattern_count;
    features.regions = region_count;
    features.block_width = h;
    features.activation = activation;
    features.matrix = RowMatrixF::Zero(n, static_cast<Eigen::Index>(pattern_count) * region_count * h);
    return features;
}

// The scatter loop of both overloads: A_{i,r}[j] += M_{i,k}[j] X_k[j] for every position k
// of region r. fill_activity(k, begin, rows, activity) says which patterns are active.
// Sample blocks are outermost: each task reads X_k for its samples once per position and
// scatters into its own rows of the feature matrix, which stay in cache.
template <typename FillActivity>
ConvexFeatures scatter_features(const PatchMatrices& patches, int pattern_count, const FeatureActivation& activation,
                                std::optional<std::size_t> max_bytes, FillActivity fill_activity) {
    ConvexFeatures features = allocate_features(patches, pattern_count, activation, max_bytes);
    const Eigen::Index n = patches.samples();
    const int positions = patches.positions();
    const int h = patches.patch_size();
    const PoolingRegions& regions = patches.regions();
    const int region_count = regions.count();
    const RowMatrixF& stacked = patches.stacked();
    // 0 for relu and gated: inactive rows are skipped, not added times zero, so the gated
    // program's features are what they always were, bit for bit.
    const float inactive_slope = activation.inactive_slope();

    constexpr Eigen::Index samples_per_task = 32;
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<Eigen::Index>(0, n, samples_per_task),
        [&](const oneapi::tbb::blocked_range<Eigen::Index>& range) {
            const auto rows = static_cast<Eigen::Index>(range.size());
            Activity activity(rows, pattern_count);
            for (int k = 0; k < positions; ++k) {
                fill_activity(k, range.begin(), rows, activity);
                const int region = regions.region_of_position[k];
                const Eigen::Index row_base = static_cast<Eigen::Index>(k) * n + range.begin();
                for (int i = 0; i < pattern_count; ++i) {
                    const Eigen::Index column = static_cast<Eigen::Index>(
                                                    ConvexFeatures::block_index(i, region, region_count)) * h;
                    for (Eigen::Index j = 0; j < rows; ++j) {
                        auto block = features.matrix.row(range.begin() + j).segment(column, h);
                        if (activity(j, i) != 0) block += stacked.row(row_base + j);
                        else if (inactive_slope != 0.0f) block += inactive_slope * stacked.row(row_base + j);
                    }
                }
            }
        },
        oneapi::tbb::simple_partitioner());
    return features;
}

}  // namespace

ConvexFeatures build_convex_features(const PatchMatrices& patches, const SignPatterns& patterns,
                                     std::optional<std::size_t> max_bytes, const FeatureActivation& activation) {
    const Eigen::Index n = patches.samples();
    const int positions = patches.positions();
    if (patterns.rows != static_cast<std::size_t>(n) * static_cast<std::size_t>(positions))
        throw Error(ErrorKind::bad_input, "sign patterns cover " + std::to_string(patterns.rows) +
                                              " rows, the patch matrix has " +
                                              std::to_string(static_cast<std::size_t>(n) * positions));
    const int pattern_count = static_cast<int>(patterns.count());
    return scatter_features(patches, pattern_count, activation, max_bytes,
                            [&](int k, Eigen::Index begin, Eigen::Index rows, Activity& activity) {
                                const std::size_t row_base = static_cast<std::size_t>(k) * static_cast<std::size_t>(n) +
                                                             static_cast<std::size_t>(begin);
                                for (Eigen::Index j = 0; j < rows; ++j)
                                    for (int i = 0; i < pattern_count; ++i)
                                        activity(j, i) = patterns.active(i, row_base + static_cast<std::size_t>(j)) ? 1 : 0;
                            });
}

ConvexFeatures build_convex_features(const PatchMatrices& patches, const RowMatrixF& generators,
                                     std::optional<std::size_t> max_bytes, const FeatureActivation& activation) {
    const Eigen::Index n = patches.samples();
    const int h = patches.patch_size();
    if (generators.cols() != h)
        throw Error(ErrorKind::bad_input, "gates have " + std::to_string(generators.cols()) +
                                              " values, patches have " + std::to_string(h));
    const RowMatrixF& stacked = patches.stacked();
    const Eigen::MatrixXf gates_t = generators.transpose();  // h x P
    return scatter_features(patches, static_cast<int>(generators.rows()), activation, max_bytes,
                            [&](int k, Eigen::Index begin, Eigen::Index rows, Activity& activity) {
                                // One small GEMM per sample block and position: the gate
                                // values of all patterns at once.
                                const RowMatrixF gate_values =
                                    stacked.middleRows(static_cast<Eigen::Index>(k) * n + begin, rows) * gates_t;
                                activity = (gate_values.array() >= 0.0f).cast<std::uint8_t>();
                            });
}

}  // namespace cvxcnn
