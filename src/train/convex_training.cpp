#include "cvxcnn/train/convex_training.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "cvxcnn/engine/onednn_engine.hpp"
#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/problem/convex_features.hpp"
#include "cvxcnn/recover/cnn_from_convex.hpp"
#include "cvxcnn/recover/cone_decomposition.hpp"
#include "cvxcnn/solvers/cone_constrained.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

double accuracy_of(const RowMatrixF& features, const RowMatrixF& weights, std::span<const std::int32_t> labels) {
    if (labels.empty()) return -1.0;
    return prediction_accuracy(argmax_rows(features * weights), labels);
}

double accuracy_of_logits(const RowMatrixD& logits, std::span<const std::int32_t> labels) {
    std::size_t correct = 0;
    for (std::size_t j = 0; j < labels.size(); ++j) {
        Eigen::Index best = 0;
        logits.row(static_cast<Eigen::Index>(j)).maxCoeff(&best);
        correct += best == labels[j];
    }
    return labels.empty() ? -1.0 : static_cast<double>(correct) / static_cast<double>(labels.size());
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

// An interrupted solve's weights are its uncertified iterate: give them their own
// certificate (a fresh one: the solver's state, and so a resumed run, is untouched).
void certify_interrupted(const GroupLassoProblem& problem, double beta, const RowMatrixF& weights, SolveInfo& info) {
    const Certificate cert = certificate(problem, beta, weights);
    info.primal = cert.primal;
    info.dual = cert.dual;
    info.gap = cert.gap;
    info.rel_gap = cert.rel_gap;
    info.active_groups = active_groups(weights, problem.block_width);
}

}  // namespace

void TrainingSettings::validate() const {
    auto fail = [](const std::string& message) { throw Error(ErrorKind::bad_input, message); };
    FeatureActivation::of(architecture).validate();
    if (patterns < 1 || patterns > 100000) fail("--patterns " + std::to_string(patterns) + ": must be in 1..100000");
    if (rank && (*rank < 1 || *rank > 16)) fail("--rank " + std::to_string(*rank) + ": must be in 1..16");
    if (beta && !(*beta > 0.0 && std::isfinite(*beta))) fail("--beta " + std::to_string(*beta) + ": must be positive");
    if (!(val_split >= 0.0 && val_split < 1.0)) fail("--val-split " + std::to_string(val_split) + ": must be in [0, 1)");
    if (!beta && val_split <= 0.0) fail("--beta auto picks beta on a validation split: give --val-split > 0 or a --beta");
    if (path_points < 1 || path_points > 100) fail("--path-points: must be in 1..100");
    if (!(path_min_ratio > 0.0 && path_min_ratio <= path_max_ratio && path_max_ratio < 1.0))
        fail("--path-min " + std::to_string(path_min_ratio) + " and --path-max " + std::to_string(path_max_ratio) +
             ": need 0 < --path-min <= --path-max < 1");
    if (!(rel_gap_tol > 0.0 && rel_gap_tol < 1.0)) fail("--tol: must be in (0, 1)");
    if (!(path_rel_gap_tol > 0.0 && path_rel_gap_tol < 1.0)) fail("beta path tolerance: must be in (0, 1)");
    if (!(path_time_share > 0.0 && path_time_share <= 1.0)) fail("beta path time share: must be in (0, 1]");
    if (max_iters < 1) fail("--max-iters: must be at least 1");
    if (path_max_iters < 1) fail("beta path iterations: must be at least 1");
    if (!(time_limit_s >= 0.0)) fail("--time-limit: must be >= 0");
}

void to_json(nlohmann::json& json, const TrainingSettings& settings) {
    json = {{"architecture", to_string(settings.architecture)},
            {"patterns", settings.patterns},
            {"pattern_source", settings.pattern_source == SamplingOptions::Source::gaussian ? "gaussian" : "data"},
            {"rank", settings.rank ? nlohmann::json(*settings.rank) : nlohmann::json(nullptr)},
            {"max_enumerated_patterns", settings.max_enumerated_patterns},
            {"seed", settings.seed},
            {"loss", std::string(to_string(settings.loss))},
            {"beta", settings.beta ? nlohmann::json(*settings.beta) : nlohmann::json(nullptr)},
            {"path_points", settings.path_points},
            {"path_max_ratio", settings.path_max_ratio},
            {"path_min_ratio", settings.path_min_ratio},
            {"path_max_iters", settings.path_max_iters},
            {"path_rel_gap_tol", settings.path_rel_gap_tol},
            {"path_time_share", settings.path_time_share},
            {"val_split", settings.val_split},
            {"rel_gap_tol", settings.rel_gap_tol},
            {"max_iters", settings.max_iters},
            {"time_limit_s", settings.time_limit_s},
            {"check_every", settings.check_every},
            {"max_memory_bytes", settings.max_memory_bytes}};
}

