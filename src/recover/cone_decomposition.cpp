// Cone decomposition of a gated solution (see cone_decomposition.hpp).
#include "cvxcnn/recover/cone_decomposition.hpp"

#include <algorithm>
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

#include "cvxcnn/recover/cnn_from_convex.hpp"
#include "cvxcnn/solvers/cone_constrained.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using Index = Eigen::Index;
constexpr double infinity = std::numeric_limits<double>::infinity();

std::string format_number(double value) {
    std::ostringstream out;
    out << value;
    return out.str();
}

/// The split constraints of one group, s_j x_j . w >= t_j = max(0, -s_j x_j . u), over the
/// rows j = (k, sample) of the positions k of region r, read from the patch matrix (float)
/// and the pattern bits as needed; only a scale and a bound per row are stored.
class SplitConstraints final : public LinearInequalities {
public:
    SplitConstraints(const PatchMatrices& patches, const SignPatterns& patterns, int pattern, int region,
                     const Eigen::VectorXd& u)
        : stacked_(patches.stacked()) {
        const Index n = patches.samples();
        const auto& positions = patches.regions().positions[static_cast<std::size_t>(region)];
        const std::size_t capacity = positions.size() * static_cast<std::size_t>(n);
        rows_.reserve(capacity);
        scales_.reserve(capacity);
        bounds_.reserve(capacity);
        for (const int k : positions)
            for (Index j = 0; j < n; ++j) {
                const Index row = static_cast<Index>(k) * n + j;
                const double norm = stacked_.row(row).cast<double>().norm();
                if (norm == 0.0) continue;  // 0 >= 0: constrains nothing
                const double sign =
                    patterns.active(static_cast<std::size_t>(pattern), static_cast<std::size_t>(row)) ? 1.0 : -1.0;
                const double scale = sign / norm;
                rows_.push_back(row);
                scales_.push_back(scale);
                bounds_.push_back(std::max(0.0, -scale * stacked_.row(row).cast<double>().dot(u)));
            }
    }

    [[nodiscard]] Index count() const override { return static_cast<Index>(rows_.size()); }
    [[nodiscard]] int dimension() const override { return static_cast<int>(stacked_.cols()); }
    void slacks(const Eigen::VectorXd& x, Eigen::VectorXd& slack) const override {
        products(x, slack);
        for (Index j = 0; j < slack.size(); ++j) slack(j) -= bounds_[static_cast<std::size_t>(j)];
    }
    void unit_row(Index j, Eigen::VectorXd& row, double& bound) const override {
        const auto e = static_cast<std::size_t>(j);
        row = scales_[e] * stacked_.row(rows_[e]).cast<double>().transpose();
        bound = bounds_[e];
    }

    /// s_j x_j . x / ||x_j|| for every row.
    void products(const Eigen::VectorXd& x, Eigen::VectorXd& out) const {
        out.resize(count());
        for (std::size_t e = 0; e < rows_.size(); ++e)
            out(static_cast<Index>(e)) = scales_[e] * stacked_.row(rows_[e]).cast<double>().dot(x);
    }
    [[nodiscard]] double largest_bound() const {
        return bounds_.empty() ? 0.0 : *std::max_element(bounds_.begin(), bounds_.end());
    }
    [[nodiscard]] double bound(std::size_t e) const { return bounds_[e]; }

private:
    const RowMatrixF& stacked_;
    std::vector<Index> rows_;
    std::vector<double> scales_;
    std::vector<double> bounds_;
};

struct GroupSplit {
    Eigen::VectorXd v, w;
    bool inside_cone = false;
    bool negated_inside = false;
    bool closed_form = false;
    double violation = 0.0;  // relative, see ConeDecompositionReport
    std::optional<std::string> failure;
};

/// w = t g with the smallest t that satisfies every row, if g is in the cone (s_j x_j.g >= 0)
/// and strictly inside it on every row with a positive bound.
std::optional<Eigen::VectorXd> closed_form_split(const SplitConstraints& constraints, const Eigen::VectorXd& gate) {
    Eigen::VectorXd along;
    constraints.products(gate, along);
    double t = 0.0;
    for (Index j = 0; j < along.size(); ++j) {
        const double bound = constraints.bound(static_cast<std::size_t>(j));
        if (along(j) < 0.0 || (bound > 0.0 && along(j) <= 0.0)) return std::nullopt;
        if (bound > 0.0) t = std::max(t, bound / along(j));
    }
    return Eigen::VectorXd(t * gate);
}

