// Cone decomposition: a gated solution on an activation's features becomes a ReLU (leaky,
// abs) network with exactly the same outputs. Checked against the definition: the
// recovered network's logits on the raw images equal F U, every filter pair satisfies its
// cone constraints and v - w = u, the regularizer grows by the reported ratio, and the
// optimized split is never worse than the closed form w = t g.
#include "cvxcnn/recover/cone_decomposition.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <oneapi/tbb/global_control.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <random>
#include <string>

#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/recover/cnn_from_convex.hpp"
#include "cvxcnn/util/error.hpp"

using namespace cvxcnn;

namespace {

using Index = Eigen::Index;

Dataset random_images(int n, ImageShape shape, int classes, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset data;
    data.shape = shape;
    data.images.resize(static_cast<std::size_t>(n) * shape.values());
    for (float& v : data.images) v = pixel(rng);
    data.labels.resize(n);
    for (int i = 0; i < n; ++i) data.labels[i] = i % classes;
    for (int c = 0; c < classes; ++c) data.class_names.push_back("class" + std::to_string(c));
    return data;
}

/// One small training set, normalized as the trainer does, with its patches, sampled
/// patterns, the features of the architecture's activation and a sparse random U.
struct GatedSolution {
    Dataset raw;
    Normalization normalization;
    PatchMatrices patches;
    SignPatterns patterns;
    ConvexFeatures features;
    RowMatrixF weights;
};

GatedSolution make_setup(const char* arch, ImageShape shape, int n, int pattern_count, unsigned seed) {
    Dataset raw = random_images(n, shape, 3, seed);
    Dataset normalized = raw;
    const Normalization normalization = Normalization::compute(raw);
    normalization.apply(normalized);
    const Architecture architecture = parse_architecture(arch);
    PatchMatrices patches = extract_patches(normalized, architecture);
    SamplingOptions sampling;
    sampling.count = pattern_count;
    sampling.seed = seed + 1;
    SignPatterns patterns = sample_sign_patterns(patches.stacked(), sampling).patterns;
    ConvexFeatures features = build_convex_features(patches, patterns, std::nullopt, FeatureActivation::of(architecture));
    std::mt19937 rng(seed + 2);
    std::normal_distribution<float> normal;
    const int h = features.block_width;
    RowMatrixF weights = RowMatrixF::Zero(features.matrix.cols(), 3);
    for (int b = 0; b < features.blocks(); ++b)
        for (int c = 0; c < 3; ++c) {
            if (rng() % 2) continue;
            for (int j = 0; j < h; ++j) weights(b * h + j, c) = normal(rng);
        }
    return {std::move(raw), normalization, std::move(patches), std::move(patterns), std::move(features), std::move(weights)};
}

/// min over rows of s_j x_j . x / ||x_j|| for block b's cone (+infinity without rows).
double smallest_cone_value(const GatedSolution& s, int block, const Eigen::VectorXd& x) {
    const int regions = s.features.regions;
    const int pattern = block / regions;
    const Index n = s.patches.samples();
    double smallest = std::numeric_limits<double>::infinity();
    for (const int k : s.patches.regions().positions[block % regions])
        for (Index j = 0; j < n; ++j) {
            const Eigen::VectorXd row = s.patches.block(k).row(j).transpose().cast<double>();
            if (row.norm() == 0.0) continue;
            const double sign = s.patterns.active(pattern, static_cast<std::size_t>(k) * n + j) ? 1.0 : -1.0;
            smallest = std::min(smallest, sign * row.dot(x) / row.norm());
        }
    return smallest;
}

}  // namespace

