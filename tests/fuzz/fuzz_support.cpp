#include "fuzz_support.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <unistd.h>
#include <zlib.h>

namespace fs = std::filesystem;

namespace cvxcnn::fuzz {

void check_error(const Error& error) {
    const char* message = error.what();
    if (error.kind() == ErrorKind::internal) {
        std::fprintf(stderr, "fuzz: internal error (a bug): %s\n", message);
        std::abort();
    }
    if (std::strchr(message, '\n') != nullptr || std::strchr(message, '\r') != nullptr || message[0] == '\0') {
        std::fprintf(stderr, "fuzz: error message is not one line: [%s]\n", message);
        std::abort();
    }
}

void require(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "fuzz: invariant broken: %s\n", what);
        std::abort();
    }
}

fs::path scratch_file(std::span<const std::uint8_t> bytes, const std::string& name) {
    // /dev/shm when present: the readers open a path, and tmpfs keeps that cheap.
    static const fs::path dir = [] {
        const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
        fs::path path = base / ("cvxcnn-fuzz-" + std::to_string(::getpid()));
        fs::create_directories(path);
        // libFuzzer ends with exit() after -max_total_time: remove the folder then.
        std::atexit([] {
            std::error_code ignored;
            fs::remove_all(fs::path(fs::is_directory("/dev/shm") ? "/dev/shm" : fs::temp_directory_path()) /
                               ("cvxcnn-fuzz-" + std::to_string(::getpid())),
                           ignored);
        });
        return path;
    }();
    const fs::path path = dir / name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.close();
    require(static_cast<bool>(out), "cannot write the scratch file");
    return path;
}

std::vector<std::uint8_t> gzip(std::span<const std::uint8_t> bytes) {
    z_stream stream{};
    require(deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
    std::vector<std::uint8_t> out(deflateBound(&stream, bytes.size()) + 32);
    stream.next_in = const_cast<Bytef*>(bytes.data());
    stream.avail_in = static_cast<uInt>(bytes.size());
    stream.next_out = out.data();
    stream.avail_out = static_cast<uInt>(out.size());
    require(deflate(&stream, Z_FINISH) == Z_STREAM_END, "deflate");
    out.resize(stream.total_out);
    deflateEnd(&stream);
    return out;
}

void write_seeds(const std::vector<std::vector<std::uint8_t>>& seeds) {
    const char* dir = std::getenv("CVXCNN_FUZZ_SEED_DIR");
    if (dir == nullptr || *dir == '\0') return;
    fs::create_directories(dir);
    for (std::size_t i = 0; i < seeds.size(); ++i) {
        std::ofstream out(fs::path(dir) / ("seed-" + std::to_string(i)), std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(seeds[i].data()), static_cast<std::streamsize>(seeds[i].size()));
    }
}

}  // namespace cvxcnn::fuzz
