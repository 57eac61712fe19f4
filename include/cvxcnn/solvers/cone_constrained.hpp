// The exact (cone-constrained) convex program of a two-layer ReLU, leaky-ReLU or
// absolute-value CNN, for small problems: the fifth stage of the pipeline
//   patch matrices -> sign patterns -> feature blocks -> **solver** -> recovered CNN.
//
// With every pattern's cone K_{i,r} = {u : S_{i,k} X_k u >= 0 for k in r}, S = 2D - I, the
// network with weight decay beta is equivalent to (Ergen & Pilanci, ICLR 2021 for CNNs;
// TIT 2025 for leaky and abs; SOLVERS.md 5.1, 5.2, 5.4)
//   minimize  P(V, W) = L(F (V - W)) + beta * sum_{b,c} (||V_{b,c}|| + ||W_{b,c}||)
//   subject to V_{b,c}, W_{b,c} in K_b   for every block b = i*R + r and class c,
// F the feature blocks of convex_features.hpp built for the activation. It is solved here
// by an augmented Lagrangian method (scnn's "AL", SOLVERS.md 5.4): multipliers on the cone
// constraints, inner problems by FISTA with group soft-thresholding solved to increasing
// accuracy (or for at most max_inner_per_outer steps), multiplier step
// lambda <- max(0, lambda - rho * constraint), rho increased when the violation stalls
// after a solved inner problem. It stops when the certified relative gap and the
// violation of the augmented-Lagrangian iterate are both within tolerance. Everything is dense and double: the constraint rows S_{i,k} X_k of
// all blocks are stored, so this is for n*K*P up to about 1e5 rows, not for datasets.
//
// Certificate (SOLVERS.md 5.11, ReLU form). For any Theta and multipliers lambda >= 0,
//   P(V, W) >= -L*(Theta)  when  ||F_b^T Theta_c - G_b^T lambda||   <= beta  (V groups)
//                          and   ||F_b^T Theta_c + G_b^T lambda'|| <= beta  (W groups),
// G_b the cone rows. The best lambda for a = F_b^T Theta_c leaves the residual
// ||P_K(-a)|| (Moreau: the distance from a to the cone spanned by the rows is the norm of
// its projection on the polar cone -K), likewise ||P_K(a)|| for W; both projections come
// from project_onto_polyhedron with their multipliers, so the bound holds whatever the
// projection's accuracy. Theta = s * dL/dZ, s = min(1, beta / max residual).
// The returned weights are projected onto the cones (a projection onto a cone never
// increases the norm), so they are feasible and the gap P - D is a true certificate.
//
// Symbols and names:
//   F  features        n x (B*h), B = P*R blocks of width h
//   V  positive        (B*h) x C, the filters with a positive output weight
//   W  negative        (B*h) x C, the filters with a negative output weight
//   G_b                the cone rows of block b: S_{i,k} X_k for k in r, scaled to unit length
//   rho penalty        augmented-Lagrangian penalty
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <Eigen/Core>
#include <nlohmann/json_fwd.hpp>

#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/patterns/sign_patterns.hpp"
#include "cvxcnn/problem/convex_features.hpp"
#include "cvxcnn/solvers/group_lasso.hpp"
#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

// ---- the projection every cone computation reduces to ------------------------------------

/// Linear inequalities a_j . x >= b_j (j < count(), x in R^dimension()), given implicitly
/// so that a million rows need not be stored: the projection asks for all slacks at once
/// and for single rows. Rows are used scaled to unit length; a zero row constrains nothing.
class LinearInequalities {
public:
    virtual ~LinearInequalities() = default;
    [[nodiscard]] virtual Eigen::Index count() const = 0;
    [[nodiscard]] virtual int dimension() const = 0;
    /// slack(j) = (a_j . x - b_j) / ||a_j||, +infinity for a zero row; slack is resized.
    virtual void slacks(const Eigen::VectorXd& x, Eigen::VectorXd& slack) const = 0;
    /// a_j / ||a_j|| and b_j / ||a_j|| of a nonzero row.
    virtual void unit_row(Eigen::Index j, Eigen::VectorXd& row, double& bound) const = 0;
};

/// Inequalities stored as a dense m x h matrix of rows and m bounds (the views must outlive
/// the object).
class DenseInequalities final : public LinearInequalities {
public:
    DenseInequalities(const RowMatrixD& rows, const Eigen::VectorXd& bounds);
    [[nodiscard]] Eigen::Index count() const override { return rows_.rows(); }
    [[nodiscard]] int dimension() const override { return static_cast<int>(rows_.cols()); }
    void slacks(const Eigen::VectorXd& x, Eigen::VectorXd& slack) const override;
    void unit_row(Eigen::Index j, Eigen::VectorXd& row, double& bound) const override;

private:
    const RowMatrixD& rows_;
    const Eigen::VectorXd& bounds_;
    Eigen::VectorXd inverse_norms_;  // 0 for a zero row
};