TEST(ConeDecomposition, RecoveredNetworkReproducesTheGatedModelForEveryActivation) {
    struct Case {
        const char* arch;
        ImageShape shape;
    };
    for (const Case& c : {Case{"conv3x3s1p1-relu-pool2", {1, 7, 7}}, Case{"conv2x2s2p0-leaky0.2-pool3", {3, 8, 6}},
                          Case{"conv3x3s1p0-abs-pool1", {2, 6, 5}}, Case{"conv3x3s1p1-leaky0.05-pool1", {1, 5, 5}}}) {
        SCOPED_TRACE(c.arch);
        const GatedSolution s = make_setup(c.arch, c.shape, 11, 6, 5);
        const DecomposedModel recovered = recover_cnn_by_cone_decomposition(
            s.features, s.patterns, s.weights, s.patches, s.raw.class_names, s.normalization);
        const ConeDecompositionReport& report = recovered.report;
        std::cout << "[ cone decomposition ] " << c.arch << ": " << report.groups << " groups, " << report.inside_cone
                  << " already in their cone, norm ratio sum(||v||+||w||)/sum||u|| = " << report.norm_ratio()
                  << ", max violation " << report.max_violation << "\n";

        const RowMatrixF convex = s.features.matrix * s.weights;
        const RowMatrixF network = reference_logits(recovered.model, s.raw);
        ASSERT_EQ(network.rows(), convex.rows());
        EXPECT_LE((network - convex).cwiseAbs().maxCoeff(), 1e-5 * convex.cwiseAbs().maxCoeff());
        EXPECT_EQ(recovered.model.filters(), 2 * report.groups - report.inside_cone - report.negated_inside);
        EXPECT_LE(report.max_violation, 1e-9);
        EXPECT_GE(report.norm_ratio(), 1.0 - 1e-12);
        EXPECT_EQ(report.closed_form, 0);
        // The network's weight decay is the split's regularizer sum ||v|| + ||w||.
        EXPECT_NEAR(recovered_weight_decay(recovered.model, s.patches.regions()), report.split_norm,
                    1e-5 * report.split_norm);
    }
}

TEST(ConeDecomposition, SplitsAreConeFiltersWhoseDifferenceIsTheGatedFilter) {
    const GatedSolution s = make_setup("conv3x3s1p1-relu-pool2", {2, 6, 6}, 13, 8, 21);
    const ConeDecomposition split = decompose_into_cones(s.features, s.patches, s.patterns, s.weights);
    const int h = s.features.block_width;
    double gated = 0.0, total = 0.0;
    for (int b = 0; b < s.features.blocks(); ++b)
        for (Index c = 0; c < s.weights.cols(); ++c) {
            const Eigen::VectorXd u = s.weights.block(b * h, c, h, 1).cast<double>();
            const Eigen::VectorXd v = split.positive.block(b * h, c, h, 1);
            const Eigen::VectorXd w = split.negative.block(b * h, c, h, 1);
            EXPECT_LE((v - w - u).norm(), 1e-12 * (1.0 + u.norm()));
            if (u.norm() == 0.0) {
                EXPECT_EQ(v.norm() + w.norm(), 0.0);
                continue;
            }
            const double scale = v.norm() + w.norm();
            EXPECT_GE(smallest_cone_value(s, b, v), -1e-10 * scale) << "block " << b << " class " << c;
            EXPECT_GE(smallest_cone_value(s, b, w), -1e-10 * scale) << "block " << b << " class " << c;
            gated += u.norm();
            total += scale;
        }
    EXPECT_NEAR(split.report.gated_norm, gated, 1e-12 * gated);
    EXPECT_NEAR(split.report.split_norm, total, 1e-12 * total);
    const nlohmann::json json = split.report;
    EXPECT_EQ(json.at("groups").get<int>(), split.report.groups);
    EXPECT_DOUBLE_EQ(json.at("norm_ratio").get<double>(), split.report.norm_ratio());
}

