// The SDP relaxation of the infinite-width two-layer network (sdp/sdp_relaxation.hpp):
//   - the lift of any network is feasible and has the network's objective (the relaxation
//     property, for relu, leaky relu and abs);
//   - ADMM converges, its iterate is PSD and in null(M), and its certified dual bound sits
//     below its value and below every network's objective, the rounded one included;
//   - rounding never does worse than its own refit, and a rank-one feasible solution is
//     rounded exactly (the lifted neuron is the first candidate);
//   - no network trained by gradient descent from random starts ends below the bound.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

#include <Eigen/Eigenvalues>

#include "cvxcnn/sdp/sdp_relaxation.hpp"
#include "cvxcnn/util/error.hpp"

using namespace cvxcnn;

namespace {

using Index = Eigen::Index;

RowMatrixD gaussian(Index rows, Index cols, std::mt19937& rng) {
    std::normal_distribution<double> normal(0.0, 1.0);
    RowMatrixD m(rows, cols);
    for (Index i = 0; i < rows; ++i)
        for (Index j = 0; j < cols; ++j) m(i, j) = normal(rng);
    return m;
}

/// n points in R^d, targets from a planted two-neuron network plus noise, c outputs.
SdpProblem planted_problem(Index n, Index d, Index c, double beta, double negative_weight, unsigned seed) {
    std::mt19937 rng(seed);
    SdpProblem problem;
    problem.inputs = gaussian(n, d, rng);
    const RowMatrixD first = gaussian(2, d, rng), second = gaussian(2, c, rng);
    const RowMatrixD pre = problem.inputs * first.transpose();
    const RowMatrixD hidden = pre.unaryExpr([negative_weight](double t) { return t > 0 ? t : -negative_weight * t; });
    problem.targets = hidden * second + 0.1 * gaussian(n, c, rng);
    problem.beta = beta;
    problem.negative_part_weight = negative_weight;
    return problem;
}

double min_eigenvalue(const Eigen::MatrixXd& m) {
    return Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(m, Eigen::EigenvaluesOnly).eigenvalues().minCoeff();
}

}  // namespace

TEST(SdpRelaxation, LiftedNetworkIsFeasibleWithTheSameObjective) {
    for (const double negative_weight : {0.0, -0.2, 1.0}) {  // relu, leaky relu (a = 0.2), abs
        SCOPED_TRACE(negative_weight);
        const SdpProblem problem = planted_problem(9, 3, 2, 0.05, negative_weight, 7);
        std::mt19937 rng(11);
        const TwoLayerNetwork network{gaussian(5, 3, rng), gaussian(5, 2, rng)};
        const Eigen::MatrixXd lifted = lift_network(problem, network);
        const SdpResiduals residuals = sdp_residuals(problem, lifted);
        EXPECT_LE(residuals.linear, 1e-12);
        EXPECT_EQ(residuals.complementarity, 0.0);  // (t)_+ (t)_- is exactly 0
        EXPECT_EQ(residuals.nonnegativity, 0.0);
        EXPECT_LE(residuals.psd, 1e-12);
        double network_loss = 0.0, lifted_loss = 0.0;
        const double network_value = network_objective(problem, network, &network_loss);
        EXPECT_NEAR(sdp_objective(problem, lifted, &lifted_loss), network_value, 1e-12 * network_value);
        EXPECT_NEAR(lifted_loss, network_loss, 1e-12 * network_value);
    }
}

TEST(SdpRelaxation, AdmmConvergesToAFeasiblePointBracketedByItsBound) {
    const SdpProblem problem = planted_problem(12, 3, 2, 0.05, 0.0, 3);
    SdpSettings settings;
    settings.tol = 1e-7;
    settings.max_iters = 100000;
    const SdpResult result = solve_sdp_relaxation(problem, settings);
    ASSERT_EQ(result.status, SdpStatus::converged);
    EXPECT_LE(result.primal_residual, 1e-7);
    EXPECT_LE(result.dual_residual, 1e-7);
    // The iterate is exactly PSD and in null(M) (up to rounding); the entrywise constraints
    // hold to the primal residual.
    const double scale = result.lifted.diagonal().maxCoeff();
    EXPECT_GE(min_eigenvalue(result.lifted), -1e-10 * scale);
    EXPECT_LE(result.residuals.linear, 1e-10);
    EXPECT_LE(result.residuals.nonnegativity, 1e-5);
    EXPECT_LE(result.residuals.complementarity, 1e-5);
    EXPECT_NEAR((result.factor * result.factor.transpose() - result.lifted).norm(), 0.0, 1e-10 * result.lifted.norm());
    // Weak duality and convergence: bound <= value (the iterate is feasible only up to the
    // residual, so its value may sit that little below the optimum), and close to it.
    EXPECT_LE(result.dual_bound, result.objective * (1.0 + 1e-6));
    EXPECT_LE(result.objective - result.dual_bound, 1e-4 * result.objective);

    const RoundingResult rounded = round_to_network(problem, result);
    EXPECT_LE(rounded.objective, rounded.refit_objective * (1.0 + 1e-12));
    const double bound = sdp_dual_bound(problem, result, rounded.objective);
    EXPECT_GE(bound, result.dual_bound);  // a smaller upper bound can only tighten it
    EXPECT_LE(bound, rounded.objective);
    EXPECT_NEAR(network_objective(problem, rounded.network), rounded.objective, 1e-12 * rounded.objective);
    std::printf("[ sdp ] n=12 d=3 c=2: SDP %.8g, bound %.8g, rank %d, %d iterations, %.3f s; rounded network %.8g "
                "(%td neurons, refit %.8g)\n",
                result.objective, bound, result.rank, result.iterations, result.seconds, rounded.objective,
                rounded.network.neurons(), rounded.refit_objective);
}

