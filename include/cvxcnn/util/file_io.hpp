// Bounded reads and all-or-nothing writes.
//
// Every output of cvxcnn (model files, checkpoints, exports, imported image folders)
// is written beside its destination under a temporary name and renamed into place
// only when complete, so an interrupted or failed run leaves the earlier file intact.
// A run killed outright (SIGKILL, power loss) may leave its hidden temporary
// ".<name>.tmp-<pid>-<n>" (".<name>.partial-<pid>-<n>" for a folder) beside the output;
// the next write of the same output removes those whose process no longer runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <vector>

namespace cvxcnn {

/// Reads a whole file; throws cvxcnn::Error naming the file if it is missing,
/// unreadable, not a regular file or larger than max_bytes (checked before reading).
[[nodiscard]] std::vector<std::uint8_t> read_file(const std::filesystem::path& path,
                                                  std::uint64_t max_bytes);

/// A file being written: bytes go to "<dir>/.<name>.tmp-<pid>-<n>" and appear under
/// the final name only on commit(). Destroying it uncommitted removes the temporary.
class AtomicFile {
public:
    explicit AtomicFile(std::filesystem::path destination);
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    ~AtomicFile();

    void write(std::span<const std::uint8_t> bytes);
    void write(const void* data, std::size_t size);
    /// Flushes to disk and renames over the destination.
    void commit();
    [[nodiscard]] const std::filesystem::path& destination() const noexcept { return destination_; }

private:
    std::filesystem::path destination_;
    std::filesystem::path temporary_;
    std::ofstream stream_;
    bool committed_ = false;
};

/// Throws cvxcnn::Error naming `destination` if its folder does not exist or is not a
/// folder: called before long work, so a typo in --out does not cost a whole training run.
void check_output_folder(const std::filesystem::path& destination);

/// Writes bytes to path atomically (AtomicFile in one call).
void write_file_atomically(const std::filesystem::path& path, std::span<const std::uint8_t> bytes);

/// A directory tree being built: files are written under staging() and the tree is
/// renamed to the destination on commit(). An existing destination is replaced only
/// if `replace_existing`, by one atomic exchange (renameat2 RENAME_EXCHANGE; where the
/// filesystem lacks it, moved aside first), and the old tree is deleted afterwards.
/// Destroying it uncommitted deletes the staging tree.
class AtomicDirectory {
public:
    AtomicDirectory(std::filesystem::path destination, bool replace_existing);
    AtomicDirectory(const AtomicDirectory&) = delete;
    AtomicDirectory& operator=(const AtomicDirectory&) = delete;
    ~AtomicDirectory();

    [[nodiscard]] const std::filesystem::path& staging() const noexcept { return staging_; }
    void commit();

private:
    std::filesystem::path destination_;
    std::filesystem::path staging_;
    bool replace_existing_;
    bool committed_ = false;
};

}  // namespace cvxcnn
