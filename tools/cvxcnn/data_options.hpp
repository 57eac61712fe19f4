// Image-folder options shared by the subcommands that read images (info, train, eval,
// predict): --channels, --resize, --skip-bad, --max-image-side.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "cvxcnn/data/image_folder.hpp"

namespace cvxcnn::cli {

struct DataOptions {
    int channels = 0;
    std::string resize;
    bool skip_bad = false;
    int max_image_side = DecodeLimits{}.max_side;

    void add_to(CLI::App& command);
    [[nodiscard]] ImageFolderOptions folder_options(ProgressMode progress) const;
};

/// Loads an image folder with these options and, unless quiet, reports skipped and
/// hidden files and conversions on stderr (every skipped file by name).
[[nodiscard]] Dataset load_folder_reporting(const std::string& root, const DataOptions& options,
                                            ProgressMode progress, ImageFolderReport* report = nullptr);

}  // namespace cvxcnn::cli