GroupSplit split_group(const PatchMatrices& patches, const SignPatterns& patterns, int pattern, int region,
                       const Eigen::VectorXd& u, const ConeDecompositionSettings& settings) {
    GroupSplit split;
    const SplitConstraints constraints(patches, patterns, pattern, region, u);
    const double u_norm = u.norm();
    if (constraints.largest_bound() == 0.0) {
        // u is in its cone already: v = u, w = 0 costs exactly ||u||, the least possible.
        split.v = u;
        split.w = Eigen::VectorXd::Zero(u.size());
        split.inside_cone = true;
        return split;
    }
    ProjectionSettings projection_settings;
    projection_settings.tolerance = settings.feasibility_tol * u_norm;
    ProjectionWorkspace workspace;
    double theta = 0.5, best = infinity, previous = infinity;
    for (int step = 0; step < settings.max_refinements; ++step) {
        const Projection projection = project_onto_polyhedron(constraints, -theta * u, projection_settings, workspace);
        if (projection.status != ProjectionStatus::solved) break;
        const Eigen::VectorXd& w = projection.point;
        const Eigen::VectorXd v = u + w;
        const double v_norm = v.norm(), w_norm = w.norm(), cost = v_norm + w_norm;
        if (cost < best) {
            best = cost;
            split.v = v;
            split.w = w;
        }
        if (previous - cost <= settings.refinement_tol * cost) break;
        previous = cost;
        theta = w_norm / cost;
    }
    if (best == infinity) {
        const Eigen::VectorXd gate = patterns.generators.row(pattern).transpose().cast<double>();
        const std::optional<Eigen::VectorXd> w = closed_form_split(constraints, gate);
        if (!w) {
            split.failure = "its cone has no interior point the projection or the gate could find";
            return split;
        }
        split.w = *w;
        split.v = u + *w;
        split.closed_form = true;
    }
    // v = 0 exactly when -u is in the cone; computed as u + w it is cancellation noise
    // pointing anywhere, which would become a tiny filter outside its cone.
    if (split.v.norm() <= 1e-12 * u_norm) {
        split.v.setZero();
        split.w = -u;
        split.negated_inside = true;
    }
    // The violation of both filters, measured on every row: v's rows are s_j x_j.(u + w).
    Eigen::VectorXd on_w, on_u;
    constraints.products(split.w, on_w);
    constraints.products(u, on_u);
    const double worst = std::max({0.0, -on_w.minCoeff(), -(on_w + on_u).minCoeff()});
    split.violation = worst / (split.v.norm() + split.w.norm());
    return split;
}

}  // namespace

void ConeDecompositionSettings::validate() const {
    std::vector<std::string> defects;
    if (!(feasibility_tol > 0.0) || !std::isfinite(feasibility_tol))
        defects.push_back("feasibility_tol " + format_number(feasibility_tol) + ": must be positive");
    if (max_refinements < 1) defects.push_back("max_refinements " + std::to_string(max_refinements) + ": must be at least 1");
    if (!(refinement_tol >= 0.0) || !std::isfinite(refinement_tol))
        defects.push_back("refinement_tol " + format_number(refinement_tol) + ": must be a finite number >= 0");
    if (defects.empty()) return;
    std::string message = "cone decomposition settings: " + defects.front();
    for (std::size_t i = 1; i < defects.size(); ++i) message += "; " + defects[i];
    throw Error(ErrorKind::bad_input, message);
}

void to_json(nlohmann::json& json, const ConeDecompositionReport& report) {
    json = {{"groups", report.groups},
            {"inside_cone", report.inside_cone},
            {"negated_inside", report.negated_inside},
            {"closed_form", report.closed_form},
            {"gated_norm", report.gated_norm},
            {"split_norm", report.split_norm},
            {"norm_ratio", report.norm_ratio()},
            {"max_violation", report.max_violation},
            {"seconds", report.seconds}};
}

