// The stationary-point certificate (certify/stationary_certificate.hpp) on tiny data:
//   - the induced point reproduces the network: F U == its logits, for every activation;
//   - network objective >= convex objective of the induced point >= dual bound, always;
//   - a convex-trained model is the optimum of the program over its own patterns (small
//     gap); the same model with perturbed weights is not;
//   - a network trained by full-batch gradient descent (the SGD baseline) approaches a
//     stationary point, and the certified gap of the program over its own patterns shrinks
//     with training: for 2 classes, cross-entropy and global pooling every gradient block
//     is rank one (the two softmax gradient columns are opposite), so stationarity is
//     exactly the KKT condition of the shared (nuclear-norm) program.
#include "cvxcnn/certify/stationary_certificate.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <iostream>
#include <random>
#include <string>

#include "cvxcnn/train/convex_training.hpp"
#include "cvxcnn/train/network_gradient.hpp"
#include "cvxcnn/train/sgd_training.hpp"
#include "export/test_models.hpp"
#include "test_support.hpp"

using namespace cvxcnn;

namespace {

// Two classes of 3 x 1 x 2 images from a fixed nonlinear rule (strong_duality_test.cpp).
Dataset two_classes(int n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset data;
    data.shape = {3, 1, 2};
    data.class_names = {"no", "yes"};
    for (int i = 0; i < n; ++i) {
        float x[6];
        for (float& v : x) v = pixel(rng);
        data.images.insert(data.images.end(), x, x + 6);
        data.labels.push_back(x[0] + x[3] > x[4] + 0.4f ? 1 : 0);
    }
    return data;
}

Model without_biases(Model model) {
    std::fill(model.conv_bias.data.begin(), model.conv_bias.data.end(), 0.0f);
    std::fill(model.fc_bias.data.begin(), model.fc_bias.data.end(), 0.0f);
    return model;
}

TrainingResult convex_model(const std::string& architecture, Loss loss) {
    TrainingSettings settings;
    settings.architecture = parse_architecture(architecture);
    settings.patterns = 6;
    settings.seed = 3;
    settings.beta = 1e-2;
    settings.val_split = 0.0;
    settings.loss = loss;
    settings.rel_gap_tol = 1e-6;
    settings.max_iters = 20000;
    settings.time_limit_s = 0;
    return train_convex_cnn(test::bar_images(10, 4), settings);
}

void expect_chain(const StationaryCertificate& c) {
    // (1) of the header: each inequality up to float rounding of the weights.
    EXPECT_GE(c.network_objective, c.convex_objective * (1.0 - 1e-5));
    EXPECT_GE(c.convex_objective, c.dual * (1.0 - 1e-9));
    EXPECT_GE(c.gap, -1e-9 * c.convex_objective);
}

}  // namespace

TEST(StationaryCertificate, InducedPointReproducesTheNetworkForEveryActivation) {
    const ImageShape shape{2, 7, 6};
    const Dataset data = test::random_images(9, shape, 5, 3);
    for (const std::string& activation : test::all_activations)
        for (const char* pool : {"pool1", "pool2"}) {
            SCOPED_TRACE(activation + " " + pool);
            const Model model = without_biases(test::random_model("conv3x3s2p1-" + activation + "-" + pool, shape, 4, 3, 31));
            CertifySettings settings;
            settings.beta = 0.05;
            const StationaryCertificate c = certify_network(model, data, settings);
            EXPECT_EQ(c.program, CertifiedProgram::shared) << "random filters feed every head";
            EXPECT_FALSE(c.per_head_network);
            EXPECT_EQ(c.used_filters, 4);
            EXPECT_LE(c.logit_difference, 1e-5);
            expect_chain(c);
            EXPECT_FALSE(c.optimal) << "random weights are not a stationary point";
        }
}

TEST(StationaryCertificate, ConvexTrainedModelIsTheOptimumOfItsOwnProgram) {
    for (const Loss loss : {Loss::cross_entropy, Loss::squared}) {
        SCOPED_TRACE(std::string(to_string(loss)));
        const TrainingResult trained = convex_model("conv3x3s1p1-gated-pool2", loss);
        ASSERT_EQ(trained.solve.status, SolverStatus::solved);
        const Dataset data = test::bar_images(10, 4);
        const StationaryCertificate c = certify_network(trained.model, certification_data(trained.model, data));
        EXPECT_EQ(c.program, CertifiedProgram::per_head);
        EXPECT_TRUE(c.per_head_network);
        EXPECT_DOUBLE_EQ(c.beta, 1e-2) << "beta from the training record";
        EXPECT_EQ(c.loss, loss) << "loss from the training record";
        EXPECT_LE(c.logit_difference, 1e-5);
        // Recovery balances every filter and gives each (pattern, head) one filter: the three
        // objectives are one number, the solver's.
        EXPECT_LE(c.max_imbalance, 1e-5);
        EXPECT_NEAR(c.convex_objective, trained.solve.primal, 1e-5 * trained.solve.primal);
        EXPECT_NEAR(c.network_objective, c.convex_objective, 1e-5 * c.convex_objective);
        expect_chain(c);
        EXPECT_LE(c.rel_gap, 1e-4);
        EXPECT_TRUE(c.optimal) << verdict(c);
        EXPECT_LE(c.dual_norm_ratio, 1.0 + 1e-3);
        std::cout << "[ certify ] convex-trained, " << to_string(loss) << ": " << c.patterns << " patterns, "
                  << c.used_filters << " filters, rel gap " << c.rel_gap << ", KKT residual " << c.kkt_residual
                  << ", solver's own rel gap " << trained.solve.rel_gap << "\n";

        // The same network with every filter weight perturbed by 20%: same patterns almost,
        // far from optimal.
        Model perturbed = trained.model;
        std::mt19937 rng(7);
        std::normal_distribution<float> noise(0.0f, 0.2f);
        for (float& w : perturbed.conv_weight.data) w *= 1.0f + noise(rng);
        const StationaryCertificate p = certify_network(perturbed, data);
        expect_chain(p);
        EXPECT_GT(p.rel_gap, 1e-2);
        EXPECT_FALSE(p.optimal) << verdict(p);
        EXPECT_GT(p.kkt_residual, 0.1);
        std::cout << "[ certify ] perturbed: rel gap " << p.rel_gap << ", KKT residual " << p.kkt_residual << "\n";
    }
}

