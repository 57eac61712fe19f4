// Model files: bit-exact round trips, the documented byte layout, a table of
// handcrafted corruptions (in the spirit of llama.cpp's tests/test-gguf.cpp) that must
// each fail with one line naming the file, and atomic writes.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zlib.h>

#include "cvxcnn/model/model.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/util/error.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace cvxcnn;
using cvxcnn::test::ScratchDir;

namespace {

// ---- sample models: every kind of float the file must carry bit-exactly -----------------

void fill_random(Tensor& tensor, std::mt19937& rng) {
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (float& value : tensor.data) value = uniform(rng);
    const float specials[] = {-0.0f, FLT_MIN / 4.0f, FLT_MAX, -FLT_MAX, 1e-30f, FLT_MIN};
    for (std::size_t i = 0; i < tensor.data.size() && i < std::size(specials); ++i) tensor.data[i] = specials[i];
}

/// 2x8x8 input, 3 classes; `arch` must fit 8x8 images.
Model sample_model(const std::string& arch = "conv3x3s1p1-relu-pool2", int filters = 3, unsigned seed = 7) {
    Model model = make_model(parse_architecture(arch), ImageShape{2, 8, 8},
                             {"T-shirt/top", "\xC3\x9Cn\xC3\xAF" "code \xE2\x98\x82", "two"}, filters);
    std::mt19937 rng(seed);
    fill_random(model.conv_weight, rng);
    fill_random(model.conv_bias, rng);
    if (!model.gate_weight.shape.empty()) fill_random(model.gate_weight, rng);
    fill_random(model.fc_weight, rng);
    fill_random(model.fc_bias, rng);
    model.normalization.mean = {0.2860406f, -0.125f};
    model.normalization.std = {0.35302424f, 1e-3f};
    model.training = {{"solver", "admm"},   {"beta", 1e-3},        {"objective", 1.2345678901234567},
                      {"duality_gap", 1e-9}, {"patterns", 128},     {"filters", filters},
                      {"iterations", 500},   {"time_s", 1.5},       {"seed", 42},
                      {"nested", {{"a", {1, 2, 3}}, {"ok", true}}}, {"note", "line1\nline2"}};
    return model;
}

bool same_bits(const Tensor& a, const Tensor& b) {
    return a.shape == b.shape && a.data.size() == b.data.size() &&
           (a.data.empty() || std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0);
}

void expect_same_model(const Model& expected, const Model& actual) {
    EXPECT_EQ(actual.architecture, expected.architecture);
    EXPECT_EQ(actual.input, expected.input);
    EXPECT_EQ(actual.class_names, expected.class_names);
    ASSERT_EQ(actual.normalization.mean.size(), expected.normalization.mean.size());
    ASSERT_EQ(actual.normalization.std.size(), expected.normalization.std.size());
    EXPECT_EQ(0, std::memcmp(actual.normalization.mean.data(), expected.normalization.mean.data(),
                             expected.normalization.mean.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(actual.normalization.std.data(), expected.normalization.std.data(),
                             expected.normalization.std.size() * sizeof(float)));
    EXPECT_EQ(actual.training, expected.training) << actual.training.dump();
    EXPECT_TRUE(same_bits(actual.conv_weight, expected.conv_weight));
    EXPECT_TRUE(same_bits(actual.conv_bias, expected.conv_bias));
    EXPECT_TRUE(same_bits(actual.gate_weight, expected.gate_weight));
    EXPECT_TRUE(same_bits(actual.hidden_weight, expected.hidden_weight));
    EXPECT_TRUE(same_bits(actual.fc_weight, expected.fc_weight));
    EXPECT_TRUE(same_bits(actual.fc_bias, expected.fc_bias));
}

// ---- file surgery: split a file into its parts and put it back together ---------------------

std::uint32_t get_u32(const std::vector<std::uint8_t>& b, std::size_t at) {
    return static_cast<std::uint32_t>(b[at]) | static_cast<std::uint32_t>(b[at + 1]) << 8 |
           static_cast<std::uint32_t>(b[at + 2]) << 16 | static_cast<std::uint32_t>(b[at + 3]) << 24;
}
std::uint64_t get_u64(const std::vector<std::uint8_t>& b, std::size_t at) {
    return static_cast<std::uint64_t>(get_u32(b, at)) | static_cast<std::uint64_t>(get_u32(b, at + 4)) << 32;
}
void put_u32(std::vector<std::uint8_t>& b, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void put_u64(std::vector<std::uint8_t>& b, std::size_t at, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) b[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint32_t crc_of(const std::uint8_t* data, std::size_t n) {
    return static_cast<std::uint32_t>(crc32_z(crc32_z(0L, Z_NULL, 0), data, n));
}
// Recomputes the trailing CRC, so that a deliberate defect is reported as itself.
void fix_crc(std::vector<std::uint8_t>& b) { put_u32(b, b.size() - 4, crc_of(b.data(), b.size() - 4)); }

struct Parts {
    std::vector<std::uint8_t> preamble;  // 24 bytes
    std::string header;
    std::vector<std::uint8_t> data;      // data section, without the CRC
};

std::size_t data_start_of(const std::vector<std::uint8_t>& file) {
    return static_cast<std::size_t>((24 + get_u64(file, 16) + 63) / 64 * 64);
}

Parts split(const std::vector<std::uint8_t>& file) {
    Parts parts;
    parts.preamble.assign(file.begin(), file.begin() + 24);
    const auto n = static_cast<std::size_t>(get_u64(file, 16));
    parts.header.assign(file.begin() + 24, file.begin() + 24 + static_cast<std::ptrdiff_t>(n));
    parts.data.assign(file.begin() + static_cast<std::ptrdiff_t>(data_start_of(file)), file.end() - 4);
    return parts;
}

// Header length, padding and CRC recomputed for the (edited) parts.
std::vector<std::uint8_t> join(const Parts& parts) {
    std::vector<std::uint8_t> file = parts.preamble;
    put_u64(file, 16, parts.header.size());
    file.insert(file.end(), parts.header.begin(), parts.header.end());
    file.resize((file.size() + 63) / 64 * 64, 0);
    file.insert(file.end(), parts.data.begin(), parts.data.end());
    file.resize(file.size() + 4);
    fix_crc(file);
    return file;
}

const std::vector<std::uint8_t>& good_file() {
    static const std::vector<std::uint8_t> bytes = encode_model(sample_model());
    return bytes;
}
const std::vector<std::uint8_t>& good_gated_file() {
    static const std::vector<std::uint8_t> bytes = encode_model(sample_model("conv3x3s1p1-gated-pool2"));
    return bytes;
}

std::vector<std::uint8_t> edit_header(const std::function<void(json&)>& edit,
                                      const std::vector<std::uint8_t>& file = good_file()) {
    Parts parts = split(file);
    json header = json::parse(parts.header);
    edit(header);
    parts.header = header.dump();
    return join(parts);
}

std::vector<std::uint8_t> edit_header_text(const std::function<void(std::string&)>& edit) {
    Parts parts = split(good_file());
    edit(parts.header);
    return join(parts);
}

json tensor_entry(const std::vector<std::uint8_t>& file, const std::string& name) {
    const json header = json::parse(split(file).header);
    for (const json& entry : header.at("tensors"))
        if (entry.at("name") == name) return entry;
    throw std::runtime_error("no tensor " + name);
}

// Overwrites float `index` of tensor `name` in the data section (CRC fixed).
std::vector<std::uint8_t> edit_float(const std::string& name, std::size_t index, float value) {
    std::vector<std::uint8_t> file = good_file();
    const std::size_t at = data_start_of(file) + tensor_entry(file, name).at("offset").get<std::size_t>() + 4 * index;
    const auto bits = std::bit_cast<std::uint32_t>(value);
    put_u32(file, at, bits);
    fix_crc(file);
    return file;
}

std::vector<std::uint8_t> bytes_of(std::string_view text) { return {text.begin(), text.end()}; }

std::vector<std::uint8_t> with_u32(std::size_t at, std::uint32_t value) {
    std::vector<std::uint8_t> file = good_file();
    put_u32(file, at, value);
    return file;
}

std::vector<std::uint8_t> with_u64(std::size_t at, std::uint64_t value) {
    std::vector<std::uint8_t> file = good_file();
    put_u64(file, at, value);
    return file;
}

std::vector<std::uint8_t> truncated(std::size_t size) {
    const std::vector<std::uint8_t>& file = good_file();
    return {file.begin(), file.begin() + static_cast<std::ptrdiff_t>(std::min(size, file.size()))};
}

std::string read_error(const fs::path& path, const ReadLimits& limits = {}) {
    try {
        (void)read_model(path, limits);
    } catch (const Error& error) {
        return error.what();
    }
    return "(no error)";
}

struct Corruption {
    std::string name;
    std::function<std::vector<std::uint8_t>()> make;
    std::string defect;  // a substring the one-line message must contain
};

std::vector<Corruption> corruption_table() {
    const std::uint64_t n = get_u64(good_file(), 16);
    const std::size_t size = good_file().size();
    const std::size_t data_start = data_start_of(good_file());
    std::vector<Corruption> table = {
        // foreign and tiny files
        {"empty", [] { return std::vector<std::uint8_t>{}; }, "empty file"},
        {"three_bytes_text", [] { return bytes_of("abc"); }, "not a cvxcnn model file (looks like a text file)"},
        {"three_bytes_magic", [] { return truncated(3); }, "truncated: file is 3 bytes"},
        {"wrong_magic", [] { return bytes_of(std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8) + std::string(100, '\0')); },
         "not a cvxcnn model file (unknown magic bytes)"},
        {"text_file", [] { return bytes_of("hello, world\nthis is not a model\n"); }, "looks like a text file"},
        {"json_file", [] { return bytes_of("{\"format\": \"cvxcnn-model\"}"); }, "looks like JSON text"},
        {"zip_file", [] { return bytes_of(std::string("PK\x03\x04", 4) + std::string(100, 'z')); }, "ZIP archive"},
        {"gguf_file", [] { return bytes_of("GGUF" + std::string(100, '\0')); }, "GGUF model"},
        {"line_endings_converted",
         [] {
             std::vector<std::uint8_t> file = good_file();
             file.erase(file.begin() + 4);  // CR LF -> LF, as a text-mode copy does
             return file;
         },
         "line endings were converted"},
        // preamble
        {"version_0", [] { return with_u32(8, 0); }, "format version 0 is invalid"},
        {"version_future", [] { return with_u32(8, 7); }, "format version 7 is newer than this cvxcnn supports (1)"},
        {"version_byte_swapped", [] { return with_u32(8, 0x01000000); }, "wrong byte order"},
        {"endian_swapped", [] { return with_u32(12, 0x04030201); }, "big-endian"},
        {"endian_garbage", [] { return with_u32(12, 0xdeadbeef); }, "byte order marker is 0xdeadbeef"},
        {"header_length_huge", [] { return with_u64(16, std::uint64_t{1} << 63); }, "header length 9223372036854775808 is over the limit of 16777216"},
        {"header_length_past_eof", [size] { return with_u64(16, size); }, "truncated: header length"},
        {"header_length_tiny", [] { return with_u64(16, 1); }, "header length 1 is too small"},
        {"header_length_short", [n] { return with_u64(16, n - 1); }, "header is not valid JSON"},
        // JSON
        {"invalid_json", [] { return edit_header_text([](std::string& h) { h = "{\"format\": cvxcnn}"; }); }, "header is not valid JSON"},
        {"json_not_object", [] { return edit_header_text([](std::string& h) { h = "[1, 2, 3]"; }); }, "header is not a JSON object"},
        {"json_duplicate_key", [] { return edit_header_text([](std::string& h) { h.insert(1, "\"format\":\"x\","); }); },
         "duplicate key 'format'"},
        {"json_too_deep",
         [] {
             return edit_header([](json& h) {
                 json deep = 1;
                 for (int i = 0; i < 100; ++i) deep = json::array({deep});
                 h["training"]["deep"] = deep;
             });
         },
         "nested deeper than 64"},
        {"json_invalid_utf8", [] { return edit_header_text([](std::string& h) { h.replace(h.find("two"), 3, "t\xFFo"); }); },
         "last read: '\"t\\xff'"},
        {"missing_key", [] { return edit_header([](json& h) { h.erase("class_names"); }); }, "missing key 'class_names'"},
        {"missing_nested_key", [] { return edit_header([](json& h) { h["input"].erase("height"); }); }, "missing key 'input.height'"},
        {"missing_tensors", [] { return edit_header([](json& h) { h.erase("tensors"); }); }, "missing key 'tensors'"},
        {"wrong_type_architecture", [] { return edit_header([](json& h) { h["architecture"] = 5; }); },
         "'architecture' must be a string, got a number"},
        {"wrong_type_channels", [] { return edit_header([](json& h) { h["input"]["channels"] = "2"; }); },
         "'input.channels' must be an integer, got a string"},
        {"wrong_type_training", [] { return edit_header([](json& h) { h["training"] = json::array(); }); },
         "'training' must be an object, got an array"},
        {"wrong_type_class_name", [] { return edit_header([](json& h) { h["class_names"][1] = 1; }); },
         "'class_names[1]' must be a string"},
        {"wrong_format", [] { return edit_header([](json& h) { h["format"] = "gguf"; }); }, "'format' is 'gguf', expected 'cvxcnn-model'"},
        {"format_version_mismatch", [] { return edit_header([](json& h) { h["format_version"] = 2; }); },
         "format_version 2 does not match the file's version 1"},
        {"bad_architecture", [] { return edit_header([](json& h) { h["architecture"] = "conv3x3q-pool2"; }); },
         "architecture 'conv3x3q-pool2': unknown token 'q'"},
        {"architecture_with_newline", [] { return edit_header([](json& h) { h["architecture"] = "conv3x3\n-pool2"; }); },
         "unknown token"},
        {"input_too_large", [] { return edit_header([](json& h) { h["input"]["channels"] = 5000; }); },
         "'input.channels' is 5000, must be in 1...1024"},
        {"input_negative", [] { return edit_header([](json& h) { h["input"]["height"] = -8; }); },
         "'input.height' is -8, must be in 1...65536"},
        {"mean_not_float", [] { return edit_header([](json& h) { h["normalization"]["mean"][0] = 1e300; }); },
         "not a finite float"},
        // tensor table
        {"unknown_tensor", [] { return edit_header([](json& h) { h["tensors"][3]["name"] = "bogus"; }); }, "unknown tensor 'bogus'"},
        {"tensor_name_newline", [] { return edit_header([](json& h) { h["tensors"][3]["name"] = "bo\ngus"; }); }, "unknown tensor"},
        {"duplicate_tensor", [] { return edit_header([](json& h) { h["tensors"][1]["name"] = "conv_weight"; }); },
         "duplicate tensor 'conv_weight'"},
        {"missing_tensor", [] { return edit_header([](json& h) { h["tensors"].erase(3); }); }, "tensor table lacks 'fc_bias'"},
        {"dtype_f16", [] { return edit_header([](json& h) { h["tensors"][0]["dtype"] = "f16"; }); }, "dtype 'f16' is not supported"},
        {"rank_5", [] { return edit_header([](json& h) { h["tensors"][0]["shape"] = {3, 2, 3, 3, 1}; }); }, "rank 5 is outside 1...4"},
        {"rank_0", [] { return edit_header([](json& h) { h["tensors"][0]["shape"] = json::array(); }); }, "rank 0 is outside 1...4"},
        {"negative_dim", [] { return edit_header([](json& h) { h["tensors"][0]["shape"][0] = -3; }); }, "dimension -3 is negative"},
        {"non_integer_dim", [] { return edit_header([](json& h) { h["tensors"][0]["shape"][0] = 3.5; }); }, "must be an integer"},
        {"huge_dim", [] { return edit_header([](json& h) { h["tensors"][0]["shape"][0] = 4294967296ull; }); },
         "dimension 4294967296 is over the limit of 2147483648"},
        {"size_overflow",
         [] {
             return edit_header([](json& h) {
                 h["tensors"][0]["shape"] = {2147483648ll, 2147483648ll, 2147483648ll, 2147483648ll};
             });
         },
         "overflows 64-bit sizes"},
        {"bytes_overflow", [] { return edit_header([](json& h) { h["tensors"][0]["shape"] = {2147483648ll, 2147483648ll, 2}; }); },
         "overflows 64-bit sizes"},
        {"bytes_mismatch", [] { return edit_header([](json& h) { h["tensors"][0]["bytes"] = h["tensors"][0]["bytes"].get<int>() + 4; }); },
         "'bytes' is 220, shape [3,2,3,3] of f32 needs 216"},
        {"negative_offset", [] { return edit_header([](json& h) { h["tensors"][1]["offset"] = -64; }); }, "must be a non-negative integer"},
        {"misaligned_offset", [] { return edit_header([](json& h) { h["tensors"][1]["offset"] = h["tensors"][1]["offset"].get<int>() + 4; }); },
         "offset 260, expected 256"},
        {"overlapping_offset", [] { return edit_header([](json& h) { h["tensors"][1]["offset"] = 0; }); }, "offset 0, expected 256"},
        {"tensor_grows_past_eof",
         [] { return edit_header([](json& h) { h["tensors"][3]["shape"] = {3000}; h["tensors"][3]["bytes"] = 12000; }); },
         "truncated: file is"},
        // sizes
        {"truncated_1", [] { return truncated(1); }, "truncated"},
        {"truncated_8", [] { return truncated(8); }, "truncated"},
        {"truncated_23", [] { return truncated(23); }, "truncated"},
        {"truncated_in_header", [n] { return truncated(24 + n / 2); }, "truncated: header length"},
        {"truncated_at_data", [data_start] { return truncated(data_start); }, "truncated: file is"},
        {"truncated_in_data", [data_start] { return truncated(data_start + 100); }, "truncated: file is"},
        {"truncated_crc", [size] { return truncated(size - 2); }, "truncated: file is"},
        {"trailing_bytes",
         [] {
             std::vector<std::uint8_t> file = good_file();
             file.insert(file.end(), 4, 0);
             return file;
         },
         "(4 trailing bytes)"},
        {"nonzero_padding",
         [data_start] {
             std::vector<std::uint8_t> file = good_file();
             file[data_start + 216] = 0x5A;  // between conv_weight (216 bytes) and conv_bias (offset 256)
             fix_crc(file);
             return file;
         },
         "non-zero padding byte at offset"},
        {"flipped_data_byte",
         [data_start] {
             std::vector<std::uint8_t> file = good_file();
             file[data_start + 5] ^= 0x10;
             return file;
         },
         "checksum mismatch: file is corrupted"},
        {"flipped_crc_byte",
         [size] {
             std::vector<std::uint8_t> file = good_file();
             file[size - 1] ^= 0x01;
             return file;
         },
         "checksum mismatch"},
        // semantics (CRC valid)
        {"shape_vs_architecture", [] { return edit_header([](json& h) { h["architecture"] = "conv5x5s1p2-relu-pool2"; }); },
         "conv_weight has shape [3,2,3,3], expected [3,2,5,5]"},
        {"pool_vs_fc", [] { return edit_header([](json& h) { h["architecture"] = "conv3x3s1p1-relu-pool4"; }); },
         "fc_weight has shape [3,12], expected [3,48]"},
        {"class_count_vs_fc_rows", [] { return edit_header([](json& h) { h["class_names"].push_back("three"); }); },
         "fc_weight has shape [3,12], expected [4,12]"},
        {"channels_vs_weights", [] { return edit_header([](json& h) { h["input"]["channels"] = 1; h["normalization"] = {{"mean", {0}}, {"std", {1}}}; }); },
         "conv_weight has shape [3,2,3,3], expected [3,1,3,3]"},
        {"architecture_vs_input", [] { return edit_header([](json& h) { h["architecture"] = "conv9x9s1p0-relu-pool2"; }); },
         "architecture 'conv9x9s1p0-relu-pool2': kernel 9x9 is larger than the padded input"},
        {"no_class_names", [] { return edit_header([](json& h) { h["class_names"] = json::array(); }); }, "no class names"},
        {"empty_class_name", [] { return edit_header([](json& h) { h["class_names"][2] = ""; }); }, "class 2 has an empty name"},
        {"duplicate_class_name", [] { return edit_header([](json& h) { h["class_names"][2] = "T-shirt/top"; }); },
         "class 2 name 'T-shirt/top' is a duplicate"},
        {"control_char_class_name", [] { return edit_header([](json& h) { h["class_names"][2] = "t\two"; }); },
         "class 2 name contains a control character"},
        {"normalization_size", [] { return edit_header([](json& h) { h["normalization"]["mean"].push_back(0.5); }); },
         "normalization has 3 means and 2 standard deviations for 2 channels"},
        {"zero_std", [] { return edit_header([](json& h) { h["normalization"]["std"][1] = 0.0; }); },
         "normalization std of channel 1 is 0, must be finite and > 0"},
        {"negative_std", [] { return edit_header([](json& h) { h["normalization"]["std"][0] = -1.0; }); },
         "normalization std of channel 0 is -1, must be"},
        {"nan_weight", [] { return edit_float("conv_weight", 7, std::numeric_limits<float>::quiet_NaN()); },
         "conv_weight value 7 is not finite (NaN)"},
        {"inf_bias", [] { return edit_float("fc_bias", 2, -std::numeric_limits<float>::infinity()); },
         "fc_bias value 2 is not finite (infinite)"},
        {"gate_weight_for_relu",
         [] { return edit_header([](json& h) { h["architecture"] = "conv3x3s1p1-relu-pool2"; }, good_gated_file()); },
         "gate_weight is present but the activation is relu"},
        {"gated_without_gate_weight", [] { return edit_header([](json& h) { h["architecture"] = "conv3x3s1p1-gated-pool2"; }); },
         "gate_weight has shape [], expected [3,2,3,3]"},
    };
    return table;
}

}  // namespace

// ---- round trips -----------------------------------------------------------------------

TEST(ModelFile, RoundTripIsBitExact) {
    ScratchDir dir;
    for (const char* arch : {"conv3x3s1p1-relu-pool2", "conv3x3s1p1-gated-pool2", "conv5x5s2p2-leaky0.1-pool1",
                             "conv2x2s1p0-abs-pool7"}) {
        const Model model = sample_model(arch, 4, 11);
        const fs::path path = dir / (std::string(arch) + ".cvxcnn");
        write_model(path, model);
        const Model loaded = read_model(path);
        SCOPED_TRACE(arch);
        expect_same_model(model, loaded);
        EXPECT_EQ(to_string(loaded.architecture), arch);
        // Deterministic: re-encoding what was read gives the same bytes.
        EXPECT_EQ(encode_model(loaded), test::read_bytes(path));
        EXPECT_EQ(encode_model(model), test::read_bytes(path));
    }
}

TEST(ModelFile, ModelWithoutFiltersRoundTrips) {
    ScratchDir dir;
    Model model = sample_model("conv3x3s1p1-gated-pool2", 0);
    model.fc_bias.data = {0.5f, -0.25f, 2.0f};
    EXPECT_EQ(model.filters(), 0);
    EXPECT_EQ(model.parameter_count(), 3u);
    write_model(dir / "empty.cvxcnn", model);
    const Model loaded = read_model(dir / "empty.cvxcnn");
    expect_same_model(model, loaded);
    EXPECT_EQ(loaded.conv_weight.shape, (std::vector<std::int64_t>{0, 2, 3, 3}));
    EXPECT_EQ(loaded.fc_weight.shape, (std::vector<std::int64_t>{3, 0}));
}

TEST(ModelFile, LayoutMatchesFormatDoc) {
    const Model model = sample_model();
    const std::vector<std::uint8_t>& file = good_file();
    ASSERT_GE(file.size(), 68u);
    EXPECT_EQ(0, std::memcmp(file.data(), "\x89" "CVX\r\n\x1a\n", 8));
    EXPECT_EQ(get_u32(file, 8), 1u);
    EXPECT_EQ(file[12], 0x04);  // 0x01020304 little-endian
    EXPECT_EQ(file[15], 0x01);
    const std::uint64_t n = get_u64(file, 16);
    const std::string header_text(file.begin() + 24, file.begin() + 24 + static_cast<std::ptrdiff_t>(n));
    const json header = json::parse(header_text);
    EXPECT_EQ(header.at("format"), "cvxcnn-model");
    EXPECT_EQ(header.at("format_version"), 1);
    EXPECT_EQ(header.at("architecture"), "conv3x3s1p1-relu-pool2");
    EXPECT_EQ(header.at("input"), json({{"channels", 2}, {"height", 8}, {"width", 8}}));
    EXPECT_EQ(header.at("class_names"), json(model.class_names));
    EXPECT_EQ(header.at("normalization").at("std").at(0).get<float>(), 0.35302424f);
    EXPECT_EQ(header.at("training"), model.training);
    const std::size_t data_start = data_start_of(file);
    EXPECT_EQ(data_start % 64, 0u);
    for (std::size_t i = 24 + n; i < data_start; ++i) EXPECT_EQ(file[i], 0) << i;

    // Table in writing order, each tensor at the next 64-byte boundary, CRC right after the last.
    const std::vector<std::pair<std::string, const Tensor*>> expected = {{"conv_weight", &model.conv_weight},
                                                                         {"conv_bias", &model.conv_bias},
                                                                         {"fc_weight", &model.fc_weight},
                                                                         {"fc_bias", &model.fc_bias}};
    const json& table = header.at("tensors");
    ASSERT_EQ(table.size(), expected.size());
    std::uint64_t end = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        const json& entry = table[i];
        EXPECT_EQ(entry.at("name"), expected[i].first);
        EXPECT_EQ(entry.at("dtype"), "f32");
        EXPECT_EQ(entry.at("shape").get<std::vector<std::int64_t>>(), expected[i].second->shape);
        const auto offset = entry.at("offset").get<std::uint64_t>();
        const auto bytes = entry.at("bytes").get<std::uint64_t>();
        EXPECT_EQ(offset, (end + 63) / 64 * 64);
        EXPECT_EQ(bytes, expected[i].second->data.size() * 4);
        for (std::uint64_t b = end; b < offset; ++b) EXPECT_EQ(file[data_start + b], 0);
        EXPECT_EQ(0, std::memcmp(file.data() + data_start + offset, expected[i].second->data.data(), bytes));
        end = offset + bytes;
    }
    EXPECT_EQ(file.size(), data_start + end + 4);
    EXPECT_EQ(get_u32(file, file.size() - 4), crc_of(file.data(), file.size() - 4));
    // Gated models add gate_weight after conv_bias.
    const json gated_table = json::parse(split(good_gated_file()).header).at("tensors");
    EXPECT_EQ(gated_table.at(2).at("name"), "gate_weight");
}

TEST(ModelFile, UnknownExtraKeysAreIgnored) {
    ScratchDir dir;
    const auto bytes = edit_header([](json& h) {
        h["future_feature"] = {{"x", 1}};
        h["input"]["depth"] = 1;
        h["tensors"][0]["quantization"] = "none";
    });
    test::write_bytes(dir / "extra.cvxcnn", bytes);
    expect_same_model(sample_model(), read_model(dir / "extra.cvxcnn"));
}

// ---- the corruption table --------------------------------------------------------------

TEST(ModelFile, CorruptionTableFailsWithOneLineNamingTheFile) {
    ScratchDir dir;
    // The pristine file must load, or every case below would pass for the wrong reason.
    test::write_bytes(dir / "good.cvxcnn", good_file());
    ASSERT_NO_THROW((void)read_model(dir / "good.cvxcnn"));
    ASSERT_EQ(tensor_entry(good_file(), "conv_weight").at("bytes"), 216);  // fixed layout the table relies on

    std::size_t cases = 0;
    for (const Corruption& corruption : corruption_table()) {
        SCOPED_TRACE(corruption.name);
        const fs::path path = dir / ("case-" + corruption.name + ".cvxcnn");
        const std::vector<std::uint8_t> bytes = corruption.make();
        test::write_bytes(path, bytes);
        const std::string message = read_error(path);
        EXPECT_TRUE(message.starts_with(path.string() + ": ")) << message;
        EXPECT_NE(message.find(corruption.defect), std::string::npos) << message;
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
        EXPECT_EQ(message.find('\r'), std::string::npos) << message;
        // The in-memory reader reports the same defect.
        try {
            (void)decode_model(bytes, path);
            ADD_FAILURE() << "decode_model accepted it";
        } catch (const Error& error) {
            EXPECT_EQ(std::string(error.what()), message);
        }
        ++cases;
    }
    EXPECT_GE(cases, 60u);
}

TEST(ModelFile, PngImageIsNotAModel) {
    ScratchDir dir;
    test::write_png_pattern(dir / "image.png", 8, 8, 1, [](int y, int x, int) { return y * 8 + x; });
    const std::string message = read_error(dir / "image.png");
    EXPECT_EQ(message, (dir / "image.png").string() + ": not a cvxcnn model file (looks like a PNG image)");
}

TEST(ModelFile, MissingFileAndFolderAndLimits) {
    ScratchDir dir;
    EXPECT_EQ(read_error(dir / "nope.cvxcnn"), (dir / "nope.cvxcnn").string() + ": no such file");
    EXPECT_EQ(read_error(dir.path()), dir.path().string() + ": not a regular file");

    test::write_bytes(dir / "m.cvxcnn", good_file());
    ReadLimits small_file;
    small_file.max_file_bytes = 100;
    try {
        (void)read_model(dir / "m.cvxcnn", small_file);
        ADD_FAILURE() << "file size limit ignored";
    } catch (const Error& error) {
        EXPECT_EQ(error.kind(), ErrorKind::limit);
        EXPECT_NE(std::string(error.what()).find("over the limit of 100 bytes"), std::string::npos) << error.what();
    }
    ReadLimits small_header;
    small_header.max_header_bytes = 64;
    EXPECT_NE(read_error(dir / "m.cvxcnn", small_header).find("is over the limit of 64 bytes"), std::string::npos);
}

// ---- model validation ----------------------------------------------------------------------

TEST(Model, MakeModelShapesAndCounts) {
    const Model model = make_model(parse_architecture("conv5x5s1p2-gated-pool7"), ImageShape{3, 28, 28},
                                   {"a", "b", "c", "d"}, 6);
    EXPECT_EQ(model.filters(), 6);
    EXPECT_EQ(model.features(), 6 * 49);
    EXPECT_EQ(model.conv_weight.shape, (std::vector<std::int64_t>{6, 3, 5, 5}));
    EXPECT_EQ(model.gate_weight.shape, (std::vector<std::int64_t>{6, 3, 5, 5}));
    EXPECT_EQ(model.fc_weight.shape, (std::vector<std::int64_t>{4, 6 * 49}));
    EXPECT_EQ(model.parameter_count(), static_cast<std::size_t>(2 * 6 * 3 * 25 + 6 + 4 * 6 * 49 + 4));
    EXPECT_EQ(model.normalization.std, std::vector<float>(3, 1.0f));
    EXPECT_TRUE(model.training.is_object());
    EXPECT_FALSE(model_defect(model).has_value());

    const Model relu = make_model(parse_architecture("conv3x3-pool2"), ImageShape{1, 8, 8}, {"x", "y"}, 2);
    EXPECT_TRUE(relu.gate_weight.shape.empty());
    EXPECT_EQ(relu.parameter_count(), static_cast<std::size_t>(2 * 9 + 2 + 2 * 2 * 4 + 2));

    EXPECT_THROW((void)make_model(parse_architecture("conv9x9-pool1"), ImageShape{1, 8, 8}, {"x"}, 1), Error);
    EXPECT_THROW((void)make_model(parse_architecture("conv3x3-pool1"), ImageShape{1, 8, 8}, {"x", "x"}, 1), Error);
}

TEST(Model, TensorElementCount) {
    EXPECT_EQ(Tensor{}.element_count(), 0u);
    EXPECT_EQ(Tensor::zeros({2, 3, 4}).element_count(), 24u);
    EXPECT_EQ(Tensor::zeros({2, 3, 4}).data.size(), 24u);
    EXPECT_EQ(Tensor::zeros({5, 0}).element_count(), 0u);
    EXPECT_EQ((Tensor{{3, -1}, {}}).element_count(), 0u);
    EXPECT_EQ((Tensor{{1ll << 40, 1ll << 40}, {}}).element_count(), std::numeric_limits<std::size_t>::max());
}

TEST(Model, ValidateRejectsInconsistentModels) {
    const Model good = sample_model();
    auto expect_defect = [](const Model& model, const std::string& defect) {
        const auto found = model_defect(model);
        ASSERT_TRUE(found.has_value()) << defect;
        EXPECT_NE(found->find(defect), std::string::npos) << *found;
        try {
            validate(model);
            ADD_FAILURE() << "validate accepted: " << defect;
        } catch (const Error& error) {
            EXPECT_EQ(std::string(error.what()), "invalid model: " + *found);
        }
    };
    Model m = good;
    m.conv_bias.data.pop_back();
    expect_defect(m, "conv_bias holds 2 values, its shape [3] needs 3");
    m = good;
    m.training = json::array();
    expect_defect(m, "training settings are not a JSON object");
    m = good;
    m.training["bad"] = std::string("\xFF\xFE");
    expect_defect(m, "not valid UTF-8");
    m = good;
    m.class_names[0] = "\xC3";  // truncated UTF-8 sequence
    expect_defect(m, "class 0 name is not valid UTF-8");
    m = good;
    m.class_names[0] = std::string(300, 'a');
    expect_defect(m, "over the limit of 256");
    m = good;
    m.normalization.mean[1] = std::numeric_limits<float>::infinity();
    expect_defect(m, "normalization mean of channel 1 is not finite");
    m = good;
    m.gate_weight = Tensor::zeros({3, 2, 3, 3});
    expect_defect(m, "gate_weight is present but the activation is relu");
    m = good;
    m.fc_weight.data[5] = std::numeric_limits<float>::quiet_NaN();
    expect_defect(m, "fc_weight value 5 is not finite (NaN)");
    m = good;
    m.input.height = 70000;
    expect_defect(m, "input shape 2x70000x8 is outside");
}

// ---- atomic writes -------------------------------------------------------------------------

namespace {
std::vector<std::string> entries_of(const fs::path& folder) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(folder)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}
}  // namespace

