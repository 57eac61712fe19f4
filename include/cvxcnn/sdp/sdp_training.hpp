// `cvxcnn train --solver sdp`: a two-layer network on the whole image (fully connected:
// conv<H>x<W>s1p0-<act>-pool1, one position, global pooling) trained through the SDP
// relaxation of its infinite-width completely positive program (sdp/sdp_relaxation.hpp),
// then rounded to a finite network and saved as an ordinary cvxcnn model (eval, predict and
// export run it). Squared loss on one-hot targets, shared neurons for all classes.
//
// Size. The lifted matrix is p x p with p = 2n + d + c (n training images, d input
// dimension, c classes), and each ADMM iteration eigen-decomposes a (n + d + c)-square
// matrix: the run is for n in the hundreds. The images are projected onto their top d
// right singular vectors (--sdp-dim, default min(h, 16)); a neuron u in R^d is the filter
// V u in image space, with the same pre-activations on the training data and the same norm,
// so the saved model computes what the rounded network computes. p above max_lifted_size
// is refused before solving, naming --val-split and --sdp-dim.
//
// Activations: relu, leaky relu, abs (the lifting covers them: the output
// sum_j sigma(X u_j) v_j^T = Lambda_{alpha v} + s Lambda_{beta v} stays linear in Lambda).
#pragma once

#include <cstdint>
#include <optional>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/architecture.hpp"
#include "cvxcnn/model/model.hpp"
#include "cvxcnn/sdp/sdp_relaxation.hpp"
#include "cvxcnn/train/training_split.hpp"

namespace cvxcnn {

inline constexpr Eigen::Index sdp_default_dimension = 16;
inline constexpr Eigen::Index sdp_max_lifted_size = 1000;

struct SdpTrainingSettings {
    std::optional<Architecture> architecture;  ///< default: conv<H>x<W>s1p0-relu-pool1
    SdpSettings solver;                        ///< --max-iters, --tol, --time-limit
    RoundingSettings rounding;
    double beta = 1e-3;                        ///< --beta, > 0
    int dimension = 0;                         ///< --sdp-dim; 0 = min(h, sdp_default_dimension)
    double val_split = 0.1;                    ///< fraction held out, 0 = none
    std::uint64_t seed = 0;                    ///< of the split
    Eigen::Index max_lifted_size = sdp_max_lifted_size;

    /// Throws cvxcnn::Error (bad_input) naming the option.
    void validate() const;
};

struct SdpTrainingResult : RunFacts {
    Model model;
    SdpResult solution;
    RoundingResult rounded;
    double dual_bound = 0.0;           ///< certified lower bound, tightened with the rounded network
    int dimension = 0;                 ///< d actually used
    double projection_residual = 0.0;  ///< ||X - X V V^T||_F / ||X||_F of the projection (0 without one)
};

/// The whole-image network for images of this shape. Throws cvxcnn::Error (bad_input) for
/// non-square images, naming --resize.
[[nodiscard]] Architecture whole_image_network(const ImageShape& shape, Activation activation = Activation::relu);

/// Trains on raw (pixel/255) images. Throws cvxcnn::Error: bad_input naming --arch for an
/// architecture that is not a whole-image relu/leaky/abs network, or bad settings; limit
/// naming --val-split and --sdp-dim when p exceeds settings.max_lifted_size.
[[nodiscard]] SdpTrainingResult train_sdp_cnn(const Dataset& data, const SdpTrainingSettings& settings);

}  // namespace cvxcnn
