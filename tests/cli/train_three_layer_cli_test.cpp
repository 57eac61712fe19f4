// cvxcnn train --depth 3: the three-layer convex program from the command line; the model
// file it writes is read by eval, info and export; combinations outside the program are
// refused with one line (exit 2 for usage, 1 for bad input).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cvxcnn/model/model_file.hpp"
#include "export/test_models.hpp"
#include "test_support.hpp"

using namespace cvxcnn;
using test::count_lines;
using test::run_cli;

TEST(TrainThreeLayerCli, TrainsAThreeLayerModelThatEvalInfoAndExportRead) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 3, 6, {1, 6, 6}, 51);
    const std::string data = (dir / "data").string(), model = (dir / "deep.cvx").string();
    const auto trained = run_cli({"-q", "train", data, "--out", model, "--depth", "3", "--val-split", "0", "--beta",
                                  "1e-3", "--patterns", "4", "--json"});
    ASSERT_EQ(trained.exit_code, 0) << trained.err;
    const auto summary = nlohmann::json::parse(trained.out);
    EXPECT_EQ(summary["depth"], 3);
    EXPECT_EQ(summary["architecture"], "conv6x6s1p0-relu-pool1");
    EXPECT_EQ(summary["first_layer_patterns"].get<int>() * summary["second_layer_patterns"].get<int>(),
              summary["pattern_pairs"].get<int>());
    // The certificate: a lower bound below the objective, and the saved float network
    // computes the program's logits.
    EXPECT_LE(summary["dual_objective"].get<double>(), summary["objective"].get<double>());
    EXPECT_LE(summary["recovery"]["max_relative_logit_difference_engine_vs_program"].get<double>(), 1e-3);
    const Model saved = read_model(model);
    ASSERT_TRUE(saved.has_hidden_layer());
    EXPECT_EQ(saved.hidden_units(), summary["hidden_units"].get<int>());
    EXPECT_EQ(saved.filters(), summary["filters"].get<int>());
    EXPECT_GT(saved.hidden_units(), 0);

    const auto eval = run_cli({"-q", "eval", model, data, "--json"});
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    // eval runs the oneDNN engine; training measured the reference engine on the same images.
    EXPECT_DOUBLE_EQ(nlohmann::json::parse(eval.out)["accuracy"].get<double>(), summary["train_accuracy"].get<double>());
    const auto info = run_cli({"info", model, "--json"});
    ASSERT_EQ(info.exit_code, 0) << info.err;
    EXPECT_EQ(nlohmann::json::parse(info.out)["depth"], 3);
    EXPECT_EQ(nlohmann::json::parse(info.out)["hidden_units"], saved.hidden_units());
    const auto text = run_cli({"info", model});
    EXPECT_NE(text.out.find("hidden layer"), std::string::npos) << text.out;
    const auto exported = run_cli({"export", model, "--out", (dir / "deep.onnx").string()});
    EXPECT_EQ(exported.exit_code, 0) << exported.err;

    // Human-readable summary: the same run without --json.
    const auto plain = run_cli({"-q", "train", data, "--out", model, "--depth", "3", "--val-split", "0", "--beta",
                                "1e-3", "--patterns", "3", "--max-iters", "50"});
    ASSERT_EQ(plain.exit_code, 0) << plain.err;
    EXPECT_NE(plain.out.find("depth 3"), std::string::npos) << plain.out;
    EXPECT_NE(plain.out.find("relative duality gap"), std::string::npos) << plain.out;
}

TEST(TrainThreeLayerCli, CombinationsOutsideTheProgramAreRefusedWithOneLine) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 2, 3, {1, 6, 6}, 52);
    const std::string data = (dir / "data").string(), out = (dir / "m.cvx").string();
    // Usage errors: exit 2, one line naming the option.
    for (const auto& [extra, flag] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{"--solver", "sgd"}, "--depth"},
             {{"--solver", "adam"}, "--depth"},
             {{"--solver", "relaxation"}, "--depth"},
             {{"--resume", "x.ckpt"}, "--resume"},
             {{"--checkpoint", "x.ckpt"}, "--checkpoint"},
             {{"--pattern-source", "data"}, "--pattern-source"},
             {{"--epochs", "3"}, "--epochs"}}) {
        std::vector<std::string> args = {"train", data, "--out", out, "--depth", "3"};
        args.insert(args.end(), extra.begin(), extra.end());
        SCOPED_TRACE(flag);
        test::expect_one_line_error(run_cli(args), 2, flag);
    }
    const auto depth4 = run_cli({"train", data, "--out", out, "--depth", "4"});
    EXPECT_EQ(depth4.exit_code, 2);
    EXPECT_EQ(count_lines(depth4.err), 1) << depth4.err;

    // Bad input: exit 1, one line naming the option.
    for (const auto& [extra, flag] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{"--arch", "conv6x6s1p0-gated-pool1", "--beta", "1e-3"}, "--arch"},
             {{"--arch", "conv3x3s1p0-leaky0.1-pool1", "--beta", "1e-3"}, "--arch"},
             {{"--rank", "2", "--beta", "1e-3", "--val-split", "0"}, "--rank"},  // 2^6 - 1 second-layer patterns: fine
             {{"--val-split", "0"}, "--beta"}}) {
        std::vector<std::string> args = {"-q", "train", data, "--out", out, "--depth", "3"};
        args.insert(args.end(), extra.begin(), extra.end());
        const auto result = run_cli(args);
        SCOPED_TRACE(flag);
        if (flag == "--rank") {
            // Six images, one patch each: every pattern pair is enumerable, and it trains.
            EXPECT_EQ(result.exit_code, 0) << result.err;
            continue;
        }
        test::expect_one_line_error(result, 1, flag);
    }
    // Exact enumeration of a CNN's second layer (2^(n K) patterns) is refused, naming --rank.
    const auto cnn = run_cli({"-q", "train", data, "--out", out, "--depth", "3", "--arch", "conv3x3s1p0-relu-pool1",
                              "--rank", "2", "--beta", "1e-3", "--val-split", "0"});
    test::expect_one_line_error(cnn, 1, "--rank");
}
