// cvxcnn train --solver sgd|adam: the model it writes works with eval, predict and export,
// and options of the other kind of solver are refused with one line.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cvxcnn/model/model_file.hpp"
#include "export/test_models.hpp"
#include "test_support.hpp"

using namespace cvxcnn;
using test::run_cli;

TEST(TrainSgdCli, TrainsAModelThatEvalPredictAndExportAccept) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 3, 6, {1, 8, 8}, 21);
    const std::string data = (dir / "data").string(), model = (dir / "adam.cvx").string();
    const auto trained = run_cli({"-q", "train", data, "--out", model, "--solver", "adam", "--lr", "1e-2", "--epochs",
                                  "3", "--width", "4", "--batch-size", "5", "--arch", "conv3x3s1p1-relu-pool2",
                                  "--val-split", "0", "--beta", "1e-3", "--json"});
    ASSERT_EQ(trained.exit_code, 0) << trained.err;
    EXPECT_TRUE(trained.err.empty()) << trained.err;
    const auto summary = nlohmann::json::parse(trained.out);
    EXPECT_EQ(summary["solver"], "adam");
    EXPECT_EQ(summary["width"], 4);
    EXPECT_EQ(summary["batch_size"], 5);
    EXPECT_EQ(summary["epochs_done"], 3);
    EXPECT_DOUBLE_EQ(summary["lr"].get<double>(), 1e-2);
    EXPECT_DOUBLE_EQ(summary["beta"].get<double>(), 1e-3);
    EXPECT_GT(summary["objective"].get<double>(), 0.0);
    EXPECT_EQ(summary["history"].size(), 3u);
    const Model saved = read_model(model);
    EXPECT_EQ(saved.filters(), 4);
    EXPECT_EQ(saved.training["solver"], "adam");

    // Without a validation split the training accuracy is over the whole folder: eval agrees.
    const auto eval = run_cli({"-q", "eval", model, data, "--json"});
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    EXPECT_NEAR(nlohmann::json::parse(eval.out)["accuracy"].get<double>(), summary["train_accuracy"].get<double>(),
                1.5 / 18);
    const auto predict = run_cli({"-q", "predict", model, (dir / "data" / "class0" / "0.png").string()});
    EXPECT_EQ(predict.exit_code, 0) << predict.err;
    const auto exported = run_cli({"-q", "export", model, "--out", (dir / "adam.onnx").string()});
    EXPECT_EQ(exported.exit_code, 0) << exported.err;

    // sgd with a momentum, progress lines on stderr, the human summary on stdout.
    const auto sgd = run_cli({"train", data, "--out", (dir / "sgd.cvx").string(), "--solver", "sgd", "--lr", "1e-2",
                              "--momentum", "0.5", "--epochs", "2", "--width", "3", "--arch", "conv3x3s1p1-gated-pool2"});
    ASSERT_EQ(sgd.exit_code, 0) << sgd.err;
    EXPECT_NE(sgd.err.find("epoch 2/2"), std::string::npos) << sgd.err;
    EXPECT_NE(sgd.out.find("by sgd"), std::string::npos) << sgd.out;
    EXPECT_DOUBLE_EQ(read_model((dir / "sgd.cvx").string()).training["momentum"].get<double>(), 0.5);
}

TEST(TrainSgdCli, OptionsOfTheOtherSolverAreUsageErrorsNamingTheFlag) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 2, 2, {1, 8, 8}, 22);
    const std::string data = (dir / "data").string(), out = (dir / "m.cvx").string();
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"--solver", "adam", "--patterns", "4"}, "--patterns"},
        {{"--solver", "sgd", "--tol", "1e-3"}, "--tol"},
        {{"--solver", "sgd", "--rank", "2"}, "--rank"},
        {{"--lr", "0.1"}, "--lr"},
        {{"--solver", "convex", "--epochs", "3"}, "--epochs"},
        {{"--width", "8"}, "--width"},
        {{"--batch-size", "8"}, "--batch-size"},
        {{"--solver", "adam", "--momentum", "0.5"}, "--momentum"},
        {{"--momentum", "0.5"}, "--momentum"},
        {{"--solver", "sgd", "--beta", "auto"}, "--beta"},
        {{"--solver", "rmsprop"}, "--solver"},
    };
    for (const auto& [extra, flag] : cases) {
        std::vector<std::string> args = {"train", data, "--out", out};
        args.insert(args.end(), extra.begin(), extra.end());
        SCOPED_TRACE(flag);
        test::expect_one_line_error(run_cli(args), 2, flag);
    }
    // Values the library refuses: one line, exit 1, before any image is read.
    for (const auto& [extra, flag] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{"--solver", "sgd", "--lr", "-1"}, "--lr"}, {{"--solver", "adam", "--beta", "x"}, "--beta"}}) {
        std::vector<std::string> args = {"train", (dir / "missing").string(), "--out", out};
        args.insert(args.end(), extra.begin(), extra.end());
        SCOPED_TRACE(flag);
        test::expect_one_line_error(run_cli(args), 1, flag);
    }
}
