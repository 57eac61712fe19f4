// The single-neuron relaxation (relaxation/neuron_relaxation.hpp): its relation to the
// original loss, and recovery of a planted neuron's direction.
#include "cvxcnn/relaxation/neuron_relaxation.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <random>

#include "cvxcnn/util/error.hpp"

using namespace cvxcnn;

namespace {

RowMatrixD gaussian(int rows, int cols, std::mt19937& rng) {
    std::normal_distribution<double> normal(0.0, 1.0);
    RowMatrixD x(rows, cols);
    for (double& v : x.reshaped()) v = normal(rng);
    return x;
}

Eigen::VectorXd unit(int d, std::mt19937& rng) {
    std::normal_distribution<double> normal(0.0, 1.0);
    Eigen::VectorXd w(d);
    for (double& v : w) v = normal(rng);
    return w.normalized();
}

double cosine(const Eigen::VectorXd& a, const Eigen::VectorXd& b) { return a.dot(b) / (a.norm() * b.norm()); }

}  // namespace

// g = f + r with r >= 0, and r = 0 wherever the neuron fires on every positive sample.
TEST(NeuronRelaxation, IsTheLossPlusANonnegativeRegularizer) {
    std::mt19937 rng(1);
    const RowMatrixD x = gaussian(40, 5, rng);
    Eigen::VectorXd y = (x * unit(5, rng)).cwiseMax(0.0);
    for (int trial = 0; trial < 200; ++trial) {
        const Eigen::VectorXd w = 2.0 * unit(5, rng);
        const double f = neuron_loss(x, y, w), g = relaxed_neuron_loss(x, y, w);
        EXPECT_GE(g, f - 1e-12);
        const Eigen::VectorXd t = x * w;
        double r = 0.0;
        for (int i = 0; i < t.size(); ++i)
            if (y(i) > 0.0 && t(i) < 0.0) r += t(i) * t(i) - 2.0 * y(i) * t(i);
        EXPECT_NEAR(g - f, r / (2.0 * 40.0), 1e-12);
    }
    EXPECT_THROW((void)relaxed_neuron_loss(x, -y, Eigen::VectorXd::Zero(5)), Error) << "negative targets";
}

// Under the planted model the relaxation's minimizer is the planted neuron: gradient descent
// on it recovers the direction (cosine > 0.99) with enough samples, with or without small
// label noise. A random direction scored by the same test does not pass: the test is not
// vacuous.
TEST(NeuronRelaxation, RecoversThePlantedNeuronsDirection) {
    std::mt19937 rng(2);
    const int d = 20;
    for (const double noise : {0.0, 0.05}) {
        SCOPED_TRACE(noise);
        const int n = 400;
        const RowMatrixD x = gaussian(n, d, rng);
        const Eigen::VectorXd planted = unit(d, rng);
        std::normal_distribution<double> normal(0.0, noise);
        Eigen::VectorXd y = x * planted;
        for (double& v : y) v = std::max(0.0, v + (noise > 0.0 ? normal(rng) : 0.0));
        const RelaxationResult fit = solve_neuron_relaxation(x, y);
        EXPECT_TRUE(fit.converged);
        const double recovered = cosine(fit.weights, planted);
        EXPECT_GT(recovered, 0.99);
        if (noise == 0.0) {
            EXPECT_NEAR(fit.relaxed, 0.0, 1e-12) << "the planted neuron fits exactly";
            EXPECT_LE((fit.weights - planted).norm(), 1e-5) << "and is the unique minimizer";
        }
        const double random = cosine(unit(d, rng), planted);
        EXPECT_LT(random, 0.99) << "a random direction fails the same test";
        std::cout << "[ relaxation ] noise " << noise << ", n " << n << ", d " << d << ": cosine " << recovered
                  << " after " << fit.iterations << " steps (random direction: " << random << ")\n";

        // Convex: the start does not matter, not even the opposite direction.
        const RelaxationResult from_opposite = solve_neuron_relaxation(x, y, RelaxationSettings{}, -planted);
        EXPECT_GT(cosine(from_opposite.weights, planted), 0.99);
    }
}

// Too few samples: the positive samples no longer pin the neuron down (fewer than d of them),
// and recovery is no longer guaranteed; with n = 4 d it is.
TEST(NeuronRelaxation, NeedsEnoughSamples) {
    std::mt19937 rng(3);
    const int d = 30;
    const Eigen::VectorXd planted = unit(d, rng);
    const RowMatrixD few = gaussian(20, d, rng);
    const RelaxationResult under = solve_neuron_relaxation(few, (few * planted).cwiseMax(0.0));
    const RowMatrixD many = gaussian(120, d, rng);
    const RelaxationResult enough = solve_neuron_relaxation(many, (many * planted).cwiseMax(0.0));
    EXPECT_LT(cosine(under.weights, planted), 0.99) << "20 samples in 30 dimensions cannot identify the neuron";
    EXPECT_GT(cosine(enough.weights, planted), 0.999);
}

// The extension: one neuron per output, Y = (X W*)_+, every neuron recovered.
TEST(NeuronRelaxation, MultiNeuronExtensionRecoversEveryPlantedNeuron) {
    std::mt19937 rng(4);
    const int d = 12, m = 4, n = 300;
    const RowMatrixD x = gaussian(n, d, rng);
    RowMatrixD planted(d, m);
    for (int j = 0; j < m; ++j) planted.col(j) = unit(d, rng);
    const RowMatrixD y = (x * planted).cwiseMax(0.0);
    const MultiRelaxationResult fit = solve_multi_neuron_relaxation(x, y);
    ASSERT_EQ(fit.weights.cols(), m);
    for (int j = 0; j < m; ++j) {
        EXPECT_GT(cosine(fit.weights.col(j), planted.col(j)), 0.99) << "neuron " << j;
        for (int k = 0; k < m; ++k)
            if (k != j) {
                EXPECT_LT(cosine(fit.weights.col(j), planted.col(k)), 0.99) << "neuron " << j << " vs " << k;
            }
    }
}
