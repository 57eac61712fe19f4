// import_dataset and `cvxcnn import`: the PNG tree it writes, pixel-exact, and the
// all-or-nothing guarantees (no out_dir and no staging folder after a failure).
#include "cvxcnn/data/dataset_import.hpp"

#include <algorithm>
#include <memory>

#include <gtest/gtest.h>
#include <zlib.h>

#include "cvxcnn/data/image_codec.hpp"
#include "cvxcnn/util/error.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace cvxcnn;

namespace {


void put_u32(std::vector<std::uint8_t>& out, std::uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(value >> shift));
}

constexpr int rows = 7, cols = 5;  // not square: a transposed image would not match

std::uint8_t gray(std::size_t image, int y, int x) { return static_cast<std::uint8_t>(image * 29 + y * 11 + x * 3); }

// A tiny MNIST-layout folder: images `train` and `test` of 7x5, labels i % 10 for
// train, (i * 3) % 10 for test; the train files gzip, the t10k files raw.
struct MnistFixture {
    std::size_t train = 0, test = 0;

    static std::vector<std::uint8_t> images(std::size_t count) {
        std::vector<std::uint8_t> bytes;
        put_u32(bytes, 0x803);
        put_u32(bytes, static_cast<std::uint32_t>(count));
        put_u32(bytes, rows);
        put_u32(bytes, cols);
        for (std::size_t i = 0; i < count; ++i)
            for (int y = 0; y < rows; ++y)
                for (int x = 0; x < cols; ++x) bytes.push_back(gray(i, y, x));
        return bytes;
    }
    static std::vector<std::uint8_t> labels(std::size_t count, std::size_t step) {
        std::vector<std::uint8_t> bytes;
        put_u32(bytes, 0x801);
        put_u32(bytes, static_cast<std::uint32_t>(count));
        for (std::size_t i = 0; i < count; ++i) bytes.push_back(static_cast<std::uint8_t>((i * step) % 10));
        return bytes;
    }
    void write(const fs::path& dir) const {
        fs::create_directories(dir);
        test::write_gzip(dir / "train-images-idx3-ubyte.gz", images(train));
        test::write_gzip(dir / "train-labels-idx1-ubyte.gz", labels(train, 1));
        test::write_bytes(dir / "t10k-images-idx3-ubyte", images(test));
        test::write_bytes(dir / "t10k-labels-idx1-ubyte", labels(test, 3));
    }
};

std::size_t count_files(const fs::path& dir) {
    return static_cast<std::size_t>(std::distance(fs::recursive_directory_iterator(dir), {})) -
           static_cast<std::size_t>(std::count_if(fs::recursive_directory_iterator(dir), {},
                                                  [](const fs::directory_entry& e) { return e.is_directory(); }));
}

std::vector<std::string> entries(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

const std::vector<std::string> digit_folders{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

}  // namespace

TEST(ImportDataset, MnistTreeIsCompleteAndPixelExact) {
    test::ScratchDir dir;
    const MnistFixture fixture{23, 12};
    fixture.write(dir / "src");
    const ImportSummary summary = import_dataset(DatasetKind::mnist, dir / "src", dir / "out");

    EXPECT_EQ(summary.train.images, 23u);
    EXPECT_EQ(summary.test.images, 12u);
    EXPECT_EQ(summary.class_folders, digit_folders);
    EXPECT_EQ(summary.train.per_class, (std::vector<std::size_t>{3, 3, 3, 2, 2, 2, 2, 2, 2, 2}));
    EXPECT_EQ(summary.test.per_class, (std::vector<std::size_t>{2, 1, 1, 2, 1, 1, 1, 1, 1, 1}));
    EXPECT_GE(summary.seconds, 0.0);
    EXPECT_EQ(entries(dir / "out"), (std::vector<std::string>{"test", "train"}));
    EXPECT_EQ(entries(dir / "out" / "train"), digit_folders);
    EXPECT_EQ(entries(dir / "out" / "test"), digit_folders);  // every class, even where empty
    EXPECT_EQ(count_files(dir / "out" / "train"), 23u);
    EXPECT_EQ(count_files(dir / "out" / "test"), 12u);
    // Names are the zero-padded source positions: 23 images -> 2 digits.
    EXPECT_EQ(entries(dir / "out" / "train" / "3"), (std::vector<std::string>{"03.png", "13.png"}));
    EXPECT_EQ(entries(dir / "out" / "test" / "0"), (std::vector<std::string>{"00.png", "10.png"}));

    for (const auto& [split, count, step] : {std::tuple{"train", 23, 1}, std::tuple{"test", 12, 3}}) {
        for (std::size_t i = 0; i < static_cast<std::size_t>(count); ++i) {
            const std::string name = (i < 10 ? "0" : "") + std::to_string(i) + ".png";
            const fs::path png = dir / "out" / split / std::to_string(i * step % 10) / name;
            const DecodedImage image = decode_image(test::read_bytes(png), png);
            ASSERT_EQ(image.channels, 1) << png;  // grayscale PNG
            ASSERT_EQ(image.height, rows);
            ASSERT_EQ(image.width, cols);
            for (int y = 0; y < rows; ++y)
                for (int x = 0; x < cols; ++x)
                    ASSERT_EQ(image.pixels[static_cast<std::size_t>(y * cols + x)], gray(i, y, x)) << png;
        }
    }
    // Nothing else beside out: the staging folder was renamed, not copied.
    EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"out", "src"}));
}

