// Recovery of the three-layer network (deep/three_layer_program.hpp): the model built in
// closed form from a solution of the program computes the program's logits, through the
// reference engine and through the oneDNN engine (float, raw images, normalization inside),
// on whole-image data and on small CNNs whose pattern pairs live per (sample, position):
// one region per position, 2x2 regions with padding, and unequal floor bands (the oneDNN
// engine's folded path).
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "cvxcnn/deep/three_layer_program.hpp"
#include "cvxcnn/engine/onednn_engine.hpp"
#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/util/error.hpp"

using namespace cvxcnn;

namespace {

struct Case {
    std::string architecture;
    ImageShape shape;
    int samples;
    int classes;
};

Dataset random_dataset(const Case& c, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset data;
    data.shape = c.shape;
    data.images.resize(static_cast<std::size_t>(c.samples) * c.shape.values());
    for (float& v : data.images) v = pixel(rng);
    for (int i = 0; i < c.samples; ++i) data.labels.push_back(i % c.classes);
    for (int k = 0; k < c.classes; ++k) data.class_names.push_back("class" + std::to_string(k));
    return data;
}

double relative_difference(const RowMatrixD& got, const RowMatrixD& want) {
    return (got - want).cwiseAbs().maxCoeff() / std::max(want.cwiseAbs().maxCoeff(), 1e-30);
}

}  // namespace

TEST(ThreeLayerRecovery, NetworkOutputsEqualTheProgramsThroughBothEngines) {
    const std::vector<Case> cases = {
        {"conv3x3s1p0-relu-pool1", {1, 3, 3}, 10, 3},  // whole image: the paper's setting
        {"conv2x2s1p0-relu-pool3", {1, 4, 4}, 5, 2},   // 9 positions, one region each
        {"conv2x2s1p1-relu-pool2", {2, 3, 3}, 4, 2},   // 4x4 map, 2x2 regions, padding
        {"conv2x2s1p0-relu-pool2", {1, 4, 4}, 5, 2},   // 3x3 map: unequal bands, folded pooling in oneDNN
    };
    unsigned seed = 1;
    for (const Case& c : cases) {
        SCOPED_TRACE(c.architecture);
        const Dataset raw = random_dataset(c, seed++);
        Dataset normalized = raw;
        const Normalization normalization = Normalization::compute(raw);
        normalization.apply(normalized);
        const PatchMatrices patches = extract_patches(normalized, parse_architecture(c.architecture));
        const PatternPairs pairs = sample_pattern_pairs(patches, {4, 4, 3, seed++});
        const ThreeLayerProblem problem{patches, pairs, raw.labels, c.classes, Loss::cross_entropy};
        ConeSolverSettings settings;
        settings.beta = 0.05 * three_layer_beta_max(problem);
        settings.rel_gap_tol = 1e-4;
        settings.feasibility_tol = 1e-7;
        settings.max_inner_per_outer = 2000;
        RowMatrixD weights = RowMatrixD::Zero(layout_of(problem).rows(), c.classes);
        const ThreeLayerSolveInfo info = solve_three_layer(problem, settings, weights);
        ASSERT_EQ(info.solve.status, ConeSolverStatus::solved) << to_string(info.solve.status);

        const ThreeLayerEvaluation at = evaluate_three_layer(problem, settings.beta, weights);
        ASSERT_GT(at.active_groups, 0) << "beta leaves some hidden unit active";
        // The program's logits are those of the network of its weights up to the cone violation.
        EXPECT_LE(relative_difference(at.network_logits, at.logits), 1e-5);
        const Model model = recover_three_layer_cnn(problem, weights, raw.class_names, normalization);
        ASSERT_TRUE(model.has_hidden_layer());
        EXPECT_GT(model.hidden_units(), 0);
        const RowMatrixD reference = reference_logits(model, raw).cast<double>();
        EXPECT_LE(relative_difference(reference, at.logits), 1e-5);
        for (const RegionPath path : {RegionPath::automatic, RegionPath::always}) {
            OnednnEngine engine(model, 4, path);
            EXPECT_EQ(engine.region_filters(), 0) << "a hidden unit mixes filters: no region groups at depth 3";
            EXPECT_LE(relative_difference(engine.logits(raw).cast<double>(), at.logits), 1e-5)
                << engine.implementation(4);
        }
        // The objective the solver reports is the network's: recovery keeps the penalty.
        EXPECT_NEAR(info.network_objective, at.network_objective, 1e-9 * at.network_objective);
    }
}

TEST(ThreeLayerRecovery, ModelsWithoutActiveUnitsPredictTheBias) {
    const Case c{"conv4x4s1p0-relu-pool1", {1, 4, 4}, 6, 2};
    const Dataset raw = random_dataset(c, 9);
    const PatchMatrices patches = extract_patches(raw, parse_architecture(c.architecture));
    const PatternPairs pairs = sample_pattern_pairs(patches, {3, 3, 3, 1});
    const ThreeLayerProblem problem{patches, pairs, raw.labels, c.classes, Loss::squared};
    const Model model = recover_three_layer_cnn(problem, RowMatrixD::Zero(layout_of(problem).rows(), 2),
                                                raw.class_names, Normalization::identity(1));
    EXPECT_EQ(model.filters(), 0);
    EXPECT_EQ(model.hidden_units(), 0);
    EXPECT_TRUE(model.has_hidden_layer());
    EXPECT_EQ(reference_logits(model, raw).cwiseAbs().maxCoeff(), 0.0f);
    OnednnEngine engine(model, 4);
    EXPECT_EQ(engine.logits(raw).cwiseAbs().maxCoeff(), 0.0f);
}

TEST(ThreeLayerRecovery, ProblemsOutsideTheTheoryAreRefused) {
    const Case c{"conv4x4s1p0-gated-pool1", {1, 4, 4}, 6, 2};
    const Dataset raw = random_dataset(c, 9);
    const PatchMatrices patches = extract_patches(raw, parse_architecture(c.architecture));
    const PatternPairs pairs = sample_pattern_pairs(patches, {3, 3, 3, 1});
    const ThreeLayerProblem problem{patches, pairs, raw.labels, c.classes, Loss::squared};
    try {
        problem.validate();
        ADD_FAILURE() << "a gated architecture was accepted";
    } catch (const Error& error) {
        EXPECT_NE(std::string(error.what()).find("--arch conv4x4s1p0-gated-pool1"), std::string::npos) << error.what();
    }
    // Exact enumeration of the second layer is 2^(n K) patterns: refused beyond 16 rows.
    const PatchMatrices cnn = extract_patches(raw, parse_architecture("conv2x2s1p0-relu-pool1"));
    EXPECT_THROW((void)enumerate_pattern_pairs(cnn, 2), Error);
}
