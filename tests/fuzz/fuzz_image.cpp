// libFuzzer target: the image-decoding path of the image-folder loader and of predict:
// decode (PNG, JPEG, BMP, PGM/PPM through stb with cvxcnn's caps), then channel
// conversion and resampling as load_image_folder applies them.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cvxcnn/data/image_codec.hpp"
#include "fuzz_support.hpp"

using namespace cvxcnn;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    std::vector<std::uint8_t> rgb(6 * 5 * 3);
    for (std::size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<std::uint8_t>(i * 41);
    std::vector<std::uint8_t> gray(rgb.begin(), rgb.begin() + 30);
    const std::string pgm_header = "P5\n5 6\n255\n";
    std::vector<std::uint8_t> pgm(pgm_header.begin(), pgm_header.end());
    pgm.insert(pgm.end(), gray.begin(), gray.end());
    const std::string bmp_header = "BM";  // a truncated BMP: the fuzzer grows it
    fuzz::write_seeds({encode_png(rgb, 6, 5, 3), encode_png(gray, 6, 5, 1), pgm,
                       std::vector<std::uint8_t>(bmp_header.begin(), bmp_header.end()),
                       {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00}});
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Sides capped lower than the default 4096 so one input stays fast; same code path.
    const DecodeLimits limits{.max_side = 512, .max_file_bytes = 1 << 20};
    fuzz::expect_clean([&] {
        const DecodedImage image = decode_image(std::span(data, size), "fuzz.img", limits);
        fuzz::require(image.channels >= 1 && image.channels <= 4, "1 to 4 channels");
        fuzz::require(image.pixels.size() ==
                          static_cast<std::size_t>(image.height) * image.width * static_cast<std::size_t>(image.channels),
                      "pixel count matches the size");
        for (const int channels : {1, 3}) {
            const DecodedImage converted = convert_channels(image, channels);
            const DecodedImage resized = resize_image(converted, 7, 5);
            fuzz::require(resized.pixels.size() == std::size_t{7} * 5 * static_cast<std::size_t>(channels),
                          "resized to 7x5");
        }
    });
    return 0;
}
