// The exact cone-constrained program and its augmented Lagrangian solver (see
// cone_constrained.hpp), and the Goldfarb-Idnani projection onto a polyhedron.
#include "cvxcnn/solvers/cone_constrained.hpp"
#include "cvxcnn/solvers/exact_loss.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Eigenvalues>
#include <nlohmann/json.hpp>
#include <Eigen/QR>
#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/util/error.hpp"
#include "solvers/group_blocks.hpp"

namespace cvxcnn {
namespace {

using detail::count_active_groups;
using detail::group_kkt_residual;
using detail::group_norm_sum;
using detail::group_prox_step;
using detail::largest_group_norm;

using Index = Eigen::Index;
using Clock = std::chrono::steady_clock;
constexpr double infinity = std::numeric_limits<double>::infinity();

std::string format_number(double value) {
    std::ostringstream out;
    out << value;
    return out.str();
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

}  // namespace

// ---- dense inequalities ------------------------------------------------------------------------

DenseInequalities::DenseInequalities(const RowMatrixD& rows, const Eigen::VectorXd& bounds)
    : rows_(rows), bounds_(bounds), inverse_norms_(rows.rows()) {
    if (bounds.size() != rows.rows())
        throw Error(ErrorKind::bad_input, "inequalities: " + std::to_string(bounds.size()) + " bounds for " +
                                              std::to_string(rows.rows()) + " rows");
    for (Index j = 0; j < rows.rows(); ++j) {
        const double norm = rows.row(j).norm();
        inverse_norms_(j) = norm > 0.0 ? 1.0 / norm : 0.0;
    }
}

void DenseInequalities::slacks(const Eigen::VectorXd& x, Eigen::VectorXd& slack) const {
    slack.noalias() = rows_ * x - bounds_;
    for (Index j = 0; j < slack.size(); ++j) slack(j) = inverse_norms_(j) > 0.0 ? slack(j) * inverse_norms_(j) : infinity;
}

void DenseInequalities::unit_row(Index j, Eigen::VectorXd& row, double& bound) const {
    row = rows_.row(j).transpose() * inverse_norms_(j);
    bound = bounds_(j) * inverse_norms_(j);
}

// ---- the projection ------------------------------------------------------------------------------

std::string_view to_string(ProjectionStatus status) noexcept {
    switch (status) {
        case ProjectionStatus::solved: return "solved";
        case ProjectionStatus::infeasible: return "infeasible";
        case ProjectionStatus::step_limit: return "step-limit";
    }
    return "unknown";
}

namespace {

// The active rows of the Goldfarb-Idnani method as columns of N = Q [R; 0], refactored
// after every change (h is at most a few dozen).
class ActiveSet {
public:
    explicit ActiveSet(int h) : h_(h), columns_(h, 0), q_(Eigen::MatrixXd::Identity(h, h)) {}

    [[nodiscard]] int size() const noexcept { return static_cast<int>(columns_.cols()); }

    void add(const Eigen::VectorXd& row) {
        columns_.conservativeResize(Eigen::NoChange, columns_.cols() + 1);
        columns_.col(columns_.cols() - 1) = row;
        factor();
    }
    void drop(int position) {
        const Index q = columns_.cols();
        for (Index c = position; c + 1 < q; ++c) columns_.col(c) = columns_.col(c + 1);
        columns_.conservativeResize(Eigen::NoChange, q - 1);
        factor();
    }
    /// z: the part of `row` orthogonal to the active rows (the primal step direction);
    /// r: the coefficients of its part in their span (the dual step direction).
    void directions(const Eigen::VectorXd& row, Eigen::VectorXd& z, Eigen::VectorXd& r) const {
        const int q = size();
        const Eigen::VectorXd d = q_.transpose() * row;
        z = q_.rightCols(h_ - q) * d.tail(h_ - q);
        r = r_.topLeftCorner(q, q).triangularView<Eigen::Upper>().solve(d.head(q));
    }

private:
    void factor() {
        if (columns_.cols() == 0) {
            q_.setIdentity();
            r_.resize(0, 0);
            return;
        }
        const Eigen::HouseholderQR<Eigen::MatrixXd> qr(columns_);
        q_ = qr.householderQ() * Eigen::MatrixXd::Identity(h_, h_);
        r_ = qr.matrixQR().topRows(columns_.cols()).triangularView<Eigen::Upper>();
    }

