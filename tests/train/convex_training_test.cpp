#include "cvxcnn/train/convex_training.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <oneapi/tbb/global_control.h>

#include <random>

#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/patterns/sign_patterns.hpp"
#include "cvxcnn/util/error.hpp"
#include "test_support.hpp"

using namespace cvxcnn;

namespace {

Dataset bars(int per_class, unsigned seed) { return test::bar_images(per_class, seed); }

TrainingSettings small_settings() {
    TrainingSettings settings;
    settings.architecture = parse_architecture("conv3x3s1p1-gated-pool2");
    settings.patterns = 6;
    settings.seed = 11;
    settings.beta = 1e-2;
    settings.val_split = 0.2;
    settings.max_iters = 3000;
    settings.rel_gap_tol = 1e-4;
    return settings;
}

}  // namespace

TEST(ConvexTraining, ConvergesToTheCertifiedGapAndTheModelMatchesTheSolve) {
    const Dataset data = bars(20, 1);
    const TrainingResult result = train_convex_cnn(data, small_settings());
    EXPECT_EQ(result.solve.status, SolverStatus::solved);
    EXPECT_LE(result.solve.rel_gap, 1e-4);
    EXPECT_GE(result.solve.gap, -1e-9 * result.solve.primal) << "weak duality";
    EXPECT_GT(result.model.filters(), 0);
    EXPECT_EQ(result.model.training["filters"], result.model.filters());
    EXPECT_DOUBLE_EQ(result.model.training["relative_duality_gap"].get<double>(), result.solve.rel_gap);
    EXPECT_GT(result.train_accuracy, 0.9);
    // The recovered network classifies the training split as the convex model did.
    auto [train_indices, val_indices] = split_indices(data.size(), 0.2, 11);
    const Dataset train = subset(data, train_indices);
    const auto predicted = argmax_rows(reference_logits(result.model, train));
    std::size_t correct = 0;
    for (std::size_t i = 0; i < predicted.size(); ++i) correct += predicted[i] == train.labels[i];
    EXPECT_NEAR(static_cast<double>(correct) / predicted.size(), result.train_accuracy, 1e-12);
}

TEST(ConvexTraining, SameSeedSameModelAndThreadCountDoesNotMatter) {
    const Dataset data = bars(12, 2);
    TrainingSettings settings = small_settings();
    settings.max_iters = 200;
    std::vector<std::uint8_t> one, two, again;
    {
        oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 1);
        one = encode_model([&] { auto m = train_convex_cnn(data, settings).model; m.training.erase("time_s"); m.training.erase("path"); return m; }());
    }
    {
        oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 2);
        two = encode_model([&] { auto m = train_convex_cnn(data, settings).model; m.training.erase("time_s"); m.training.erase("path"); return m; }());
        again = encode_model([&] { auto m = train_convex_cnn(data, settings).model; m.training.erase("time_s"); m.training.erase("path"); return m; }());
    }
    EXPECT_EQ(two, again) << "same seed, same result";
    EXPECT_EQ(one, two) << "1 and 2 threads";
    settings.seed = 12;
    const auto other = train_convex_cnn(data, settings).model;
    EXPECT_NE(other.conv_weight, decode_model(two, "two").conv_weight) << "the seed must matter";
}

TEST(ConvexTraining, AutoBetaWalksThePathAndKeepsTheBestValidationAccuracy) {
    const Dataset data = bars(15, 3);
    TrainingSettings settings = small_settings();
    settings.beta.reset();
    settings.path_points = 3;
    settings.max_iters = 3000;
    const TrainingResult result = train_convex_cnn(data, settings);
    ASSERT_EQ(result.path.size(), 3u);
    // The chosen beta is the first (largest) with the best validation accuracy on the path.
    double best = -1, chosen = 0;
    for (const auto& point : result.path)
        if (point["val_accuracy"].get<double>() > best) {
            best = point["val_accuracy"].get<double>();
            chosen = point["beta"].get<double>();
        }
    EXPECT_DOUBLE_EQ(result.beta, chosen);
    EXPECT_LT(result.path[1]["beta"].get<double>(), result.path[0]["beta"].get<double>()) << "path goes down";
    EXPECT_NEAR(result.path[0]["beta"].get<double>(), settings.path_max_ratio * result.beta_max, 1e-12 * result.beta_max);
    // The path only ranks betas; the chosen one is then certified to the requested gap.
    EXPECT_LE(result.solve.rel_gap, settings.rel_gap_tol);
}

