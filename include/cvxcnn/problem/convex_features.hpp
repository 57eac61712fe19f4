// The convex program's data: the third stage of the pipeline
//   patch matrices -> sign patterns -> **feature blocks** -> solver -> recovered CNN.
//
// For pattern i and pooling region r the feature block is
//   A_{i,r} = sum over positions k in r of D_{i,k} X_k        (n x h)
// where D_{i,k} = diag(1[X_k g_i >= 0]) is pattern i restricted to position k. A gated-ReLU
// filter u with gate g_i, pooled over region r, outputs exactly A_{i,r} u (sum pooling), so
// the two-layer CNN with weight decay becomes the group lasso over the blocks
//   min_U  L(sum_{i,r} A_{i,r} U_{i,r})  +  beta * sum_{i,r,c} ||U_{i,r,c}||_2
// (Ergen & Pilanci, ICLR 2021 for CNNs; Mishkin et al., ICML 2022 for the gated form).
// All blocks side by side form one n x (P*R*h) matrix, so the solver's products are GEMMs.
#pragma once

#include <cstddef>
#include <optional>

#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/patterns/sign_patterns.hpp"
#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

struct ConvexFeatures {
    /// n x (P * R * h); block b = i * R + r holds A_{i,r} in columns [b*h, (b+1)*h).
    RowMatrixF matrix;
    int patterns = 0;     ///< P
    int regions = 0;      ///< R = G * G
    int block_width = 0;  ///< h

    [[nodiscard]] int blocks() const noexcept { return patterns * regions; }
    [[nodiscard]] static int block_index(int pattern, int region, int regions) noexcept {
        return pattern * regions + region;
    }
};

/// Bytes build_convex_features allocates: n * P * R * h floats.
[[nodiscard]] std::size_t convex_feature_bytes(std::size_t samples, std::size_t patterns, std::size_t regions,
                                               std::size_t block_width);

/// Builds every A_{i,r} (TBB over blocks of samples: each task owns its rows, so the
/// result does not depend on the thread count). Throws cvxcnn::Error: bad_input when the
/// patterns were not computed on this patch matrix; limit, naming --patterns and
/// --max-memory, when convex_feature_bytes exceeds max_bytes.
[[nodiscard]] ConvexFeatures build_convex_features(const PatchMatrices& patches, const SignPatterns& patterns,
                                                   std::optional<std::size_t> max_bytes = std::nullopt);

/// The same blocks for patterns given by their gates: D_{i,k} = diag(1[X_k g_i >= 0]),
/// with the gate products computed here (one small GEMM per sample block and position).
/// This is how held-out data gets the features of the trained model's gates, as the
/// recovered network gates them. `generators` is P x h.
[[nodiscard]] ConvexFeatures build_convex_features(const PatchMatrices& patches, const RowMatrixF& generators,
                                                   std::optional<std::size_t> max_bytes = std::nullopt);

}  // namespace cvxcnn
