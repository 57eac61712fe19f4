// Image folders: root/<class>/<image>, the layout torchvision's ImageFolder reads.
//
// Classes are the immediate sub-folders of root sorted by name (byte order of their
// UTF-8 names, which is Python's code-point order), so a class gets the same index as
// in PyTorch. Images are found recursively (following symlinks) in sorted order and
// decoded in parallel with TBB. Hidden entries (names starting with '.') are skipped
// and reported. Files with other extensions, undecodable or truncated images and
// 0-byte files are errors naming the file, unless skip_bad, which reports them instead.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/data/image_codec.hpp"
#include "cvxcnn/util/progress.hpp"

namespace cvxcnn {

struct ResizeTarget {
    int height = 0;
    int width = 0;
};

/// Parses "HxW" (e.g. "28x28"); throws cvxcnn::Error naming `option`.
[[nodiscard]] ResizeTarget parse_resize(const std::string& text, const std::string& option = "--resize");

struct ImageFolderOptions {
    int channels = 0;                     ///< 1 or 3; 0 = what most files are (ties: 3)
    std::optional<ResizeTarget> resize;   ///< required when images differ in size
    bool skip_bad = false;                ///< skip unreadable files instead of failing
    DecodeLimits limits;                  ///< per-file caps checked before decoding
    std::uint64_t max_dataset_bytes = 16ull << 30;  ///< float32 tensor cap, checked before allocating
    ProgressMode progress = ProgressMode::quiet;
};

/// One file the loader did not use, and why.
struct SkippedFile {
    std::filesystem::path path;
    std::string reason;  ///< one line naming the file and the defect
};

struct ImageFolderReport {
    std::vector<SkippedFile> skipped;                ///< bad files (only with skip_bad)
    std::vector<std::filesystem::path> hidden;       ///< dot-files and dot-folders ignored
    std::size_t converted = 0;                       ///< images converted to the chosen channel count
    std::size_t resized = 0;                         ///< images resampled to the target size
    double seconds = 0.0;                            ///< wall time of the load
};

/// The classes and files of an image folder, without decoding anything.
struct ImageFolderListing {
    std::vector<std::string> class_names;
    std::vector<std::filesystem::path> files;  ///< in class order, sorted within a class
    std::vector<std::int32_t> labels;          ///< class index of each file
    std::vector<SkippedFile> unsupported;      ///< files whose extension is not an image type
    std::vector<std::filesystem::path> hidden;
};

/// True for the extensions we decode: .png .jpg .jpeg .bmp .pgm .ppm (any case).
[[nodiscard]] bool has_image_extension(const std::filesystem::path& path);

/// Lists classes and files. Throws cvxcnn::Error for a missing or empty root, a root
/// without class folders, class folders without images (all named in one line), and
/// an unsupported file (unless skip_bad, which returns it in `unsupported`).
[[nodiscard]] ImageFolderListing list_image_folder(const std::filesystem::path& root, bool skip_bad = false);

/// Loads an image folder into a Dataset (float32 NCHW, pixel / 255).
[[nodiscard]] Dataset load_image_folder(const std::filesystem::path& root, const ImageFolderOptions& options = {},
                                        ImageFolderReport* report = nullptr);

/// Loads the given files (e.g. for prediction), all converted to `shape` (resize when
/// `resize` is set, else sizes must match). Labels are -1, class_names empty.
[[nodiscard]] Dataset load_image_files(const std::vector<std::filesystem::path>& files, const ImageShape& shape,
                                       bool resize, const DecodeLimits& limits = {},
                                       ProgressMode progress = ProgressMode::quiet);

}  // namespace cvxcnn
