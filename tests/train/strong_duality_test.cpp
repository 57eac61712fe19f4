// Strong duality of the two-layer ReLU CNN, checked numerically on data small enough to
// enumerate every sign pattern (Ergen & Pilanci, ICLR 2021; TIT 2025). The same holds for
// every positively homogeneous piecewise-linear activation sigma(t) = t (s + (1 - s) 1[t >= 0])
// (leaky ReLU: slope s; absolute value: s = -1): on the cone of pattern D, sigma(X u) =
// (s I + (1 - s) D) X u exactly, which is all both directions of the proof use; the leaky
// ReLU and abs tests below check it for those activations:
//   - the exact cone-constrained program is solved with a certified gap (its Lagrangian
//     dual bound D is a true lower bound on the convex optimum);
//   - the ReLU network recovered from it has the non-convex objective
//     L(network outputs) + (beta/2) sum (||filter||^2 + a^2) equal to the convex optimum;
//   - no network of the same family trained by gradient descent from 50 random starts ends
//     below D (the convex program is a lower bound for every network of the family: each
//     neuron maps to a cone-feasible group with the same output and no larger penalty),
//     and the best of them gets close to it.
// The family: each neuron feeds one class and one pooling region (per-head neuron sets),
// sum-pooling parametrization, output weight a = fc weight / |region|.
// Also: the gated program with the same patterns is a relaxation of the exact one (same
// features, ||v - w|| <= ||v|| + ||w||), and the cone-decomposed gated solution is a
// feasible point of the exact program; the certified bounds are checked against both.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/recover/cnn_from_convex.hpp"
#include "cvxcnn/recover/cone_decomposition.hpp"
#include "cvxcnn/solvers/cone_constrained.hpp"
#include "cvxcnn/solvers/group_lasso.hpp"

using namespace cvxcnn;

