// The certified group-lasso solver: the fifth stage of the pipeline
//   patch matrices -> sign patterns -> feature blocks -> **solver** -> recovered CNN.
//
// It solves the convex equivalent of a two-layer gated-ReLU CNN, one-vs-all groups
// (Mishkin et al., ICML 2022; Ergen & Pilanci, ICLR 2021; SOLVERS.md 5.1, 5.2):
//   minimize  P(U) = L(F U) + beta * sum_{b,c} ||U[b*h:(b+1)*h, c]||_2
// with R-FISTA (SOLVERS.md 5.3: backtracking through the prox, gradient-mapping restart,
// Lassplore step growth; in a block-Jacobi metric) and stops on the relative Fenchel duality gap (SOLVERS.md 5.11),
// which is returned with the solution as its certificate of optimality.
//
// Symbols and names:
//   F  features      n x (B*h), B blocks of width h (block b = columns [b*h, (b+1)*h))
//   U  weights       (B*h) x C; group (b, c) = rows of block b in column c
//   Z  logits        n x C, Z = F U
//   G  dL/dZ         n x C; the gradient of the smooth part is F^T G
//   beta             regularization weight (weight decay of the non-convex network)
//   Theta = s G      dual point, s = min(1, beta / max_{b,c} ||(F^T G)_{b,c}||) (squared
//                    loss: also one s per class); the best dual value met so far certifies
//   eta              step size of the proximal-gradient step
//   t                FISTA momentum scalar
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

// ---- the problem ----------------------------------------------------------------------

enum class Loss {
    cross_entropy,  ///< L = (1/n) sum_j [logsumexp(z_j) - z_j[y_j]]
    squared,        ///< L = (1/(2n)) sum_j ||z_j - e_{y_j}||^2 (one-vs-all regression, as scnn)
};
[[nodiscard]] std::string_view to_string(Loss loss) noexcept;  ///< "cross-entropy" | "squared"
/// Inverse of to_string; throws cvxcnn::Error (bad_input) naming --loss otherwise.
[[nodiscard]] Loss parse_loss(std::string_view text);

/// A view of the data of one group-lasso problem (nothing is copied: the referenced
/// features and labels must outlive the calls that use it).
struct GroupLassoProblem {
    const RowMatrixF& features;            ///< F, n x (B*h), finite
    int block_width = 0;                   ///< h >= 1, divides the number of columns
    std::span<const std::int32_t> labels;  ///< n labels in [0, classes)
    int classes = 0;                       ///< C >= 1
    Loss loss = Loss::cross_entropy;

    [[nodiscard]] Eigen::Index samples() const noexcept { return features.rows(); }         ///< n
    [[nodiscard]] Eigen::Index columns() const noexcept { return features.cols(); }         ///< B*h
    [[nodiscard]] Eigen::Index blocks() const noexcept { return features.cols() / block_width; }  ///< B
    /// Throws cvxcnn::Error (bad_input) for inconsistent sizes, labels out of range or a
    /// non-finite feature (one full pass over F, TBB-parallel).
    void validate() const;
};

// ---- settings -------------------------------------------------------------------------

/// What the solver reports at every certificate check (every check_every iterations).
struct SolverProgress {
    int iteration = 0;       ///< FISTA steps done
    double primal = 0.0;     ///< P(U) at the current iterate
    double dual = 0.0;       ///< best dual value of the solve so far
    double gap = 0.0;        ///< primal - dual >= 0
    double rel_gap = 0.0;    ///< gap / primal
    int active_groups = 0;   ///< groups (b, c) with a nonzero weight vector
    double seconds = 0.0;    ///< since the solve started
    const RowMatrixF* weights = nullptr;  ///< the current U, valid during the callback only
    /// F U of those weights (n x C), computed for the certificate anyway: monitors read
    /// training accuracy from it instead of another pass over F. Callback only.
    const RowMatrixD* logits = nullptr;
};

