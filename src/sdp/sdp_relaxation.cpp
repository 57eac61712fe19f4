#include "cvxcnn/sdp/sdp_relaxation.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <nlohmann/json.hpp>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using Index = Eigen::Index;

// Positions in the lifted vector [alpha; beta; u; v].
struct Layout {
    Index n = 0, d = 0, c = 0;
    explicit Layout(const SdpProblem& problem) : n(problem.samples()), d(problem.dimension()), c(problem.outputs()) {}
    [[nodiscard]] Index alpha(Index i) const { return i; }
    [[nodiscard]] Index beta(Index i) const { return n + i; }
    [[nodiscard]] Index u(Index k) const { return 2 * n + k; }
    [[nodiscard]] Index v(Index j) const { return 2 * n + d + j; }
    [[nodiscard]] Index size() const { return 2 * n + d + c; }
    [[nodiscard]] Index reduced_size() const { return n + d + c; }
};

constexpr double tiny = 1e-300;

// Orthonormal basis (p x q) of null(M): [beta; u; v] -> [beta + X u; beta; u; v] is onto it
// and injective, so the Q factor of that map's matrix spans it.
Eigen::MatrixXd null_space_basis(const SdpProblem& problem, const Layout& layout) {
    const Index n = layout.n, d = layout.d, c = layout.c;
    Eigen::MatrixXd map = Eigen::MatrixXd::Zero(layout.size(), layout.reduced_size());
    map.block(0, 0, n, n).setIdentity();
    map.block(0, n, n, d) = problem.inputs;
    map.block(n, 0, n, n).setIdentity();
    map.block(2 * n, n, d, d).setIdentity();
    map.block(2 * n + d, n + d, c, c).setIdentity();
    const Eigen::HouseholderQR<Eigen::MatrixXd> qr(map);
    return qr.householderQ() * Eigen::MatrixXd::Identity(layout.size(), layout.reduced_size());
}

double sigma(double t, double s) { return t > 0.0 ? t : -s * t; }

// sigma(X U^T), n x m.
RowMatrixD hidden_outputs(const SdpProblem& problem, const RowMatrixD& first) {
    const double s = problem.negative_part_weight;
    return (problem.inputs * first.transpose()).unaryExpr([s](double t) { return sigma(t, s); });
}

// The prox of g / rho, entry by entry of the symmetric matrix `z` (A on entry). An
// off-diagonal pair counts twice in ||Z - A||_F^2 but once in the loss.
void prox_of_entry_terms(const SdpProblem& problem, const Layout& layout, double rho, Eigen::MatrixXd& z) {
    const Index n = layout.n;
    z.topLeftCorner(2 * n, 2 * n) = z.topLeftCorner(2 * n, 2 * n).cwiseMax(0.0);
    for (Index i = 0; i < n; ++i) z(layout.alpha(i), layout.beta(i)) = z(layout.beta(i), layout.alpha(i)) = 0.0;
    for (Index k = 2 * n; k < layout.size(); ++k) z(k, k) -= problem.beta / (2.0 * rho);
    const double s = problem.negative_part_weight;
    const double denominator = static_cast<double>(n) + (1.0 + s * s) / (2.0 * rho);
    for (Index j = 0; j < layout.c; ++j)
        for (Index i = 0; i < n; ++i) {
            const Index a = layout.alpha(i), b = layout.beta(i), v = layout.v(j);
            const double r = (z(a, v) + s * z(b, v) - problem.targets(i, j)) / denominator;
            z(a, v) = z(v, a) = z(a, v) - r / (2.0 * rho);
            z(b, v) = z(v, b) = z(b, v) - s * r / (2.0 * rho);
        }
}

