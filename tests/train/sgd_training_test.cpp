// The non-convex baseline: backpropagation against central differences, the forward pass
// against the reference engine, the objective's scaling against the convex trainer's,
// and training itself (descent, determinism, never below the convex lower bound).
#include "cvxcnn/train/sgd_training.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <oneapi/tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <random>

#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/patterns/sign_patterns.hpp"
#include "cvxcnn/train/convex_training.hpp"
#include "cvxcnn/train/network_gradient.hpp"
#include "export/test_models.hpp"
#include "test_support.hpp"

using namespace cvxcnn;

namespace {

Dataset bars(int per_class, unsigned seed) { return test::bar_images(per_class, seed); }

SgdSettings bars_settings(Optimizer optimizer) {
    SgdSettings settings;
    settings.architecture = parse_architecture("conv3x3s1p1-relu-pool2");
    settings.optimizer = optimizer;
    settings.width = 6;
    settings.learning_rate = optimizer == Optimizer::adam ? 1e-2 : 5e-2;
    settings.epochs = 30;
    settings.batch_size = 10;
    settings.beta = 1e-3;
    settings.val_split = 0.2;
    settings.seed = 5;
    settings.time_limit_s = 0;
    return settings;
}

// J = (1/n) sum loss + beta * weight_decay and its gradient, as the trainer computes them.
double objective_and_gradient(NetworkEvaluator& evaluator, const Model& model, const NetworkImages& images,
                              double beta, NetworkGradient* gradient) {
    const LossSum sum = evaluator.evaluate(model, images, gradient);
    const double n = static_cast<double>(images.size());
    if (gradient) {
        for (float& g : gradient->conv_weight) g = static_cast<float>(g / n);
        for (float& g : gradient->fc_weight) g = static_cast<float>(g / n);
        add_weight_decay_gradient(model, beta, *gradient);
    }
    return sum.loss / n + beta * weight_decay(model);
}

Model without_biases(Model model) {
    std::fill(model.conv_bias.data.begin(), model.conv_bias.data.end(), 0.0f);
    std::fill(model.fc_bias.data.begin(), model.fc_bias.data.end(), 0.0f);
    return model;
}

// Model bytes without the wall-clock fields.
std::vector<std::uint8_t> timeless_bytes(Model model) {
    for (const char* key : {"time_s", "train_time_s", "history"}) model.training.erase(key);
    return encode_model(model);
}

}  // namespace

// Stride 2, padding 1 on 9x8 images: a 5x4 map, whose 2x2 grid has bands of 2 and 3 rows.
// Float central differences with step 1e-3 on an objective of order 1 to 5 carry rounding
// errors of about 5 * 6e-8 / 2e-3 = 1.5e-4 (observed: at most 3e-4, squared loss), under
// the tolerance of 1e-3 + 1e-3 |g|; a wrong factor (a region size, a missed activation
// slope) shows as errors of order |g| (up to 2.8 here).
TEST(NetworkGradient, EqualsCentralDifferencesForEveryActivationAndLoss) {
    const ImageShape shape{2, 9, 8};
    const Dataset data = test::random_images(6, shape, 3, 3);
    for (const std::string& activation : test::all_activations)
        for (const Loss loss : {Loss::cross_entropy, Loss::squared}) {
            SCOPED_TRACE(activation + " " + std::string(to_string(loss)));
            const Model model = without_biases(test::random_model("conv3x3s2p1-" + activation + "-pool2", shape, 3, 3, 17));
            const NetworkImages images = NetworkImages::prepare(data, model.normalization);
            NetworkEvaluator evaluator(model, loss);
            const double beta = 0.05;
            NetworkGradient gradient;
            (void)objective_and_gradient(evaluator, model, images, beta, &gradient);

            double worst = 0.0, largest = 0.0;
            Model probe = model;
            for (Tensor* tensor : {&probe.conv_weight, &probe.fc_weight}) {
                const std::vector<float>& analytic =
                    tensor == &probe.conv_weight ? gradient.conv_weight : gradient.fc_weight;
                ASSERT_EQ(analytic.size(), tensor->data.size());
                for (std::size_t i = 0; i < tensor->data.size(); ++i) {
                    const float original = tensor->data[i];
                    const float step = 1e-3f;
                    tensor->data[i] = original + step;
                    const double up = objective_and_gradient(evaluator, probe, images, beta, nullptr);
                    tensor->data[i] = original - step;
                    const double down = objective_and_gradient(evaluator, probe, images, beta, nullptr);
                    tensor->data[i] = original;
                    const double numeric = (up - down) / (2.0 * step);
                    worst = std::max(worst, std::abs(numeric - analytic[i]));
                    largest = std::max(largest, std::abs(numeric));
                    EXPECT_NEAR(analytic[i], numeric, 1e-3 + 1e-3 * std::abs(numeric)) << "weight " << i;
                }
            }
            EXPECT_GT(largest, 1e-2) << "a vanishing gradient would pass trivially";
            std::cout << "[ gradient ] " << activation << " " << to_string(loss) << ": max |numeric - analytic| "
                      << worst << ", max |gradient| " << largest << "\n";
        }
}

