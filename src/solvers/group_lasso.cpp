#include "cvxcnn/solvers/group_lasso.hpp"

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

#include <nlohmann/json.hpp>
#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/util/error.hpp"
#include "solvers/feature_products.hpp"

namespace cvxcnn {

namespace {

using Index = Eigen::Index;
using RowMatrixFMap = Eigen::Map<const RowMatrixF, 0, Eigen::OuterStride<>>;

// Fixed partitions: every task's result depends only on its block, never on which thread
// runs it or how many there are, so the iterates are bitwise reproducible.
constexpr Index rows_per_task = 256;  // rows of Z and G per task of the row-separable sums
// F^T G: float partial products over this many rows, summed in double. Their rounding
// bounds the relative duality gap reachable at small beta (about 1e-5 at beta_max / 500
// on Gaussian features).
constexpr Index rows_per_partial = 512;
// Rows of F used by both products of a pass while they are still in L1/L2 (16 rows of
// 7,056 float columns are 450 KB).
constexpr Index rows_per_block = 16;
// Row ranges of a pass, each summing its F^T G in its own double accumulator: enough to
// balance the threads, few enough that the accumulators (classes x columns doubles each)
// stay small.
constexpr Index pass_slots = 8;

// The working set (WorkingSet) is used when it leaves out at least this share of the
// blocks: its steps then read that much less of F, and each check pays one full F^T G.
constexpr double working_set_max_share = 0.7;
// Zero blocks join the working set when a group's gradient norm reaches this fraction of
// beta, so that most blocks about to enter the support are in it before they do.
constexpr double working_set_margin = 0.9;
// A working set is rebuilt without a violation when it would shrink below this share.
constexpr double working_set_shrink = 0.8;

// Prox steps tried per iteration before the line search counts as failed (scnn: 50 at 0.8).
constexpr int max_backtracks = 60;
// The divergence guard of scnn: the objective exceeding this multiple of the initial one.
constexpr double divergence_factor = 1e3;

std::string format_number(double value) {
    std::ostringstream out;
    out << value;
    return out.str();
}

Index task_count(Index size, Index per_task) { return (size + per_task - 1) / per_task; }

/// K sums over the rows of an n-row array, each row block summed in double by one task and
/// the blocks added in order: the same bits for any thread count.
template <std::size_t K, typename Kernel>
std::array<double, K> sum_over_rows(Index n, Kernel&& kernel) {
    const Index tasks = task_count(n, rows_per_task);
    std::vector<std::array<double, K>> partial(static_cast<std::size_t>(tasks));
    oneapi::tbb::parallel_for(Index{0}, tasks, [&](Index task) {
        const Index begin = task * rows_per_task;
        partial[static_cast<std::size_t>(task)] = kernel(begin, std::min(n, begin + rows_per_task));
    });
    std::array<double, K> total{};
    for (const auto& p : partial)
        for (std::size_t k = 0; k < K; ++k) total[k] += p[k];
    return total;
}

/// Norms of the groups: entry (b, c) = ||U[b*h:(b+1)*h, c]||, in double.
template <typename Derived>
Eigen::MatrixXd group_norms(const Eigen::MatrixBase<Derived>& weights, int h) {
    const Index blocks = weights.rows() / h;
    Eigen::MatrixXd norms(blocks, weights.cols());
    for (Index b = 0; b < blocks; ++b)
        for (Index c = 0; c < weights.cols(); ++c) {
            double sum = 0.0;
            for (Index i = b * h; i < (b + 1) * h; ++i) {
                const double x = static_cast<double>(weights(i, c));
                sum += x * x;
            }
            norms(b, c) = std::sqrt(sum);
        }
    return norms;
}

/// The loss gradient G = dL/dZ at some logits and its F^T G.
struct GradientAt {
    RowMatrixF g;     ///< n x C
    RowMatrixF grad;  ///< (B*h) x C
};

/// The numerical core of one problem: the two products and the row-separable loss terms.
/// Both products run as passes over F (pass()): the solver's proximal step computes F d
/// and, for the rows just multiplied, the loss gradient at the next extrapolation point and
/// its F^T G, so each iteration reads F from memory once instead of twice.
class Evaluator {
public:
    explicit Evaluator(const GroupLassoProblem& problem)
        : f_(problem.features), labels_(problem.labels), loss_(problem.loss), h_(problem.block_width),
          n_(problem.samples()), columns_(problem.columns()), classes_(problem.classes) {}

    [[nodiscard]] Index samples() const noexcept { return n_; }
    [[nodiscard]] Index columns() const noexcept { return columns_; }
    [[nodiscard]] int classes() const noexcept { return classes_; }
    [[nodiscard]] int block_width() const noexcept { return h_; }

    /// Z = F U (n x C): float products widened to double (logits are kept and combined in double).
    void forward(const RowMatrixF& u, RowMatrixD& z) const {
        z.resize(n_, classes_);
        const RowMatrixF ut = u.transpose();
        (void)pass<0>(&ut, nullptr, nullptr, [&](Index begin, Index end, const float* zf) {
            copy_rows(zf, begin, end, z);
            return std::array<double, 0>{};
        });
    }

    /// grad = F^T G ((B*h) x C).
    void backward(const RowMatrixF& g, RowMatrixF& grad) const {
        (void)pass<0>(nullptr, &g, &grad, [](Index, Index, const float*) { return std::array<double, 0>{}; });
    }

    /// L(Z), and G = dL/dZ when g is given.
    double loss(const RowMatrixD& z, RowMatrixF* g) const {
        if (g) g->resize(n_, classes_);
        const auto total = sum_over_rows<1>(n_, [&](Index begin, Index end) {
            std::vector<double> p(static_cast<std::size_t>(classes_));
            double sum = 0.0;
            for (Index j = begin; j < end; ++j) sum += row_loss(z, j, p, g ? &(*g)(j, 0) : nullptr);
            return std::array<double, 1>{sum};
        });
        return total[0] / static_cast<double>(n_);
    }

