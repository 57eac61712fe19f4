// The three-layer convex program (see three_layer_program.hpp).
#include "cvxcnn/deep/three_layer_program.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/solvers/exact_loss.hpp"
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

// ---- pattern bits ----------------------------------------------------------------------------------

/// Appends a 0/1 pattern (one bool per row) to `patterns` unless it is all zero or already
/// there (`seen` holds the kept words). Returns whether it was kept.
bool keep_pattern(SignPatterns& patterns, std::set<std::vector<std::uint64_t>>& seen, const std::vector<bool>& active) {
    std::vector<std::uint64_t> words(patterns.words_per_pattern, 0);
    std::size_t count = 0;
    for (std::size_t row = 0; row < active.size(); ++row)
        if (active[row]) {
            words[row / 64] |= std::uint64_t{1} << (row % 64);
            ++count;
        }
    if (count == 0 || !seen.insert(words).second) return false;
    patterns.words.insert(patterns.words.end(), words.begin(), words.end());
    patterns.active_counts.push_back(count);
    return true;
}

SignPatterns empty_second_layer(std::size_t rows) {
    SignPatterns patterns;
    patterns.rows = rows;
    patterns.words_per_pattern = (rows + 63) / 64;
    return patterns;
}

/// Both layers' patterns sit in SignPatterns; the generators of the second are 0 columns wide.
void finish_second_layer(SignPatterns& patterns) {
    patterns.generators.resize(static_cast<Index>(patterns.count()), 0);
}

// ---- fixed partitions for determinism ----------------------------------------------------------------

constexpr int items_per_task = 16;

template <typename Body>
void for_each_index(int count, const Body& body) {
    oneapi::tbb::parallel_for(oneapi::tbb::blocked_range<int>(0, count, items_per_task),
                              [&](const oneapi::tbb::blocked_range<int>& range) {
                                  for (int e = range.begin(); e != range.end(); ++e) body(e);
                              });
}

// ---- the program's data ----------------------------------------------------------------------------

/// The rows of one pooling region: positions k in r, samples j, row q = kk * n + j.
struct RegionData {
    int size = 0;             ///< |r|
    RowMatrixD x;             ///< (|r| n) x h, the patches X_k of the region
    RowMatrixD unit_x;        ///< x with rows scaled to unit length (zero rows stay zero): first-layer cone rows
    RowMatrixD first_sign;    ///< (|r| n) x P1, 2 D1 - I (+-1)
    RowMatrixD second_sign;   ///< (|r| n) x P2, 2 D2 - I
    RowMatrixD gated;         ///< (|r| n) x (P1 h): [D1_1 X, ..., D1_P1 X], y = gated * (v - w)
    Eigen::VectorXd second_scale;  ///< 1 / ||gated row|| (0 for a zero row): second-layer rows at unit length
};

/// Images of a point: everything the smooth part of the augmented Lagrangian depends on.
struct Images {
    RowMatrixD z;                    ///< n x C logits
    std::vector<RowMatrixD> second;  ///< per unit u: (|r| n) x C, scaled second-layer cone values
    std::vector<RowMatrixD> first;   ///< per block b: (|r| n) x C, first-layer cone values
};

/// Multipliers, shaped as Images::second and Images::first.
struct Multipliers {
    std::vector<RowMatrixD> second;
    std::vector<RowMatrixD> first;
};

