// cvxcnn eval: the oneDNN engine (default) and the reference give the same evaluation;
// the human report has accuracy, per-class accuracy and the confusion matrix.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cvxcnn/data/image_folder.hpp"
#include "cvxcnn/engine/metrics.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "export/test_models.hpp"
#include "test_support.hpp"

using namespace cvxcnn;
using test::count_lines;
using test::run_cli;

namespace {

// A model with the folder's classes and statistics, so predictions spread over classes.
std::string write_model_for(const test::ScratchDir& dir, const std::string& architecture, int filters) {
    Model model = test::random_model(architecture, {3, 9, 9}, filters, 3, 12);
    const Dataset data = load_image_folder(dir / "data");
    model.class_names = data.class_names;
    model.normalization = Normalization::compute(data);
    const std::string path = (dir / "m.cvx").string();
    write_model(path, model);
    return path;
}

}  // namespace

TEST(EvalCli, OnednnAndReferenceEnginesGiveTheSameEvaluation) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 3, 7, {3, 9, 9}, 11);
    for (const std::string arch : {"conv3x3s1p1-gated-pool3", "conv3x3s2p0-abs-pool3"}) {  // pooled, folded
        SCOPED_TRACE(arch);
        const std::string model = write_model_for(dir, arch, 6);
        const std::string data = (dir / "data").string();
        const auto onednn = run_cli({"-q", "eval", model, data, "--json", "--batch", "4"});
        const auto reference = run_cli({"-q", "eval", model, data, "--json", "--engine", "reference"});
        ASSERT_EQ(onednn.exit_code, 0) << onednn.err;
        ASSERT_EQ(reference.exit_code, 0) << reference.err;
        auto a = nlohmann::json::parse(onednn.out), b = nlohmann::json::parse(reference.out);
        EXPECT_EQ(a["engine"], "onednn");
        EXPECT_EQ(b["engine"], "reference");
        EXPECT_EQ(a["n"], 21);
        a.erase("engine");
        b.erase("engine");
        EXPECT_EQ(a, b) << "accuracy, per-class accuracy and confusion matrix must be identical";
    }
}

TEST(EvalCli, HumanReportHasPerClassAccuracyAndConfusionMatrix) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 3, 4, {3, 9, 9}, 13);
    const std::string model = write_model_for(dir, "conv3x3s1p1-relu-pool3", 4);
    const auto result = run_cli({"-q", "eval", model, (dir / "data").string()});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("accuracy"), std::string::npos);
    EXPECT_NE(result.out.find("onednn engine"), std::string::npos) << result.out;
    for (const char* name : {"class0", "class1", "class2"}) EXPECT_NE(result.out.find(name), std::string::npos);
    EXPECT_NE(result.out.find("confusion matrix"), std::string::npos) << result.out;
    EXPECT_EQ(count_lines(result.out), 1 + 3 + 2 + 3) << result.out;  // summary, classes, title + header, rows
}

TEST(EvalCli, BadOptionsExitWithOneLine) {
    test::ScratchDir dir;
    test::write_image_folder(dir / "data", 3, 1, {3, 9, 9}, 14);
    const std::string model = write_model_for(dir, "conv3x3s1p1-relu-pool3", 2);
    const std::string data = (dir / "data").string();
    Model wide = test::random_model("conv3x3s1p1-gated-pool7", {1, 28, 28}, 400, 3, 15);
    const std::string wide_path = (dir / "wide.cvx").string();
    write_model(wide_path, wide);
    struct Row {
        std::vector<std::string> args;
        int exit_code;
        std::string fragment;
    };
    const std::vector<Row> rows = {
        {{"eval", model, data, "--engine", "cuda"}, 2, "--engine"},
        {{"eval", model, data, "--batch", "0"}, 2, "--batch"},
        {{"eval", wide_path, data, "--batch", "60000"}, 1, "lower --batch"},
    };
    for (const auto& row : rows) {
        SCOPED_TRACE(row.args.back());
        test::expect_one_line_error(run_cli(row.args), row.exit_code, row.fragment);
    }
}

TEST(ConfusionMatrixText, AlignsCountsUnderPredictedClasses) {
    const std::vector<std::int32_t> labels = {0, 0, 1, 2, 2, 2}, predicted = {0, 1, 1, 2, 2, 0};
    const Evaluation e = evaluate(predicted, labels, 3);
    EXPECT_EQ(confusion_matrix_text(e), "confusion matrix (rows: true class, columns: predicted class)\n"
                                        "    0 1 2\n"
                                        "  0 1 1 0\n"
                                        "  1 0 1 0\n"
                                        "  2 1 0 2\n");
    std::vector<std::int32_t> many(120, 1);
    const std::string wide = confusion_matrix_text(evaluate(many, many, 2));
    EXPECT_NE(wide.find("\n      0   1\n  0   0   0\n  1   0 120\n"), std::string::npos) << wide;
}
