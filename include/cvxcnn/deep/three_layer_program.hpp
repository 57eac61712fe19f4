// The three-layer convex program: `cvxcnn train --depth 3`. Same pipeline as the two-layer
// program (patches -> sign patterns -> convex program -> solver -> recovered CNN), with
// sign patterns taken in PAIRS, one per hidden layer (Ergen & Pilanci, "Global
// optimality beyond two layers", ICML 2021; SOLVERS.md sections 1-2).
//
// Architecture (a family of parallel three-layer sub-networks, each feeding one class c
// and one pooling region r; sum pooling; the model file stores average pooling with the
// output weight scaled by |r|, as the two-layer recovery does):
//   f_c(x) = sum_j c_j sum_{k in r_j} ( sum_q a_jq (X_k u_jq)_+ )_+        c_j in [-1, 1]
// first layer u_jq (conv filters), second layer a_jq (a 1x1 convolution, hidden_weight),
// third layer c_j (fc_weight / |r|). Objective:
//   L(f) + (beta/2) sum_jq (||u_jq||^2 + a_jq^2)          subject to |c_j| <= 1.
// Why this regularizer: the network is homogeneous of degree 3 in (u, a, c), so plain
// weight decay on all three layers is not equivalent to any norm of the function (its
// rescaling minimum is a 2/3-power). Weight decay on the two inner layers with the last
// layer in [-1, 1] is: rescaling u -> t u, a -> a / t gives beta sum |a| ||u||, and
// putting |c_j| into the first layer gives the path norm beta sum_jq ||v_jq||,
// v_jq = |c_j a_jq| u_jq, with f_c = sum_j sign(c_j) sum_k (sum_q sign(a_jq) (X_k v_jq)_+)_+.
//
// Convex program. With first-layer patterns D1_i (of the stacked patch rows, as the
// two-layer program) and second-layer patterns D2_l (any 0/1 pattern of the same rows),
// variables v_{r,s,l,i,c}, w_{r,s,l,i,c} in R^h for region r, output sign s = +-1, pattern
// pair (i, l), class c:
//   minimize    L(Z) + beta * sum (||v|| + ||w||)
//   Z_c       = sum_{r,s,l} s sum_{k in r} D2_{l,k} y_{r,s,l,c,k},
//   y_{r,s,l,c,k} = sum_i D1_{i,k} X_k (v_{r,s,l,i,c} - w_{r,s,l,i,c})       (hidden pre-activation)
//   subject to  (2 D1_{i,k} - I) X_k v >= 0,  (2 D1_{i,k} - I) X_k w >= 0    (first-layer cones)
//               (2 D2_{l,k} - I) y_{r,s,l,c,k} >= 0                          (second-layer cone)
// for k in r. Network -> program: merge the first-layer neurons of a sub-network that share
// a pattern and a sign of a (the cones are convex, the norm is subadditive), then the
// sub-networks sharing (r, s, l, c) (the second-layer constraint is linear in y): a
// feasible point with the same outputs and no larger penalty. Program -> network
// (recovery, closed form): every (r, s, l, c) with a nonzero block is one hidden unit
// (one sub-network), output weight c_j = s (fc_weight s |r| on class c, region r); every
// nonzero block v (w) is one first-layer filter v / sqrt(||v||) with hidden weight
// +sqrt(||v||) (-sqrt(||w||)). On feasible points the network's outputs are Z and its
// regularizer is beta * sum (||v|| + ||w||): the optimal values are equal when the
// patterns are complete (every cell of the first layer's arrangement, every nonzero 0/1
// pattern of the second layer), and any subset of patterns gives networks of the family
// (an upper bound). Tests: tests/deep/three_layer_duality_test.cpp.
//
// Solver: the augmented Lagrangian of solvers/cone_constrained.hpp (same settings and
// report, ConeSolverSettings / ConeSolveInfo), FISTA inner solves with group
// soft-thresholding, multipliers on both kinds of cone rows. The second-layer rows couple
// the 2 P1 blocks of a hidden unit, which is why this is its own program rather than a
// ConeConstrainedProblem (whose cones are per block). Dual bound: for any Theta and
// multipliers mu >= 0 with ||(M^T Theta - A^T mu)_g|| <= beta for every group g (M the
// logits map, A all cone rows), P >= -L*(Theta); the solver takes the multipliers of its
// last multiplier step and Theta = s dL/dZ with s scaling the residual into the ball.
//
// Everything is dense and double (the cone rows of every region are stored): this is for
// small problems, n*K*(P1 + P2) up to about 1e6, like the two-layer exact program.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cvxcnn/model/model.hpp"
#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/patterns/sign_patterns.hpp"
#include "cvxcnn/solvers/cone_constrained.hpp"
#include "cvxcnn/solvers/group_lasso.hpp"
#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