    int h_;
    Eigen::MatrixXd columns_;  // h x q
    Eigen::MatrixXd q_;        // h x h
    Eigen::MatrixXd r_;        // q x q
};

// A row whose part outside the active span is shorter than this (rows are unit vectors)
// counts as linearly dependent on them: a full step along it would be unbounded noise.
constexpr double dependence_tol = 1e-10;

}  // namespace

Projection project_onto_polyhedron(const LinearInequalities& constraints, const Eigen::VectorXd& target,
                                   const ProjectionSettings& settings, ProjectionWorkspace& workspace) {
    const int h = constraints.dimension();
    if (target.size() != h)
        throw Error(ErrorKind::bad_input, "projection: the target has " + std::to_string(target.size()) +
                                              " entries, the constraints " + std::to_string(h));
    if (!(settings.tolerance > 0.0) || !std::isfinite(settings.tolerance))
        throw Error(ErrorKind::bad_input, "projection: tolerance " + format_number(settings.tolerance) + " must be positive");
    const double tol = settings.tolerance;
    const int max_steps = settings.max_steps > 0 ? settings.max_steps : 50 * h + 500;
    // The most violated rows of a scan that join the pool: enough to fill an active set
    // and a few spares, so most steps need no full scan.
    const std::size_t pool_batch = static_cast<std::size_t>(2 * h + 8);

    Projection result;
    Eigen::VectorXd x = target;
    ActiveSet active_set(h);
    std::vector<int> active_slots;  // pool slot of each active row, in column order
    Eigen::VectorXd u(0);           // multipliers of the active rows
    std::vector<std::pair<double, Index>> violated;

    const auto is_active = [&](int slot) {
        return std::find(active_slots.begin(), active_slots.end(), slot) != active_slots.end();
    };
    const auto add_to_pool = [&](Index row) {
        const auto slot = static_cast<Index>(workspace.pool.size());
        workspace.pool.push_back(row);
        workspace.pool_rows.conservativeResize(slot + 1, h);
        workspace.pool_bounds.conservativeResize(slot + 1);
        Eigen::VectorXd unit;
        double bound = 0.0;
        constraints.unit_row(row, unit, bound);
        workspace.pool_rows.row(slot) = unit.transpose();
        workspace.pool_bounds(slot) = bound;
    };
    if (workspace.pool_rows.cols() != h) {
        workspace.pool.clear();
        workspace.pool_rows.resize(0, h);
        workspace.pool_bounds.resize(0);
    }

    // The most violated row: from the pool if any pool row is violated, else from a full
    // scan (whose most violated rows join the pool); nullopt when every row is satisfied.
    const auto most_violated = [&]() -> std::optional<int> {
        if (!workspace.pool.empty()) {
            const Eigen::VectorXd slack = workspace.pool_rows * x - workspace.pool_bounds;
            int best = -1;
            for (int slot = 0; slot < static_cast<int>(slack.size()); ++slot)
                if (slack(slot) < -tol && !is_active(slot) && (best < 0 || slack(slot) < slack(best))) best = slot;
            if (best >= 0) return best;
        }
        constraints.slacks(x, workspace.slack);
        ++result.scans;
        violated.clear();
        double worst = 0.0;
        for (Index j = 0; j < workspace.slack.size(); ++j) {
            const double s = workspace.slack(j);
            worst = std::max(worst, -s);
            if (s < -tol) violated.emplace_back(s, j);
        }
        result.max_violation = worst;
        if (violated.empty()) return std::nullopt;
        // Rows already in the pool are satisfied there; seen violated here they differ only by
        // rounding, so they are not added twice.
        std::erase_if(violated, [&](const auto& entry) {
            return std::find(workspace.pool.begin(), workspace.pool.end(), entry.second) != workspace.pool.end();
        });
        if (violated.empty()) return std::nullopt;
        const std::size_t take = std::min(pool_batch, violated.size());
        std::partial_sort(violated.begin(), violated.begin() + static_cast<std::ptrdiff_t>(take), violated.end());
        const auto first_slot = static_cast<int>(workspace.pool.size());
        for (std::size_t e = 0; e < take; ++e) add_to_pool(violated[e].second);
        return first_slot;
    };

    Eigen::VectorXd z, r;
    while (true) {
        const std::optional<int> next = most_violated();
        if (!next) break;
        const int p = *next;
        const Eigen::VectorXd row = workspace.pool_rows.row(p).transpose();
        const double bound = workspace.pool_bounds(p);
        Eigen::VectorXd u_plus(u.size() + 1);
        u_plus << u, 0.0;
        bool added = false;
        while (!added) {
            if (++result.steps > max_steps) {
                result.status = ProjectionStatus::step_limit;
                break;
            }
            const int q = active_set.size();
            active_set.directions(row, z, r);
            // Partial step: the largest dual step keeping the active multipliers >= 0.
            double t1 = infinity;
            int leaving = -1;
            for (int j = 0; j < q; ++j)
                if (r(j) > 0.0 && u_plus(j) / r(j) < t1) {
                    t1 = u_plus(j) / r(j);
                    leaving = j;
                }
            // Full step: the primal step that satisfies row p with equality.
            const double z_norm = z.norm();
            const double t2 = z_norm > dependence_tol ? -(row.dot(x) - bound) / z.squaredNorm() : infinity;
            const double t = std::min(t1, t2);
            if (t == infinity) {
                // Row p is a nonpositive combination of the active rows: their
                // constraints and p's cannot hold together.
                result.status = ProjectionStatus::infeasible;
                break;
            }
            if (t2 < infinity) x += t * z;
            u_plus.head(q) -= t * r;
            u_plus(q) += t;
            if (t2 <= t1) {
                active_set.add(row);
                active_slots.push_back(p);
                u = u_plus.cwiseMax(0.0);
                added = true;
            } else {
                active_set.drop(leaving);
                active_slots.erase(active_slots.begin() + leaving);
                for (int j = leaving; j + 1 < static_cast<int>(u_plus.size()); ++j) u_plus(j) = u_plus(j + 1);
                u_plus.conservativeResize(u_plus.size() - 1);
            }
        }
        if (!added) {
            u = u_plus.head(active_set.size()).cwiseMax(0.0);
            break;
        }
    }

    result.point = std::move(x);
    result.multipliers = u;
    result.active.reserve(active_slots.size());
    for (const int slot : active_slots) result.active.push_back(workspace.pool[static_cast<std::size_t>(slot)]);
    return result;
}

// ---- settings and names ---------------------------------------------------------------------------

std::string_view to_string(ConeSolverStatus status) noexcept {
    switch (status) {
        case ConeSolverStatus::solved: return "solved";
        case ConeSolverStatus::max_outer_reached: return "max-outer-reached";
        case ConeSolverStatus::max_inner_reached: return "max-inner-reached";
        case ConeSolverStatus::time_limit_reached: return "time-limit-reached";
        case ConeSolverStatus::diverged: return "diverged";
    }
    return "unknown";
}

void ConeSolverSettings::validate() const {
    std::vector<std::string> defects;
    const auto positive = [&](double value, const char* name) {
        if (!(value > 0.0) || !std::isfinite(value)) defects.push_back(std::string(name) + " " + format_number(value) + ": must be positive");
    };
    positive(beta, "beta");
    if (!(rel_gap_tol >= 0.0) || !std::isfinite(rel_gap_tol))
        defects.push_back("rel_gap_tol " + format_number(rel_gap_tol) + ": must be a finite number >= 0");
    positive(feasibility_tol, "feasibility_tol");
    if (max_outer < 1) defects.push_back("max_outer " + std::to_string(max_outer) + ": must be at least 1");
    if (max_inner < 1) defects.push_back("max_inner " + std::to_string(max_inner) + ": must be at least 1");
    if (max_inner_per_outer < 1)
        defects.push_back("max_inner_per_outer " + std::to_string(max_inner_per_outer) + ": must be at least 1");
    if (!(time_limit_s >= 0.0) || !std::isfinite(time_limit_s))
        defects.push_back("time_limit_s " + format_number(time_limit_s) + ": must be >= 0 (0 = none)");
    positive(initial_penalty, "initial_penalty");
    if (!(penalty_growth > 1.0) || !std::isfinite(penalty_growth))
        defects.push_back("penalty_growth " + format_number(penalty_growth) + ": must be > 1");
    if (!(violation_decrease > 0.0 && violation_decrease < 1.0))
        defects.push_back("violation_decrease " + format_number(violation_decrease) + ": must be in (0, 1)");
    positive(initial_inner_tol, "initial_inner_tol");
    if (!(inner_tol_decrease > 0.0 && inner_tol_decrease <= 1.0))
        defects.push_back("inner_tol_decrease " + format_number(inner_tol_decrease) + ": must be in (0, 1]");
    positive(min_inner_tol, "min_inner_tol");
    if (check_every < 1) defects.push_back("check_every " + std::to_string(check_every) + ": must be at least 1");
    if (!(backtrack > 0.0 && backtrack < 1.0)) defects.push_back("backtrack " + format_number(backtrack) + ": must be in (0, 1)");
    if (!(growth >= 1.0) || !std::isfinite(growth)) defects.push_back("growth " + format_number(growth) + ": must be >= 1");
    if (defects.empty()) return;
    std::string message = "cone solver settings: " + defects.front();
    for (std::size_t i = 1; i < defects.size(); ++i) message += "; " + defects[i];
    throw Error(ErrorKind::bad_input, message);
}

void ConeConstrainedProblem::validate() const {
    const auto fail = [](const std::string& defect) { throw Error(ErrorKind::bad_input, "cone-constrained program: " + defect); };
    const Index n = patches.samples();
    if (features.matrix.rows() != n)
        fail("the features have " + std::to_string(features.matrix.rows()) + " rows, the patches " + std::to_string(n) + " samples");
    if (features.block_width != patches.patch_size() || features.regions != patches.regions().count())
        fail("the features' blocks (width " + std::to_string(features.block_width) + ", " +
             std::to_string(features.regions) + " regions) do not match the patches (" +
             std::to_string(patches.patch_size()) + ", " + std::to_string(patches.regions().count()) + ")");
    if (features.patterns != static_cast<int>(patterns.count()))
        fail("the features have " + std::to_string(features.patterns) + " patterns, the sign patterns " +
             std::to_string(patterns.count()));
    if (features.matrix.cols() != static_cast<Index>(features.blocks()) * features.block_width)
        fail("the feature matrix has " + std::to_string(features.matrix.cols()) + " columns, its layout says " +
             std::to_string(static_cast<Index>(features.blocks()) * features.block_width));
    if (patterns.rows != static_cast<std::size_t>(n) * static_cast<std::size_t>(patches.positions()))
        fail("the sign patterns cover " + std::to_string(patterns.rows) + " rows, the patch matrix has " +
             std::to_string(static_cast<std::size_t>(n) * patches.positions()));
    if (classes < 1) fail("classes " + std::to_string(classes) + " must be at least 1");
    if (labels.size() != static_cast<std::size_t>(n))
        fail(std::to_string(labels.size()) + " labels for " + std::to_string(n) + " samples");
    for (std::size_t j = 0; j < labels.size(); ++j)
        if (labels[j] < 0 || labels[j] >= classes)
            fail("label " + std::to_string(labels[j]) + " of sample " + std::to_string(j) + " is outside [0, " +
                 std::to_string(classes) + ")");
    if (!features.matrix.allFinite()) fail("the features are not finite");
}

namespace {

// ---- the loss in double: solvers/exact_loss.hpp ----------------------------------------------

double loss_value(Loss loss, const RowMatrixD& z, std::span<const std::int32_t> labels, RowMatrixD* gradient) {
    return exact_loss(loss, z, labels, gradient);
}

double loss_dual(Loss loss, const RowMatrixD& z, std::span<const std::int32_t> labels, double s) {
    return exact_loss_dual(loss, z, labels, s);
}

// ---- the program's data ---------------------------------------------------------------------------------

// Fixed partitions: each task's result depends on its block only, so every product is
// bitwise the same for any thread count.
constexpr Index rows_per_task = 64;
constexpr Index columns_per_task = 128;
// Blocks per task of the per-block work: one block's products are a few hundred flops, less
// than a task's scheduling cost.
constexpr int blocks_per_task = 32;

/// body(e) for e in [0, count), blocks_per_task at a time (each e computed alone, so the
/// grouping does not change any result).
template <typename Body>
void for_each_block(int count, const Body& body) {
    oneapi::tbb::parallel_for(oneapi::tbb::blocked_range<int>(0, count, blocks_per_task),
                              [&](const oneapi::tbb::blocked_range<int>& range) {
                                  for (int e = range.begin(); e != range.end(); ++e) body(e);
                              });
}

/// The exact program in double: features, cone rows of every block, and the operations the
/// solver and the certificate need. Variables x = [V; W], (2 B h) x C: group (e, c) is rows
/// [e h, (e+1) h) of column c; extended block e uses the cone rows of block e mod B.
class ExactProgram {
public:
    explicit ExactProgram(const ConeConstrainedProblem& problem)
        : loss_(problem.loss), labels_(problem.labels), n_(problem.patches.samples()), classes_(problem.classes),
          h_(problem.features.block_width), blocks_(problem.features.blocks()),
          features_(problem.features.matrix.cast<double>()), cone_rows_(static_cast<std::size_t>(blocks_)) {
        const PatchMatrices& patches = problem.patches;
        const SignPatterns& patterns = problem.patterns;
        const int regions = problem.features.regions;
        const RowMatrixF& stacked = patches.stacked();
        oneapi::tbb::parallel_for(0, blocks_, [&](int b) {
            const int pattern = b / regions, region = b % regions;
            const auto& positions = patches.regions().positions[static_cast<std::size_t>(region)];
            RowMatrixD& rows = cone_rows_[static_cast<std::size_t>(b)];
            rows.resize(static_cast<Index>(positions.size()) * n_, h_);
            Index kept = 0;
            for (const int k : positions)
                for (Index j = 0; j < n_; ++j) {
                    const Index row = static_cast<Index>(k) * n_ + j;
                    const Eigen::RowVectorXd x = stacked.row(row).cast<double>();
                    const double norm = x.norm();
                    if (norm == 0.0) continue;  // 0 >= 0: constrains nothing
                    const double sign = patterns.active(static_cast<std::size_t>(pattern), static_cast<std::size_t>(row)) ? 1.0 : -1.0;
                    rows.row(kept++) = (sign / norm) * x;
                }
            rows.conservativeResize(kept, h_);
        });
        zero_bounds_.resize(static_cast<std::size_t>(blocks_));
        for (int b = 0; b < blocks_; ++b)
            zero_bounds_[static_cast<std::size_t>(b)] = Eigen::VectorXd::Zero(cone_rows_[static_cast<std::size_t>(b)].rows());
    }

