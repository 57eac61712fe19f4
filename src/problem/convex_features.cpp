#include "cvxcnn/problem/convex_features.hpp"

#include <string>

#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {

std::size_t convex_feature_bytes(std::size_t samples, std::size_t patterns, std::size_t regions,
                                 std::size_t block_width) {
    const long double bytes = static_cast<long double>(samples) * patterns * regions * block_width * sizeof(float);
    return bytes >= static_cast<long double>(SIZE_MAX) ? SIZE_MAX : static_cast<std::size_t>(bytes);
}

namespace {

// Zero features of the right size, after the memory check.
ConvexFeatures allocate_features(const PatchMatrices& patches, int pattern_count, std::optional<std::size_t> max_bytes) {
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
    features.matrix = RowMatrixF::Zero(n, static_cast<Eigen::Index>(pattern_count) * region_count * h);
    return features;
}

}  // namespace

ConvexFeatures build_convex_features(const PatchMatrices& patches, const SignPatterns& patterns,
                                     std::optional<std::size_t> max_bytes) {
    const Eigen::Index n = patches.samples();
    const int positions = patches.positions();
    const int h = patches.patch_size();
    const PoolingRegions& regions = patches.regions();
    const int region_count = regions.count();
    const int pattern_count = static_cast<int>(patterns.count());
    if (patterns.rows != static_cast<std::size_t>(n) * static_cast<std::size_t>(positions))
        throw Error(ErrorKind::bad_input, "sign patterns cover " + std::to_string(patterns.rows) +
                                              " rows, the patch matrix has " +
                                              std::to_string(static_cast<std::size_t>(n) * positions));
    ConvexFeatures features = allocate_features(patches, pattern_count, max_bytes);
    const RowMatrixF& stacked = patches.stacked();

    // Sample blocks outermost: each task reads X_k for its samples once per position and
    // scatters into its own rows of the feature matrix, which stay in cache.
    constexpr Eigen::Index samples_per_task = 32;
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<Eigen::Index>(0, n, samples_per_task),
        [&](const oneapi::tbb::blocked_range<Eigen::Index>& range) {
            for (int k = 0; k < positions; ++k) {
                const int region = regions.region_of_position[k];
                const std::size_t row_base = static_cast<std::size_t>(k) * static_cast<std::size_t>(n);
                for (int i = 0; i < pattern_count; ++i) {
                    const Eigen::Index column = static_cast<Eigen::Index>(
                                                    ConvexFeatures::block_index(i, region, region_count)) * h;
                    for (Eigen::Index j = range.begin(); j != range.end(); ++j) {
                        if (!patterns.active(i, row_base + static_cast<std::size_t>(j))) continue;
                        features.matrix.row(j).segment(column, h) += stacked.row(static_cast<Eigen::Index>(row_base) + j);
                    }
                }
            }
        },
        oneapi::tbb::simple_partitioner());
    return features;
}

ConvexFeatures build_convex_features(const PatchMatrices& patches, const RowMatrixF& generators,
                                     std::optional<std::size_t> max_bytes) {
    const Eigen::Index n = patches.samples();
    const int positions = patches.positions();
    const int h = patches.patch_size();
    const PoolingRegions& regions = patches.regions();
    const int region_count = regions.count();
    const int pattern_count = static_cast<int>(generators.rows());
    if (generators.cols() != h)
        throw Error(ErrorKind::bad_input, "gates have " + std::to_string(generators.cols()) +
                                              " values, patches have " + std::to_string(h));
    ConvexFeatures features = allocate_features(patches, pattern_count, max_bytes);
    const RowMatrixF& stacked = patches.stacked();
    const Eigen::MatrixXf gates_t = generators.transpose();  // h x P

    constexpr Eigen::Index samples_per_task = 32;
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<Eigen::Index>(0, n, samples_per_task),
        [&](const oneapi::tbb::blocked_range<Eigen::Index>& range) {
            const auto rows = static_cast<Eigen::Index>(range.size());
            RowMatrixF gate_values(rows, pattern_count);
            for (int k = 0; k < positions; ++k) {
                const int region = regions.region_of_position[k];
                const Eigen::Index row_base = static_cast<Eigen::Index>(k) * n + range.begin();
                gate_values.noalias() = stacked.middleRows(row_base, rows) * gates_t;
                for (int i = 0; i < pattern_count; ++i) {
                    const Eigen::Index column = static_cast<Eigen::Index>(
                                                    ConvexFeatures::block_index(i, region, region_count)) * h;
                    for (Eigen::Index j = 0; j < rows; ++j)
                        if (gate_values(j, i) >= 0.0f)
                            features.matrix.row(range.begin() + j).segment(column, h) += stacked.row(row_base + j);
                }
            }
        },
        oneapi::tbb::simple_partitioner());
    return features;
}

}  // namespace cvxcnn