// W cleaned to satisfy g's conjugate domain exactly (ADMM keeps it there up to rounding).
Eigen::MatrixXd clean_dual(const SdpProblem& problem, const Layout& layout, const Eigen::MatrixXd& w) {
    const Index n = layout.n;
    Eigen::MatrixXd clean = Eigen::MatrixXd::Zero(layout.size(), layout.size());
    clean.topLeftCorner(2 * n, 2 * n) = w.topLeftCorner(2 * n, 2 * n).cwiseMin(0.0);
    for (Index i = 0; i < n; ++i)
        clean(layout.alpha(i), layout.beta(i)) = clean(layout.beta(i), layout.alpha(i)) =
            0.5 * (w(layout.alpha(i), layout.beta(i)) + w(layout.beta(i), layout.alpha(i)));
    for (Index k = 2 * n; k < layout.size(); ++k) clean(k, k) = problem.beta / 2.0;
    const double s = problem.negative_part_weight;
    for (Index j = 0; j < layout.c; ++j)
        for (Index i = 0; i < n; ++i) {
            const Index a = layout.alpha(i), b = layout.beta(i), v = layout.v(j);
            const double t = 0.5 * (w(a, v) + w(v, a));
            clean(a, v) = clean(v, a) = t;
            clean(b, v) = clean(v, b) = s * t;
        }
    return clean;
}

// -g*(W) for a cleaned W: sum over outputs of -t y - n t^2 / 2 with t = 2 W_{alpha v}.
double conjugate_value(const SdpProblem& problem, const Layout& layout, const Eigen::MatrixXd& clean) {
    const double n = static_cast<double>(layout.n);
    double value = 0.0;
    for (Index j = 0; j < layout.c; ++j)
        for (Index i = 0; i < layout.n; ++i) {
            const double t = 2.0 * clean(layout.alpha(i), layout.v(j));
            value += -t * problem.targets(i, j) - 0.5 * n * t * t;
        }
    return value;
}

double largest_singular_value_squared(const RowMatrixD& x) {
    const Eigen::MatrixXd gram = x.transpose() * x;
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(gram, Eigen::EigenvaluesOnly);
    return std::max(0.0, solver.eigenvalues().maxCoeff());
}

// 2 F_ub / beta >= tr(Lambda*_uu) + tr(Lambda*_vv) for every optimal Lambda*.
double penalty_trace_bound(const SdpProblem& problem, double upper_bound) {
    const double at_zero = problem.targets.squaredNorm() / (2.0 * static_cast<double>(problem.samples()));
    return 2.0 * std::max(std::min(upper_bound, at_zero), 0.0) / problem.beta;
}

// The weakest point of the dual's PSD side, priced: min over the weights D_e = diag(e I, e I,
// I, I) of (-mu_e)_+ (e ||X||^2 + 1), mu_e = lambda_min(N^T W N, N^T D_e N). Then
// <W, Lambda*> >= mu_e <D_e, Lambda*> >= -(-mu_e)_+ (e ||X||^2 + 1) * penalty_trace_bound.
// e = 1 prices the plain trace; a small e lets the (alpha, beta) directions, whose trace is
// ||X||^2 times larger, carry a larger negative curvature.
double dual_violation_price(const Layout& layout, const Eigen::MatrixXd& basis, const Eigen::MatrixXd& reduced_dual,
                            double x_norm2) {
    double best = std::numeric_limits<double>::infinity();
    for (const double e : {1.0, 0.1, 0.01, 1.0 / (1.0 + x_norm2)}) {
        Eigen::VectorXd weights = Eigen::VectorXd::Ones(layout.size());
        weights.head(2 * layout.n).setConstant(e);
        Eigen::MatrixXd metric = basis.transpose() * weights.asDiagonal() * basis;
        metric = 0.5 * (metric + metric.transpose()).eval();
        const Eigen::GeneralizedSelfAdjointEigenSolver<Eigen::MatrixXd> solver(reduced_dual, metric,
                                                                               Eigen::EigenvaluesOnly | Eigen::Ax_lBx);
        if (solver.info() != Eigen::Success) continue;
        const double mu = solver.eigenvalues().minCoeff();
        best = std::min(best, std::max(0.0, -mu) * (e * x_norm2 + 1.0));
    }
    return best;
}

