// cvxcnn export: writes the ONNX graph of a model file (the same bytes as encode_onnx),
// which python3-onnx's checker accepts; bad options fail with one line and touch nothing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <onnx/onnx_pb.h>

#include "cvxcnn/export/onnx_export.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "export/test_models.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace cvxcnn;
using test::count_lines;
using test::run_cli;

TEST(ExportCli, WritesTheOnnxGraphOfTheModelFile) {
    test::ScratchDir dir;
    const Model model = test::random_model("conv3x3s1p1-leaky0.1-pool3", {3, 10, 10}, 4, 5, 9);
    const std::string model_path = (dir / "m.cvx").string(), out = (dir / "m.onnx").string();
    write_model(model_path, model);
    const auto result = run_cli({"export", model_path, "--format", "onnx", "--out", out});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(count_lines(result.out), 1) << result.out;
    EXPECT_NE(result.out.find(out), std::string::npos) << result.out;
    const std::vector<std::uint8_t> bytes = test::read_bytes(out);
    EXPECT_EQ(bytes, encode_onnx(read_model(model_path)));
    onnx::ModelProto proto;
    ASSERT_TRUE(proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
    EXPECT_EQ(proto.graph().output(0).name(), "logits");

    // --json, and the default format is onnx.
    const auto json = run_cli({"export", model_path, "-o", (dir / "j.onnx").string(), "--json"});
    ASSERT_EQ(json.exit_code, 0) << json.err;
    const auto summary = nlohmann::json::parse(json.out);
    EXPECT_EQ(summary["opset"], onnx_opset);
    EXPECT_EQ(summary["bytes"], bytes.size());
    EXPECT_EQ(test::read_bytes(dir / "j.onnx"), bytes);

    // python3-onnx's own checker, when Debian's python3-onnx is installed.
    for (const std::string python : {"/usr/bin/python3", "python3"}) {
        if (std::system((python + " -c 'import onnx' >/dev/null 2>&1").c_str()) != 0) continue;
        const std::string check = python + " -c 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), "
                                           "full_check=True)' '" + out + "'";
        EXPECT_EQ(std::system(check.c_str()), 0) << check;
        return;
    }
    GTEST_SKIP() << "python3 with onnx (Debian python3-onnx) is not installed: checker not run";
}

TEST(ExportCli, BadOptionsExitWithOneLineAndWriteNothing) {
    test::ScratchDir dir;
    const Model model = test::random_model("conv3x3s1p1-relu-pool2", {1, 6, 6}, 2, 3, 10);
    const std::string model_path = (dir / "m.cvx").string();
    write_model(model_path, model);
    const auto model_bytes = test::read_bytes(model_path);
    struct Row {
        std::vector<std::string> args;
        int exit_code;
        std::string fragment;
    };
    const std::vector<Row> rows = {
        {{"export", model_path, "--format", "tflite", "--out", (dir / "x").string()}, 2, "--format"},
        {{"export", model_path}, 2, "--out"},
        {{"export", model_path, "--out", model_path}, 1, "model file itself"},
        {{"export", (dir / "missing.cvx").string(), "--out", (dir / "x.onnx").string()}, 1, "missing.cvx"},
        {{"export", model_path, "--out", (dir / "no-folder" / "x.onnx").string()}, 1, "x.onnx"},
    };
    for (const auto& row : rows) {
        SCOPED_TRACE(row.args.back());
        test::expect_one_line_error(run_cli(row.args), row.exit_code, row.fragment);
    }
    EXPECT_EQ(test::read_bytes(model_path), model_bytes);
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
    EXPECT_EQ(entries, 1u) << "only the model file";
}
