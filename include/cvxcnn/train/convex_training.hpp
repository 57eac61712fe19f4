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
#include "cvxcnn/train/checkpoint.hpp"
#include "cvxcnn/train/training_split.hpp"

namespace cvxcnn {

struct TrainingSettings {
    Architecture architecture;                 ///< activation must be gated for now
    // ---- sign patterns
    int patterns = 16;                         ///< P sampled generators (--patterns)
    SamplingOptions::Source pattern_source = SamplingOptions::Source::gaussian;
    /// Exact enumeration instead of sampling: every pattern of the patches projected onto
    /// their top `rank` principal directions (all patterns when the patches have rank <=
    /// rank). Polynomial, N^(rank-1) patterns for N patch rows: tiny data only (--rank).
    std::optional<int> rank;
    std::size_t max_enumerated_patterns = 100000;  ///< refuse --rank above this many patterns
    std::uint64_t seed = 0;                    ///< patterns and the validation split (--seed)
    // ---- objective
    Loss loss = Loss::cross_entropy;
    std::optional<double> beta;                ///< fixed beta; empty = pick on the path by validation accuracy
    // The accurate betas sit below 1e-3 x beta_max on image data: on MNIST and Fashion-MNIST
    // the smallest beta of every path tried won (5e-3..1e-3, 2e-3..4e-4, 8e-4..1.6e-4; MNIST
    // test 98.10%, 98.40%, 98.53% in the same 540 s), at a larger duality gap.
    int path_points = 3;                       ///< betas on the path, geometric from path_max to path_min (x beta_max)
    double path_max_ratio = 8e-4;
    double path_min_ratio = 1.6e-4;
    /// Iteration cap of each beta on the path (validation accuracy settles long before the
    /// gap closes); the chosen beta then continues up to max_iters.
    int path_max_iters = 300;
    /// Betas on the path are solved only to this relative gap (enough to rank them);
    /// the chosen one is then solved, warm-started, to rel_gap_tol.
    double path_rel_gap_tol = 1e-2;
    /// With a time limit, the share of it the path may use before the final solve, split
    /// evenly between its betas.
    double path_time_share = 0.5;
    double val_split = 0.1;                    ///< fraction held out for validation (0 = none; needs a fixed beta)
    // ---- solver
    double rel_gap_tol = 1e-4;                 ///< stop at this relative duality gap (--tol)
    /// Of the chosen beta, path iterations included (--max-iters). On the full MNIST-like
    /// sets the time limit ends a default run first (about 4,400 iterations in 540 s).
    int max_iters = 10000;
    double time_limit_s = 540.0;               ///< whole training, 0 = none (--time-limit)
    int check_every = 10;                      ///< iterations between certificate checks
    // ---- resources
    std::size_t max_memory_bytes = 0;          ///< feature + patch memory cap, 0 = none (--max-memory)
    /// Called at every certificate check with a one-line summary (progress display).
    std::function<void(const std::string&)> on_progress;
    // ---- interruption and checkpoints (not part of the settings' JSON)
    /// Asked between two solver iterations; true stops training there: a checkpoint goes
    /// to on_checkpoint and the best model so far is returned with status "interrupted".
    std::function<bool()> interrupt;
    /// Also hand a checkpoint to on_checkpoint every this many seconds of solving (0 = only
    /// when interrupted). Checkpoints never change the result.
    double checkpoint_every_s = 0.0;
    std::function<void(const TrainingCheckpoint&)> on_checkpoint;

    void validate() const;
};

/// The settings that determine the result, as JSON (callbacks excluded), for checkpoints.
void to_json(nlohmann::json& json, const TrainingSettings& settings);
/// Inverse of to_json; throws cvxcnn::Error (bad_input) for a missing or bad field.
void from_json(const nlohmann::json& json, TrainingSettings& settings);

struct TrainingResult {
    Model model;
    SolveInfo solve;                    ///< of the chosen beta
    double beta = 0.0;
    double beta_max = 0.0;
    double train_accuracy = 0.0;        ///< of the convex model on the training split
    double val_accuracy = -1.0;         ///< -1 when there is no validation split
    std::size_t patterns_kept = 0;
    double rank_residual = 0.0;         ///< --rank: ||M - M V V^T||_F / ||M||_F of the patches (0 = exact)
    std::size_t train_samples = 0;
    std::size_t val_samples = 0;
    double seconds = 0.0;
    bool interrupted = false;           ///< settings.interrupt stopped training (a checkpoint was handed out)
    /// One entry per beta tried: {beta, val_accuracy, train_accuracy, rel_gap, active groups, iterations}.
    nlohmann::json path = nlohmann::json::array();
};

/// Trains on `data` (raw pixel/255 images). Throws cvxcnn::Error for bad settings or
/// when the memory estimate exceeds max_memory_bytes (naming the flag to lower).
/// With `resume`, continues an interrupted run from its checkpoint to the model the
/// uninterrupted run gives (same data and settings required: checked, and an error
/// names what differs). Set-up time of the resumed run counts against the time limit.
[[nodiscard]] TrainingResult train_convex_cnn(const Dataset& data, const TrainingSettings& settings,
                                              const TrainingCheckpoint* resume = nullptr);

}  // namespace cvxcnn