class Program {
public:
    explicit Program(const ThreeLayerProblem& problem)
        : layout_(layout_of(problem)), loss_(problem.loss), labels_(problem.labels),
          n_(problem.patches.samples()) {
        const PatchMatrices& patches = problem.patches;
        const SignPatterns& first = problem.patterns.first;
        const SignPatterns& second = problem.patterns.second;
        const int h = layout_.block_width, p1 = layout_.first, p2 = layout_.second;
        regions_.resize(static_cast<std::size_t>(layout_.regions));
        for (int r = 0; r < layout_.regions; ++r) {
            const auto& positions = patches.regions().positions[static_cast<std::size_t>(r)];
            RegionData& data = regions_[static_cast<std::size_t>(r)];
            data.size = static_cast<int>(positions.size());
            const Index rows = static_cast<Index>(positions.size()) * n_;
            data.x.resize(rows, h);
            data.first_sign.resize(rows, p1);
            data.second_sign.resize(rows, p2);
            for (std::size_t kk = 0; kk < positions.size(); ++kk)
                for (Index j = 0; j < n_; ++j) {
                    const Index q = static_cast<Index>(kk) * n_ + j;
                    const auto row = static_cast<std::size_t>(positions[kk]) * static_cast<std::size_t>(n_) +
                                     static_cast<std::size_t>(j);
                    data.x.row(q) = patches.stacked().row(static_cast<Index>(row)).cast<double>();
                    for (int i = 0; i < p1; ++i) data.first_sign(q, i) = first.active(static_cast<std::size_t>(i), row) ? 1.0 : -1.0;
                    for (int l = 0; l < p2; ++l) data.second_sign(q, l) = second.active(static_cast<std::size_t>(l), row) ? 1.0 : -1.0;
                }
            data.unit_x = data.x;
            for (Index q = 0; q < rows; ++q) {
                const double norm = data.x.row(q).norm();
                if (norm > 0.0) data.unit_x.row(q) /= norm;
            }
            data.gated = RowMatrixD::Zero(rows, static_cast<Index>(p1) * h);
            for (int i = 0; i < p1; ++i)
                for (Index q = 0; q < rows; ++q)
                    if (data.first_sign(q, i) > 0.0) data.gated.block(q, static_cast<Index>(i) * h, 1, h) = data.x.row(q);
            data.second_scale.resize(rows);
            for (Index q = 0; q < rows; ++q) {
                const double norm = data.gated.row(q).norm();
                data.second_scale(q) = norm > 0.0 ? 1.0 / norm : 0.0;
            }
        }
    }

    [[nodiscard]] const ThreeLayerLayout& layout() const noexcept { return layout_; }
    [[nodiscard]] Index samples() const noexcept { return n_; }
    [[nodiscard]] Loss loss_kind() const noexcept { return loss_; }
    [[nodiscard]] std::span<const std::int32_t> labels() const noexcept { return labels_; }
    [[nodiscard]] const RegionData& region(int r) const { return regions_[static_cast<std::size_t>(r)]; }

    // Index decoding of the layout.
    [[nodiscard]] int region_of_unit(int u) const noexcept { return u / (2 * layout_.second); }
    [[nodiscard]] double sign_of_unit(int u) const noexcept { return (u / layout_.second) % 2 == 0 ? 1.0 : -1.0; }
    [[nodiscard]] int pattern2_of_unit(int u) const noexcept { return u % layout_.second; }
    [[nodiscard]] int unit_of_block(int b) const noexcept { return b / (2 * layout_.first); }
    [[nodiscard]] int pattern1_of_block(int b) const noexcept { return b % layout_.first; }
    [[nodiscard]] Index unit_rows() const noexcept { return 2 * static_cast<Index>(layout_.first) * layout_.block_width; }

    /// y = gated (v - w) of unit u: (|r| n) x C.
    void hidden_preactivation(const RowMatrixD& x, int u, RowMatrixD& y) const {
        const Index half = static_cast<Index>(layout_.first) * layout_.block_width;
        const RegionData& data = region(region_of_unit(u));
        const auto unit = x.middleRows(static_cast<Index>(u) * unit_rows(), unit_rows());
        y.noalias() = data.gated * (unit.topRows(half) - unit.bottomRows(half));
    }

    /// Z and the cone values of x.
    void images(const RowMatrixD& x, Images& out) const {
        const int units = layout_.units(), blocks = layout_.blocks(), classes = layout_.classes;
        const int h = layout_.block_width;
        out.second.resize(static_cast<std::size_t>(units));
        out.first.resize(static_cast<std::size_t>(blocks));
        std::vector<RowMatrixD> contribution(static_cast<std::size_t>(units));
        for_each_index(units, [&](int u) {
            const RegionData& data = region(region_of_unit(u));
            const int l = pattern2_of_unit(u);
            RowMatrixD y;
            hidden_preactivation(x, u, y);
            out.second[static_cast<std::size_t>(u)] =
                (data.second_sign.col(l).cwiseProduct(data.second_scale)).asDiagonal() * y;
            // sum over the region's positions of D2 y, with the unit's output sign.
            RowMatrixD& part = contribution[static_cast<std::size_t>(u)];
            part = RowMatrixD::Zero(n_, classes);
            const double sign = sign_of_unit(u);
            for (Index q = 0; q < y.rows(); ++q)
                if (data.second_sign(q, l) > 0.0) part.row(q % n_) += sign * y.row(q);
        });
        // A fixed summation order: the logits do not depend on the thread count.
        out.z = RowMatrixD::Zero(n_, classes);
        for (const RowMatrixD& part : contribution) out.z += part;
        for_each_index(blocks, [&](int b) {
            const RegionData& data = region(region_of_unit(unit_of_block(b)));
            out.first[static_cast<std::size_t>(b)] =
                data.first_sign.col(pattern1_of_block(b)).asDiagonal() *
                (data.unit_x * x.middleRows(static_cast<Index>(b) * h, h));
        });
    }