    [[nodiscard]] Index samples() const noexcept { return n_; }
    [[nodiscard]] int classes() const noexcept { return classes_; }
    [[nodiscard]] int block_width() const noexcept { return h_; }
    [[nodiscard]] int blocks() const noexcept { return blocks_; }
    [[nodiscard]] Index half_rows() const noexcept { return static_cast<Index>(blocks_) * h_; }
    [[nodiscard]] const RowMatrixD& cone_rows(int extended_block) const {
        return cone_rows_[static_cast<std::size_t>(extended_block % blocks_)];
    }
    [[nodiscard]] const Eigen::VectorXd& zero_bounds(int extended_block) const {
        return zero_bounds_[static_cast<std::size_t>(extended_block % blocks_)];
    }

    /// Z = F (V - W).
    void logits(const RowMatrixD& x, RowMatrixD& z) const {
        const RowMatrixD difference = x.topRows(half_rows()) - x.bottomRows(half_rows());
        z.resize(n_, classes_);
        const Index tasks = (n_ + rows_per_task - 1) / rows_per_task;
        oneapi::tbb::parallel_for(Index{0}, tasks, [&](Index task) {
            const Index begin = task * rows_per_task, rows = std::min(n_, begin + rows_per_task) - begin;
            z.middleRows(begin, rows).noalias() = features_.middleRows(begin, rows) * difference;
        });
    }