TEST(ConeDecomposition, OptimizedSplitIsNoWorseThanTheClosedFormAndRefiningHelps) {
    const GatedSolution s = make_setup("conv3x3s1p1-abs-pool1", {1, 6, 6}, 12, 6, 33);
    const int h = s.features.block_width;
    ConeDecompositionSettings one_step;
    one_step.max_refinements = 1;
    const ConeDecomposition first = decompose_into_cones(s.features, s.patches, s.patterns, s.weights, one_step);
    const ConeDecomposition refined = decompose_into_cones(s.features, s.patches, s.patterns, s.weights);
    EXPECT_LE(refined.report.split_norm, first.report.split_norm * (1.0 + 1e-12));

    // The closed form of each group, computed here from the definition: w = t g with the
    // smallest t making s_j x_j.(u + t g) >= 0 (g is interior for sampled Gaussian gates).
    double closed_form = 0.0;
    const Index n = s.patches.samples();
    for (int b = 0; b < s.features.blocks(); ++b)
        for (Index c = 0; c < s.weights.cols(); ++c) {
            const Eigen::VectorXd u = s.weights.block(b * h, c, h, 1).cast<double>();
            if (u.norm() == 0.0) continue;
            const Eigen::VectorXd g = s.patterns.generators.row(b / s.features.regions).transpose().cast<double>();
            double t = 0.0;
            for (const int k : s.patches.regions().positions[b % s.features.regions])
                for (Index j = 0; j < n; ++j) {
                    const Eigen::VectorXd x = s.patches.block(k).row(j).transpose().cast<double>();
                    const double sign = s.patterns.active(b / s.features.regions, static_cast<std::size_t>(k) * n + j) ? 1.0 : -1.0;
                    const double along = sign * x.dot(g);
                    ASSERT_GT(along, 0.0) << "the gate is interior to its cone";
                    t = std::max(t, -sign * x.dot(u) / along);
                }
            closed_form += (u + t * g).norm() + (t * g).norm();
        }
    std::cout << "[ cone decomposition ] abs: sum ||u|| = " << refined.report.gated_norm << ", closed form "
              << closed_form << ", one projection " << first.report.split_norm << ", refined "
              << refined.report.split_norm << "\n";
    EXPECT_LE(refined.report.split_norm, closed_form * (1.0 + 1e-12));
}

TEST(ConeDecomposition, FilterInsideItsConeIsKeptWhole) {
    GatedSolution s = make_setup("conv3x3s1p1-relu-pool1", {1, 5, 5}, 9, 4, 41);
    // u = 2 g_0 lies in the cone of pattern 0 (the gate itself): no second filter is needed.
    const int h = s.features.block_width;
    s.weights.setZero();
    s.weights.block(0, 1, h, 1) = 2.0f * s.patterns.generators.row(0).transpose();
    const ConeDecomposition split = decompose_into_cones(s.features, s.patches, s.patterns, s.weights);
    EXPECT_EQ(split.report.groups, 1);
    EXPECT_EQ(split.report.inside_cone, 1);
    EXPECT_EQ(split.negative.norm(), 0.0);
    EXPECT_DOUBLE_EQ(split.report.norm_ratio(), 1.0);
}

TEST(ConeDecomposition, ThreadCountDoesNotChangeTheResult) {
    const GatedSolution s = make_setup("conv3x3s1p1-leaky0.1-pool2", {1, 6, 6}, 15, 8, 51);
    ConeDecomposition one, two;
    {
        oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 1);
        one = decompose_into_cones(s.features, s.patches, s.patterns, s.weights);
    }
    {
        oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 2);
        two = decompose_into_cones(s.features, s.patches, s.patterns, s.weights);
    }
    EXPECT_EQ(one.positive, two.positive);
    EXPECT_EQ(one.negative, two.negative);
}

TEST(ConeDecomposition, GroupWithoutASplitIsAnErrorNamingIt) {
    // Two samples of a 1x1 one-channel image, normalized to -1 and +1: rows x and -x. A
    // pattern activating both has the cone {w : w >= 0, -w >= 0} = {0}, so u = 1 has no split.
    Dataset raw;
    raw.shape = {1, 1, 1};
    raw.images = {0.0f, 1.0f};
    raw.labels = {0, 0};
    raw.class_names = {"only"};
    Dataset normalized = raw;
    Normalization::compute(raw).apply(normalized);
    const PatchMatrices patches = extract_patches(normalized, parse_architecture("conv1x1s1p0-relu-pool1"));
    SignPatterns patterns;
    patterns.rows = 2;
    patterns.words_per_pattern = 1;
    patterns.words = {0b11};
    patterns.active_counts = {2};
    patterns.generators = RowMatrixF::Zero(1, 1);
    const ConvexFeatures features = build_convex_features(patches, patterns, std::nullopt, {Activation::relu, 0.0f});
    const RowMatrixF weights = RowMatrixF::Constant(1, 1, 1.0f);
    try {
        (void)decompose_into_cones(features, patches, patterns, weights);
        FAIL() << "expected an error";
    } catch (const Error& error) {
        EXPECT_EQ(error.kind(), ErrorKind::bad_input);
        const std::string message = error.what();
        EXPECT_NE(message.find("pattern 0, region 0, class 0"), std::string::npos) << message;
    }
    // Mismatched inputs are rejected before any work.
    EXPECT_THROW((void)decompose_into_cones(features, patches, patterns, RowMatrixF::Zero(2, 1)), Error);
}