TEST(ModelFile, FailedWriteLeavesEarlierFileAndNoTemporaries) {
    ScratchDir dir;
    const fs::path path = dir / "model.cvxcnn";
    const Model first = sample_model("conv3x3s1p1-relu-pool2", 3, 1);
    write_model(path, first);

    // An invalid model is refused before anything is written.
    Model broken = sample_model("conv3x3s1p1-relu-pool2", 3, 2);
    broken.conv_weight.data[0] = std::numeric_limits<float>::quiet_NaN();
    try {
        write_model(path, broken);
        ADD_FAILURE() << "wrote a NaN model";
    } catch (const Error& error) {
        EXPECT_TRUE(std::string(error.what()).starts_with(path.string() + ": not written")) << error.what();
    }
    expect_same_model(first, read_model(path));

    // The rename fails: the destination is a non-empty folder.
    const fs::path folder = dir / "folder.cvxcnn";
    fs::create_directories(folder / "inside");
    try {
        write_model(folder, sample_model());
        ADD_FAILURE() << "renamed over a non-empty folder";
    } catch (const Error& error) {
        EXPECT_EQ(error.kind(), ErrorKind::io);
        EXPECT_TRUE(std::string(error.what()).starts_with(folder.string() + ": ")) << error.what();
        EXPECT_EQ(std::string(error.what()).find('\n'), std::string::npos);
    }
    EXPECT_TRUE(fs::is_directory(folder / "inside"));
    expect_same_model(first, read_model(path));
    EXPECT_EQ(entries_of(dir.path()), (std::vector<std::string>{"folder.cvxcnn", "model.cvxcnn"}));

    // Overwriting with a valid model replaces the file completely.
    const Model second = sample_model("conv3x3s1p1-gated-pool2", 5, 3);
    write_model(path, second);
    expect_same_model(second, read_model(path));
    EXPECT_EQ(entries_of(dir.path()), (std::vector<std::string>{"folder.cvxcnn", "model.cvxcnn"}));

    // A missing parent folder fails cleanly too.
    EXPECT_THROW(write_model(dir / "no" / "such" / "m.cvxcnn", first), Error);
}

