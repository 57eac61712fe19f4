#include "cvxcnn/util/file_io.hpp"

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "cvxcnn/util/error.hpp"

namespace fs = std::filesystem;

namespace cvxcnn {
namespace {

// Unique per process and per call, so concurrent writers never share a temporary.
fs::path sibling_temporary(const fs::path& destination, const char* tag) {
    static std::atomic<unsigned> counter{0};
    const fs::path dir = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
    // Built with append: GCC 12 warns falsely (-Wrestrict) on a chain of operator+ here.
    std::string name = ".";
    name.append(destination.filename().string()).append(".").append(tag).append("-");
    name.append(std::to_string(::getpid())).append("-").append(std::to_string(counter++));
    return dir / name;
}

// ".<name>.<tag>-<pid>-<n>" for the tags sibling_temporary uses: the pid, or 0 if `entry`
// is not a temporary of `destination`.
pid_t temporary_owner(const std::string& entry, const std::string& destination_name) {
    const std::string prefix = "." + destination_name + ".";
    if (!entry.starts_with(prefix)) return 0;
    std::string_view rest = std::string_view(entry).substr(prefix.size());
    bool tagged = false;
    for (const std::string_view tag : {"tmp-", "partial-", "old-"})
        if (rest.starts_with(tag)) {
            rest.remove_prefix(tag.size());
            tagged = true;
            break;
        }
    const std::size_t dash = rest.find('-');
    if (!tagged || dash == 0 || dash == std::string_view::npos) return 0;
    pid_t pid = 0;
    const auto [end, ec] = std::from_chars(rest.data(), rest.data() + dash, pid);
    return ec == std::errc() && end == rest.data() + dash ? pid : 0;
}

// A writer killed outright (SIGKILL, power loss) cannot remove its temporary: the next
// writer of the same destination removes those whose process is gone. A live writer's
// temporary (even another process's) is left alone.
void remove_stale_temporaries(const fs::path& destination) {
    const fs::path dir = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
    const std::string name = destination.filename().string();
    std::error_code ec;
    std::vector<fs::path> stale;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const pid_t owner = temporary_owner(it->path().filename().string(), name);
        if (owner > 0 && owner != ::getpid() && ::kill(owner, 0) != 0 && errno == ESRCH) stale.push_back(it->path());
    }
    for (const fs::path& path : stale) fs::remove_all(path, ec);
}

void fsync_path(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

std::string os_reason() { return std::strerror(errno); }

}  // namespace

std::vector<std::uint8_t> read_file(const fs::path& path, std::uint64_t max_bytes) {
    std::error_code ec;
    const auto status = fs::status(path, ec);
    if (ec || !fs::exists(status)) throw file_error(path, "no such file");
    if (!fs::is_regular_file(status)) throw file_error(path, "not a regular file");
    const std::uint64_t size = fs::file_size(path, ec);
    if (ec) throw file_error(path, "cannot determine size: " + ec.message(), ErrorKind::io);
    if (size > max_bytes)
        throw file_error(path, "file is " + std::to_string(size) + " bytes, over the limit of " +
                                   std::to_string(max_bytes) + " bytes",
                         ErrorKind::limit);
    std::ifstream in(path, std::ios::binary);
    if (!in) throw file_error(path, "cannot open for reading: " + os_reason(), ErrorKind::io);
    std::vector<std::uint8_t> bytes(size);
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
    if (static_cast<std::uint64_t>(in.gcount()) != size)
        throw file_error(path, "short read (file changed while reading?)", ErrorKind::io);
    return bytes;
}

AtomicFile::AtomicFile(fs::path destination)
    : destination_(std::move(destination)), temporary_(sibling_temporary(destination_, "tmp")) {
    remove_stale_temporaries(destination_);
    stream_.open(temporary_, std::ios::binary | std::ios::trunc);
    if (!stream_)
        throw file_error(destination_, "cannot create temporary file " + temporary_.string() + ": " + os_reason(),
                         ErrorKind::io);
}

AtomicFile::~AtomicFile() {
    if (!committed_) {
        stream_.close();
        std::error_code ignored;
        fs::remove(temporary_, ignored);
    }
}

void AtomicFile::write(std::span<const std::uint8_t> bytes) { write(bytes.data(), bytes.size()); }

void AtomicFile::write(const void* data, std::size_t size) {
    stream_.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!stream_) throw file_error(destination_, "write failed: " + os_reason(), ErrorKind::io);
}

void AtomicFile::commit() {
    stream_.flush();
    if (!stream_) throw file_error(destination_, "write failed: " + os_reason(), ErrorKind::io);
    stream_.close();
    fsync_path(temporary_);
    std::error_code ec;
    fs::rename(temporary_, destination_, ec);
    if (ec) throw file_error(destination_, "cannot rename temporary into place: " + ec.message(), ErrorKind::io);
    committed_ = true;
}

void check_output_folder(const fs::path& destination) {
    const fs::path dir = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::exists(dir, ec)) throw file_error(destination, "folder " + dir.string() + " does not exist");
    if (!fs::is_directory(dir, ec)) throw file_error(destination, dir.string() + " is not a folder");
    if (fs::is_directory(destination, ec)) throw file_error(destination, "is a folder; give a file name");
}

void write_file_atomically(const fs::path& path, std::span<const std::uint8_t> bytes) {
    AtomicFile file(path);
    file.write(bytes);
    file.commit();
}

AtomicDirectory::AtomicDirectory(fs::path destination, bool replace_existing)
    : destination_(std::move(destination)),
      staging_(sibling_temporary(destination_, "partial")),
      replace_existing_(replace_existing) {
    std::error_code ec;
    if (fs::exists(destination_, ec) && !replace_existing_)
        throw file_error(destination_, "already exists (pass --overwrite to replace it)");
    if (destination_.has_parent_path() && !fs::is_directory(destination_.parent_path(), ec))
        throw file_error(destination_, "parent folder does not exist");
    remove_stale_temporaries(destination_);
    fs::create_directories(staging_, ec);
    if (ec) throw file_error(destination_, "cannot create staging folder: " + ec.message(), ErrorKind::io);
}

AtomicDirectory::~AtomicDirectory() {
    if (!committed_) {
        std::error_code ignored;
        fs::remove_all(staging_, ignored);
    }
}

void AtomicDirectory::commit() {
    std::error_code ec;
    fs::path old;
    if (fs::exists(destination_, ec)) {
        if (!replace_existing_) throw file_error(destination_, "already exists (pass --overwrite to replace it)");
        // One atomic swap: at every instant the destination is the old tree or the new one.
        if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, destination_.c_str(), RENAME_EXCHANGE) == 0) {
            committed_ = true;
            fs::remove_all(staging_, ec);  // now the old tree
            return;
        }
        // Filesystems without RENAME_EXCHANGE: move aside, then rename (a kill in between
        // leaves the old tree as ".<name>.old-<pid>-<n>" beside a missing destination).
        old = sibling_temporary(destination_, "old");
        fs::rename(destination_, old, ec);
        if (ec) throw file_error(destination_, "cannot move the existing folder aside: " + ec.message(), ErrorKind::io);
    }
    fs::rename(staging_, destination_, ec);
    if (ec) {
        if (!old.empty()) {
            std::error_code ignored;
            fs::rename(old, destination_, ignored);
        }
        throw file_error(destination_, "cannot rename staging folder into place: " + ec.message(), ErrorKind::io);
    }
    committed_ = true;
    if (!old.empty()) fs::remove_all(old, ec);
}

}  // namespace cvxcnn