    /// M^T G for a logits gradient G (n x C), into grad (rows x C), plus the cone terms
    /// -A^T (mu - rho t)_+ when multipliers are given (the augmented Lagrangian's gradient).
    void gradient(const RowMatrixD& g, const Images* at, const Multipliers* mu, double rho, RowMatrixD& grad) const {
        const int units = layout_.units(), blocks = layout_.blocks();
        const int h = layout_.block_width;
        const Index half = static_cast<Index>(layout_.first) * h;
        grad.resize(layout_.rows(), layout_.classes);
        for_each_index(units, [&](int u) {
            const RegionData& data = region(region_of_unit(u));
            const int l = pattern2_of_unit(u);
            const double sign = sign_of_unit(u);
            RowMatrixD dy(data.x.rows(), layout_.classes);
            for (Index q = 0; q < dy.rows(); ++q) {
                if (data.second_sign(q, l) > 0.0) dy.row(q) = sign * g.row(q % n_);
                else dy.row(q).setZero();
            }
            if (mu) {
                const auto slot = static_cast<std::size_t>(u);
                const RowMatrixD shifted = (mu->second[slot] - rho * at->second[slot]).cwiseMax(0.0);
                dy -= (data.second_sign.col(l).cwiseProduct(data.second_scale)).asDiagonal() * shifted;
            }
            const RowMatrixD dv = data.gated.transpose() * dy;
            auto unit = grad.middleRows(static_cast<Index>(u) * unit_rows(), unit_rows());
            unit.topRows(half) = dv;
            unit.bottomRows(half) = -dv;
        });
        if (!mu) return;
        for_each_index(blocks, [&](int b) {
            const auto slot = static_cast<std::size_t>(b);
            const RegionData& data = region(region_of_unit(unit_of_block(b)));
            const RowMatrixD shifted = (mu->first[slot] - rho * at->first[slot]).cwiseMax(0.0);
            grad.middleRows(static_cast<Index>(b) * h, h).noalias() -=
                data.unit_x.transpose() * (data.first_sign.col(pattern1_of_block(b)).asDiagonal() * shifted);
        });
    }

    /// The recovered network's outputs: real ReLUs, no patterns.
    [[nodiscard]] RowMatrixD network_logits(const RowMatrixD& x) const {
        const int units = layout_.units(), classes = layout_.classes, h = layout_.block_width;
        std::vector<RowMatrixD> contribution(static_cast<std::size_t>(units));
        for_each_index(units, [&](int u) {
            const RegionData& data = region(region_of_unit(u));
            RowMatrixD hidden = RowMatrixD::Zero(data.x.rows(), classes);
            for (int part = 0; part < 2; ++part)
                for (int i = 0; i < layout_.first; ++i) {
                    const int b = layout_.block(u, part, i);
                    const RowMatrixD pre = data.x * x.middleRows(static_cast<Index>(b) * h, h);
                    hidden += (part == 0 ? 1.0 : -1.0) * pre.cwiseMax(0.0);
                }
            RowMatrixD& part = contribution[static_cast<std::size_t>(u)];
            part = RowMatrixD::Zero(n_, classes);
            const double sign = sign_of_unit(u);
            for (Index q = 0; q < hidden.rows(); ++q) part.row(q % n_) += sign * hidden.row(q).cwiseMax(0.0);
        });
        RowMatrixD z = RowMatrixD::Zero(n_, classes);
        for (const RowMatrixD& part : contribution) z += part;
        return z;
    }

    [[nodiscard]] double loss(const RowMatrixD& z, RowMatrixD* g) const { return exact_loss(loss_, z, labels_, g); }

private:
    ThreeLayerLayout layout_;
    Loss loss_;
    std::span<const std::int32_t> labels_;
    Index n_;
    std::vector<RegionData> regions_;
};

/// Largest (-t)_+ over every cone value, / the largest group norm (0 at x = 0).
double relative_violation(const Images& images, const RowMatrixD& x, int h) {
    double worst = 0.0;
    for (const auto* set : {&images.second, &images.first})
        for (const RowMatrixD& values : *set)
            if (values.size() > 0) worst = std::max(worst, -values.minCoeff());
    const double largest = largest_group_norm(x, h);
    return largest > 0.0 ? worst / largest : 0.0;
}

