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

// Fuzzing regression (tools/fuzz.sh image): stb's "unknown chunk" reason quoted the chunk
// type from the file, here "IE5\n", in the message (now the chunk check quotes it); the
// message must still be one line.
TEST(ImageCodec, FuzzPngChunkTypeWithNewlineGivesOneLine) {
    const std::filesystem::path path = std::filesystem::path(CVXCNN_TEST_DATA_DIR) / "fuzz/image-png-chunk-type-with-newline.png";
    const std::vector<std::uint8_t> bytes = test::read_bytes(path);
    try {
        (void)decode_image(bytes, path);
        FAIL() << "decoded a corrupt PNG";
    } catch (const Error& error) {
        const std::string message = error.what();
        EXPECT_EQ(error.kind(), ErrorKind::bad_input);
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
        EXPECT_NE(message.find("IE5\\x0a"), std::string::npos) << message;
    }
}

// Fuzzing regression (tools/fuzz.sh image): a 10-byte JPEG whose DHT segment declares 408
// codes made stb 2.27 write past its Huffman tables (UBSan: index 257 out of bounds for
// stbi_uc[257]). It must be refused before stb parses it.
TEST(ImageCodec, FuzzJpegHuffmanTableOverflowIsRefused) {
    // The second file starts with a fill byte before the start-of-image marker, as stb allows.
    for (const char* name : {"image-jpeg-huffman-over-256-codes.jpg", "image-jpeg-fill-byte-then-huffman-overflow.jpg"}) {
        const std::filesystem::path path = std::filesystem::path(CVXCNN_TEST_DATA_DIR) / "fuzz" / name;
        const std::vector<std::uint8_t> bytes = test::read_bytes(path);
        test::expect_file_error([&] { (void)decode_image(bytes, path); }, ErrorKind::bad_input, path,
                                "corrupt JPEG: a Huffman table declares more than 256 codes");
    }
    // A valid JPEG still decodes (the check does not refuse ordinary files).
    std::vector<std::uint8_t> jpeg;
    std::vector<std::uint8_t> rgb(16 * 16 * 3, 128);
    stbi_write_jpg_to_func([](void* context, void* data, int size) {
        auto* out = static_cast<std::vector<std::uint8_t>*>(context);
        out->insert(out->end(), static_cast<std::uint8_t*>(data), static_cast<std::uint8_t*>(data) + size);
    }, &jpeg, 16, 16, 3, rgb.data(), 90);
    EXPECT_EQ(decode_image(jpeg, "ok.jpg").width, 16);
}

// Fuzzing regression (tools/fuzz.sh image): a PGM header number past INT_MAX made stb 2.27
// overflow a signed int while parsing it (UBSan: 666666666 * 10 cannot be represented).
// It must be refused before stb parses it; ordinary PGM headers (comments included) pass.
TEST(ImageCodec, FuzzPnmHeaderNumberOverflowIsRefused) {
    const std::filesystem::path path = std::filesystem::path(CVXCNN_TEST_DATA_DIR) / "fuzz/image-pnm-width-overflows-int.pgm";
    const std::vector<std::uint8_t> bytes = test::read_bytes(path);
    test::expect_file_error([&] { (void)decode_image(bytes, path); }, ErrorKind::bad_input, path,
                            "corrupt PGM/PPM header: a number is over 2147483647");
    const std::string ok = "P5 # a comment\n2 1\n255\n\x07\x09";
    const DecodedImage image = decode_image({reinterpret_cast<const std::uint8_t*>(ok.data()), ok.size()}, "ok.pgm");
    EXPECT_EQ(image.width, 2);
    EXPECT_EQ(image.pixels, (std::vector<std::uint8_t>{7, 9}));
}

// Fuzzing regression (tools/fuzz.sh image): a 160-byte PNG whose IDAT chunk declares about
// 1.6 GB made stb 2.27 allocate that much before reading it (libFuzzer: malloc(1885339648)).
// Chunks that run past the end of the file are refused before stb sees them; a complete
// PNG, and one with bytes after IEND, still decode.
TEST(ImageCodec, FuzzPngChunkLongerThanTheFileIsRefusedBeforeAllocating) {
    const std::filesystem::path path = std::filesystem::path(CVXCNN_TEST_DATA_DIR) / "fuzz/image-png-idat-declares-gigabytes.png";
    const std::vector<std::uint8_t> bytes = test::read_bytes(path);
    test::expect_file_error([&] { (void)decode_image(bytes, path); }, ErrorKind::bad_input, path,
                            "corrupt or truncated image: PNG IDAT chunk declares");
    std::vector<std::uint8_t> png = encode_png(std::vector<std::uint8_t>(6, 50), 2, 3, 1);
    EXPECT_EQ(decode_image(png, "ok.png").width, 3);
    png.push_back(0);
    EXPECT_EQ(decode_image(png, "trailing.png").width, 3);
    png.erase(png.end() - 10, png.end());  // IEND cut
    EXPECT_THROW((void)decode_image(png, "cut.png"), Error);
}

// Fuzzing regression (tools/fuzz.sh image): an empty IDAT chunk before any image data made
// stb 2.27 compute null + 0 (UBSan: applying zero offset to null pointer). Refused first.
TEST(ImageCodec, FuzzPngEmptyFirstIdatIsRefused) {
    const std::filesystem::path path = std::filesystem::path(CVXCNN_TEST_DATA_DIR) / "fuzz/image-png-empty-first-idat.png";
    const std::vector<std::uint8_t> bytes = test::read_bytes(path);
    test::expect_file_error([&] { (void)decode_image(bytes, path); }, ErrorKind::bad_input, path,
                            "PNG empty IDAT chunk before any image data");
}
