// The recovered network equals the convex model: for any convex weights U, the gated CNN
// built in closed form outputs F U on the training images, and its weight decay equals
// the group-lasso penalty sum ||u||.
#include "cvxcnn/recover/cnn_from_convex.hpp"

#include <gtest/gtest.h>

#include <random>

#include "cvxcnn/engine/reference_engine.hpp"

using namespace cvxcnn;

namespace {

struct Case {
    const char* arch;
    ImageShape shape;
};

Dataset random_images(int n, ImageShape shape, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset data;
    data.shape = shape;
    data.images.resize(static_cast<std::size_t>(n) * shape.values());
    for (float& v : data.images) v = pixel(rng);
    data.labels.resize(n);
    for (int i = 0; i < n; ++i) data.labels[i] = i % 3;
    data.class_names = {"a", "b", "c"};
    return data;
}

}  // namespace

TEST(Recovery, RecoveredNetworkReproducesTheConvexModel) {
    for (const Case& c : {Case{"conv3x3s1p1-gated-pool2", {1, 7, 7}}, Case{"conv2x2s2p0-gated-pool3", {3, 8, 6}},
                          Case{"conv3x3s1p0-gated-pool1", {2, 6, 5}}}) {
        SCOPED_TRACE(c.arch);
        const Dataset raw = random_images(11, c.shape, 5);
        Dataset normalized = raw;
        const Normalization normalization = Normalization::compute(raw);
        normalization.apply(normalized);
        const PatchMatrices patches = extract_patches(normalized, parse_architecture(c.arch));
        SamplingOptions sampling;
        sampling.count = 6;
        sampling.seed = 9;
        const SignPatterns patterns = sample_sign_patterns(patches.stacked(), sampling).patterns;
        const ConvexFeatures features = build_convex_features(patches, patterns);

        // A sparse U: about half the groups zero, as the group lasso leaves them.
        std::mt19937 rng(3);
        std::normal_distribution<float> normal;
        const int h = features.block_width;
        RowMatrixF weights = RowMatrixF::Zero(features.matrix.cols(), 3);
        double penalty = 0.0;
        int nonzero = 0;
        for (int b = 0; b < features.blocks(); ++b)
            for (int k = 0; k < 3; ++k) {
                if (rng() % 2) continue;
                for (int j = 0; j < h; ++j) weights(b * h + j, k) = normal(rng);
                penalty += weights.block(b * h, k, h, 1).cast<double>().norm();
                ++nonzero;
            }

        const Model model = recover_gated_cnn(features, patterns.generators, weights, patches, raw.class_names, normalization);
        EXPECT_EQ(model.filters(), nonzero) << "one filter per nonzero group, zero groups pruned";
        const RowMatrixF convex = features.matrix * weights;
        const RowMatrixF network = reference_logits(model, raw);
        ASSERT_EQ(network.rows(), convex.rows());
        const double scale = convex.cwiseAbs().maxCoeff();
        EXPECT_LE((network - convex).cwiseAbs().maxCoeff(), 1e-5 * scale);
        EXPECT_NEAR(recovered_weight_decay(model, patches.regions()), penalty, 1e-5 * penalty);
    }
}