SdpResiduals residuals_of(const SdpProblem& problem, const Layout& layout, const Eigen::MatrixXd& lifted, bool with_psd) {
    const Index n = layout.n;
    const double scale = std::max(lifted.diagonal().cwiseAbs().maxCoeff(), tiny);
    SdpResiduals residuals;
    const Eigen::MatrixXd relation = -lifted.topRows(n) + lifted.middleRows(n, n) +
                                     problem.inputs * lifted.middleRows(2 * n, layout.d);
    residuals.linear = relation.norm() / scale;
    for (Index i = 0; i < n; ++i)
        residuals.complementarity = std::max(residuals.complementarity, std::abs(lifted(layout.alpha(i), layout.beta(i))));
    residuals.complementarity /= scale;
    residuals.nonnegativity = std::max(0.0, -lifted.topLeftCorner(2 * n, 2 * n).minCoeff()) / scale;
    if (with_psd) {
        const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(lifted, Eigen::EigenvaluesOnly);
        residuals.psd = std::max(0.0, -solver.eigenvalues().minCoeff()) / scale;
    }
    return residuals;
}

void check_lifted_size(const SdpProblem& problem, const Eigen::MatrixXd& lifted) {
    const Index p = problem.lifted_size();
    if (lifted.rows() != p || lifted.cols() != p)
        throw Error(ErrorKind::bad_input, "SDP relaxation: the lifted matrix is " + std::to_string(lifted.rows()) + "x" +
                                              std::to_string(lifted.cols()) + ", expected " + std::to_string(p) + "x" +
                                              std::to_string(p) + " (2n + d + c)");
}

void check_network(const SdpProblem& problem, const TwoLayerNetwork& network) {
    if (network.first.cols() != problem.dimension() || network.second.cols() != problem.outputs() ||
        network.first.rows() != network.second.rows())
        throw Error(ErrorKind::bad_input, "SDP relaxation: a network of " + std::to_string(network.first.rows()) + "x" +
                                              std::to_string(network.first.cols()) + " first-layer and " +
                                              std::to_string(network.second.rows()) + "x" +
                                              std::to_string(network.second.cols()) +
                                              " second-layer weights does not fit d = " +
                                              std::to_string(problem.dimension()) + ", c = " +
                                              std::to_string(problem.outputs()));
}

// ---- rounding helpers ---------------------------------------------------------------------------

// The output layer minimizing N for fixed first-layer weights: ridge least squares.
RowMatrixD refit_output_layer(const SdpProblem& problem, const RowMatrixD& first) {
    const RowMatrixD hidden = hidden_outputs(problem, first);
    const double n = static_cast<double>(problem.samples());
    Eigen::MatrixXd normal = hidden.transpose() * hidden / n;
    normal.diagonal().array() += problem.beta;
    const Eigen::MatrixXd rhs = hidden.transpose() * problem.targets / n;
    return Eigen::LDLT<Eigen::MatrixXd>(normal).solve(rhs);
}

// ||u|| = ||v|| per neuron: the same outputs (sigma is positively homogeneous) and the
// smallest penalty, beta ||u|| ||v||. A neuron without output weight is zeroed.
void rebalance(TwoLayerNetwork& network) {
    for (Index j = 0; j < network.neurons(); ++j) {
        const double u = network.first.row(j).norm(), v = network.second.row(j).norm();
        if (u == 0.0 || v == 0.0) {
            network.first.row(j).setZero();
            network.second.row(j).setZero();
            continue;
        }
        const double scale = std::sqrt(v / u);
        network.first.row(j) *= scale;
        network.second.row(j) /= scale;
    }
}

TwoLayerNetwork drop_empty_neurons(const TwoLayerNetwork& network) {
    std::vector<Index> kept;
    for (Index j = 0; j < network.neurons(); ++j)
        if (network.first.row(j).squaredNorm() > 0.0 && network.second.row(j).squaredNorm() > 0.0) kept.push_back(j);
    TwoLayerNetwork result{RowMatrixD(static_cast<Index>(kept.size()), network.first.cols()),
                           RowMatrixD(static_cast<Index>(kept.size()), network.second.cols())};
    for (std::size_t k = 0; k < kept.size(); ++k) {
        result.first.row(static_cast<Index>(k)) = network.first.row(kept[k]);
        result.second.row(static_cast<Index>(k)) = network.second.row(kept[k]);
    }
    return result;
}