void from_json(const nlohmann::json& json, TrainingSettings& settings) {
    try {
        settings.architecture = parse_architecture(json.at("architecture").get<std::string>());
        json.at("patterns").get_to(settings.patterns);
        const std::string source = json.at("pattern_source").get<std::string>();
        if (source != "gaussian" && source != "data")
            throw Error(ErrorKind::bad_input, "pattern_source \"" + source + "\"");
        settings.pattern_source = source == "gaussian" ? SamplingOptions::Source::gaussian
                                                       : SamplingOptions::Source::data_patches;
        settings.rank = json.at("rank").is_null() ? std::nullopt : std::optional<int>(json.at("rank").get<int>());
        json.at("max_enumerated_patterns").get_to(settings.max_enumerated_patterns);
        json.at("seed").get_to(settings.seed);
        settings.loss = parse_loss(json.at("loss").get<std::string>());
        settings.beta = json.at("beta").is_null() ? std::nullopt : std::optional<double>(json.at("beta").get<double>());
        json.at("path_points").get_to(settings.path_points);
        json.at("path_max_ratio").get_to(settings.path_max_ratio);
        json.at("path_min_ratio").get_to(settings.path_min_ratio);
        json.at("path_max_iters").get_to(settings.path_max_iters);
        json.at("path_rel_gap_tol").get_to(settings.path_rel_gap_tol);
        json.at("path_time_share").get_to(settings.path_time_share);
        json.at("val_split").get_to(settings.val_split);
        json.at("rel_gap_tol").get_to(settings.rel_gap_tol);
        json.at("max_iters").get_to(settings.max_iters);
        json.at("time_limit_s").get_to(settings.time_limit_s);
        json.at("check_every").get_to(settings.check_every);
        json.at("max_memory_bytes").get_to(settings.max_memory_bytes);
    } catch (const nlohmann::json::exception& e) {
        throw Error(ErrorKind::bad_input, std::string("training settings: ") + e.what());
    }
}

namespace {

// A checkpoint continues only the run it came from: same settings, same data.
void check_resumable(const TrainingCheckpoint& checkpoint, const TrainingSettings& settings, const Dataset& data,
                     std::uint64_t fingerprint) {
    if (checkpoint.data_images != data.size() || checkpoint.data_fingerprint != fingerprint)
        throw Error(ErrorKind::bad_input, "--resume: the checkpoint was written for other data (" +
                                              std::to_string(checkpoint.data_images) + " images, this folder has " +
                                              std::to_string(data.size()) + " or different contents)");
    nlohmann::json current = settings, saved = checkpoint.settings;
    // The memory cap is a property of the machine, not of the result.
    current.erase("max_memory_bytes");
    saved.erase("max_memory_bytes");
    for (const auto& [key, value] : saved.items())
        if (!current.contains(key) || current[key] != value)
            throw Error(ErrorKind::bad_input, "--resume: the checkpoint's " + key + " is " + value.dump() +
                                                  ", this run's is " + (current.contains(key) ? current[key].dump() : "unset"));
    if (current.size() != saved.size())
        throw Error(ErrorKind::bad_input, "--resume: the checkpoint's settings are from another cvxcnn version");
}

}  // namespace

