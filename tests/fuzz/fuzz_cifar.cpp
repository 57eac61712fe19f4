// libFuzzer target: the CIFAR-10 binary batch reader, raw and gzip.
#include <cstdint>
#include <span>
#include <vector>

#include "cvxcnn/data/cifar.hpp"
#include "fuzz_support.hpp"

using namespace cvxcnn;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    std::vector<std::uint8_t> batch;
    for (int record = 0; record < 2; ++record) {
        batch.push_back(static_cast<std::uint8_t>(record * 7));
        for (std::size_t i = 1; i < cifar_record_bytes; ++i) batch.push_back(static_cast<std::uint8_t>(i * 13));
    }
    fuzz::write_seeds({batch, fuzz::gzip(batch)});
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = fuzz::scratch_file(std::span(data, size), "fuzz_batch.bin");
    fuzz::expect_clean([&] {
        const ByteImages images = read_cifar_batch(path, CifarLimits{.max_records = 64});
        fuzz::require(images.pixels.size() == images.size() * images.shape.values(), "pixels match the records");
        for (const std::int32_t label : images.labels) fuzz::require(label >= 0 && label < 10, "labels in 0...9");
    });
    return 0;
}