TEST(ConvexTraining, RankEnumerationTrainsOnEveryPatternOfTheArrangement) {
    // RGB 3x3 images and a 1x1 convolution: patches are pixels, h = 3. At --rank 2 the
    // trainer must use every cell of the arrangement of the projected patches (minus the
    // empty one), gate them with lifted generators, and still certify its solve.
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset data;
    data.shape = {3, 3, 3};
    data.class_names = {"a", "b"};
    for (int i = 0; i < 16; ++i) {
        const int label = i % 2;
        for (int v = 0; v < 27; ++v) data.images.push_back(pixel(rng) * (v < 9 && label ? 0.3f : 1.0f));
        data.labels.push_back(label);
    }
    TrainingSettings settings = small_settings();
    settings.architecture = parse_architecture("conv1x1-gated-pool1");
    settings.rank = 2;
    settings.val_split = 0.25;
    const TrainingResult result = train_convex_cnn(data, settings);

    auto [train_indices, val_indices] = split_indices(data.size(), settings.val_split, settings.seed);
    Dataset train = subset(data, train_indices);
    Normalization::compute(train).apply(train);
    const PatchMatrices patches = extract_patches(train, settings.architecture);
    const RankProjection projection = project_to_rank(patches.stacked(), 2);
    SignPatterns every = enumerate_sign_patterns(projection.reduced);
    const std::size_t empty = drop_empty_patterns(every);
    EXPECT_EQ(result.patterns_kept, every.count());
    EXPECT_EQ(result.patterns_kept + empty,
              count_arrangement_cells_bound(static_cast<std::uint64_t>(patches.stacked().rows()), 2))
        << "random pixels are in general position: the closed-form count";
    EXPECT_GT(result.rank_residual, 0.0) << "RGB pixels have rank 3, projected to 2";
    EXPECT_EQ(result.solve.status, SolverStatus::solved);
    EXPECT_NE(result.model.training["pattern_source"].get<std::string>().find("exact"), std::string::npos);

    settings.max_enumerated_patterns = 10;
    EXPECT_THROW((void)train_convex_cnn(data, settings), Error) << "over the enumeration cap: refused before work";
}

// ReLU, leaky ReLU and abs at scale: the gated program on the activation's blocks, then the
// cone decomposition. The network must reproduce the convex model on the training split.
TEST(ConvexTraining, ReluLeakyAndAbsNetworksReproduceTheirConvexModel) {
    const Dataset data = bars(12, 6);
    for (const char* arch : {"conv3x3s1p1-relu-pool2", "conv3x3s1p1-leaky0.1-pool2", "conv3x3s1p1-abs-pool2"}) {
        SCOPED_TRACE(arch);
        TrainingSettings settings = small_settings();
        settings.architecture = parse_architecture(arch);
        const TrainingResult result = train_convex_cnn(data, settings);
        EXPECT_EQ(result.model.architecture, settings.architecture);
        EXPECT_EQ(result.solve.status, SolverStatus::solved);
        const auto& recovery = result.model.training["recovery"];
        EXPECT_EQ(recovery["train_prediction_agreement"].get<double>(), 1.0);
        EXPECT_LE(recovery["max_relative_logit_difference"].get<double>(), 1e-4);
        const auto& split = recovery["cone_decomposition"];
        EXPECT_GE(split["split_norm"].get<double>(), split["gated_norm"].get<double>() * (1 - 1e-9))
            << "a split never has a smaller regularizer";
        EXPECT_GE(recovery["network_objective"].get<double>(), result.solve.dual) << "weak duality";
        // The recovered network classifies the training split as the convex model did.
        auto [train_indices, val_indices] = split_indices(data.size(), settings.val_split, settings.seed);
        const Dataset train = subset(data, train_indices);
        const auto predicted = argmax_rows(reference_logits(result.model, train));
        std::size_t correct = 0;
        for (std::size_t i = 0; i < predicted.size(); ++i) correct += predicted[i] == train.labels[i];
        EXPECT_NEAR(static_cast<double>(correct) / predicted.size(), result.train_accuracy, 1e-12);
    }
}

