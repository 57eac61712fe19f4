// Helpers shared by the tests: scratch folders, writing small fixture files, running
// the command-line tool.
#pragma once

#include <cstdint>
#include <functional>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn::test {

/// A fresh, empty folder under the system temp dir, removed when destroyed.
class ScratchDir {
public:
    ScratchDir();
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    ~ScratchDir();
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
    [[nodiscard]] std::filesystem::path operator/(const std::string& child) const { return path_ / child; }

private:
    std::filesystem::path path_;
};

void write_bytes(const std::filesystem::path& path, std::span<const std::uint8_t> bytes);
void write_text(const std::filesystem::path& path, const std::string& text);
/// Writes bytes as one gzip member (zlib), as the dataset distributions are compressed.
void write_gzip(const std::filesystem::path& path, std::span<const std::uint8_t> bytes);
[[nodiscard]] std::vector<std::uint8_t> read_bytes(const std::filesystem::path& path);

/// Writes an 8-bit gray (channels 1) or RGB (3) PNG whose pixel (y, x, c) is value(y, x, c).
template <typename F>
void write_png_pattern(const std::filesystem::path& path, int height, int width, int channels, F value);
void write_png_hwc(const std::filesystem::path& path, std::span<const std::uint8_t> hwc, int height, int width,
                   int channels);

struct CommandResult {
    int exit_code = -1;
    std::string out;
    std::string err;
};
/// Runs the cvxcnn executable with the given arguments (shell-quoted for you).
[[nodiscard]] CommandResult run_cli(const std::vector<std::string>& args);

/// Runs `action`, expects a cvxcnn::Error of `kind` whose one-line message starts with
/// "<path>: " and contains `fragment` (gtest failures otherwise); returns the message.
std::string expect_file_error(const std::function<void()>& action, ErrorKind kind, const std::filesystem::path& path,
                              const std::string& fragment);

/// Three classes of 6x6 gray images, a bright bar (diagonal, horizontal, vertical) in
/// uniform noise: small training data with a real signal.
[[nodiscard]] Dataset bar_images(int per_class, unsigned seed);

/// Number of lines in text (a last line without '\n' counts).
[[nodiscard]] int count_lines(const std::string& text);

/// The CLI's contract for a refused run: exit code `exit_code` and exactly one line on
/// stderr that names `culprit` (a flag or a file); gtest failures otherwise.
void expect_one_line_error(const CommandResult& result, int exit_code, const std::string& culprit);

template <typename F>
void write_png_pattern(const std::filesystem::path& path, int height, int width, int channels, F value) {
    std::vector<std::uint8_t> hwc(static_cast<std::size_t>(height) * width * channels);
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x)
            for (int c = 0; c < channels; ++c)
                hwc[(static_cast<std::size_t>(y) * width + x) * channels + c] = static_cast<std::uint8_t>(value(y, x, c));
    write_png_hwc(path, hwc, height, width, channels);
}

}  // namespace cvxcnn::test