enum class ProjectionStatus {
    solved,      ///< every slack >= -tolerance
    infeasible,  ///< the polyhedron is empty (a violated row is a nonnegative combination of active ones, negated)
    step_limit,  ///< max_steps active-set changes without convergence (degenerate data)
};
[[nodiscard]] std::string_view to_string(ProjectionStatus status) noexcept;

struct ProjectionSettings {
    double tolerance = 1e-12;  ///< accepted violation of a unit row, in units of x (absolute)
    int max_steps = 0;         ///< active-set changes; 0 = 50 * dimension + 500
};

/// Rows a projection keeps between calls: the pool of rows it has seen violated (small:
/// the selection of the next row scans the pool, and all rows only when the pool is
/// satisfied) and the slack buffer. Reusing it for nearby targets saves full scans.
struct ProjectionWorkspace {
    std::vector<Eigen::Index> pool;
    RowMatrixD pool_rows;           ///< unit rows of the pool, one per row
    Eigen::VectorXd pool_bounds;
    Eigen::VectorXd slack;          ///< all rows, of the last full scan
};

struct Projection {
    ProjectionStatus status = ProjectionStatus::solved;
    Eigen::VectorXd point;               ///< x = argmin ||x - target|| over the polyhedron
    std::vector<Eigen::Index> active;    ///< the active rows at x
    /// One per active row, >= 0: x = target + sum_j multipliers[j] * unit row active[j]
    /// (the KKT conditions of the projection).
    Eigen::VectorXd multipliers;
    double max_violation = 0.0;          ///< max_j (b_j - a_j . x)_+ / ||a_j|| at the last full scan
    int steps = 0;                       ///< active-set changes
    int scans = 0;                       ///< passes over all rows
};

/// Euclidean projection of `target` onto {x : a_j . x >= b_j for all j} by the dual
/// active-set method of Goldfarb & Idnani (1983) with the identity metric: start at the
/// target, repeatedly add the most violated row, keeping the active rows linearly
/// independent and their multipliers nonnegative (dropping one when it would turn
/// negative). Finite in exact arithmetic; the QR factors of the active rows are recomputed
/// at each change (O(h^3), h the dimension, is small here). The most violated row is
/// looked for in the workspace pool first; all rows are scanned when the pool is satisfied,
/// and the most violated of them join the pool. Throws cvxcnn::Error (bad_input) when the
/// target's size is not the dimension or the tolerance is not positive.
[[nodiscard]] Projection project_onto_polyhedron(const LinearInequalities& constraints, const Eigen::VectorXd& target,
                                                 const ProjectionSettings& settings, ProjectionWorkspace& workspace);

// ---- the exact program -----------------------------------------------------------------------

/// A view of one exact program (nothing is copied; the referenced objects must outlive the
/// calls). `features` must be build_convex_features(patches, patterns, ..., activation)
/// for the activation the network will use (relu, leaky relu or abs; gated means relu).
struct ConeConstrainedProblem {
    const ConvexFeatures& features;
    const PatchMatrices& patches;
    const SignPatterns& patterns;
    std::span<const std::int32_t> labels;  ///< n labels in [0, classes)
    int classes = 0;
    Loss loss = Loss::squared;

    /// Throws cvxcnn::Error (bad_input) for inconsistent sizes or labels out of range.
    void validate() const;
};

struct ConeSolverSettings {
    // ---- objective
    double beta = 0.0;                 ///< regularization weight, > 0
    // ---- termination (checked after every outer step)
    double rel_gap_tol = 1e-6;         ///< stop when (P - D) / P <= this ...
    double feasibility_tol = 1e-6;     ///< ... and the AL iterate's cone violation / its largest group norm <= this
    int max_outer = 60;                ///< augmented-Lagrangian steps, >= 1
    int max_inner = 200000;            ///< FISTA steps over all outer steps, >= 1
    /// FISTA steps of one inner problem, >= 1. Inner problems are ill-conditioned (the
    /// feature blocks of neighbouring patterns are nearly equal) and their last digits
    /// cost the most: a multiplier step after this many does more for the gap. Too small a
    /// cap starves the multipliers (the gap then creeps); rho and the inner tolerance
    /// change only after an inner problem that was solved, not capped.
    int max_inner_per_outer = 10000;
    double time_limit_s = 0.0;         ///< wall clock, 0 = none
    // ---- augmented Lagrangian (SOLVERS.md 5.4)
    /// rho_0 as a multiple of lambda_max(F^T F) / n / max_b lambda_max(G_b^T G_b): the
    /// penalty's curvature and the loss's are then equal in the first inner problem.
    double initial_penalty = 1.0;
    double penalty_growth = 4.0;       ///< rho factor when the violation did not shrink enough, > 1
    double violation_decrease = 0.25;  ///< "enough": by this factor since the last multiplier step, in (0, 1)
    double initial_inner_tol = 1e-2;   ///< first inner KKT tolerance (min-norm subgradient / beta), > 0
    double inner_tol_decrease = 0.2;   ///< its factor per outer step, in (0, 1]
    double min_inner_tol = 1e-10;      ///< its floor, > 0
    int check_every = 10;              ///< inner steps between inner KKT checks, >= 1
    // ---- FISTA (SOLVERS.md 5.3)
    double backtrack = 0.5;            ///< step shrink factor, in (0, 1)
    double growth = 1.25;              ///< step growth when the quadratic model was 5x pessimistic, >= 1