    /// F^T G ((B h) x C).
    void backward(const RowMatrixD& g, RowMatrixD& out) const {
        const Index columns = half_rows();
        out.resize(columns, classes_);
        const Index tasks = (columns + columns_per_task - 1) / columns_per_task;
        oneapi::tbb::parallel_for(Index{0}, tasks, [&](Index task) {
            const Index begin = task * columns_per_task, width = std::min(columns, begin + columns_per_task) - begin;
            out.middleRows(begin, width).noalias() = features_.middleCols(begin, width).transpose() * g;
        });
    }

    [[nodiscard]] double loss(const RowMatrixD& z, RowMatrixD* gradient) const {
        return loss_value(loss_, z, labels_, gradient);
    }
    [[nodiscard]] double dual(const RowMatrixD& z, double s) const { return loss_dual(loss_, z, labels_, s); }

private:
    Loss loss_;
    std::span<const std::int32_t> labels_;
    Index n_;
    int classes_;
    int h_;
    int blocks_;
    RowMatrixD features_;
    std::vector<RowMatrixD> cone_rows_;
    std::vector<Eigen::VectorXd> zero_bounds_;
};

/// Multipliers of the cone constraints: per extended block e, (rows of block e mod B) x C.
using Multipliers = std::vector<RowMatrixD>;

/// max over groups and unit cone rows of (-a . x_g)_+, divided by the largest group norm
/// (0 when every group is zero).
double relative_violation(const ExactProgram& program, const RowMatrixD& x) {
    const int h = program.block_width();
    const int extended = 2 * program.blocks();
    std::vector<double> worst(static_cast<std::size_t>(extended), 0.0);
    for_each_block(extended, [&](int e) {
        const RowMatrixD values = program.cone_rows(e) * x.middleRows(static_cast<Index>(e) * h, h);
        worst[static_cast<std::size_t>(e)] = values.size() == 0 ? 0.0 : std::max(0.0, -values.minCoeff());
    });
    const double largest = largest_group_norm(x, h);
    const double violation = *std::max_element(worst.begin(), worst.end());
    return largest > 0.0 ? violation / largest : 0.0;
}

/// The images of a point that the smooth part of the augmented Lagrangian depends on:
/// Z = F (V - W) and, per extended block e, T_e = G_e x_e (rows x C).
struct PointImages {
    RowMatrixD z;
    std::vector<RowMatrixD> t;
};

void images_of(const ExactProgram& program, const RowMatrixD& x, PointImages& images) {
    const int h = program.block_width();
    const int extended = 2 * program.blocks();
    program.logits(x, images.z);
    images.t.resize(static_cast<std::size_t>(extended));
    for_each_block(extended, [&](int e) {
        images.t[static_cast<std::size_t>(e)].noalias() = program.cone_rows(e) * x.middleRows(static_cast<Index>(e) * h, h);
    });
}

/// The gradient of the smooth part of the augmented Lagrangian (PHR form)
///   f(x) = L(F (V - W)) + sum_e (1 / (2 rho)) (||(lambda_e - rho G_e x_e)_+||^2 - ||lambda_e||^2)
/// at the point whose images are given.
void smooth_gradient(const ExactProgram& program, const PointImages& images, const Multipliers& lambda, double rho,
                     RowMatrixD& gradient) {
    const int h = program.block_width();
    const int extended = 2 * program.blocks();
    RowMatrixD g, top;
    (void)program.loss(images.z, &g);
    program.backward(g, top);
    gradient.resize(2 * program.half_rows(), program.classes());
    gradient.topRows(program.half_rows()) = top;
    gradient.bottomRows(program.half_rows()) = -top;
    for_each_block(extended, [&](int e) {
        const auto slot = static_cast<std::size_t>(e);
        const RowMatrixD shifted = (lambda[slot] - rho * images.t[slot]).cwiseMax(0.0);
        gradient.middleRows(static_cast<Index>(e) * h, h).noalias() -= program.cone_rows(e).transpose() * shifted;
    });
}

/// f(y + d) - f(y) - <grad f(y), d> from the images of y and of the step d, without the
/// cancellation of subtracting two values of f: near the optimum that difference is below
/// the rounding of f, and a line search testing it stalls. Loss part: (1/2n) ||F d||^2 for
/// the squared loss, the softmax Bregman divergence log(sum_c p_c exp(x_c)), x = zd - <p, zd>,
/// for cross-entropy. Penalty part, per entry with a = lambda/rho - t_y and delta = t_d:
/// (rho/2) [(a - delta)_+^2 - a_+^2 + 2 a_+ delta], written case by case as a sum of
/// nonnegative terms.
double step_divergence(const ExactProgram& program, Loss loss, const PointImages& at_y, const PointImages& step,
                       const Multipliers& lambda, double rho) {
    const double loss_part = exact_loss_divergence(loss, at_y.z, step.z);
    const int extended = 2 * program.blocks();
    std::vector<double> terms(static_cast<std::size_t>(extended), 0.0);
    for_each_block(extended, [&](int e) {
        const auto slot = static_cast<std::size_t>(e);
        const RowMatrixD& multipliers = lambda[slot];
        double sum = 0.0;
        for (Index i = 0; i < multipliers.size(); ++i) {
            const double a = multipliers.data()[i] / rho - at_y.t[slot].data()[i];
            const double delta = step.t[slot].data()[i];
            if (a >= 0.0) sum += delta <= a ? delta * delta : a * (2.0 * delta - a);
            else if (delta <= a) sum += (a - delta) * (a - delta);
        }
        terms[slot] = 0.5 * rho * sum;
    });
    double penalty_part = 0.0;
    for (const double term : terms) penalty_part += term;
    return loss_part + penalty_part;
}

/// A projection this much shorter than its target is 0 up to rounding.
constexpr double vanishing_ratio = 1e-12;

/// Each group of x projected onto its cone (feasible weights with no larger norms).
RowMatrixD project_groups(const ExactProgram& program, const RowMatrixD& x) {
    const int h = program.block_width();
    const int extended = 2 * program.blocks();
    RowMatrixD projected = x;
    oneapi::tbb::parallel_for(0, extended, [&](int e) {
        const DenseInequalities cone(program.cone_rows(e), program.zero_bounds(e));
        ProjectionWorkspace workspace;
        for (Index c = 0; c < x.cols(); ++c) {
            const Eigen::VectorXd group = x.block(static_cast<Index>(e) * h, c, h, 1);
            if ((group.array() == 0.0).all()) continue;
            ProjectionSettings settings;
            settings.tolerance = 1e-13 * group.norm();
            const Projection projection = project_onto_polyhedron(cone, group, settings, workspace);
            // A cone always contains 0, so the projection is feasible; a step limit (never
            // seen) leaves the group at its last point, reported by the violation. A group
            // in the polar cone projects to 0, computed as target + sum u_j a_j: what is
            // left is cancellation noise pointing anywhere, so it is made the exact 0 (the
            // group is then pruned instead of becoming an infeasible, invisible filter).
            const bool vanished = projection.point.norm() <= vanishing_ratio * group.norm();
            projected.block(static_cast<Index>(e) * h, c, h, 1) =
                vanished ? Eigen::VectorXd::Zero(h) : projection.point;
        }
    });
    return projected;
}

/// The certificate of a point: primal P(x) and the Lagrangian lower bound from Theta =
/// s dL/dZ(x) with the best multipliers for it (see cone_constrained.hpp).
struct PointCertificate {
    double primal = 0.0;
    double loss = 0.0;
    double dual = 0.0;
};

PointCertificate certify_point(const ExactProgram& program, const RowMatrixD& x, double beta) {
    const int h = program.block_width();
    const int blocks = program.blocks();
    RowMatrixD z, g, a;
    program.logits(x, z);
    PointCertificate cert;
    cert.loss = program.loss(z, &g);
    cert.primal = cert.loss + beta * group_norm_sum(x, h);
    program.backward(g, a);  // a_{b,c} = F_b^T Theta_c
    // Residual of the dual constraint of every group with its best multipliers:
    // ||P_K(-a)|| for V, ||P_K(a)|| for W, rebuilt from the projection's multipliers.
    std::vector<double> worst(static_cast<std::size_t>(blocks), 0.0);
    oneapi::tbb::parallel_for(0, blocks, [&](int b) {
        const RowMatrixD& rows = program.cone_rows(b);
        const DenseInequalities cone(rows, program.zero_bounds(b));
        ProjectionWorkspace workspace;
        double residual = 0.0;
        for (Index c = 0; c < a.cols(); ++c) {
            const Eigen::VectorXd column = a.block(static_cast<Index>(b) * h, c, h, 1);
            for (const double sign : {-1.0, 1.0}) {
                const Eigen::VectorXd target = sign * column;
                ProjectionSettings settings;
                settings.tolerance = 1e-13 * std::max(target.norm(), std::numeric_limits<double>::min());
                const Projection projection = project_onto_polyhedron(cone, target, settings, workspace);
                Eigen::VectorXd y = target;
                for (std::size_t j = 0; j < projection.active.size(); ++j)
                    y += projection.multipliers(static_cast<Index>(j)) * rows.row(projection.active[j]).transpose();
                residual = std::max(residual, y.norm());
            }
        }
        worst[static_cast<std::size_t>(b)] = residual;
    });
    const double largest = *std::max_element(worst.begin(), worst.end());
    const double s = largest > beta ? beta / largest : 1.0;
    cert.dual = program.dual(z, s);
    return cert;
}

void check_weights(const ExactProgram& program, const RowMatrixD& positive, const RowMatrixD& negative) {
    for (const RowMatrixD* weights : {&positive, &negative}) {
        if (weights->rows() != program.half_rows() || weights->cols() != program.classes())
            throw Error(ErrorKind::bad_input, "cone-constrained program: weights are " + std::to_string(weights->rows()) +
                                                  " x " + std::to_string(weights->cols()) + ", expected " +
                                                  std::to_string(program.half_rows()) + " x " +
                                                  std::to_string(program.classes()) + " (blocks x width, classes)");
        if (!weights->allFinite()) throw Error(ErrorKind::bad_input, "cone-constrained program: the weights are not finite");
    }
}

/// lambda_max(M^T M) by power iteration (an estimate from below, enough for a step size).
double largest_eigenvalue_of_gram(const RowMatrixD& m) {
    if (m.size() == 0) return 0.0;
    Eigen::VectorXd v = Eigen::VectorXd::Ones(m.cols()) / std::sqrt(static_cast<double>(m.cols()));
    double value = 0.0;
    for (int iteration = 0; iteration < 30; ++iteration) {
        const Eigen::VectorXd next = m.transpose() * (m * v);
        value = next.norm();
        if (value == 0.0) return 0.0;
        v = next / value;
    }
    return value;
}

}  // namespace

// ---- the augmented Lagrangian solver ------------------------------------------------------------------

ConeSolveInfo solve_cone_constrained(const ConeConstrainedProblem& problem, const ConeSolverSettings& settings,
                                     RowMatrixD& positive, RowMatrixD& negative) {
    const auto start = Clock::now();
    settings.validate();
    problem.validate();
    const ExactProgram program(problem);
    check_weights(program, positive, negative);
    const int h = program.block_width();
    const int extended = 2 * program.blocks();
    const double beta = settings.beta;

    ConeSolveInfo info;
    info.groups = extended * program.classes();

    RowMatrixD x(2 * program.half_rows(), program.classes());
    x << positive, negative;
    Multipliers lambda(static_cast<std::size_t>(extended));
    for (int e = 0; e < extended; ++e)
        lambda[static_cast<std::size_t>(e)] = RowMatrixD::Zero(program.cone_rows(e).rows(), program.classes());

    // rho_0 makes the penalty's curvature (rho lambda_max(G^T G)) a multiple of the loss's,
    // so neither dominates the first inner problem; the first step size is 1 / their sum.
    const double loss_curvature = [&] {
        RowMatrixD f = problem.features.matrix.cast<double>();
        return largest_eigenvalue_of_gram(f) / static_cast<double>(program.samples()) *
               (problem.loss == Loss::cross_entropy ? 0.5 : 1.0);
    }();
    double cone_curvature = 0.0;
    for (int b = 0; b < program.blocks(); ++b)
        cone_curvature = std::max(cone_curvature, largest_eigenvalue_of_gram(program.cone_rows(b)));
    double rho = settings.initial_penalty * std::max(loss_curvature, std::numeric_limits<double>::min()) /
                 std::max(cone_curvature, 1.0);
    double eta = 1.0 / std::max(loss_curvature + rho * cone_curvature, std::numeric_limits<double>::min());
    double inner_tol = settings.initial_inner_tol;
    double previous_violation = infinity;

    RowMatrixD y, candidate, grad_y, grad_x;
    PointImages images_y, images_step, images_x;
    bool out_of_budget = false;
    for (int outer = 1; outer <= settings.max_outer && !out_of_budget; ++outer) {
        // ---- inner problem: FISTA with restart on the augmented Lagrangian
        y = x;
        double t = 1.0;
        images_of(program, y, images_y);
        smooth_gradient(program, images_y, lambda, rho, grad_y);
        double inner_kkt = infinity;
        bool diverged = false;
        for (int step = 1;; ++step) {
            if (info.inner_iterations >= settings.max_inner) {
                info.status = ConeSolverStatus::max_inner_reached;
                out_of_budget = true;
            } else if (settings.time_limit_s > 0.0 && seconds_since(start) >= settings.time_limit_s) {
                info.status = ConeSolverStatus::time_limit_reached;
                out_of_budget = true;
            }
            if (out_of_budget) break;
            // Backtracking through the prox (SOLVERS.md 5.3 step 2).
            double divergence = 0.0, step_sq = 0.0;
            bool accepted = false;
            for (int attempt = 0; attempt < 60 && !accepted; ++attempt) {
                group_prox_step(y, grad_y, eta, beta, h, candidate);
                const RowMatrixD d = candidate - y;
                step_sq = d.squaredNorm();
                images_of(program, d, images_step);
                divergence = step_divergence(program, problem.loss, images_y, images_step, lambda, rho);
                accepted = std::isfinite(divergence) && divergence <= step_sq / (2.0 * eta);
                if (!accepted) eta *= settings.backtrack;
            }
            if (!accepted) {
                diverged = true;
                break;
            }
            ++info.inner_iterations;
            // Lassplore growth: the quadratic model was 5x too pessimistic (step 5).
            if (step_sq > 5.0 * 2.0 * eta * divergence) eta *= settings.growth;
            // Gradient-mapping restart (O'Donoghue & Candes), else the FISTA momentum.
            if (((candidate - x).array() * (y - candidate).array()).sum() > 0.0) {
                t = 1.0;
                y = candidate;
            } else {
                const double t_next = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * t * t));
                y = candidate + ((t - 1.0) / t_next) * (candidate - x);
                t = t_next;
            }
            x.swap(candidate);
            if (step % settings.check_every == 0) {
                images_of(program, x, images_x);
                smooth_gradient(program, images_x, lambda, rho, grad_x);
                inner_kkt = group_kkt_residual(x, grad_x, beta, h);
                if (inner_kkt <= inner_tol || step >= settings.max_inner_per_outer) break;
            }
            images_of(program, y, images_y);
            smooth_gradient(program, images_y, lambda, rho, grad_y);
        }
        if (diverged || !x.allFinite()) {
            info.status = ConeSolverStatus::diverged;
            break;
        }

