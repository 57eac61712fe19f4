// Minibatch SGD with momentum and Adam on the two-layer CNN (see sgd_training.hpp).
#include "cvxcnn/train/sgd_training.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "cvxcnn/train/convex_training.hpp"
#include "cvxcnn/train/network_gradient.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Streams of their own, apart from the gate draws (which use the seed itself, as the
// convex trainer's pattern sampling) and the validation split.
constexpr std::uint64_t initialization_stream = 0x2545f4914f6cdd1dull;
constexpr std::uint64_t order_stream = 0xd1b54a32d192ed03ull;

constexpr double adam_beta1 = 0.9;
constexpr double adam_beta2 = 0.999;
constexpr double adam_epsilon = 1e-8;

void draw_weights(Model& model, std::uint64_t seed) {
    const int m = model.filters();
    const std::size_t h = model.conv_weight.data.size() / static_cast<std::size_t>(m);
    // As sample_sign_patterns draws Gaussian generators: one engine, rows in order.
    if (model.architecture.activation == Activation::gated_relu) {
        std::mt19937_64 engine(seed);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (float& g : model.gate_weight.data) g = normal(engine);
    }
    std::mt19937_64 engine(seed ^ initialization_stream);
    std::normal_distribution<float> conv(0.0f, std::sqrt(2.0f / static_cast<float>(h)));
    for (float& w : model.conv_weight.data) w = conv(engine);
    std::normal_distribution<float> fc(0.0f, std::sqrt(1.0f / static_cast<float>(model.features())));
    for (float& w : model.fc_weight.data) w = fc(engine);
}

bool all_finite(const std::vector<float>& values) {
    return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
}

// One optimizer's state for one tensor.
struct TensorState {
    std::vector<float> first;   // SGD: velocity; Adam: first moment
    std::vector<float> second;  // Adam: second moment
};

class OptimizerStep {
public:
    OptimizerStep(const SgdSettings& settings, const Model& model) : settings_(settings) {
        for (TensorState* state : {&conv_, &fc_}) {
            const std::size_t size = state == &conv_ ? model.conv_weight.data.size() : model.fc_weight.data.size();
            state->first.assign(size, 0.0f);
            if (settings.optimizer == Optimizer::adam) state->second.assign(size, 0.0f);
        }
    }

    void apply(Model& model, const NetworkGradient& gradient) {
        ++steps_;
        update(model.conv_weight.data, gradient.conv_weight, conv_);
        update(model.fc_weight.data, gradient.fc_weight, fc_);
    }

private:
    void update(std::vector<float>& weights, const std::vector<float>& gradient, TensorState& state) const {
        const auto lr = static_cast<float>(settings_.learning_rate);
        if (settings_.optimizer == Optimizer::sgd) {
            const auto mu = static_cast<float>(settings_.momentum);
            for (std::size_t i = 0; i < weights.size(); ++i) {
                state.first[i] = mu * state.first[i] + gradient[i];
                weights[i] -= lr * state.first[i];
            }
            return;
        }
        const double t = static_cast<double>(steps_);
        const auto step = static_cast<float>(settings_.learning_rate / (1.0 - std::pow(adam_beta1, t)));
        const auto inv_correction2 = static_cast<float>(1.0 / (1.0 - std::pow(adam_beta2, t)));
        const auto b1 = static_cast<float>(adam_beta1), b2 = static_cast<float>(adam_beta2);
        const auto eps = static_cast<float>(adam_epsilon);
        for (std::size_t i = 0; i < weights.size(); ++i) {
            const float g = gradient[i];
            state.first[i] = b1 * state.first[i] + (1.0f - b1) * g;
            state.second[i] = b2 * state.second[i] + (1.0f - b2) * g * g;
            weights[i] -= step * state.first[i] / (std::sqrt(state.second[i] * inv_correction2) + eps);
        }
    }

    const SgdSettings& settings_;
    TensorState conv_, fc_;
    std::size_t steps_ = 0;
};

std::string percent_or_dash(double fraction) {
    if (fraction < 0) return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%.2f%%", 100 * fraction);
    return text;
}

}  // namespace

std::string_view to_string(Optimizer optimizer) noexcept {
    return optimizer == Optimizer::sgd ? "sgd" : "adam";
}

