// Strong duality of the three-layer ReLU network, checked numerically on data small enough
// to enumerate every pattern pair (deep/three_layer_program.hpp):
//   - the program is solved with a certified gap (its Lagrangian dual bound D is a true
//     lower bound on the convex optimum, whatever the solver's accuracy);
//   - the network recovered from it, run by the reference engine (float, on the raw
//     images), has the non-convex objective L(f) + (beta/2)(||conv||^2 + ||hidden||^2),
//     with every last-layer weight in [-1, 1], equal to the convex optimum;
//   - no network of the family trained by projected gradient descent from 30 random
//     starts ends below D (every network of the family maps to a feasible point of the
//     complete program with the same outputs and no larger penalty), and the best gets
//     close to it.
// The family: parallel sub-networks, each a hidden unit with its own first-layer filters,
// feeding one class with an output weight c in [-1, 1]; whole-image data (one position,
// global pooling), the paper's fully-connected setting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <random>
#include <vector>

#include "cvxcnn/deep/three_layer_program.hpp"
#include "cvxcnn/engine/onednn_engine.hpp"
#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/solvers/exact_loss.hpp"

using namespace cvxcnn;

namespace {

using Index = Eigen::Index;

/// n images of 2 channels and 1 x 1 pixel (h = 2 = the patch rank), a 1x1 convolution,
/// global pooling: every first-layer cell (2 * (1 + 4) = 10 for n = 5 in general position)
/// and every nonzero second-layer pattern (2^5 - 1 = 31) are enumerated: 310 pairs.
struct TinyProblem {
    Dataset raw;
    Normalization normalization;
    PatchMatrices patches;
    PatternPairs patterns;
};

TinyProblem make_problem(int n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset raw;
    raw.shape = {2, 1, 1};
    raw.images.resize(static_cast<std::size_t>(n) * raw.shape.values());
    for (float& v : raw.images) v = pixel(rng);
    raw.labels.resize(static_cast<std::size_t>(n));
    // A rule no single hyperplane separates: whether the two channels are close.
    for (int i = 0; i < n; ++i) {
        const float* x = raw.images.data() + static_cast<std::size_t>(i) * 2;
        raw.labels[static_cast<std::size_t>(i)] = std::abs(x[0] - x[1]) < 0.3f ? 1 : 0;
    }
    raw.class_names = {"apart", "close"};
    Dataset normalized = raw;
    const Normalization normalization = Normalization::compute(raw);
    normalization.apply(normalized);
    PatchMatrices patches = extract_patches(normalized, parse_architecture("conv1x1s1p0-relu-pool1"));
    PatternPairs patterns = enumerate_pattern_pairs(patches, 2);
    return {std::move(raw), normalization, std::move(patches), std::move(patterns)};
}

/// A network of the family: neuron q (row of filters) has hidden weight a(q) and belongs to
/// unit unit_of[q]; unit j has output weight c(j) in [-1, 1] on class class_of[j].
struct Network {
    RowMatrixD filters;
    Eigen::VectorXd hidden;
    Eigen::VectorXd outputs;
    RowMatrixD membership;  ///< neurons x units, 0/1
    RowMatrixD heads;       ///< units x classes, 0/1
};

/// L(f) + (beta/2)(||filters||^2 + ||hidden||^2) in double on the training patches (one
/// position), and its gradient when asked (backpropagation as matrix products).
double network_objective(const TinyProblem& p, const Network& net, double beta, Loss loss, Network* grad = nullptr) {
    const RowMatrixD x = p.patches.block(0).cast<double>();
    const RowMatrixD pre = x * net.filters.transpose();                                        // n x Q
    const RowMatrixD act = pre.cwiseMax(0.0);
    const RowMatrixD unit_pre = (act.array().rowwise() * net.hidden.transpose().array()).matrix() * net.membership;  // n x J
    const RowMatrixD unit_act = unit_pre.cwiseMax(0.0);
    const RowMatrixD z = unit_act * net.outputs.asDiagonal() * net.heads;                     // n x C
    RowMatrixD dz;
    const double value = exact_loss(loss, z, p.raw.labels, grad ? &dz : nullptr) +
                         0.5 * beta * (net.filters.squaredNorm() + net.hidden.squaredNorm());
    if (grad) {
        const RowMatrixD d_unit_act = dz * net.heads.transpose();                             // n x J
        grad->outputs = d_unit_act.cwiseProduct(unit_act).colwise().sum().transpose();
        const RowMatrixD d_unit_pre =
            ((d_unit_act * net.outputs.asDiagonal()).array() * (unit_pre.array() > 0.0).cast<double>()).matrix();
        const RowMatrixD d_weighted = d_unit_pre * net.membership.transpose();                // n x Q
        grad->hidden = beta * net.hidden + d_weighted.cwiseProduct(act).colwise().sum().transpose();
        const RowMatrixD d_pre =
            ((d_weighted.array().rowwise() * net.hidden.transpose().array()) * (pre.array() > 0.0).cast<double>()).matrix();
        grad->filters = beta * net.filters + d_pre.transpose() * x;
    }
    return value;
}

/// The recovered model as a network of the family (fc weight / |r| with |r| = 1).
Network network_of(const Model& model) {
    const int m = model.filters(), m2 = model.hidden_units(), classes = model.classes();
    const Index h = m > 0 ? static_cast<Index>(model.conv_weight.data.size()) / m : 0;
    Network net;
    net.filters.resize(m, h);
    net.hidden = Eigen::VectorXd::Zero(m);
    net.outputs = Eigen::VectorXd::Zero(m2);
    net.membership = RowMatrixD::Zero(m, m2);
    net.heads = RowMatrixD::Zero(m2, classes);
    for (int f = 0; f < m; ++f)
        for (Index k = 0; k < h; ++k) net.filters(f, k) = model.conv_weight.data[static_cast<std::size_t>(f * h + k)];
    for (int j = 0; j < m2; ++j) {
        for (int f = 0; f < m; ++f) {
            const float a = model.hidden_weight.data[static_cast<std::size_t>(j) * m + f];
            if (a == 0.0f) continue;
            EXPECT_EQ(net.membership.row(f).sum(), 0.0) << "a filter feeds one hidden unit";
            net.membership(f, j) = 1.0;
            net.hidden(f) = a;
        }
        for (int c = 0; c < classes; ++c) {
            const float w = model.fc_weight.data[static_cast<std::size_t>(c) * m2 + j];
            if (w == 0.0f) continue;
            EXPECT_EQ(net.heads.row(j).sum(), 0.0) << "a hidden unit feeds one class";
            net.heads(j, c) = 1.0;
            net.outputs(j) = w;
        }
    }
    return net;
}

/// Projected gradient descent with heavy-ball momentum from a random start: `units` hidden
/// units per class, `width` first-layer neurons per unit; output weights clipped to [-1, 1].
double train_by_gradient_descent(const TinyProblem& p, double beta, Loss loss, int units, int width, int steps,
                                 double step, std::mt19937& rng) {
    const int classes = static_cast<int>(p.raw.class_names.size()), h = p.patches.patch_size();
    const int j_count = classes * units, q_count = j_count * width;
    std::normal_distribution<double> normal(0.0, 0.5);
    std::uniform_real_distribution<double> uniform(-1.0, 1.0);
    Network net;
    net.filters.resize(q_count, h);
    net.hidden.resize(q_count);
    net.outputs.resize(j_count);
    net.membership = RowMatrixD::Zero(q_count, j_count);
    net.heads = RowMatrixD::Zero(j_count, classes);
    for (int q = 0; q < q_count; ++q) {
        for (int k = 0; k < h; ++k) net.filters(q, k) = normal(rng);
        net.hidden(q) = normal(rng);
        net.membership(q, q / width) = 1.0;
    }
    for (int j = 0; j < j_count; ++j) {
        net.outputs(j) = uniform(rng);
        net.heads(j, j / units) = 1.0;
    }
    Network grad, velocity;
    velocity.filters = RowMatrixD::Zero(q_count, h);
    velocity.hidden = Eigen::VectorXd::Zero(q_count);
    velocity.outputs = Eigen::VectorXd::Zero(j_count);
    for (int s = 0; s < steps; ++s) {
        (void)network_objective(p, net, beta, loss, &grad);
        velocity.filters = 0.9 * velocity.filters - step * grad.filters;
        velocity.hidden = 0.9 * velocity.hidden - step * grad.hidden;
        velocity.outputs = 0.9 * velocity.outputs - step * grad.outputs;
        net.filters += velocity.filters;
        net.hidden += velocity.hidden;
        net.outputs = (net.outputs + velocity.outputs).cwiseMax(-1.0).cwiseMin(1.0);
    }
    return network_objective(p, net, beta, loss);
}

struct Solved {
    ThreeLayerSolveInfo info;
    RowMatrixD weights;
    double beta = 0.0;
};

Solved solve(const TinyProblem& p, Loss loss, double beta_fraction, double rel_gap_tol) {
    const ThreeLayerProblem problem{p.patches, p.patterns, p.raw.labels, 2, loss};
    Solved out;
    out.beta = beta_fraction * three_layer_beta_max(problem);
    ConeSolverSettings settings;
    settings.beta = out.beta;
    settings.rel_gap_tol = rel_gap_tol;
    out.weights = RowMatrixD::Zero(layout_of(problem).rows(), 2);
    out.info = solve_three_layer(problem, settings, out.weights);
    return out;
}

double objective_of_logits(const TinyProblem& p, Loss loss, const RowMatrixF& logits) {
    return exact_loss(loss, logits.cast<double>(), p.raw.labels);
}

}  // namespace

