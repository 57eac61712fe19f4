#include "cvxcnn/problem/convex_features.hpp"

#include <gtest/gtest.h>
#include <oneapi/tbb/global_control.h>

#include <optional>
#include <random>
#include <string>

#include "cvxcnn/util/error.hpp"

using namespace cvxcnn;

namespace {

Dataset random_images(int n, ImageShape shape, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    Dataset data;
    data.shape = shape;
    data.images.resize(static_cast<std::size_t>(n) * shape.values());
    for (float& v : data.images) v = normal(rng);
    data.labels.assign(n, 0);
    data.class_names = {"only"};
    return data;
}

SamplingOptions sampling(int count, std::uint64_t seed) {
    SamplingOptions options;
    options.count = count;
    options.seed = seed;
    return options;
}

PatchMatrices patches_of(const Dataset& data, const char* arch) { return extract_patches(data, parse_architecture(arch)); }

}  // namespace

TEST(ConvexFeatures, BlocksAreMaskedPatchSumsOverEachRegion) {
    const Dataset data = random_images(7, {2, 7, 6}, 1);
    const PatchMatrices patches = patches_of(data, "conv3x3s1p1-gated-pool2");
    const auto sampled = sample_sign_patterns(patches.stacked(), sampling(5, 3));
    const SignPatterns& patterns = sampled.patterns;
    const ConvexFeatures features = build_convex_features(patches, patterns);
    const int h = patches.patch_size(), regions = patches.regions().count();
    ASSERT_EQ(features.matrix.cols(), static_cast<Eigen::Index>(patterns.count()) * regions * h);
    // The definition, term by term: A_{i,r}[j] = sum_{k in r} D_{i,k}[j] X_k[j].
    for (std::size_t i = 0; i < patterns.count(); ++i)
        for (int r = 0; r < regions; ++r)
            for (Eigen::Index j = 0; j < patches.samples(); ++j) {
                Eigen::VectorXd expected = Eigen::VectorXd::Zero(h);
                for (int k : patches.regions().positions[r])
                    if (patterns.active(i, static_cast<std::size_t>(k) * patches.samples() + j))
                        expected += patches.block(k).row(j).transpose().cast<double>();
                const Eigen::VectorXd got =
                    features.matrix.row(j).segment((static_cast<Eigen::Index>(i) * regions + r) * h, h).transpose().cast<double>();
                EXPECT_LT((got - expected).norm(), 1e-5 * (1.0 + expected.norm()));
            }
}

TEST(ConvexFeatures, GatesGiveTheSameBlocksAsTheirPatterns) {
    const Dataset data = random_images(9, {1, 6, 6}, 2);
    const PatchMatrices patches = patches_of(data, "conv3x3s2p1-gated-pool3");
    const auto sampled = sample_sign_patterns(patches.stacked(), sampling(6, 4));
    const ConvexFeatures from_bits = build_convex_features(patches, sampled.patterns);
    const ConvexFeatures from_gates = build_convex_features(patches, sampled.patterns.generators);
    EXPECT_EQ(from_bits.matrix, from_gates.matrix);
}

TEST(ConvexFeatures, ThreadCountDoesNotChangeTheResult) {
    const Dataset data = random_images(70, {3, 5, 5}, 5);
    const PatchMatrices patches = patches_of(data, "conv3x3s1p1-gated-pool2");
    const auto sampled = sample_sign_patterns(patches.stacked(), sampling(8, 6));
    RowMatrixF one, two;
    {
        oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 1);
        one = build_convex_features(patches, sampled.patterns).matrix;
    }
    {
        oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 2);
        two = build_convex_features(patches, sampled.patterns).matrix;
    }
    EXPECT_EQ(one, two);
}

