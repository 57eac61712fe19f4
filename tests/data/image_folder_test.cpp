#include "cvxcnn/data/image_folder.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cvxcnn/util/error.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace cvxcnn;

namespace {

int pixel(int y, int x, int c, int seed) { return (y * 31 + x * 7 + c * 5 + seed * 13) % 256; }

void gray_png(const fs::path& path, int seed, int height = 6, int width = 5) {
    test::write_png_pattern(path, height, width, 1, [&](int y, int x, int c) { return pixel(y, x, c, seed); });
}

void rgb_png(const fs::path& path, int seed, int height = 6, int width = 5) {
    test::write_png_pattern(path, height, width, 3, [&](int y, int x, int c) { return pixel(y, x, c, seed); });
}

std::string load_error(const fs::path& root, const ImageFolderOptions& options = {}) {
    try {
        (void)load_image_folder(root, options);
    } catch (const Error& error) {
        EXPECT_EQ(std::string(error.what()).find('\n'), std::string::npos);
        return error.what();
    }
    ADD_FAILURE() << "expected an error loading " << root;
    return "";
}

}  // namespace

TEST(ImageFolder, ClassesAreSortedSubfoldersAndFilesAreRecursiveAndSorted) {
    test::ScratchDir dir;
    // Byte order, as Python sorts: "10" < "9" < "B" < "a".
    gray_png(dir / "a/z.png", 1);
    gray_png(dir / "B/x.png", 2);
    gray_png(dir / "9/b.png", 3);
    gray_png(dir / "9/a.png", 4);
    gray_png(dir / "10/sub/deeper/c.png", 5);
    gray_png(dir / "10/b.png", 6);
    fs::create_directories(dir / ".ipynb_checkpoints");
    gray_png(dir / ".ipynb_checkpoints/ghost.png", 7);
    gray_png(dir / "a/.hidden.png", 8);
    test::write_text(dir / "README.txt", "files at the root are not classes");

    ImageFolderReport report;
    const Dataset data = load_image_folder(dir.path(), {}, &report);
    EXPECT_EQ(data.class_names, (std::vector<std::string>{"10", "9", "B", "a"}));
    ASSERT_EQ(data.size(), 6u);
    EXPECT_EQ(data.labels, (std::vector<std::int32_t>{0, 0, 1, 1, 2, 3}));
    EXPECT_EQ(data.files[0].filename(), "b.png");  // "b.png" < "sub"
    EXPECT_EQ(data.files[1].filename(), "c.png");
    EXPECT_EQ(data.files[2].filename(), "a.png");
    EXPECT_EQ(report.hidden.size(), 2u);
    EXPECT_EQ(data.shape, (ImageShape{1, 6, 5}));
    // Pixel-exact NCHW values / 255, for the file "9/a.png" (seed 4).
    const auto image = data.image(2);
    for (int y = 0; y < 6; ++y)
        for (int x = 0; x < 5; ++x) EXPECT_FLOAT_EQ(image[y * 5 + x], pixel(y, x, 0, 4) / 255.0f);
}

TEST(ImageFolder, ChannelsDefaultToTheMajorityAndConvertTheRest) {
    test::ScratchDir dir;
    gray_png(dir / "a/1.png", 1);
    gray_png(dir / "a/2.png", 2);
    rgb_png(dir / "b/3.png", 3);
    ImageFolderReport report;
    const Dataset gray = load_image_folder(dir.path(), {}, &report);
    EXPECT_EQ(gray.shape.channels, 1);
    EXPECT_EQ(report.converted, 1u);
    // The RGB image became BT.601 luma.
    const int r = pixel(0, 0, 0, 3), g = pixel(0, 0, 1, 3), b = pixel(0, 0, 2, 3);
    EXPECT_FLOAT_EQ(gray.image(2)[0], ((r * 77 + g * 150 + b * 29) >> 8) / 255.0f);

    ImageFolderOptions rgb_options;
    rgb_options.channels = 3;
    const Dataset rgb = load_image_folder(dir.path(), rgb_options, &report);
    EXPECT_EQ(rgb.shape.channels, 3);
    EXPECT_EQ(report.converted, 2u);
    const std::size_t plane = rgb.shape.pixels_per_channel();
    for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(rgb.image(0)[c * plane + 7], rgb.image(0)[7]);  // gray replicated
    EXPECT_FLOAT_EQ(rgb.image(2)[2 * plane], b / 255.0f);  // blue plane of the RGB file is exact
}