TrainingResult train_convex_cnn(const Dataset& data, const TrainingSettings& settings,
                                const TrainingCheckpoint* resume) {
    // A resumed run's clock continues from the checkpoint's elapsed time.
    const auto start = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(resume ? resume->elapsed_s : 0.0));
    settings.validate();
    const std::uint64_t fingerprint = data_fingerprint(data);
    if (resume != nullptr) check_resumable(*resume, settings, data, fingerprint);
    validate_for_input(settings.architecture, data.shape);
    const int classes = static_cast<int>(data.class_names.size());
    if (classes < 2) throw Error(ErrorKind::bad_input, "training needs at least 2 classes, the data has " +
                                                           std::to_string(classes));

    const auto [train_indices, val_indices, normalization] = split_for_training(data, settings.val_split, settings.seed);
    Dataset train = subset(data, train_indices);
    Dataset val = subset(data, val_indices);
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
    // ReLU, leaky ReLU and abs: the gated program on that activation's feature blocks,
    // then every group split into two filters of its cone (at scale), or the exact cone-
    // constrained program from there (with --rank, where all patterns are enumerated).
    const FeatureActivation activation = FeatureActivation::of(arch);
    const bool gated = arch.activation == Activation::gated_relu;
    const ConvexFeatures features = build_convex_features(train_patches, patterns, std::nullopt, activation);
    const RowMatrixF generators = patterns.generators;
    if (gated) patterns.words = {};  // the bits are in the features now; the cones need them
    // Validation features of the gated model: the network itself for gated ReLU, a proxy
    // that ranks the path's betas for the other activations (their final networks are
    // evaluated on the validation split directly below).
    RowMatrixF val_features;
    if (!val.labels.empty()) {
        const PatchMatrices val_patches = extract_patches(val, arch);
        val_features = build_convex_features(val_patches, generators, std::nullopt, activation).matrix;
    }

    const GroupLassoProblem problem{features.matrix, features.block_width, train.labels, classes, settings.loss};
    result.beta_max = beta_max(problem);
    RowMatrixF weights = RowMatrixF::Zero(features.matrix.cols(), classes);
    RowMatrixF best_weights;
    double best_val = -1.0;
    const std::vector<double> betas = beta_path(settings, result.beta_max);
    const bool on_path = betas.size() > 1;
    const int final_stage = static_cast<int>(betas.size());

    const double setup_s = resume != nullptr ? resume->setup_s : seconds_since(start);
    // Resuming: everything above was rebuilt from the same data and settings; the solve
    // continues from the checkpoint's stage and solver state.
    int first_stage = 0;
    SolverState state;
    if (resume != nullptr) {
        if (resume->stage > final_stage)
            throw Error(ErrorKind::bad_input, "checkpoint stage " + std::to_string(resume->stage) +
                                                  " is past this run's " + std::to_string(final_stage) + " stages");
        first_stage = resume->stage;
        state = resume->solver;
        result.path = resume->path;
        best_weights = resume->best_weights;
        if (best_weights.size() != 0) {
            best_val = resume->best_val_accuracy;
            result.solve = resume->best_solve;
            result.beta = resume->best_beta;
            result.val_accuracy = resume->best_val_accuracy;
            result.train_accuracy = resume->best_train_accuracy;
        }
    }
    // The checkpoint of the stage in progress (`state` holds its solver).
    const auto checkpoint_of = [&](int stage) {
        TrainingCheckpoint checkpoint;
        checkpoint.settings = settings;
        checkpoint.data_fingerprint = fingerprint;
        checkpoint.data_images = data.size();
        checkpoint.stage = stage;
        checkpoint.path = result.path;
        checkpoint.best_weights = best_weights;
        checkpoint.best_solve = result.solve;
        checkpoint.best_beta = result.beta;
        checkpoint.best_val_accuracy = best_val;
        checkpoint.best_train_accuracy = result.train_accuracy;
        checkpoint.solver = state;
        checkpoint.elapsed_s = seconds_since(start);
        checkpoint.setup_s = setup_s;
        return checkpoint;
    };
    auto last_checkpoint = Clock::now();
    bool interrupted = false;
    const auto interrupt_or_checkpoint = [&] {
        interrupted = settings.interrupt && settings.interrupt();
        return interrupted || (settings.checkpoint_every_s > 0 && settings.on_checkpoint &&
                               seconds_since(last_checkpoint) >= settings.checkpoint_every_s);
    };
    // One stage's solve. The solver stops between iterations for a checkpoint and is
    // called again with its state, which continues bit for bit; only a real interrupt
    // ends the stage early (status interrupted).
    const auto solve_stage = [&](int stage, SolverSettings solver, RowMatrixF& stage_weights) {
        solver.interrupt = interrupt_or_checkpoint;
        for (;;) {
            const SolveInfo info = solve_group_lasso(problem, solver, stage_weights, &state);
            if (info.status != SolverStatus::interrupted) {
                state = SolverState{};
                return info;
            }
            if (settings.on_checkpoint) settings.on_checkpoint(checkpoint_of(stage));
            last_checkpoint = Clock::now();
            if (interrupted) return info;
            // The solver's clock already includes state.seconds: its limit stays the same.
        }
    };
    // Solver settings for one beta; `budget_end` is when this phase's time runs out.
    auto solver_for = [&](double beta, double tol, double budget_end_s, int max_iters) {
        SolverSettings solver;
        solver.beta = beta;
        solver.max_iters = max_iters;
        solver.rel_gap_tol = tol;
        solver.check_every = settings.check_every;
        // The solver's working set copies columns of F: only into what --max-memory leaves.
        if (settings.max_memory_bytes > 0)
            solver.working_set_max_bytes = settings.max_memory_bytes > needed ? settings.max_memory_bytes - needed : 0;
        // The solver's clock starts at the time a resumed state had already spent.
        if (settings.time_limit_s > 0) solver.time_limit_s = budget_end_s - seconds_since(start) + state.seconds;
        solver.on_check = [&, beta](const SolverProgress& progress) {
            if (settings.on_progress) {
                char line[256];
                const double train_acc = accuracy_of_logits(*progress.logits, train.labels);
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
    const double path_share_s = (settings.time_limit_s - setup_s) * settings.path_time_share / betas.size();
    for (int point = first_stage; point < final_stage && !interrupted; ++point) {
        const double beta = betas[static_cast<std::size_t>(point)];
        const double point_end_s = on_path ? setup_s + path_share_s * static_cast<double>(point + 1) : settings.time_limit_s;
        if (settings.time_limit_s > 0 && seconds_since(start) >= point_end_s && state.empty()) break;
        const double tol = on_path ? std::max(settings.rel_gap_tol, settings.path_rel_gap_tol) : settings.rel_gap_tol;
        const int max_iters = on_path ? std::min(settings.path_max_iters, settings.max_iters) : settings.max_iters;
        SolveInfo info = solve_stage(point, solver_for(beta, tol, point_end_s, max_iters), weights);
        // An interrupted point competes with the weights it reached, certified afresh.
        if (interrupted) certify_interrupted(problem, beta, weights, info);
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
    const bool final_solve = first_stage == final_stage ||
                             (on_path && result.solve.rel_gap > settings.rel_gap_tol &&
                              result.solve.status != SolverStatus::diverged &&
                              result.solve.status != SolverStatus::stopped);
    if (!interrupted && final_solve) {
        const int path_iterations = result.solve.iterations;
        SolveInfo info = solve_stage(final_stage,
                                     solver_for(result.beta, settings.rel_gap_tol, settings.time_limit_s,
                                                std::max(1, settings.max_iters - path_iterations)),
                                     best_weights);
        if (interrupted) certify_interrupted(problem, result.beta, best_weights, info);
        result.solve = info;
        result.solve.iterations += path_iterations;
        result.train_accuracy = accuracy_of(features.matrix, best_weights, train.labels);
        result.val_accuracy = accuracy_of(val_features, best_weights, val.labels);
    }
    result.interrupted = interrupted;

    std::string method = "convex two-layer CNN: gated ReLU group lasso";
    RowMatrixF convex_weights = best_weights;  // the convex model the network is recovered from
    nlohmann::json exactness = nlohmann::json::object();
    if (gated) {
        result.model =
            recover_gated_cnn(features, generators, best_weights, train_patches, data.class_names, normalization);
    } else if (settings.rank) {
        // All patterns are enumerated: the exact program (cone constraints) is solved,
        // warm-started from the cone decomposition of the gated solution.
        ConeDecomposition split = decompose_into_cones(features, train_patches, patterns, best_weights);
        const ConeConstrainedProblem exact{features, train_patches, patterns, train.labels, classes, settings.loss};
        ConeSolverSettings cone;
        cone.beta = result.beta;
        cone.rel_gap_tol = settings.rel_gap_tol;
        if (settings.time_limit_s > 0) cone.time_limit_s = std::max(1.0, settings.time_limit_s - seconds_since(start));
        const ConeSolveInfo cone_info = solve_cone_constrained(exact, cone, split.positive, split.negative);
        convex_weights = (split.positive - split.negative).cast<float>();
        result.train_accuracy = accuracy_of(features.matrix, convex_weights, train.labels);
        result.model = recover_cone_cnn(features, split.positive, split.negative, train_patches, data.class_names,
                                        normalization);
        method = "convex two-layer CNN: exact " + std::string(to_string(arch.activation)) +
                 " program (cone constraints) over every enumerated pattern, augmented Lagrangian";
        exactness["exact_program"] = cone_info;
        // The certificate of the network is the exact program's.
        result.solve.primal = cone_info.primal;
        result.solve.dual = cone_info.dual;
        result.solve.gap = cone_info.gap;
        result.solve.rel_gap = cone_info.rel_gap;
        result.solve.status = cone_info.status == ConeSolverStatus::solved ? SolverStatus::solved
                              : cone_info.status == ConeSolverStatus::time_limit_reached ? SolverStatus::time_limit_reached
                              : cone_info.status == ConeSolverStatus::diverged ? SolverStatus::diverged
                                                                               : SolverStatus::max_iters_reached;
    } else {
        DecomposedModel decomposed = recover_cnn_by_cone_decomposition(features, patterns, best_weights, train_patches,
                                                                       data.class_names, normalization);
        result.model = std::move(decomposed.model);
        method = "convex two-layer CNN: gated program on " + std::string(to_string(arch.activation)) +
                 " feature blocks, each group split into two filters of its cone (cone decomposition)";
        exactness["cone_decomposition"] = decomposed.report;
        // The network's own objective: the gated loss (its outputs on the training split are
        // the gated model's) plus beta times the split filters' norms.
        exactness["network_objective"] =
            result.solve.primal + result.beta * (decomposed.report.split_norm - decomposed.report.gated_norm);
    }
    // The network itself (on the oneDNN engine, as eval runs it) against the convex model it
    // was recovered from, on up to 2000 evenly spaced training images (the whole split
    // would cost minutes with thousands of filters), and its own validation accuracy.
    {
        const std::size_t checked = std::min<std::size_t>(train.size(), 2000);
        std::vector<std::size_t> sample_rows, sample_indices;
        for (std::size_t i = 0; i < checked; ++i) {
            sample_rows.push_back(i * train.size() / checked);
            sample_indices.push_back(train_indices[sample_rows.back()]);
        }
        OnednnEngine engine(result.model);
        const RowMatrixF network_logits = engine.logits(subset(data, sample_indices));
        RowMatrixF convex_logits(static_cast<Eigen::Index>(checked), classes);
        for (std::size_t i = 0; i < checked; ++i)
            convex_logits.row(static_cast<Eigen::Index>(i)) =
                features.matrix.row(static_cast<Eigen::Index>(sample_rows[i])) * convex_weights;
        const std::vector<std::int32_t> network_classes = argmax_rows(network_logits);
        const std::vector<std::int32_t> convex_classes = argmax_rows(convex_logits);
        std::size_t agree = 0;
        for (std::size_t j = 0; j < checked; ++j) agree += network_classes[j] == convex_classes[j];
        exactness["checked_train_images"] = checked;
        exactness["train_prediction_agreement"] = static_cast<double>(agree) / static_cast<double>(checked);
        exactness["max_relative_logit_difference"] =
            (network_logits - convex_logits).cwiseAbs().maxCoeff() / std::max(1e-30f, convex_logits.cwiseAbs().maxCoeff());
        if (!val_indices.empty() && !gated) {
            const Dataset raw_val = subset(data, val_indices);
            result.val_accuracy = prediction_accuracy(argmax_rows(engine.logits(raw_val)), raw_val.labels);
        }
    }
    result.seconds = seconds_since(start);

    const SolveInfo& info = result.solve;
    result.model.training = {
        {"method", method},
        {"solver", "FISTA with backtracking and restart, duality-gap certificate"},
        {"loss", std::string(to_string(settings.loss))},
        {"beta", result.beta},
        {"beta_max", result.beta_max},
        {"beta_selection", settings.beta ? "fixed" : "validation accuracy on the path"},
        {"objective", info.primal},
        {"dual_objective", info.dual},
        {"duality_gap", info.gap},
        {"relative_duality_gap", info.rel_gap},
        {"status", std::string(to_string(result.interrupted ? SolverStatus::interrupted : info.status))},
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
        {"path", result.path},
        {"recovery", exactness}};
    return result;
}

}  // namespace cvxcnn