    /// The proximal step's pass. With Zd = F d (d = w+ - v): Zp = Zv + Zd and
    /// {L(Zp) - L(Zv) - <dL/dZ(Zv), Zd>, L(Zp)}, the sufficient-decrease quantity
    /// f(w+) - f(v) - <grad f(v), w+ - v> as a Bregman divergence in Z-space (a sum of
    /// nonnegative row terms). Zd is computed from the step itself, so it has the relative
    /// accuracy of the step; L(F w+) - L(F v) from two float products would have rounding
    /// errors of the order of eps |Z|, which near the optimum exceed the quadratic term and
    /// shrink the step to nothing.
    /// In the same pass, assuming the step will be accepted: the logits of the next
    /// extrapolation point Zn = Zp + momentum (Zp - Zw) (Zn = Zp at a restart), Gn = dL/dZ(Zn)
    /// and F^T Gn (at_n), the next iteration's gradient. With `at_p` also Gp = dL/dZ(Zp)
    /// and F^T Gp, the gradient at w+ that the next check's dual point needs: a second
    /// transpose product of rows already in cache, instead of a pass of its own.
    std::pair<double, double> step(const RowMatrixF& d, const RowMatrixD& zv, const RowMatrixD& zw, bool restart,
                                   double momentum, RowMatrixD& zp, RowMatrixD& zn, GradientAt& at_n,
                                   GradientAt* at_p = nullptr) const {
        zp.resize(n_, classes_);
        zn.resize(n_, classes_);
        // Gn and Gp side by side: one transpose product of 2C columns gives both F^T G,
        // each column with the same arithmetic as a product of its own.
        const Index g_cols = at_p ? 2 * classes_ : classes_;
        RowMatrixF both;
        RowMatrixF& g = at_p ? both : at_n.g;
        RowMatrixF grad_both;
        g.resize(n_, g_cols);
        const RowMatrixF dt = d.transpose();
        const auto total = pass<2>(&dt, &g, at_p ? &grad_both : &at_n.grad, [&](Index begin, Index end, const float* zd) {
            std::vector<double> p(static_cast<std::size_t>(classes_));
            double divergence = 0.0, loss = 0.0;
            for (Index j = begin; j < end; ++j) {
                const float* zd_j = zd + (j - begin) * classes_;
                for (int c = 0; c < classes_; ++c) zp(j, c) = zv(j, c) + static_cast<double>(zd_j[c]);
                divergence += row_divergence(zv, j, zd_j, p);
                if (restart)
                    zn.row(j) = zp.row(j);
                else
                    for (int c = 0; c < classes_; ++c) zn(j, c) = zp(j, c) + momentum * (zp(j, c) - zw(j, c));
                loss += row_loss(zp, j, p, at_p ? &g(j, classes_) : nullptr);
                (void)row_loss(zn, j, p, &g(j, 0));
            }
            return std::array<double, 2>{divergence, loss};
        });
        if (at_p) {
            at_n.g = both.leftCols(classes_);
            at_p->g = both.rightCols(classes_);
            at_n.grad = grad_both.leftCols(classes_);
            at_p->grad = grad_both.rightCols(classes_);
        }
        const double inv_n = 1.0 / static_cast<double>(n_);
        return {total[0] * inv_n, total[1] * inv_n};
    }

    /// G = dL/dZ(z) and grad = F^T G: one transpose product, the same bits as step()'s.
    void gradient_at(const RowMatrixD& z, GradientAt& out) const {
        (void)loss(z, &out.g);
        backward(out.g, out.grad);
    }

    /// A certificate's pass: z_out = F u and L(z_out) (returned), and, when g_at is given,
    /// G = dL/dZ(*g_at) and grad = F^T G in the same pass (g_at = &z_out is allowed: each
    /// block's logits are written before its G is computed).
    double checked_point(const RowMatrixF& u, RowMatrixD& z_out, const RowMatrixD* g_at, RowMatrixF& g,
                         RowMatrixF& grad) const {
        z_out.resize(n_, classes_);
        if (g_at) g.resize(n_, classes_);
        const RowMatrixF ut = u.transpose();
        const auto total = pass<1>(&ut, g_at ? &g : nullptr, g_at ? &grad : nullptr,
                                   [&](Index begin, Index end, const float* zf) {
                                       std::vector<double> p(static_cast<std::size_t>(classes_));
                                       copy_rows(zf, begin, end, z_out);
                                       double loss = 0.0;
                                       // At g_at = &z_out one softmax per row gives both.
                                       const bool same = g_at == &z_out;
                                       for (Index j = begin; j < end; ++j) {
                                           loss += row_loss(z_out, j, p, same ? &g(j, 0) : nullptr);
                                           if (g_at && !same) (void)row_loss(*g_at, j, p, &g(j, 0));
                                       }
                                       return std::array<double, 1>{loss};
                                   });
        return total[0] / static_cast<double>(n_);
    }

    double dual(const RowMatrixF& g, double s) const {
        return dual(g, std::vector<double>(static_cast<std::size_t>(classes_), s));
    }

    /// D = -L*(Theta) at Theta = G diag(s) (SOLVERS.md 5.11), in double, G = dL/dZ at some
    /// point; one s for all classes, or (squared loss, scaled_gradient_dual()) one per class.
    ///   cross-entropy: (1/n) sum_j H(q_j), q_j = e_{y_j} + s n G_j  (= s p_j + (1 - s) e_{y_j})
    ///   squared:       -<Theta, Y> - (n/2) ||Theta||^2
    double dual(const RowMatrixF& g, const std::vector<double>& s) const {
        const double n = static_cast<double>(n_);
        const auto total = sum_over_rows<1>(n_, [&](Index begin, Index end) {
            double sum = 0.0;
            for (Index j = begin; j < end; ++j) {
                const int y = labels_[static_cast<std::size_t>(j)];
                for (int c = 0; c < classes_; ++c) {
                    const double theta = s[static_cast<std::size_t>(c)] * static_cast<double>(g(j, c));
                    if (loss_ == Loss::cross_entropy) {
                        // -q log q -> 0 at q = 0 (float rounding of G may leave a hair below it).
                        const double q = (c == y ? 1.0 : 0.0) + n * theta;
                        if (q > 0.0) sum -= q * std::log(q);
                    } else {
                        sum -= (c == y ? theta : 0.0) + 0.5 * n * theta * theta;
                    }
                }
            }
            return std::array<double, 1>{sum};
        });
        return loss_ == Loss::cross_entropy ? total[0] / n : total[0];
    }

private:
    /// One pass over F, rows in a fixed partition: pass_slots ranges of whole chunks of
    /// rows_per_partial rows, each chunk in blocks of rows_per_block rows. For every block:
    /// Zf = F_rows U (float, if ut = U^T is given); then rows(begin, end, Zf) returns K
    /// partial sums and fills the block's rows of *g; then (if grad is given) the block's
    /// F_rows^T G_rows goes into the chunk's float partial. Chunks' partials are summed in
    /// double per slot, slots in order: the same bits for any thread count.
    template <std::size_t K, typename RowKernel>
    std::array<double, K> pass(const RowMatrixF* ut, const RowMatrixF* g, RowMatrixF* grad, RowKernel&& rows) const {
        const Index chunks = task_count(n_, rows_per_partial);
        const Index slots = std::min(pass_slots, chunks);
        std::vector<std::array<double, K>> chunk_sums(static_cast<std::size_t>(chunks));
        std::vector<RowMatrixD> slot_sums(grad ? static_cast<std::size_t>(slots) : 0);
        const Index g_cols = g ? g->cols() : 0;
        oneapi::tbb::parallel_for(Index{0}, slots, [&](Index slot) {
            RowMatrixF partial;
            if (grad) {
                partial.resize(g_cols, columns_);
                slot_sums[static_cast<std::size_t>(slot)].setZero(g_cols, columns_);
            }
            std::vector<float> zf(ut ? static_cast<std::size_t>(rows_per_block * classes_) : 0);
            const Index slot_end = std::min(n_, chunks * (slot + 1) / slots * rows_per_partial);
            for (Index chunk = chunks * slot / slots; chunk < chunks * (slot + 1) / slots; ++chunk) {
                const Index chunk_begin = chunk * rows_per_partial;
                const Index chunk_end = std::min(n_, chunk_begin + rows_per_partial);
                if (grad) partial.setZero();
                std::array<double, K> sums{};
                for (Index begin = chunk_begin; begin < chunk_end; begin += rows_per_block) {
                    const Index end = std::min(chunk_end, begin + rows_per_block);
                    const float* f_rows = f_.data() + begin * columns_;
                    if (ut) detail::product_rows(f_rows, columns_, end - begin, columns_, ut->data(), classes_, zf.data());
                    const std::array<double, K> block = rows(begin, end, ut ? zf.data() : nullptr);
                    for (std::size_t k = 0; k < K; ++k) sums[k] += block[k];
                    if (grad)
                        detail::add_transpose_product(f_rows, columns_, end - begin, columns_,
                                                      g->data() + begin * g_cols, g_cols, partial.data(),
                                                      f_.data() + end * columns_,
                                                      std::min(rows_per_block, slot_end - end));
                }
                chunk_sums[static_cast<std::size_t>(chunk)] = sums;
                if (grad) slot_sums[static_cast<std::size_t>(slot)] += partial.cast<double>();
            }
        });
        if (grad) {
            for (Index slot = 1; slot < slots; ++slot) slot_sums[0] += slot_sums[static_cast<std::size_t>(slot)];
            *grad = slot_sums[0].transpose().cast<float>();
        }
        std::array<double, K> total{};
        for (const auto& sums : chunk_sums)
            for (std::size_t k = 0; k < K; ++k) total[k] += sums[k];
        return total;
    }