namespace {

using Index = Eigen::Index;

/// n images of 3 channels and 1 x 2 pixels, a 1x1 convolution (patch rank h = 3, K = 2
/// positions) and global average pooling; two classes from a fixed nonlinear rule. Every
/// sign pattern of the n*K patch rows is enumerated exactly.
struct TinyProblem {
    Dataset raw;
    Normalization normalization;
    PatchMatrices patches;
    SignPatterns patterns;
    ConvexFeatures features;
};

TinyProblem make_problem(int n, unsigned seed, const std::string& activation = "relu") {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset raw;
    raw.shape = {3, 1, 2};
    raw.images.resize(static_cast<std::size_t>(n) * raw.shape.values());
    for (float& v : raw.images) v = pixel(rng);
    raw.labels.resize(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        const float* x = raw.images.data() + static_cast<std::size_t>(i) * 6;
        raw.labels[static_cast<std::size_t>(i)] = x[0] + x[3] > x[4] + 0.4f ? 1 : 0;
    }
    raw.class_names = {"no", "yes"};
    Dataset normalized = raw;
    const Normalization normalization = Normalization::compute(raw);
    normalization.apply(normalized);
    const Architecture architecture = parse_architecture("conv1x1s1p0-" + activation + "-pool1");
    PatchMatrices patches = extract_patches(normalized, architecture);
    SignPatterns patterns = enumerate_sign_patterns(patches.stacked().cast<double>());
    ConvexFeatures features =
        build_convex_features(patches, patterns, std::nullopt, FeatureActivation::of(architecture));
    return {std::move(raw), normalization, std::move(patches), std::move(patterns), std::move(features)};
}

/// A network of the family: neuron j has filter u_j (row j), output weight a_j (sum
/// pooling) and feeds class head_class[j] on region head_region[j] only.
struct Network {
    RowMatrixD filters;
    Eigen::VectorXd outputs;
    std::vector<int> head_class;
    std::vector<int> head_region;
};

/// The recovered model as a network of the family: a = fc weight / |region| at the one
/// nonzero (class, region) entry of each filter.
Network network_of(const Model& model, const PoolingRegions& regions) {
    const int m = model.filters(), region_count = regions.count();
    const Index h = static_cast<Index>(model.conv_weight.data.size()) / std::max(m, 1);
    Network network;
    network.filters.resize(m, h);
    network.outputs = Eigen::VectorXd::Zero(m);
    network.head_class.assign(static_cast<std::size_t>(m), -1);
    network.head_region.assign(static_cast<std::size_t>(m), -1);
    for (int f = 0; f < m; ++f) {
        for (Index j = 0; j < h; ++j) network.filters(f, j) = model.conv_weight.data[static_cast<std::size_t>(f * h + j)];
        for (int c = 0; c < model.classes(); ++c)
            for (int r = 0; r < region_count; ++r) {
                const float weight = model.fc_weight.data[static_cast<std::size_t>(c) * model.fc_weight.shape[1] +
                                                          static_cast<std::size_t>(f) * region_count + r];
                if (weight == 0.0f) continue;
                EXPECT_EQ(network.head_class[static_cast<std::size_t>(f)], -1) << "one head per filter";
                network.head_class[static_cast<std::size_t>(f)] = c;
                network.head_region[static_cast<std::size_t>(f)] = r;
                network.outputs(f) = weight / static_cast<double>(regions.sizes[r]);
            }
    }
    return network;
}

/// L(outputs) + (beta/2) sum (||u_j||^2 + a_j^2) in double on the training patches, and
/// its gradient when asked (plain backpropagation, as matrix products).
double network_objective(const TinyProblem& p, const Network& network, double beta, Loss loss,
                         RowMatrixD* grad_filters = nullptr, Eigen::VectorXd* grad_outputs = nullptr) {
    const Index n = p.patches.samples();
    const Index m = network.filters.rows();
    const int classes = static_cast<int>(p.raw.class_names.size());
    const int positions = p.patches.positions();
    const auto& region_of = p.patches.regions().region_of_position;
    // heads: m x C one-hot of each neuron's class; in_region(k): 0/1 per neuron for position k.
    RowMatrixD heads = RowMatrixD::Zero(m, classes);
    for (Index j = 0; j < m; ++j) heads(j, network.head_class[static_cast<std::size_t>(j)]) = 1.0;
    std::vector<Eigen::RowVectorXd> in_region(static_cast<std::size_t>(positions), Eigen::RowVectorXd::Zero(m));
    for (int k = 0; k < positions; ++k)
        for (Index j = 0; j < m; ++j)
            if (region_of[static_cast<std::size_t>(k)] == network.head_region[static_cast<std::size_t>(j)])
                in_region[static_cast<std::size_t>(k)](j) = 1.0;

    // sigma(t) = t * slope(t): slope 1 on t > 0, the activation's inactive slope otherwise.
    const double inactive = p.features.activation.inactive_slope();
    const auto slope = [inactive](const RowMatrixD& t) {
        return (t.array() > 0.0).select(Eigen::ArrayXXd::Ones(t.rows(), t.cols()), inactive);
    };
    std::vector<RowMatrixD> pre(static_cast<std::size_t>(positions));
    RowMatrixD pooled = RowMatrixD::Zero(n, m);  // per neuron, the sum of sigma over its region
    for (int k = 0; k < positions; ++k) {
        const auto slot = static_cast<std::size_t>(k);
        pre[slot] = p.patches.block(k).cast<double>() * network.filters.transpose();
        pooled += ((pre[slot].array() * slope(pre[slot])).rowwise() * in_region[slot].array()).matrix();
    }
    const RowMatrixD z = pooled * network.outputs.asDiagonal() * heads;
    RowMatrixD dz(n, classes);
    double value = 0.0;
    for (Index i = 0; i < n; ++i) {
        const int y = p.raw.labels[static_cast<std::size_t>(i)];
        if (loss == Loss::squared) {
            for (int c = 0; c < classes; ++c) {
                const double r = z(i, c) - (c == y ? 1.0 : 0.0);
                value += 0.5 * r * r;
                dz(i, c) = r;
            }
        } else {
            const double top = z.row(i).maxCoeff();
            const Eigen::RowVectorXd e = (z.row(i).array() - top).exp();
            value += top + std::log(e.sum()) - z(i, y);
            dz.row(i) = e / e.sum();
            dz(i, y) -= 1.0;
        }
    }
    value /= static_cast<double>(n);
    dz /= static_cast<double>(n);
    value += 0.5 * beta * (network.filters.squaredNorm() + network.outputs.squaredNorm());
    if (grad_filters) {
        const RowMatrixD upstream = dz * heads.transpose();  // n x m: dL / d pooled output
        *grad_outputs = beta * network.outputs + upstream.cwiseProduct(pooled).colwise().sum().transpose();
        *grad_filters = beta * network.filters;
        for (int k = 0; k < positions; ++k) {
            const auto slot = static_cast<std::size_t>(k);
            const RowMatrixD through = (upstream.array() * slope(pre[slot])).rowwise() *
                                       (in_region[slot].array() * network.outputs.transpose().array());
            grad_filters->noalias() += through.transpose() * p.patches.block(k).cast<double>();
        }
    }
    return value;
}

/// Full-batch gradient descent with heavy-ball momentum from a random start: `width`
/// neurons per head (class, region). Returns the final objective.
double train_by_gradient_descent(const TinyProblem& p, double beta, Loss loss, int width, int steps, double step,
                                 std::mt19937& rng) {
    const int classes = static_cast<int>(p.raw.class_names.size()), regions = p.patches.regions().count();
    const int h = p.patches.patch_size();
    Network network;
    const int m = classes * regions * width;
    network.filters.resize(m, h);
    network.outputs.resize(m);
    std::normal_distribution<double> normal(0.0, 0.5);
    for (int j = 0; j < m; ++j) {
        network.head_class.push_back(j / (regions * width));
        network.head_region.push_back((j / width) % regions);
        for (int i = 0; i < h; ++i) network.filters(j, i) = normal(rng);
        network.outputs(j) = normal(rng);
    }
    RowMatrixD grad_filters, velocity_filters = RowMatrixD::Zero(m, h);
    Eigen::VectorXd grad_outputs, velocity_outputs = Eigen::VectorXd::Zero(m);
    for (int s = 0; s < steps; ++s) {
        (void)network_objective(p, network, beta, loss, &grad_filters, &grad_outputs);
        velocity_filters = 0.9 * velocity_filters - step * grad_filters;
        velocity_outputs = 0.9 * velocity_outputs - step * grad_outputs;
        network.filters += velocity_filters;
        network.outputs += velocity_outputs;
    }
    return network_objective(p, network, beta, loss);
}

double beta_for(const TinyProblem& p, Loss loss, double fraction) {
    const GroupLassoProblem gated{p.features.matrix, p.features.block_width, p.raw.labels,
                                  static_cast<int>(p.raw.class_names.size()), loss};
    return fraction * beta_max(gated);
}

struct ExactSolution {
    ConeSolveInfo info;
    RowMatrixD positive, negative;
};

ExactSolution solve_exact(const TinyProblem& p, double beta, Loss loss) {
    const ConeConstrainedProblem problem{p.features, p.patches, p.patterns, p.raw.labels,
                                         static_cast<int>(p.raw.class_names.size()), loss};
    ConeSolverSettings settings;
    settings.beta = beta;
    // Enough for the comparisons below (1e-5 relative and coarser); the last digits of
    // FISTA's tail on these nearly-duplicate pattern blocks are the expensive ones.
    settings.rel_gap_tol = 1e-5;
    ExactSolution solution;
    solution.positive = RowMatrixD::Zero(p.features.matrix.cols(), problem.classes);
    solution.negative = solution.positive;
    solution.info = solve_cone_constrained(problem, settings, solution.positive, solution.negative);
    return solution;
}

/// Solves the exact program, recovers the network, checks that its non-convex objective
/// is the convex optimum, then trains the family by gradient descent from `starts` random
/// initializations and checks none ends below the certified lower bound.
void check_strong_duality(const TinyProblem& p, Loss loss, double beta_fraction, int starts, int steps, double step) {
    const double beta = beta_for(p, loss, beta_fraction);
    const ExactSolution exact = solve_exact(p, beta, loss);
    const ConeSolveInfo& info = exact.info;
    ASSERT_EQ(info.status, ConeSolverStatus::solved) << to_string(info.status);
    EXPECT_LE(info.rel_gap, 1e-5);
    EXPECT_GE(info.gap, 0.0);
    EXPECT_LE(info.violation, 1e-6);
    EXPECT_LE(info.max_violation, 1e-9);

    const Model model =
        recover_cone_cnn(p.features, exact.positive, exact.negative, p.patches, p.raw.class_names, p.normalization);
    const Network recovered = network_of(model, p.patches.regions());
    const double network_value = network_objective(p, recovered, beta, loss);
    // The recovered network's objective is the convex objective at the feasible solution,
    // so it lies in [D, P] up to float rounding of the model's weights.
    EXPECT_NEAR(network_value, info.primal, 1e-5 * info.primal);
    EXPECT_GE(network_value, info.dual * (1.0 - 1e-6));
    // The float model on the raw images (the reference engine) gives the same outputs.
    const RowMatrixD convex_logits =
        p.features.matrix.cast<double>() * (exact.positive - exact.negative);
    const RowMatrixD engine_logits = reference_logits(model, p.raw).cast<double>();
    EXPECT_LE((engine_logits - convex_logits).cwiseAbs().maxCoeff(), 1e-5 * convex_logits.cwiseAbs().maxCoeff());

    // Gradient descent on the family with twice n + 1 neurons per head: some optimal
    // network has at most n + 1 per head (Caratheodory on the n outputs of a head and its
    // penalty), while the solver's solution spreads over many near-identical patterns.
    const int width = 2 * (static_cast<int>(p.patches.samples()) + 1);
    std::mt19937 rng(2024);
    std::vector<double> finals;
    for (int start = 0; start < starts; ++start) finals.push_back(train_by_gradient_descent(p, beta, loss, width, steps, step, rng));
    std::sort(finals.begin(), finals.end());
    const double best = finals.front(), worst = finals.back(), median = finals[finals.size() / 2];
    std::cout << "[ strong duality ] " << to_string(p.features.activation.activation) << ", " << to_string(loss) << ": " << p.patterns.count() << " patterns, beta " << beta
              << ", convex optimum " << info.primal << " (dual bound " << info.dual << ", rel gap " << info.rel_gap
              << ", " << info.outer_iterations << " AL steps, " << info.inner_iterations << " FISTA steps, "
              << info.seconds << " s), recovered network " << network_value << " with " << model.filters()
              << " filters; gradient descent from " << starts << " starts, width " << width << " per head: best "
              << best << " (rel gap " << (best - info.primal) / info.primal << "), median " << median << ", worst "
              << worst << "\n";
    for (const double value : finals) EXPECT_GE(value, info.dual * (1.0 - 1e-9)) << "a network below the convex optimum";
    EXPECT_LE(best, info.primal * (1.0 + 1e-3)) << "the best gradient-descent run stays far from the optimum";
}

}  // namespace