TEST(ThreeLayerDuality, EnumerationIsCompleteOnFullRankTinyData) {
    const TinyProblem p = make_problem(5, 11);
    EXPECT_TRUE(p.patterns.complete);
    // Five points in general position in R^2: 2 * (C(4,0) + C(4,1)) = 10 cells. None is
    // all-zero: the normalized points sum to 0, so no g has x_j . g < 0 for all j.
    EXPECT_EQ(p.patterns.first.count(), count_arrangement_cells_bound(5, 2));
    EXPECT_EQ(p.patterns.second.count(), 31u);
}

TEST(ThreeLayerDuality, NetworkOptimumEqualsTheConvexOptimumSquaredLoss) {
    const TinyProblem p = make_problem(5, 11);
    const Loss loss = Loss::squared;
    const Solved s = solve(p, loss, 0.05, 1e-4);
    const ConeSolveInfo& info = s.info.solve;
    ASSERT_EQ(info.status, ConeSolverStatus::solved) << to_string(info.status);
    EXPECT_LE(info.rel_gap, 1e-4);
    EXPECT_LE(info.violation, 1e-4);
    // With complete patterns the recovered network's objective is an upper bound too, so
    // [dual, network objective] brackets the common optimum of both problems.
    EXPECT_GE(s.info.network_objective, info.dual * (1.0 - 1e-9));
    EXPECT_LE(s.info.network_rel_gap, 2e-4);

    const ThreeLayerProblem problem{p.patches, p.patterns, p.raw.labels, 2, loss};
    const Model model = recover_three_layer_cnn(problem, s.weights, p.raw.class_names, p.normalization);
    ASSERT_TRUE(model.has_hidden_layer());
    const ThreeLayerRegularizer reg = three_layer_regularizer(model, p.patches.regions());
    EXPECT_LE(reg.max_output_weight, 1.0 + 1e-6) << "the family's last layer is in [-1, 1]";
    // The non-convex objective of the float model, run on the raw images by the engine.
    const double engine_value = objective_of_logits(p, loss, reference_logits(model, p.raw)) + s.beta * reg.weight_decay;
    EXPECT_NEAR(engine_value, s.info.network_objective, 1e-5 * info.primal);
    EXPECT_NEAR(engine_value, info.primal, 2e-4 * info.primal);
    // Its regularizer is the convex penalty: weight decay balanced by the recovery.
    const ThreeLayerEvaluation at = evaluate_three_layer(problem, s.beta, s.weights);
    EXPECT_NEAR(reg.weight_decay, at.penalty, 1e-6 * at.penalty);

    // The same network through the test's own double forward pass (the one GD optimizes).
    const Network recovered = network_of(model);
    const double family_value = network_objective(p, recovered, s.beta, loss);
    // (float weights in the model, double in the solver: agreement to float rounding)
    EXPECT_NEAR(family_value, s.info.network_objective, 1e-6 * info.primal);

    // Gradient descent on the family. Width: the program is a group lasso with n C outputs,
    // so some optimal solution has at most n C + 1 nonzero groups (Caratheodory), i.e. at
    // most that many filters and hidden units in all; GD gets n + 1 units per class (2n + 2
    // >= n C + 1) with n C + 1 filters each. (The solver's own solution spreads over more
    // units: near-identical patterns share the weight.)
    const int n = static_cast<int>(p.patches.samples());
    const int units = n + 1, width = 2 * n + 1;
    std::mt19937 rng(2024);
    std::vector<double> finals;
    for (int start = 0; start < 30; ++start)
        finals.push_back(train_by_gradient_descent(p, s.beta, loss, units, width, 1500, 0.02, rng));
    std::sort(finals.begin(), finals.end());
    std::cout << std::setprecision(9) << "[ three-layer duality ] squared: " << p.patterns.pairs()
              << " pattern pairs, beta " << s.beta << ", optimum in [dual bound " << info.dual << ", network objective "
              << s.info.network_objective << "] (program at the AL iterate " << info.primal << ", violation "
              << info.violation << ", " << info.outer_iterations << " AL steps, " << info.inner_iterations << " FISTA steps, "
              << info.seconds << " s), recovered network " << engine_value << " with " << model.filters()
              << " filters in " << model.hidden_units() << " hidden units; gradient descent from 30 starts, " << units
              << " units x " << width << " filters per class: best " << finals.front() << " (rel "
              << (finals.front() - info.primal) / info.primal << "), median " << finals[finals.size() / 2] << ", worst "
              << finals.back() << "\n";
    for (const double value : finals) EXPECT_GE(value, info.dual * (1.0 - 1e-6)) << "a network below the convex optimum";
    // The bound is not loose: the best descent run comes close to it.
    EXPECT_LE(finals.front(), info.dual * 1.02);
}