/// f(y + d) - f(y) - <grad f(y), d> of the smooth part, from the images of y and of d
/// (see cone_constrained.cpp: the same case-by-case penalty terms, all nonnegative).
double step_divergence(const Program& program, const Images& at_y, const Images& step, const Multipliers& mu,
                       double rho) {
    double penalty = 0.0;
    const auto add = [&](const std::vector<RowMatrixD>& multipliers, const std::vector<RowMatrixD>& values,
                         const std::vector<RowMatrixD>& deltas) {
        for (std::size_t slot = 0; slot < multipliers.size(); ++slot) {
            const RowMatrixD& m = multipliers[slot];
            double sum = 0.0;
            for (Index i = 0; i < m.size(); ++i) {
                const double a = m.data()[i] / rho - values[slot].data()[i];
                const double delta = deltas[slot].data()[i];
                if (a >= 0.0) sum += delta <= a ? delta * delta : a * (2.0 * delta - a);
                else if (delta <= a) sum += (a - delta) * (a - delta);
            }
            penalty += 0.5 * rho * sum;
        }
    };
    add(mu.second, at_y.second, step.second);
    add(mu.first, at_y.first, step.first);
    return exact_loss_divergence(program.loss_kind(), at_y.z, step.z) + penalty;
}

/// lambda_max(M^T M) of a linear map given by its product and adjoint, by power iteration.
template <typename Forward, typename Adjoint>
double largest_eigenvalue(Index size, const Forward& forward, const Adjoint& adjoint) {
    if (size == 0) return 0.0;
    // A fixed irregular start: all-ones would be orthogonal to the top eigenvector here
    // (the v and w halves cancel in v - w).
    Eigen::VectorXd v(size);
    for (Index i = 0; i < size; ++i) v(i) = std::sin(1.0 + 0.7 * static_cast<double>(i));
    v.normalize();
    double value = 0.0;
    for (int iteration = 0; iteration < 30; ++iteration) {
        const Eigen::VectorXd next = adjoint(forward(v));
        value = next.norm();
        if (value == 0.0) return 0.0;
        v = next / value;
    }
    return value;
}

void check_weights(const ThreeLayerLayout& layout, const RowMatrixD& weights) {
    if (weights.rows() != layout.rows() || weights.cols() != layout.classes)
        throw Error(ErrorKind::bad_input, "three-layer program: weights are " + std::to_string(weights.rows()) + " x " +
                                              std::to_string(weights.cols()) + ", expected " +
                                              std::to_string(layout.rows()) + " x " + std::to_string(layout.classes) +
                                              " (blocks x width, classes)");
    if (!weights.allFinite()) throw Error(ErrorKind::bad_input, "three-layer program: the weights are not finite");
}

void check_beta(double beta) {
    if (!(beta > 0.0) || !std::isfinite(beta))
        throw Error(ErrorKind::bad_input, "--beta " + format_number(beta) + ": must be positive and finite");
}

}  // namespace

// ---- patterns ---------------------------------------------------------------------------------------

PatternPairs enumerate_pattern_pairs(const PatchMatrices& patches, int rank, const PairEnumerationLimits& limits) {
    const std::size_t rows = patches.stacked().rows();
    if (rows > static_cast<std::size_t>(limits.max_rows))
        throw Error(ErrorKind::limit, "--rank with --depth 3: every second-layer pattern of " + std::to_string(rows) +
                                          " patch rows (samples x positions) is 2^" + std::to_string(rows) +
                                          " patterns; exact enumeration stops at " + std::to_string(limits.max_rows) +
                                          " rows (use sampled patterns: --patterns)");
    const RankProjection projection = project_to_rank(patches.stacked(), rank);
    PatternPairs pairs;
    EnumerationLimits first_limits;
    first_limits.max_patterns = limits.max_pairs;
    pairs.first = enumerate_sign_patterns(projection.reduced, first_limits);
    pairs.first.generators = lift_generators(projection, pairs.first.generators);
    (void)drop_empty_patterns(pairs.first);
    const std::size_t second_count = (std::size_t{1} << rows) - 1;
    if (pairs.first.count() * second_count > limits.max_pairs)
        throw Error(ErrorKind::limit, "--rank " + std::to_string(rank) + " with --depth 3: " +
                                          std::to_string(pairs.first.count()) + " x " + std::to_string(second_count) +
                                          " pattern pairs, more than the limit of " + std::to_string(limits.max_pairs));
    pairs.second = empty_second_layer(rows);
    std::set<std::vector<std::uint64_t>> seen;
    std::vector<bool> active(rows);
    for (std::size_t mask = 1; mask <= second_count; ++mask) {
        for (std::size_t row = 0; row < rows; ++row) active[row] = ((mask >> row) & 1U) != 0;
        (void)keep_pattern(pairs.second, seen, active);
    }
    finish_second_layer(pairs.second);
    pairs.complete = projection.relative_residual <= 1e-6;
    return pairs;
}