        // ---- multiplier step and penalty update (SOLVERS.md 5.4)
        info.violation = relative_violation(program, x);
        for_each_block(extended, [&](int e) {
            RowMatrixD& multipliers = lambda[static_cast<std::size_t>(e)];
            multipliers = (multipliers - rho * (program.cone_rows(e) * x.middleRows(static_cast<Index>(e) * h, h))).cwiseMax(0.0);
        });

        // ---- certificate at the projected iterate
        const RowMatrixD feasible = project_groups(program, x);
        const PointCertificate cert = certify_point(program, feasible, beta);
        info.outer_iterations = outer;
        info.primal = cert.primal;
        info.dual = cert.dual;
        info.gap = cert.primal - cert.dual;
        info.rel_gap = info.gap / std::max(cert.primal, std::numeric_limits<double>::min());
        info.kkt_residual = inner_kkt;
        info.penalty = rho;
        info.trace.push_back({outer, info.inner_iterations, rho, inner_kkt, info.violation, cert.primal, cert.dual, info.rel_gap});
        positive = feasible.topRows(program.half_rows());
        negative = feasible.bottomRows(program.half_rows());
        if (info.gap < -1e-9 * std::max(1.0, std::abs(cert.primal)))
            throw Error(ErrorKind::internal, "internal error (a bug in cvxcnn): cone-constrained program: negative duality gap " + format_number(info.gap) +
                                                 " (primal " + format_number(cert.primal) + ", dual " +
                                                 format_number(cert.dual) + ")");
        if (info.rel_gap <= settings.rel_gap_tol && info.violation <= settings.feasibility_tol) {
            info.status = ConeSolverStatus::solved;
            break;
        }
        if (outer == settings.max_outer) info.status = ConeSolverStatus::max_outer_reached;
        // Only a solved inner problem says something about the penalty: after a capped one
        // the violation may stall because the iterate is not yet a minimizer, and growing rho
        // then would only make the next inner problem worse conditioned.
        if (inner_kkt <= inner_tol) {
            if (info.violation > settings.violation_decrease * previous_violation) rho *= settings.penalty_growth;
            inner_tol = std::max(inner_tol * settings.inner_tol_decrease, settings.min_inner_tol);
        }
        previous_violation = info.violation;
    }

