#include "cvxcnn/data/image_codec.hpp"

#include <gtest/gtest.h>
#include <stb_image_write.h>

#include <string>

#include "cvxcnn/util/error.hpp"
#include "test_support.hpp"

using namespace cvxcnn;

namespace {

std::vector<std::uint8_t> gradient(int height, int width, int channels) {
    std::vector<std::uint8_t> hwc(static_cast<std::size_t>(height) * width * channels);
    for (std::size_t i = 0; i < hwc.size(); ++i) hwc[i] = static_cast<std::uint8_t>((i * 37 + 11) % 256);
    return hwc;
}

std::vector<std::uint8_t> encode_with(int (*writer)(stbi_write_func*, void*, int, int, int, const void*),
                                      const std::vector<std::uint8_t>& hwc, int height, int width, int channels) {
    std::vector<std::uint8_t> out;
    auto append = [](void* context, void* data, int size) {
        auto* bytes = static_cast<std::vector<std::uint8_t>*>(context);
        bytes->insert(bytes->end(), static_cast<std::uint8_t*>(data), static_cast<std::uint8_t*>(data) + size);
    };
    EXPECT_TRUE(writer(append, &out, width, height, channels, hwc.data()));
    return out;
}

int write_bmp(stbi_write_func* f, void* c, int w, int h, int n, const void* d) { return stbi_write_bmp_to_func(f, c, w, h, n, d); }

// A PNG whose IHDR declares width x height and that has no image data at all: only the
// header can be read, so refusing it proves the check happens before decoding.
std::vector<std::uint8_t> png_header_only(std::uint32_t width, std::uint32_t height) {
    std::vector<std::uint8_t> bytes{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    for (std::uint32_t v : {width, height})
        for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<std::uint8_t>(v >> shift));
    for (std::uint8_t b : {8, 0, 0, 0, 0}) bytes.push_back(b);  // 8-bit gray, no interlace
    for (int i = 0; i < 4; ++i) bytes.push_back(0);             // CRC (stb does not check it)
    return bytes;
}

std::string message_of(const std::function<void()>& action) {
    try {
        action();
    } catch (const Error& error) {
        return error.what();
    }
    return "";
}

}  // namespace

TEST(ImageCodec, PngRoundTripIsLosslessForGrayAndRgb) {
    for (int channels : {1, 3, 4}) {
        const auto pixels = gradient(7, 5, channels);
        const auto png = encode_png(pixels, 7, 5, channels);
        const DecodedImage image = decode_image(png, "mem.png");
        EXPECT_EQ(image.height, 7);
        EXPECT_EQ(image.width, 5);
        EXPECT_EQ(image.channels, channels);
        EXPECT_EQ(image.pixels, pixels);
    }
}

TEST(ImageCodec, DecodesBmpAndPgmExactlyAndJpegApproximately) {
    const auto rgb = gradient(6, 9, 3);
    EXPECT_EQ(decode_image(encode_with(write_bmp, rgb, 6, 9, 3), "x.bmp").pixels, rgb);

    const auto gray = gradient(4, 3, 1);
    std::string pgm = "P5\n3 4\n255\n";
    pgm.append(gray.begin(), gray.end());
    const DecodedImage from_pgm = decode_image({reinterpret_cast<const std::uint8_t*>(pgm.data()), pgm.size()}, "x.pgm");
    EXPECT_EQ(from_pgm.channels, 1);
    EXPECT_EQ(from_pgm.pixels, gray);

    std::vector<std::uint8_t> flat(16 * 16 * 3, 128);
    std::vector<std::uint8_t> jpeg;
    auto append = [](void* context, void* data, int size) {
        auto* bytes = static_cast<std::vector<std::uint8_t>*>(context);
        bytes->insert(bytes->end(), static_cast<std::uint8_t*>(data), static_cast<std::uint8_t*>(data) + size);
    };
    ASSERT_TRUE(stbi_write_jpg_to_func(append, &jpeg, 16, 16, 3, flat.data(), 95));
    const DecodedImage from_jpeg = decode_image(jpeg, "x.jpg");
    ASSERT_EQ(from_jpeg.pixels.size(), flat.size());
    for (std::uint8_t v : from_jpeg.pixels) EXPECT_NEAR(v, 128, 2);
}

TEST(ImageCodec, RefusesDeclaredSizesOverTheCapBeforeDecoding) {
    const auto big = png_header_only(10000, 10);
    const std::string message = message_of([&] { (void)decode_image(big, "huge.png"); });
    EXPECT_NE(message.find("huge.png"), std::string::npos);
    EXPECT_NE(message.find("10000x10"), std::string::npos) << message;
    // The cap is configurable: a raised cap lets the header through, and then decoding
    // fails for the missing data, not for the size.
    const std::string raised = message_of([&] { (void)decode_image(big, "huge.png", {.max_side = 12000}); });
    EXPECT_EQ(raised.find("exceeds"), std::string::npos) << raised;
    EXPECT_NE(raised.find("huge.png"), std::string::npos);
    // Beyond stb's compiled-in ceiling the header itself is rejected.
    EXPECT_NE(message_of([&] { (void)decode_image(png_header_only(1u << 30, 1u << 30), "absurd.png"); }).find("absurd.png"),
              std::string::npos);
}

TEST(ImageCodec, BadBytesGiveOneLineNamingTheFile) {
    const auto png = encode_png(gradient(20, 20, 3), 20, 20, 3);
    const std::vector<std::uint8_t> truncated(png.begin(), png.begin() + static_cast<long>(png.size() / 2));
    const std::string text = "this is not an image";
    const std::vector<std::uint8_t> not_image(text.begin(), text.end());
    const std::vector<std::uint8_t> gif{'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0};
    for (const auto& [bytes, name] : std::vector<std::pair<std::vector<std::uint8_t>, std::string>>{
             {{}, "empty.png"}, {truncated, "cut.png"}, {not_image, "notes.png"}, {gif, "anim.gif"}}) {
        const std::string message = message_of([&] { (void)decode_image(bytes, name); });
        EXPECT_NE(message.find(name), std::string::npos) << message;
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
}

TEST(ImageCodec, ChannelConversionFollowsStbLuma) {
    DecodedImage rgba{1, 2, 4, {255, 0, 0, 7, 10, 200, 30, 255}};
    const DecodedImage gray = convert_channels(rgba, 1);
    EXPECT_EQ(gray.pixels, (std::vector<std::uint8_t>{(255 * 77) >> 8, (10 * 77 + 200 * 150 + 30 * 29) >> 8}));
    const DecodedImage rgb = convert_channels(rgba, 3);
    EXPECT_EQ(rgb.pixels, (std::vector<std::uint8_t>{255, 0, 0, 10, 200, 30}));
    DecodedImage gray_alpha{1, 1, 2, {90, 3}};
    EXPECT_EQ(convert_channels(gray_alpha, 3).pixels, (std::vector<std::uint8_t>{90, 90, 90}));
}

TEST(ImageCodec, ResizeKeepsConstantImagesConstant) {
    DecodedImage flat{4, 6, 3, std::vector<std::uint8_t>(4 * 6 * 3, 77)};
    const DecodedImage bigger = resize_image(flat, 9, 5);
    EXPECT_EQ(bigger.height, 9);
    EXPECT_EQ(bigger.width, 5);
    for (std::uint8_t v : bigger.pixels) EXPECT_EQ(v, 77);
}
