// The doubly-nonnegative SDP relaxation of the completely positive program (CPP) that is
// equivalent to training an infinite-width two-layer network (Prakhya, Birdal, Yurtsever,
// "Convex Formulations for Training Two-Layer ReLU Neural Networks", ICLR 2025; seed 004,
// SOLVERS.md 5.9). Issue 8, item 3.
//
// Network (no biases): f(X) = sum_j sigma(X u_j) v_j^T, X n x d, u_j in R^d, v_j in R^c,
//   objective  N(U, V) = (1/(2n)) ||f(X) - Y||_F^2 + (beta/2) sum_j (||u_j||^2 + ||v_j||^2).
// sigma(t) = t_+ + s t_- with s = -(inactive slope): relu s = 0, leaky relu (slope a) s = -a,
// abs s = 1. (The lifting covers all three: the output is still linear in the lifted matrix.)
//
// Lifting. Per neuron lambda_j = [alpha_j; beta_j; u_j; v_j] in R^p, p = 2n + d + c, with
// alpha = (X u)_+, beta = (X u)_-. Then Lambda = sum_j lambda_j lambda_j^T satisfies
//   M Lambda = 0, M = [-I, I, X, 0]       (alpha - beta = X u)
//   diag(Lambda_{alpha beta}) = 0         (alpha_i beta_i = 0, complementarity)
//   Lambda PSD, [alpha; beta] block >= 0  (CP cone relaxed to doubly nonnegative)
// and the network objective is the linear-plus-quadratic function of Lambda
//   F(Lambda) = (1/(2n)) ||Lambda_{alpha v} + s Lambda_{beta v} - Y||_F^2 + (beta/2)(tr Lambda_uu + tr Lambda_vv).
// (sum_j alpha_j v_j^T is the (alpha, v) block: the output is read there, not in (alpha, alpha).)
// So every network maps to a feasible Lambda with F(Lambda) = N(U, V): min F <= min N.
//
// Scaling correspondence with the exact group lasso (solvers/cone_constrained.hpp, Loss::squared):
// that program minimizes (1/(2n)) sum_i ||z_i - e_{y_i}||^2 + beta sum ||U_{b,c}||, which is the
// optimum of N over networks whose neurons each feed ONE output (balanced ||u|| = |v|). With
// the same X (the whole-image patch matrix), Y (one-hot) and beta:
//   SDP(c outputs, shared neurons) <= sum_c SDP(column c alone) <= exact group lasso optimum
// (the first: per-column solutions embedded side by side are feasible for the joint SDP with
// the same value; shared neurons are the richer family). For c = 1 the exact program's
// optimum is the infinite-width network optimum, so the relative gap (exact - SDP) / exact
// measures the relaxation alone. Measured (tests/sdp/sdp_tightness_test.cpp, n = 10-12):
// 0 for d = 1 (two data sets; certified by a rounded network meeting the bound) and for
// rank-one solutions (always);
// relu 2.5% (d = 3), 3.2% (d = 2); leaky relu 0.13%; abs 20%.
//
// Solver: two-block ADMM (deterministic) on  min g(Z) + h(Lambda)  s.t.  Lambda = Z, with
//   h = indicator of {Lambda = N G N^T, G PSD}, N an orthonormal basis of null(M)
//       (M Lambda M^T = 0 and Lambda PSD imply Lambda = Pi Lambda Pi, Pi = N N^T; the linear
//       constraint is eliminated, and its projection is an eigen-decomposition of the
//       q x q matrix N^T S N, q = n + d + c, instead of p x p);
//   g = F plus the indicators of the entrywise constraints (nonnegativity, complementarity):
//       separable over entries, so its prox is closed-form.
// Over-relaxation 1.6, residual balancing of rho. Stops when the relative primal residual
// ||Lambda - Z|| / max(||Lambda||, ||Z||) and dual residual rho ||Z - Z_prev|| / ||rho U||
// are both <= tol.
//
// Dual bound (a certified lower bound on the SDP optimum, hence on the network objective).
// ADMM keeps W = rho U in the subdifferential of g at Z, so -g*(W) is finite:
//   -g*(W) = sum_{i,k} (-t_ik Y_ik - n t_ik^2 / 2),  t = 2 W_{alpha v}.
// The PSD side needs N^T W N PSD. With D_e = diag(e I, e I, I, I) (e in (0, 1]) and
// mu_e = lambda_min(N^T W N, N^T D_e N), for any optimal Lambda* = N G N^T,
//   F(Lambda*) >= -g*(W) + <W, Lambda*> >= -g*(W) + min(0, mu_e) <D_e, Lambda*>,
// and <D_e, Lambda*> <= (e ||X||_2^2 + 1) T, T = 2 F_ub / beta: (beta/2)(tr uu + tr vv) <= F_ub
// for any point no worse than F_ub (e.g. Lambda = 0, or a rounded network), and
// tr(alpha alpha) + tr(beta beta) = tr(X Lambda_uu X^T) + 2 tr(Lambda_{alpha beta}), the last trace 0.
// So D = -g*(W) - min_e (-mu_e)_+ (e ||X||^2 + 1) T <= SDP optimum <= min N (e over a few values).
//
// Rounding: candidate first-layer weights from the u-block of the top eigenvectors of Lambda
// (sign chosen so the [alpha; beta] part is nonnegative on balance), the output layer refit by
// ridge least squares, neurons rebalanced (||u|| = ||v||, same outputs, smaller penalty), then
// gradient descent with backtracking on N. Each step does not increase N. If Lambda has rank 1
// and is feasible, the first candidate is the lifted neuron itself, so rounding is exact.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include <Eigen/Core>
#include <nlohmann/json_fwd.hpp>