PatternPairs sample_pattern_pairs(const PatchMatrices& patches, const PairSamplingOptions& options) {
    if (options.first < 1 || options.second < 1 || options.terms < 1)
        throw Error(ErrorKind::bad_input, "--patterns: the pattern counts of both layers and the terms of a "
                                          "second-layer draw must be at least 1");
    PatternPairs pairs;
    SamplingOptions first;
    first.count = options.first;
    first.seed = options.seed;
    pairs.first = sample_sign_patterns(patches.stacked(), first).patterns;

    // Second layer: the pattern of a random sub-network's hidden pre-activation.
    const RowMatrixF& stacked = patches.stacked();
    const auto rows = static_cast<std::size_t>(stacked.rows());
    pairs.second = empty_second_layer(rows);
    std::mt19937_64 rng(options.seed ^ 0x9e3779b97f4a7c15ULL);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::bernoulli_distribution coin(0.5);
    std::set<std::vector<std::uint64_t>> seen;
    std::vector<bool> active(rows);
    // Bounded retries: duplicates are common on small data; the count kept may be lower.
    for (int draw = 0; draw < 4 * options.second && static_cast<int>(pairs.second.count()) < options.second; ++draw) {
        Eigen::VectorXf sum = Eigen::VectorXf::Zero(static_cast<Index>(rows));
        for (int term = 0; term < options.terms; ++term) {
            Eigen::VectorXf g(stacked.cols());
            for (Index j = 0; j < g.size(); ++j) g(j) = normal(rng);
            const float sign = coin(rng) ? 1.0f : -1.0f;
            sum += sign * (stacked * g).cwiseMax(0.0f);
        }
        for (std::size_t row = 0; row < rows; ++row) active[row] = sum(static_cast<Index>(row)) >= 0.0f;
        (void)keep_pattern(pairs.second, seen, active);
    }
    finish_second_layer(pairs.second);
    return pairs;
}

// ---- problem ------------------------------------------------------------------------------------------

void ThreeLayerProblem::validate() const {
    const std::size_t rows = static_cast<std::size_t>(patches.stacked().rows());
    if (patches.architecture().activation != Activation::relu)
        throw Error(ErrorKind::bad_input, "--arch " + to_string(patches.architecture()) +
                                              ": the three-layer program covers ReLU only (use a -relu- architecture)");
    if (patterns.first.rows != rows || patterns.second.rows != rows)
        throw Error(ErrorKind::bad_input, "three-layer program: the patterns were not computed on these patches");
    if (patterns.first.count() == 0 || patterns.second.count() == 0)
        throw Error(ErrorKind::bad_input, "three-layer program: no sign pattern in one of the layers");
    if (classes < 1) throw Error(ErrorKind::bad_input, "three-layer program: no class");
    if (labels.size() != static_cast<std::size_t>(patches.samples()))
        throw Error(ErrorKind::bad_input, "three-layer program: " + std::to_string(labels.size()) + " labels for " +
                                              std::to_string(patches.samples()) + " samples");
    for (const std::int32_t label : labels)
        if (label < 0 || label >= classes)
            throw Error(ErrorKind::bad_input, "three-layer program: label " + std::to_string(label) + " outside 0.." +
                                                  std::to_string(classes - 1));
}

ThreeLayerLayout layout_of(const ThreeLayerProblem& problem) {
    ThreeLayerLayout layout;
    layout.regions = problem.patches.regions().count();
    layout.first = static_cast<int>(problem.patterns.first.count());
    layout.second = static_cast<int>(problem.patterns.second.count());
    layout.block_width = problem.patches.patch_size();
    layout.classes = problem.classes;
    return layout;
}

