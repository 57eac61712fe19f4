// The exact (cone-constrained) program: the polyhedral projection checked by its KKT
// conditions, and the augmented Lagrangian solver checked by feasibility from the
// definition, its certificate (weak duality against other feasible points), the
// recovered ReLU / leaky / abs network's objective, thread independence and its settings.
#include "cvxcnn/solvers/cone_constrained.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <oneapi/tbb/global_control.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/recover/cnn_from_convex.hpp"
#include "cvxcnn/recover/cone_decomposition.hpp"
#include "cvxcnn/util/error.hpp"

using namespace cvxcnn;

namespace {

using Index = Eigen::Index;

RowMatrixD gaussian(Index rows, Index cols, std::mt19937& rng) {
    std::normal_distribution<double> normal;
    RowMatrixD m(rows, cols);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
    return m;
}

/// The KKT conditions of min ||x - target|| s.t. rows x >= bounds, which certify x is the
/// projection: feasible, x - target = sum_j u_j a_j / ||a_j|| over the active rows with
/// u >= 0, and every active row tight.
void expect_projection_kkt(const RowMatrixD& rows, const Eigen::VectorXd& bounds, const Eigen::VectorXd& target,
                           const Projection& projection, double tol) {
    ASSERT_EQ(projection.status, ProjectionStatus::solved);
    const Eigen::VectorXd& x = projection.point;
    for (Index j = 0; j < rows.rows(); ++j)
        if (rows.row(j).norm() > 0.0) {
            EXPECT_GE((rows.row(j).dot(x) - bounds(j)) / rows.row(j).norm(), -tol) << "row " << j;
        }
    ASSERT_EQ(projection.multipliers.size(), static_cast<Index>(projection.active.size()));
    Eigen::VectorXd combination = target;
    for (std::size_t i = 0; i < projection.active.size(); ++i) {
        const Index j = projection.active[i];
        const double norm = rows.row(j).norm();
        EXPECT_GE(projection.multipliers(static_cast<Index>(i)), 0.0);
        EXPECT_NEAR((rows.row(j).dot(x) - bounds(j)) / norm, 0.0, tol) << "active row " << j << " is not tight";
        combination += projection.multipliers(static_cast<Index>(i)) * rows.row(j).transpose() / norm;
    }
    EXPECT_LE((combination - x).norm(), tol * (1.0 + x.norm()));
}

/// A small CNN problem with sampled patterns and the features of `arch`'s activation.
struct SmallProblem {
    Dataset raw;
    Normalization normalization;
    PatchMatrices patches;
    SignPatterns patterns;
    ConvexFeatures features;