TEST(ImportDataset, FashionMnistFolderNames) {
    test::ScratchDir dir;
    MnistFixture{10, 10}.write(dir / "src");
    const ImportSummary summary = import_dataset(DatasetKind::fashion_mnist, dir / "src", dir / "out");
    const std::vector<std::string> expected{"T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle_boot"};
    EXPECT_EQ(summary.class_folders, expected);
    EXPECT_EQ(summary.class_names[0], "T-shirt/top");
    EXPECT_TRUE(fs::exists(dir / "out" / "train" / "T-shirt_top" / "0.png"));
    EXPECT_TRUE(fs::exists(dir / "out" / "test" / "Ankle_boot" / "3.png"));  // label 3*3 % 10 = 9
}

TEST(ImportDataset, Cifar10RgbAcrossBatches) {
    test::ScratchDir dir;
    const fs::path src = dir / "src";
    fs::create_directories(src);
    auto record = [](std::uint8_t label, std::uint8_t seed) {
        std::vector<std::uint8_t> bytes{label};
        for (std::size_t v = 0; v < 3072; ++v) bytes.push_back(static_cast<std::uint8_t>(seed + v * 5 + v / 1024 * 50));
        return bytes;
    };
    // Batch b holds one record of label b, seed b; test_batch one of label 9.
    for (int b = 1; b <= 5; ++b) {
        const auto bytes = record(static_cast<std::uint8_t>(b), static_cast<std::uint8_t>(b));
        if (b % 2) test::write_gzip(src / ("data_batch_" + std::to_string(b) + ".bin.gz"), bytes);
        else test::write_bytes(src / ("data_batch_" + std::to_string(b) + ".bin"), bytes);
    }
    test::write_bytes(src / "test_batch.bin", record(9, 77));
    const ImportSummary summary = import_dataset(DatasetKind::cifar10, src, dir / "out");
    EXPECT_EQ(summary.class_folders, cifar10_standard_class_names());
    EXPECT_EQ(summary.train.images, 5u);
    EXPECT_EQ(summary.test.images, 1u);
    // Training index runs across the batches in order: batch 3's record is image 2.
    const fs::path png = dir / "out" / "train" / "cat" / "2.png";
    const DecodedImage image = decode_image(test::read_bytes(png), png);
    ASSERT_EQ(image.channels, 3);
    ASSERT_EQ(image.height, 32);
    ASSERT_EQ(image.width, 32);
    const auto expected = record(3, 3);
    for (std::size_t p = 0; p < 1024; ++p)
        for (std::size_t c = 0; c < 3; ++c) ASSERT_EQ(image.pixels[p * 3 + c], expected[1 + c * 1024 + p]) << p;
    EXPECT_TRUE(fs::exists(dir / "out" / "test" / "truck" / "0.png"));
}

TEST(ImportDataset, ExistingOutDirRefusedUnlessOverwrite) {
    test::ScratchDir dir;
    MnistFixture{10, 10}.write(dir / "src");
    fs::create_directories(dir / "out");
    test::write_text(dir / "out" / "keep.txt", "mine");
    try {
        (void)import_dataset(DatasetKind::mnist, dir / "src", dir / "out");
        FAIL() << "expected an error";
    } catch (const Error& error) {
        EXPECT_EQ(std::string(error.what()), (dir / "out").string() + ": already exists (pass --overwrite to replace it)");
    }
    EXPECT_EQ(entries(dir / "out"), (std::vector<std::string>{"keep.txt"}));
    EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"out", "src"}));

    ImportOptions options;
    options.overwrite = true;
    (void)import_dataset(DatasetKind::mnist, dir / "src", dir / "out", options);
    EXPECT_EQ(entries(dir / "out"), (std::vector<std::string>{"test", "train"}));
    EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"out", "src"}));
}

