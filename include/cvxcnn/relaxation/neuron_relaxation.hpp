// The single-neuron convex relaxation (Ergen & Pilanci, "Convex Optimization for Shallow
// Neural Networks", Allerton 2019; seed 003) and its one-neuron-per-output extension.
//
// Fitting one ReLU neuron to nonnegative targets y (n samples, rows x_i of X),
//   f(w) = (1/(2n)) sum_i ((x_i . w)_+ - y_i)^2,
// is non-convex: on a sample with y_i > 0 the term is flat for x_i . w < 0. The relaxation
// replaces (x_i . w)_+ by x_i . w on exactly those samples:
//   g(w) = (1/(2n)) [ sum_{y_i > 0} (x_i . w - y_i)^2 + sum_{y_i = 0} ((x_i . w)_+)^2 ]
// (both pieces convex, g is L-smooth with L = ||X||_2^2 / n). Facts used and tested:
//   - g(w) = f(w) + r(w) with r(w) = (1/(2n)) sum_{y_i > 0} ((x_i . w)_-^2 + 2 y_i (x_i . w)_-) >= 0
//     ((t - y)^2 - ((t)_+ - y)^2 for t < 0 < y): the relaxation is the original loss plus a
//     regularizer that penalizes negative pre-activations on samples the neuron must fire on,
//     and vanishes wherever the neuron is active on all of them.
//   - Planted model y = (X w*)_+: g(w*) = f(w*) = 0 = min g, so the relaxation keeps the
//     global minimizer; it is the unique one when the samples with x_i . w* > 0 span R^d
//     (then g(w) = 0 forces x_i . w = x_i . w* on them). Gradient descent on the convex g finds
//     it from any start, where gradient descent on f can stall (dead neuron, f flat).
//   - Since g >= f everywhere, a point with small g has at least as small an original loss.
// Multi-neuron extension: a one-hidden-layer network whose neuron j feeds output j only
// (targets Y, n x m, nonnegative) decouples into m relaxations, one per column; with a
// planted Y = (X W*)_+ each column recovers its neuron. (The paper's own multi-neuron
// extension for a shared output was not retrieved; this is the one cvxcnn implements.)
//
// Solver: Nesterov-accelerated gradient descent with step 1/L (L from power iteration on
// X^T X / n, plus the ridge), gradient-mapping restart; stops when ||grad g|| <= tol *
// max(||grad g(w0)||, tiny) or after max_iters. Double precision throughout.
#pragma once

#include <vector>

#include <Eigen/Core>

#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

/// f(w) = (1/(2n)) sum ((x_i . w)_+ - y_i)^2. Throws cvxcnn::Error (bad_input) on size mismatch.
[[nodiscard]] double neuron_loss(const RowMatrixD& x, const Eigen::VectorXd& y, const Eigen::VectorXd& w);
/// g(w), the relaxation above (y must be >= 0: throws cvxcnn::Error (bad_input) otherwise).
[[nodiscard]] double relaxed_neuron_loss(const RowMatrixD& x, const Eigen::VectorXd& y, const Eigen::VectorXd& w);

struct RelaxationSettings {
    int max_iters = 10000;   ///< gradient steps, >= 1 (--max-iters)
    double tol = 1e-8;       ///< relative gradient norm at which to stop, > 0 (--tol)
    double ridge = 0.0;      ///< optional (ridge/2) ||w||^2 added to g, >= 0 (--beta)
    bool accelerated = true; ///< Nesterov momentum (false: plain gradient descent)
    void validate() const;   ///< throws cvxcnn::Error (bad_input) naming the option
};

struct RelaxationResult {
    Eigen::VectorXd weights;     ///< w
    double relaxed = 0.0;        ///< g(w) (+ ridge term)
    double loss = 0.0;           ///< f(w), the original non-convex loss
    double gradient_norm = 0.0;  ///< ||grad g(w)||
    int iterations = 0;
    bool converged = false;      ///< the tolerance was reached
};

/// Minimizes g from w = 0 (or from `start` when it has the right size).
[[nodiscard]] RelaxationResult solve_neuron_relaxation(const RowMatrixD& x, const Eigen::VectorXd& y,
                                                       const RelaxationSettings& settings = {},
                                                       const Eigen::VectorXd& start = {});

/// Plain gradient descent on the non-convex f from `start` with the same step 1/L
/// (relu'(0) = 0): the baseline the paper compares the relaxation against.
[[nodiscard]] RelaxationResult neuron_gradient_descent(const RowMatrixD& x, const Eigen::VectorXd& y,
                                                       const Eigen::VectorXd& start, int iterations);

/// The multi-neuron extension: column j of `targets` (n x m, >= 0) fit by neuron j; the
/// result's weights are the d x m matrix of the neurons (column j = w_j).
struct MultiRelaxationResult {
    RowMatrixD weights;                  ///< d x m
    std::vector<RelaxationResult> neurons;
};
[[nodiscard]] MultiRelaxationResult solve_multi_neuron_relaxation(const RowMatrixD& x, const RowMatrixD& targets,
                                                                  const RelaxationSettings& settings = {});

}  // namespace cvxcnn