    [[nodiscard]] ConeConstrainedProblem problem(Loss loss) const {
        return {features, patches, patterns, raw.labels, static_cast<int>(raw.class_names.size()), loss};
    }
};

SmallProblem make_small(const char* arch, int n, int pattern_count, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset raw;
    raw.shape = {1, 4, 4};
    raw.images.resize(static_cast<std::size_t>(n) * raw.shape.values());
    for (float& v : raw.images) v = pixel(rng);
    raw.labels.resize(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        const float* x = raw.images.data() + static_cast<std::size_t>(i) * 16;
        raw.labels[static_cast<std::size_t>(i)] = x[5] + x[6] > x[9] + 0.5f ? 1 : 0;
    }
    raw.class_names = {"a", "b"};
    Dataset normalized = raw;
    const Normalization normalization = Normalization::compute(raw);
    normalization.apply(normalized);
    const Architecture architecture = parse_architecture(arch);
    PatchMatrices patches = extract_patches(normalized, architecture);
    SamplingOptions sampling;
    sampling.count = pattern_count;
    sampling.seed = seed + 1;
    SignPatterns patterns = sample_sign_patterns(patches.stacked(), sampling).patterns;
    ConvexFeatures features = build_convex_features(patches, patterns, std::nullopt, FeatureActivation::of(architecture));
    return {std::move(raw), normalization, std::move(patches), std::move(patterns), std::move(features)};
}

/// Smallest s_j x_j . x / ||x_j|| / ||x|| over the cone rows of every nonzero group: the
/// feasibility of a solution, from the definition.
double worst_cone_value(const SmallProblem& s, const RowMatrixD& weights) {
    const int h = s.features.block_width, regions = s.features.regions;
    const Index n = s.patches.samples();
    double worst = std::numeric_limits<double>::infinity();
    for (int b = 0; b < s.features.blocks(); ++b)
        for (Index c = 0; c < weights.cols(); ++c) {
            const Eigen::VectorXd x = weights.block(b * h, c, h, 1);
            if (x.norm() == 0.0) continue;
            for (const int k : s.patches.regions().positions[b % regions])
                for (Index j = 0; j < n; ++j) {
                    const Eigen::VectorXd row = s.patches.block(k).row(j).transpose().cast<double>();
                    if (row.norm() == 0.0) continue;
                    const double sign = s.patterns.active(b / regions, static_cast<std::size_t>(k) * n + j) ? 1.0 : -1.0;
                    worst = std::min(worst, sign * row.dot(x) / row.norm() / x.norm());
                }
        }
    return worst;
}

struct Solved {
    ConeSolveInfo info;
    RowMatrixD positive, negative;
};

Solved solve(const SmallProblem& s, Loss loss, double beta, double rel_gap_tol = 1e-5) {
    ConeSolverSettings settings;
    settings.beta = beta;
    settings.rel_gap_tol = rel_gap_tol;
    Solved solved;
    solved.positive = RowMatrixD::Zero(s.features.matrix.cols(), 2);
    solved.negative = solved.positive;
    solved.info = solve_cone_constrained(s.problem(loss), settings, solved.positive, solved.negative);
    return solved;
}

double squared_loss(const RowMatrixD& logits, const std::vector<std::int32_t>& labels) {
    double sum = 0.0;
    for (Index i = 0; i < logits.rows(); ++i)
        for (Index c = 0; c < logits.cols(); ++c) {
            const double r = logits(i, c) - (c == labels[static_cast<std::size_t>(i)] ? 1.0 : 0.0);
            sum += 0.5 * r * r;
        }
    return sum / static_cast<double>(logits.rows());
}

}  // namespace

// ---- the projection ------------------------------------------------------------------------------

TEST(PolyhedralProjection, SatisfiesTheKktConditionsOnRandomPolyhedra) {
    std::mt19937 rng(7);
    for (const int h : {2, 3, 5, 9}) {
        SCOPED_TRACE("h = " + std::to_string(h));
        const RowMatrixD rows = gaussian(300, h, rng);
        // Feasible by construction: x0 satisfies every row with a random margin.
        const Eigen::VectorXd x0 = gaussian(h, 1, rng);
        Eigen::VectorXd bounds = rows * x0;
        std::uniform_real_distribution<double> margin(0.0, 2.0);
        for (Index j = 0; j < bounds.size(); ++j) bounds(j) -= margin(rng);
        const DenseInequalities constraints(rows, bounds);
        for (int trial = 0; trial < 5; ++trial) {
            const Eigen::VectorXd target = 4.0 * gaussian(h, 1, rng);
            ProjectionWorkspace workspace;
            const Projection projection = project_onto_polyhedron(constraints, target, {}, workspace);
            expect_projection_kkt(rows, bounds, target, projection, 1e-9);
            // No feasible point is closer (x0 and points between it and x).
            EXPECT_LE((projection.point - target).norm(), (x0 - target).norm() + 1e-12);
        }
    }
}

TEST(PolyhedralProjection, OntoTheOrthantIsClampingAndIgnoresZeroAndDuplicateRows) {
    RowMatrixD rows(6, 3);
    rows << 1, 0, 0, 0, 2, 0, 0, 0, 0.5, 0, 0, 0, 1, 0, 0, 0, 4, 0;  // a zero row, duplicates
    const Eigen::VectorXd bounds = Eigen::VectorXd::Zero(6);
    const DenseInequalities orthant(rows, bounds);
    const Eigen::VectorXd target = (Eigen::VectorXd(3) << -1.5, 2.0, -0.25).finished();
    ProjectionWorkspace workspace;
    const Projection projection = project_onto_polyhedron(orthant, target, {}, workspace);
    ASSERT_EQ(projection.status, ProjectionStatus::solved);
    EXPECT_LE((projection.point - target.cwiseMax(0.0)).norm(), 1e-15);
    expect_projection_kkt(rows, bounds, target, projection, 1e-12);
}