ThreeLayerEvaluation evaluate_three_layer(const ThreeLayerProblem& problem, double beta, const RowMatrixD& weights) {
    problem.validate();
    check_beta(beta);
    const Program program(problem);
    check_weights(program.layout(), weights);
    const int h = program.layout().block_width;
    Images images;
    program.images(weights, images);
    ThreeLayerEvaluation out;
    out.logits = images.z;
    out.loss = program.loss(images.z, nullptr);
    out.penalty = group_norm_sum(weights, h);
    out.objective = out.loss + beta * out.penalty;
    out.network_logits = program.network_logits(weights);
    out.network_objective = program.loss(out.network_logits, nullptr) + beta * out.penalty;
    out.violation = relative_violation(images, weights, h);
    out.active_groups = count_active_groups(weights, h);
    return out;
}

double three_layer_beta_max(const ThreeLayerProblem& problem) {
    problem.validate();
    const Program program(problem);
    RowMatrixD g, grad;
    (void)program.loss(RowMatrixD::Zero(program.samples(), problem.classes), &g);
    program.gradient(g, nullptr, nullptr, 0.0, grad);
    return largest_group_norm(grad, program.layout().block_width);
}

// ---- the augmented Lagrangian solver -----------------------------------------------------------------

ThreeLayerSolveInfo solve_three_layer(const ThreeLayerProblem& problem, const ConeSolverSettings& settings,
                                      RowMatrixD& weights, const std::function<void(const ThreeLayerSolveInfo&)>& on_outer) {
    const auto start = Clock::now();
    settings.validate();
    problem.validate();
    const Program program(problem);
    const ThreeLayerLayout& layout = program.layout();
    check_weights(layout, weights);
    const int h = layout.block_width;
    const double beta = settings.beta;
    const Index n = program.samples();

    ThreeLayerSolveInfo result;
    ConeSolveInfo& info = result.solve;
    info.groups = layout.blocks() * layout.classes;

    RowMatrixD x = weights;
    Images images_x;
    program.images(x, images_x);
    Multipliers mu;
    for (const RowMatrixD& values : images_x.second) mu.second.push_back(RowMatrixD::Zero(values.rows(), values.cols()));
    for (const RowMatrixD& values : images_x.first) mu.first.push_back(RowMatrixD::Zero(values.rows(), values.cols()));

    // rho_0 balances the penalty's curvature against the loss's, as in the two-layer AL;
    // both from power iterations on the (flattened) linear maps.
    const auto as_matrix = [&](const Eigen::VectorXd& v) {
        return RowMatrixD(Eigen::Map<const RowMatrixD>(v.data(), layout.rows(), layout.classes));
    };
    const double loss_curvature =
        largest_eigenvalue(
            layout.rows() * layout.classes,
            [&](const Eigen::VectorXd& v) {
                Images im;
                program.images(as_matrix(v), im);
                return RowMatrixD(im.z);
            },
            [&](const RowMatrixD& z) {
                RowMatrixD grad;
                program.gradient(z, nullptr, nullptr, 0.0, grad);
                return Eigen::VectorXd(Eigen::Map<const Eigen::VectorXd>(grad.data(), grad.size()));
            }) /
        static_cast<double>(n) * (problem.loss == Loss::cross_entropy ? 0.5 : 1.0);
    double cone_curvature = 1.0;
    for (int r = 0; r < layout.regions; ++r) {
        const RegionData& data = program.region(r);
        const auto gram = [](const RowMatrixD& m) {
            return largest_eigenvalue(
                m.cols(), [&](const Eigen::VectorXd& v) { return Eigen::VectorXd(m * v); },
                [&](const Eigen::VectorXd& w) { return Eigen::VectorXd(m.transpose() * w); });
        };
        cone_curvature = std::max(cone_curvature, gram(data.unit_x));
        cone_curvature = std::max(cone_curvature, 2.0 * gram(data.second_scale.asDiagonal() * data.gated));
    }
    double rho = settings.initial_penalty * std::max(loss_curvature, std::numeric_limits<double>::min()) / cone_curvature;
    double eta = 1.0 / std::max(loss_curvature + rho * cone_curvature, std::numeric_limits<double>::min());
    double inner_tol = settings.initial_inner_tol;
    double previous_violation = infinity;


    RowMatrixD y, candidate, grad_y, grad_x, g;
    Images images_y, images_step;
    const auto smooth_gradient = [&](const RowMatrixD& point, Images& images, RowMatrixD& grad) {
        program.images(point, images);
        (void)program.loss(images.z, &g);
        program.gradient(g, &images, &mu, rho, grad);
    };
    bool out_of_budget = false;
    for (int outer = 1; outer <= settings.max_outer && !out_of_budget; ++outer) {
        // ---- inner problem: FISTA with restart on the augmented Lagrangian
        y = x;
        double t = 1.0;
        smooth_gradient(y, images_y, grad_y);
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
            double divergence = 0.0, step_sq = 0.0;
            bool accepted = false;
            for (int attempt = 0; attempt < 60 && !accepted; ++attempt) {
                group_prox_step(y, grad_y, eta, beta, h, candidate);
                const RowMatrixD d = candidate - y;
                step_sq = d.squaredNorm();
                program.images(d, images_step);
                divergence = step_divergence(program, images_y, images_step, mu, rho);
                accepted = std::isfinite(divergence) && divergence <= step_sq / (2.0 * eta);
                if (!accepted) eta *= settings.backtrack;
            }
            if (!accepted) {
                diverged = true;
                break;
            }
            ++info.inner_iterations;
            if (step_sq > 5.0 * 2.0 * eta * divergence) eta *= settings.growth;
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
                smooth_gradient(x, images_x, grad_x);
                inner_kkt = group_kkt_residual(x, grad_x, beta, h);
                if (inner_kkt <= inner_tol || step >= settings.max_inner_per_outer) break;
            }
            smooth_gradient(y, images_y, grad_y);
        }
        if (diverged || !x.allFinite()) {
            info.status = ConeSolverStatus::diverged;
            break;
        }
        if (out_of_budget && info.outer_iterations > 0) break;  // keep the last certified iterate's report

        // ---- certificate: the AL gradient at x with the current multipliers is
        // M^T G - A^T mu_next (mu_next = (mu - rho t)_+, the multiplier step below), so it is
        // the dual residual of (Theta, mu) = (G, mu_next); scaled by s into the ball.
        smooth_gradient(x, images_x, grad_x);
        const double residual = largest_group_norm(grad_x, h);
        const double s = residual > beta ? beta / residual : 1.0;
        const double loss = program.loss(images_x.z, nullptr);
        info.outer_iterations = outer;
        info.primal = loss + beta * group_norm_sum(x, h);
        info.dual = exact_loss_dual(problem.loss, images_x.z, problem.labels, s);
        info.gap = info.primal - info.dual;
        info.rel_gap = info.gap / std::max(info.primal, std::numeric_limits<double>::min());
        info.violation = relative_violation(images_x, x, h);
        info.max_violation = info.violation;
        info.kkt_residual = inner_kkt;
        info.penalty = rho;
        info.seconds = seconds_since(start);
        info.trace.push_back({outer, info.inner_iterations, rho, inner_kkt, info.violation, info.primal, info.dual,
                              info.rel_gap});
        result.network_objective = program.loss(program.network_logits(x), nullptr) + beta * group_norm_sum(x, h);
        result.network_rel_gap = (result.network_objective - info.dual) /
                                 std::max(result.network_objective, std::numeric_limits<double>::min());
        weights = x;
        if (on_outer) on_outer(result);

        // ---- multiplier step and penalty update (SOLVERS.md 5.4)
        for (std::size_t slot = 0; slot < mu.second.size(); ++slot)
            mu.second[slot] = (mu.second[slot] - rho * images_x.second[slot]).cwiseMax(0.0);
        for (std::size_t slot = 0; slot < mu.first.size(); ++slot)
            mu.first[slot] = (mu.first[slot] - rho * images_x.first[slot]).cwiseMax(0.0);
        if (info.rel_gap <= settings.rel_gap_tol && info.violation <= settings.feasibility_tol) {
            info.status = ConeSolverStatus::solved;
            break;
        }
        if (outer == settings.max_outer) info.status = ConeSolverStatus::max_outer_reached;
        if (inner_kkt <= inner_tol) {
            if (info.violation > settings.violation_decrease * previous_violation) rho *= settings.penalty_growth;
            inner_tol = std::max(inner_tol * settings.inner_tol_decrease, settings.min_inner_tol);
        }
        previous_violation = info.violation;
    }
    if (info.outer_iterations == 0) {
        // Stopped before the first outer step: report the warm start itself.
        program.images(weights, images_x);
        const double loss = program.loss(images_x.z, &g);
        RowMatrixD grad;
        program.gradient(g, nullptr, nullptr, 0.0, grad);
        const double residual = largest_group_norm(grad, h);
        info.primal = loss + beta * group_norm_sum(weights, h);
        info.dual = exact_loss_dual(problem.loss, images_x.z, problem.labels, residual > beta ? beta / residual : 1.0);
        info.gap = info.primal - info.dual;
        info.rel_gap = info.gap / std::max(info.primal, std::numeric_limits<double>::min());
        info.violation = info.max_violation = relative_violation(images_x, weights, h);
        result.network_objective = program.loss(program.network_logits(weights), nullptr) + beta * group_norm_sum(weights, h);
        result.network_rel_gap = (result.network_objective - info.dual) /
                                 std::max(result.network_objective, std::numeric_limits<double>::min());
    }
    info.active_groups = count_active_groups(weights, h);
    info.seconds = seconds_since(start);
    return result;
}