ConeDecomposition decompose_into_cones(const ConvexFeatures& layout, const PatchMatrices& patches,
                                       const SignPatterns& patterns, const RowMatrixF& weights,
                                       const ConeDecompositionSettings& settings) {
    const auto start = std::chrono::steady_clock::now();
    settings.validate();
    const int h = layout.block_width;
    const auto fail = [](const std::string& defect) { throw Error(ErrorKind::bad_input, "cone decomposition: " + defect); };
    if (h != patches.patch_size() || layout.regions != patches.regions().count())
        fail("the layout (block width " + std::to_string(h) + ", " + std::to_string(layout.regions) +
             " regions) does not match the patches (" + std::to_string(patches.patch_size()) + ", " +
             std::to_string(patches.regions().count()) + ")");
    if (layout.patterns != static_cast<int>(patterns.count()) || patterns.generators.rows() != layout.patterns ||
        patterns.generators.cols() != h)
        fail("the layout has " + std::to_string(layout.patterns) + " patterns, the sign patterns " +
             std::to_string(patterns.count()) + " with " + std::to_string(patterns.generators.rows()) + " x " +
             std::to_string(patterns.generators.cols()) + " generators");
    if (patterns.rows != static_cast<std::size_t>(patches.samples()) * static_cast<std::size_t>(patches.positions()))
        fail("the sign patterns cover " + std::to_string(patterns.rows) + " rows, the patch matrix has " +
             std::to_string(static_cast<std::size_t>(patches.samples()) * patches.positions()));
    if (weights.rows() != static_cast<Index>(layout.blocks()) * h || weights.cols() < 1)
        fail("the weights are " + std::to_string(weights.rows()) + " x " + std::to_string(weights.cols()) +
             ", the layout needs " + std::to_string(static_cast<Index>(layout.blocks()) * h) + " rows");
    if (!weights.allFinite()) fail("the weights are not finite");

    // Nonzero groups in a fixed order (block, class).
    std::vector<std::pair<int, int>> groups;
    for (int b = 0; b < layout.blocks(); ++b)
        for (Index c = 0; c < weights.cols(); ++c)
            if ((weights.block(static_cast<Index>(b) * h, c, h, 1).array() != 0.0f).any())
                groups.emplace_back(b, static_cast<int>(c));

    std::vector<GroupSplit> splits(groups.size());
    oneapi::tbb::parallel_for(std::size_t{0}, groups.size(), [&](std::size_t g) {
        const auto [block, label] = groups[g];
        const Eigen::VectorXd u = weights.block(static_cast<Index>(block) * h, label, h, 1).cast<double>();
        splits[g] = split_group(patches, patterns, block / layout.regions, block % layout.regions, u, settings);
    });

    ConeDecomposition result;
    result.positive = RowMatrixD::Zero(weights.rows(), weights.cols());
    result.negative = RowMatrixD::Zero(weights.rows(), weights.cols());
    ConeDecompositionReport& report = result.report;
    for (std::size_t g = 0; g < groups.size(); ++g) {
        const auto [block, label] = groups[g];
        const GroupSplit& split = splits[g];
        if (split.failure)
            fail("pattern " + std::to_string(block / layout.regions) + ", region " +
                 std::to_string(block % layout.regions) + ", class " + std::to_string(label) +
                 ": no split into two cone filters (" + *split.failure +
                 "; degenerate data: use sampled Gaussian patterns or the gated activation)");
        result.positive.block(static_cast<Index>(block) * h, label, h, 1) = split.v;
        result.negative.block(static_cast<Index>(block) * h, label, h, 1) = split.w;
        ++report.groups;
        report.inside_cone += split.inside_cone ? 1 : 0;
        report.negated_inside += split.negated_inside ? 1 : 0;
        report.closed_form += split.closed_form ? 1 : 0;
        report.gated_norm += weights.block(static_cast<Index>(block) * h, label, h, 1).cast<double>().norm();
        report.split_norm += split.v.norm() + split.w.norm();
        report.max_violation = std::max(report.max_violation, split.violation);
    }
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

DecomposedModel recover_cnn_by_cone_decomposition(const ConvexFeatures& layout, const SignPatterns& patterns,
                                                  const RowMatrixF& weights, const PatchMatrices& patches,
                                                  std::vector<std::string> class_names,
                                                  const Normalization& normalization,
                                                  const ConeDecompositionSettings& settings) {
    ConeDecomposition split = decompose_into_cones(layout, patches, patterns, weights, settings);
    DecomposedModel result;
    result.model = recover_cone_cnn(layout, split.positive, split.negative, patches, std::move(class_names), normalization);
    result.report = split.report;
    return result;
}

}  // namespace cvxcnn
