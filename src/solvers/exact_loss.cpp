// The losses in double (see exact_loss.hpp).
#include "cvxcnn/solvers/exact_loss.hpp"

#include <cmath>

namespace cvxcnn {
namespace {

using Index = Eigen::Index;

/// p = softmax(z_j); returns logsumexp(z_j).
double softmax_row(const RowMatrixD& z, Index j, Eigen::VectorXd& p) {
    const double top = z.row(j).maxCoeff();
    p = (z.row(j).array() - top).exp().transpose();
    const double sum = p.sum();
    p /= sum;
    return top + std::log(sum);
}

}  // namespace

double exact_loss(Loss loss, const RowMatrixD& z, std::span<const std::int32_t> labels, RowMatrixD* gradient) {
    const Index n = z.rows(), classes = z.cols();
    const double inv_n = 1.0 / static_cast<double>(n);
    if (gradient) gradient->resize(n, classes);
    Eigen::VectorXd p(classes);
    double sum = 0.0;
    for (Index j = 0; j < n; ++j) {
        const int y = labels[static_cast<std::size_t>(j)];
        if (loss == Loss::cross_entropy) {
            sum += softmax_row(z, j, p) - z(j, y);
            if (gradient) {
                gradient->row(j) = p.transpose() * inv_n;
                (*gradient)(j, y) -= inv_n;
            }
        } else {
            for (Index c = 0; c < classes; ++c) {
                const double r = z(j, c) - (c == y ? 1.0 : 0.0);
                sum += 0.5 * r * r;
                if (gradient) (*gradient)(j, c) = r * inv_n;
            }
        }
    }
    return sum * inv_n;
}

double exact_loss_dual(Loss loss, const RowMatrixD& z, std::span<const std::int32_t> labels, double s) {
    const Index n = z.rows(), classes = z.cols();
    const double nd = static_cast<double>(n);
    Eigen::VectorXd p(classes);
    double sum = 0.0;
    for (Index j = 0; j < n; ++j) {
        const int y = labels[static_cast<std::size_t>(j)];
        if (loss == Loss::cross_entropy) {
            (void)softmax_row(z, j, p);
            for (Index c = 0; c < classes; ++c) {
                const double q = s * p(c) + (c == y ? 1.0 - s : 0.0);
                if (q > 0.0) sum -= q * std::log(q);
            }
        } else {
            for (Index c = 0; c < classes; ++c) {
                const double theta = s * (z(j, c) - (c == y ? 1.0 : 0.0)) / nd;
                sum -= (c == y ? theta : 0.0) + 0.5 * nd * theta * theta;
            }
        }
    }
    return loss == Loss::cross_entropy ? sum / nd : sum;
}

double exact_loss_divergence(Loss loss, const RowMatrixD& z, const RowMatrixD& step) {
    const Index n = z.rows();
    if (loss == Loss::squared) return 0.5 * step.squaredNorm() / static_cast<double>(n);
    Eigen::VectorXd p(z.cols());
    double sum = 0.0;
    for (Index j = 0; j < n; ++j) {
        (void)softmax_row(z, j, p);
        const double mean = p.dot(step.row(j).transpose());
        double excess = 0.0;
        for (Index c = 0; c < z.cols(); ++c) excess += p(c) * std::expm1(step(j, c) - mean);
        sum += std::log1p(excess);
    }
    return sum / static_cast<double>(n);
}

}  // namespace cvxcnn
