// cvxcnn train --solver sdp: the SDP relaxation on a small Fashion-MNIST subset gives an
// ordinary model file that eval runs, with the relaxation's certified bound below the
// rounded network's objective; options of the other trainers and oversized problems are
// refused with one line.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cvxcnn/model/model_file.hpp"
#include "export/test_models.hpp"
#include "test_support.hpp"

using namespace cvxcnn;
using test::run_cli;

namespace {

const std::filesystem::path sample_train = std::filesystem::path(CVXCNN_SOURCE_DIR) / "datasets/fashion-mnist-sample/train";

/// The first `per_class` images of two Fashion-MNIST classes.
void copy_two_classes(const std::filesystem::path& root, int per_class) {
    for (const char* name : {"Trouser", "Bag"}) {
        std::vector<std::filesystem::path> files;
        for (const auto& entry : std::filesystem::directory_iterator(sample_train / name)) files.push_back(entry.path());
        std::sort(files.begin(), files.end());
        std::filesystem::create_directories(root / name);
        for (int i = 0; i < per_class; ++i)
            std::filesystem::copy_file(files[static_cast<std::size_t>(i)], root / name / files[static_cast<std::size_t>(i)].filename());
    }
}

}  // namespace

TEST(TrainSdpCli, TrainsARoundedNetworkThatEvalRuns) {
    test::ScratchDir dir;
    copy_two_classes(dir / "data", 20);
    const std::string data = (dir / "data").string(), model = (dir / "sdp.cvx").string();
    const auto trained = run_cli({"-q", "train", data, "--out", model, "--solver", "sdp", "--resize", "14x14",
                                  "--val-split", "0.25", "--sdp-dim", "6", "--beta", "1e-2", "--json"});
    ASSERT_EQ(trained.exit_code, 0) << trained.err;
    const auto summary = nlohmann::json::parse(trained.out);
    EXPECT_EQ(summary["solver"], "sdp");
    EXPECT_EQ(summary["architecture"], "conv14x14s1p0-relu-pool1");
    EXPECT_EQ(summary["sdp_dim"], 6);
    EXPECT_EQ(summary["train_samples"], 30);
    EXPECT_EQ(summary["sdp"]["lifted_size"], 2 * 30 + 6 + 2);
    EXPECT_GE(summary["rank"].get<int>(), 1);
    // Weak duality: the certified bound is below every network's objective, the rounded one's included.
    EXPECT_LE(summary["dual_bound"].get<double>(), summary["rounded_objective"].get<double>());
    EXPECT_GE(summary["rounding_gap"].get<double>(), -1e-3);  // the SDP value is (nearly) a lower bound too
    const Model saved = read_model(model);
    EXPECT_EQ(saved.filters(), summary["filters"].get<int>());
    const auto eval = run_cli({"-q", "eval", model, data, "--resize", "14x14", "--json"});
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    const double accuracy = nlohmann::json::parse(eval.out)["accuracy"].get<double>();
    EXPECT_GE(accuracy, 0.0);
    EXPECT_LE(accuracy, 1.0);
}

TEST(TrainSdpCli, OptionsOfOtherTrainersAndOversizedProblemsAreRefused) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 2, 2, {1, 6, 6}, 43);
    const std::string data = (dir / "data").string(), out = (dir / "m.cvx").string();
    for (const auto& [extra, flag] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{"--patterns", "4"}, "--patterns"},
             {{"--epochs", "3"}, "--epochs"},
             {{"--loss", "cross-entropy"}, "--loss"},
             {{"--beta", "auto"}, "--beta"}}) {
        std::vector<std::string> args = {"train", data, "--out", out, "--solver", "sdp"};
        args.insert(args.end(), extra.begin(), extra.end());
        SCOPED_TRACE(flag);
        test::expect_one_line_error(run_cli(args), 2, flag);
    }
    const auto other_solver = run_cli({"train", data, "--out", out, "--solver", "relaxation", "--sdp-dim", "4"});
    test::expect_one_line_error(other_solver, 2, "--sdp-dim");

    const auto too_many_dims = run_cli({"train", data, "--out", out, "--solver", "sdp", "--sdp-dim", "37"});
    test::expect_one_line_error(too_many_dims, 1, "--sdp-dim");

    const auto arch = run_cli({"train", data, "--out", out, "--solver", "sdp", "--arch", "conv3x3s1p1-relu-pool2"});
    test::expect_one_line_error(arch, 1, "conv6x6s1p0-relu-pool1");

    // 1000 images: p = 2n + d + c is far above the limit; refused before solving.
    const auto large = run_cli({"train", sample_train.string(), "--out", out, "--solver", "sdp", "--val-split", "0"});
    test::expect_one_line_error(large, 1, "--val-split");
    EXPECT_FALSE(std::filesystem::exists(out));
}
