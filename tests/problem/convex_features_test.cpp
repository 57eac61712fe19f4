#include "cvxcnn/problem/convex_features.hpp"

#include <gtest/gtest.h>
#include <oneapi/tbb/global_control.h>

#include <random>

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
