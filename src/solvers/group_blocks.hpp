// Operations on weights made of groups: column c of rows [b*h, (b+1)*h) is group (b, c).
// In double, for the solvers that keep their iterates in double (the cone-constrained and
// the three-layer programs); the group-lasso solver has its own, fused with its metric.
#pragma once

#include <algorithm>

#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn::detail {

/// sum over groups of ||group||.
inline double group_norm_sum(const RowMatrixD& x, int h) {
    double sum = 0.0;
    for (Eigen::Index b = 0; b < x.rows() / h; ++b)
        for (Eigen::Index c = 0; c < x.cols(); ++c) sum += x.block(b * h, c, h, 1).norm();
    return sum;
}

/// max over groups of ||group|| (0 for no groups).
inline double largest_group_norm(const RowMatrixD& x, int h) {
    double largest = 0.0;
    for (Eigen::Index b = 0; b < x.rows() / h; ++b)
        for (Eigen::Index c = 0; c < x.cols(); ++c) largest = std::max(largest, x.block(b * h, c, h, 1).norm());
    return largest;
}

/// Groups with a nonzero entry.
inline int count_active_groups(const RowMatrixD& x, int h) {
    int count = 0;
    for (Eigen::Index b = 0; b < x.rows() / h; ++b)
        for (Eigen::Index c = 0; c < x.cols(); ++c)
            if ((x.block(b * h, c, h, 1).array() != 0.0).any()) ++count;
    return count;
}

/// u = prox of eta beta sum ||group|| at v - eta grad: each group shrunk by eta beta.
inline void group_prox_step(const RowMatrixD& v, const RowMatrixD& grad, double eta, double beta, int h,
                            RowMatrixD& u) {
    u = v - eta * grad;
    for (Eigen::Index b = 0; b < u.rows() / h; ++b)
        for (Eigen::Index c = 0; c < u.cols(); ++c) {
            auto group = u.block(b * h, c, h, 1);
            const double norm = group.norm();
            group *= norm > eta * beta ? 1.0 - eta * beta / norm : 0.0;
        }
}

/// Max over groups of the minimum-norm subgradient of f + beta sum ||group|| (grad = the
/// gradient of f), divided by beta: 0 exactly at a minimizer.
inline double group_kkt_residual(const RowMatrixD& x, const RowMatrixD& grad, double beta, int h) {
    double worst = 0.0;
    for (Eigen::Index b = 0; b < x.rows() / h; ++b)
        for (Eigen::Index c = 0; c < x.cols(); ++c) {
            const auto group = x.block(b * h, c, h, 1);
            const auto g = grad.block(b * h, c, h, 1);
            const double norm = group.norm();
            const double residual = norm > 0.0 ? (g + (beta / norm) * group).norm() : std::max(0.0, g.norm() - beta);
            worst = std::max(worst, residual);
        }
    return worst / beta;
}

}  // namespace cvxcnn::detail
