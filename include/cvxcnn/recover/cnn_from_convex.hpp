// Recovery: the fifth stage of the pipeline
//   ... -> solver -> convex solution -> **recovered CNN (Model)** -> model file -> engine.
//
// Every nonzero group u = U_{i,r,c} of the convex solution becomes one filter of the
// two-layer CNN, in closed form (Pilanci & Ergen 2020; Mishkin et al. 2022, gated form):
//   conv filter     u / sqrt(||u||)          (OIHW order: the patch column order)
//   gate filter     g_i                      (the generator of pattern i)
//   output weight   sqrt(||u||) * |r|        on class c and pooling region r, 0 elsewhere
// The factor |r| (positions in region r) turns the network's average pooling back into
// the convex program's sum over the region, so the network's logits equal F U exactly
// (up to float rounding), and its weight-decay penalty (beta/2) * sum (||w||^2 + a^2),
// with a = sqrt(||u||) the output weight of the sum-pooled network, equals beta * sum ||u||.
// Zero groups are pruned: group sparsity chooses the network's width.
#pragma once

#include <string>
#include <vector>

#include "cvxcnn/model/model.hpp"
#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/patterns/sign_patterns.hpp"
#include "cvxcnn/problem/convex_features.hpp"

namespace cvxcnn {

/// Builds the gated-ReLU CNN from a convex solution U ((P*R*h) x classes). The
/// architecture's activation must be Activation::gated_relu. Parallel over groups (TBB).
/// `generators` (P x h) are the gates g_i of the patterns.
[[nodiscard]] Model recover_gated_cnn(const ConvexFeatures& layout, const RowMatrixF& generators,
                                      const RowMatrixF& weights, const PatchMatrices& patches,
                                      std::vector<std::string> class_names, const Normalization& normalization);

/// Builds the ReLU (leaky ReLU, abs) CNN of a solution of the exact program, V and W
/// ((P*R*h) x classes each, see solvers/cone_constrained.hpp and
/// recover/cone_decomposition.hpp), with the scaling of recover_gated_cnn:
///   nonzero group v = V_{i,r,c}:  filter v / sqrt(||v||), output weight +sqrt(||v||) * |r|
///   nonzero group w = W_{i,r,c}:  filter w / sqrt(||w||), output weight -sqrt(||w||) * |r|
/// on class c and region r; filters in the order (block, class, v before w). When every v
/// and w lies in its cone K_{i,r}, the network outputs F (V - W) and its weight decay is
/// beta * sum (||v|| + ||w||). The architecture of `patches` must be relu, leaky relu or
/// abs with the slope the layout was built for (gated-built features count as relu).
/// Throws cvxcnn::Error (internal) when the sizes or activations disagree.
[[nodiscard]] Model recover_cone_cnn(const ConvexFeatures& layout, const RowMatrixD& positive,
                                     const RowMatrixD& negative, const PatchMatrices& patches,
                                     std::vector<std::string> class_names, const Normalization& normalization);

/// Weight decay of a recovered model in the sum-pooling parametrization:
/// (1/2) * sum over filters of (||conv filter||^2 + a^2), a = output weight / |region|.
/// Multiplied by beta this is the non-convex regularizer, equal to beta * sum ||u||.
[[nodiscard]] double recovered_weight_decay(const Model& model, const PoolingRegions& regions);

}  // namespace cvxcnn
