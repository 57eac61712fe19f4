// The non-convex baseline: the same two-layer CNN the convex trainer recovers, trained
// directly by minibatch SGD with momentum or by Adam (`cvxcnn train --solver sgd|adam`).
//
// Same network, same objective, so the two trainers can be compared at the same beta:
//   objective = (1/n) sum_i loss_i + beta * (1/2) (||conv_weight||^2 + sum (fc_weight / |region|)^2)
// on the training split (network_gradient.hpp): the loss averaged over images as in the
// group-lasso solver, the weight decay in the sum-pooling scaling that makes a recovered
// convex model's penalty equal to the convex regularizer. Data handling is the convex
// trainer's: the same --val-split and --seed give the same split, normalization from the
// training split.
//
// Biases: the convex program has no bias terms (recovered models have conv_bias = 0 and
// fc_bias = 0), so neither does this network: biases stay 0, which keeps both trainers on
// one family of networks and the objectives comparable.
// Gated ReLU: the gate filters are fixed, drawn as the convex trainer draws its Gaussian
// generators (sample_sign_patterns: mt19937_64(seed), N(0, 1) floats row by row), so the
// width-m network gates with the first m generators the convex trainer would draw.
//
// Initialization (He): conv_weight ~ N(0, 2 / (C k k)) (a ReLU follows); fc_weight ~
// N(0, 1 / (m G G)) (nothing follows, so gain 1). Optimizers as PyTorch's SGD (momentum
// v = mu v + g, w -= lr v) and Adam (bias-corrected, epsilon 1e-8) with the weight decay
// in the gradient (coupled, not AdamW): both minimize the objective above.
//
// Parallel over each minibatch with TBB (network_gradient.hpp); the result is bitwise the
// same for any number of threads and fixed by the seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/architecture.hpp"
#include "cvxcnn/model/model.hpp"
#include "cvxcnn/solvers/group_lasso.hpp"

namespace cvxcnn {

enum class Optimizer {
    sgd,   ///< minibatch SGD with heavy-ball momentum
    adam,  ///< Adam (Kingma & Ba), beta1 0.9, beta2 0.999, epsilon 1e-8
};
[[nodiscard]] std::string_view to_string(Optimizer optimizer) noexcept;  ///< "sgd" | "adam"

struct SgdSettings {
    Architecture architecture;
    Optimizer optimizer = Optimizer::adam;
    int width = 64;                   ///< m, convolution filters (--width)
    double learning_rate = 1e-3;      ///< (--lr)
    int epochs = 10;                  ///< passes over the training split (--epochs)
    int batch_size = 128;             ///< images per step (--batch-size)
    double momentum = 0.9;            ///< SGD only (--momentum)
    /// Weight decay in the convex objective's scaling (--beta). 1e-4 is PyTorch's usual
    /// weight_decay on the convolution; on the output layer it is beta / |region|^2 per
    /// weight of the average-pooled features, i.e. almost none.
    double beta = 1e-4;
    Loss loss = Loss::cross_entropy;
    double val_split = 0.1;           ///< fraction held out for validation, 0 = none
    std::uint64_t seed = 0;           ///< split, initialization, gates, minibatch order
    double time_limit_s = 540.0;      ///< stop after the step that passes it; 0 = none
    /// Called after every epoch with a one-line summary.
    std::function<void(const std::string&)> on_progress;

    /// Throws cvxcnn::Error (bad_input) naming the option of the first invalid field.
    void validate() const;
};

/// How the run ended.
enum class SgdStatus {
    completed,           ///< all epochs
    time_limit_reached,  ///< stopped after the step that passed time_limit_s
    diverged,            ///< a non-finite loss or step; the model holds the last finite weights
};
[[nodiscard]] std::string_view to_string(SgdStatus status) noexcept;

struct SgdResult {
    Model model;
    SgdStatus status = SgdStatus::completed;
    double objective = 0.0;        ///< final regularized objective on the training split (exact, one full pass)
    double loss = 0.0;             ///< its loss part
    double train_accuracy = 0.0;   ///< of the final model on the training split
    double val_accuracy = -1.0;    ///< -1 without a validation split
    int epochs_done = 0;           ///< full epochs
    std::size_t steps = 0;         ///< optimizer steps
    std::size_t train_samples = 0;
    std::size_t val_samples = 0;
    double train_seconds = 0.0;    ///< spent in the optimization steps
    double seconds = 0.0;          ///< whole run, final evaluation included
    /// One entry per epoch: {epoch, objective (running: mean minibatch loss + penalty at
    /// the epoch's end), train_accuracy (running), val_accuracy, images_per_second, time_s}.
    nlohmann::json history = nlohmann::json::array();
};

/// Trains on `data` (raw pixel/255 images). Throws cvxcnn::Error for bad settings or data.
[[nodiscard]] SgdResult train_sgd_cnn(const Dataset& data, const SgdSettings& settings);

}  // namespace cvxcnn