std::string_view to_string(SgdStatus status) noexcept {
    switch (status) {
        case SgdStatus::completed: return "completed";
        case SgdStatus::time_limit_reached: return "time-limit-reached";
        case SgdStatus::diverged: return "diverged";
    }
    return "unknown";
}

void SgdSettings::validate() const {
    auto fail = [](const std::string& message) { throw Error(ErrorKind::bad_input, message); };
    if (width < 1 || width > 65536) fail("--width " + std::to_string(width) + ": must be in 1..65536");
    if (!(learning_rate > 0.0 && std::isfinite(learning_rate))) fail("--lr " + std::to_string(learning_rate) + ": must be positive");
    if (epochs < 1) fail("--epochs " + std::to_string(epochs) + ": must be at least 1");
    if (batch_size < 1) fail("--batch-size " + std::to_string(batch_size) + ": must be at least 1");
    if (!(momentum >= 0.0 && momentum < 1.0)) fail("--momentum " + std::to_string(momentum) + ": must be in [0, 1)");
    if (!(beta >= 0.0 && std::isfinite(beta))) fail("--beta " + std::to_string(beta) + ": must be >= 0");
    if (!(val_split >= 0.0 && val_split < 1.0)) fail("--val-split " + std::to_string(val_split) + ": must be in [0, 1)");
    if (!(time_limit_s >= 0.0)) fail("--time-limit: must be >= 0");
}