// Step sizes: stable for heavy-ball descent on these data (0.02 diverges with the squared loss).
TEST(StrongDuality, ReluNetworkOptimumEqualsTheConvexOptimumSquaredLoss) {
    const TinyProblem p = make_problem(8, 1);
    check_strong_duality(p, Loss::squared, 0.05, 50, 12000, 0.005);
}

TEST(StrongDuality, ReluNetworkOptimumEqualsTheConvexOptimumCrossEntropy) {
    const TinyProblem p = make_problem(8, 3);
    check_strong_duality(p, Loss::cross_entropy, 0.05, 20, 12000, 0.05);
}

TEST(StrongDuality, LeakyReluNetworkOptimumEqualsTheConvexOptimum) {
    const TinyProblem p = make_problem(8, 1, "leaky0.1");
    check_strong_duality(p, Loss::squared, 0.05, 30, 12000, 0.005);
}

TEST(StrongDuality, AbsoluteValueNetworkOptimumEqualsTheConvexOptimum) {
    const TinyProblem p = make_problem(8, 1, "abs");
    check_strong_duality(p, Loss::squared, 0.05, 30, 12000, 0.005);
}

TEST(StrongDuality, GatedProgramRelaxesTheExactOneAndItsDecompositionIsFeasible) {
    const TinyProblem p = make_problem(8, 5);
    const Loss loss = Loss::squared;
    const double beta = beta_for(p, loss, 0.05);
    const ExactSolution exact = solve_exact(p, beta, loss);
    ASSERT_EQ(exact.info.status, ConeSolverStatus::solved);

    // The gated program on the same features, certified.
    const int classes = 2;
    const GroupLassoProblem gated{p.features.matrix, p.features.block_width, p.raw.labels, classes, loss};
    SolverSettings settings;
    settings.beta = beta;
    // Any dual value is a lower bound: the relaxation check needs no accurate solve.
    settings.rel_gap_tol = 1e-3;
    settings.max_iters = 20000;
    RowMatrixF weights = RowMatrixF::Zero(p.features.matrix.cols(), classes);
    const SolveInfo gated_info = solve_group_lasso(gated, settings, weights);
    ASSERT_EQ(gated_info.status, SolverStatus::solved);
    ASSERT_GE(gated_info.gap, 0.0);

    // Relaxation: gated optimum <= exact optimum, so the gated lower bound is below the
    // exact program's feasible value.
    EXPECT_LE(gated_info.dual, exact.info.primal * (1.0 + 1e-9));
    // The decomposed gated solution is feasible for the exact program, so the exact
    // optimum (and its lower bound) is at most its objective.
    const ConeDecomposition split = decompose_into_cones(p.features, p.patches, p.patterns, weights);
    const ConeConstrainedProblem problem{p.features, p.patches, p.patterns, p.raw.labels, classes, loss};
    const ConeCertificate decomposed = cone_certificate(problem, beta, split.positive, split.negative);
    EXPECT_LE(decomposed.max_violation, 1e-9);
    EXPECT_LE(exact.info.dual, decomposed.primal * (1.0 + 1e-9));
    // Its loss is the gated loss; only the regularizer grows, by the split's norm ratio.
    EXPECT_NEAR(decomposed.primal - beta * split.report.split_norm, gated_info.primal - beta * split.report.gated_norm,
                1e-5 * gated_info.primal);
    EXPECT_GE(split.report.norm_ratio(), 1.0);
    std::cout << "[ strong duality ] gated optimum " << gated_info.primal << " (dual " << gated_info.dual
              << ") <= exact optimum " << exact.info.primal
              << " <= decomposed gated solution " << decomposed.primal << " (norm ratio "
              << split.report.norm_ratio() << ")\n";
}

