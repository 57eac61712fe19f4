#include "cvxcnn/train/convex_training.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/problem/convex_features.hpp"
#include "cvxcnn/recover/cnn_from_convex.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

double accuracy_of(const RowMatrixF& features, const RowMatrixF& weights, std::span<const std::int32_t> labels) {
    if (labels.empty()) return -1.0;
    const std::vector<std::int32_t> predicted = argmax_rows(features * weights);
    std::size_t correct = 0;
    for (std::size_t j = 0; j < predicted.size(); ++j) correct += predicted[j] == labels[j];
    return static_cast<double>(correct) / static_cast<double>(labels.size());
}

std::string mib(std::size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

std::vector<double> beta_path(const TrainingSettings& settings, double beta_max) {
    if (settings.beta) return {*settings.beta};
    std::vector<double> betas;
    const int points = settings.path_points;
    for (int i = 0; i < points; ++i) {
        const double t = points == 1 ? 0.0 : static_cast<double>(i) / (points - 1);
        betas.push_back(beta_max * settings.path_max_ratio *
                        std::pow(settings.path_min_ratio / settings.path_max_ratio, t));
    }
    return betas;
}

}  // namespace

void TrainingSettings::validate() const {
    auto fail = [](const std::string& message) { throw Error(ErrorKind::bad_input, message); };
    if (architecture.activation != Activation::gated_relu)
        fail("--arch " + to_string(architecture) + ": convex training supports the gated activation so far "
             "(relu, leaky and abs need the cone-constrained solver, not built yet); use e.g. conv3x3s1p1-gated-pool7");
    if (patterns < 1 || patterns > 100000) fail("--patterns " + std::to_string(patterns) + ": must be in 1..100000");
    if (rank && (*rank < 1 || *rank > 16)) fail("--rank " + std::to_string(*rank) + ": must be in 1..16");
    if (beta && !(*beta > 0.0 && std::isfinite(*beta))) fail("--beta " + std::to_string(*beta) + ": must be positive");
    if (!(val_split >= 0.0 && val_split < 1.0)) fail("--val-split " + std::to_string(val_split) + ": must be in [0, 1)");
    if (!beta && val_split <= 0.0) fail("--beta auto picks beta on a validation split: give --val-split > 0 or a --beta");
    if (path_points < 1 || path_points > 100) fail("--path-points: must be in 1..100");
    if (!(path_min_ratio > 0.0 && path_min_ratio <= path_max_ratio && path_max_ratio < 1.0))
        fail("beta path: need 0 < min ratio <= max ratio < 1");
    if (!(rel_gap_tol > 0.0 && rel_gap_tol < 1.0)) fail("--tol: must be in (0, 1)");
    if (!(path_rel_gap_tol > 0.0 && path_rel_gap_tol < 1.0)) fail("beta path tolerance: must be in (0, 1)");
    if (!(path_time_share > 0.0 && path_time_share <= 1.0)) fail("beta path time share: must be in (0, 1]");
    if (max_iters < 1) fail("--max-iters: must be at least 1");
    if (path_max_iters < 1) fail("beta path iterations: must be at least 1");
    if (!(time_limit_s >= 0.0)) fail("--time-limit: must be >= 0");
}

std::pair<std::vector<std::size_t>, std::vector<std::size_t>> split_indices(std::size_t n, double val_fraction,
                                                                            std::uint64_t seed) {
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);  // its own stream, apart from the pattern draws
    // Fisher-Yates by hand: std::shuffle's algorithm is unspecified, so results would
    // change between standard libraries.
    for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
    const auto held_out = static_cast<std::size_t>(std::llround(val_fraction * static_cast<double>(n)));
    std::vector<std::size_t> val(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(held_out));
    std::vector<std::size_t> train(order.begin() + static_cast<std::ptrdiff_t>(held_out), order.end());
    std::ranges::sort(val);
    std::ranges::sort(train);
    return {train, val};
}

Dataset subset(const Dataset& data, const std::vector<std::size_t>& indices) {
    Dataset out;
    out.shape = data.shape;
    out.class_names = data.class_names;
    const std::size_t values = data.shape.values();
    out.images.resize(indices.size() * values);
    out.labels.reserve(indices.size());
    for (std::size_t i = 0; i < indices.size(); ++i) {
        const auto image = data.image(indices[i]);
        std::copy(image.begin(), image.end(), out.images.begin() + static_cast<std::ptrdiff_t>(i * values));
        out.labels.push_back(data.labels[indices[i]]);
        if (!data.files.empty()) out.files.push_back(data.files[indices[i]]);
    }
    return out;
}

