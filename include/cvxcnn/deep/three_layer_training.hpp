// `cvxcnn train --depth 3`: the three-layer convex program end to end.
//   Dataset -> (train / validation split) -> normalization -> patch matrices -> pattern
//   pairs (sampled, or enumerated with --rank) -> augmented-Lagrangian solve (one beta, or
//   a short path chosen by validation accuracy) -> recovered three-layer CNN (Model with
//   hidden_weight).
// Data handling as the two-layer trainer (same split for the same --seed and --val-split,
// normalization from the training split). The architecture must be ReLU; by default the
// whole image is one patch (conv<H>x<W>s1p0-relu-pool1, the paper's fully-connected
// setting), but any ReLU architecture runs: the patterns of both layers are then taken
// per (sample, position) and the pooling regions and classes work as in the two-layer
// program (see three_layer_program.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/deep/three_layer_program.hpp"
#include "cvxcnn/model/architecture.hpp"
#include "cvxcnn/model/model.hpp"
#include "cvxcnn/train/training_split.hpp"

namespace cvxcnn {

struct ThreeLayerTrainingSettings {
    std::optional<Architecture> architecture;  ///< default: the whole-image ReLU (pool1)
    /// --patterns P: P first-layer and P second-layer patterns are sampled, P^2 pairs.
    int patterns = 8;
    /// --rank R: every pattern pair instead (first layer: the patches projected to rank R;
    /// second layer: all 2^(n K) - 1 patterns): tiny data only.
    std::optional<int> rank;
    std::uint64_t seed = 0;                    ///< patterns and split (--seed)
    Loss loss = Loss::cross_entropy;
    std::optional<double> beta;                ///< fixed; empty = pick on a path by validation accuracy
    int path_points = 3;                       ///< betas on the path, geometric from path_max to path_min x beta_max
    double path_max_ratio = 5e-2;
    double path_min_ratio = 1e-2;
    double val_split = 0.1;
    double rel_gap_tol = 1e-4;                 ///< --tol: relative gap (and relative cone violation)
    int max_iters = 2000;                      ///< --max-iters: FISTA steps of each solve
    double time_limit_s = 540.0;               ///< --time-limit: whole run, 0 = none
    std::function<void(const std::string&)> on_progress;

    /// Throws cvxcnn::Error (bad_input) naming the option of the first invalid field.
    void validate() const;
};

/// The accuracies (RunFacts) are the recovered network's.
struct ThreeLayerTrainingResult : RunFacts {
    Model model;                 ///< three-layer: has hidden_weight
    ThreeLayerSolveInfo solve;   ///< of the chosen beta
    double beta = 0.0;
    double beta_max = 0.0;
    std::size_t first_patterns = 0, second_patterns = 0;
    bool complete_patterns = false;
    nlohmann::json path = nlohmann::json::array();
};

/// Trains on raw (pixel/255) images. Throws cvxcnn::Error: bad_input naming --arch for a
/// non-ReLU architecture, --beta for auto without a validation split; limit naming --rank
/// or --patterns when the program would be too large.
[[nodiscard]] ThreeLayerTrainingResult train_three_layer_cnn(const Dataset& data,
                                                             const ThreeLayerTrainingSettings& settings);

}  // namespace cvxcnn