struct SolverSettings {
    // ---- objective
    double beta = 0.0;             ///< regularization weight, > 0 (--beta)
    // ---- termination
    int max_iters = 1000;          ///< FISTA steps, >= 1 (--max-iters)
    double rel_gap_tol = 1e-4;     ///< stop when gap / primal <= this at a check, >= 0 (--tol)
    double time_limit_s = 0.0;     ///< wall-clock seconds, 0 = none (--time-limit)
    int check_every = 10;          ///< iterations between duality-gap checks (each costs one F^T G), >= 1
    // ---- R-FISTA knobs (SOLVERS.md 5.3)
    double initial_step = 1.0;     ///< first eta tried, > 0
    double backtrack = 0.5;        ///< eta shrink factor when the sufficient-decrease test fails, in (0, 1)
    double growth = 1.25;          ///< eta growth when the quadratic model was 5x pessimistic, >= 1 (1 = off)
    bool restart = true;           ///< gradient-mapping restart of the momentum (O'Donoghue & Candes)
    /// Block-Jacobi metric: each block's step scaled by the mean squared norm of its columns
    /// of F (same problem, same optimum; on MNIST features those norms span six orders of
    /// magnitude, and the full-data gap in 540 s fell from 4.2e-3 to 1.1e-3).
    bool precondition = true;
    /// Steps over a working set of blocks (every block with a nonzero weight or a gradient
    /// within 10% of beta, copied out of F when that is at most 70% of the blocks), checks
    /// and certificates over all of F; blocks outside the set whose gradient passes beta
    /// join it. Same optimum, steps at a fraction of a pass over F.
    bool working_set = true;
    /// Memory the working set's copy of F's columns may take (the caller's headroom).
    std::size_t working_set_max_bytes = SIZE_MAX;
    // ---- monitoring
    /// Called at every check (progress display, validation accuracy, Ctrl-C); returning
    /// false stops the solve with status `stopped`. Empty = never stop.
    std::function<bool(const SolverProgress&)> on_check;
    /// Asked before every iteration after the first of this call; returning true ends the
    /// solve at once with status `interrupted` and its full state exported (SolverState),
    /// so that Ctrl-C and periodic checkpoints cost nothing and change nothing. Empty = never.
    std::function<bool()> interrupt;

    /// Throws cvxcnn::Error (bad_input) listing every invalid field by its option name,
    /// e.g. "--beta -1: must be positive".
    void validate() const;
};

// ---- result ---------------------------------------------------------------------------

/// Solver outcomes are statuses, not exceptions (STYLE.md 2.3).
enum class SolverStatus {
    solved,              ///< relative duality gap <= rel_gap_tol
    max_iters_reached,
    time_limit_reached,
    stopped,             ///< on_check returned false
    diverged,            ///< non-finite or exploding objective, or a failed line search; weights = last finite iterate
    interrupted,         ///< settings.interrupt asked to stop between two iterations; resumable from SolverState
};
[[nodiscard]] std::string_view to_string(SolverStatus status) noexcept;  ///< e.g. "max-iters-reached"

/// One certificate check (SolverProgress without the weights).
struct SolverTraceRow {
    int iteration = 0;
    double primal = 0.0;
    double dual = 0.0;
    double gap = 0.0;
    double rel_gap = 0.0;
    int active_groups = 0;
    double seconds = 0.0;
    double step = 0.0;  ///< eta at the check
};

struct SolveInfo {
    SolverStatus status = SolverStatus::max_iters_reached;
    int iterations = 0;       ///< FISTA steps taken
    double primal = 0.0;      ///< P of the returned weights
    double dual = 0.0;        ///< its dual certificate value
    double gap = 0.0;         ///< primal - dual (>= 0)
    double rel_gap = 0.0;     ///< gap / primal
    double beta = 0.0;
    int active_groups = 0;    ///< nonzero groups (b, c) of the returned weights
    int groups = 0;           ///< B * C
    double seconds = 0.0;     ///< wall clock of the whole solve
    int restarts = 0;         ///< momentum restarts
    int backtracks = 0;       ///< rejected steps (each cost one F U product)
    /// Products with the features, F U and F^T G, each 2 n (B*h) C flops: the solver's
    /// work. One F U at a fresh start and one F^T G at a fresh or resumed start; per step
    /// tried one F U and one F^T G in one pass over F, plus a second F^T G in the same pass
    /// when a check follows and the step does not restart (the gradient at the new iterate,
    /// for the check's dual point); per check nothing more, except one F U at the check
    /// that ends the solve and one F^T G where no step computed the gradient (the first
    /// check, the first after a resume). Over a working set: each step's pair of products
    /// counts as the set's share of F's columns, every check makes a full F^T G (the steps
    /// no longer compute it), and a change of the set recomputes the extrapolation point's
    /// gradient over the new set.
    double products = 0.0;
    double step = 0.0;        ///< final eta (a good initial_step for a warm-started neighbour)
    std::vector<SolverTraceRow> trace;  ///< one row per check, the last for the returned weights
};

/// Everything R-FISTA carries from one iteration to the next. A solve started from a state
/// exported by an interrupted solve continues bit for bit as if it had never stopped
/// (the state goes into training checkpoints). Empty (no iterate) = a fresh start.
struct SolverState {
    int next_iteration = 0;      ///< the loop index k the solve resumes at
    RowMatrixD w, v;             ///< current iterate and extrapolation point
    RowMatrixD zw, zv;           ///< their cached logits F w and F v
    double t = 1.0;              ///< momentum scalar
    double eta = 0.0;            ///< step size
    double initial_objective = 0.0;
    double best_dual = 0.0;      ///< best dual value so far (valid once a check ran)
    bool v_is_w = true;
    std::vector<int> working_set;  ///< blocks of the working set, sorted (empty: all of F)
    double seconds = 0.0;        ///< solve time already spent
    SolveInfo info;              ///< counters and trace so far

