// `cvxcnn info DATA_DIR`: the image-folder loader end to end, and the bad-input contract
// (exit 1, one stderr line naming the file) for every malformed folder.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <functional>

#include "cvxcnn/data/image_codec.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace cvxcnn;

namespace {

void png(const fs::path& path, int seed, int height = 6, int width = 6) {
    test::write_png_pattern(path, height, width, 1, [&](int y, int x, int) { return (y * 40 + x * 17 + seed * 29) % 256; });
}

}  // namespace

TEST(InfoDatasetCli, ReportsClassesCountsAndPatchRank) {
    test::ScratchDir dir;
    for (int i = 0; i < 3; ++i) png(dir / "cat" / (std::to_string(i) + ".png"), i);
    for (int i = 0; i < 2; ++i) png(dir / "dog" / (std::to_string(i) + ".png"), 10 + i);
    const auto result = test::run_cli({"--quiet", "info", dir.path().string(), "--arch", "conv3x3s1p0-relu-pool2", "--json"});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    const auto info = nlohmann::json::parse(result.out);
    EXPECT_EQ(info["images"], 5);
    EXPECT_EQ(info["classes"][0]["name"], "cat");
    EXPECT_EQ(info["classes"][0]["images"], 3);
    EXPECT_EQ(info["classes"][1]["images"], 2);
    EXPECT_EQ(info["patches"]["positions"], 16);  // (6 - 3) + 1 = 4 per side
    EXPECT_EQ(info["patches"]["patch_size"], 9);
    // Every image is an affine function of (y, x) modulo 256: with values that never wrap
    // it would be rank 3; the wrap-around makes it richer, but never above h = 9.
    EXPECT_GE(info["patches"]["numerical_rank"].get<int>(), 3);
    EXPECT_LE(info["patches"]["numerical_rank"].get<int>(), 9);
    EXPECT_EQ(info["patches"]["singular_values"].size(), 9u);
}

TEST(InfoDatasetCli, EveryBadFolderGivesExitOneAndOneLineNamingTheCulprit) {
    struct Case {
        std::string name;
        std::function<void(const fs::path&)> make;
        std::string culprit;  // must appear in the message
        std::vector<std::string> extra_args;
    };
    const std::vector<Case> cases{
        {"missing folder", [](const fs::path&) {}, "no-such-dir", {}},
        {"empty folder", [](const fs::path& root) { fs::create_directories(root); }, "no class folders", {}},
        {"class without images",
         [](const fs::path& root) {
             png(root / "a/1.png", 1);
             fs::create_directories(root / "b");
         },
         "without images: b", {}},
        {"non-image file",
         [](const fs::path& root) {
             png(root / "a/1.png", 1);
             test::write_text(root / "a/notes.txt", "x");
         },
         "notes.txt", {}},
        {"corrupt image",
         [](const fs::path& root) {
             png(root / "a/1.png", 1);
             test::write_text(root / "a/bad.png", "\x89PNG\r\n\x1a\ngarbage");
         },
         "bad.png", {}},
        {"truncated image",
         [](const fs::path& root) {
             png(root / "a/1.png", 1);
             const auto bytes = encode_png(std::vector<std::uint8_t>(30 * 30, 5), 30, 30, 1);
             test::write_bytes(root / "a/cut.png", std::span(bytes).first(bytes.size() - 20));
         },
         "cut.png", {}},
        {"zero-byte file",
         [](const fs::path& root) {
             png(root / "a/1.png", 1);
             test::write_text(root / "a/zero.png", "");
         },
         "zero.png", {}},
        {"mixed sizes",
         [](const fs::path& root) {
             png(root / "a/1.png", 1, 6, 6);
             png(root / "b/2.png", 2, 7, 5);
         },
         "different sizes", {}},
        {"image over the side cap",
         [](const fs::path& root) {
             png(root / "a/1.png", 1, 6, 6);
             png(root / "a/wide.png", 2, 6, 40);
         },
         "wide.png", {"--max-image-side", "32"}},
        {"bad --resize value", [](const fs::path& root) { png(root / "a/1.png", 1); }, "--resize", {"--resize", "9by9"}},
        {"bad --arch value", [](const fs::path& root) { png(root / "a/1.png", 1); }, "--arch", {"--arch", "conv9x9q"}},
    };
    for (const auto& bad : cases) {
        SCOPED_TRACE(bad.name);
        test::ScratchDir scratch;
        const fs::path root = bad.name == "missing folder" ? scratch / "no-such-dir" : scratch / "data";
        bad.make(root);
        std::vector<std::string> args{"info", root.string()};
        args.insert(args.end(), bad.extra_args.begin(), bad.extra_args.end());
        const auto result = test::run_cli(args);
        test::expect_one_line_error(result, 1, bad.culprit);
        EXPECT_TRUE(result.out.empty()) << result.out;
    }
}

TEST(InfoDatasetCli, SkipBadReportsHowManyAndWhich) {
    test::ScratchDir dir;
    png(dir / "a/1.png", 1);
    png(dir / "a/2.png", 2);
    test::write_text(dir / "a/broken.png", "nope");
    test::write_text(dir / "a/readme.md", "nope");
    const auto result = test::run_cli({"info", dir.path().string(), "--skip-bad", "--arch", "conv3x3s1p1-relu-pool1", "--json"});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.err.find("skipped 2 unreadable files"), std::string::npos) << result.err;
    EXPECT_NE(result.err.find("broken.png"), std::string::npos);
    EXPECT_NE(result.err.find("readme.md"), std::string::npos);
    const auto info = nlohmann::json::parse(result.out);
    EXPECT_EQ(info["images"], 2);
    EXPECT_EQ(info["skipped"].size(), 2u);
}

TEST(InfoDatasetCli, ResizeAndChannelsOptionsTakeEffect) {
    test::ScratchDir dir;
    png(dir / "a/1.png", 1, 6, 6);
    png(dir / "b/2.png", 2, 8, 5);
    const auto result = test::run_cli({"-q", "info", dir.path().string(), "--resize", "10x12", "--channels", "3",
                                       "--arch", "conv3x3s1p1-relu-pool2", "--json"});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    const auto info = nlohmann::json::parse(result.out);
    EXPECT_EQ(info["input"]["channels"], 3);
    EXPECT_EQ(info["input"]["height"], 10);
    EXPECT_EQ(info["input"]["width"], 12);
    EXPECT_EQ(info["patches"]["patch_size"], 27);
    // Gray replicated into three identical channels: the patch rank cannot exceed 9.
    EXPECT_LE(info["patches"]["numerical_rank"].get<int>(), 9);
    EXPECT_EQ(info["resized"], 2);
}