TEST(ImageFolder, MixedSizesNeedResize) {
    test::ScratchDir dir;
    gray_png(dir / "a/1.png", 1, 6, 5);
    gray_png(dir / "a/2.png", 2, 6, 5);
    gray_png(dir / "b/3.png", 3, 8, 8);
    const std::string message = load_error(dir.path());
    EXPECT_NE(message.find("6x5 (2 files"), std::string::npos) << message;
    EXPECT_NE(message.find("8x8 (1 file"), std::string::npos) << message;
    EXPECT_NE(message.find("--resize"), std::string::npos) << message;

    ImageFolderOptions options;
    options.resize = parse_resize("4x3");
    ImageFolderReport report;
    const Dataset data = load_image_folder(dir.path(), options, &report);
    EXPECT_EQ(data.shape, (ImageShape{1, 4, 3}));
    EXPECT_EQ(report.resized, 3u);
    EXPECT_THROW((void)parse_resize("28"), Error);
    EXPECT_THROW((void)parse_resize("0x4"), Error);
    EXPECT_THROW((void)parse_resize("4x4x4"), Error);
}

TEST(ImageFolder, MissingEmptyAndClasslessFoldersAreErrorsNamingThem) {
    test::ScratchDir dir;
    EXPECT_NE(load_error(dir / "nope").find("nope: no such folder"), std::string::npos);
    EXPECT_NE(load_error(dir.path()).find("no class folders"), std::string::npos);
    test::write_text(dir / "file.png", "x");
    EXPECT_NE(load_error(dir / "file.png").find("not a folder"), std::string::npos);

    gray_png(dir / "cat/1.png", 1);
    fs::create_directories(dir / "dog");
    fs::create_directories(dir / "emu/sub");
    const std::string message = load_error(dir.path());
    EXPECT_NE(message.find("without images: dog, emu"), std::string::npos) << message;
}

TEST(ImageFolder, BadFilesAreErrorsUnlessSkipBadWhichReportsThem) {
    struct Case {
        std::string name;
        std::function<void(const fs::path&)> make;
        std::string expected;
    };
    const std::vector<Case> cases{
        {"notes.txt", [](const fs::path& p) { test::write_text(p, "hello"); }, "not an image file"},
        {"empty.png", [](const fs::path& p) { test::write_text(p, ""); }, "empty file"},
        {"text.png", [](const fs::path& p) { test::write_text(p, "not really a png"); }, "not a supported image"},
        {"cut.png",
         [](const fs::path& p) {
             const auto png = encode_png(std::vector<std::uint8_t>(40 * 40, 9), 40, 40, 1);
             test::write_bytes(p, std::span(png).first(png.size() / 2));
         },
         "corrupt or truncated"},
    };
    for (const auto& bad : cases) {
        SCOPED_TRACE(bad.name);
        test::ScratchDir dir;
        gray_png(dir / "a/good1.png", 1);
        gray_png(dir / "b/good2.png", 2);
        bad.make(dir / "b" / bad.name);
        const std::string message = load_error(dir.path());
        EXPECT_NE(message.find(bad.name), std::string::npos) << message;
        EXPECT_NE(message.find(bad.expected), std::string::npos) << message;

        ImageFolderOptions options;
        options.skip_bad = true;
        ImageFolderReport report;
        const Dataset data = load_image_folder(dir.path(), options, &report);
        EXPECT_EQ(data.size(), 2u);
        ASSERT_EQ(report.skipped.size(), 1u);
        EXPECT_EQ(report.skipped[0].path.filename(), bad.name);
    }
}