TEST(PolyhedralProjection, EmptyPolyhedronIsReportedInfeasible) {
    RowMatrixD rows(3, 2);
    rows << 1, 0, -1, 0, 0, 1;  // x1 >= 1 and -x1 >= 0
    const Eigen::VectorXd bounds = (Eigen::VectorXd(3) << 1.0, 0.0, -5.0).finished();
    const DenseInequalities constraints(rows, bounds);
    ProjectionWorkspace workspace;
    EXPECT_EQ(project_onto_polyhedron(constraints, Eigen::VectorXd::Zero(2), {}, workspace).status,
              ProjectionStatus::infeasible);
    EXPECT_THROW((void)project_onto_polyhedron(constraints, Eigen::VectorXd::Zero(3), {}, workspace), Error);
}

// ---- the augmented Lagrangian solver -------------------------------------------------------------

TEST(ConeConstrainedSolver, SolutionIsFeasibleCertifiedAndItsNetworkAttainsIt) {
    for (const char* arch : {"conv3x3s1p1-relu-pool2", "conv3x3s1p1-leaky0.1-pool2", "conv3x3s1p1-abs-pool1"}) {
        SCOPED_TRACE(arch);
        const SmallProblem s = make_small(arch, 12, 6, 3);
        const double beta = 0.02;
        const Solved solved = solve(s, Loss::squared, beta);
        const ConeSolveInfo& info = solved.info;
        ASSERT_EQ(info.status, ConeSolverStatus::solved) << to_string(info.status);
        EXPECT_GE(info.gap, 0.0);
        EXPECT_LE(info.rel_gap, 1e-5);
        EXPECT_GT(info.active_groups, 0);
        // Feasible by the definition, not by the solver's own measure.
        EXPECT_GE(worst_cone_value(s, solved.positive), -1e-10);
        EXPECT_GE(worst_cone_value(s, solved.negative), -1e-10);
        // The public certificate of the returned point is the solver's.
        const ConeCertificate cert = cone_certificate(s.problem(Loss::squared), beta, solved.positive, solved.negative);
        EXPECT_DOUBLE_EQ(cert.primal, info.primal);
        EXPECT_DOUBLE_EQ(cert.dual, info.dual);
        const nlohmann::json json = info;
        EXPECT_EQ(json.at("status").get<std::string>(), "solved");
        EXPECT_EQ(json.at("trace").size(), info.trace.size());

        // The network: logits F (V - W) on the raw images, objective = the convex optimum.
        const Model model = recover_cone_cnn(s.features, solved.positive, solved.negative, s.patches, s.raw.class_names,
                                             s.normalization);
        const RowMatrixD network = reference_logits(model, s.raw).cast<double>();
        const RowMatrixD convex = s.features.matrix.cast<double>() * (solved.positive - solved.negative);
        EXPECT_LE((network - convex).cwiseAbs().maxCoeff(), 1e-5 * convex.cwiseAbs().maxCoeff());
        const double objective = squared_loss(network, s.raw.labels) + beta * recovered_weight_decay(model, s.patches.regions());
        EXPECT_NEAR(objective, info.primal, 1e-5 * info.primal);
    }
}

TEST(ConeConstrainedSolver, DualBoundIsBelowEveryFeasiblePoint) {
    // Weak duality: cone-decomposed random gated weights are feasible points of the exact
    // program, so none has a smaller objective than the solver's lower bound.
    const SmallProblem s = make_small("conv3x3s1p1-relu-pool2", 12, 6, 5);
    const double beta = 0.02;
    const Solved solved = solve(s, Loss::cross_entropy, beta);
    ASSERT_EQ(solved.info.status, ConeSolverStatus::solved);
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    for (int trial = 0; trial < 5; ++trial) {
        RowMatrixF weights(s.features.matrix.cols(), 2);
        for (Index i = 0; i < weights.size(); ++i) weights.data()[i] = trial == 0 ? 0.0f : normal(rng);
        const ConeDecomposition split = decompose_into_cones(s.features, s.patches, s.patterns, weights);
        const ConeCertificate point = cone_certificate(s.problem(Loss::cross_entropy), beta, split.positive, split.negative);
        EXPECT_LE(point.max_violation, 1e-9);
        EXPECT_GE(point.primal, solved.info.dual) << "trial " << trial;
        EXPECT_GE(point.primal, solved.info.primal * (1.0 - 1e-5)) << "trial " << trial;
        EXPECT_LE(point.dual, solved.info.primal * (1.0 + 1e-12)) << "any point's dual bound is below the optimum";
    }
}

