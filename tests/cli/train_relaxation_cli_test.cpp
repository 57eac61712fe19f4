// cvxcnn train --solver relaxation: one ReLU neuron per class on the whole image, an
// ordinary model file (eval runs it), and options of the other trainers refused.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cvxcnn/model/model_file.hpp"
#include "export/test_models.hpp"
#include "test_support.hpp"

using namespace cvxcnn;
using test::run_cli;

TEST(TrainRelaxationCli, TrainsOneNeuronPerClassThatEvalRuns) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 3, 6, {1, 6, 6}, 41);
    const std::string data = (dir / "data").string(), model = (dir / "relax.cvx").string();
    // --method is the switch's other name: the issue and the papers call these methods.
    const auto trained = run_cli({"-q", "train", data, "--out", model, "--method", "relaxation", "--val-split", "0",
                                  "--beta", "1e-3", "--json"});
    ASSERT_EQ(trained.exit_code, 0) << trained.err;
    const auto summary = nlohmann::json::parse(trained.out);
    EXPECT_EQ(summary["solver"], "relaxation");
    EXPECT_EQ(summary["architecture"], "conv6x6s1p0-relu-pool1");
    EXPECT_TRUE(summary["converged"].get<bool>());
    EXPECT_EQ(summary["relaxed_objectives"].size(), 3u);
    const Model saved = read_model(model);
    EXPECT_EQ(saved.filters(), 3);
    // 18 random images in 36 dimensions: each one-hot column is fit exactly.
    EXPECT_DOUBLE_EQ(summary["train_accuracy"].get<double>(), 1.0);
    const auto eval = run_cli({"-q", "eval", model, data, "--json"});
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    EXPECT_DOUBLE_EQ(nlohmann::json::parse(eval.out)["accuracy"].get<double>(), 1.0);
}

TEST(TrainRelaxationCli, OptionsOfOtherTrainersAndOtherArchitecturesAreRefused) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 2, 2, {1, 6, 6}, 42);
    const std::string data = (dir / "data").string(), out = (dir / "m.cvx").string();
    for (const auto& [extra, flag] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{"--patterns", "4"}, "--patterns"},
             {{"--epochs", "3"}, "--epochs"},
             {{"--loss", "cross-entropy"}, "--loss"},
             {{"--beta", "auto"}, "--beta"}}) {
        std::vector<std::string> args = {"train", data, "--out", out, "--solver", "relaxation"};
        args.insert(args.end(), extra.begin(), extra.end());
        SCOPED_TRACE(flag);
        test::expect_one_line_error(run_cli(args), 2, flag);
    }
    const auto arch = run_cli({"train", data, "--out", out, "--solver", "relaxation", "--arch", "conv3x3s1p1-relu-pool2"});
    test::expect_one_line_error(arch, 1, "conv6x6s1p0-relu-pool1");
}