#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

struct SdpProblem {
    RowMatrixD inputs;   ///< X, n x d
    RowMatrixD targets;  ///< Y, n x c
    double beta = 0.0;   ///< weight decay, > 0
    /// s in sigma(t) = t_+ + s t_-: 0 relu, -a leaky relu (slope a), 1 abs.
    double negative_part_weight = 0.0;

    [[nodiscard]] Eigen::Index samples() const noexcept { return inputs.rows(); }
    [[nodiscard]] Eigen::Index dimension() const noexcept { return inputs.cols(); }
    [[nodiscard]] Eigen::Index outputs() const noexcept { return targets.cols(); }
    /// p = 2n + d + c.
    [[nodiscard]] Eigen::Index lifted_size() const noexcept { return 2 * samples() + dimension() + outputs(); }
    /// Throws cvxcnn::Error (bad_input) for empty or non-finite data, mismatched rows, beta <= 0.
    void validate() const;
};

struct SdpSettings {
    int max_iters = 5000;         ///< ADMM iterations, >= 1 (--max-iters)
    double tol = 1e-5;            ///< relative primal and dual residual, > 0 (--tol)
    double initial_penalty = 0.0; ///< rho_0; 0 = 1 / n (the loss curvature)
    double over_relaxation = 1.6; ///< in (0, 2)
    int check_every = 10;         ///< iterations between residual checks and rho updates, >= 1
    int bound_every = 20;         ///< checks between dual bounds (an extra eigen-decomposition), >= 1
    double rank_rtol = 1e-4;      ///< eigenvalues above rank_rtol * largest count in the rank, in (0, 1)
    double time_limit_s = 0.0;    ///< wall clock, 0 = none
    /// Called at every dual-bound computation with a one-line progress message.
    std::function<void(const std::string&)> on_progress;
    /// Throws cvxcnn::Error (bad_input) naming the option (--max-iters, --tol, --time-limit).
    void validate() const;
};

enum class SdpStatus { converged, max_iters_reached, time_limit_reached };
[[nodiscard]] std::string_view to_string(SdpStatus status) noexcept;

/// Feasibility of a symmetric p x p matrix for the SDP, each relative to its largest diagonal entry.
struct SdpResiduals {
    double linear = 0.0;           ///< ||M Lambda||_F
    double complementarity = 0.0;  ///< max_i |Lambda_{alpha_i beta_i}|
    double nonnegativity = 0.0;    ///< max (-Lambda_{ab})_+ over the [alpha; beta] block
    double psd = 0.0;              ///< (-lambda_min(Lambda))_+
};

