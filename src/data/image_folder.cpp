#include "cvxcnn/data/image_folder.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <sstream>

#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/util/error.hpp"

namespace fs = std::filesystem;

namespace cvxcnn {
namespace {

bool is_hidden(const fs::path& path) {
    const std::string name = path.filename().string();
    return !name.empty() && name.front() == '.';
}

std::string lower(std::string text) {
    std::ranges::transform(text, text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
}

// Files of one class folder, recursively, following symlinks, sorted by path so the
// sample order is deterministic (directories and files alike, as torchvision walks).
void collect_files(const fs::path& dir, ImageFolderListing& listing, std::vector<fs::path>& images, bool skip_bad,
                   int depth) {
    if (depth > 64) throw file_error(dir, "folders nested too deep (a symlink loop?)");
    std::vector<fs::directory_entry> entries;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) entries.push_back(*it);
    if (ec) throw file_error(dir, "cannot list folder: " + ec.message(), ErrorKind::io);
    std::ranges::sort(entries, {}, [](const fs::directory_entry& e) { return e.path().filename().string(); });
    for (const auto& entry : entries) {
        const fs::path& path = entry.path();
        if (is_hidden(path)) {
            listing.hidden.push_back(path);
            continue;
        }
        if (entry.is_directory(ec)) {
            collect_files(path, listing, images, skip_bad, depth + 1);
        } else if (has_image_extension(path)) {
            images.push_back(path);
        } else {
            const std::string reason = "not an image file (supported: .png .jpg .jpeg .bmp .pgm .ppm)";
            Error error = file_error(path, reason);
            if (!skip_bad) throw error;
            listing.unsupported.push_back({path, error.what()});
        }
    }
}

struct DecodeResult {
    std::optional<DecodedImage> image;
    std::string error;  // one-line message when image is empty
};

std::string describe_sizes(const std::map<std::pair<int, int>, std::pair<std::size_t, fs::path>>& sizes) {
    std::ostringstream text;
    bool first = true;
    for (const auto& [size, info] : sizes) {
        if (!first) text << ", ";
        first = false;
        text << size.first << "x" << size.second << " (" << info.first << (info.first == 1 ? " file" : " files")
             << ", e.g. " << info.second.string() << ")";
    }
    return text.str();
}

void check_tensor_budget(const fs::path& root, std::size_t count, const ImageShape& shape, std::uint64_t max_bytes) {
    const double bytes = static_cast<double>(count) * static_cast<double>(shape.values()) * sizeof(float);
    if (bytes > static_cast<double>(max_bytes))
        throw file_error(root,
                         std::to_string(count) + " images of " + to_string(shape) + " need " +
                             std::to_string(static_cast<std::uint64_t>(bytes / (1 << 20))) +
                             " MiB as float32, over the limit of " + std::to_string(max_bytes >> 20) +
                             " MiB (--max-memory)",
                         ErrorKind::limit);
}

// HWC bytes -> CHW floats in [0, 1].
void store_chw(const DecodedImage& image, std::span<float> out) {
    constexpr float scale = 1.0f / 255.0f;
    const std::size_t plane = static_cast<std::size_t>(image.height) * image.width;
    for (int c = 0; c < image.channels; ++c)
        for (std::size_t p = 0; p < plane; ++p)
            out[c * plane + p] = static_cast<float>(image.pixels[p * image.channels + c]) * scale;
}

std::vector<DecodeResult> decode_all(const std::vector<fs::path>& files, const DecodeLimits& limits,
                                     ProgressMode progress_mode) {
    std::vector<DecodeResult> results(files.size());
    Progress progress("decode", files.size(), progress_mode);
    oneapi::tbb::parallel_for(oneapi::tbb::blocked_range<std::size_t>(0, files.size(), 64),
                              [&](const oneapi::tbb::blocked_range<std::size_t>& range) {
                                  for (std::size_t i = range.begin(); i != range.end(); ++i) {
                                      try {
                                          results[i].image = read_image(files[i], limits);
                                      } catch (const Error& error) {
                                          results[i].error = error.what();
                                      }
                                  }
                                  progress.advance(range.size());
                              });
    progress.finish();
    return results;
}

}  // namespace

ResizeTarget parse_resize(const std::string& text, const std::string& option) {
    ResizeTarget target;
    char separator = 0;
    std::istringstream in(text);
    if (!(in >> target.height >> separator >> target.width) || (separator != 'x' && separator != 'X') ||
        !in.eof() || target.height <= 0 || target.width <= 0 || target.height > 16384 || target.width > 16384)
        throw Error(ErrorKind::bad_input, option + " '" + text + "': expected HxW with sides in 1..16384, e.g. 28x28");
    return target;
}

bool has_image_extension(const fs::path& path) {
    static const std::vector<std::string> extensions{".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm"};
    const std::string extension = lower(path.extension().string());
    return std::ranges::find(extensions, extension) != extensions.end();
}

ImageFolderListing list_image_folder(const fs::path& root, bool skip_bad) {
    std::error_code ec;
    if (!fs::exists(root, ec)) throw file_error(root, "no such folder");
    if (!fs::is_directory(root, ec)) throw file_error(root, "not a folder (expected root/<class>/<image>)");

    ImageFolderListing listing;
    std::vector<fs::path> class_dirs;
    for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
        if (is_hidden(it->path())) {
            listing.hidden.push_back(it->path());
            continue;
        }
        if (it->is_directory(ec)) class_dirs.push_back(it->path());
    }
    if (ec) throw file_error(root, "cannot list folder: " + ec.message(), ErrorKind::io);
    if (class_dirs.empty()) throw file_error(root, "no class folders found (expected root/<class>/<image>)");
    std::ranges::sort(class_dirs, {}, [](const fs::path& p) { return p.filename().string(); });