// The definition for every activation, term by term: on the pattern's cone the activation
// has slope 1 on active rows and m0 = 0 (relu, gated), a (leaky), -1 (abs) on the others,
// so A_{i,r}[j] = sum_{k in r} (D_{i,k}[j] ? 1 : m0) X_k[j]; both overloads agree.
TEST(ConvexFeatures, BlocksFollowTheActivationOnTheCone) {
    const Dataset data = random_images(6, {2, 5, 6}, 11);
    const PatchMatrices patches = patches_of(data, "conv3x3s1p1-relu-pool2");
    const auto sampled = sample_sign_patterns(patches.stacked(), sampling(4, 12));
    const SignPatterns& patterns = sampled.patterns;
    const int h = patches.patch_size(), regions = patches.regions().count();
    struct Case {
        FeatureActivation activation;
        double inactive;
    };
    for (const Case& c : {Case{{Activation::gated_relu, 0.0f}, 0.0}, Case{{Activation::relu, 0.0f}, 0.0},
                          Case{{Activation::leaky_relu, 0.25f}, 0.25}, Case{{Activation::absolute, 0.0f}, -1.0}}) {
        SCOPED_TRACE(std::string(to_string(c.activation.activation)));
        const ConvexFeatures features = build_convex_features(patches, patterns, std::nullopt, c.activation);
        EXPECT_EQ(features.activation, c.activation);
        for (std::size_t i = 0; i < patterns.count(); ++i)
            for (int r = 0; r < regions; ++r)
                for (Eigen::Index j = 0; j < patches.samples(); ++j) {
                    Eigen::VectorXd expected = Eigen::VectorXd::Zero(h);
                    for (int k : patches.regions().positions[r]) {
                        const double slope =
                            patterns.active(i, static_cast<std::size_t>(k) * patches.samples() + j) ? 1.0 : c.inactive;
                        expected += slope * patches.block(k).row(j).transpose().cast<double>();
                    }
                    const Eigen::VectorXd got = features.matrix.row(j)
                                                    .segment((static_cast<Eigen::Index>(i) * regions + r) * h, h)
                                                    .transpose()
                                                    .cast<double>();
                    EXPECT_LT((got - expected).norm(), 1e-5 * (1.0 + expected.norm()));
                }
        const ConvexFeatures from_gates = build_convex_features(patches, patterns.generators, std::nullopt, c.activation);
        EXPECT_EQ(from_gates.matrix, features.matrix);
    }
}

TEST(ConvexFeatures, DefaultIsTheGatedProgramAndReluSharesIt) {
    const Dataset data = random_images(9, {1, 6, 6}, 13);
    const PatchMatrices patches = patches_of(data, "conv3x3s2p1-gated-pool3");
    const auto sampled = sample_sign_patterns(patches.stacked(), sampling(6, 14));
    const ConvexFeatures plain = build_convex_features(patches, sampled.patterns);
    EXPECT_EQ(plain.activation.activation, Activation::gated_relu);
    EXPECT_EQ(build_convex_features(patches, sampled.patterns, std::nullopt, {Activation::relu, 0.0f}).matrix, plain.matrix);
    EXPECT_EQ(FeatureActivation::of(parse_architecture("conv3x3-leaky0.1-pool1")).inactive_slope(), 0.1f);
    EXPECT_EQ(FeatureActivation::of(parse_architecture("conv3x3-abs-pool1")).inactive_slope(), -1.0f);
    EXPECT_EQ(FeatureActivation::of(parse_architecture("conv3x3-relu-pool1")).inactive_slope(), 0.0f);
}

TEST(ConvexFeatures, LeakySlopeOutsideTheUnitIntervalIsRejected) {
    const Dataset data = random_images(3, {1, 4, 4}, 15);
    const PatchMatrices patches = patches_of(data, "conv3x3s1p1-gated-pool1");
    const auto sampled = sample_sign_patterns(patches.stacked(), sampling(2, 16));
    for (const float slope : {0.0f, 1.0f, -0.5f}) {
        try {
            (void)build_convex_features(patches, sampled.patterns, std::nullopt, {Activation::leaky_relu, slope});
            FAIL() << "slope " << slope;
        } catch (const Error& error) {
            EXPECT_EQ(error.kind(), ErrorKind::bad_input);
            EXPECT_NE(std::string(error.what()).find("slope"), std::string::npos);
        }
    }
}

TEST(ConvexFeatures, MemoryLimitNamesTheOptions) {
    const Dataset data = random_images(4, {1, 5, 5}, 7);
    const PatchMatrices patches = patches_of(data, "conv3x3s1p1-gated-pool1");
    const auto sampled = sample_sign_patterns(patches.stacked(), sampling(3, 8));
    const std::size_t needed = convex_feature_bytes(4, sampled.patterns.count(), 1, 9);
    EXPECT_EQ(needed, 4 * sampled.patterns.count() * 9 * sizeof(float));
    try {
        (void)build_convex_features(patches, sampled.patterns, needed - 1);
        FAIL();
    } catch (const Error& error) {
        EXPECT_EQ(error.kind(), ErrorKind::limit);
        EXPECT_NE(std::string(error.what()).find("--patterns"), std::string::npos);
        EXPECT_NE(std::string(error.what()).find("--max-memory"), std::string::npos);
    }
    EXPECT_NO_THROW((void)build_convex_features(patches, sampled.patterns, needed));
}
