// Bad input never crashes: a table of bad files and flag values (README "Reliability"),
// each run through the real executable, must end with exit code 1 and one line on
// stderr naming the file or flag and the defect.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace fs = std::filesystem;
using cvxcnn::test::run_cli;

namespace {

struct BadInput {
    std::string name;
    std::vector<std::string> args;
    std::string fragment;  ///< must appear in the one stderr line
};

std::vector<std::uint8_t> big_endian_words(std::initializer_list<std::uint32_t> words) {
    std::vector<std::uint8_t> bytes;
    for (const std::uint32_t word : words)
        for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<std::uint8_t>(word >> shift));
    return bytes;
}

}  // namespace

TEST(CliBadInput, EachFailsWithExitOneAndOneLineNamingTheCulprit) {
    cvxcnn::test::ScratchDir dir;
    const std::string sample = std::string(CVXCNN_SOURCE_DIR) + "/datasets/fashion-mnist-sample/train";
    const fs::path fuzz = fs::path(CVXCNN_TEST_DATA_DIR) / "fuzz";

    // An MNIST source folder whose image file declares 2e9 bytes of pixels but holds 3.
    auto short_images = big_endian_words({0x803, 2000, 1000, 1000});
    short_images.insert(short_images.end(), {1, 2, 3});
    cvxcnn::test::write_bytes(dir / "idx/train-images-idx3-ubyte", short_images);
    for (const char* name : {"train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
        cvxcnn::test::write_bytes(dir / "idx" / name, short_images);
    // CIFAR-10 batches of the wrong size.
    for (const char* name : {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"})
        cvxcnn::test::write_bytes(dir / "cifar" / (std::string(name) + ".bin"), std::vector<std::uint8_t>(3000, 1));
    // Image folders holding one fuzzing finding each, beside a good image.
    std::vector<BadInput> cases;
    for (const char* finding : {"image-jpeg-huffman-over-256-codes.jpg", "image-png-idat-declares-gigabytes.png",
                                "image-pnm-width-overflows-int.pgm"}) {
        const fs::path folder = dir / (std::string("images-") + finding);
        fs::create_directories(folder / "a");
        fs::create_directories(folder / "b");
        fs::copy_file(fs::path(sample) / "Bag" / fs::directory_iterator(fs::path(sample) / "Bag")->path().filename(),
                      folder / "a/good.png");
        fs::copy_file(fuzz / finding, folder / "b" / finding);
        cases.push_back({finding, {"info", folder.string()}, finding});
    }
    cvxcnn::test::write_text(dir / "png.cvx", "\x89PNG\r\n\x1a\nnot a model");

    const std::vector<BadInput> flags{
        {"png as model", {"info", (dir / "png.cvx").string()}, "png.cvx: not a cvxcnn model file (looks like a PNG image)"},
        {"short IDX", {"import", "mnist", (dir / "idx").string(), (dir / "out").string()},
         "train-images-idx3-ubyte: truncated: header declares 2000 images of 1000x1000"},
        {"CIFAR size", {"import", "cifar10", (dir / "cifar").string(), (dir / "out").string()},
         "data_batch_1.bin: size 3000 is not a multiple of the 3073-byte CIFAR-10 record"},
        {"arch control character", {"train", sample, "--out", (dir / "m.cvx").string(), "--arch", "conv3x3\n-pool2"},
         "--arch 'conv3x3\\x0a-pool2'"},
        {"beta NaN", {"train", sample, "--out", (dir / "m.cvx").string(), "--beta", "nan"}, "--beta nan"},
        {"val-split NaN", {"train", sample, "--out", (dir / "m.cvx").string(), "--val-split", "nan"}, "--val-split nan"},
        {"tol Inf", {"train", sample, "--out", (dir / "m.cvx").string(), "--tol", "inf"}, "--tol"},
        {"max-memory unit", {"train", sample, "--out", (dir / "m.cvx").string(), "--max-memory", "12Q"}, "--max-memory '12Q'"},
        {"out folder missing", {"train", sample, "--out", (dir / "no/such/m.cvx").string()}, "does not exist"},
    };
    cases.insert(cases.end(), flags.begin(), flags.end());

    for (const BadInput& bad : cases) {
        SCOPED_TRACE(bad.name);
        const auto result = run_cli(bad.args);
        cvxcnn::test::expect_one_line_error(result, 1, bad.fragment);
        EXPECT_TRUE(result.err.starts_with("cvxcnn: ")) << result.err;
    }
    EXPECT_FALSE(fs::exists(dir / "out"));
    EXPECT_FALSE(fs::exists(dir / "m.cvx"));
}
