#include "test_support.hpp"

#include <array>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include <gtest/gtest.h>

#include <zlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cvxcnn/data/image_codec.hpp"

namespace fs = std::filesystem;

namespace cvxcnn::test {

ScratchDir::ScratchDir() {
    static std::atomic<unsigned> counter{0};
    std::random_device entropy;
    path_ = fs::temp_directory_path() /
            ("cvxcnn-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
             std::to_string(entropy()));
    fs::create_directories(path_);
}

ScratchDir::~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
}

void write_bytes(const fs::path& path, std::span<const std::uint8_t> bytes) {
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("test: cannot write " + path.string());
}

void write_text(const fs::path& path, const std::string& text) {
    write_bytes(path, {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
}

void write_gzip(const fs::path& path, std::span<const std::uint8_t> bytes) {
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    gzFile file = gzopen(path.c_str(), "wb");
    if (!file) throw std::runtime_error("test: cannot create " + path.string());
    const int written = gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
    const int closed = gzclose(file);
    if (written != static_cast<int>(bytes.size()) || closed != Z_OK)
        throw std::runtime_error("test: cannot write " + path.string());
}

std::vector<std::uint8_t> read_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_png_hwc(const fs::path& path, std::span<const std::uint8_t> hwc, int height, int width, int channels) {
    write_bytes(path, encode_png(hwc, height, width, channels));
}

namespace {
std::string shell_quote(const std::string& arg) {
    std::string quoted = "'";
    for (char c : arg) {
        if (c == '\'') quoted += "'\\''";
        else quoted += c;
    }
    return quoted + "'";
}

std::string slurp(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}
}  // namespace

Dataset bar_images(int per_class, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> noise(0.0f, 0.4f);
    Dataset data;
    data.shape = {1, 6, 6};
    data.class_names = {"diagonal", "horizontal", "vertical"};
    for (int c = 0; c < 3; ++c)
        for (int i = 0; i < per_class; ++i) {
            const int at = static_cast<int>(rng() % 6);
            for (int y = 0; y < 6; ++y)
                for (int x = 0; x < 6; ++x) {
                    const bool on = c == 0 ? x == y : c == 1 ? y == at : x == at;
                    data.images.push_back(noise(rng) + (on ? 0.6f : 0.0f));
                }
            data.labels.push_back(c);
        }
    return data;
}

CommandResult run_cli(const std::vector<std::string>& args) {
    ScratchDir scratch;
    std::string command = shell_quote(CVXCNN_CLI_PATH);
    for (const auto& arg : args) command += " " + shell_quote(arg);
    const fs::path out = scratch / "stdout";
    const fs::path err = scratch / "stderr";
    command += " >" + shell_quote(out.string()) + " 2>" + shell_quote(err.string()) + " </dev/null";
    const int status = std::system(command.c_str());
    CommandResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.out = slurp(out);
    result.err = slurp(err);
    return result;
}

std::string expect_file_error(const std::function<void()>& action, ErrorKind kind, const fs::path& path,
                              const std::string& fragment) {
    try {
        action();
    } catch (const Error& error) {
        const std::string message = error.what();
        EXPECT_EQ(error.kind(), kind) << message;
        EXPECT_TRUE(message.starts_with(path.string() + ": ")) << message;
        EXPECT_NE(message.find(fragment), std::string::npos) << message;
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
        return message;
    }
    ADD_FAILURE() << "expected an error for " << path;
    return {};
}

int count_lines(const std::string& text) {
    int lines = 0;
    for (char c : text) lines += c == '\n';
    if (!text.empty() && text.back() != '\n') ++lines;
    return lines;
}

void expect_one_line_error(const CommandResult& result, int exit_code, const std::string& culprit) {
    EXPECT_EQ(result.exit_code, exit_code) << result.err;
    EXPECT_EQ(count_lines(result.err), 1) << result.err;
    EXPECT_NE(result.err.find(culprit), std::string::npos) << result.err;
}

}  // namespace cvxcnn::test