TEST(NetworkGradient, ForwardPassEqualsTheReferenceEngine) {
    for (const ImageShape shape : {ImageShape{2, 9, 8}, ImageShape{3, 7, 7}})
        for (const std::string& activation : test::all_activations) {
            SCOPED_TRACE(activation);
            // Biases included: the forward pass runs any model, trained or not.
            const Model model = test::random_model("conv3x3s2p1-" + activation + "-pool2", shape, 5, 4, 23);
            const Dataset data = test::random_images(11, shape, 29, 4);
            NetworkEvaluator evaluator(model, Loss::cross_entropy);
            RowMatrixF logits;
            const LossSum sum = evaluator.evaluate(model, NetworkImages::prepare(data, model.normalization), nullptr, &logits);
            const RowMatrixF reference = reference_logits(model, data);
            ASSERT_EQ(logits.rows(), reference.rows());
            EXPECT_LE((logits - reference).cwiseAbs().maxCoeff(), 1e-5f * (1.0f + reference.cwiseAbs().maxCoeff()));
            const std::vector<std::int32_t> predicted = argmax_rows(reference);
            std::size_t correct = 0;
            for (std::size_t i = 0; i < predicted.size(); ++i) correct += predicted[i] == data.labels[i];
            EXPECT_EQ(sum.correct, correct);
        }
}

// "The same beta" means the same objective: on a model recovered from a convex solution,
// the network's loss plus beta * weight decay is the convex objective itself.
TEST(NetworkGradient, ObjectiveOfARecoveredConvexModelIsTheConvexObjective) {
    const Dataset data = bars(10, 4);
    for (const Loss loss : {Loss::cross_entropy, Loss::squared}) {
        TrainingSettings settings;
        settings.architecture = parse_architecture("conv3x3s1p1-gated-pool2");
        settings.patterns = 6;
        settings.seed = 3;
        settings.beta = 1e-2;
        settings.val_split = 0.0;  // the whole data is the training split, in order
        settings.loss = loss;
        const TrainingResult convex = train_convex_cnn(data, settings);
        ASSERT_GT(convex.model.filters(), 0);
        const NetworkObjective network = network_objective(convex.model, data, *settings.beta, loss);
        EXPECT_NEAR(network.objective, convex.solve.primal, 1e-5 * convex.solve.primal) << to_string(loss);
    }
}

TEST(SgdTraining, DecreasesTheObjectiveAndLearnsTheBars) {
    const Dataset data = bars(20, 1);
    for (const Optimizer optimizer : {Optimizer::sgd, Optimizer::adam}) {
        SCOPED_TRACE(std::string(to_string(optimizer)));
        SgdSettings settings = bars_settings(optimizer);
        settings.epochs = 1;
        const SgdResult first = train_sgd_cnn(data, settings);
        settings.epochs = 30;
        const SgdResult trained = train_sgd_cnn(data, settings);
        EXPECT_EQ(trained.status, SgdStatus::completed);
        EXPECT_EQ(trained.epochs_done, 30);
        EXPECT_LT(trained.objective, 0.5 * first.objective);
        EXPECT_GE(trained.train_accuracy, 0.95);
        // The recorded objective is the objective of the saved model on the training split.
        auto [train_indices, val_indices] = split_indices(data.size(), settings.val_split, settings.seed);
        const NetworkObjective check = network_objective(trained.model, subset(data, train_indices), settings.beta, settings.loss);
        EXPECT_NEAR(check.objective, trained.objective, 1e-9 * trained.objective);
        EXPECT_DOUBLE_EQ(trained.model.training["objective"].get<double>(), trained.objective);
        EXPECT_EQ(trained.model.training["solver"], to_string(optimizer));
        EXPECT_EQ(trained.model.training["width"], 6);
        EXPECT_EQ(trained.history.size(), 30u);
        // Biases are not trained: the convex family has none.
        for (const float b : trained.model.conv_bias.data) EXPECT_EQ(b, 0.0f);
        for (const float b : trained.model.fc_bias.data) EXPECT_EQ(b, 0.0f);
        // The saved model runs on the reference engine with the recorded accuracy.
        const Dataset val = subset(data, val_indices);
        const std::vector<std::int32_t> predicted = argmax_rows(reference_logits(trained.model, val));
        std::size_t correct = 0;
        for (std::size_t i = 0; i < predicted.size(); ++i) correct += predicted[i] == val.labels[i];
        EXPECT_DOUBLE_EQ(static_cast<double>(correct) / static_cast<double>(val.size()), trained.val_accuracy);
    }
}