// ---- recovery ---------------------------------------------------------------------------------------

Model recover_three_layer_cnn(const ThreeLayerProblem& problem, const RowMatrixD& weights,
                              std::vector<std::string> class_names, const Normalization& normalization) {
    problem.validate();
    const ThreeLayerLayout layout = layout_of(problem);
    check_weights(layout, weights);
    const int h = layout.block_width;
    const PoolingRegions& regions = problem.patches.regions();
    // First pass: which blocks and hidden units survive (zero groups are pruned).
    struct Unit {
        int unit = 0, cls = 0;
        std::vector<int> blocks;
    };
    std::vector<Unit> units;
    int filters = 0;
    for (int u = 0; u < layout.units(); ++u)
        for (int c = 0; c < layout.classes; ++c) {
            Unit kept{u, c, {}};
            for (int part = 0; part < 2; ++part)
                for (int i = 0; i < layout.first; ++i) {
                    const int b = layout.block(u, part, i);
                    if ((weights.block(static_cast<Index>(b) * h, c, h, 1).array() != 0.0).any()) kept.blocks.push_back(b);
                }
            if (kept.blocks.empty()) continue;
            filters += static_cast<int>(kept.blocks.size());
            units.push_back(std::move(kept));
        }
    const int m2 = static_cast<int>(units.size());
    Model model = make_model(problem.patches.architecture(), problem.patches.input_shape(), std::move(class_names),
                             filters, m2);
    model.normalization = normalization;
    const auto region_count = static_cast<std::size_t>(regions.count());
    int f = 0;
    for (int j = 0; j < m2; ++j) {
        const Unit& unit = units[static_cast<std::size_t>(j)];
        const int r = unit.unit / (2 * layout.second);
        const double sign = (unit.unit / layout.second) % 2 == 0 ? 1.0 : -1.0;
        for (const int b : unit.blocks) {
            const Eigen::VectorXd group = weights.block(static_cast<Index>(b) * h, unit.cls, h, 1);
            const double root = std::sqrt(group.norm());
            const bool positive = (b / layout.first) % 2 == 0;
            for (int k = 0; k < h; ++k)
                model.conv_weight.data[static_cast<std::size_t>(f) * static_cast<std::size_t>(h) + static_cast<std::size_t>(k)] =
                    static_cast<float>(group(k) / root);
            model.hidden_weight.data[static_cast<std::size_t>(j) * static_cast<std::size_t>(filters) + static_cast<std::size_t>(f)] =
                static_cast<float>(positive ? root : -root);
            ++f;
        }
        // Average pooling in the model, sum pooling in the program: output weight s |r|.
        model.fc_weight.data[static_cast<std::size_t>(unit.cls) * static_cast<std::size_t>(m2) * region_count +
                             static_cast<std::size_t>(j) * region_count + static_cast<std::size_t>(r)] =
            static_cast<float>(sign * regions.sizes[static_cast<std::size_t>(r)]);
    }
    return model;
}

ThreeLayerRegularizer three_layer_regularizer(const Model& model, const PoolingRegions& regions) {
    if (!model.has_hidden_layer())
        throw Error(ErrorKind::bad_input, "three_layer_regularizer: the model has no hidden layer (depth 2)");
    ThreeLayerRegularizer out;
    double squares = 0.0;
    for (const float w : model.conv_weight.data) squares += static_cast<double>(w) * w;
    for (const float w : model.hidden_weight.data) squares += static_cast<double>(w) * w;
    out.weight_decay = 0.5 * squares;
    const auto region_count = static_cast<std::size_t>(regions.count());
    for (std::size_t index = 0; index < model.fc_weight.data.size(); ++index) {
        const std::size_t r = index % region_count;
        out.max_output_weight = std::max(out.max_output_weight, std::abs(static_cast<double>(model.fc_weight.data[index])) /
                                                                    regions.sizes[r]);
    }
    return out;
}

void to_json(nlohmann::json& json, const ThreeLayerSolveInfo& info) {
    to_json(json, info.solve);
    json["network_objective"] = info.network_objective;
    json["network_rel_gap"] = info.network_rel_gap;
}

}  // namespace cvxcnn
