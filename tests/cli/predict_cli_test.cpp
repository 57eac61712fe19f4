// cvxcnn predict: one line path<TAB>class<TAB>probability per image (K with --top K), the
// probabilities of the reference forward pass, channel conversion, --resize, --json, and
// one-line errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cvxcnn/data/image_folder.hpp"
#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "export/test_models.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace cvxcnn;
using test::count_lines;
using test::run_cli;

namespace {

std::vector<std::vector<std::string>> tsv(const std::string& text) {
    std::vector<std::vector<std::string>> rows;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        std::vector<std::string> fields;
        std::istringstream cells(line);
        for (std::string field; std::getline(cells, field, '\t');) fields.push_back(field);
        rows.push_back(fields);
    }
    return rows;
}

struct Fixture {
    test::ScratchDir dir;
    Model model = test::random_model("conv3x3s1p1-gated-pool2", {1, 8, 8}, 5, 4, 3);
    std::string model_path = (dir / "m.cvx").string();
    Fixture() {
        write_model(model_path, model);
        test::write_image_folder(dir / "images", 2, 2, {1, 8, 8}, 4);  // images/class0/{0,1}.png, class1/...
        test::write_text(dir / "images" / "notes.txt", "not an image");
        test::write_text(dir / "images" / ".hidden.png", "hidden");
    }
    // Probabilities the reference forward pass gives for these files.
    RowMatrixF expected(const std::vector<fs::path>& files, bool resize = false) const {
        return softmax_rows(reference_logits(model, load_image_files(files, model.input, resize)));
    }
};

}  // namespace

TEST(PredictCli, PrintsPathClassAndProbabilityOfEachImage) {
    Fixture f;
    const fs::path single = f.dir / "images" / "class1" / "0.png";
    const auto result = run_cli({"-q", "predict", f.model_path, (f.dir / "images").string(), single.string()});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_TRUE(result.err.empty()) << result.err;
    const std::vector<fs::path> files = {f.dir / "images" / "class0" / "0.png", f.dir / "images" / "class0" / "1.png",
                                         f.dir / "images" / "class1" / "0.png", f.dir / "images" / "class1" / "1.png",
                                         single};
    const RowMatrixF want = f.expected(files);
    const auto rows = tsv(result.out);
    ASSERT_EQ(rows.size(), files.size()) << result.out;
    const auto best = argmax_rows(want);
    for (std::size_t i = 0; i < files.size(); ++i) {
        ASSERT_EQ(rows[i].size(), 3u) << result.out;
        EXPECT_EQ(rows[i][0], files[i].string());
        EXPECT_EQ(rows[i][1], f.model.class_names[static_cast<std::size_t>(best[i])]);
        EXPECT_NEAR(std::stod(rows[i][2]), want(static_cast<Eigen::Index>(i), best[i]), 1e-4);
    }
    // Without -q the ignored folder entries (hidden file, text file) are mentioned.
    const auto chatty = run_cli({"predict", f.model_path, (f.dir / "images").string()});
    EXPECT_NE(chatty.err.find("ignored 2"), std::string::npos) << chatty.err;
}

TEST(PredictCli, TopKListsTheBestClassesInOrder) {
    Fixture f;
    const fs::path image = f.dir / "images" / "class0" / "1.png";
    const auto result = run_cli({"predict", f.model_path, image.string(), "--top", "3", "--batch", "1"});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    const auto rows = tsv(result.out);
    ASSERT_EQ(rows.size(), 3u) << result.out;
    const RowMatrixF want = f.expected({image});
    std::vector<double> seen;
    for (const auto& row : rows) {
        EXPECT_EQ(row[0], image.string());
        const auto c = std::find(f.model.class_names.begin(), f.model.class_names.end(), row[1]) - f.model.class_names.begin();
        ASSERT_LT(c, f.model.classes()) << row[1];
        EXPECT_NEAR(std::stod(row[2]), want(0, c), 1e-4);
        seen.push_back(std::stod(row[2]));
    }
    EXPECT_TRUE(std::is_sorted(seen.rbegin(), seen.rend())) << result.out;
    // More than the model's 4 classes: all 4, once each.
    const auto all = run_cli({"predict", f.model_path, image.string(), "--top", "10"});
    ASSERT_EQ(all.exit_code, 0) << all.err;
    EXPECT_EQ(count_lines(all.out), 4);
}