TEST(ConeConstrainedSolver, WarmStartFromTheDecomposedGatedSolutionImprovesIt) {
    const SmallProblem s = make_small("conv3x3s1p1-relu-pool2", 12, 6, 9);
    const double beta = 0.02;
    const GroupLassoProblem gated{s.features.matrix, s.features.block_width, s.raw.labels, 2, Loss::squared};
    SolverSettings gated_settings;
    gated_settings.beta = beta;
    gated_settings.rel_gap_tol = 1e-4;
    gated_settings.max_iters = 20000;
    RowMatrixF weights = RowMatrixF::Zero(s.features.matrix.cols(), 2);
    (void)solve_group_lasso(gated, gated_settings, weights);
    ConeDecomposition split = decompose_into_cones(s.features, s.patches, s.patterns, weights);
    const double start = cone_certificate(s.problem(Loss::squared), beta, split.positive, split.negative).primal;
    ConeSolverSettings settings;
    settings.beta = beta;
    settings.rel_gap_tol = 1e-5;
    const ConeSolveInfo info = solve_cone_constrained(s.problem(Loss::squared), settings, split.positive, split.negative);
    ASSERT_EQ(info.status, ConeSolverStatus::solved);
    EXPECT_LE(info.primal, start);
    EXPECT_NEAR(info.primal, solve(s, Loss::squared, beta).info.primal, 2e-5 * info.primal);
}

TEST(ConeConstrainedSolver, ThreadCountDoesNotChangeTheResult) {
    // Bitwise equality needs no accuracy: a loose gap keeps the two solves short.
    const SmallProblem s = make_small("conv3x3s1p1-relu-pool2", 12, 6, 13);
    Solved one, two;
    {
        oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 1);
        one = solve(s, Loss::cross_entropy, 0.02, 1e-3);
    }
    {
        oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 2);
        two = solve(s, Loss::cross_entropy, 0.02, 1e-3);
    }
    ASSERT_EQ(one.info.status, ConeSolverStatus::solved);
    EXPECT_EQ(one.positive, two.positive);
    EXPECT_EQ(one.negative, two.negative);
    EXPECT_EQ(one.info.primal, two.info.primal);
    EXPECT_EQ(one.info.inner_iterations, two.info.inner_iterations);
}

TEST(ConeConstrainedSolver, InvalidSettingsAndInputsAreRejected) {
    const SmallProblem s = make_small("conv3x3s1p1-relu-pool1", 6, 3, 17);
    RowMatrixD positive = RowMatrixD::Zero(s.features.matrix.cols(), 2), negative = positive;
    ConeSolverSettings settings;
    settings.beta = -1.0;
    settings.penalty_growth = 1.0;
    try {
        (void)solve_cone_constrained(s.problem(Loss::squared), settings, positive, negative);
        FAIL();
    } catch (const Error& error) {
        EXPECT_EQ(error.kind(), ErrorKind::bad_input);
        const std::string message = error.what();
        EXPECT_NE(message.find("beta -1"), std::string::npos) << message;
        EXPECT_NE(message.find("penalty_growth 1"), std::string::npos) << message;
    }
    settings = {};
    settings.beta = 0.1;
    RowMatrixD wrong = RowMatrixD::Zero(3, 2);
    EXPECT_THROW((void)solve_cone_constrained(s.problem(Loss::squared), settings, wrong, negative), Error);
    const std::vector<std::int32_t> bad_labels(s.raw.labels.size(), 5);
    const ConeConstrainedProblem bad{s.features, s.patches, s.patterns, bad_labels, 2, Loss::squared};
    EXPECT_THROW((void)solve_cone_constrained(bad, settings, positive, negative), Error);
}