// ---- pattern pairs ----------------------------------------------------------------------------

/// The sign patterns of both hidden layers over the N = n*K stacked patch rows (row k*n + j
/// is sample j at position k, as PatchMatrices::stacked()).
struct PatternPairs {
    SignPatterns first;   ///< D1_i = 1[M g_i >= 0], with their generators g_i
    /// D2_l: 0/1 patterns of the hidden pre-activations. Not the pattern of one hyperplane,
    /// so `generators` has no columns.
    SignPatterns second;
    /// Every first-layer cell and every nonzero second-layer pattern: the program is then
    /// exactly the three-layer network problem (otherwise a restriction of it).
    bool complete = false;

    [[nodiscard]] std::size_t pairs() const noexcept { return first.count() * second.count(); }
};

struct PairEnumerationLimits {
    int max_rows = 16;                   ///< N = n*K: 2^N - 1 second-layer patterns
    std::size_t max_pairs = 1'000'000;   ///< P1 * P2
};

/// Every pattern pair: the first-layer cells of the patches projected to `rank`
/// (enumerate_sign_patterns; the all-zero pattern dropped) and all 2^N - 1 nonzero 0/1
/// patterns of the N rows. `complete` when the projection loses nothing (relative residual
/// <= 1e-6). Throws cvxcnn::Error (limit, naming --rank) when N > max_rows or the pairs
/// exceed max_pairs; bad_input for a rank outside 1..h.
[[nodiscard]] PatternPairs enumerate_pattern_pairs(const PatchMatrices& patches, int rank,
                                                   const PairEnumerationLimits& limits = {});

struct PairSamplingOptions {
    int first = 8;            ///< P1 first-layer generators drawn (N(0, I)), >= 1
    int second = 8;           ///< P2 second-layer patterns drawn, >= 1
    /// Each second-layer pattern is that of a random sub-network's hidden pre-activation,
    /// 1[sum_q s_q (M g_q)_+ >= 0] with `terms` Gaussian filters g_q and random signs s_q:
    /// realizable patterns, unlike uniform 0/1 draws, which a ReLU layer rarely produces.
    int terms = 3;
    std::uint64_t seed = 0;
};

/// Sampled pairs (duplicates and all-zero patterns dropped; `complete` false). Same seed and
/// data -> same patterns. Throws cvxcnn::Error (bad_input) for counts < 1.
[[nodiscard]] PatternPairs sample_pattern_pairs(const PatchMatrices& patches, const PairSamplingOptions& options);

// ---- the program --------------------------------------------------------------------------------

/// A view of one program (nothing is copied; the referenced objects must outlive the calls).
struct ThreeLayerProblem {
    const PatchMatrices& patches;
    const PatternPairs& patterns;
    std::span<const std::int32_t> labels;  ///< n labels in [0, classes)
    int classes = 0;
    Loss loss = Loss::squared;

    /// Throws cvxcnn::Error (bad_input) for inconsistent sizes, labels out of range or an
    /// activation other than relu.
    void validate() const;
};

/// Where the variables live. Weights are one (blocks * h) x classes matrix; block
///   b = (((r * 2 + s) * P2 + l) * 2 + part) * P1 + i,   s: 0 = output +1, 1 = output -1;
///   part: 0 = v (hidden weight > 0), 1 = w (hidden weight < 0)
/// occupies rows [b h, (b+1) h); group (b, c) is those rows of column c. The 2 P1 blocks of
/// one (r, s, l) are contiguous: with a class, they are one hidden unit.
struct ThreeLayerLayout {
    int regions = 0;      ///< R
    int first = 0;        ///< P1
    int second = 0;       ///< P2
    int block_width = 0;  ///< h
    int classes = 0;