TEST(ImageFolder, DatasetMemoryIsCheckedBeforeAllocating) {
    test::ScratchDir dir;
    gray_png(dir / "a/1.png", 1);
    gray_png(dir / "b/2.png", 2);
    ImageFolderOptions options;
    options.max_dataset_bytes = 2 * 6 * 5 * sizeof(float) - 1;
    try {
        (void)load_image_folder(dir.path(), options);
        FAIL();
    } catch (const Error& error) {
        EXPECT_EQ(error.kind(), ErrorKind::limit);
    }
    options.max_dataset_bytes += 1;
    EXPECT_EQ(load_image_folder(dir.path(), options).size(), 2u);
}

// With --resize the size is known from the listing alone: the limit is reported before
// any file is decoded (the undecodable file would otherwise be the error).
TEST(ImageFolder, DatasetMemoryWithResizeIsCheckedBeforeDecoding) {
    test::ScratchDir dir;
    gray_png(dir / "a/1.png", 1);
    test::write_text(dir / "b/2.png", "not a png");
    ImageFolderOptions options;
    options.resize = ResizeTarget{100, 100};
    options.max_dataset_bytes = 2 * 100 * 100 * sizeof(float) - 1;
    try {
        (void)load_image_folder(dir.path(), options);
        FAIL();
    } catch (const Error& error) {
        EXPECT_EQ(error.kind(), ErrorKind::limit) << error.what();
        EXPECT_NE(std::string(error.what()).find("--max-memory"), std::string::npos) << error.what();
    }
}

TEST(Normalization, MatchesAPlainComputationAndIsApplied) {
    Dataset data;
    data.shape = {2, 2, 2};
    data.labels = {0, 0, 0};
    data.images = {0.0f, 0.5f, 1.0f, 0.5f, 0.2f, 0.2f, 0.2f, 0.2f,  //
                   1.0f, 1.0f, 0.0f, 0.0f, 0.2f, 0.2f, 0.2f, 0.2f,  //
                   0.25f, 0.25f, 0.75f, 0.75f, 0.2f, 0.2f, 0.2f, 0.2f};
    const Normalization norm = Normalization::compute(data);
    double mean = 0, squares = 0;
    for (int i = 0; i < 3; ++i)
        for (int p = 0; p < 4; ++p) mean += data.images[i * 8 + p];
    mean /= 12;
    for (int i = 0; i < 3; ++i)
        for (int p = 0; p < 4; ++p) squares += std::pow(data.images[i * 8 + p] - mean, 2);
    EXPECT_NEAR(norm.mean[0], mean, 1e-7);
    EXPECT_NEAR(norm.std[0], std::sqrt(squares / 12), 1e-7);
    EXPECT_NEAR(norm.mean[1], 0.2, 1e-7);
    EXPECT_EQ(norm.std[1], 1.0f) << "a constant channel must not divide by zero";
    norm.apply(data);
    EXPECT_NEAR(data.images[0], (0.0 - mean) / std::sqrt(squares / 12), 1e-6);
    EXPECT_NEAR(data.images[4], 0.0, 1e-7);
    const Normalization renorm = Normalization::compute(data);
    EXPECT_NEAR(renorm.mean[0], 0.0, 1e-6);
    EXPECT_NEAR(renorm.std[0], 1.0, 1e-6);
}

// Over chosen images: the plain statistics of those images alone, in the order given, and
// an index past the dataset is an error, not a read out of bounds.
TEST(Normalization, OverChosenImagesIsTheirsAlone) {
    Dataset data;
    data.shape = {1, 1, 2};
    data.labels = {0, 0, 0};
    data.images = {1.0f, 3.0f, 10.0f, 20.0f, 5.0f, 7.0f};
    const std::vector<std::size_t> chosen{2, 0};
    const Normalization norm = Normalization::compute(data, chosen);
    EXPECT_FLOAT_EQ(norm.mean[0], 4.0f);            // (5 + 7 + 1 + 3) / 4
    EXPECT_FLOAT_EQ(norm.std[0], std::sqrt(5.0f));  // sqrt((1 + 9 + 9 + 1) / 4)
    const Normalization all = Normalization::compute(data);
    EXPECT_FLOAT_EQ(all.mean[0], 46.0f / 6.0f);
    EXPECT_THROW((void)Normalization::compute(data, std::vector<std::size_t>{0, 3}), Error);
    EXPECT_THROW((void)Normalization::compute(data, std::vector<std::size_t>{}), Error);
}
