// Private to the dataset readers (IDX, CIFAR-10): a file read through zlib, so a
// gzip-compressed file and a raw one are read by the same code.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>

#include <zlib.h>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {

class GzReader {
public:
    /// Opens `path`; throws cvxcnn::Error if it is missing, not a regular file or unreadable.
    explicit GzReader(std::filesystem::path path);

    /// Reads up to `size` bytes; fewer only at the end of the data. Throws on corrupt
    /// gzip data or a failed read.
    std::size_t read(void* data, std::size_t size);

    /// True when the file is gzip (zlib is inflating), false for a raw file.
    [[nodiscard]] bool gzip();
    /// zlib's reason when it hit the end of the file inside a gzip member (its
    /// Z_BUF_ERROR), else "". Meaningful after a short read.
    [[nodiscard]] std::string gzip_truncation();
    /// The same as a suffix for "truncated" messages: " (gzip stream ends early: ...)".
    [[nodiscard]] std::string truncation_note();

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
    struct GzClose {
        void operator()(gzFile file) const noexcept { gzclose(file); }
    };
    Error read_error();
    [[nodiscard]] std::string strip_path(const char* message) const;

    std::filesystem::path path_;
    std::unique_ptr<gzFile_s, GzClose> file_;
};

}  // namespace cvxcnn