    [[nodiscard]] int units() const noexcept { return regions * 2 * second; }  ///< hidden-unit slots per class
    [[nodiscard]] int blocks() const noexcept { return units() * 2 * first; }
    [[nodiscard]] Eigen::Index rows() const noexcept { return static_cast<Eigen::Index>(blocks()) * block_width; }
    [[nodiscard]] int unit(int region, int sign, int pattern2) const noexcept {
        return (region * 2 + sign) * second + pattern2;
    }
    [[nodiscard]] int block(int unit_index, int part, int pattern1) const noexcept {
        return (unit_index * 2 + part) * first + pattern1;
    }
};
[[nodiscard]] ThreeLayerLayout layout_of(const ThreeLayerProblem& problem);

/// The program and the recovered network at given weights (any weights, feasible or not).
struct ThreeLayerEvaluation {
    RowMatrixD logits;              ///< Z of the convex program, n x C
    double loss = 0.0;              ///< L(Z)
    double penalty = 0.0;           ///< sum (||v|| + ||w||)
    double objective = 0.0;         ///< L(Z) + beta * penalty
    RowMatrixD network_logits;      ///< outputs of the recovered network (real ReLUs), n x C
    double network_objective = 0.0; ///< L(network) + beta * penalty: its non-convex objective
    /// Largest violation of a cone row (rows scaled to unit length), divided by the largest
    /// group norm; 0 on feasible weights, where network_logits == logits.
    double violation = 0.0;
    int active_groups = 0;          ///< nonzero groups (b, c)
};
/// Throws cvxcnn::Error (bad_input) for an invalid problem, beta or weights of the wrong size.
[[nodiscard]] ThreeLayerEvaluation evaluate_three_layer(const ThreeLayerProblem& problem, double beta,
                                                        const RowMatrixD& weights);

/// max over groups of ||(M^T dL/dZ(0))_g||: with beta at or above it, 0 is optimal (the
/// scale of beta, as beta_max of the two-layer program).
[[nodiscard]] double three_layer_beta_max(const ThreeLayerProblem& problem);

struct ThreeLayerSolveInfo {
    /// The augmented-Lagrangian report. primal = P at the returned iterate (not projected:
    /// the coupled cones have no cheap projection), violation = max_violation = its
    /// relative cone violation; dual = the Lagrangian lower bound on the program's optimum.
    ConeSolveInfo solve;
    /// The recovered network's objective at the returned weights. With complete patterns
    /// it is >= the optimum, so network_objective - dual certifies the network itself.
    double network_objective = 0.0;
    double network_rel_gap = 0.0;  ///< (network_objective - dual) / network_objective
};

/// Solves the program from `weights` (layout rows x classes; zeros for a cold start) and
/// leaves the last iterate there. Stops when the relative gap and the relative violation are
/// within settings.rel_gap_tol and settings.feasibility_tol, or at a budget. TBB-parallel
/// over fixed hidden units and blocks: the same result for any thread count. `on_outer`
/// (optional) is called after every outer step with the report so far.
/// Throws cvxcnn::Error (bad_input) for invalid settings, problem or warm start.
ThreeLayerSolveInfo solve_three_layer(const ThreeLayerProblem& problem, const ConeSolverSettings& settings,
                                      RowMatrixD& weights,
                                      const std::function<void(const ThreeLayerSolveInfo&)>& on_outer = {});

// ---- recovery -------------------------------------------------------------------------------------

/// The three-layer CNN of the weights (see the top of this file): one hidden unit per
/// (region, sign, second-layer pattern, class) with a nonzero block, one filter per nonzero
/// block, in layout order. Architecture and input from `patches` (activation relu).
[[nodiscard]] Model recover_three_layer_cnn(const ThreeLayerProblem& problem, const RowMatrixD& weights,
                                            std::vector<std::string> class_names, const Normalization& normalization);

/// The non-convex regularizer of a three-layer model, (1/2)(||conv_weight||^2 +
/// ||hidden_weight||^2), and its largest last-layer weight in the sum-pooling
/// parametrization, max |fc_weight[c, j, r]| / |r| (the family requires <= 1).
struct ThreeLayerRegularizer {
    double weight_decay = 0.0;
    double max_output_weight = 0.0;
};
/// Throws cvxcnn::Error (bad_input) for a model without a hidden layer.
[[nodiscard]] ThreeLayerRegularizer three_layer_regularizer(const Model& model, const PoolingRegions& regions);

/// JSON of a solve (the cone report plus the network's objective and gap).
void to_json(nlohmann::json& json, const ThreeLayerSolveInfo& info);

}  // namespace cvxcnn