    if (info.outer_iterations == 0) {
        // Stopped before the first certificate: certify the projected warm start.
        const RowMatrixD feasible = project_groups(program, x);
        const PointCertificate cert = certify_point(program, feasible, beta);
        info.primal = cert.primal;
        info.dual = cert.dual;
        info.gap = cert.primal - cert.dual;
        info.rel_gap = info.gap / std::max(cert.primal, std::numeric_limits<double>::min());
        positive = feasible.topRows(program.half_rows());
        negative = feasible.bottomRows(program.half_rows());
    }
    RowMatrixD returned(2 * program.half_rows(), program.classes());
    returned << positive, negative;
    info.max_violation = relative_violation(program, returned);
    info.active_groups = count_active_groups(returned, h);
    info.seconds = seconds_since(start);
    return info;
}

ConeCertificate cone_certificate(const ConeConstrainedProblem& problem, double beta, const RowMatrixD& positive,
                                 const RowMatrixD& negative) {
    problem.validate();
    if (!(beta > 0.0) || !std::isfinite(beta))
        throw Error(ErrorKind::bad_input, "cone-constrained program: beta " + format_number(beta) + " must be positive");
    const ExactProgram program(problem);
    check_weights(program, positive, negative);
    RowMatrixD x(2 * program.half_rows(), program.classes());
    x << positive, negative;
    const PointCertificate cert = certify_point(program, x, beta);
    ConeCertificate result;
    result.primal = cert.primal;
    result.loss = cert.loss;
    result.dual = cert.dual;
    result.gap = cert.primal - cert.dual;
    result.rel_gap = result.gap / std::max(cert.primal, std::numeric_limits<double>::min());
    result.max_violation = relative_violation(program, x);
    return result;
}

void to_json(nlohmann::json& json, const ConeSolveInfo& info) {
    nlohmann::json trace = nlohmann::json::array();
    for (const ConeSolverTraceRow& row : info.trace)
        trace.push_back({{"outer", row.outer},
                         {"inner_total", row.inner_total},
                         {"penalty", row.penalty},
                         {"inner_kkt", row.inner_kkt},
                         {"violation", row.violation},
                         {"primal", row.primal},
                         {"dual", row.dual},
                         {"rel_gap", row.rel_gap}});
    json = {{"status", std::string(to_string(info.status))},
            {"outer_iterations", info.outer_iterations},
            {"inner_iterations", info.inner_iterations},
            {"primal", info.primal},
            {"dual", info.dual},
            {"gap", info.gap},
            {"rel_gap", info.rel_gap},
            {"violation", info.violation},
            {"max_violation", info.max_violation},
            {"kkt_residual", info.kkt_residual},
            {"penalty", info.penalty},
            {"active_groups", info.active_groups},
            {"groups", info.groups},
            {"seconds", info.seconds},
            {"trace", std::move(trace)}};
}

}  // namespace cvxcnn