TEST(ImportDataset, FailureLeavesNoOutputAndNoStaging) {
    test::ScratchDir dir;
    MnistFixture{10, 10}.write(dir / "src");
    auto labels = test::read_bytes(dir / "src" / "t10k-labels-idx1-ubyte");
    labels.erase(labels.end() - 4, labels.end());
    test::write_bytes(dir / "src" / "t10k-labels-idx1-ubyte", labels);
    try {
        (void)import_dataset(DatasetKind::mnist, dir / "src", dir / "out");
        FAIL() << "expected an error";
    } catch (const Error& error) {
        EXPECT_EQ(std::string(error.what()), (dir / "src" / "t10k-labels-idx1-ubyte").string() +
                                                 ": truncated: header declares 10 labels (10 bytes), file has only 6");
    }
    EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"src"}));

    // Also with overwrite: the existing folder survives a failed replacement.
    fs::create_directories(dir / "out");
    test::write_text(dir / "out" / "keep.txt", "mine");
    ImportOptions options;
    options.overwrite = true;
    EXPECT_THROW((void)import_dataset(DatasetKind::mnist, dir / "src", dir / "out", options), Error);
    EXPECT_EQ(entries(dir / "out"), (std::vector<std::string>{"keep.txt"}));
    EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"out", "src"}));
}

TEST(ImportDataset, MissingSourcesNamedInOneLine) {
    test::ScratchDir dir;
    fs::create_directories(dir / "src");
    test::write_bytes(dir / "src" / "train-images-idx3-ubyte.gz", {});
    try {
        (void)import_dataset(DatasetKind::mnist, dir / "src", dir / "out");
        FAIL() << "expected an error";
    } catch (const Error& error) {
        EXPECT_EQ(std::string(error.what()),
                  (dir / "src").string() +
                      ": missing train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
                      "t10k-labels-idx1-ubyte[.gz] (expected the 4 MNIST IDX files)");
    }
    try {
        (void)import_dataset(DatasetKind::cifar10, dir / "nowhere", dir / "out");
        FAIL() << "expected an error";
    } catch (const Error& error) {
        EXPECT_EQ(std::string(error.what()), (dir / "nowhere").string() + ": no such folder");
    }
    EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"src"}));
}

TEST(ImportDataset, RefusesToReplaceItsOwnSource) {
    test::ScratchDir dir;
    MnistFixture{10, 10}.write(dir / "data" / "mnist");
    ImportOptions options;
    options.overwrite = true;
    EXPECT_THROW((void)import_dataset(DatasetKind::mnist, dir / "data" / "mnist", dir / "data", options), Error);
    EXPECT_THROW((void)import_dataset(DatasetKind::mnist, dir / "data" / "mnist", dir / "data" / "mnist", options),
                 Error);
    EXPECT_TRUE(fs::exists(dir / "data" / "mnist" / "t10k-images-idx3-ubyte"));
}

TEST(ImportDataset, SafeFolderNamesAndKinds) {
    EXPECT_EQ(safe_folder_name("T-shirt/top"), "T-shirt_top");
    EXPECT_EQ(safe_folder_name("Ankle boot"), "Ankle_boot");
    EXPECT_EQ(safe_folder_name(".."), "_.");
    EXPECT_EQ(safe_folder_name("a:b\\c"), "a_b_c");
    EXPECT_EQ(safe_folder_name("caf\xc3\xa9"), "caf\xc3\xa9");
    EXPECT_THROW((void)safe_folder_name(""), Error);
    EXPECT_EQ(parse_dataset_kind("fashion-mnist"), DatasetKind::fashion_mnist);
    EXPECT_EQ(to_string(DatasetKind::cifar10), "cifar10");
    EXPECT_THROW((void)parse_dataset_kind("svhn"), Error);
}

TEST(ImportCli, SummaryJsonAndErrors) {
    test::ScratchDir dir;
    MnistFixture{20, 10}.write(dir / "src");
    const std::string out = (dir / "out").string();
    auto result = test::run_cli({"import", "mnist", (dir / "src").string(), out});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_TRUE(result.out.starts_with("wrote 20 train and 10 test images in 10 classes to " + out + " in "))
        << result.out;
    EXPECT_EQ(test::count_lines(result.out), 1);

    result = test::run_cli({"-q", "import", "fashion-mnist", (dir / "src").string(), out, "--overwrite", "--json"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.err, "");  // -q: no progress
    EXPECT_NE(result.out.find("\"kind\": \"fashion-mnist\""), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("\"T-shirt_top\": 2"), std::string::npos) << result.out;
    EXPECT_TRUE(fs::exists(dir / "out" / "train" / "Ankle_boot" / "19.png"));

    result = test::run_cli({"import", "svhn", (dir / "src").string(), (dir / "other").string()});
    test::expect_one_line_error(result, 2, "svhn");

    result = test::run_cli({"import", "mnist", (dir / "missing").string(), (dir / "other").string()});
    EXPECT_EQ(result.exit_code, 1);
    EXPECT_EQ(result.err, "cvxcnn: " + (dir / "missing").string() + ": no such folder\n");
    EXPECT_FALSE(fs::exists(dir / "other"));

    result = test::run_cli({"import", "--help"});
    EXPECT_EQ(result.exit_code, 0);
    EXPECT_NE(result.out.find("cvxcnn import fashion-mnist"), std::string::npos) << result.out;
}