    std::vector<std::string> empty_classes;
    for (const auto& dir : class_dirs) {
        std::vector<fs::path> images;
        collect_files(dir, listing, images, skip_bad, 0);
        if (images.empty()) {
            empty_classes.push_back(dir.filename().string());
            continue;
        }
        const auto label = static_cast<std::int32_t>(listing.class_names.size());
        listing.class_names.push_back(dir.filename().string());
        for (auto& image : images) {
            listing.files.push_back(std::move(image));
            listing.labels.push_back(label);
        }
    }
    if (!empty_classes.empty()) {
        std::string names;
        for (const auto& name : empty_classes) names += (names.empty() ? "" : ", ") + name;
        throw file_error(root, "class folder" + std::string(empty_classes.size() > 1 ? "s" : "") +
                                   " without images: " + names);
    }
    return listing;
}

Dataset load_image_folder(const fs::path& root, const ImageFolderOptions& options, ImageFolderReport* report) {
    const auto start = std::chrono::steady_clock::now();
    if (options.channels != 0 && options.channels != 1 && options.channels != 3)
        throw Error(ErrorKind::bad_input, "--channels " + std::to_string(options.channels) + ": must be 1 or 3");
    ImageFolderListing listing = list_image_folder(root, options.skip_bad);
    ImageFolderReport local_report;
    local_report.skipped = listing.unsupported;
    local_report.hidden = listing.hidden;

    // With --resize the tensor's size is known from the listing: refuse before decoding
    // (1 channel when undecided is a lower bound; the exact check follows the decode).
    if (options.resize)
        check_tensor_budget(root, listing.files.size(),
                            {std::max(options.channels, 1), options.resize->height, options.resize->width},
                            options.max_dataset_bytes);
    std::vector<DecodeResult> decoded = decode_all(listing.files, options.limits, options.progress);

    // Keep the good images; the first failure (in file order) is the error without skip_bad.
    std::vector<std::size_t> good;
    good.reserve(decoded.size());
    for (std::size_t i = 0; i < decoded.size(); ++i) {
        if (decoded[i].image) {
            good.push_back(i);
        } else if (!options.skip_bad) {
            throw Error(ErrorKind::bad_input, decoded[i].error + " (pass --skip-bad to skip unreadable images)");
        } else {
            local_report.skipped.push_back({listing.files[i], decoded[i].error});
        }
    }
    if (good.empty()) throw file_error(root, "no readable images");

    std::size_t gray = 0;
    std::map<std::pair<int, int>, std::pair<std::size_t, fs::path>> sizes;
    for (const std::size_t i : good) {
        const DecodedImage& image = *decoded[i].image;
        gray += image.channels <= 2;
        auto [it, inserted] = sizes.try_emplace({image.height, image.width}, 0, listing.files[i]);
        ++it->second.first;
    }
    const int channels = options.channels != 0 ? options.channels : (gray * 2 > good.size() ? 1 : 3);
    ImageShape shape{channels, 0, 0};
    if (options.resize) {
        shape.height = options.resize->height;
        shape.width = options.resize->width;
    } else if (sizes.size() > 1) {
        throw file_error(root, "images have different sizes: " + describe_sizes(sizes) +
                                   "; pass --resize HxW to resample them to one size");
    } else {
        shape.height = sizes.begin()->first.first;
        shape.width = sizes.begin()->first.second;
    }
    check_tensor_budget(root, good.size(), shape, options.max_dataset_bytes);

    Dataset dataset;
    dataset.shape = shape;
    dataset.class_names = listing.class_names;
    dataset.images.resize(good.size() * shape.values());
    dataset.labels.resize(good.size());
    dataset.files.resize(good.size());
    std::vector<unsigned char> converted(good.size(), 0), resized(good.size(), 0);
    oneapi::tbb::parallel_for(std::size_t{0}, good.size(), [&](std::size_t j) {
        const std::size_t i = good[j];
        DecodedImage& image = *decoded[i].image;
        if (image.channels != channels) {
            converted[j] = (image.channels <= 2) != (channels == 1);  // alpha removal alone is not a conversion
            image = convert_channels(image, channels);
        }
        if (image.height != shape.height || image.width != shape.width) {
            image = resize_image(image, shape.height, shape.width);
            resized[j] = 1;
        }
        store_chw(image, dataset.image(j));
        dataset.labels[j] = listing.labels[i];
        dataset.files[j] = listing.files[i];
        image.pixels = {};  // release as we go: peak memory stays near one copy
    });
    for (std::size_t j = 0; j < good.size(); ++j) {
        local_report.converted += converted[j];
        local_report.resized += resized[j];
    }
    local_report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (report) *report = std::move(local_report);
    return dataset;
}

Dataset load_image_files(const std::vector<fs::path>& files, const ImageShape& shape, bool resize,
                         const DecodeLimits& limits, ProgressMode progress) {
    std::vector<DecodeResult> decoded = decode_all(files, limits, progress);
    for (const auto& result : decoded)
        if (!result.image) throw Error(ErrorKind::bad_input, result.error);
    Dataset dataset;
    dataset.shape = shape;
    dataset.images.resize(files.size() * shape.values());
    dataset.labels.assign(files.size(), -1);
    dataset.files = files;
    for (std::size_t i = 0; i < files.size(); ++i) {
        DecodedImage image = convert_channels(*decoded[i].image, shape.channels);
        if (image.height != shape.height || image.width != shape.width) {
            if (!resize)
                throw file_error(files[i], "image is " + std::to_string(image.height) + "x" +
                                               std::to_string(image.width) + " (HxW), the model expects " +
                                               std::to_string(shape.height) + "x" + std::to_string(shape.width) +
                                               "; pass --resize to resample");
            image = resize_image(image, shape.height, shape.width);
        }
        store_chw(image, dataset.image(i));
    }
    return dataset;
}

}  // namespace cvxcnn