SgdResult train_sgd_cnn(const Dataset& data, const SgdSettings& settings) {
    const auto start = Clock::now();
    settings.validate();
    validate_for_input(settings.architecture, data.shape);
    const int classes = static_cast<int>(data.class_names.size());
    if (classes < 2)
        throw Error(ErrorKind::bad_input, "training needs at least 2 classes, the data has " + std::to_string(classes));
    if (data.images.size() != data.size() * data.shape.values())
        throw Error(ErrorKind::bad_input, "dataset holds " + std::to_string(data.images.size()) + " values but " +
                                              std::to_string(data.size()) + " labels of " + to_string(data.shape) +
                                              " images need " + std::to_string(data.size() * data.shape.values()));

    const auto [train_indices, val_indices, normalization] = split_for_training(data, settings.val_split, settings.seed);
    const NetworkImages train = NetworkImages::prepare(data, train_indices, normalization);
    const NetworkImages val = NetworkImages::prepare(data, val_indices, normalization);

    SgdResult result;
    result.train_samples = train.size();
    result.val_samples = val.size();
    Model& model = result.model;
    model = make_model(settings.architecture, data.shape, data.class_names, settings.width);
    model.normalization = normalization;
    draw_weights(model, settings.seed);

    NetworkEvaluator evaluator(model, settings.loss);
    OptimizerStep optimizer(settings, model);
    NetworkGradient gradient;
    std::vector<float> last_conv, last_fc;  // the weights before the step, kept in case it diverges
    std::vector<std::size_t> order(train.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::mt19937_64 order_engine(settings.seed ^ order_stream);
    const auto batch = static_cast<std::size_t>(settings.batch_size);

    auto accuracy_on = [&](const NetworkImages& images) {
        if (images.size() == 0) return -1.0;
        const LossSum sum = evaluator.evaluate(model, images);
        return static_cast<double>(sum.correct) / static_cast<double>(images.size());
    };

    double train_seconds = 0.0;
    bool stop = false;
    for (int epoch = 1; epoch <= settings.epochs && !stop; ++epoch) {
        const auto epoch_start = Clock::now();
        // Fisher-Yates by hand, as split_indices: std::shuffle's algorithm is unspecified.
        for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[order_engine() % i]);
        double loss_sum = 0.0;
        std::size_t correct = 0, seen = 0;
        for (std::size_t first = 0; first < order.size(); first += batch) {
            const std::size_t count = std::min(batch, order.size() - first);
            const std::span<const std::size_t> indices(order.data() + first, count);
            const LossSum sum = evaluator.evaluate(model, train, indices, &gradient);
            const auto scale = static_cast<float>(1.0 / static_cast<double>(count));
            for (float& g : gradient.conv_weight) g *= scale;
            for (float& g : gradient.fc_weight) g *= scale;
            add_weight_decay_gradient(model, settings.beta, gradient);
            last_conv = model.conv_weight.data;
            last_fc = model.fc_weight.data;
            if (std::isfinite(sum.loss)) optimizer.apply(model, gradient);
            if (!std::isfinite(sum.loss) || !all_finite(model.conv_weight.data) || !all_finite(model.fc_weight.data)) {
                model.conv_weight.data = last_conv;
                model.fc_weight.data = last_fc;
                result.status = SgdStatus::diverged;
                stop = true;
                break;
            }
            ++result.steps;
            loss_sum += sum.loss;
            correct += sum.correct;
            seen += count;
            if (settings.time_limit_s > 0 && seconds_since(start) >= settings.time_limit_s) {
                result.status = SgdStatus::time_limit_reached;
                stop = true;
                break;
            }
        }
        const double epoch_seconds = seconds_since(epoch_start);
        train_seconds += epoch_seconds;
        if (!stop) result.epochs_done = epoch;
        if (seen == 0) break;
        const double running_objective = loss_sum / static_cast<double>(seen) + settings.beta * weight_decay(model);
        const double running_accuracy = static_cast<double>(correct) / static_cast<double>(seen);
        const double val_accuracy = accuracy_on(val);
        const double images_per_second = static_cast<double>(seen) / std::max(epoch_seconds, 1e-9);
        result.history.push_back({{"epoch", epoch},
                                  {"images", seen},
                                  {"objective", running_objective},
                                  {"train_accuracy", running_accuracy},
                                  {"val_accuracy", val_accuracy},
                                  {"images_per_second", images_per_second},
                                  {"time_s", seconds_since(start)}});
        if (settings.on_progress) {
            char line[256];
            std::snprintf(line, sizeof line,
                          "epoch %d/%d  objective %.6g  train %s  val %s  %.0f images/s  %.0fs%s", epoch,
                          settings.epochs, running_objective, percent_or_dash(running_accuracy).c_str(),
                          percent_or_dash(val_accuracy).c_str(), images_per_second, seconds_since(start),
                          result.status == SgdStatus::completed ? "" : "  (stopped)");
            settings.on_progress(line);
        }
    }
    result.train_seconds = train_seconds;

    // The final objective, exactly: one pass over the whole training split.
    const LossSum final_sum = evaluator.evaluate(model, train);
    result.loss = final_sum.loss / static_cast<double>(train.size());
    const double decay = weight_decay(model);
    result.objective = result.loss + settings.beta * decay;
    result.train_accuracy = static_cast<double>(final_sum.correct) / static_cast<double>(train.size());
    result.val_accuracy = accuracy_on(val);
    result.seconds = seconds_since(start);

    nlohmann::json training = {
        {"method", std::string("non-convex two-layer CNN trained directly by ") +
                       (settings.optimizer == Optimizer::sgd ? "minibatch SGD with momentum" : "minibatch Adam")},
        {"solver", std::string(to_string(settings.optimizer))},
        {"loss", std::string(to_string(settings.loss))},
        {"beta", settings.beta},
        {"objective", result.objective},
        {"objective_definition", "(1/n) sum loss + beta/2 (||conv_weight||^2 + sum (fc_weight/|region|)^2) on the "
                                 "training split, the convex trainer's scaling; biases fixed at 0"},
        {"data_loss", result.loss},
        {"weight_decay", decay},
        {"status", std::string(to_string(result.status))},
        {"lr", settings.learning_rate},
        {"epochs", settings.epochs},
        {"epochs_done", result.epochs_done},
        {"steps", result.steps},
        {"width", settings.width},
        {"batch_size", settings.batch_size},
        {"filters", model.filters()},
        {"train_samples", result.train_samples},
        {"val_samples", result.val_samples},
        {"train_accuracy", result.train_accuracy},
        {"val_accuracy", result.val_accuracy},
        {"seed", settings.seed},
        {"train_time_s", result.train_seconds},
        {"time_s", result.seconds},
        {"history", result.history}};
    if (settings.optimizer == Optimizer::sgd)
        training["momentum"] = settings.momentum;
    else
        training["adam"] = {{"beta1", adam_beta1}, {"beta2", adam_beta2}, {"epsilon", adam_epsilon}};
    model.training = std::move(training);
    return result;
}

}  // namespace cvxcnn
