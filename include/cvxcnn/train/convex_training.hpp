// Convex training end to end: the driver behind `cvxcnn train`.
//   Dataset -> (train / validation split) -> normalization -> patch matrices -> sampled
//   sign patterns -> feature blocks -> certified group-lasso solve (a beta path, chosen by
//   validation accuracy, or one fixed beta) -> recovered CNN (Model).
// The returned model carries everything needed to reproduce and judge the run in
// Model::training: settings, seed, beta, objective, dual value, duality gap, pattern and
// filter counts, iterations, times.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/architecture.hpp"
#include "cvxcnn/model/model.hpp"
#include "cvxcnn/patterns/sign_patterns.hpp"
#include "cvxcnn/solvers/group_lasso.hpp"

namespace cvxcnn {

struct TrainingSettings {
    Architecture architecture;                 ///< activation must be gated for now
    // ---- sign patterns
    int patterns = 32;                         ///< P sampled generators (--patterns)
    SamplingOptions::Source pattern_source = SamplingOptions::Source::gaussian;
    std::uint64_t seed = 0;                    ///< patterns and the validation split (--seed)
    // ---- objective
    Loss loss = Loss::cross_entropy;
    std::optional<double> beta;                ///< fixed beta; empty = pick on the path by validation accuracy
    int path_points = 4;                       ///< betas on the path, geometric from path_max to path_min (x beta_max)
    double path_max_ratio = 1e-2;
    double path_min_ratio = 1e-4;
    /// Betas on the path are solved only to this relative gap (enough to rank them);
    /// the chosen one is then solved, warm-started, to rel_gap_tol.
    double path_rel_gap_tol = 1e-2;
    /// With a time limit, the share of it the path may use before the final solve.
    double path_time_share = 0.6;
    double val_split = 0.1;                    ///< fraction held out for validation (0 = none; needs a fixed beta)
    // ---- solver
    double rel_gap_tol = 1e-4;                 ///< stop at this relative duality gap (--tol)
    int max_iters = 1000;                      ///< per beta (--max-iters)
    double time_limit_s = 0.0;                 ///< whole training, 0 = none (--time-limit)
    int check_every = 10;                      ///< iterations between certificate checks
    // ---- resources
    std::size_t max_memory_bytes = 0;          ///< feature + patch memory cap, 0 = none (--max-memory)
    /// Called at every certificate check with a one-line summary (progress display).
    std::function<void(const std::string&)> on_progress;

    void validate() const;
};

struct TrainingResult {
    Model model;
    SolveInfo solve;                    ///< of the chosen beta
    double beta = 0.0;
    double beta_max = 0.0;
    double train_accuracy = 0.0;        ///< of the convex model on the training split
    double val_accuracy = -1.0;         ///< -1 when there is no validation split
    std::size_t patterns_kept = 0;
    std::size_t train_samples = 0;
    std::size_t val_samples = 0;
    double seconds = 0.0;
    /// One entry per beta tried: {beta, val_accuracy, train_accuracy, rel_gap, active groups, iterations}.
    nlohmann::json path = nlohmann::json::array();
};

/// Trains on `data` (raw pixel/255 images). Throws cvxcnn::Error for bad settings or
/// when the memory estimate exceeds max_memory_bytes (naming the flag to lower).
[[nodiscard]] TrainingResult train_convex_cnn(const Dataset& data, const TrainingSettings& settings);

/// Splits indices 0..n-1 into (train, validation) by a seeded shuffle; deterministic.
[[nodiscard]] std::pair<std::vector<std::size_t>, std::vector<std::size_t>> split_indices(std::size_t n,
                                                                                          double val_fraction,
                                                                                          std::uint64_t seed);
/// The images and labels at `indices`, in that order.
[[nodiscard]] Dataset subset(const Dataset& data, const std::vector<std::size_t>& indices);

}  // namespace cvxcnn
