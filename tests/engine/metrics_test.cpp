// Accuracy, per-class accuracy and confusion matrices against hand-computed values.
#include "cvxcnn/engine/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cvxcnn/util/error.hpp"

using namespace cvxcnn;

namespace {

template <typename F>
void expect_error(F&& call, const std::string& fragment) {
    try {
        call();
        FAIL() << "expected cvxcnn::Error containing '" << fragment << "'";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::bad_input) << e.what();
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(Metrics, HandComputedConfusionWithAnEmptyClass) {
    // 4 classes; class 2 has no sample (but is predicted once), class 3 is never right.
    const std::vector<std::int32_t> labels = {0, 0, 0, 1, 1, 3, 3, 0, 1, 1};
    const std::vector<std::int32_t> predicted = {0, 1, 0, 1, 1, 0, 2, 0, 1, 3};
    const Evaluation e = evaluate(predicted, labels, 4);
    EXPECT_EQ(e.n, 10u);
    // Correct: i = 0, 2, 3, 4, 7, 8 -> 6 of 10.
    EXPECT_DOUBLE_EQ(e.accuracy, 0.6);
    EXPECT_DOUBLE_EQ(e.accuracy_stderr, std::sqrt(0.6 * 0.4 / 10.0));
    const std::vector<std::vector<std::size_t>> confusion = {
        {3, 1, 0, 0},  // true 0: predicted 0,1,0,0
        {0, 3, 0, 1},  // true 1: predicted 1,1,1,3
        {0, 0, 0, 0},  // true 2: no sample
        {1, 0, 1, 0},  // true 3: predicted 0,2
    };
    EXPECT_EQ(e.confusion, confusion);
    EXPECT_EQ(e.per_class_count, (std::vector<std::size_t>{4, 4, 0, 2}));
    ASSERT_EQ(e.per_class_accuracy.size(), 4u);
    EXPECT_DOUBLE_EQ(e.per_class_accuracy[0], 0.75);
    EXPECT_DOUBLE_EQ(e.per_class_accuracy[1], 0.75);
    EXPECT_TRUE(std::isnan(e.per_class_accuracy[2])) << "no sample: nothing measured, not 0 or 1";
    EXPECT_DOUBLE_EQ(e.per_class_accuracy[3], 0.0);
}

TEST(Metrics, PerfectAndHopelessPredictions) {
    const std::vector<std::int32_t> labels = {2, 0, 1, 2};
    const Evaluation perfect = evaluate(labels, labels, 3);
    EXPECT_DOUBLE_EQ(perfect.accuracy, 1.0);
    EXPECT_DOUBLE_EQ(perfect.accuracy_stderr, 0.0);
    EXPECT_EQ(perfect.confusion, (std::vector<std::vector<std::size_t>>{{1, 0, 0}, {0, 1, 0}, {0, 0, 2}}));
    const std::vector<std::int32_t> wrong = {0, 1, 2, 1};
    const Evaluation hopeless = evaluate(wrong, labels, 3);
    EXPECT_DOUBLE_EQ(hopeless.accuracy, 0.0);
    EXPECT_DOUBLE_EQ(hopeless.accuracy_stderr, 0.0);
    EXPECT_EQ(hopeless.confusion, (std::vector<std::vector<std::size_t>>{{0, 1, 0}, {0, 0, 1}, {1, 1, 0}}));
}

TEST(Metrics, EmptySetHasNaNAccuracy) {
    const Evaluation e = evaluate({}, {}, 2);
    EXPECT_EQ(e.n, 0u);
    EXPECT_TRUE(std::isnan(e.accuracy));
    EXPECT_TRUE(std::isnan(e.accuracy_stderr));
    EXPECT_TRUE(std::isnan(e.per_class_accuracy[0]) && std::isnan(e.per_class_accuracy[1]));
    EXPECT_EQ(e.confusion, (std::vector<std::vector<std::size_t>>{{0, 0}, {0, 0}}));
    const nlohmann::json j = to_json(e, {"a", "b"});
    EXPECT_TRUE(j["accuracy"].is_null());
    EXPECT_TRUE(j["accuracy_stderr"].is_null());
}

TEST(Metrics, RejectsInconsistentInput) {
    const std::vector<std::int32_t> two = {0, 1}, three = {0, 1, 1};
    expect_error([&] { (void)evaluate(two, three, 2); }, "2 predictions for 3 labels");
    expect_error([&] { (void)evaluate(two, two, 0); }, "classes");
    const std::vector<std::int32_t> big_label = {0, 2}, negative = {0, -1};
    expect_error([&] { (void)evaluate(two, big_label, 2); }, "label 1 is 2, outside 0..1");
    expect_error([&] { (void)evaluate(negative, two, 2); }, "prediction 1 is -1, outside 0..1");
    expect_error([&] { (void)to_json(evaluate(two, two, 2), {"only one"}); }, "2 classes but 1 class names");
}

TEST(Metrics, JsonReport) {
    const std::vector<std::int32_t> labels = {0, 0, 1, 0};
    const std::vector<std::int32_t> predicted = {0, 2, 1, 0};
    const nlohmann::json j = to_json(evaluate(predicted, labels, 3), {"cat", "dog", "fox"});
    EXPECT_EQ(j["n"], 4);
    EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), 0.75);
    EXPECT_DOUBLE_EQ(j["accuracy_stderr"].get<double>(), std::sqrt(0.75 * 0.25 / 4.0));
    ASSERT_EQ(j["classes"].size(), 3u);
    EXPECT_EQ(j["classes"][0], nlohmann::json({{"name", "cat"}, {"count", 3}, {"correct", 2}, {"accuracy", 2.0 / 3.0}}));
    EXPECT_EQ(j["classes"][1]["accuracy"], 1.0);
    EXPECT_EQ(j["classes"][2]["name"], "fox");
    EXPECT_EQ(j["classes"][2]["count"], 0);
    EXPECT_TRUE(j["classes"][2]["accuracy"].is_null());
    EXPECT_EQ(j["confusion"], nlohmann::json::parse("[[2,0,1],[0,1,0],[0,0,0]]"));
    EXPECT_NE(j.dump().find("null"), std::string::npos);  // valid JSON: no NaN token
    EXPECT_EQ(j.dump().find("NaN"), std::string::npos);
}
