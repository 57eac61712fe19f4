#include "cvxcnn/train/training_split.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "cvxcnn/util/error.hpp"
#include "test_support.hpp"

using namespace cvxcnn;

TEST(TrainingSplit, NormalizesOnTheTrainingPartAndExtractsItsPatches) {
    const Dataset data = test::bar_images(10, 3);
    const Architecture architecture = parse_architecture("conv3x3s1p1-gated-pool2");
    const TrainingSplit split = prepare_training_split(data, architecture, 0.3, 5);

    // The parts are split_indices' (seeded, deterministic), raw.
    const auto [train_indices, val_indices] = split_indices(data.size(), 0.3, 5);
    const Dataset train = subset(data, train_indices), val = subset(data, val_indices);
    ASSERT_GT(val.size(), 0u);
    EXPECT_EQ(split.train.images, train.images);
    EXPECT_EQ(split.train.labels, train.labels);
    EXPECT_EQ(split.val.images, val.images);
    EXPECT_EQ(split.val.labels, val.labels);

    // Normalized by the training part's own statistics: mean 0, standard deviation 1.
    Dataset normalized = split.train;
    split.normalization.apply(normalized);
    double sum = 0.0, sum_sq = 0.0;
    for (const float x : normalized.images) {
        sum += x;
        sum_sq += static_cast<double>(x) * x;
    }
    const double count = static_cast<double>(normalized.images.size());
    EXPECT_NEAR(sum / count, 0.0, 1e-6);
    EXPECT_NEAR(std::sqrt(sum_sq / count - (sum / count) * (sum / count)), 1.0, 1e-5);

    // The patches are those of the normalized training images.
    const PatchMatrices expected = extract_patches(normalized, architecture);
    EXPECT_EQ(split.patches.stacked(), expected.stacked());
}

TEST(TrainingSplit, RefusesASplitThatLeavesNoTrainingImages) {
    const Dataset one = subset(test::bar_images(1, 4), {0});
    try {
        (void)prepare_training_split(one, parse_architecture("conv3x3s1p1-gated-pool1"), 0.9, 0);
        FAIL() << "no training image: must throw";
    } catch (const Error& error) {
        EXPECT_EQ(error.kind(), ErrorKind::bad_input);
        EXPECT_NE(std::string(error.what()).find("--val-split"), std::string::npos) << error.what();
    }
}

// What the convex and SGD trainers start from: the seeded indices and the normalization
// of the training part alone (never of the held-out images).
TEST(TrainingSplit, SplitForTrainingIsTheSeededSplitAndItsTrainingNormalization) {
    const Dataset data = test::bar_images(10, 3);
    const SplitIndices split = split_for_training(data, 0.3, 5);
    const auto [train_indices, val_indices] = split_indices(data.size(), 0.3, 5);
    EXPECT_EQ(split.train, train_indices);
    EXPECT_EQ(split.val, val_indices);
    const Normalization train_only = Normalization::compute(subset(data, train_indices));
    EXPECT_EQ(split.normalization.mean, train_only.mean);
    EXPECT_EQ(split.normalization.std, train_only.std);
    EXPECT_NE(split.normalization.mean, Normalization::compute(data).mean) << "the held-out images must not count";
    EXPECT_THROW((void)split_for_training(subset(data, {0}), 0.9, 0), Error);
}

TEST(TrainingSplit, RunFactsAreTheTailOfTheTrainingRecord) {
    RunFacts facts;
    facts.train_samples = 90;
    facts.val_samples = 10;
    facts.train_accuracy = 0.95;
    facts.val_accuracy = 0.8;
    facts.seconds = 1.5;
    nlohmann::json record = {{"solver", "sdp"}, {"seed", 0}};
    record.update(run_facts_json(facts, 7));
    EXPECT_EQ(record.size(), 7u);
    EXPECT_EQ(record["solver"], "sdp");
    EXPECT_EQ(record["train_samples"], 90);
    EXPECT_EQ(record["val_samples"], 10);
    EXPECT_DOUBLE_EQ(record["train_accuracy"].get<double>(), 0.95);
    EXPECT_DOUBLE_EQ(record["val_accuracy"].get<double>(), 0.8);
    EXPECT_EQ(record["seed"], 7);
    EXPECT_DOUBLE_EQ(record["time_s"].get<double>(), 1.5);
}

TEST(TrainingSplit, AccuracyIsTheFractionOfPredictionsEqualToTheLabels) {
    const std::vector<std::int32_t> labels{0, 1, 2, 1}, predicted{0, 1, 1, 1};
    EXPECT_DOUBLE_EQ(prediction_accuracy(predicted, labels), 0.75);
    EXPECT_DOUBLE_EQ(prediction_accuracy(labels, labels), 1.0);
    EXPECT_EQ(prediction_accuracy({}, {}), -1.0) << "no validation split";
    EXPECT_THROW((void)prediction_accuracy(predicted, std::vector<std::int32_t>{0, 1}), Error);
}
