// `cvxcnn info`: text and JSON views of a model file, and one-line failures.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cvxcnn/model/model.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "test_support.hpp"

using cvxcnn::test::count_lines;
using cvxcnn::test::run_cli;

namespace {

cvxcnn::Model info_model() {
    cvxcnn::Model model = cvxcnn::make_model(cvxcnn::parse_architecture("conv3x3s1p1-leaky0.1-pool2"),
                                             cvxcnn::ImageShape{1, 6, 6}, {"cat", "dog", "bird"}, 4);
    for (std::size_t i = 0; i < model.conv_weight.data.size(); ++i) model.conv_weight.data[i] = 0.01f * i;
    model.fc_bias.data = {0.5f, -0.5f, 0.0f};
    model.normalization = {{0.25f}, {0.5f}};
    model.training = {{"solver", "admm"}, {"beta", 0.001}, {"iterations", 321}, {"note", "two\nlines"}};
    return model;
}

}  // namespace

TEST(InfoCli, PrintsArchitectureClassesAndTraining) {
    cvxcnn::test::ScratchDir dir;
    const auto path = dir / "pets.cvxcnn";
    const cvxcnn::Model model = info_model();
    cvxcnn::write_model(path, model);

    const auto text = run_cli({"info", path.string()});
    EXPECT_EQ(text.exit_code, 0) << text.err;
    EXPECT_TRUE(text.err.empty()) << text.err;
    for (const std::string& expected : std::vector<std::string>
         {"conv3x3s1p1-leaky0.1-pool2", "1x6x6", "cat", "dog", "bird", "filters        4", "admm", "321",
          "parameters     " + std::to_string(model.parameter_count()), "mean [0.25], std [0.5]", "two\\nlines"})
        EXPECT_NE(text.out.find(expected), std::string::npos) << expected << "\n" << text.out;
    // Class index -> name table, in label order.
    EXPECT_LT(text.out.find("0  cat"), text.out.find("1  dog"));
    EXPECT_LT(text.out.find("1  dog"), text.out.find("2  bird"));
    // A newline inside a training string must not split the line.
    EXPECT_EQ(text.out.find("two\nlines"), std::string::npos);

    const auto as_json = run_cli({"info", path.string(), "--json"});
    ASSERT_EQ(as_json.exit_code, 0) << as_json.err;
    const nlohmann::json info = nlohmann::json::parse(as_json.out);
    EXPECT_EQ(info.at("parameter_count").get<std::size_t>(), model.parameter_count());
    EXPECT_EQ(model.parameter_count(), static_cast<std::size_t>(4 * 9 + 4 + 3 * 16 + 3));
    EXPECT_EQ(info.at("architecture"), "conv3x3s1p1-leaky0.1-pool2");
    EXPECT_EQ(info.at("filters"), 4);
    EXPECT_EQ(info.at("class_names"), nlohmann::json({"cat", "dog", "bird"}));
    EXPECT_EQ(info.at("input"), nlohmann::json({{"channels", 1}, {"height", 6}, {"width", 6}}));
    EXPECT_EQ(info.at("training"), model.training);
    EXPECT_EQ(info.at("normalization").at("std").at(0).get<float>(), 0.5f);
}

TEST(InfoCli, CorruptFileFailsWithOneLine) {
    cvxcnn::test::ScratchDir dir;
    const auto path = dir / "broken.cvxcnn";
    cvxcnn::write_model(path, info_model());
    std::vector<std::uint8_t> bytes = cvxcnn::test::read_bytes(path);
    bytes[bytes.size() - 10] ^= 0xFF;
    cvxcnn::test::write_bytes(path, bytes);

    for (const bool json : {false, true}) {
        std::vector<std::string> args = {"info", path.string()};
        if (json) args.push_back("--json");
        const auto result = run_cli(args);
        cvxcnn::test::expect_one_line_error(result, 1, path.string());
        EXPECT_NE(result.err.find("checksum mismatch"), std::string::npos) << result.err;
        EXPECT_TRUE(result.out.empty()) << result.out;
    }
}

TEST(InfoCli, MissingFileFailsWithOneLine) {
    cvxcnn::test::ScratchDir dir;
    const auto path = dir / "absent.cvxcnn";
    const auto result = run_cli({"info", path.string()});
    EXPECT_TRUE(result.exit_code == 1 || result.exit_code == 2) << result.exit_code;
    EXPECT_EQ(count_lines(result.err), 1) << result.err;
    EXPECT_NE(result.err.find(path.string()), std::string::npos) << result.err;
    EXPECT_TRUE(result.out.empty());

    const auto usage = run_cli({"info"});
    EXPECT_EQ(usage.exit_code, 2);
    EXPECT_EQ(count_lines(usage.err), 1) << usage.err;
}

TEST(InfoCli, HelpHasAnExample) {
    const auto help = run_cli({"info", "--help"});
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_NE(help.out.find("--json"), std::string::npos);
    EXPECT_NE(help.out.find("cvxcnn info "), std::string::npos) << help.out;
}