SgdSettings gradient_descent(const std::string& architecture) {
    SgdSettings settings;
    settings.architecture = parse_architecture(architecture);
    settings.optimizer = Optimizer::sgd;
    settings.width = 6;
    settings.learning_rate = 0.05;
    settings.momentum = 0.9;
    settings.batch_size = 12;  // full batch: gradient descent with momentum
    settings.beta = 0.02;
    settings.loss = Loss::cross_entropy;
    settings.val_split = 0.0;
    settings.seed = 1;
    settings.time_limit_s = 0;
    return settings;
}

// Gated ReLU (fixed gates, so the objective is smooth in the weights): 2 classes,
// cross-entropy, global pooling make every gradient block rank one, so (2) of the header
// applies to the shared program and the gap closes as gradient descent converges.
TEST(StationaryCertificate, GradientTrainingClosesTheGapOfTheSharedProgram) {
    const Dataset data = two_classes(12, 1);
    SgdSettings settings = gradient_descent("conv1x1s1p0-gated-pool1");
    std::vector<double> gaps;
    for (const int epochs : {100, 1000, 10000}) {
        settings.epochs = epochs;
        const SgdResult trained = train_sgd_cnn(data, settings);
        const StationaryCertificate c = certify_network(trained.model, data);
        EXPECT_EQ(c.program, CertifiedProgram::shared);
        EXPECT_DOUBLE_EQ(c.beta, settings.beta) << "beta from the training record";
        EXPECT_LE(c.logit_difference, 1e-5);
        expect_chain(c);
        EXPECT_NEAR(c.network_objective, trained.objective, 1e-6 * trained.objective);
        if (!gaps.empty()) {
            EXPECT_LT(c.rel_gap, gaps.back()) << "the gap shrinks with training";
        }
        gaps.push_back(c.rel_gap);
        std::cout << "[ certify ] gated, gradient descent, " << epochs << " epochs: objective " << c.network_objective
                  << ", convex " << c.convex_objective << ", dual " << c.dual << ", rel gap " << c.rel_gap
                  << ", KKT " << c.kkt_residual << ", imbalance " << c.max_imbalance << ", " << c.patterns
                  << " patterns\n";
    }
    EXPECT_GT(gaps.front(), 0.1) << "an early iterate is far from stationary";
    EXPECT_LE(gaps.back(), 1e-4) << "a converged network is the optimum of its own program";
}

// ReLU: training drives filters onto hyperplanes through data points ((4) of the header),
// so what holds for any iterate is the chain of bounds, and the kinks are reported.
TEST(StationaryCertificate, ReluGradientTrainingEndsOnKinksAndTheBoundsStillHold) {
    const Dataset data = two_classes(12, 1);
    SgdSettings settings = gradient_descent("conv1x1s1p0-relu-pool1");
    settings.epochs = 10000;
    const SgdResult trained = train_sgd_cnn(data, settings);
    const StationaryCertificate c = certify_network(trained.model, data);
    EXPECT_LE(c.logit_difference, 1e-5);
    expect_chain(c);
    EXPECT_LE(c.max_imbalance, 1e-3) << "balanced: a stationary point of the weight decay";
    std::cout << "[ certify ] relu, gradient descent, 10000 epochs: objective " << c.network_objective << ", dual "
              << c.dual << ", rel gap " << c.rel_gap << ", " << c.ties << " patch rows on a filter's hyperplane, "
              << c.dead_filters << " vanishing filters left out\n";
}

TEST(StationaryCertificate, RefusesWhatTheProgramCannotRepresent) {
    const ImageShape shape{1, 5, 5};
    const Dataset data = test::random_images(4, shape, 2, 2);
    const Model with_biases = test::random_model("conv3x3s1p1-relu-pool1", shape, 3, 2, 4);
    CertifySettings settings;
    settings.beta = 0.1;
    try {
        (void)certify_network(with_biases, data, settings);
        ADD_FAILURE() << "biases accepted";
    } catch (const Error& error) {
        EXPECT_NE(std::string(error.what()).find("nonzero biases"), std::string::npos) << error.what();
    }
    const Model shared = without_biases(with_biases);
    settings.program = CertifiedProgram::per_head;
    EXPECT_THROW((void)certify_network(shared, data, settings), Error) << "per-head program on a shared network";
    settings.program.reset();
    settings.beta.reset();
    EXPECT_THROW((void)certify_network(shared, data, settings), Error) << "no beta anywhere";
}
