// The convex program's data: the third stage of the pipeline
//   patch matrices -> sign patterns -> **feature blocks** -> solver -> recovered CNN.
//
// For pattern i and pooling region r the feature block is
//   A_{i,r} = sum over positions k in r of M_{i,k} X_k        (n x h)
// where D_{i,k} = diag(1[X_k g_i >= 0]) is pattern i restricted to position k and M_{i,k}
// is the activation's slope on each row when the filter lies in the pattern's cone
// K_{i,r} = {u : (2 D_{i,k} - I) X_k u >= 0 for k in r}:
//   relu, gated relu   M = D
//   leaky relu (a)     M = a I + (1 - a) D
//   absolute value     M = 2 D - I
// A gated-ReLU filter u with gate g_i, pooled over region r, outputs exactly A_{i,r} u (sum
// pooling) with M = D for any u; a ReLU (leaky, abs) filter does so when u is in K_{i,r}.
// The two-layer CNN with weight decay becomes the group lasso over the blocks
//   min_U  L(sum_{i,r} A_{i,r} U_{i,r})  +  beta * sum_{i,r,c} ||U_{i,r,c}||_2
// (gated form, Mishkin et al., ICML 2022), or the same with U = V - W, V and W in the cones
// and beta * sum (||V|| + ||W||) (exact form, Ergen & Pilanci, ICLR 2021 and TIT 2025).
// All blocks side by side form one n x (P*R*h) matrix, so the solver's products are GEMMs.
#pragma once

#include <cstddef>
#include <optional>

#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/patterns/sign_patterns.hpp"
#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

/// Which M_{i,k} the feature blocks use (see the top of this file). Every activation here
/// has slope 1 where the pattern is active; they differ only in the slope on the other
/// rows, inactive_slope(): 0 (relu, gated), a (leaky), -1 (abs).
struct FeatureActivation {
    Activation activation = Activation::gated_relu;
    float leaky_slope = 0.0f;  ///< a, for leaky_relu only, in (0, 1)

    /// The activation and slope of an architecture (its --arch string).
    [[nodiscard]] static FeatureActivation of(const Architecture& architecture) noexcept {
        return {architecture.activation, architecture.activation == Activation::leaky_relu ? architecture.leaky_slope : 0.0f};
    }
    /// Slope of the activation on the rows the pattern leaves inactive.
    [[nodiscard]] float inactive_slope() const noexcept {
        switch (activation) {
            case Activation::leaky_relu: return leaky_slope;
            case Activation::absolute: return -1.0f;
            case Activation::relu:
            case Activation::gated_relu: break;
        }
        return 0.0f;
    }
    /// Throws cvxcnn::Error (bad_input) for a leaky slope outside (0, 1).
    void validate() const;

    friend bool operator==(const FeatureActivation&, const FeatureActivation&) = default;
};

struct ConvexFeatures {
    /// n x (P * R * h); block b = i * R + r holds A_{i,r} in columns [b*h, (b+1)*h).
    RowMatrixF matrix;
    int patterns = 0;     ///< P
    int regions = 0;      ///< R = G * G
    int block_width = 0;  ///< h
    FeatureActivation activation;  ///< the M_{i,k} the blocks were built with

    [[nodiscard]] int blocks() const noexcept { return patterns * regions; }
    [[nodiscard]] static int block_index(int pattern, int region, int regions) noexcept {
        return pattern * regions + region;
    }
};

/// Bytes build_convex_features allocates: n * P * R * h floats.
[[nodiscard]] std::size_t convex_feature_bytes(std::size_t samples, std::size_t patterns, std::size_t regions,
                                               std::size_t block_width);

/// Builds every A_{i,r} for `activation` (default: M = D, the gated program; TBB over
/// blocks of samples: each task owns its rows, so the result does not depend on the thread
/// count). Throws cvxcnn::Error: bad_input when the patterns were not computed on this
/// patch matrix or the leaky slope is outside (0, 1); limit, naming --patterns and
/// --max-memory, when convex_feature_bytes exceeds max_bytes.
[[nodiscard]] ConvexFeatures build_convex_features(const PatchMatrices& patches, const SignPatterns& patterns,
                                                   std::optional<std::size_t> max_bytes = std::nullopt,
                                                   const FeatureActivation& activation = {});

/// The same blocks for patterns given by their gates: D_{i,k} = diag(1[X_k g_i >= 0]),
/// with the gate products computed here (one small GEMM per sample block and position).
/// This is how held-out data gets the features of the trained model's gates, as the
/// recovered network gates them. `generators` is P x h.
/// Not for a trained ReLU (leaky, abs) network on held-out data: its filters are not gated,
/// so there the network itself (reference_logits) is the model to evaluate.
[[nodiscard]] ConvexFeatures build_convex_features(const PatchMatrices& patches, const RowMatrixF& generators,
                                                   std::optional<std::size_t> max_bytes = std::nullopt,
                                                   const FeatureActivation& activation = {});

}  // namespace cvxcnn