TEST(SdpRelaxation, NoNetworkTrainedByGradientDescentEndsBelowTheBound) {
    const SdpProblem problem = planted_problem(10, 2, 1, 0.02, 0.0, 5);
    SdpSettings settings;
    settings.tol = 1e-7;
    settings.max_iters = 100000;
    const SdpResult result = solve_sdp_relaxation(problem, settings);
    ASSERT_EQ(result.status, SdpStatus::converged);
    std::mt19937 rng(2025);
    double best = std::numeric_limits<double>::infinity();
    for (int start = 0; start < 20; ++start) {
        // The rounding's descent from a random start: an ordinary gradient-trained network.
        SdpResult random_start = result;
        random_start.factor = gaussian(problem.lifted_size(), 6, rng);
        random_start.rank = 6;
        RoundingSettings rounding;
        rounding.descent_steps = 2000;
        const double value = round_to_network(problem, random_start, rounding).objective;
        EXPECT_GE(value, result.dual_bound);
        best = std::min(best, value);
    }
    std::printf("[ sdp ] n=10 d=2 c=1: bound %.8g, SDP %.8g, best of 20 gradient-descent networks %.8g\n",
                result.dual_bound, result.objective, best);
}

TEST(SdpRelaxation, RankOneSolutionIsRoundedExactly) {
    // One planted neuron, a single output and a strong weight decay: the optimum is one
    // neuron (observed: rank 1). Then rounding recovers it and the SDP is tight.
    std::mt19937 rng(9);
    SdpProblem problem;
    problem.inputs = gaussian(10, 2, rng);
    Eigen::VectorXd u(2);
    u << 1.0, 0.5;
    problem.targets = (problem.inputs * u).cwiseMax(0.0);
    problem.beta = 0.1;
    SdpSettings settings;
    settings.tol = 1e-8;
    settings.max_iters = 200000;
    const SdpResult result = solve_sdp_relaxation(problem, settings);
    ASSERT_EQ(result.status, SdpStatus::converged);
    ASSERT_EQ(result.rank, 1) << "eigenvalues " << result.eigenvalues.transpose();
    const RoundingResult rounded = round_to_network(problem, result);
    const double bound = sdp_dual_bound(problem, result, rounded.objective);
    EXPECT_LE(bound, rounded.objective);
    EXPECT_LE(rounded.refit_objective - bound, 1e-5 * rounded.objective);
    std::printf("[ sdp ] rank one: bound %.10g, SDP %.10g, rounded refit %.10g, rounded %.10g (%td neurons)\n", bound,
                result.objective, rounded.refit_objective, rounded.objective, rounded.network.neurons());
}

TEST(SdpRelaxation, InvalidProblemsAndSettingsThrowNamingTheOption) {
    SdpProblem problem = planted_problem(4, 2, 1, 0.0, 0.0, 1);
    EXPECT_THROW((void)solve_sdp_relaxation(problem), Error);
    problem.beta = 0.1;
    SdpSettings settings;
    settings.tol = 0.0;
    try {
        (void)solve_sdp_relaxation(problem, settings);
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--tol"), std::string::npos) << e.what();
    }
    problem.targets.resize(3, 1);
    EXPECT_THROW((void)solve_sdp_relaxation(problem), Error);
    EXPECT_THROW((void)sdp_objective(planted_problem(4, 2, 1, 0.1, 0.0, 1), Eigen::MatrixXd::Zero(3, 3)), Error);
}