    void copy_rows(const float* zf, Index begin, Index end, RowMatrixD& z) const {
        for (Index j = begin; j < end; ++j)
            for (int c = 0; c < classes_; ++c) z(j, c) = static_cast<double>(zf[(j - begin) * classes_ + c]);
    }

    /// Row j's loss term at logits z, and (if g) its gradient row (1/n) dL_j/dz_j into g[0, C).
    double row_loss(const RowMatrixD& z, Index j, std::vector<double>& p, float* g) const {
        const double inv_n = 1.0 / static_cast<double>(n_);
        const int y = labels_[static_cast<std::size_t>(j)];
        if (loss_ == Loss::cross_entropy) {
            const double lse = softmax_row(z, j, p);
            if (g)
                for (int c = 0; c < classes_; ++c)
                    g[c] = static_cast<float>((p[c] - (c == y ? 1.0 : 0.0)) * inv_n);
            return lse - z(j, y);
        }
        double sum = 0.0;
        for (int c = 0; c < classes_; ++c) {
            const double r = z(j, c) - (c == y ? 1.0 : 0.0);
            sum += 0.5 * r * r;
            if (g) g[c] = static_cast<float>(r * inv_n);
        }
        return sum;
    }

    /// Row j's Bregman term of the loss between Zv and Zv + Zd (see step()).
    /// Cross-entropy: log(sum_c p_c exp(x_c)) with x = zd - <p, zd>, p = softmax(zv).
    double row_divergence(const RowMatrixD& zv, Index j, const float* zd, std::vector<double>& p) const {
        if (loss_ == Loss::cross_entropy) {
            (void)softmax_row(zv, j, p);
            double mean = 0.0;
            for (int c = 0; c < classes_; ++c) mean += p[c] * static_cast<double>(zd[c]);
            double excess = 0.0;
            for (int c = 0; c < classes_; ++c) excess += p[c] * std::expm1(static_cast<double>(zd[c]) - mean);
            return std::log1p(excess);
        }
        double sum = 0.0;
        for (int c = 0; c < classes_; ++c) sum += 0.5 * static_cast<double>(zd[c]) * static_cast<double>(zd[c]);
        return sum;
    }

    /// p = softmax(z_j) in double; returns logsumexp(z_j).
    double softmax_row(const RowMatrixD& z, Index j, std::vector<double>& p) const {
        double top = -std::numeric_limits<double>::infinity();
        for (int c = 0; c < classes_; ++c) top = std::max(top, z(j, c));
        double sum = 0.0;
        for (int c = 0; c < classes_; ++c) {
            p[c] = std::exp(z(j, c) - top);
            sum += p[c];
        }
        for (int c = 0; c < classes_; ++c) p[c] /= sum;
        return top + std::log(sum);
    }

    const RowMatrixF& f_;
    std::span<const std::int32_t> labels_;
    Loss loss_;
    int h_;
    Index n_;
    Index columns_;
    int classes_;
};

/// The dual value of Theta = s G, s = min(1, beta / max_g ||grad_g||) with grad = F^T G:
/// the scaling that makes the loss gradient dual feasible. For the squared loss, the better
/// of that and Theta = G diag(s), s_c = min(1, beta / max_b ||grad_{b,c}||): its dual
/// separates over classes and column c of Theta only has to satisfy class c's constraints,
/// so one scale per class is feasible and never worse. (For cross-entropy it is not a dual
/// point: the rows of Theta must sum to zero, and restoring that, e.g. on the label column,
/// adds an F^T term without the cancellation of F^T G, whose scaling lost more than the
/// classes gained: measured on MNIST, 0.016 against 0.024.)
double scaled_gradient_dual(const Evaluator& eval, double beta, Loss loss, const RowMatrixF& g,
                            const RowMatrixF& grad) {
    const Eigen::MatrixXd norms = group_norms(grad, eval.block_width());
    const auto scale = [beta](double top) { return top > beta ? beta / top : 1.0; };
    const double dual = eval.dual(g, scale(norms.maxCoeff()));
    if (loss != Loss::squared) return dual;
    std::vector<double> class_scale(static_cast<std::size_t>(norms.cols()));
    for (Index c = 0; c < norms.cols(); ++c) class_scale[static_cast<std::size_t>(c)] = scale(norms.col(c).maxCoeff());
    return std::max(dual, eval.dual(g, class_scale));
}

/// The blocks a solve works on, with their columns of F copied side by side. Steps on the
/// blocks whose weights are zero and whose gradients are well inside the beta ball leave
/// them at zero: a step restricted to the others is the same step, at the cost of reading
/// only their columns of F. Most of a solve's iterations have a small support (on 10,000
/// MNIST images at beta 7e-4, 42% of the blocks and 12% of the groups), so the steps cost a
/// fraction of a pass over F. The certificate still needs F^T G over every block: each
/// check computes it, and a block outside the set whose gradient exceeds beta (the
/// restricted problem's optimum is not the full one's) enlarges the set.
class WorkingSet {
public:
    explicit WorkingSet(const GroupLassoProblem& full) : full_(full) {}

    [[nodiscard]] bool active() const noexcept { return eval_.has_value(); }
    [[nodiscard]] const std::vector<int>& blocks() const noexcept { return blocks_; }
    /// Share of F's columns in the set: what one of its products costs in full products.
    [[nodiscard]] double share() const noexcept {
        return static_cast<double>(blocks_.size()) / static_cast<double>(full_.blocks());
    }

    /// Copies the blocks' columns of F (sorted, distinct, in range); an empty list (or all
    /// blocks) ends the working set: the solve then runs on F itself.
    void assign(std::vector<int> blocks) {
        eval_.reset();
        problem_.reset();
        blocks_ = std::move(blocks);
        if (blocks_.empty() || static_cast<Index>(blocks_.size()) == full_.blocks()) {
            blocks_.clear();
            features_ = RowMatrixF();
            return;
        }
        const int h = full_.block_width;
        const Index n = full_.samples(), width = static_cast<Index>(blocks_.size()) * h;
        features_.resize(n, width);
        oneapi::tbb::parallel_for(Index{0}, task_count(n, rows_per_task), [&](Index task) {
            for (Index j = task * rows_per_task; j < std::min(n, (task + 1) * rows_per_task); ++j)
                for (std::size_t s = 0; s < blocks_.size(); ++s)
                    features_.row(j).segment(static_cast<Index>(s) * h, h) =
                        full_.features.row(j).segment(static_cast<Index>(blocks_[s]) * h, h);
        });
        problem_.emplace(GroupLassoProblem{features_, h, full_.labels, full_.classes, full_.loss});
        eval_.emplace(*problem_);
    }

