#include "data/gzip_reader.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace fs = std::filesystem;

namespace cvxcnn {

GzReader::GzReader(fs::path path) : path_(std::move(path)) {
    std::error_code ec;
    const auto status = fs::status(path_, ec);
    if (ec || !fs::exists(status)) throw file_error(path_, "no such file");
    if (!fs::is_regular_file(status)) throw file_error(path_, "not a regular file");
    file_.reset(gzopen(path_.c_str(), "rb"));
    if (!file_) throw file_error(path_, std::string("cannot open for reading: ") + std::strerror(errno), ErrorKind::io);
    gzbuffer(file_.get(), 256 * 1024);  // fewer system calls than the 8 KiB default
}

std::size_t GzReader::read(void* data, std::size_t size) {
    auto* out = static_cast<std::uint8_t*>(data);
    std::size_t total = 0;
    while (total < size) {
        const auto chunk = static_cast<unsigned>(std::min<std::size_t>(size - total, 1u << 30));
        const int got = gzread(file_.get(), out + total, chunk);
        if (got < 0) throw read_error();
        if (got == 0) break;
        total += static_cast<std::size_t>(got);
    }
    return total;
}

bool GzReader::gzip() { return gzdirect(file_.get()) == 0; }

std::string GzReader::gzip_truncation() {
    int code = Z_OK;
    const char* message = gzerror(file_.get(), &code);
    return code == Z_BUF_ERROR ? strip_path(message) : std::string();
}

std::string GzReader::truncation_note() {
    const std::string reason = gzip_truncation();
    return reason.empty() ? reason : " (gzip stream ends early: " + reason + ")";
}

Error GzReader::read_error() {
    int code = Z_OK;
    const std::string message = strip_path(gzerror(file_.get(), &code));
    if (code == Z_ERRNO) return file_error(path_, "read failed: " + message, ErrorKind::io);
    return file_error(path_, "corrupt gzip data: " + message);
}

// zlib prefixes its messages with the path given to gzopen; ours already leads.
std::string GzReader::strip_path(const char* message) const {
    std::string text = message ? message : "unknown error";
    const std::string prefix = path_.string() + ": ";
    if (text.starts_with(prefix)) text.erase(0, prefix.size());
    return text;
}

}  // namespace cvxcnn