// Refit and rebalance alternately: each step does not increase N.
TwoLayerNetwork refit_from(const SdpProblem& problem, RowMatrixD first) {
    TwoLayerNetwork network{std::move(first), RowMatrixD()};
    for (int round = 0; round < 5; ++round) {
        network.second = refit_output_layer(problem, network.first);
        rebalance(network);
    }
    return network;
}

double objective_and_gradient(const SdpProblem& problem, const TwoLayerNetwork& network, RowMatrixD& grad_first,
                              RowMatrixD& grad_second) {
    const double n = static_cast<double>(problem.samples()), s = problem.negative_part_weight;
    const RowMatrixD pre = problem.inputs * network.first.transpose();
    const RowMatrixD hidden = pre.unaryExpr([s](double t) { return sigma(t, s); });
    const RowMatrixD residual = (hidden * network.second - problem.targets) / n;
    grad_second = hidden.transpose() * residual + problem.beta * network.second;
    const RowMatrixD through = (residual * network.second.transpose()).cwiseProduct(
        pre.unaryExpr([s](double t) { return t > 0.0 ? 1.0 : -s; }));
    grad_first = through.transpose() * problem.inputs + problem.beta * network.first;
    return 0.5 * n * residual.squaredNorm() +
           0.5 * problem.beta * (network.first.squaredNorm() + network.second.squaredNorm());
}

