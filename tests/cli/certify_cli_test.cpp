// cvxcnn certify: a convex-trained model certifies on its training split (the split comes
// from the model's record), an SGD-trained one gets the shared program, and bad input is
// one line naming the file, exit 1.
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "cvxcnn/model/model_file.hpp"
#include "export/test_models.hpp"
#include "test_support.hpp"

using namespace cvxcnn;
using test::run_cli;

TEST(CertifyCli, ConvexModelCertifiesAndSgdModelGetsTheSharedProgram) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 2, 8, {1, 6, 6}, 31);
    const std::string data = (dir / "data").string(), convex = (dir / "convex.cvx").string();
    const auto trained = run_cli({"-q", "train", data, "--out", convex, "--arch", "conv3x3s1p1-gated-pool2",
                                  "--patterns", "4", "--beta", "0.01", "--tol", "1e-6", "--max-iters", "20000",
                                  "--val-split", "0.25", "--time-limit", "0"});
    ASSERT_EQ(trained.exit_code, 0) << trained.err;
    const auto certified = run_cli({"-q", "certify", convex, data, "--json"});
    ASSERT_EQ(certified.exit_code, 0) << certified.err;
    const auto c = nlohmann::json::parse(certified.out);
    EXPECT_EQ(c["program"], "per-head");
    EXPECT_EQ(c["samples"], 12) << "the 12 training images of 16, as the model was trained";
    EXPECT_DOUBLE_EQ(c["beta"].get<double>(), 0.01);
    EXPECT_TRUE(c["optimal"].get<bool>()) << certified.out;
    EXPECT_LE(c["relative_gap"].get<double>(), 1e-4);
    EXPECT_NEAR(c["convex_objective"].get<double>(), read_model(convex).training["objective"].get<double>(),
                1e-5 * c["convex_objective"].get<double>());
    EXPECT_EQ(c["verdict"].get<std::string>().rfind("global optimum of the per-head program over its own", 0), 0u);

    // The human form ends with the verdict line; on every image (--all) the split is ignored.
    const auto text = run_cli({"-q", "certify", convex, data, "--all"});
    ASSERT_EQ(text.exit_code, 0) << text.err;
    EXPECT_NE(text.out.find("on 16 images"), std::string::npos) << text.out;
    EXPECT_NE(text.out.find("verdict"), std::string::npos) << text.out;

    const std::string sgd = (dir / "sgd.cvx").string();
    ASSERT_EQ(run_cli({"-q", "train", data, "--out", sgd, "--solver", "sgd", "--epochs", "2", "--width", "3",
                       "--arch", "conv3x3s1p1-relu-pool2", "--beta", "1e-3"})
                  .exit_code,
              0);
    const auto shared = run_cli({"-q", "certify", sgd, data, "--json", "--tol", "1e-9"});
    ASSERT_EQ(shared.exit_code, 0) << shared.err;
    const auto s = nlohmann::json::parse(shared.out);
    EXPECT_EQ(s["program"], "shared");
    EXPECT_FALSE(s["optimal"].get<bool>()) << "two epochs are not a stationary point";
    EXPECT_GE(s["network_objective"].get<double>(), s["dual_bound"].get<double>());
    // On the training split recomputed from the record (14 of 16 images): the trainer's own objective.
    EXPECT_EQ(s["samples"], 14);
    EXPECT_NEAR(s["network_objective"].get<double>(), read_model(sgd).training["objective"].get<double>(),
                1e-6 * s["network_objective"].get<double>());
    EXPECT_EQ(s["verdict"].get<std::string>().rfind("not optimal for the shared program", 0), 0u);
}

TEST(CertifyCli, BadInputIsOneLineNamingTheFile) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 2, 3, {1, 5, 5}, 32);
    const std::string data = (dir / "data").string();
    // A model with biases: the program has none.
    const std::string biased = (dir / "biased.cvx").string();
    Model model = test::random_model("conv3x3s1p1-relu-pool1", {1, 5, 5}, 2, 2, 5);
    model.class_names = {"class0", "class1"};
    model.training = {{"beta", 0.01}};
    write_model(biased, model);
    const auto result = run_cli({"certify", biased, data});
    test::expect_one_line_error(result, 1, biased);
    EXPECT_EQ(result.err.rfind("cvxcnn: " + biased + ": ", 0), 0u) << result.err;
    EXPECT_NE(result.err.find("biases"), std::string::npos) << result.err;

    // No beta anywhere: the message names --beta.
    std::fill(model.conv_bias.data.begin(), model.conv_bias.data.end(), 0.0f);
    std::fill(model.fc_bias.data.begin(), model.fc_bias.data.end(), 0.0f);
    model.training = nlohmann::json::object();
    const std::string no_beta = (dir / "nobeta.cvx").string();
    write_model(no_beta, model);
    const auto missing = run_cli({"certify", no_beta, data});
    test::expect_one_line_error(missing, 1, no_beta);
    EXPECT_NE(missing.err.find("--beta"), std::string::npos) << missing.err;
    EXPECT_EQ(run_cli({"-q", "certify", no_beta, data, "--beta", "0.01"}).exit_code, 0);

    // A missing model file and a folder of other classes.
    const auto absent = run_cli({"certify", (dir / "none.cvx").string(), data});
    test::expect_one_line_error(absent, 1, "none.cvx");
    test::write_image_folder(dir / "other", 3, 2, {1, 5, 5}, 33);
    const auto other = run_cli({"certify", no_beta, (dir / "other").string(), "--beta", "0.01"});
    test::expect_one_line_error(other, 1, "other");
}
