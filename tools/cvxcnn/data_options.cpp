#include "data_options.hpp"

#include <cstdio>

namespace cvxcnn::cli {

void DataOptions::add_to(CLI::App& command) {
    command.add_option("--channels", channels, "1 (grayscale) or 3 (RGB); default: what most images are")
        ->check(CLI::IsMember({0, 1, 3}));
    command.add_option("--resize", resize, "Resample every image to HxW (needed when sizes differ), e.g. 28x28");
    command.add_flag("--skip-bad", skip_bad, "Skip unreadable or non-image files instead of stopping (they are listed)");
    command.add_option("--max-image-side", max_image_side, "Refuse images declaring a larger width or height")
        ->check(CLI::Range(1, 16384));
}

ImageFolderOptions DataOptions::folder_options(ProgressMode progress) const {
    ImageFolderOptions options;
    options.channels = channels;
    if (!resize.empty()) options.resize = parse_resize(resize);
    options.skip_bad = skip_bad;
    options.limits.max_side = max_image_side;
    options.progress = progress;
    return options;
}

Dataset load_folder_reporting(const std::string& root, const DataOptions& options, ProgressMode progress,
                              ImageFolderReport* report) {
    ImageFolderReport local;
    Dataset dataset = load_image_folder(root, options.folder_options(progress), &local);
    // Skipped files are reported even with --quiet: silently losing data is worse than noise.
    if (!local.skipped.empty()) {
        std::fprintf(stderr, "cvxcnn: skipped %zu unreadable file%s (--skip-bad):\n", local.skipped.size(),
                     local.skipped.size() == 1 ? "" : "s");
        for (const auto& skipped : local.skipped) std::fprintf(stderr, "  %s\n", skipped.reason.c_str());
    }
    if (progress != ProgressMode::quiet) {
        if (!local.hidden.empty())
            std::fprintf(stderr, "cvxcnn: ignored %zu hidden file%s or folder%s (names starting with '.')\n",
                         local.hidden.size(), local.hidden.size() == 1 ? "" : "s", local.hidden.size() == 1 ? "" : "s");
        if (local.converted > 0)
            std::fprintf(stderr, "cvxcnn: converted %zu image%s to %d channel%s\n", local.converted,
                         local.converted == 1 ? "" : "s", dataset.shape.channels, dataset.shape.channels == 1 ? "" : "s");
    }
    if (report) *report = std::move(local);
    return dataset;
}

}  // namespace cvxcnn::cli