    /// Evaluator::gradient_at over the set's columns; out.grad is full size, zero outside
    /// the set.
    void gradient_at(const RowMatrixD& z, GradientAt& out) {
        eval_->gradient_at(z, part_);
        scatter(part_.grad, out.grad);
        // A swap, not a move: part_ keeps a buffer of the same size for the next call, which
        // overwrites every entry of it (n x C, 2 MB on Fashion-MNIST, else allocated anew).
        std::swap(out.g, part_.g);
    }

    /// Evaluator::step (without at_p) over the set's columns for the full step d; at_n.grad
    /// is full size, zero outside the set.
    std::pair<double, double> step(const RowMatrixF& d, const RowMatrixD& zv, const RowMatrixD& zw, bool restart,
                                   double momentum, RowMatrixD& zp, RowMatrixD& zn, GradientAt& at_n) {
        gather(d, d_part_);
        const auto result = eval_->step(d_part_, zv, zw, restart, momentum, zp, zn, part_);
        scatter(part_.grad, at_n.grad);
        std::swap(at_n.g, part_.g);  // as in gradient_at
        return result;
    }

private:
    /// The set's rows of a full (B*h) x C matrix.
    void gather(const RowMatrixF& full, RowMatrixF& part) const {
        const int h = full_.block_width;
        part.resize(static_cast<Index>(blocks_.size()) * h, full.cols());
        for (std::size_t s = 0; s < blocks_.size(); ++s)
            part.middleRows(static_cast<Index>(s) * h, h) = full.middleRows(static_cast<Index>(blocks_[s]) * h, h);
    }

    /// The full matrix of the set's rows `part`, zero elsewhere.
    void scatter(const RowMatrixF& part, RowMatrixF& full) const {
        const int h = full_.block_width;
        full.setZero(full_.columns(), part.cols());
        for (std::size_t s = 0; s < blocks_.size(); ++s)
            full.middleRows(static_cast<Index>(blocks_[s]) * h, h) = part.middleRows(static_cast<Index>(s) * h, h);
    }

