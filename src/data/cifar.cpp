#include "cvxcnn/data/cifar.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include <zlib.h>

#include "cvxcnn/util/error.hpp"
#include "data/gzip_reader.hpp"
#include "cvxcnn/util/file_io.hpp"

namespace fs = std::filesystem;

namespace cvxcnn {
namespace {

constexpr int cifar_side = 32;
constexpr std::size_t cifar_classes = 10;
constexpr std::uint64_t max_meta_bytes = 64 * 1024;


std::string records_text(std::uint64_t count) {
    return std::to_string(count) + (count == 1 ? " record" : " records");
}

// " records, over the limit of X" or, when earlier batches count too, the same with
// their share named.
std::string over_limit(std::uint64_t earlier, std::uint64_t max_records) {
    return (earlier == 0 ? std::string() : " (plus " + records_text(earlier) + " in earlier batches)") +
           ", over the limit of " + std::to_string(max_records);
}

// Appends the records of one batch to `out`, refusing to grow it past `max_records`.
void append_batch(const fs::path& path, std::uint64_t max_records, ByteImages& out) {
    const std::uint64_t earlier = out.labels.size();
    GzReader in(path);
    // An uncompressed file's size is known up front: check it before reading.
    if (!in.gzip()) {
        std::error_code ec;
        const std::uint64_t size = fs::file_size(path, ec);
        if (ec) throw file_error(path, "cannot determine size: " + ec.message(), ErrorKind::io);
        if (size == 0) throw file_error(path, "empty file (0 bytes)");
        if (size % cifar_record_bytes != 0)
            throw file_error(path, "size " + std::to_string(size) + " is not a multiple of the 3073-byte CIFAR-10 record");
        if (earlier + size / cifar_record_bytes > max_records)
            throw file_error(path, "holds " + records_text(size / cifar_record_bytes) + over_limit(earlier, max_records),
                             ErrorKind::limit);
        const std::size_t records = static_cast<std::size_t>(size / cifar_record_bytes);
        out.labels.reserve(out.labels.size() + records);
        out.pixels.reserve(out.pixels.size() + records * (cifar_record_bytes - 1));
    }

    // Record by record, so a gzip file (whose size is unknown until inflated) never
    // makes the buffers grow past max_records.
    std::array<std::uint8_t, cifar_record_bytes> record{};
    std::uint64_t records = 0;
    for (;;) {
        const std::size_t got = in.read(record.data(), record.size());
        if (got == 0) break;
        const std::uint64_t size_so_far = records * cifar_record_bytes + got;
        if (got < record.size()) {
            const std::string reason = in.gzip_truncation();
            throw file_error(path, "size " + std::to_string(size_so_far) +
                                       (in.gzip() ? " (after decompression)" : "") +
                                       " is not a multiple of the 3073-byte CIFAR-10 record" +
                                       (reason.empty() ? "" : "; the gzip stream is truncated (" + reason + ")"));
        }
        if (earlier + records == max_records)
            throw file_error(path, "holds more than " + records_text(records) + over_limit(earlier, max_records),
                             ErrorKind::limit);
        if (record[0] >= cifar_classes)
            throw file_error(path, "record " + std::to_string(records) + " has label " + std::to_string(record[0]) +
                                       ", expected 0 to 9");
        out.labels.push_back(record[0]);
        out.pixels.insert(out.pixels.end(), record.begin() + 1, record.end());
        ++records;
    }
    if (records == 0) throw file_error(path, in.gzip() ? "no data after decompression" : "empty file (0 bytes)");
    // A gzip member that stops exactly at a record boundary but lacks its trailer.
    const std::string reason = in.gzip_truncation();
    if (!reason.empty()) throw file_error(path, "truncated gzip stream: " + reason + " (its trailer is missing)");
}

}  // namespace

const std::vector<std::string>& cifar10_standard_class_names() {
    static const std::vector<std::string> names{"airplane", "automobile", "bird",  "cat",  "deer",
                                                "dog",      "frog",       "horse", "ship", "truck"};
    return names;
}

std::vector<std::string> read_cifar_class_names(const fs::path& folder) {
    const fs::path meta = folder / "batches.meta.txt";
    std::error_code ec;
    if (!fs::exists(meta, ec)) return cifar10_standard_class_names();
    const std::vector<std::uint8_t> bytes = read_file(meta, max_meta_bytes);
    std::vector<std::string> lines;
    std::string line;
    const auto end_line = [&] {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
        lines.push_back(line);
        line.clear();
    };
    for (std::uint8_t byte : bytes) {
        if (byte == '\n') end_line();
        else line.push_back(static_cast<char>(byte));
    }
    if (!line.empty()) end_line();
    while (!lines.empty() && lines.back().empty()) lines.pop_back();  // the official file ends with blank lines
    const bool blank_inside = std::any_of(lines.begin(), lines.end(), [](const std::string& l) { return l.empty(); });
    if (lines.size() != cifar_classes || blank_inside)
        throw file_error(meta, "expected 10 class names, one per line, found " + std::to_string(lines.size()) +
                                   " lines" + (blank_inside ? " with blank ones among them" : ""));
    return lines;
}

ByteImages read_cifar_batch(const fs::path& path, const CifarLimits& limits) { return read_cifar_batches({path}, limits); }

ByteImages read_cifar_batches(const std::vector<fs::path>& paths, const CifarLimits& limits) {
    if (paths.empty()) throw Error(ErrorKind::internal, "read_cifar_batches: no files given");
    ByteImages out;
    out.shape = ImageShape{3, cifar_side, cifar_side};
    for (const fs::path& path : paths) append_batch(path, limits.max_records, out);
    const fs::path& first = paths.front();
    out.class_names = read_cifar_class_names(first.has_parent_path() ? first.parent_path() : fs::path("."));
    return out;
}

}  // namespace cvxcnn
