#include "cvxcnn/relaxation/neuron_relaxation.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using Index = Eigen::Index;

void check_sizes(const RowMatrixD& x, const Eigen::VectorXd& y, const Eigen::VectorXd& w) {
    if (x.rows() == 0 || x.cols() == 0) throw Error(ErrorKind::bad_input, "neuron relaxation: empty data");
    if (y.size() != x.rows() || w.size() != x.cols())
        throw Error(ErrorKind::bad_input, "neuron relaxation: " + std::to_string(x.rows()) + " x " +
                                              std::to_string(x.cols()) + " data with " + std::to_string(y.size()) +
                                              " targets and " + std::to_string(w.size()) + " weights");
}

void check_targets(const Eigen::VectorXd& y) {
    for (Index i = 0; i < y.size(); ++i)
        if (!(y(i) >= 0.0) || !std::isfinite(y(i)))
            throw Error(ErrorKind::bad_input, "neuron relaxation: target " + std::to_string(i) +
                                                  " is negative or not finite (a ReLU output is >= 0)");
}

/// Residual of g at pre-activations t = X w: r_i = t_i - y_i where y_i > 0, (t_i)_+ where
/// y_i = 0; g = ||r||^2 / (2n) and grad g = X^T r / n.
Eigen::VectorXd relaxed_residual(const Eigen::VectorXd& t, const Eigen::VectorXd& y) {
    Eigen::VectorXd r(t.size());
    for (Index i = 0; i < t.size(); ++i) r(i) = y(i) > 0.0 ? t(i) - y(i) : std::max(t(i), 0.0);
    return r;
}

/// Largest eigenvalue of X^T X / n by power iteration (an upper estimate: 5% margin).
double smoothness(const RowMatrixD& x) {
    Eigen::VectorXd v = Eigen::VectorXd::Ones(x.cols()) / std::sqrt(static_cast<double>(x.cols()));
    double lambda = 0.0;
    for (int k = 0; k < 100; ++k) {
        const Eigen::VectorXd next = x.transpose() * (x * v);
        const double norm = next.norm();
        if (norm == 0.0) return 1.0;  // X = 0: any step will do
        if (std::abs(norm - lambda) <= 1e-10 * norm) {
            lambda = norm;
            break;
        }
        lambda = norm;
        v = next / norm;
    }
    return 1.05 * lambda / static_cast<double>(x.rows());
}

}  // namespace

void RelaxationSettings::validate() const {
    if (max_iters < 1) throw Error(ErrorKind::bad_input, "--max-iters " + std::to_string(max_iters) + ": must be >= 1");
    if (!(tol > 0.0)) throw Error(ErrorKind::bad_input, "--tol: must be positive");
    if (!(ridge >= 0.0) || !std::isfinite(ridge)) throw Error(ErrorKind::bad_input, "--beta: must be >= 0");
}

double neuron_loss(const RowMatrixD& x, const Eigen::VectorXd& y, const Eigen::VectorXd& w) {
    check_sizes(x, y, w);
    const Eigen::VectorXd t = x * w;
    return (t.cwiseMax(0.0) - y).squaredNorm() / (2.0 * static_cast<double>(x.rows()));
}

double relaxed_neuron_loss(const RowMatrixD& x, const Eigen::VectorXd& y, const Eigen::VectorXd& w) {
    check_sizes(x, y, w);
    check_targets(y);
    return relaxed_residual(x * w, y).squaredNorm() / (2.0 * static_cast<double>(x.rows()));
}

RelaxationResult solve_neuron_relaxation(const RowMatrixD& x, const Eigen::VectorXd& y,
                                         const RelaxationSettings& settings, const Eigen::VectorXd& start) {
    settings.validate();
    const Eigen::VectorXd zero = Eigen::VectorXd::Zero(x.cols());
    Eigen::VectorXd w = start.size() == x.cols() ? start : zero;
    check_sizes(x, y, w);
    check_targets(y);
    const double n = static_cast<double>(x.rows());
    const double step = 1.0 / (smoothness(x) + settings.ridge);
    const auto gradient = [&](const Eigen::VectorXd& at) -> Eigen::VectorXd {
        return x.transpose() * relaxed_residual(x * at, y) / n + settings.ridge * at;
    };

    RelaxationResult result;
    Eigen::VectorXd v = w, previous = w;
    double t = 1.0;
    Eigen::VectorXd g = gradient(w);
    const double reference = std::max(g.norm(), std::numeric_limits<double>::min());
    int k = 0;
    for (; k < settings.max_iters; ++k) {
        if (g.norm() <= settings.tol * reference) {
            result.converged = true;
            break;
        }
        const Eigen::VectorXd gv = settings.accelerated ? gradient(v) : g;
        previous = w;
        w = (settings.accelerated ? v : w) - step * gv;
        if (settings.accelerated) {
            // Gradient-mapping restart (O'Donoghue & Candes): momentum pointing uphill is dropped.
            if ((v - w).dot(w - previous) > 0.0) {
                t = 1.0;
                v = w;
            } else {
                const double next = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * t * t));
                v = w + ((t - 1.0) / next) * (w - previous);
                t = next;
            }
        }
        g = gradient(w);
        if (!w.allFinite()) throw Error(ErrorKind::internal, "neuron relaxation: the iterate is not finite");
    }
    result.iterations = k;
    result.weights = w;
    result.gradient_norm = g.norm();
    result.relaxed = relaxed_neuron_loss(x, y, w) + 0.5 * settings.ridge * w.squaredNorm();
    result.loss = neuron_loss(x, y, w);
    if (!result.converged && g.norm() <= settings.tol * reference) result.converged = true;
    return result;
}

RelaxationResult neuron_gradient_descent(const RowMatrixD& x, const Eigen::VectorXd& y, const Eigen::VectorXd& start,
                                         int iterations) {
    check_sizes(x, y, start);
    const double n = static_cast<double>(x.rows());
    const double step = 1.0 / smoothness(x);
    Eigen::VectorXd w = start;
    const auto gradient = [&](const Eigen::VectorXd& at) -> Eigen::VectorXd {
        const Eigen::VectorXd t = x * at;
        Eigen::VectorXd r(t.size());
        for (Index i = 0; i < t.size(); ++i) r(i) = t(i) > 0.0 ? t(i) - y(i) : 0.0;  // relu'(0) = 0
        return x.transpose() * r / n;
    };
    for (int k = 0; k < iterations; ++k) w -= step * gradient(w);
    RelaxationResult result;
    result.weights = w;
    result.iterations = iterations;
    result.gradient_norm = gradient(w).norm();
    result.loss = neuron_loss(x, y, w);
    result.relaxed = std::numeric_limits<double>::quiet_NaN();
    return result;
}

MultiRelaxationResult solve_multi_neuron_relaxation(const RowMatrixD& x, const RowMatrixD& targets,
                                                    const RelaxationSettings& settings) {
    if (targets.rows() != x.rows())
        throw Error(ErrorKind::bad_input, "neuron relaxation: " + std::to_string(targets.rows()) + " target rows for " +
                                              std::to_string(x.rows()) + " samples");
    MultiRelaxationResult result;
    result.weights.resize(x.cols(), targets.cols());
    for (Index j = 0; j < targets.cols(); ++j) {
        result.neurons.push_back(solve_neuron_relaxation(x, targets.col(j), settings));
        result.weights.col(j) = result.neurons.back().weights;
    }
    return result;
}

}  // namespace cvxcnn
