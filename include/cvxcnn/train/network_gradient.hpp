// Forward and backward pass of the two-layer CNN of model.hpp, for training it by
// gradient methods (train/sgd_training.hpp): the non-convex baseline the convex trainer
// is compared with.
//
//   normalized image (channels-last) -> conv (oneDNN, + conv_bias) -> activation
//   -> average over the G x G regions of make_pooling_regions -> fc_weight, fc_bias
//   -> loss (softmax cross-entropy or squared error on one-hot targets, solvers/group_lasso.hpp)
//
// The forward pass is the reference engine's (reference_engine.hpp), so its logits equal
// reference_logits on the same model up to float summation order. The backward pass
// gives the gradient of the summed loss with respect to conv_weight and fc_weight; the
// biases and gate filters are not trained (see sgd_training.hpp for why).
//
// Why oneDNN for the convolution: measured on the 2-core AVX-512 build machine, 64 3x3
// filters on 28x28 images, forward plus backward-weights per image: Eigen im2col + GEMM
// 270 us (the build has no -march, so Eigen runs SSE2 kernels), oneDNN jit/brgconv with
// channels-last maps 35 us (it dispatches to AVX-512 at run time). Channels-last (NHWC)
// maps are what the rest of the pass wants too: one row of m filter values per output
// position, as the reference engine's K x m pre-activation matrix.
//
// Regularizer, in the convex program's scaling (recover/cnn_from_convex.hpp): the network
// with sum pooling and output weights a = fc_weight / |region| has weight decay
//   (1/2) * (||conv_weight||^2 + sum_{c,f,r} (fc_weight[c, f, r] / |region r|)^2),
// which beta multiplies; for a model recovered from a convex solution it equals the
// convex regularizer sum ||u|| / beta (recovered_weight_decay), so "the same beta" means
// the same objective.
//
// Parallelism: images are processed in fixed chunks of a few images, one TBB task per
// chunk, each chunk's loss and gradient summed on its own and the chunks added in order:
// results are bitwise the same for any number of threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/model.hpp"
#include "cvxcnn/solvers/group_lasso.hpp"
#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

/// Images as the network reads them: normalized and channels-last (N x H x W x C).
struct NetworkImages {
    ImageShape shape;
    std::vector<float> values;  ///< size() * shape.values(), NHWC
    std::vector<std::int32_t> labels;

    [[nodiscard]] std::size_t size() const noexcept { return labels.size(); }
    [[nodiscard]] const float* image(std::size_t i) const noexcept { return values.data() + i * shape.values(); }

    /// The raw (pixel/255) images of `data` at `indices`, in that order, normalized.
    [[nodiscard]] static NetworkImages prepare(const Dataset& data, std::span<const std::size_t> indices,
                                               const Normalization& normalization);
    /// All images of `data`.
    [[nodiscard]] static NetworkImages prepare(const Dataset& data, const Normalization& normalization);
};

/// Gradient of a summed loss with respect to the trained tensors, in their Model layouts.
struct NetworkGradient {
    std::vector<float> conv_weight;  ///< [m, C, k, k] (OIHW)
    std::vector<float> fc_weight;    ///< [classes, m*G*G]
};

/// What one pass over a set of images gives.
struct LossSum {
    double loss = 0.0;         ///< sum over the images of the per-image loss
    std::size_t correct = 0;   ///< images whose largest logit is their label (first maximum on ties)
    std::size_t images = 0;
};

/// (1/2) * (||conv_weight||^2 + sum (fc_weight / |region|)^2): the weight decay beta
/// multiplies (equals recovered_weight_decay(model, regions)).
[[nodiscard]] double weight_decay(const Model& model);
/// gradient += beta * d weight_decay / d weights.
void add_weight_decay_gradient(const Model& model, double beta, NetworkGradient& gradient);

/// The network of one model shape (architecture, input, width, classes, gating), compiled
/// for oneDNN. Not thread-safe (one evaluator per thread); it runs its own TBB tasks.
class NetworkEvaluator {
public:
    /// Throws cvxcnn::Error (bad_input) if the model is invalid or has no filter.
    NetworkEvaluator(const Model& model, Loss loss);
    NetworkEvaluator(NetworkEvaluator&&) noexcept;
    NetworkEvaluator& operator=(NetworkEvaluator&&) noexcept;
    NetworkEvaluator(const NetworkEvaluator&) = delete;
    NetworkEvaluator& operator=(const NetworkEvaluator&) = delete;
    ~NetworkEvaluator();

    /// Runs `model` (same shape as the one given to the constructor, weights may differ)
    /// on the images at `indices`. Returns the summed loss; when `gradient` is given, sets
    /// it to the gradient of that sum; when `logits` is given, sets it to the
    /// indices.size() x classes logits. Throws cvxcnn::Error (bad_input) if the model's
    /// shape changed, the images' shape differs or an index is out of range.
    LossSum evaluate(const Model& model, const NetworkImages& images, std::span<const std::size_t> indices,
                     NetworkGradient* gradient = nullptr, RowMatrixF* logits = nullptr);
    /// The same over all images.
    LossSum evaluate(const Model& model, const NetworkImages& images, NetworkGradient* gradient = nullptr,
                     RowMatrixF* logits = nullptr);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// The regularized objective of the convex trainer's scaling, on raw (pixel/255) images
/// normalized with the model's own normalization:
///   objective = (1/n) sum_i loss_i + beta * weight_decay(model).
struct NetworkObjective {
    double objective = 0.0;
    double loss = 0.0;          ///< (1/n) sum_i loss_i
    double weight_decay = 0.0;  ///< weight_decay(model), not multiplied by beta
    double accuracy = 0.0;      ///< fraction of images classified as labelled
};
[[nodiscard]] NetworkObjective network_objective(const Model& model, const Dataset& data, double beta, Loss loss);

}  // namespace cvxcnn
