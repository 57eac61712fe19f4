// Cone decomposition: from a gated solution to a ReLU (leaky ReLU, abs) network, the
// recovery stage of the pipeline at scale
//   ... -> gated solve on activation features -> **cone decomposition** -> recovered CNN.
//
// The gated program on the features of an activation (convex_features.hpp, M = D, aI +
// (1-a)D or 2D - I) is unconstrained. A group u = U_{i,r,c} of its solution is split as
//   u = v - w,   v, w in K_{i,r} = {x : S_{i,k} X_k x >= 0 for k in r},  S = 2 D_{i,k} - I,
// so that the two un-gated filters v (output +) and w (output -) reproduce the group's
// output exactly: on the cone the activation is linear, sigma(X_k v) - sigma(X_k w) =
// M_{i,k} X_k (v - w) = M_{i,k} X_k u (Mishkin et al., ICML 2022, "cone decomposition";
// SOLVERS.md 5.5). Only the positions of region r constrain v and w: the recovered filters
// feed region r alone. A split exists whenever K_{i,r} has an interior point, e.g. the
// gate g_i when no row is exactly on its hyperplane: w = t g_i with
// t = max_j max(0, -s_j x_j.u) / (s_j x_j.g_i).
//
// The split changes the regularizer from ||u|| to ||v|| + ||w|| >= ||u||; here it is made
// as small as possible: min ||v|| + ||w|| over the splits is found by majorize-minimize,
// each step a Euclidean projection of -theta u onto the polyhedron {w : s_j x_j.w >=
// max(0, -s_j x_j.u)} (theta = ||w|| / (||v|| + ||w||) of the previous step, 1/2 first:
// the projection minimizes ||v||^2/||v_old|| + ||w||^2/||w_old||), solved exactly by the
// active-set projection of solvers/cone_constrained.hpp. The constraint rows (n * |r| per
// group) are never stored; h is small.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cvxcnn/model/model.hpp"
#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/patterns/sign_patterns.hpp"
#include "cvxcnn/problem/convex_features.hpp"
#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

struct ConeDecompositionSettings {
    /// Accepted violation of a constraint s_j x_j.w >= t_j with x_j scaled to unit length,
    /// relative to ||u||.
    double feasibility_tol = 1e-12;
    int max_refinements = 8;        ///< projections per group (majorize-minimize steps), >= 1
    double refinement_tol = 1e-4;   ///< stop when ||v|| + ||w|| fell by less than this fraction

    /// Throws cvxcnn::Error (bad_input) for values outside the ranges above.
    void validate() const;
};

struct ConeDecompositionReport {
    int groups = 0;            ///< nonzero groups u split
    int inside_cone = 0;       ///< of them already in their cone (v = u, w = 0)
    int negated_inside = 0;    ///< of them with -u in the cone (v = 0, w = -u)
    int closed_form = 0;       ///< of them split by w = t g_i because the projection failed
    double gated_norm = 0.0;   ///< sum ||u||
    double split_norm = 0.0;   ///< sum ||v|| + ||w|| (>= gated_norm)
    /// max over groups and rows of (-s_j x_j.v)_+ and (-s_j x_j.w)_+ with x_j of unit
    /// length, divided by ||v|| + ||w||: a relative cone violation (rounding level).
    double max_violation = 0.0;
    double seconds = 0.0;

    /// split_norm / gated_norm: how much the exact network's regularizer exceeds the gated one.
    [[nodiscard]] double norm_ratio() const noexcept { return gated_norm > 0.0 ? split_norm / gated_norm : 1.0; }
};

/// JSON (nlohmann) of the report, norm_ratio included, for the model file and --json.
void to_json(nlohmann::json& json, const ConeDecompositionReport& report);

struct ConeDecomposition {
    RowMatrixD positive;  ///< V, (P*R*h) x classes
    RowMatrixD negative;  ///< W, likewise; V - W = U
    ConeDecompositionReport report;
};

/// Splits every nonzero group of the gated solution `weights` ((P*R*h) x classes). The
/// cones are those of the pattern bits `patterns` (the ones `layout` was built from;
/// computed on `patches`). TBB-parallel over groups, each group alone, so the result does
/// not depend on the thread count. Throws cvxcnn::Error: bad_input for inconsistent
/// sizes or settings, and, naming the pattern, region and class, when a group has no
/// split (its cone has an empty interior: degenerate data, e.g. a row and its negative
/// both on the pattern's hyperplane).
[[nodiscard]] ConeDecomposition decompose_into_cones(const ConvexFeatures& layout, const PatchMatrices& patches,
                                                     const SignPatterns& patterns, const RowMatrixF& weights,
                                                     const ConeDecompositionSettings& settings = {});

struct DecomposedModel {
    Model model;
    ConeDecompositionReport report;
};

/// decompose_into_cones, then recover_cone_cnn (recover/cnn_from_convex.hpp): the ReLU
/// (leaky, abs) CNN of `patches.architecture()` whose outputs on the training patches equal
/// the gated model's F U, with up to two filters per nonzero group
/// (2 * groups - inside_cone - negated_inside). The layout must have
/// been built for that activation (convex_features.hpp). Throws as both.
[[nodiscard]] DecomposedModel recover_cnn_by_cone_decomposition(const ConvexFeatures& layout, const SignPatterns& patterns,
                                                                const RowMatrixF& weights, const PatchMatrices& patches,
                                                                std::vector<std::string> class_names,
                                                                const Normalization& normalization,
                                                                const ConeDecompositionSettings& settings = {});

}  // namespace cvxcnn
