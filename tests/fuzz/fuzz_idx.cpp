// libFuzzer target: the IDX readers (MNIST, Fashion-MNIST), raw and gzip, images and
// labels (each refuses the other's magic with an error).
#include <cstdint>
#include <span>
#include <vector>

#include "cvxcnn/data/idx.hpp"
#include "fuzz_support.hpp"

using namespace cvxcnn;

namespace {

std::vector<std::uint8_t> idx(std::uint32_t magic, std::vector<std::uint32_t> dims, std::size_t payload) {
    std::vector<std::uint8_t> bytes;
    for (const std::uint32_t value : std::vector<std::uint32_t>{magic}) {
        for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<std::uint8_t>(value >> shift));
    }
    for (const std::uint32_t value : dims)
        for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<std::uint8_t>(value >> shift));
    for (std::size_t i = 0; i < payload; ++i) bytes.push_back(static_cast<std::uint8_t>(i * 37 % 10));
    return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const auto images = idx(0x00000803, {3, 4, 5}, 60);
    const auto labels = idx(0x00000801, {3}, 3);
    fuzz::write_seeds({images, labels, fuzz::gzip(images), fuzz::gzip(labels)});
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Limits as a small machine would set them: a header may declare up to 64 MiB, which
    // a short file must not make the reader allocate.
    const IdxLimits limits{.max_images = 1'000'000, .max_side = 4096, .max_payload_bytes = 64ull << 20};
    const auto path = fuzz::scratch_file(std::span(data, size), "fuzz-idx");
    fuzz::expect_clean([&] {
        const IdxImages images = read_idx_images(path, limits);
        fuzz::require(images.pixels.size() == images.count * static_cast<std::size_t>(images.rows) * images.cols,
                      "pixel count matches the declared sizes");
    });
    fuzz::expect_clean([&] { (void)read_idx_labels(path, limits); });
    return 0;
}
