// `cvxcnn train --depth 3` (see three_layer_training.hpp).
#include "cvxcnn/deep/three_layer_training.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/train/convex_training.hpp"
#include "cvxcnn/train/training_split.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The program stores every cone row in double: refuse sizes that cannot be small.
constexpr double max_program_values = 2e8;

}  // namespace

void ThreeLayerTrainingSettings::validate() const {
    if (patterns < 1) throw Error(ErrorKind::bad_input, "--patterns " + std::to_string(patterns) + ": must be >= 1");
    if (rank && *rank < 1) throw Error(ErrorKind::bad_input, "--rank " + std::to_string(*rank) + ": must be >= 1");
    if (beta && (!(*beta > 0.0) || !std::isfinite(*beta)))
        throw Error(ErrorKind::bad_input, "--beta: must be a positive number or auto");
    if (path_points < 1) throw Error(ErrorKind::bad_input, "--path-points: must be >= 1");
    if (!(path_min_ratio > 0.0 && path_min_ratio <= path_max_ratio && path_max_ratio <= 1.0))
        throw Error(ErrorKind::bad_input, "--path-min, --path-max: need 0 < path-min <= path-max <= 1");
    if (!(val_split >= 0.0 && val_split < 1.0)) throw Error(ErrorKind::bad_input, "--val-split: must be in [0, 1)");
    if (!beta && val_split == 0.0)
        throw Error(ErrorKind::bad_input, "--beta auto picks beta by validation accuracy: it needs --val-split > 0 "
                                          "(or give --beta a number)");
    if (!(rel_gap_tol > 0.0) || !std::isfinite(rel_gap_tol))
        throw Error(ErrorKind::bad_input, "--tol: must be a positive number");
    if (max_iters < 1) throw Error(ErrorKind::bad_input, "--max-iters " + std::to_string(max_iters) + ": must be >= 1");
    if (!(time_limit_s >= 0.0) || !std::isfinite(time_limit_s))
        throw Error(ErrorKind::bad_input, "--time-limit: must be >= 0 (0 = none)");
}