// With --rank every pattern is enumerated and the exact ReLU program itself is solved.
TEST(ConvexTraining, RankWithReluSolvesTheExactProgramToItsCertificate) {
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset data;
    data.shape = {3, 2, 2};
    data.class_names = {"a", "b"};
    for (int i = 0; i < 10; ++i) {
        for (int v = 0; v < 12; ++v) data.images.push_back(pixel(rng) * (v < 4 && i % 2 ? 0.3f : 1.0f));
        data.labels.push_back(i % 2);
    }
    TrainingSettings settings = small_settings();
    settings.architecture = parse_architecture("conv1x1-relu-pool1");
    settings.rank = 2;
    settings.val_split = 0.2;
    settings.loss = Loss::squared;
    settings.rel_gap_tol = 1e-4;
    const TrainingResult result = train_convex_cnn(data, settings);
    EXPECT_EQ(result.solve.status, SolverStatus::solved);
    EXPECT_LE(result.solve.rel_gap, 1e-4);
    EXPECT_GE(result.solve.gap, -1e-9) << "weak duality";
    const auto& recovery = result.model.training["recovery"];
    EXPECT_TRUE(recovery.contains("exact_program"));
    EXPECT_EQ(recovery["train_prediction_agreement"].get<double>(), 1.0);
    EXPECT_LE(recovery["max_relative_logit_difference"].get<double>(), 1e-4);
    EXPECT_LE(recovery["exact_program"]["max_violation"].get<double>(), 1e-6);
}

TEST(ConvexTraining, BadSettingsAndMemoryLimitAreOneLineErrors) {
    const Dataset data = bars(4, 4);
    auto message = [&](TrainingSettings settings) {
        try {
            (void)train_convex_cnn(data, settings);
        } catch (const Error& error) {
            EXPECT_EQ(std::string(error.what()).find('\n'), std::string::npos);
            return std::string(error.what());
        }
        return std::string("no error");
    };
    TrainingSettings leaky = small_settings();
    leaky.architecture = parse_architecture("conv3x3s1p1-leaky0.1-pool2");
    leaky.architecture.leaky_slope = 1.5f;
    EXPECT_NE(message(leaky).find("slope"), std::string::npos) << message(leaky);
    TrainingSettings tiny_memory = small_settings();
    tiny_memory.max_memory_bytes = 1024;
    EXPECT_NE(message(tiny_memory).find("--max-memory"), std::string::npos);
    TrainingSettings inverted_path = small_settings();
    inverted_path.beta.reset();
    inverted_path.path_min_ratio = 0.5;
    inverted_path.path_max_ratio = 0.1;
    EXPECT_NE(message(inverted_path).find("--path-min"), std::string::npos);
    TrainingSettings auto_without_val = small_settings();
    auto_without_val.beta.reset();
    auto_without_val.val_split = 0;
    EXPECT_NE(message(auto_without_val).find("--val-split"), std::string::npos);
}

TEST(TrainCli, TrainThenEvalOnAnImageFolder) {
    test::ScratchDir dir;
    const Dataset data = bars(8, 5);
    for (std::size_t i = 0; i < data.size(); ++i) {
        std::vector<std::uint8_t> pixels;
        for (float v : data.image(i)) pixels.push_back(static_cast<std::uint8_t>(std::min(255.0f, v * 255.0f)));
        test::write_png_hwc(dir / (data.class_names[data.labels[i]] + "/" + std::to_string(i) + ".png"), pixels, 6, 6, 1);
    }
    const std::string model = (dir / "m.cvx").string();
    const auto trained = test::run_cli({"-q", "train", dir.path().string(), "--out", model, "--arch",
                                        "conv3x3s1p1-gated-pool2", "--patterns", "4", "--beta", "0.01", "--json"});
    ASSERT_EQ(trained.exit_code, 0) << trained.err;
    const auto summary = nlohmann::json::parse(trained.out);
    EXPECT_EQ(summary["filters"].get<int>(), read_model(model).filters());
    const auto evaluated = test::run_cli({"-q", "eval", model, dir.path().string(), "--json"});
    ASSERT_EQ(evaluated.exit_code, 0) << evaluated.err;
    const auto evaluation = nlohmann::json::parse(evaluated.out);
    EXPECT_EQ(evaluation["n"], 24);
    EXPECT_EQ(evaluation["confusion"].size(), 3u);

    // Bad flag values: exit 1 (library) or 2 (usage), one line, and the model is untouched.
    const auto before = test::read_bytes(model);
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"train", dir.path().string(), "--out", model, "--beta", "-1", "--arch", "conv3x3s1p1-gated-pool2"},
             {"train", dir.path().string(), "--out", model, "--max-memory", "1k", "--arch", "conv3x3s1p1-gated-pool2"},
             {"train", dir.path().string(), "--out", model, "--patterns", "0"}}) {
        const auto result = test::run_cli(args);
        EXPECT_NE(result.exit_code, 0);
        EXPECT_EQ(test::count_lines(result.err), 1) << result.err;
    }
    EXPECT_EQ(test::read_bytes(model), before);
}