    const GroupLassoProblem& full_;
    std::vector<int> blocks_;
    RowMatrixF features_;
    std::optional<GroupLassoProblem> problem_;
    std::optional<Evaluator> eval_;
    RowMatrixF d_part_;  // scratch: a step over the set
    GradientAt part_;    // scratch: a gradient over the set
};

/// Block b has a nonzero weight in w or v: it must be in any working set.
bool block_has_weights(const RowMatrixD& w, const RowMatrixD& v, Index b, int h) {
    return (w.middleRows(b * h, h).array() != 0.0).any() || (v.middleRows(b * h, h).array() != 0.0).any();
}

/// The working set a check chooses from the gradient at w (full F^T G): every block with a
/// nonzero weight in w or v, and every block with a group's gradient norm at least
/// working_set_margin * beta. Empty when that is more than working_set_max_share of the
/// blocks (the set would save too little) or when its copy of F's columns would take more
/// than `max_bytes`. `violated`: a block outside `current` has a gradient norm above beta.
std::vector<int> choose_working_set(const RowMatrixD& w, const RowMatrixD& v, const RowMatrixF& grad, double beta,
                                    int h, const std::vector<int>& current, std::size_t max_bytes, Index samples,
                                    bool& violated) {
    const Eigen::MatrixXd norms = group_norms(grad, h);
    const Index blocks = norms.rows();
    std::vector<int> chosen;
    std::size_t s = 0;
    violated = false;
    for (Index b = 0; b < blocks; ++b) {
        const bool member = s < current.size() && current[s] == b;
        if (member) ++s;
        const double top = norms.row(b).maxCoeff();
        if (!member && top > beta) violated = true;
        if (top >= working_set_margin * beta || block_has_weights(w, v, b, h))
            chosen.push_back(static_cast<int>(b));
    }
    const double bytes = static_cast<double>(chosen.size()) * h * static_cast<double>(samples) * sizeof(float);
    if (static_cast<double>(chosen.size()) > working_set_max_share * static_cast<double>(blocks) ||
        bytes > static_cast<double>(max_bytes))
        chosen.clear();
    return chosen;
}

/// The solver's metric, one weight per block: the mean squared norm of its columns of F,
/// normalized to mean 1 (block-Jacobi). FISTA in the metric M = diag(m_b I_h) is FISTA on
/// the problem rescaled to equal block norms, so each block moves at the pace of its own
/// curvature instead of the largest block's: the blocks of rarely active patterns have
/// norms orders of magnitude below the rest and converged slowest without it.
/// All ones when `precondition` is off.
std::vector<double> block_metric(const RowMatrixF& f, int h, bool precondition) {
    const Index blocks = f.cols() / h;
    std::vector<double> metric(static_cast<std::size_t>(blocks), 1.0);
    if (!precondition) return metric;
    const Index n = f.rows();
    const Index chunks = task_count(n, rows_per_partial);
    // Float sums over a chunk's rows (a weight needs no more), chunks added in double.
    std::vector<Eigen::VectorXf> partial(static_cast<std::size_t>(chunks));
    oneapi::tbb::parallel_for(Index{0}, chunks, [&](Index chunk) {
        const Index begin = chunk * rows_per_partial, end = std::min(n, begin + rows_per_partial);
        Eigen::VectorXf& sum = partial[static_cast<std::size_t>(chunk)];
        sum.setZero(f.cols());
        for (Index j = begin; j < end; ++j) sum.array() += f.row(j).transpose().array().square();
    });
    Eigen::VectorXd column_sq = Eigen::VectorXd::Zero(f.cols());
    for (const Eigen::VectorXf& p : partial) column_sq += p.cast<double>();  // in order: the same bits for any thread count
    double total = 0.0;
    for (Index b = 0; b < blocks; ++b) {
        metric[static_cast<std::size_t>(b)] = column_sq.segment(b * h, h).sum();
        total += metric[static_cast<std::size_t>(b)];
    }
    const double mean = total / static_cast<double>(blocks);
    // A block of zero columns never moves: any positive weight will do for it.
    for (double& m : metric) m = m > 0.0 && mean > 0.0 ? m / mean : 1.0;
    return metric;
}

/// sum over blocks b of m_b <x_b, y_b> (all classes).
double metric_inner(const RowMatrixD& x, const RowMatrixD& y, const std::vector<double>& metric, int h) {
    double sum = 0.0;
    for (Index row = 0; row < x.rows(); ++row)
        sum += metric[static_cast<std::size_t>(row / h)] * x.row(row).dot(y.row(row));
    return sum;
}

/// u = the prox of eta beta R in the metric M at v - eta M^-1 grad: the groups of block b
/// take a gradient step of eta / m_b and are scaled by max(0, 1 - (eta / m_b) beta / ||group||).
void prox_step(const RowMatrixD& v, const RowMatrixF& grad, double eta, double beta, int h,
               const std::vector<double>& metric, RowMatrixD& u) {
    u.resize(v.rows(), v.cols());
    const Index blocks = v.rows() / h;
    std::vector<double> x(static_cast<std::size_t>(h));
    for (Index b = 0; b < blocks; ++b)
        for (Index c = 0; c < v.cols(); ++c) {
            const double step = eta / metric[static_cast<std::size_t>(b)];
            double sum = 0.0;
            for (int i = 0; i < h; ++i) {
                const Index row = b * h + i;
                x[i] = v(row, c) - step * static_cast<double>(grad(row, c));
                sum += x[i] * x[i];
            }
            const double norm = std::sqrt(sum);
            const double scale = norm > step * beta ? 1.0 - step * beta / norm : 0.0;
            for (int i = 0; i < h; ++i) u(b * h + i, c) = scale * x[i];
        }
}

void check_weights(const GroupLassoProblem& problem, const RowMatrixF& weights) {
    if (weights.rows() != problem.columns() || weights.cols() != problem.classes)
        throw Error(ErrorKind::bad_input, "group lasso: weights are " + std::to_string(weights.rows()) + " x " +
                                              std::to_string(weights.cols()) + ", expected " +
                                              std::to_string(problem.columns()) + " x " +
                                              std::to_string(problem.classes) + " (features columns x classes)");
    if (!weights.allFinite()) throw Error(ErrorKind::bad_input, "group lasso: the warm-start weights are not finite");
}

// A working set from a state: sorted distinct blocks of the problem.
bool fits_blocks(const std::vector<int>& blocks, Eigen::Index count) {
    for (std::size_t s = 0; s < blocks.size(); ++s)
        if (blocks[s] < 0 || blocks[s] >= count || (s > 0 && blocks[s] <= blocks[s - 1])) return false;
    return true;
}

// A state from a checkpoint file is data: its sizes must fit this problem before use.
void check_state(const GroupLassoProblem& problem, const SolverState& state) {
    const auto fits = [](const RowMatrixD& m, Eigen::Index rows, Eigen::Index cols) {
        return m.rows() == rows && m.cols() == cols && m.allFinite();
    };
    const Eigen::Index n = problem.samples(), columns = problem.columns(), classes = problem.classes;
    if (!fits(state.w, columns, classes) || !fits(state.v, columns, classes) || !fits(state.zw, n, classes) ||
        !fits(state.zv, n, classes) || state.next_iteration < 0 || !(state.eta > 0.0) || !std::isfinite(state.t) ||
        state.t < 1.0 || !fits_blocks(state.working_set, problem.blocks()))
        throw Error(ErrorKind::bad_input, "group lasso: the solver state to resume does not fit this problem (" +
                                              std::to_string(n) + " samples, " + std::to_string(columns) +
                                              " feature columns, " + std::to_string(classes) + " classes)");
    // Steps over a working set leave the blocks outside it alone: a state whose weights are
    // nonzero there would silently solve with them frozen, not the problem.
    if (!state.working_set.empty()) {
        std::size_t s = 0;
        for (Index b = 0; b < problem.blocks(); ++b) {
            if (s < state.working_set.size() && state.working_set[s] == b) {
                ++s;
                continue;
            }
            if (block_has_weights(state.w, state.v, b, problem.block_width))
                throw Error(ErrorKind::bad_input, "group lasso: the solver state to resume has nonzero weights in block " +
                                                      std::to_string(b) + ", outside its working set");
        }
    }
}

void check_beta(double beta) {
    if (!(beta > 0.0) || !std::isfinite(beta))
        throw Error(ErrorKind::bad_input, "--beta " + format_number(beta) + ": must be positive and finite");
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

// ---- names ----------------------------------------------------------------------------

std::string_view to_string(Loss loss) noexcept {
    switch (loss) {
        case Loss::cross_entropy: return "cross-entropy";
        case Loss::squared: return "squared";
    }
    return "unknown";
}

SolverStatus parse_solver_status(std::string_view text) {
    for (const SolverStatus status : {SolverStatus::solved, SolverStatus::max_iters_reached,
                                      SolverStatus::time_limit_reached, SolverStatus::stopped, SolverStatus::diverged,
                                      SolverStatus::interrupted})
        if (to_string(status) == text) return status;
    throw Error(ErrorKind::bad_input, "unknown solver status \"" + std::string(text) + "\"");
}

Loss parse_loss(std::string_view text) {
    if (text == "cross-entropy") return Loss::cross_entropy;
    if (text == "squared") return Loss::squared;
    throw Error(ErrorKind::bad_input, "--loss " + std::string(text) + ": must be cross-entropy or squared");
}

std::string_view to_string(SolverStatus status) noexcept {
    switch (status) {
        case SolverStatus::solved: return "solved";
        case SolverStatus::max_iters_reached: return "max-iters-reached";
        case SolverStatus::time_limit_reached: return "time-limit-reached";
        case SolverStatus::stopped: return "stopped";
        case SolverStatus::diverged: return "diverged";
        case SolverStatus::interrupted: return "interrupted";
    }
    return "unknown";
}

// ---- validation -----------------------------------------------------------------------

void SolverSettings::validate() const {
    std::vector<std::string> defects;
    if (!(beta > 0.0) || !std::isfinite(beta)) defects.push_back("--beta " + format_number(beta) + ": must be positive");
    if (max_iters < 1) defects.push_back("--max-iters " + std::to_string(max_iters) + ": must be at least 1");
    if (!(rel_gap_tol >= 0.0) || !std::isfinite(rel_gap_tol))
        defects.push_back("--tol " + format_number(rel_gap_tol) + ": must be a finite number >= 0");
    if (!(time_limit_s >= 0.0) || !std::isfinite(time_limit_s))
        defects.push_back("--time-limit " + format_number(time_limit_s) + ": must be >= 0 seconds (0 = none)");
    if (check_every < 1) defects.push_back("--check-every " + std::to_string(check_every) + ": must be at least 1");
    if (!(initial_step > 0.0) || !std::isfinite(initial_step))
        defects.push_back("--initial-step " + format_number(initial_step) + ": must be positive");
    if (!(backtrack > 0.0 && backtrack < 1.0))
        defects.push_back("--backtrack " + format_number(backtrack) + ": must be in (0, 1)");
    if (!(growth >= 1.0) || !std::isfinite(growth))
        defects.push_back("--growth " + format_number(growth) + ": must be >= 1");
    if (defects.empty()) return;
    std::string message = defects.front();
    for (std::size_t i = 1; i < defects.size(); ++i) message += "; " + defects[i];
    throw Error(ErrorKind::bad_input, message);
}

void GroupLassoProblem::validate() const {
    const auto fail = [](const std::string& defect) { throw Error(ErrorKind::bad_input, "group lasso: " + defect); };
    if (features.rows() < 1 || features.cols() < 1)
        fail("the feature matrix is empty (" + std::to_string(features.rows()) + " x " +
             std::to_string(features.cols()) + ")");
    if (block_width < 1) fail("block width " + std::to_string(block_width) + " must be at least 1");
    if (features.cols() % block_width != 0)
        fail(std::to_string(features.cols()) + " feature columns are not a multiple of the block width " +
             std::to_string(block_width));
    if (classes < 1) fail("classes " + std::to_string(classes) + " must be at least 1");
    if (labels.size() != static_cast<std::size_t>(features.rows()))
        fail(std::to_string(labels.size()) + " labels for " + std::to_string(features.rows()) + " feature rows");
    for (std::size_t j = 0; j < labels.size(); ++j)
        if (labels[j] < 0 || labels[j] >= classes)
            fail("label " + std::to_string(labels[j]) + " of sample " + std::to_string(j) + " is outside [0, " +
                 std::to_string(classes) + ")");
    const Index n = features.rows();
    const Index tasks = task_count(n, rows_per_task);
    std::vector<char> finite(static_cast<std::size_t>(tasks), 1);
    oneapi::tbb::parallel_for(Index{0}, tasks, [&](Index task) {
        const Index begin = task * rows_per_task;
        finite[static_cast<std::size_t>(task)] =
            features.middleRows(begin, std::min(n, begin + rows_per_task) - begin).allFinite() ? 1 : 0;
    });
    for (Index task = 0; task < tasks; ++task)
        if (!finite[static_cast<std::size_t>(task)]) {
            const Index begin = task * rows_per_task;
            for (Index j = begin; j < std::min(n, begin + rows_per_task); ++j)
                if (!features.row(j).allFinite()) fail("feature row " + std::to_string(j) + " is not finite");
        }
}

// ---- evaluation -----------------------------------------------------------------------

int active_groups(const RowMatrixF& weights, int block_width) {
    if (block_width < 1 || weights.rows() % block_width != 0)
        throw Error(ErrorKind::bad_input, "group lasso: " + std::to_string(weights.rows()) +
                                              " weight rows are not a multiple of the block width " +
                                              std::to_string(block_width));
    int count = 0;
    for (Index b = 0; b < weights.rows() / block_width; ++b)
        for (Index c = 0; c < weights.cols(); ++c)
            if ((weights.block(b * block_width, c, block_width, 1).array() != 0.0f).any()) ++count;
    return count;
}

namespace {

// Logits, loss and gradient at one point: what every public query needs.
struct PointEvaluation {
    RowMatrixD z;
    RowMatrixF g;     ///< dL/dZ
    RowMatrixF grad;  ///< F^T G
    double loss = 0.0;
};

PointEvaluation evaluate_at(const Evaluator& eval, const RowMatrixF& weights) {
    // The certificate's own pass, so that the primal value is the solver's to the last bit.
    PointEvaluation point;
    point.loss = eval.checked_point(weights, point.z, &point.z, point.g, point.grad);
    return point;
}

}  // namespace

double beta_max(const GroupLassoProblem& problem) {
    problem.validate();
    const Evaluator eval(problem);
    const PointEvaluation zero = evaluate_at(eval, RowMatrixF::Zero(problem.columns(), problem.classes));
    return group_norms(zero.grad, problem.block_width).maxCoeff();
}

Certificate certify_gap(double primal, double dual) {
    // P and D come from float products (F U, and F^T G in float partials summed in
    // double): each carries relative rounding of a few float epsilons (~1e-7), so a gap
    // below -1e-6 relative (about 8 float epsilons) is not rounding but a wrong dual or
    // gradient.
    constexpr double negative_gap_tolerance = 1e-6;
    Certificate cert;
    cert.primal = primal;
    cert.dual = dual;
    cert.gap = cert.primal - cert.dual;
    cert.rel_gap = cert.gap / std::max(cert.primal, std::numeric_limits<double>::min());
    if (std::isfinite(cert.gap) && cert.gap < -negative_gap_tolerance * std::max(1.0, std::abs(cert.primal)))
        throw Error(ErrorKind::internal, "internal error (a bug in cvxcnn): group lasso: negative duality gap " +
                                             format_number(cert.gap) + " (primal " + format_number(cert.primal) +
                                             ", dual " + format_number(cert.dual) + "), beyond float rounding");
    return cert;
}

Certificate certificate(const GroupLassoProblem& problem, double beta, const RowMatrixF& weights) {
    problem.validate();
    check_beta(beta);
    check_weights(problem, weights);
    const Evaluator eval(problem);
    const PointEvaluation point = evaluate_at(eval, weights);
    return certify_gap(point.loss + beta * group_norms(weights, problem.block_width).sum(),
                   scaled_gradient_dual(eval, beta, problem.loss, point.g, point.grad));
}

LossEvaluation evaluate_loss(const GroupLassoProblem& problem, const RowMatrixF& weights) {
    problem.validate();
    check_weights(problem, weights);
    const Evaluator eval(problem);
    PointEvaluation point = evaluate_at(eval, weights);
    LossEvaluation out;
    out.loss = point.loss;
    out.logits = std::move(point.z);
    out.loss_gradient = std::move(point.g);
    out.feature_gradient = std::move(point.grad);
    return out;
}

double scaled_loss_dual(const GroupLassoProblem& problem, const RowMatrixF& loss_gradient, double scale) {
    problem.validate();
    if (loss_gradient.rows() != problem.samples() || loss_gradient.cols() != problem.classes)
        throw Error(ErrorKind::bad_input, "scaled_loss_dual: the loss gradient is not n x classes");
    if (!(scale >= 0.0 && scale <= 1.0))
        throw Error(ErrorKind::bad_input, "scaled_loss_dual: scale " + format_number(scale) + " is outside [0, 1]");
    return Evaluator(problem).dual(loss_gradient, scale);
}

double kkt_residual(const GroupLassoProblem& problem, double beta, const RowMatrixF& weights) {
    problem.validate();
    check_beta(beta);
    check_weights(problem, weights);
    const Evaluator eval(problem);
    const RowMatrixF grad = evaluate_at(eval, weights).grad;
    const int h = problem.block_width;
    double worst = 0.0;
    for (Index b = 0; b < problem.blocks(); ++b)
        for (Index c = 0; c < problem.classes; ++c) {
            double u_sq = 0.0, g_sq = 0.0;
            for (Index i = b * h; i < (b + 1) * h; ++i) {
                u_sq += static_cast<double>(weights(i, c)) * weights(i, c);
                g_sq += static_cast<double>(grad(i, c)) * grad(i, c);
            }
            double residual;
            if (u_sq > 0.0) {
                const double u_norm = std::sqrt(u_sq);
                double sum = 0.0;
                for (Index i = b * h; i < (b + 1) * h; ++i) {
                    const double r = static_cast<double>(grad(i, c)) + beta * weights(i, c) / u_norm;
                    sum += r * r;
                }
                residual = std::sqrt(sum);
            } else {
                residual = std::max(0.0, std::sqrt(g_sq) - beta);
            }
            worst = std::max(worst, residual);
        }
    return worst / beta;
}

// ---- R-FISTA ----------------------------------------------------------------------------

SolveInfo solve_group_lasso(const GroupLassoProblem& problem, const SolverSettings& settings, RowMatrixF& weights,
                            SolverState* state) {
    settings.validate();
    problem.validate();
    check_weights(problem, weights);
    const bool resuming = state != nullptr && !state->empty();
    if (resuming) check_state(problem, *state);
    // A resumed solve's clock continues where the interrupted one stopped.
    const auto start = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(resuming ? state->seconds : 0.0));
    const Evaluator eval(problem);
    const double beta = settings.beta;
    const int h = problem.block_width;

    SolveInfo info = resuming ? state->info : SolveInfo{};
    info.beta = beta;
    info.groups = static_cast<int>(problem.blocks() * problem.classes);

    // The iterates w (current), v (extrapolation point) and wp (candidate) are kept in
    // double: a float iterate cannot take steps below its rounding unit, and near the
    // optimum at small beta this leaves the gradient, and so the duality gap, stuck
    // orders of magnitude above the tolerance. Only the step d = wp - v is rounded to
    // float for the product with F, which keeps its relative accuracy.
    // Logits are cached in double so that every iteration needs one F U product per step
    // tried: Z(wp) = Z(v) + F d, and Z at the next extrapolation point is the momentum
    // combination of the Z at the last two iterates (a recursion with roots 1 and the
    // momentum, so its rounding errors do not grow).
    // A check takes the primal and the dual point from the cached Z(w) (any dual point gives
    // a valid bound), and the gradient at w from the pass of the step before it, which
    // computes it as a second transpose product of the rows in cache: checks cost no pass
    // of their own. Only the check that ends the solve certifies the float(w) returned with
    // a fresh product.
    RowMatrixD w, v, wp;
    RowMatrixF d;
    GradientAt at_v, at_n, at_w, at_p;  // at the extrapolation point, the next one, w, w+
    bool have_at_w = false;  // at_w is the gradient at the current w
    RowMatrixD zw, zv, zp, zn, z_out;
    double t = 1.0;
    double eta = settings.initial_step;
    double initial_objective = 0.0;
    bool v_is_w = true;  // at the start and after a restart: the check's gradient at w is the step's at v
    // at_v (dL/dZ(zv) and its F^T G) is current: computed by the last step's pass for the
    // point it was to extrapolate to. Not part of SolverState: a resumed solve recomputes
    // it with the same arithmetic.
    bool have_at_v = false;
    // While the working set is active, at_v.grad is F^T G over the set's blocks only (zero
    // elsewhere, so the prox leaves the blocks outside at zero, as are w and v there); a
    // change of the set recomputes it.
    WorkingSet working_set(problem);
    const std::vector<double> metric = block_metric(problem.features, h, settings.precondition);
    double best_dual = -std::numeric_limits<double>::infinity();
    int first_k = 0;
    if (resuming) {
        w = std::move(state->w);
        v = std::move(state->v);
        zw = std::move(state->zw);
        zv = std::move(state->zv);
        t = state->t;
        eta = state->eta;
        initial_objective = state->initial_objective;
        v_is_w = state->v_is_w;
        best_dual = state->best_dual;
        first_k = state->next_iteration;
        // (Without settings.working_set the state's set is dropped: the plain solve is
        // valid from any state, since the blocks outside the set are at zero.)
        if (settings.working_set) working_set.assign(std::move(state->working_set));
    } else {
        w = weights.cast<double>();
        v = w;
        eval.forward(weights, zw);
        ++info.products;
        zv = zw;
    }

    // Certifies float(w), left in `weights`, and appends the trace row. `fresh`: the primal
    // from a fresh product F float(w) (its logits then in z_out), else from the cached
    // Z(w). Costs that product if fresh, and the gradient at w unless a step's pass has it
    // (the last step's, or at v = w the gradient of the step to come).
    const RowMatrixD* check_logits = nullptr;
    const auto check_point = [&](int iteration, bool fresh) {
        weights = w.cast<float>();
        if (!have_at_w && v_is_w && have_at_v && !working_set.active()) {
            at_w = at_v;
            have_at_w = true;
        }
        double loss;
        if (fresh) {
            loss = eval.checked_point(weights, z_out, have_at_w ? nullptr : &zw, at_w.g, at_w.grad);
            info.products += have_at_w ? 1 : 2;
            check_logits = &z_out;
        } else {
            loss = eval.loss(zw, nullptr);
            if (!have_at_w) {
                eval.gradient_at(zw, at_w);
                ++info.products;
            }
            check_logits = &zw;
        }
        have_at_w = true;
        const double primal = loss + beta * group_norms(weights, h).sum();
        // The scaled gradient's dual value oscillates with FISTA's momentum; every one is a
        // valid lower bound, so the best so far certifies.
        best_dual = std::max(best_dual, scaled_gradient_dual(eval, beta, problem.loss, at_w.g, at_w.grad));
        const Certificate cert = certify_gap(primal, best_dual);
        info.trace.push_back({iteration, cert.primal, cert.dual, cert.gap, cert.rel_gap, active_groups(weights, h),
                              seconds_since(start), eta});
        return cert;
    };

    int k = first_k;
    for (;; ++k) {
        if (k > first_k && settings.interrupt && settings.interrupt()) {
            info.status = SolverStatus::interrupted;
            weights = w.cast<float>();
            break;
        }
        const bool time_up = settings.time_limit_s > 0.0 && seconds_since(start) >= settings.time_limit_s;
        const bool last = k >= settings.max_iters || time_up;
        const bool check = k % settings.check_every == 0 || last;
        if (check) {
            Certificate cert = check_point(k, last);
            if (k == 0) initial_objective = cert.primal;
            const SolverTraceRow& row = info.trace.back();
            const SolverProgress progress{k,           cert.primal,       cert.dual,   cert.gap, cert.rel_gap,
                                          row.active_groups, row.seconds, &weights, check_logits};
            const bool keep_going = !settings.on_check || settings.on_check(progress);
            bool converged = cert.rel_gap <= settings.rel_gap_tol;
            if (!last && (converged || !keep_going)) {
                // The solve ends here: the weights returned get their own product. (The cached
                // logits differ from it by rounding only; if that undoes convergence, go on.)
                info.trace.pop_back();
                cert = check_point(k, true);
                converged = cert.rel_gap <= settings.rel_gap_tol;
            }
            if (converged) info.status = SolverStatus::solved;
            else if (!keep_going) info.status = SolverStatus::stopped;
            else if (k >= settings.max_iters) info.status = SolverStatus::max_iters_reached;
            else if (time_up) info.status = SolverStatus::time_limit_reached;
            if (converged || !keep_going || last) break;
            // Every check reconsiders the set. (Rebuilding only at every third check, to save
            // copies of F, took 505 s instead of 434-443 s to solve the default MNIST run.)
            if (settings.working_set) {
                // at_w.grad is F^T G at w over every block: check_point computed it, or a
                // step over all of F did.
                bool violated = false;
                std::vector<int> chosen = choose_working_set(w, v, at_w.grad, beta, h, working_set.blocks(),
                                                             settings.working_set_max_bytes, problem.samples(), violated);
                const bool rebuild =
                    working_set.active()
                        ? violated || chosen.empty() ||
                              static_cast<double>(chosen.size()) <
                                  working_set_shrink * static_cast<double>(working_set.blocks().size())
                        : !chosen.empty();
                if (rebuild) {
                    working_set.assign(std::move(chosen));
                    // The extrapolation point's gradient, over the new set: computed as a
                    // resumed solve computes it, so that resuming changes no bit.
                    have_at_v = false;
                }
            }
            // (Over a working set the step's gradient is over the set only: a resumed solve
            // must compute the same one, so the full one is not reused.)
            if (v_is_w && !have_at_v && !working_set.active()) {
                std::swap(at_v, at_w);
                have_at_v = true;
                have_at_w = false;
            }
        }

        // Gradient at the extrapolation point when no pass has computed it (a fresh start, a
        // resumed solve).
        if (!have_at_v) {
            if (working_set.active()) {
                working_set.gradient_at(zv, at_v);
                info.products += working_set.share();
            } else {
                eval.gradient_at(zv, at_v);
                ++info.products;
            }
            have_at_v = true;
        }

        // Backtracking through the prox (SOLVERS.md 5.3 step 2), tested in Z-space. Each step
        // tried is one pass over F, which also computes the gradient of the next iteration
        // in case the step is accepted (momentum with the gradient-mapping restart, steps 3
        // and 4, decided by the candidate before the pass).
        double divergence = 0.0, loss_p = 0.0, step_sq = 0.0;
        bool accepted = false, restart = false, with_at_p = false;
        // The gradient at w+ for the next check (after a restart it is the one at v = w+).
        const bool check_next = (k + 1) % settings.check_every == 0 || k + 1 >= settings.max_iters;
        const double t_next = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * t * t));
        const double momentum = (t - 1.0) / t_next;
        for (int attempt = 0; attempt < max_backtracks && !accepted; ++attempt) {
            prox_step(v, at_v.grad, eta, beta, h, metric, wp);
            restart = settings.restart && metric_inner(wp - w, v - wp, metric, h) > 0.0;
            d = (wp - v).cast<float>();
            if (working_set.active()) {
                // The check computes its own full gradient: no second product here.
                with_at_p = false;
                std::tie(divergence, loss_p) = working_set.step(d, zv, zw, restart, momentum, zp, zn, at_n);
                info.products += 2.0 * working_set.share();
            } else {
                with_at_p = check_next && !restart;
                std::tie(divergence, loss_p) =
                    eval.step(d, zv, zw, restart, momentum, zp, zn, at_n, with_at_p ? &at_p : nullptr);
                info.products += with_at_p ? 3 : 2;
            }
            step_sq = metric_inner(wp - v, wp - v, metric, h);
            accepted = std::isfinite(divergence) && std::isfinite(loss_p) && divergence <= step_sq / (2.0 * eta);
            if (!accepted) {
                eta *= settings.backtrack;
                ++info.backtracks;
            }
        }
        // A failed line search (only non-finite values can make every step fail) and an
        // exploding objective end the solve; w is still the last finite iterate.
        const double objective_p = loss_p + beta * group_norms(wp, h).sum();
        if (!accepted || !std::isfinite(objective_p) || objective_p > divergence_factor * initial_objective) {
            info.status = SolverStatus::diverged;
            break;
        }
        ++info.iterations;