TEST(PredictCli, JsonHoldsTheRankedPredictions) {
    Fixture f;
    const auto result = run_cli({"-q", "predict", f.model_path, (f.dir / "images" / "class1").string(), "--json", "-k", "2"});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    const auto json = nlohmann::json::parse(result.out);
    EXPECT_EQ(json["engine"], "onednn");
    ASSERT_EQ(json["images"].size(), 2u);
    const RowMatrixF want = f.expected({f.dir / "images" / "class1" / "0.png", f.dir / "images" / "class1" / "1.png"});
    for (std::size_t i = 0; i < 2; ++i) {
        const auto& predictions = json["images"][i]["predictions"];
        ASSERT_EQ(predictions.size(), 2u);
        const int c = predictions[0]["index"];
        EXPECT_EQ(predictions[0]["class"], f.model.class_names[static_cast<std::size_t>(c)]);
        EXPECT_EQ(c, argmax_rows(want)[i]);
        EXPECT_NEAR(predictions[0]["probability"].get<double>(), want(static_cast<Eigen::Index>(i), c), 1e-4);
        EXPECT_GE(predictions[0]["probability"].get<double>(), predictions[1]["probability"].get<double>());
    }
}

TEST(PredictCli, ConvertsChannelsAndResizesOnlyWhenAsked) {
    Fixture f;
    const fs::path rgb = f.dir / "rgb.png";  // a colour image for a gray model: converted
    test::write_png_pattern(rgb, 8, 8, 3, [](int y, int x, int c) { return (y * 31 + x * 17 + c * 80) % 256; });
    const auto converted = run_cli({"predict", f.model_path, rgb.string()});
    ASSERT_EQ(converted.exit_code, 0) << converted.err;
    EXPECT_NEAR(std::stod(tsv(converted.out).at(0).at(2)), f.expected({rgb}).maxCoeff(), 1e-4);

    const fs::path large = f.dir / "large.png";
    test::write_png_pattern(large, 12, 10, 1, [](int y, int x, int) { return (y * 9 + x * 5) % 256; });
    const auto refused = run_cli({"predict", f.model_path, large.string()});
    test::expect_one_line_error(refused, 1, large.string());
    EXPECT_NE(refused.err.find("--resize"), std::string::npos) << refused.err;
    EXPECT_TRUE(refused.out.empty());

    const auto resized = run_cli({"predict", f.model_path, large.string(), "--resize"});
    ASSERT_EQ(resized.exit_code, 0) << resized.err;
    EXPECT_NEAR(std::stod(tsv(resized.out).at(0).at(2)), f.expected({large}, true).maxCoeff(), 1e-4);
}

TEST(PredictCli, BadInputExitsWithOneLine) {
    Fixture f;
    fs::create_directories(f.dir / "empty");
    test::write_text(f.dir / "fake.png", "not a png");
    struct Row {
        std::vector<std::string> args;
        int exit_code;
        std::string fragment;
    };
    const std::vector<Row> rows = {
        {{"predict", f.model_path, (f.dir / "missing.png").string()}, 1, "no such file or folder"},
        {{"predict", f.model_path, (f.dir / "empty").string()}, 1, "no image file"},
        {{"predict", f.model_path, (f.dir / "fake.png").string()}, 1, "fake.png"},
        {{"predict", (f.dir / "images" / "class0" / "0.png").string(), (f.dir / "fake.png").string()}, 1, "0.png"},
        {{"predict", f.model_path, (f.dir / "images").string(), "--top", "0"}, 2, "--top"},
        {{"predict", f.model_path, (f.dir / "images").string(), "--batch", "0"}, 2, "--batch"},
        {{"predict", f.model_path}, 2, "PATH"},
    };
    for (const auto& row : rows) {
        SCOPED_TRACE(row.args.back());
        const auto result = run_cli(row.args);
        test::expect_one_line_error(result, row.exit_code, row.fragment);
        EXPECT_TRUE(result.out.empty()) << result.out;
    }
}