TrainingResult train_convex_cnn(const Dataset& data, const TrainingSettings& settings) {
    const auto start = Clock::now();
    settings.validate();
    validate_for_input(settings.architecture, data.shape);
    const int classes = static_cast<int>(data.class_names.size());
    if (classes < 2) throw Error(ErrorKind::bad_input, "training needs at least 2 classes, the data has " +
                                                           std::to_string(classes));

    auto [train_indices, val_indices] = split_indices(data.size(), settings.val_split, settings.seed);
    if (train_indices.empty()) throw Error(ErrorKind::bad_input, "--val-split leaves no training images");
    Dataset train = subset(data, train_indices);
    Dataset val = subset(data, val_indices);
    const Normalization normalization = Normalization::compute(train);
    normalization.apply(train);
    normalization.apply(val);

    // Everything big, estimated before any of it is allocated.
    const Architecture& arch = settings.architecture;
    const int out_h = arch.conv_output_size(data.shape.height), out_w = arch.conv_output_size(data.shape.width);
    const std::size_t regions = static_cast<std::size_t>(arch.pool_grid) * arch.pool_grid;
    const std::size_t h = static_cast<std::size_t>(arch.patch_size(data.shape.channels));
    const std::size_t rows = data.size() * static_cast<std::size_t>(out_h) * out_w;
    const std::size_t train_rows = train.size() * static_cast<std::size_t>(out_h) * out_w;
    // Exact enumeration: the cell count's bound (exact in general position) stands in for P.
    const std::uint64_t pattern_bound =
        settings.rank ? count_arrangement_cells_bound(train_rows, *settings.rank) : settings.patterns;
    if (settings.rank && pattern_bound > settings.max_enumerated_patterns)
        throw Error(ErrorKind::limit, "--rank " + std::to_string(*settings.rank) + ": the " +
                                          std::to_string(train_rows) + " patch hyperplanes can cut up to " +
                                          std::to_string(pattern_bound) + " sign patterns, over the limit of " +
                                          std::to_string(settings.max_enumerated_patterns) +
                                          "; exact enumeration is for tiny data: lower --rank, use fewer images, "
                                          "or sample with --patterns");
    const auto patterns_estimate = static_cast<std::size_t>(pattern_bound);
    const std::size_t needed = patch_memory_bytes(train.size(), data.shape, arch) +
                               patch_memory_bytes(val.size(), data.shape, arch) +
                               convex_feature_bytes(data.size(), patterns_estimate, regions, h) +
                               patterns_estimate * (rows / 8 + 8) +
                               2 * patterns_estimate * regions * h * classes * sizeof(float);
    if (settings.max_memory_bytes > 0 && needed > settings.max_memory_bytes)
        throw Error(ErrorKind::limit, "training needs about " + mib(needed) + " (patch matrices and " +
                                          std::to_string(patterns_estimate) + " patterns x " + std::to_string(regions) +
                                          " regions of features), over --max-memory " +
                                          mib(settings.max_memory_bytes) + "; lower " +
                                          (settings.rank ? "--rank" : "--patterns") +
                                          ", use a coarser pool grid or fewer images");

    TrainingResult result;
    result.train_samples = train.size();
    result.val_samples = val.size();

    const PatchMatrices train_patches = extract_patches(train, arch);
    SignPatterns patterns;
    if (settings.rank) {
        // Every cell of the arrangement of the patches projected to rank r; the gates
        // g = V g_r reproduce the patterns on the full patches (x . V g_r = (V^T x) . g_r).
        const RankProjection projection = project_to_rank(train_patches.stacked(), *settings.rank);
        EnumerationLimits limits;
        limits.max_patterns = settings.max_enumerated_patterns;
        patterns = enumerate_sign_patterns(projection.reduced, limits);
        patterns.generators = lift_generators(projection, patterns.generators);
        (void)drop_empty_patterns(patterns);
        result.rank_residual = projection.relative_residual;
    } else {
        SamplingOptions sampling;
        sampling.count = settings.patterns;
        sampling.seed = settings.seed;
        sampling.source = settings.pattern_source;
        patterns = sample_sign_patterns(train_patches.stacked(), sampling).patterns;
    }
    if (patterns.count() == 0)
        throw Error(ErrorKind::bad_input, "no sign pattern is active on the training patches (are all images blank?)");
    result.patterns_kept = patterns.count();
    const ConvexFeatures features = build_convex_features(train_patches, patterns);
    const RowMatrixF generators = patterns.generators;
    patterns.words = {};  // the bits are in the features now
    RowMatrixF val_features;
    if (!val.labels.empty()) {
        const PatchMatrices val_patches = extract_patches(val, arch);
        val_features = build_convex_features(val_patches, generators).matrix;
    }

    const GroupLassoProblem problem{features.matrix, features.block_width, train.labels, classes, settings.loss};
    result.beta_max = beta_max(problem);
    RowMatrixF weights = RowMatrixF::Zero(features.matrix.cols(), classes);
    RowMatrixF best_weights;
    double best_val = -1.0;
    const std::vector<double> betas = beta_path(settings, result.beta_max);
    const bool on_path = betas.size() > 1;
    // Solver settings for one beta; `budget_end` is when this phase's time runs out.
    auto solver_for = [&](double beta, double tol, double budget_end_s, int max_iters) {
        SolverSettings solver;
        solver.beta = beta;
        solver.max_iters = max_iters;
        solver.rel_gap_tol = tol;
        solver.check_every = settings.check_every;
        if (settings.time_limit_s > 0) solver.time_limit_s = budget_end_s - seconds_since(start);
        solver.on_check = [&, beta](const SolverProgress& progress) {
            if (settings.on_progress) {
                char line[256];
                const double train_acc = accuracy_of(features.matrix, *progress.weights, train.labels);
                const double val_acc = accuracy_of(val_features, *progress.weights, val.labels);
                std::snprintf(line, sizeof line,
                              "beta %.3g  iter %4d  objective %.6g  gap %.2e  filters %d  train %.2f%%  val %s  %.0fs",
                              beta, progress.iteration, progress.primal, progress.rel_gap, progress.active_groups,
                              100 * train_acc, val_acc < 0 ? "-" : (std::to_string(100 * val_acc).substr(0, 5) + "%").c_str(),
                              seconds_since(start));
                settings.on_progress(line);
            }
            return true;
        };
        return solver;
    };

    // Time left after the set-up, shared evenly between the path's betas.
    const double setup_s = seconds_since(start);
    const double path_share_s = (settings.time_limit_s - setup_s) * settings.path_time_share / betas.size();
    for (std::size_t point = 0; point < betas.size(); ++point) {
        const double beta = betas[point];
        const double point_end_s = on_path ? setup_s + path_share_s * static_cast<double>(point + 1) : settings.time_limit_s;
        if (settings.time_limit_s > 0 && seconds_since(start) >= point_end_s) break;
        const double tol = on_path ? std::max(settings.rel_gap_tol, settings.path_rel_gap_tol) : settings.rel_gap_tol;
        const int max_iters = on_path ? std::min(settings.path_max_iters, settings.max_iters) : settings.max_iters;
        const SolveInfo info = solve_group_lasso(problem, solver_for(beta, tol, point_end_s, max_iters), weights);
        const double train_acc = accuracy_of(features.matrix, weights, train.labels);
        const double val_acc = accuracy_of(val_features, weights, val.labels);
        result.path.push_back({{"beta", beta},
                               {"val_accuracy", val_acc},
                               {"train_accuracy", train_acc},
                               {"rel_gap", info.rel_gap},
                               {"active_groups", info.active_groups},
                               {"iterations", info.iterations},
                               {"status", std::string(to_string(info.status))}});
        // Strictly better only: on ties the larger beta (the sparser network) wins.
        if (best_weights.size() == 0 || val_acc > best_val) {
            best_val = val_acc;
            best_weights = weights;
            result.solve = info;
            result.beta = beta;
            result.train_accuracy = train_acc;
            result.val_accuracy = val_acc;
        }
        if (info.status == SolverStatus::stopped || info.status == SolverStatus::diverged) break;
    }
    if (best_weights.size() == 0)
        throw Error(ErrorKind::bad_input, "--time-limit " + std::to_string(settings.time_limit_s) +
                                              " s ended before the first solve started");
    // The chosen beta, from where the path left it, to the certificate asked for.
    if (on_path && result.solve.rel_gap > settings.rel_gap_tol && result.solve.status != SolverStatus::diverged) {
        const SolveInfo info =
            solve_group_lasso(problem, solver_for(result.beta, settings.rel_gap_tol, settings.time_limit_s,
                                                  std::max(1, settings.max_iters - result.solve.iterations)),
                              best_weights);
        const int path_iterations = result.solve.iterations;
        result.solve = info;
        result.solve.iterations += path_iterations;
        result.train_accuracy = accuracy_of(features.matrix, best_weights, train.labels);
        result.val_accuracy = accuracy_of(val_features, best_weights, val.labels);
    }

    result.model = recover_gated_cnn(features, generators, best_weights, train_patches, data.class_names, normalization);
    result.seconds = seconds_since(start);

    const SolveInfo& info = result.solve;
    result.model.training = {
        {"method", "convex two-layer CNN (gated ReLU group lasso)"},
        {"solver", "FISTA with backtracking and restart, duality-gap certificate"},
        {"loss", std::string(to_string(settings.loss))},
        {"beta", result.beta},
        {"beta_max", result.beta_max},
        {"beta_selection", settings.beta ? "fixed" : "validation accuracy on the path"},
        {"objective", info.primal},
        {"dual_objective", info.dual},
        {"duality_gap", info.gap},
        {"relative_duality_gap", info.rel_gap},
        {"status", std::string(to_string(info.status))},
        {"iterations", info.iterations},
        {"patterns_requested", settings.patterns},
        {"patterns", result.patterns_kept},
        {"pattern_source", settings.rank ? "exact enumeration at rank " + std::to_string(*settings.rank)
                           : settings.pattern_source == SamplingOptions::Source::gaussian ? "gaussian" : "data"},
        {"rank_residual", result.rank_residual},
        {"filters", result.model.filters()},
        {"train_samples", result.train_samples},
        {"val_samples", result.val_samples},
        {"train_accuracy", result.train_accuracy},
        {"val_accuracy", result.val_accuracy},
        {"seed", settings.seed},
        {"tol", settings.rel_gap_tol},
        {"time_s", result.seconds},
        {"path", result.path}};
    return result;
}

}  // namespace cvxcnn