        // Lassplore growth: the quadratic model was 5x too pessimistic (step 5).
        if (step_sq > 5.0 * 2.0 * eta * divergence) eta *= settings.growth;

        if (restart) {
            t = 1.0;
            v = wp;
            v_is_w = true;
            ++info.restarts;
        } else {
            v = wp + momentum * (wp - w);
            t = t_next;
            v_is_w = false;
        }
        std::swap(zv, zn);
        std::swap(at_v, at_n);
        std::swap(w, wp);
        std::swap(zw, zp);
        if (with_at_p) std::swap(at_w, at_p);
        have_at_w = with_at_p;
    }

    if (info.status == SolverStatus::diverged) (void)check_point(info.iterations, true);
    // An interrupted solve reports its last check (its weights are the uncertified iterate).
    if (!info.trace.empty()) {
        const SolverTraceRow& final_row = info.trace.back();
        info.primal = final_row.primal;
        info.dual = final_row.dual;
        info.gap = final_row.gap;
        info.rel_gap = final_row.rel_gap;
        info.active_groups = final_row.active_groups;
    }
    info.step = eta;
    info.seconds = seconds_since(start);
    if (state != nullptr) {
        state->next_iteration = k;
        state->w = std::move(w);
        state->v = std::move(v);
        state->zw = std::move(zw);
        state->zv = std::move(zv);
        state->t = t;
        state->eta = eta;
        state->initial_objective = initial_objective;
        state->best_dual = best_dual;
        state->v_is_w = v_is_w;
        state->working_set = working_set.blocks();
        state->seconds = info.seconds;
        state->info = info;
    }
    return info;
}