    [[nodiscard]] bool empty() const noexcept { return w.size() == 0; }
};

/// The duality-gap certificate of a point (SOLVERS.md 5.11).
struct Certificate {
    double primal = 0.0;   ///< P(U)
    double dual = 0.0;     ///< D(Theta) <= optimal value
    double gap = 0.0;      ///< primal - dual, >= 0 up to rounding
    double rel_gap = 0.0;  ///< gap / primal
};

// ---- the functions ---------------------------------------------------------------------

/// Minimizes P(U) starting from `weights` ((B*h) x C: the warm start, zeros for a cold
/// start) and leaves the last iterate there, rounded to float (the iterates themselves are
/// double; SolveInfo certifies exactly the float weights returned).
/// Cost per iteration: one pass over F per step tried (F U and F^T G; SolveInfo::products
/// has the details), over the working set's columns only while it is in use; checks use
/// the cached logits, and over a working set one F^T G over all of F. The
/// products are TBB-parallel over fixed blocks, so the weights are bitwise the same for
/// any thread count. Throws cvxcnn::Error (bad_input) for invalid settings,
/// problem or warm start; (internal) for a negative duality gap beyond rounding.
/// With `state`: a non-empty state is resumed (`weights` is then ignored as a start; its
/// shape must still match), and the final state is always exported there, so an
/// `interrupted` solve can be continued by calling again with it.
SolveInfo solve_group_lasso(const GroupLassoProblem& problem, const SolverSettings& settings, RowMatrixF& weights,
                            SolverState* state = nullptr);

/// max_{b,c} ||(F^T G0)_{b,c}|| with G0 = dL/dZ at U = 0: for beta >= beta_max, U = 0 is
/// optimal (the start of a regularization path).
[[nodiscard]] double beta_max(const GroupLassoProblem& problem);

/// P, the dual value of the scaled gradient (squared loss: the better of one scale and one
/// per class) and their gap at any weights (one F U and one
/// F^T G). The solver's own certificate uses the gradient at its double iterate instead,
/// so at small beta it can be tighter than this one. Throws as solve_group_lasso.
[[nodiscard]] Certificate certificate(const GroupLassoProblem& problem, double beta, const RowMatrixF& weights);

/// The certificate of a point of objective `primal` given any dual-feasible value `dual`
/// (weak duality: dual <= optimum <= primal). Throws cvxcnn::Error (internal, the message
/// says "internal error") when the gap is negative beyond float rounding (1e-6 relative):
/// that is a wrong dual or gradient, a bug, never the data's fault.
[[nodiscard]] Certificate certify_gap(double primal, double dual);

/// Max over groups of the norm of the minimum-norm subgradient of P, divided by beta:
/// ||grad_g + beta u_g/||u_g|| || for u_g != 0, max(0, ||grad_g|| - beta) for u_g = 0.
/// Zero exactly at a minimizer.
[[nodiscard]] double kkt_residual(const GroupLassoProblem& problem, double beta, const RowMatrixF& weights);

/// The smooth part of P at a point, for certificates of other regularizers over the same
/// features and loss (certify/stationary_certificate.hpp: the nuclear-norm program).
struct LossEvaluation {
    double loss = 0.0;               ///< L(F U)
    RowMatrixD logits;               ///< Z = F U, n x C
    RowMatrixF loss_gradient;        ///< G = dL/dZ, n x C
    RowMatrixF feature_gradient;     ///< F^T G, (B*h) x C
};
/// One F U and one F^T G. Throws as certificate().
[[nodiscard]] LossEvaluation evaluate_loss(const GroupLassoProblem& problem, const RowMatrixF& weights);

/// -L*(-Theta) at Theta = scale * G: a lower bound on min_U L(F U) + R(U) for any
/// regularizer R whose dual-norm ball contains F^T Theta (the caller picks `scale` so that
/// it does; scale in [0, 1]). Throws cvxcnn::Error (bad_input) for a G of the wrong shape.
[[nodiscard]] double scaled_loss_dual(const GroupLassoProblem& problem, const RowMatrixF& loss_gradient, double scale);

/// Groups (b, c) of `weights` with a nonzero entry.
[[nodiscard]] int active_groups(const RowMatrixF& weights, int block_width);

// JSON (nlohmann): settings (without on_check) round trip, for the model file and --json.
void to_json(nlohmann::json& json, const SolverSettings& settings);
void from_json(const nlohmann::json& json, SolverSettings& settings);
void to_json(nlohmann::json& json, const SolveInfo& info);
void from_json(const nlohmann::json& json, SolveInfo& info);  ///< inverse of to_json (checkpoints)
/// "solved", "max-iters-reached", ...: inverse of to_string; throws cvxcnn::Error (bad_input).
[[nodiscard]] SolverStatus parse_solver_status(std::string_view text);

}  // namespace cvxcnn