ThreeLayerTrainingResult train_three_layer_cnn(const Dataset& data, const ThreeLayerTrainingSettings& settings) {
    const auto start = Clock::now();
    settings.validate();
    if (data.size() == 0) throw Error(ErrorKind::bad_input, "--depth 3: no images");
    const Architecture architecture = settings.architecture ? *settings.architecture : whole_image_architecture(data.shape, Activation::relu, "--depth 3");
    validate_for_input(architecture, data.shape);
    if (architecture.activation != Activation::relu)
        throw Error(ErrorKind::bad_input, "--arch " + to_string(architecture) + ": --depth 3 trains ReLU networks only "
                                          "(the three-layer program covers ReLU; gated, leaky and abs are two-layer "
                                          "programs), e.g. " + to_string(whole_image_architecture(data.shape, Activation::relu, "--depth 3")));

    ThreeLayerTrainingResult result;
    const TrainingSplit split = prepare_training_split(data, architecture, settings.val_split, settings.seed);
    const Dataset &train = split.train, &val = split.val;
    const Normalization& normalization = split.normalization;
    const PatchMatrices& patches = split.patches;
    result.train_samples = train.size();
    result.val_samples = val.size();

    PatternPairs pairs = settings.rank ? enumerate_pattern_pairs(patches, *settings.rank)
                                       : sample_pattern_pairs(patches, {settings.patterns, settings.patterns, 3, settings.seed});
    result.first_patterns = pairs.first.count();
    result.second_patterns = pairs.second.count();
    result.complete_patterns = pairs.complete;
    const int classes = static_cast<int>(data.class_names.size());
    const ThreeLayerProblem problem{patches, pairs, train.labels, classes, settings.loss};
    problem.validate();
    const ThreeLayerLayout layout = layout_of(problem);
    // Dense double storage: gated rows (n K x P1 h) per region plus the weights and
    // their solver copies (about 8 x rows x classes).
    const double values = static_cast<double>(patches.stacked().rows()) * static_cast<double>(layout.first) *
                              static_cast<double>(layout.block_width) +
                          8.0 * static_cast<double>(layout.rows()) * classes;
    if (values > max_program_values)
        throw Error(ErrorKind::limit, "--patterns " + std::to_string(settings.patterns) + " with --depth 3: the program "
                                      "would hold " + std::to_string(static_cast<long long>(values)) +
                                      " doubles; lower --patterns (or use fewer images)");
    result.beta_max = three_layer_beta_max(problem);

    std::vector<double> betas;
    if (settings.beta) {
        betas.push_back(*settings.beta);
    } else {
        for (int k = 0; k < settings.path_points; ++k) {
            const double t = settings.path_points == 1 ? 0.0 : static_cast<double>(k) / (settings.path_points - 1);
            betas.push_back(result.beta_max * settings.path_max_ratio *
                            std::pow(settings.path_min_ratio / settings.path_max_ratio, t));
        }
    }
    RowMatrixD weights = RowMatrixD::Zero(layout.rows(), classes), best_weights;
    double best_val = -1.0;
    for (std::size_t k = 0; k < betas.size(); ++k) {
        ConeSolverSettings solver;
        solver.beta = betas[k];
        solver.rel_gap_tol = settings.rel_gap_tol;
        solver.feasibility_tol = settings.rel_gap_tol;
        solver.max_inner = settings.max_iters;
        solver.max_outer = 1000;
        if (settings.time_limit_s > 0.0)
            solver.time_limit_s = std::max(1e-3, (settings.time_limit_s - seconds_since(start)) /
                                                     static_cast<double>(betas.size() - k));
        const auto progress = [&](const ThreeLayerSolveInfo& info) {
            if (!settings.on_progress) return;
            char line[256];
            std::snprintf(line, sizeof line,
                          "beta %.4g: step %d, %d FISTA steps, objective %.6g, dual %.6g, rel gap %.2e, violation "
                          "%.1e, %.1f s",
                          betas[k], info.solve.outer_iterations, info.solve.inner_iterations, info.solve.primal,
                          info.solve.dual, info.solve.rel_gap, info.solve.violation, seconds_since(start));
            settings.on_progress(line);
        };
        const ThreeLayerSolveInfo info = solve_three_layer(problem, solver, weights, progress);  // warm start along the path
        const Model model = recover_three_layer_cnn(problem, weights, data.class_names, normalization);
        const double val_accuracy = reference_accuracy(model, val);
        result.path.push_back({{"beta", betas[k]},
                               {"val_accuracy", val_accuracy},
                               {"rel_gap", info.solve.rel_gap},
                               {"status", std::string(to_string(info.solve.status))},
                               {"active_groups", info.solve.active_groups},
                               {"iterations", info.solve.inner_iterations}});
        if (best_weights.size() == 0 || val_accuracy > best_val) {
            best_val = val_accuracy;
            best_weights = weights;
            result.solve = info;
            result.beta = betas[k];
        }
    }
    result.model = recover_three_layer_cnn(problem, best_weights, data.class_names, normalization);
    result.train_accuracy = reference_accuracy(result.model, train);
    result.val_accuracy = reference_accuracy(result.model, val);
    // The saved float network against the program's own logits on the training split.
    const ThreeLayerEvaluation at = evaluate_three_layer(problem, result.beta, best_weights);
    const RowMatrixD engine_logits = reference_logits(result.model, train).cast<double>();
    const double scale = std::max(1e-30, at.logits.cwiseAbs().maxCoeff());
    result.seconds = seconds_since(start);

    const ConeSolveInfo& info = result.solve.solve;
    result.model.training = {
        {"method", "three-layer convex program over pattern pairs (Ergen & Pilanci, ICML 2021): parallel ReLU "
                   "sub-networks, weight decay on the first two layers, last layer in [-1, 1]"},
        {"solver", "augmented Lagrangian with FISTA inner solves, Lagrangian dual bound"},
        {"depth", 3},
        {"loss", std::string(to_string(settings.loss))},
        {"beta", result.beta},
        {"beta_max", result.beta_max},
        {"beta_selection", settings.beta ? "fixed" : "validation accuracy on the path"},
        {"objective", info.primal},
        {"dual_objective", info.dual},
        {"duality_gap", info.gap},
        {"relative_duality_gap", info.rel_gap},
        {"cone_violation", info.violation},
        {"network_objective", result.solve.network_objective},
        {"network_relative_gap", result.solve.network_rel_gap},
        {"status", std::string(to_string(info.status))},
        {"iterations", info.inner_iterations},
        {"outer_iterations", info.outer_iterations},
        {"patterns_requested", settings.patterns},
        {"first_layer_patterns", result.first_patterns},
        {"second_layer_patterns", result.second_patterns},
        {"pattern_pairs", result.first_patterns * result.second_patterns},
        {"pattern_source", settings.rank ? "exact enumeration at rank " + std::to_string(*settings.rank) : "gaussian"},
        {"complete_patterns", result.complete_patterns},
        {"filters", result.model.filters()},
        {"hidden_units", result.model.hidden_units()},
        {"tol", settings.rel_gap_tol},
        {"time_s", result.seconds},
        {"path", result.path},
        {"recovery", {{"max_relative_logit_difference_engine_vs_program",
                       (engine_logits - at.logits).cwiseAbs().maxCoeff() / scale},
                      {"max_relative_logit_difference_network_vs_program",
                       (at.network_logits - at.logits).cwiseAbs().maxCoeff() / scale}}}};
    result.model.training.update(run_facts_json(result, settings.seed));
    return result;
}

}  // namespace cvxcnn
