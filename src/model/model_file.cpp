// Writing and reading model files (layout in models/FORMAT.md).
//
// The reader checks in file order and never allocates from a number it has not bounded:
// file size, magic, version, byte order, header length (capped, <= what remains), JSON
// (depth-limited, duplicate keys refused), header keys and types, the tensor table
// (overflow-checked sizes, offsets equal to the expected running offsets), header +
// tensors + checksum == file size; only then it reads tensor data, verifies the CRC and
// finally the model's own consistency (model_defect).
#include "cvxcnn/model/model_file.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include <zlib.h>

#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/file_io.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace cvxcnn {
namespace {

// PNG-style magic: the high byte catches 7-bit transfers, CR LF and LF catch line-ending
// conversion, ^Z stops a DOS `type`.
constexpr std::array<std::uint8_t, 8> magic = {0x89, 'C', 'V', 'X', '\r', '\n', 0x1A, '\n'};
constexpr std::uint32_t byte_order_marker = 0x01020304;
constexpr std::uint64_t preamble_bytes = 24;  // magic, version, marker, header length
constexpr std::uint64_t checksum_bytes = 4;
constexpr std::uint64_t min_header_bytes = 2;  // "{}"
constexpr std::uint64_t min_file_bytes = 64 + checksum_bytes;  // aligned (24 + 2), then the CRC
constexpr std::int64_t max_dimension = std::int64_t{1} << 31;
constexpr int max_json_depth = 64;
constexpr std::size_t max_quoted_bytes = 64;
constexpr const char* format_name = "cvxcnn-model";

struct TensorSlot {
    const char* name;
    Tensor Model::*member;
};
// Writing order; the reader follows whatever order the table gives (offsets prove it).
const std::array<TensorSlot, 6> tensor_slots = {{{"conv_weight", &Model::conv_weight},
                                                 {"conv_bias", &Model::conv_bias},
                                                 {"gate_weight", &Model::gate_weight},
                                                 {"hidden_weight", &Model::hidden_weight},
                                                 {"fc_weight", &Model::fc_weight},
                                                 {"fc_bias", &Model::fc_bias}}};

// A defect found while reading; turned into "<path>: <defect>" at the boundary.
struct Defect {
    std::string text;
    ErrorKind kind = ErrorKind::bad_input;
};
[[noreturn]] void fail(std::string text, ErrorKind kind = ErrorKind::bad_input) { throw Defect{std::move(text), kind}; }

std::string num(std::uint64_t value) { return std::to_string(value); }

std::string quote(std::string_view text) {
    if (text.size() <= max_quoted_bytes) return "'" + std::string(text) + "'";
    return "'" + std::string(text.substr(0, max_quoted_bytes)) + "...'";
}

std::uint64_t align_up(std::uint64_t value) {
    return (value + (model_alignment - 1)) / model_alignment * model_alignment;
}

std::uint32_t load_u32(const std::uint8_t* p) {
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
           static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}
std::uint64_t load_u64(const std::uint8_t* p) {
    return static_cast<std::uint64_t>(load_u32(p)) | static_cast<std::uint64_t>(load_u32(p + 4)) << 32;
}
void store_u32(std::uint8_t* p, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void store_u64(std::uint8_t* p, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}


// ---- reading: byte sources -------------------------------------------------------------

class Source {
public:
    virtual ~Source() = default;
    /// Exactly `size` bytes or an io defect.
    virtual void read(void* destination, std::size_t size) = 0;
    std::uint64_t size = 0;
};

class SpanSource final : public Source {
public:
    explicit SpanSource(std::span<const std::uint8_t> bytes) : bytes_(bytes) { size = bytes.size(); }
    void read(void* destination, std::size_t n) override {
        if (n > bytes_.size() - position_) fail("read past the end (internal)", ErrorKind::internal);
        if (n > 0) std::memcpy(destination, bytes_.data() + position_, n);
        position_ += n;
    }

private:
    std::span<const std::uint8_t> bytes_;
    std::size_t position_ = 0;
};

class FileSource final : public Source {
public:
    explicit FileSource(const fs::path& path) {
        std::error_code ec;
        const auto status = fs::status(path, ec);
        if (ec || !fs::exists(status)) fail("no such file");
        if (!fs::is_regular_file(status)) fail("not a regular file");
        size = fs::file_size(path, ec);
        if (ec) fail("cannot determine size: " + ec.message(), ErrorKind::io);
        in_.open(path, std::ios::binary);
        if (!in_) fail("cannot open for reading: " + std::string(std::strerror(errno)), ErrorKind::io);
    }
    void read(void* destination, std::size_t n) override {
        in_.read(static_cast<char*>(destination), static_cast<std::streamsize>(n));
        if (static_cast<std::size_t>(in_.gcount()) != n) fail("short read (file changed while reading?)", ErrorKind::io);
    }

private:
    std::ifstream in_;
};

// Reads through a source, accumulating the CRC-32 of everything read.
class CheckedReader {
public:
    explicit CheckedReader(Source& source) : source_(source) {}
    void read(void* destination, std::size_t n) {
        source_.read(destination, n);
        crc_ = crc32_z(crc_, static_cast<const Bytef*>(destination), n);
        position_ += n;
    }
    /// Reads up to file position `target`; the bytes in between are padding and must be zero.
    void skip_padding_to(std::uint64_t target) {
        std::array<std::uint8_t, model_alignment> pad{};
        const std::uint64_t n = target - position_;  // < 64 by construction of the offsets
        read(pad.data(), static_cast<std::size_t>(n));
        for (std::uint64_t i = 0; i < n; ++i)
            if (pad[i] != 0) fail("non-zero padding byte at offset " + num(position_ - n + i));
    }
    [[nodiscard]] std::uint32_t crc() const noexcept { return static_cast<std::uint32_t>(crc_); }
    [[nodiscard]] std::uint64_t position() const noexcept { return position_; }
    Source& source() { return source_; }

private:
    Source& source_;
    uLong crc_ = crc32_z(0L, Z_NULL, 0);
    std::uint64_t position_ = 0;
};

// ---- reading: magic, foreign files ----------------------------------------------------

std::string guess_foreign(const std::uint8_t* p, std::size_t n) {
    auto starts = [&](std::string_view prefix) {
        return n >= prefix.size() && std::memcmp(p, prefix.data(), prefix.size()) == 0;
    };
    if (starts("\x89PNG")) return "looks like a PNG image";
    if (starts("\xFF\xD8\xFF")) return "looks like a JPEG image";
    if (starts("PK\x03\x04")) return "looks like a ZIP archive (PyTorch .pt, NumPy .npz?)";
    if (starts("\x1F\x8B")) return "looks like a gzip file";
    if (starts("GGUF")) return "looks like a GGUF model";
    if (starts(std::string_view("\0\0\x08", 3))) return "looks like an IDX dataset file";
    if (starts("\x89" "CVX")) return "damaged magic: line endings were converted (copied in text mode?)";
    if (n >= 9 && p[8] == '{' && load_u64(p) < (std::uint64_t{1} << 32)) return "looks like a safetensors file";
    bool text = true;
    for (std::size_t i = 0; i < n; ++i) text = text && ((p[i] >= 0x20 && p[i] < 0x7F) || p[i] == '\n' || p[i] == '\r' || p[i] == '\t');
    if (text) return n > 0 && p[0] == '{' ? "looks like JSON text" : "looks like a text file";
    return "unknown magic bytes";
}

void check_magic(const std::uint8_t* p, std::size_t n) {
    const std::size_t compared = std::min(n, magic.size());
    if (std::memcmp(p, magic.data(), compared) != 0) fail("not a cvxcnn model file (" + guess_foreign(p, n) + ")");
}

// ---- reading: JSON header ---------------------------------------------------------------

json parse_header(const std::string& text) {
    std::vector<std::set<std::string>> keys;  // one set per open object
    const json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
        if (depth > max_json_depth) fail("header: JSON nested deeper than " + std::to_string(max_json_depth) + " levels");
        if (event == json::parse_event_t::object_start) {
            keys.emplace_back();
        } else if (event == json::parse_event_t::object_end) {
            if (!keys.empty()) keys.pop_back();
        } else if (event == json::parse_event_t::key && !keys.empty()) {
            // nlohmann keeps the last of duplicate keys; two readers could disagree.
            if (!keys.back().insert(parsed.get<std::string>()).second)
                fail("header: duplicate key " + quote(parsed.get<std::string>()));
        }
        return true;
    };
    json header;
    try {
        header = json::parse(text.begin(), text.end(), callback);
    } catch (const json::parse_error& error) {
        std::string message = error.what();
        if (const std::size_t bracket = message.find("] "); message.starts_with("[json.") && bracket != std::string::npos)
            message.erase(0, bracket + 2);
        // The "last read" excerpt quotes raw file bytes, possibly invalid UTF-8.
        std::string ascii;
        for (const char c : message) {
            if (static_cast<unsigned char>(c) < 0x80) {
                ascii += c;
            } else {
                char escaped[8];
                std::snprintf(escaped, sizeof escaped, "\\x%02x", static_cast<unsigned char>(c));
                ascii += escaped;
            }
        }
        fail("header is not valid JSON: " + ascii);
    }
    if (!header.is_object()) fail("header is not a JSON object");
    return header;
}

std::string describe(const json& value) {
    if (value.is_number_float()) return "a non-integer number";
    if (value.is_number()) return "a number";
    return std::string(value.type_name()) == "array" || std::string(value.type_name()) == "object"
               ? "an " + std::string(value.type_name())
               : "a " + std::string(value.type_name());
}

const json& member(const json& object, const char* key, const std::string& where) {
    const auto it = object.find(key);
    if (it == object.end()) fail("header: missing key '" + where + key + "'");
    return *it;
}

[[noreturn]] void wrong_type(const json& value, const std::string& name, const char* expected) {
    fail("header: '" + name + "' must be " + expected + ", got " + describe(value));
}

const std::string& as_string(const json& value, const std::string& name) {
    if (!value.is_string()) wrong_type(value, name, "a string");
    return value.get_ref<const std::string&>();
}

const json& as_object(const json& value, const std::string& name) {
    if (!value.is_object()) wrong_type(value, name, "an object");
    return value;
}

const json& as_array(const json& value, const std::string& name) {
    if (!value.is_array()) wrong_type(value, name, "an array");
    return value;
}

std::int64_t as_integer(const json& value, const std::string& name, std::int64_t low, std::int64_t high) {
    if (!value.is_number_integer()) wrong_type(value, name, "an integer");
    // Unsigned and signed JSON integers are stored apart; compare each without wrapping.
    const bool in_range = value.is_number_unsigned()
                              ? value.get<std::uint64_t>() <= static_cast<std::uint64_t>(high) &&
                                    static_cast<std::int64_t>(value.get<std::uint64_t>()) >= low
                              : value.get<std::int64_t>() >= low && value.get<std::int64_t>() <= high;
    if (!in_range)
        fail("header: '" + name + "' is " + value.dump() + ", must be in " + std::to_string(low) + "..." +
             std::to_string(high));
    return value.get<std::int64_t>();
}

std::uint64_t as_unsigned(const json& value, const std::string& name) {
    if (!value.is_number_unsigned()) wrong_type(value, name, "a non-negative integer");
    return value.get<std::uint64_t>();
}

std::vector<float> as_floats(const json& value, const std::string& name) {
    as_array(value, name);
    std::vector<float> out;
    out.reserve(value.size());
    for (std::size_t i = 0; i < value.size(); ++i) {
        const json& item = value[i];
        if (!item.is_number()) wrong_type(item, name + "[" + std::to_string(i) + "]", "a number");
        const double d = item.get<double>();
        // Converting a double beyond float range is undefined behaviour; refuse it here.
        if (!(std::abs(d) <= static_cast<double>(std::numeric_limits<float>::max())))
            fail("header: '" + name + "[" + std::to_string(i) + "]' is " + item.dump() + ", not a finite float");
        out.push_back(static_cast<float>(d));
    }
    return out;
}

struct TableEntry {
    std::size_t slot = 0;
    std::uint64_t offset = 0;  ///< relative to the start of the data section
    std::uint64_t bytes = 0;
};

// Fills everything but the tensor data; returns the table in file order and, through
// data_bytes, where the last tensor ends relative to the data section.
std::vector<TableEntry> read_header(const json& header, std::uint32_t version, Model& model,
                                    std::uint64_t& data_bytes) {
    // format, version and architecture first: they decide how the rest is read.
    if (const std::string& format = as_string(member(header, "format", ""), "format"); format != format_name)
        fail("header: 'format' is " + quote(format) + ", expected '" + format_name + "'");
    const std::int64_t header_version =
        as_integer(member(header, "format_version", ""), "format_version", 0, std::numeric_limits<std::uint32_t>::max());
    if (header_version != version)
        fail("header: format_version " + std::to_string(header_version) + " does not match the file's version " +
             std::to_string(version));
    const std::string& arch_text = as_string(member(header, "architecture", ""), "architecture");
    if (arch_text.size() > 128) fail("header: 'architecture' is " + num(arch_text.size()) + " bytes long");
    try {
        model.architecture = parse_architecture(arch_text);
    } catch (const Error& error) {
        std::string message = error.what();
        if (message.starts_with("--arch ")) message.replace(0, 7, "architecture ");
        fail("header: " + message);
    }

    const json& input = as_object(member(header, "input", ""), "input");
    model.input.channels =
        static_cast<int>(as_integer(member(input, "channels", "input."), "input.channels", 1, model_max_channels));
    model.input.height =
        static_cast<int>(as_integer(member(input, "height", "input."), "input.height", 1, model_max_side));
    model.input.width = static_cast<int>(as_integer(member(input, "width", "input."), "input.width", 1, model_max_side));

    const json& names = as_array(member(header, "class_names", ""), "class_names");
    model.class_names.clear();
    for (std::size_t c = 0; c < names.size(); ++c)
        model.class_names.push_back(as_string(names[c], "class_names[" + std::to_string(c) + "]"));

    const json& norm = as_object(member(header, "normalization", ""), "normalization");
    model.normalization.mean = as_floats(member(norm, "mean", "normalization."), "normalization.mean");
    model.normalization.std = as_floats(member(norm, "std", "normalization."), "normalization.std");

    model.training = as_object(member(header, "training", ""), "training");

    const json& table = as_array(member(header, "tensors", ""), "tensors");
    std::vector<TableEntry> entries;
    std::array<bool, tensor_slots.size()> seen{};
    std::uint64_t end = 0;
    for (std::size_t i = 0; i < table.size(); ++i) {
        const std::string where = "tensors[" + std::to_string(i) + "]";
        const json& row = as_object(table[i], where);
        const std::string& name = as_string(member(row, "name", where + "."), where + ".name");
        const auto slot = static_cast<std::size_t>(
            std::find_if(tensor_slots.begin(), tensor_slots.end(), [&](const TensorSlot& s) { return name == s.name; }) -
            tensor_slots.begin());
        if (slot == tensor_slots.size()) fail("header: unknown tensor " + quote(name));
        if (seen[slot]) fail("header: duplicate tensor " + quote(name));
        seen[slot] = true;
        const std::string tensor = "tensor '" + name + "': ";
        if (const std::string& dtype = as_string(member(row, "dtype", where + "."), where + ".dtype"); dtype != "f32")
            fail(tensor + "dtype " + quote(dtype) + " is not supported (only f32)");
        const json& shape = as_array(member(row, "shape", where + "."), where + ".shape");
        if (shape.empty() || shape.size() > 4) fail(tensor + "rank " + num(shape.size()) + " is outside 1...4");
        std::vector<std::int64_t> dims;
        std::uint64_t count = 1;
        for (std::size_t j = 0; j < shape.size(); ++j) {
            const json& dim = shape[j];
            if (!dim.is_number_integer()) wrong_type(dim, where + ".shape[" + std::to_string(j) + "]", "an integer");
            if (!dim.is_number_unsigned()) fail(tensor + "dimension " + dim.dump() + " is negative");
            if (dim.get<std::uint64_t>() > static_cast<std::uint64_t>(max_dimension))
                fail(tensor + "dimension " + dim.dump() + " is over the limit of " + std::to_string(max_dimension));
            dims.push_back(dim.get<std::int64_t>());
            if (__builtin_mul_overflow(count, dim.get<std::uint64_t>(), &count))
                fail(tensor + "shape " + shape.dump() + " overflows 64-bit sizes");
        }
        std::uint64_t needed = 0;
        if (__builtin_mul_overflow(count, std::uint64_t{sizeof(float)}, &needed))
            fail(tensor + "shape " + shape_to_string(dims) + " overflows 64-bit sizes");
        const std::uint64_t bytes = as_unsigned(member(row, "bytes", where + "."), where + ".bytes");
        if (bytes != needed)
            fail(tensor + "'bytes' is " + num(bytes) + ", shape " + shape_to_string(dims) + " of f32 needs " + num(needed));
        const std::uint64_t offset = as_unsigned(member(row, "offset", where + "."), where + ".offset");
        const std::uint64_t expected = align_up(end);
        if (expected < end) fail(tensor + "offsets overflow 64 bits");
        if (offset != expected)
            fail(tensor + "offset " + num(offset) + ", expected " + num(expected) +
                 " (tensors are contiguous, each at the next 64-byte boundary)");
        if (__builtin_add_overflow(offset, bytes, &end)) fail(tensor + "offsets overflow 64 bits");
        entries.push_back({slot, offset, bytes});
        (model.*tensor_slots[slot].member).shape = std::move(dims);
    }
    for (std::size_t slot = 0; slot < tensor_slots.size(); ++slot)
        // gate_weight (gated ReLU only) and hidden_weight (depth 3 only) are optional;
        // model_defect checks afterwards that their presence fits the architecture.
        if (!seen[slot] && tensor_slots[slot].member != &Model::gate_weight &&
            tensor_slots[slot].member != &Model::hidden_weight)
            fail("header: tensor table lacks '" + std::string(tensor_slots[slot].name) + "'");
    data_bytes = end;
    return entries;
}

void read_tensor_data(CheckedReader& reader, Tensor& tensor, std::uint64_t bytes) {
    tensor.data.resize(static_cast<std::size_t>(bytes / sizeof(float)));
    reader.read(tensor.data.data(), static_cast<std::size_t>(bytes));
    if constexpr (std::endian::native == std::endian::big) {
        for (float& value : tensor.data) {
            std::uint32_t bits;
            std::memcpy(&bits, &value, 4);
            bits = __builtin_bswap32(bits);
            std::memcpy(&value, &bits, 4);
        }
    }
}

Model decode(Source& source, const ReadLimits& limits) {
    const std::uint64_t size = source.size;
    if (size == 0) fail("empty file, not a cvxcnn model");
    if (size > limits.max_file_bytes)
        fail("file is " + num(size) + " bytes, over the limit of " + num(limits.max_file_bytes) + " bytes",
             ErrorKind::limit);
    CheckedReader reader(source);
    std::array<std::uint8_t, preamble_bytes> pre{};
    const auto first = static_cast<std::size_t>(std::min<std::uint64_t>(size, preamble_bytes));
    reader.read(pre.data(), first);
    check_magic(pre.data(), first);
    if (size < min_file_bytes)
        fail("truncated: file is " + num(size) + " bytes, the smallest cvxcnn model file is " + num(min_file_bytes));

    const std::uint32_t version = load_u32(pre.data() + 8);
    if (version == 0) fail("format version 0 is invalid");
    if (version > model_format_version) {
        std::string defect = "format version " + num(version) + " is newer than this cvxcnn supports (" +
                             num(model_format_version) + ")";
        if (__builtin_bswap32(version) <= model_format_version) defect += "; or the file has the wrong byte order";
        fail(defect);
    }
    const std::uint32_t marker = load_u32(pre.data() + 12);
    if (marker == __builtin_bswap32(byte_order_marker))
        fail("byte order marker says big-endian; model files are little-endian");
    if (marker != byte_order_marker) {
        char text[16];
        std::snprintf(text, sizeof text, "0x%08x", marker);
        fail(std::string("byte order marker is ") + text + ", expected 0x01020304 (corrupted)");
    }
    const std::uint64_t header_length = load_u64(pre.data() + 16);
    if (header_length < min_header_bytes) fail("header length " + num(header_length) + " is too small");
    if (header_length > limits.max_header_bytes)
        fail("header length " + num(header_length) + " is over the limit of " + num(limits.max_header_bytes) + " bytes");
    if (header_length > size - preamble_bytes - checksum_bytes)
        fail("truncated: header length " + num(header_length) + " runs past the end of the file (" + num(size) +
             " bytes)");

    std::string header_text(static_cast<std::size_t>(header_length), '\0');
    reader.read(header_text.data(), header_text.size());
    const json header = parse_header(header_text);
    Model model;
    std::uint64_t data_bytes = 0;
    const std::vector<TableEntry> entries = read_header(header, version, model, data_bytes);

    const std::uint64_t data_start = align_up(preamble_bytes + header_length);
    std::uint64_t needed = 0;
    if (__builtin_add_overflow(data_start, data_bytes, &needed) ||
        __builtin_add_overflow(needed, checksum_bytes, &needed))
        fail("truncated: file is " + num(size) + " bytes, header and tensors need more than 2^64");
    if (needed > size) fail("truncated: file is " + num(size) + " bytes, header and tensors need " + num(needed));
    if (needed < size)
        fail("file is " + num(size) + " bytes, header and tensors need only " + num(needed) + " (" +
             num(size - needed) + " trailing bytes)");

    // Every size is now proven to fit in the file: allocating from them is safe.
    reader.skip_padding_to(data_start);
    for (const TableEntry& entry : entries) {
        reader.skip_padding_to(data_start + entry.offset);
        read_tensor_data(reader, model.*tensor_slots[entry.slot].member, entry.bytes);
    }
    const std::uint32_t computed = reader.crc();
    std::array<std::uint8_t, checksum_bytes> stored{};
    reader.source().read(stored.data(), stored.size());
    if (load_u32(stored.data()) != computed) {
        char text[64];
        std::snprintf(text, sizeof text, " (stored crc32 %08x, computed %08x)", load_u32(stored.data()), computed);
        fail(std::string("checksum mismatch: file is corrupted") + text);
    }
    if (auto defect = model_defect(model)) fail(*defect);
    return model;
}

// Runs decode on the source `open` returns, turning every defect (opening included) into
// one line "<name>: <defect>".
template <typename Open>
Model decode_reporting(const fs::path& name, const ReadLimits& limits, Open open) {
    try {
        const std::unique_ptr<Source> source = open();
        return decode(*source, limits);
    } catch (const Defect& defect) {
        throw Error(defect.kind, one_line(file_error(name, defect.text).what()));
    } catch (const json::exception& error) {  // every access is type-checked first: a bug if reached
        throw Error(ErrorKind::internal, one_line(file_error(name, std::string("header: ") + error.what()).what()));
    }
}

// ---- writing -------------------------------------------------------------------------

using Writer = std::function<void(const void*, std::size_t)>;

void write_tensor_data(const Writer& write, const Tensor& tensor) {
    if constexpr (std::endian::native == std::endian::little) {
        write(tensor.data.data(), tensor.data.size() * sizeof(float));
    } else {
        std::vector<std::uint8_t> bytes(tensor.data.size() * sizeof(float));
        for (std::size_t i = 0; i < tensor.data.size(); ++i) {
            std::uint32_t bits;
            std::memcpy(&bits, &tensor.data[i], 4);
            store_u32(bytes.data() + 4 * i, bits);
        }
        write(bytes.data(), bytes.size());
    }
}

// The model must be valid (model_defect() == nullopt).
void encode(const Model& model, const Writer& raw_write) {
    uLong crc = crc32_z(0L, Z_NULL, 0);
    std::uint64_t position = 0;
    const Writer write = [&](const void* data, std::size_t n) {
        raw_write(data, n);
        crc = crc32_z(crc, static_cast<const Bytef*>(data), n);
        position += n;
    };
    const std::array<std::uint8_t, model_alignment> zeros{};
    auto pad_to = [&](std::uint64_t target) { write(zeros.data(), static_cast<std::size_t>(target - position)); };

    std::vector<const TensorSlot*> present;
    for (const TensorSlot& slot : tensor_slots)
        if (!(model.*slot.member).shape.empty()) present.push_back(&slot);

    // ordered_json: the header reads top-down in a hex dump, format first.
    nlohmann::ordered_json table = nlohmann::ordered_json::array();
    std::uint64_t end = 0;
    for (const TensorSlot* slot : present) {
        const Tensor& tensor = model.*slot->member;
        const std::uint64_t offset = align_up(end);
        const std::uint64_t bytes = tensor.data.size() * sizeof(float);
        table.push_back({{"name", slot->name}, {"dtype", "f32"}, {"shape", tensor.shape}, {"offset", offset},
                         {"bytes", bytes}});
        end = offset + bytes;
    }
    nlohmann::ordered_json header;
    header["format"] = format_name;
    header["format_version"] = model_format_version;
    header["architecture"] = to_string(model.architecture);
    header["input"] = {{"channels", model.input.channels}, {"height", model.input.height}, {"width", model.input.width}};
    header["class_names"] = model.class_names;
    header["normalization"] = {{"mean", model.normalization.mean}, {"std", model.normalization.std}};
    header["training"] = nlohmann::ordered_json(model.training);
    header["tensors"] = std::move(table);
    const std::string header_text = header.dump();

    std::array<std::uint8_t, preamble_bytes> pre{};
    std::memcpy(pre.data(), magic.data(), magic.size());
    store_u32(pre.data() + 8, model_format_version);
    store_u32(pre.data() + 12, byte_order_marker);
    store_u64(pre.data() + 16, header_text.size());
    write(pre.data(), pre.size());
    write(header_text.data(), header_text.size());
    const std::uint64_t data_start = align_up(position);
    pad_to(data_start);
    for (const TensorSlot* slot : present) {
        pad_to(data_start + align_up(position - data_start));
        write_tensor_data(write, model.*slot->member);
    }
    std::array<std::uint8_t, checksum_bytes> stored{};
    store_u32(stored.data(), static_cast<std::uint32_t>(crc));
    raw_write(stored.data(), stored.size());
}

}  // namespace

void write_model(const fs::path& path, const Model& model) {
    if (auto defect = model_defect(model)) throw file_error(path, one_line("not written, invalid model: " + *defect));
    AtomicFile file(path);
    encode(model, [&](const void* data, std::size_t n) { file.write(data, n); });
    file.commit();
}

std::vector<std::uint8_t> encode_model(const Model& model) {
    if (auto defect = model_defect(model)) throw Error(ErrorKind::bad_input, one_line("invalid model: " + *defect));
    std::vector<std::uint8_t> bytes;
    encode(model, [&](const void* data, std::size_t n) {
        const auto* p = static_cast<const std::uint8_t*>(data);
        bytes.insert(bytes.end(), p, p + n);
    });
    return bytes;
}

Model read_model(const fs::path& path, const ReadLimits& limits) {
    return decode_reporting(path, limits, [&] { return std::make_unique<FileSource>(path); });
}

Model decode_model(std::span<const std::uint8_t> bytes, const fs::path& name, const ReadLimits& limits) {
    return decode_reporting(name, limits, [&] { return std::make_unique<SpanSource>(bytes); });
}

}  // namespace cvxcnn
