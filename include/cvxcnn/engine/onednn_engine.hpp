// The inference engine: the recovered CNN of model.hpp run with oneDNN (Debian's 2.6).
// Last stage of the pipeline:  model file -> Model -> OnednnEngine -> logits / probabilities.
//
//   {N, C, H, W} pixel/255 -> normalize (copied into the input buffer)
//   -> convolution {m, C, k, k} + bias, activation fused as a post-op:
//        relu -> eltwise_relu, leaky -> eltwise_relu(alpha = slope), abs -> eltwise_abs;
//        gated ReLU: u = conv_u(x) + b, then the gate convolution g = conv_g(x) with
//        post-ops binary_ge(0) and binary_mul(u), i.e. 1[g.x >= 0] * u in one pass
//   -> average pooling to the G x G grid, when G divides both sides of the map; otherwise
//      the pooling is folded into the linear layer (weights fc[c, f, region(y, x)] / |region|
//      over the whole m x OH x OW map), because unequal floor bands are no single pooling
//   -> inner product to the classes -> (probabilities) softmax.
// Depth 3 (Model::hidden_weight): after the activation a 1x1 convolution {m2, m, 1, 1}
// without bias, ReLU fused as a post-op; pooling and the inner product then read its m2
// channels. Its units mix filters, so a depth-3 model always takes the full-map path.
//
// Region path. A model recovered from the convex program wires every filter to ONE pooling
// region: its fc_weight columns are zero for every other region, so only the conv outputs
// pooled into that region can reach a logit. Such filters are grouped by region; per group
// the engine copies the input crop those outputs read (halo included, zeros where it lies
// in the padding), runs the convolution(s) and activation over the region's outputs only
// (1/G^2 of the map: 3,902 filters x 16 instead of x 784 positions on the Fashion-MNIST
// model), then one inner product with weights fc[c, f, region] / |region| at every position
// (pooling and linear layer in one) added to the logits by a sum post-op. Unequal floor
// bands need nothing special: each group has its own region size. Filters whose columns
// touch several regions (SGD-trained models: all) take the full-map path above; filters
// whose columns are all zero are skipped. RegionPath::automatic takes the region path when
// the convolution work it skips outweighs its extra primitives (rule and measurements in
// onednn_engine.cpp); this is never the case for pool1, where the region is the whole map.
//
// It computes exactly what reference_engine.hpp computes (tested to 1e-4 relative); only
// the summation order differs. oneDNN picks every memory format (format_tag::any), except
// the region groups' activation maps, nChw16c on AVX-512 (measured 2x faster; see the .cpp);
// the weights are reordered once when the primitives of an image count are created, and
// primitives are created once per batch shape and reused.
//
// A batch runs as slices of a few images (as many as keep their activation maps within
// ~2 MB, at least one; at most 16 with region groups, whose maps are small, so that the
// threads share a batch): OpenMP threads take slices, each with its own single-threaded
// primitives, so the maps stay in cache between convolution and pooling; then one inner
// product over the batch's pooled features (full-map path, equal bands). The slices make results independent of the
// thread count up to the final inner product.
//
// Threads: Debian's oneDNN runs on OpenMP, capped by ThreadLimit (util/threads.hpp) like
// TBB. Called from inside a TBB task, the engine limits OpenMP to one thread for the call,
// so the two pools never multiply.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/model.hpp"
#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

inline constexpr std::size_t default_engine_batch = 64;

/// Whether the filters whose fc_weight columns touch a single pooling region (every
/// filter of a convex-trained model) are computed on that region only.
enum class RegionPath {
    automatic,  ///< when the engine estimates it pays (the default; see onednn_engine.cpp)
    always,     ///< whenever some filter touches a single region
    never,      ///< every filter over the whole map
};

/// A model compiled for oneDNN. Not thread-safe: one engine per thread (each holds its
/// own buffers); movable, not copyable.
class OnednnEngine {
public:
    /// Validates the model (throws cvxcnn::Error bad_input "invalid model: ...") and keeps
    /// a copy of it. `batch` (>= 1, else bad_input) is the number of images per forward
    /// pass; primitives are created lazily for each batch shape met (full batches and the
    /// final partial one). Throws cvxcnn::Error (limit) if the buffers of one batch would
    /// exceed 2 GiB.
    explicit OnednnEngine(const Model& model, std::size_t batch = default_engine_batch,
                          RegionPath region_path = RegionPath::automatic);
    OnednnEngine(OnednnEngine&&) noexcept;
    OnednnEngine& operator=(OnednnEngine&&) noexcept;
    OnednnEngine(const OnednnEngine&) = delete;
    OnednnEngine& operator=(const OnednnEngine&) = delete;
    ~OnednnEngine();

    /// n x classes logits of `images`: raw pixel/255 values (normalized here, on a copy).
    /// Throws cvxcnn::Error (bad_input) if images.shape differs from the model's input or
    /// the buffer does not hold one image per label; (internal) if oneDNN fails.
    [[nodiscard]] RowMatrixF logits(const Dataset& images);
    /// The same for `count` images stored contiguously as NCHW in `images`
    /// (images.size() must be count * C * H * W).
    [[nodiscard]] RowMatrixF logits(std::span<const float> images, std::size_t count);

    /// Row-wise softmax of the logits, computed by oneDNN's softmax primitive.
    [[nodiscard]] RowMatrixF probabilities(const Dataset& images);
    [[nodiscard]] RowMatrixF probabilities(std::span<const float> images, std::size_t count);

    [[nodiscard]] const Model& model() const noexcept;
    [[nodiscard]] std::size_t batch() const noexcept;
    /// True when the G x G bands are unequal and the full-map path folds pooling into the
    /// linear layer.
    [[nodiscard]] bool folds_pooling() const noexcept;
    /// Filters computed on their one pooling region only (the region path); the others
    /// whose fc columns are not all zero run on the whole map.
    [[nodiscard]] int region_filters() const noexcept;
    /// Which oneDNN implementation runs each primitive for a batch of `batch` images, e.g.
    /// "conv brgconv:avx512_core, gate conv jit:avx512_core, pool jit:avx512_core,
    /// ip x64:gemm:jit, softmax jit:avx512_core" (creates those primitives if needed).
    [[nodiscard]] std::string implementation(std::size_t batch);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cvxcnn
