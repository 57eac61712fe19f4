// The training losses of group_lasso.hpp evaluated in double, for the solvers whose
// certificates must resolve relative gaps far below float rounding (the exact
// cone-constrained program, the three-layer program). Z is n x C logits, labels in [0, C).
#pragma once

#include <cstdint>
#include <span>

#include "cvxcnn/solvers/group_lasso.hpp"
#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

/// L(Z), and dL/dZ when `gradient` is given (resized to n x C).
[[nodiscard]] double exact_loss(Loss loss, const RowMatrixD& z, std::span<const std::int32_t> labels,
                                RowMatrixD* gradient = nullptr);

/// -L*(s dL/dZ(Z)), s in [0, 1]: the dual objective at the scaled loss gradient
/// (SOLVERS.md 5.11). A lower bound on min L(A x) + R(x) (subject to any cone constraints
/// whose multipliers, scaled by s too, make the scaled gradient dual feasible).
///   cross-entropy: (1/n) sum_j H(s softmax(z_j) + (1 - s) e_{y_j})
///   squared:       -<Theta, Y> - (n/2) ||Theta||^2, Theta = s (Z - Y) / n
[[nodiscard]] double exact_loss_dual(Loss loss, const RowMatrixD& z, std::span<const std::int32_t> labels, double s);

/// L(Z + D) - L(Z) - <dL/dZ(Z), D> computed from D itself, without subtracting two values of
/// L: near an optimum that difference is below the rounding of L and a line search testing
/// it stalls. Squared: (1/2n) ||D||^2; cross-entropy: the softmax Bregman divergence
/// (1/n) sum_j log(sum_c p_c exp(x_c)), x = d_j - <p, d_j>, p = softmax(z_j).
[[nodiscard]] double exact_loss_divergence(Loss loss, const RowMatrixD& z, const RowMatrixD& step);

}  // namespace cvxcnn