TEST(SgdTraining, SameSeedSameModelAndThreadCountDoesNotMatter) {
    const Dataset data = bars(12, 2);
    for (const Optimizer optimizer : {Optimizer::sgd, Optimizer::adam}) {
        SCOPED_TRACE(std::string(to_string(optimizer)));
        SgdSettings settings = bars_settings(optimizer);
        settings.architecture = parse_architecture("conv3x3s1p1-gated-pool2");
        settings.epochs = 4;
        std::vector<std::uint8_t> one, two, again;
        {
            oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 1);
            one = timeless_bytes(train_sgd_cnn(data, settings).model);
        }
        {
            oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 2);
            two = timeless_bytes(train_sgd_cnn(data, settings).model);
            again = timeless_bytes(train_sgd_cnn(data, settings).model);
        }
        EXPECT_EQ(two, again) << "same seed, same model";
        // Fixed chunks summed in order: not just close, the same bits.
        EXPECT_EQ(one, two) << "1 and 2 threads";
        settings.seed = 6;
        EXPECT_NE(timeless_bytes(train_sgd_cnn(data, settings).model), two) << "the seed must matter";
    }
}

TEST(SgdTraining, GatesAreTheGeneratorsTheConvexTrainerDraws) {
    const Dataset data = bars(5, 8);
    SgdSettings settings = bars_settings(Optimizer::adam);
    settings.architecture = parse_architecture("conv3x3s1p1-gated-pool2");
    settings.epochs = 1;
    settings.seed = 42;
    const Model model = train_sgd_cnn(data, settings).model;
    // Gaussian generators do not depend on the data: any matrix of the patch width will do.
    const RowMatrixF patches = RowMatrixF::Random(500, 9);
    SamplingOptions sampling;
    sampling.count = settings.width;
    sampling.seed = settings.seed;
    sampling.drop_trivial = false;
    const SampledPatterns sampled = sample_sign_patterns(patches, sampling);
    ASSERT_EQ(sampled.patterns.count(), static_cast<std::size_t>(settings.width)) << "no duplicate pattern expected";
    const Eigen::Map<const RowMatrixF> gates(model.gate_weight.data.data(), settings.width, 9);
    EXPECT_EQ(RowMatrixF(gates), sampled.patterns.generators);
}

TEST(SgdTraining, TimeLimitStopsCleanlyAndDivergenceKeepsFiniteWeights) {
    const Dataset data = bars(20, 9);
    SgdSettings settings = bars_settings(Optimizer::sgd);
    settings.epochs = 1000000;
    settings.time_limit_s = 0.3;
    const SgdResult stopped = train_sgd_cnn(data, settings);
    EXPECT_EQ(stopped.status, SgdStatus::time_limit_reached);
    EXPECT_LT(stopped.epochs_done, settings.epochs);
    EXPECT_NO_THROW(validate(stopped.model));
    EXPECT_EQ(stopped.model.training["status"], "time-limit-reached");

    settings.time_limit_s = 0;
    settings.epochs = 50;
    settings.learning_rate = 1e6;
    settings.momentum = 0.99;
    settings.loss = Loss::squared;
    const SgdResult diverged = train_sgd_cnn(data, settings);
    EXPECT_EQ(diverged.status, SgdStatus::diverged);
    EXPECT_NO_THROW(validate(diverged.model)) << "the last finite weights are kept";
}

TEST(SgdTraining, RefusesBadSettings) {
    const Dataset data = bars(3, 1);
    const auto message = [&](auto change) {
        SgdSettings settings = bars_settings(Optimizer::adam);
        change(settings);
        try {
            (void)train_sgd_cnn(data, settings);
        } catch (const Error& error) {
            return std::string(error.what());
        }
        return std::string("no error");
    };
    EXPECT_EQ(message([](SgdSettings& s) { s.width = 0; }).rfind("--width 0", 0), 0u);
    EXPECT_EQ(message([](SgdSettings& s) { s.learning_rate = -1; }).rfind("--lr", 0), 0u);
    EXPECT_EQ(message([](SgdSettings& s) { s.epochs = 0; }).rfind("--epochs", 0), 0u);
    EXPECT_EQ(message([](SgdSettings& s) { s.batch_size = 0; }).rfind("--batch-size", 0), 0u);
    EXPECT_EQ(message([](SgdSettings& s) { s.momentum = 1.0; }).rfind("--momentum", 0), 0u);
    EXPECT_EQ(message([](SgdSettings& s) { s.beta = -1; }).rfind("--beta", 0), 0u);
}