// Gradient descent with Armijo backtracking: N never increases.
void descend(const SdpProblem& problem, TwoLayerNetwork& network, int steps) {
    RowMatrixD grad_first, grad_second, unused_first, unused_second;
    double step = 1.0;
    for (int k = 0; k < steps && network.neurons() > 0; ++k) {
        const double value = objective_and_gradient(problem, network, grad_first, grad_second);
        const double grad_norm2 = grad_first.squaredNorm() + grad_second.squaredNorm();
        if (grad_norm2 <= 1e-24 * std::max(value * value, tiny)) return;
        bool accepted = false;
        while (step > 1e-20) {
            TwoLayerNetwork trial{network.first - step * grad_first, network.second - step * grad_second};
            if (network_objective(problem, trial) <= value - 0.5 * step * grad_norm2) {
                network = std::move(trial);
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if (!accepted) return;
        step *= 1.5;
    }
}

}  // namespace

void SdpProblem::validate() const {
    if (inputs.rows() == 0 || inputs.cols() == 0 || targets.cols() == 0)
        throw Error(ErrorKind::bad_input, "SDP relaxation: empty data (n = " + std::to_string(inputs.rows()) +
                                              ", d = " + std::to_string(inputs.cols()) +
                                              ", c = " + std::to_string(targets.cols()) + ")");
    if (targets.rows() != inputs.rows())
        throw Error(ErrorKind::bad_input, "SDP relaxation: " + std::to_string(inputs.rows()) + " inputs but " +
                                              std::to_string(targets.rows()) + " target rows");
    if (!inputs.allFinite() || !targets.allFinite())
        throw Error(ErrorKind::bad_input, "SDP relaxation: non-finite inputs or targets");
    if (!(beta > 0.0) || !std::isfinite(beta))
        throw Error(ErrorKind::bad_input, "--beta: the SDP relaxation needs a positive finite weight decay, got " +
                                              std::to_string(beta));
    if (!std::isfinite(negative_part_weight) || std::abs(negative_part_weight) > 1.0)
        throw Error(ErrorKind::bad_input, "SDP relaxation: the activation's negative-part weight must be in [-1, 1]");
}

void SdpSettings::validate() const {
    std::string defects;
    if (max_iters < 1) defects += " --max-iters must be >= 1;";
    if (!(tol > 0.0) || !std::isfinite(tol)) defects += " --tol must be positive;";
    if (!(initial_penalty >= 0.0) || !std::isfinite(initial_penalty)) defects += " the initial penalty must be >= 0;";
    if (!(over_relaxation > 0.0 && over_relaxation < 2.0)) defects += " the over-relaxation must be in (0, 2);";
    if (check_every < 1 || bound_every < 1) defects += " check intervals must be >= 1;";
    if (!(rank_rtol > 0.0 && rank_rtol < 1.0)) defects += " the rank tolerance must be in (0, 1);";
    if (!(time_limit_s >= 0.0) || !std::isfinite(time_limit_s)) defects += " --time-limit must be >= 0;";
    if (!defects.empty()) {
        defects.pop_back();
        throw Error(ErrorKind::bad_input, "SDP relaxation settings:" + defects);
    }
}

std::string_view to_string(SdpStatus status) noexcept {
    switch (status) {
        case SdpStatus::converged: return "converged";
        case SdpStatus::max_iters_reached: return "max_iters_reached";
        case SdpStatus::time_limit_reached: return "time_limit_reached";
    }
    return "unknown";
}

double sdp_objective(const SdpProblem& problem, const Eigen::MatrixXd& lifted, double* loss) {
    check_lifted_size(problem, lifted);
    const Layout layout(problem);
    const Index n = layout.n;
    const RowMatrixD outputs = lifted.block(0, layout.v(0), n, layout.c) +
                               problem.negative_part_weight * lifted.block(n, layout.v(0), n, layout.c);
    const double loss_value = (outputs - problem.targets).squaredNorm() / (2.0 * static_cast<double>(n));
    if (loss) *loss = loss_value;
    return loss_value + 0.5 * problem.beta * lifted.diagonal().tail(layout.d + layout.c).sum();
}

SdpResiduals sdp_residuals(const SdpProblem& problem, const Eigen::MatrixXd& lifted) {
    check_lifted_size(problem, lifted);
    return residuals_of(problem, Layout(problem), lifted, true);
}

double sdp_dual_bound(const SdpProblem& problem, const SdpResult& result, double upper_bound) {
    return result.dual_value - result.dual_violation * penalty_trace_bound(problem, upper_bound);
}

SdpResult solve_sdp_relaxation(const SdpProblem& problem, const SdpSettings& settings) {
    problem.validate();
    settings.validate();
    const auto start = std::chrono::steady_clock::now();
    const auto elapsed = [&start] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    const Layout layout(problem);
    const Index p = layout.size();
    const Eigen::MatrixXd basis = null_space_basis(problem, layout);
    const double no_upper_bound = std::numeric_limits<double>::infinity();
    const double x_norm2 = largest_singular_value_squared(problem.inputs);

    double rho = settings.initial_penalty > 0.0 ? settings.initial_penalty : 1.0 / static_cast<double>(layout.n);
    Eigen::MatrixXd lifted = Eigen::MatrixXd::Zero(p, p), z = lifted, scaled_dual = lifted, previous_z = lifted;
    Eigen::MatrixXd factor(p, 0);
    Eigen::VectorXd eigenvalues;
    SdpResult result;
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eigen;

    // The certificate at the current dual iterate (one q x q eigen-decomposition).
    const auto certify = [&] {
        const Eigen::MatrixXd clean = clean_dual(problem, layout, rho * scaled_dual);
        result.dual_value = conjugate_value(problem, layout, clean);
        Eigen::MatrixXd reduced = basis.transpose() * clean * basis;
        reduced = 0.5 * (reduced + reduced.transpose()).eval();
        result.dual_violation = dual_violation_price(layout, basis, reduced, x_norm2);
        result.trace_bound = penalty_trace_bound(problem, no_upper_bound);
        result.dual_bound = sdp_dual_bound(problem, result, no_upper_bound);
    };

    int checks = 0;
    for (int iteration = 1; iteration <= settings.max_iters; ++iteration) {
        // Lambda: projection of Z - U onto {N G N^T : G PSD}.
        Eigen::MatrixXd reduced = basis.transpose() * (z - scaled_dual) * basis;
        reduced = 0.5 * (reduced + reduced.transpose()).eval();
        eigen.compute(reduced);
        const Eigen::VectorXd& values = eigen.eigenvalues();  // ascending
        Index positive = 0;
        while (positive < values.size() && values(values.size() - 1 - positive) > 0.0) ++positive;
        eigenvalues.resize(positive);
        Eigen::MatrixXd reduced_factor(reduced.rows(), positive);
        for (Index k = 0; k < positive; ++k) {
            const Index source = values.size() - 1 - k;
            eigenvalues(k) = values(source);
            reduced_factor.col(k) = eigen.eigenvectors().col(source) * std::sqrt(values(source));
        }
        factor = basis * reduced_factor;
        lifted.noalias() = factor * factor.transpose();
        lifted = 0.5 * (lifted + lifted.transpose()).eval();

        // Z: entrywise prox at the over-relaxed point; U: the scaled multiplier.
        const Eigen::MatrixXd relaxed = settings.over_relaxation * lifted + (1.0 - settings.over_relaxation) * z;
        previous_z.swap(z);
        z = relaxed + scaled_dual;
        prox_of_entry_terms(problem, layout, rho, z);
        scaled_dual += relaxed - z;
        result.iterations = iteration;

        const bool last = iteration == settings.max_iters;
        if (iteration % settings.check_every != 0 && !last) continue;
        ++checks;
        result.primal_residual = (lifted - z).norm() / std::max({lifted.norm(), z.norm(), tiny});
        result.dual_residual = rho * (z - previous_z).norm() / std::max(rho * scaled_dual.norm(), tiny);
        const bool converged = result.primal_residual <= settings.tol && result.dual_residual <= settings.tol;
        const bool out_of_time = settings.time_limit_s > 0.0 && elapsed() >= settings.time_limit_s;
        if (converged || out_of_time || last || checks % settings.bound_every == 0) {
            certify();
            if (settings.on_progress) {
                char line[256];
                double loss = 0.0;
                const double objective = sdp_objective(problem, lifted, &loss);
                std::snprintf(line, sizeof line,
                              "sdp: iteration %d, objective %.6g, dual bound %.6g, residuals %.1e primal %.1e dual, "
                              "rank %td, rho %.2g, %.1f s",
                              iteration, objective, result.dual_bound, result.primal_residual, result.dual_residual,
                              positive, rho, elapsed());
                settings.on_progress(line);
            }
        }
        if (converged) {
            result.status = SdpStatus::converged;
            break;
        }
        if (out_of_time) {
            result.status = SdpStatus::time_limit_reached;
            break;
        }
        // Residual balancing (Boyd et al. 3.4.1, on relative residuals); U scales inversely.
        const double ratio = result.primal_residual / std::max(result.dual_residual, tiny);
        if (ratio > 3.0 || ratio < 1.0 / 3.0) {
            const double factor_change = std::clamp(std::sqrt(ratio), 0.2, 5.0);
            rho *= factor_change;
            scaled_dual /= factor_change;
        }
    }

    result.objective = sdp_objective(problem, lifted, &result.loss);
    result.residuals = residuals_of(problem, layout, lifted, false);
    result.eigenvalues = std::move(eigenvalues);
    const double largest = result.eigenvalues.size() > 0 ? result.eigenvalues(0) : 0.0;
    result.rank = static_cast<int>((result.eigenvalues.array() > settings.rank_rtol * largest).count());
    result.lifted = std::move(lifted);
    result.factor = std::move(factor);
    result.penalty = rho;
    result.seconds = elapsed();
    return result;
}

// ---- networks ----------------------------------------------------------------------------------------

double network_objective(const SdpProblem& problem, const TwoLayerNetwork& network, double* loss) {
    check_network(problem, network);
    const RowMatrixD outputs = hidden_outputs(problem, network.first) * network.second;
    const double loss_value = (outputs - problem.targets).squaredNorm() / (2.0 * static_cast<double>(problem.samples()));
    if (loss) *loss = loss_value;
    return loss_value + 0.5 * problem.beta * (network.first.squaredNorm() + network.second.squaredNorm());
}

Eigen::MatrixXd lift_network(const SdpProblem& problem, const TwoLayerNetwork& network) {
    check_network(problem, network);
    const Layout layout(problem);
    const Index n = layout.n;
    const RowMatrixD pre = problem.inputs * network.first.transpose();  // n x m
    Eigen::MatrixXd columns(layout.size(), network.neurons());
    columns.topRows(n) = pre.cwiseMax(0.0);
    columns.middleRows(n, n) = (-pre).cwiseMax(0.0);
    columns.middleRows(2 * n, layout.d) = network.first.transpose();
    columns.bottomRows(layout.c) = network.second.transpose();
    return columns * columns.transpose();
}

RoundingResult round_to_network(const SdpProblem& problem, const SdpResult& result, const RoundingSettings& settings) {
    problem.validate();
    check_lifted_size(problem, result.lifted);
    if (settings.descent_steps < 0)
        throw Error(ErrorKind::bad_input, "SDP rounding: descent steps must be >= 0");
    const Layout layout(problem);
    const Index n = layout.n;
    // The numerically nonzero eigenvectors, signed so their [alpha; beta] part is
    // nonnegative on balance (a feasible rank-one Lambda has it entrywise nonnegative).
    const Index candidates = std::max<Index>(1, std::min<Index>(result.rank, result.factor.cols()));
    RowMatrixD signed_first(candidates, layout.d);
    for (Index k = 0; k < candidates; ++k) {
        Eigen::VectorXd column = k < result.factor.cols() ? Eigen::VectorXd(result.factor.col(k))
                                                          : Eigen::VectorXd::Zero(layout.size());
        const double sign = column.head(2 * n).sum() >= 0.0 ? 1.0 : -1.0;
        signed_first.row(k) = sign * column.segment(2 * n, layout.d).transpose();
    }
    // Rank > 1: eigenvectors mix neurons, and the mirrored filters -u give the other
    // half-spaces' features; the refit keeps what helps.
    RowMatrixD mirrored(2 * candidates, layout.d);
    mirrored << signed_first, -signed_first;

    RoundingResult rounding;
    rounding.candidates = static_cast<int>(candidates);
    TwoLayerNetwork best = refit_from(problem, signed_first);
    double best_value = network_objective(problem, best);
    TwoLayerNetwork both = refit_from(problem, mirrored);
    const double both_value = network_objective(problem, both);
    if (both_value < best_value) {
        best = std::move(both);
        best_value = both_value;
    }
    rounding.refit_objective = best_value;
    best = drop_empty_neurons(best);
    descend(problem, best, settings.descent_steps);
    rebalance(best);
    rounding.network = drop_empty_neurons(best);
    rounding.objective = network_objective(problem, rounding.network, &rounding.loss);
    return rounding;
}

void to_json(nlohmann::json& json, const SdpResult& result) {
    std::vector<double> top;
    for (Index k = 0; k < std::min<Index>(result.eigenvalues.size(), 10); ++k) top.push_back(result.eigenvalues(k));
    json = {{"status", std::string(to_string(result.status))},
            {"iterations", result.iterations},
            {"objective", result.objective},
            {"loss", result.loss},
            {"dual_bound", result.dual_bound},
            {"dual_value", result.dual_value},
            {"dual_violation", result.dual_violation},
            {"trace_bound", result.trace_bound},
            {"rank", result.rank},
            {"top_eigenvalues", top},
            {"primal_residual", result.primal_residual},
            {"dual_residual", result.dual_residual},
            {"linear_residual", result.residuals.linear},
            {"complementarity_residual", result.residuals.complementarity},
            {"nonnegativity_residual", result.residuals.nonnegativity},
            {"penalty", result.penalty},
            {"lifted_size", result.lifted.rows()},
            {"time_s", result.seconds}};
}

}  // namespace cvxcnn