// ---- JSON -------------------------------------------------------------------------------

void to_json(nlohmann::json& json, const SolverSettings& settings) {
    json = {{"beta", settings.beta},
            {"max_iters", settings.max_iters},
            {"rel_gap_tol", settings.rel_gap_tol},
            {"time_limit_s", settings.time_limit_s},
            {"check_every", settings.check_every},
            {"initial_step", settings.initial_step},
            {"backtrack", settings.backtrack},
            {"growth", settings.growth},
            {"restart", settings.restart},
            {"precondition", settings.precondition},
            {"working_set", settings.working_set}};
}

void from_json(const nlohmann::json& json, SolverSettings& settings) {
    try {
        if (!json.is_object()) throw Error(ErrorKind::bad_input, "solver settings: expected a JSON object");
        const auto read = [&](const char* key, auto& field) {
            if (json.contains(key)) json.at(key).get_to(field);
        };
        read("beta", settings.beta);
        read("max_iters", settings.max_iters);
        read("rel_gap_tol", settings.rel_gap_tol);
        read("time_limit_s", settings.time_limit_s);
        read("check_every", settings.check_every);
        read("initial_step", settings.initial_step);
        read("backtrack", settings.backtrack);
        read("growth", settings.growth);
        read("restart", settings.restart);
        read("precondition", settings.precondition);  // absent in settings written before it
        read("working_set", settings.working_set);
    } catch (const nlohmann::json::exception& e) {
        throw Error(ErrorKind::bad_input, std::string("solver settings: ") + e.what());
    }
}