// Depth 3 (train --depth 3): the optional hidden_weight tensor round-trips, and the loader's
// semantic check ties its shape to the filters, the fc columns and the activation.
TEST(ModelFile, ThreeLayerModelRoundTripsAndItsHiddenLayerIsChecked) {
    Model deep = make_model(parse_architecture("conv3x3s1p1-relu-pool2"), ImageShape{2, 8, 8}, {"a", "b", "c"}, 3, 2);
    std::mt19937 rng(3);
    fill_random(deep.conv_weight, rng);
    fill_random(deep.hidden_weight, rng);
    fill_random(deep.fc_weight, rng);
    ASSERT_EQ(deep.hidden_weight.shape, (std::vector<std::int64_t>{2, 3, 1, 1}));
    ASSERT_EQ(deep.fc_weight.shape, (std::vector<std::int64_t>{3, 2 * 2 * 2}));
    EXPECT_EQ(deep.parameter_count(), 3u * 18 + 3 + 6 + 24 + 3);
    ScratchDir dir;
    write_model(dir / "deep.cvxcnn", deep);
    const Model back = read_model(dir / "deep.cvxcnn");
    expect_same_model(deep, back);
    EXPECT_TRUE(back.has_hidden_layer());
    EXPECT_EQ(back.hidden_units(), 2);
    EXPECT_EQ(tensor_entry(encode_model(deep), "hidden_weight").at("shape"), json::array({2, 3, 1, 1}));
    // A two-layer file has no hidden_weight and stays a two-layer model.
    test::write_bytes(dir / "two.cvxcnn", good_file());
    EXPECT_FALSE(read_model(dir / "two.cvxcnn").has_hidden_layer());

    const std::vector<std::uint8_t> deep_file = encode_model(deep);
    const auto with_hidden_shape = [&](const json& shape) {
        return edit_header([&](json& header) {
            for (json& entry : header.at("tensors"))
                if (entry.at("name") == "hidden_weight") entry["shape"] = shape;
        }, deep_file);
    };
    const std::vector<std::pair<std::vector<std::uint8_t>, std::string>> cases = {
        // Same byte count, so only the semantic check can object.
        {with_hidden_shape(json::array({3, 2, 1, 1})), "hidden_weight has shape [3,2,1,1], expected [3,3,1,1]"},
        {with_hidden_shape(json::array({2, 1, 3, 1})), "hidden_weight has shape [2,1,3,1], expected [2,3,1,1]"},
        {with_hidden_shape(json::array({6})), "hidden_weight has shape [6], expected rank 4"},
        {edit_header([](json& header) { header["architecture"] = "conv3x3s1p1-leaky0.1-pool2"; }, deep_file),
         "hidden_weight is present but the activation is leaky"},
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const fs::path path = dir / ("bad-" + std::to_string(i) + ".cvxcnn");
        test::write_bytes(path, cases[i].first);
        const std::string message = read_error(path);
        SCOPED_TRACE(message);
        EXPECT_TRUE(message.starts_with(path.string() + ": ")) << message;
        EXPECT_NE(message.find(cases[i].second), std::string::npos) << message;
        EXPECT_EQ(message.find('\n'), std::string::npos);
    }
    // The writer refuses the same defect in memory.
    Model wrong = deep;
    wrong.hidden_weight = Tensor::zeros({2, 4, 1, 1});
    EXPECT_THROW(write_model(dir / "wrong.cvxcnn", wrong), Error);
}
