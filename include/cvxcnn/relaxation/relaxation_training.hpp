// `cvxcnn train --solver relaxation`: a classifier of one ReLU neuron per class, each fit by
// the single-neuron convex relaxation (relaxation/neuron_relaxation.hpp) to its one-hot
// column, i.e. the multi-neuron extension with targets y_c = 1[label = c] >= 0.
//
// The neuron reads the whole image: the architecture must have a single convolution output
// position and global pooling, e.g. conv28x28s1p0-relu-pool1 for 28 x 28 images (the
// default: conv<H>x<W>s1p0-relu-pool1, square images only since kernels are square). The
// saved model is an ordinary cvxcnn model: filter c = w_c, fc_weight = identity (class c
// reads neuron c), biases 0; eval, predict, export run it. Data handling as the other
// trainers: --val-split and --seed give the same split, normalization from the training split.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/architecture.hpp"
#include "cvxcnn/model/model.hpp"
#include "cvxcnn/relaxation/neuron_relaxation.hpp"
#include "cvxcnn/train/training_split.hpp"

namespace cvxcnn {

struct RelaxationTrainingSettings {
    std::optional<Architecture> architecture;  ///< default: the whole-image ReLU neuron
    RelaxationSettings solver;                 ///< --max-iters, --tol, --beta (ridge)
    double val_split = 0.1;                    ///< fraction held out, 0 = none
    std::uint64_t seed = 0;                    ///< of the split
};

struct RelaxationTrainingResult : RunFacts {
    Model model;
    std::vector<RelaxationResult> neurons;  ///< one per class
};

/// The architecture `--solver relaxation` uses for images of this shape when --arch is not
/// given. Throws cvxcnn::Error (bad_input) for non-square images.
[[nodiscard]] Architecture whole_image_neuron(const ImageShape& shape);

/// Trains on raw (pixel/255) images. Throws cvxcnn::Error (bad_input) naming --arch for an
/// architecture that is not one ReLU neuron on the whole image, or bad settings.
[[nodiscard]] RelaxationTrainingResult train_relaxation_cnn(const Dataset& data,
                                                            const RelaxationTrainingSettings& settings);

}  // namespace cvxcnn