void to_json(nlohmann::json& json, const SolveInfo& info) {
    nlohmann::json trace = nlohmann::json::array();
    for (const SolverTraceRow& row : info.trace)
        trace.push_back({{"iteration", row.iteration},
                         {"primal", row.primal},
                         {"dual", row.dual},
                         {"gap", row.gap},
                         {"rel_gap", row.rel_gap},
                         {"active_groups", row.active_groups},
                         {"seconds", row.seconds},
                         {"step", row.step}});
    json = {{"status", std::string(to_string(info.status))},
            {"iterations", info.iterations},
            {"primal", info.primal},
            {"dual", info.dual},
            {"gap", info.gap},
            {"rel_gap", info.rel_gap},
            {"beta", info.beta},
            {"active_groups", info.active_groups},
            {"groups", info.groups},
            {"seconds", info.seconds},
            {"restarts", info.restarts},
            {"backtracks", info.backtracks},
            {"products", info.products},
            {"step", info.step},
            {"trace", std::move(trace)}};
}

void from_json(const nlohmann::json& json, SolveInfo& info) {
    try {
        info.status = parse_solver_status(json.at("status").get<std::string>());
        json.at("iterations").get_to(info.iterations);
        json.at("primal").get_to(info.primal);
        json.at("dual").get_to(info.dual);
        json.at("gap").get_to(info.gap);
        json.at("rel_gap").get_to(info.rel_gap);
        json.at("beta").get_to(info.beta);
        json.at("active_groups").get_to(info.active_groups);
        json.at("groups").get_to(info.groups);
        json.at("seconds").get_to(info.seconds);
        json.at("restarts").get_to(info.restarts);
        json.at("backtracks").get_to(info.backtracks);
        info.products = json.value("products", 0.0);  // absent in checkpoints written before it
        json.at("step").get_to(info.step);
        info.trace.clear();
        for (const nlohmann::json& row : json.at("trace"))
            info.trace.push_back({row.at("iteration").get<int>(), row.at("primal").get<double>(),
                                  row.at("dual").get<double>(), row.at("gap").get<double>(),
                                  row.at("rel_gap").get<double>(), row.at("active_groups").get<int>(),
                                  row.at("seconds").get<double>(), row.at("step").get<double>()});
    } catch (const nlohmann::json::exception& e) {
        throw Error(ErrorKind::bad_input, std::string("solve record: ") + e.what());
    }
}

}  // namespace cvxcnn