// The convex program is a lower bound for every network of the family, whatever the
// training. The family here has a full linear layer (each filter feeds every class and
// region, as PyTorch's), while the convex program's groups are one (pattern, region,
// class) each: a filter u with output weights a costs the network beta ||u|| ||a||_2 at
// best (rescaling u and a) and its convex representation beta ||u|| ||a||_1 <= sqrt(H)
// times that, H = classes x regions. So the bound is the exact convex optimum at
// beta / sqrt(H), not at beta: with 2 classes the full layer can beat the one-class-per-
// filter optimum by up to sqrt(2). Data: the tiny problem of strong_duality_test.cpp, all
// sign patterns enumerated (--rank 3 = the patch width, so the program is exact).
TEST(SgdTraining, NeverBelowTheExactConvexOptimum) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset data;
    data.shape = {3, 1, 2};
    data.class_names = {"no", "yes"};
    for (int i = 0; i < 8; ++i) {
        float x[6];
        for (float& v : x) v = pixel(rng);
        data.images.insert(data.images.end(), x, x + 6);
        data.labels.push_back(x[0] + x[3] > x[4] + 0.4f ? 1 : 0);
    }
    const Architecture architecture = parse_architecture("conv1x1s1p0-relu-pool1");
    const int heads = 2 * 1;  // classes x regions
    for (const Loss loss : {Loss::squared, Loss::cross_entropy}) {
        SCOPED_TRACE(std::string(to_string(loss)));
        const double beta = 0.02;
        TrainingSettings convex;
        convex.architecture = architecture;
        convex.rank = 3;
        convex.beta = beta / std::sqrt(static_cast<double>(heads));
        convex.val_split = 0.0;
        convex.loss = loss;
        convex.rel_gap_tol = 1e-3;  // any dual value is a lower bound; the gap only tightens it
        const TrainingResult exact = train_convex_cnn(data, convex);
        ASSERT_EQ(exact.solve.status, SolverStatus::solved);
        ASSERT_EQ(exact.rank_residual, 0.0);
        const double lower_bound = exact.solve.dual;

        double best = std::numeric_limits<double>::infinity();
        for (std::uint64_t seed = 0; seed < 2; ++seed)
            for (const Optimizer optimizer : {Optimizer::sgd, Optimizer::adam}) {
                SgdSettings settings;
                settings.architecture = architecture;
                settings.optimizer = optimizer;
                settings.width = 12;
                settings.learning_rate = optimizer == Optimizer::adam ? 1e-2 : 2e-2;
                settings.epochs = 1500;
                settings.batch_size = 8;  // full batch
                settings.beta = beta;
                settings.loss = loss;
                settings.val_split = 0.0;
                settings.seed = seed;
                settings.time_limit_s = 0;
                const SgdResult trained = train_sgd_cnn(data, settings);
                EXPECT_GE(trained.objective, lower_bound * (1.0 - 1e-6)) << "a network below the convex optimum";
                best = std::min(best, trained.objective);
            }
        // The exact optimum at beta itself, i.e. of the one-class-per-filter family.
        convex.beta = beta;
        const TrainingResult per_head = train_convex_cnn(data, convex);
        ASSERT_EQ(per_head.solve.status, SolverStatus::solved);
        const double per_head_optimum = per_head.solve.primal;
        std::cout << "[ sgd vs convex ] " << to_string(loss) << ": exact convex optimum at beta/sqrt(" << heads
                  << ") " << exact.solve.primal << " (dual " << lower_bound << "), at beta " << per_head_optimum
                  << "; best SGD/Adam objective at beta " << best << "\n";
        // The per-head optimum at beta is a network of the family and at most sqrt(2) times the
        // optimum at beta / sqrt(2) (the optimal value is concave in beta and 0 at beta = 0
        // at worst): training that finds a global minimum lands below 1.42 x the bound.
        EXPECT_LE(best, 1.5 * lower_bound) << "gradient training should get near the bound on this tiny problem";
        // And the full layer does use its advantage: the trained networks end below the
        // one-class-per-filter optimum at the same beta (by about sqrt(2) with 2 classes),
        // so "the convex optimum at the same beta" bounds only that narrower family.
        EXPECT_LT(best, per_head.solve.dual);
    }
}