    /// Throws cvxcnn::Error (bad_input) listing every invalid field.
    void validate() const;
};

enum class ConeSolverStatus {
    solved,              ///< relative gap and feasibility within tolerance
    max_outer_reached,
    max_inner_reached,
    time_limit_reached,
    diverged,            ///< non-finite values or a failed line search
};
[[nodiscard]] std::string_view to_string(ConeSolverStatus status) noexcept;

/// One outer step.
struct ConeSolverTraceRow {
    int outer = 0;
    int inner_total = 0;      ///< FISTA steps so far
    double penalty = 0.0;     ///< rho used by this step
    double inner_kkt = 0.0;   ///< KKT residual of the inner problem at its end, / beta
    double violation = 0.0;   ///< relative cone violation of the AL iterate
    double primal = 0.0;      ///< P at the projected (feasible) iterate
    double dual = 0.0;        ///< the certificate's lower bound
    double rel_gap = 0.0;
};

struct ConeSolveInfo {
    ConeSolverStatus status = ConeSolverStatus::max_outer_reached;
    int outer_iterations = 0;
    int inner_iterations = 0;
    double primal = 0.0;         ///< P of the returned (feasible) weights
    double dual = 0.0;           ///< lower bound on the optimum
    double gap = 0.0;            ///< primal - dual
    double rel_gap = 0.0;        ///< gap / primal
    double violation = 0.0;      ///< relative cone violation of the last AL iterate, before projection
    double max_violation = 0.0;  ///< relative cone violation of the returned weights (projection tolerance)
    double kkt_residual = 0.0;   ///< inner KKT residual / beta of the last inner problem
    double penalty = 0.0;        ///< final rho
    int active_groups = 0;       ///< nonzero groups of V and W together
    int groups = 0;              ///< 2 * B * C
    double seconds = 0.0;
    std::vector<ConeSolverTraceRow> trace;
};

/// Solves the exact program from the warm start (positive, negative) ((B*h) x C each, zeros
/// for a cold start; it need not be feasible) and leaves the projected final iterate there.
/// Per inner step: one F (V - W) and one F^T G product per step tried, and two products
/// with every block's cone rows; per outer step 4 * B * C small projections. TBB-parallel
/// over fixed blocks, so the result is bitwise the same for any thread count.
/// Throws cvxcnn::Error (bad_input) for invalid settings, problem or warm start.
ConeSolveInfo solve_cone_constrained(const ConeConstrainedProblem& problem, const ConeSolverSettings& settings,
                                     RowMatrixD& positive, RowMatrixD& negative);

/// What the exact program says about a given point (V, W), e.g. a cone-decomposed gated
/// solution: its objective, its cone violation, and the certificate's lower bound on the
/// optimum from the gradient at the point (valid for any point, tight at the optimum).
struct ConeCertificate {
    double primal = 0.0;         ///< P(V, W) (an upper bound on the optimum when feasible)
    double loss = 0.0;           ///< L(F (V - W))
    double max_violation = 0.0;  ///< max over groups and unit rows of (-a . v)_+, / the largest group norm
    double dual = 0.0;           ///< lower bound on the optimum
    double gap = 0.0;            ///< primal - dual
    double rel_gap = 0.0;
};
/// Throws cvxcnn::Error (bad_input) for an invalid problem, beta or weights.
[[nodiscard]] ConeCertificate cone_certificate(const ConeConstrainedProblem& problem, double beta,
                                               const RowMatrixD& positive, const RowMatrixD& negative);

/// JSON (nlohmann) of a solve, trace included, for the model file and --json.
void to_json(nlohmann::json& json, const ConeSolveInfo& info);

}  // namespace cvxcnn