struct SdpResult {
    SdpStatus status = SdpStatus::max_iters_reached;
    int iterations = 0;
    Eigen::MatrixXd lifted;       ///< Lambda, p x p: the PSD iterate (exactly in null(M), PSD)
    Eigen::MatrixXd factor;       ///< p x r, Lambda = factor factor^T, columns by decreasing norm
    Eigen::VectorXd eigenvalues;  ///< of Lambda, descending (the r positive ones)
    int rank = 0;                 ///< eigenvalues above rank_rtol * largest
    double objective = 0.0;       ///< F(Lambda)
    double loss = 0.0;            ///< its loss term
    double dual_bound = 0.0;      ///< certified lower bound on the SDP optimum (see the header)
    double dual_value = 0.0;      ///< -g*(W)
    double dual_violation = 0.0;  ///< min_e (-mu_e)_+ (e ||X||^2 + 1): D = dual_value - dual_violation T
    double trace_bound = 0.0;     ///< T = 2 F_ub / beta with F_ub = F(0)
    double primal_residual = 0.0; ///< ||Lambda - Z|| / max(||Lambda||, ||Z||)
    double dual_residual = 0.0;   ///< rho ||Z - Z_prev|| / ||rho U||
    SdpResiduals residuals;       ///< of Lambda
    double penalty = 0.0;         ///< final rho
    double seconds = 0.0;
};

/// F(Lambda) for a symmetric p x p matrix (loss term returned in *loss when given).
/// Throws cvxcnn::Error (bad_input) on a size mismatch.
[[nodiscard]] double sdp_objective(const SdpProblem& problem, const Eigen::MatrixXd& lifted, double* loss = nullptr);
/// The residuals of a symmetric p x p matrix (psd by a full eigen-decomposition).
[[nodiscard]] SdpResiduals sdp_residuals(const SdpProblem& problem, const Eigen::MatrixXd& lifted);

/// Solves the relaxation by ADMM from Lambda = 0. Throws cvxcnn::Error (bad_input) for an
/// invalid problem or settings.
[[nodiscard]] SdpResult solve_sdp_relaxation(const SdpProblem& problem, const SdpSettings& settings = {});

/// The certified bound recomputed with a better upper bound on the optimum (e.g. a rounded
/// network's objective): D = dual_value - dual_violation * 2 min(upper, ||Y||^2/(2n)) / beta.
[[nodiscard]] double sdp_dual_bound(const SdpProblem& problem, const SdpResult& result, double upper_bound);

// ---- networks: lifting and rounding -------------------------------------------------------------

/// m neurons: row j of `first` is u_j (d), row j of `second` is v_j (c).
struct TwoLayerNetwork {
    RowMatrixD first;
    RowMatrixD second;
    [[nodiscard]] Eigen::Index neurons() const noexcept { return first.rows(); }
};

/// N(U, V) (loss term in *loss when given). Throws cvxcnn::Error (bad_input) on size mismatch.
[[nodiscard]] double network_objective(const SdpProblem& problem, const TwoLayerNetwork& network, double* loss = nullptr);
/// sum_j lambda_j lambda_j^T: feasible for the SDP, with F = N (the relaxation property).
[[nodiscard]] Eigen::MatrixXd lift_network(const SdpProblem& problem, const TwoLayerNetwork& network);

struct RoundingSettings {
    int descent_steps = 2000;  ///< gradient steps on N after the refit, >= 0
};

struct RoundingResult {
    TwoLayerNetwork network;
    double objective = 0.0;        ///< N of the returned network
    double loss = 0.0;
    double refit_objective = 0.0;  ///< N after refit and rebalancing, before gradient descent
    int candidates = 0;            ///< eigenvectors read
};

/// Rounds an SDP solution to a network (see the header). Deterministic.
[[nodiscard]] RoundingResult round_to_network(const SdpProblem& problem, const SdpResult& result,
                                              const RoundingSettings& settings = {});

/// JSON of a solve (without the matrices), for the model file and --json.
void to_json(nlohmann::json& json, const SdpResult& result);

}  // namespace cvxcnn
