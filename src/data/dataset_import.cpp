#include "cvxcnn/data/dataset_import.hpp"

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/data/image_codec.hpp"
#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/file_io.hpp"

namespace fs = std::filesystem;

namespace cvxcnn {
namespace {

struct Split {
    const char* name;  // "train" or "test"
    ByteImages data;
};

// base, or base + ".gz" (preferred: it is what the datasets distribute), if either exists.
std::optional<fs::path> find_source(const fs::path& dir, const std::string& base) {
    std::error_code ec;
    for (const fs::path& candidate : {dir / (base + ".gz"), dir / base})
        if (fs::is_regular_file(candidate, ec)) return candidate;
    return std::nullopt;
}

// All of `bases` in src_dir, or one error naming every missing file.
std::vector<fs::path> find_sources(const fs::path& src_dir, const std::vector<std::string>& bases,
                                   const std::string& what) {
    std::error_code ec;
    if (!fs::exists(src_dir, ec)) throw file_error(src_dir, "no such folder");
    if (!fs::is_directory(src_dir, ec)) throw file_error(src_dir, "not a folder");
    std::vector<fs::path> found;
    std::string missing;
    for (const std::string& base : bases) {
        if (auto path = find_source(src_dir, base)) {
            found.push_back(*path);
        } else {
            missing += (missing.empty() ? "" : ", ") + base + "[.gz]";
        }
    }
    if (!missing.empty()) throw file_error(src_dir, "missing " + missing + " (expected " + what + ")");
    return found;
}

// Refuses an out_dir that is src_dir or one of its ancestors: --overwrite would
// delete the source files.
void check_not_replacing_source(const fs::path& src_dir, const fs::path& out_dir) {
    std::error_code ec;
    const fs::path src = fs::weakly_canonical(src_dir, ec);
    if (ec) return;
    const fs::path out = fs::weakly_canonical(out_dir, ec);
    if (ec) return;
    const fs::path relative = src.lexically_relative(out);
    if (!relative.empty() && *relative.begin() != "..")
        throw file_error(out_dir, "is or contains the source folder " + src_dir.string() + "; choose another output");
}

int index_digits(std::size_t count) {
    int digits = 1;
    for (std::size_t last = count > 0 ? count - 1 : 0; last >= 10; last /= 10) ++digits;
    return digits;
}

std::string padded(std::size_t index, int digits) {
    std::string text = std::to_string(index);
    if (static_cast<int>(text.size()) < digits) text.insert(0, static_cast<std::size_t>(digits) - text.size(), '0');
    return text;
}

void write_plain_file(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
    // Plain writes: atomicity comes from the staging folder, not from each file.
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) throw file_error(path, std::string("cannot write: ") + std::strerror(errno), ErrorKind::io);
}

// Writes one split as root/<folder>/<index>.png, in parallel; returns its counts.
SplitSummary write_split(const ByteImages& data, const fs::path& root, const std::vector<std::string>& folders,
                         Progress& progress) {
    SplitSummary summary;
    summary.images = data.size();
    summary.per_class.assign(folders.size(), 0);
    for (std::int32_t label : data.labels) ++summary.per_class[static_cast<std::size_t>(label)];
    // Every class folder, even one without images in this split, so that loaders that
    // number classes by folder see the same classes in train and test.
    for (const std::string& folder : folders) {
        std::error_code ec;
        fs::create_directories(root / folder, ec);
        if (ec) throw file_error(root / folder, "cannot create folder: " + ec.message(), ErrorKind::io);
    }
    const int digits = index_digits(data.size());
    const ImageShape shape = data.shape;
    oneapi::tbb::parallel_for(oneapi::tbb::blocked_range<std::size_t>(0, data.size(), 256),
                              [&](const oneapi::tbb::blocked_range<std::size_t>& range) {
                                  for (std::size_t i = range.begin(); i != range.end(); ++i) {
                                      const auto png = encode_png_chw(data.image(i), shape.height, shape.width,
                                                                      shape.channels);
                                      const auto& folder = folders[static_cast<std::size_t>(data.labels[i])];
                                      write_plain_file(root / folder / (padded(i, digits) + ".png"), png);
                                  }
                                  progress.advance(range.size());
                              });
    return summary;
}

std::array<ByteImages, 2> read_idx_splits(DatasetKind kind, const fs::path& src_dir, const IdxLimits& limits) {
    const auto files = find_sources(src_dir,
                                    {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                     "t10k-labels-idx1-ubyte"},
                                    std::string("the 4 ") + (kind == DatasetKind::mnist ? "MNIST" : "Fashion-MNIST") +
                                        " IDX files");
    std::vector<std::string> names;
    if (kind == DatasetKind::mnist) {
        for (int digit = 0; digit < 10; ++digit) names.push_back(std::to_string(digit));
    } else {
        names = fashion_mnist_class_names();
    }
    return {read_idx_dataset(files[0], files[1], names, limits), read_idx_dataset(files[2], files[3], names, limits)};
}

std::array<ByteImages, 2> read_cifar_splits(const fs::path& src_dir, const CifarLimits& limits) {
    auto files = find_sources(src_dir,
                              {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                               "data_batch_5.bin", "test_batch.bin"},
                              "the 6 CIFAR-10 binary batches");
    const fs::path test = files.back();
    files.pop_back();
    return {read_cifar_batches(files, limits), read_cifar_batches({test}, limits)};
}

}  // namespace

std::string_view to_string(DatasetKind kind) {
    switch (kind) {
        case DatasetKind::mnist: return "mnist";
        case DatasetKind::fashion_mnist: return "fashion-mnist";
        case DatasetKind::cifar10: return "cifar10";
    }
    return "unknown";
}

DatasetKind parse_dataset_kind(std::string_view name) {
    for (DatasetKind kind : {DatasetKind::mnist, DatasetKind::fashion_mnist, DatasetKind::cifar10})
        if (to_string(kind) == name) return kind;
    throw Error(ErrorKind::bad_input,
                "unknown dataset '" + std::string(name) + "' (expected mnist, fashion-mnist or cifar10)");
}

const std::vector<std::string>& fashion_mnist_class_names() {
    static const std::vector<std::string> names{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    return names;
}

std::string safe_folder_name(std::string_view class_name) {
    if (class_name.empty()) throw Error(ErrorKind::bad_input, "empty class name");
    std::string folder(class_name);
    for (char& c : folder) {
        const auto byte = static_cast<unsigned char>(c);
        const bool keep = byte >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
        if (!keep) c = '_';
    }
    if (folder.front() == '.') folder.front() = '_';  // also rules out "." and ".."
    return folder;
}

ImportSummary import_dataset(DatasetKind kind, const fs::path& src_dir, const fs::path& out_dir,
                             const ImportOptions& options) {
    const auto start = std::chrono::steady_clock::now();
    check_not_replacing_source(src_dir, out_dir);
    // Created first so an existing out_dir (without overwrite) or a missing parent fails
    // at once; destroyed uncommitted on any error, it removes its staging folder.
    AtomicDirectory output(out_dir, options.overwrite);
    // Read and validate everything first: a bad source fails fast and writes nothing.
    std::array<ByteImages, 2> splits = kind == DatasetKind::cifar10
                                           ? read_cifar_splits(src_dir, options.cifar_limits)
                                           : read_idx_splits(kind, src_dir, options.idx_limits);
    if (splits[0].shape != splits[1].shape)
        throw file_error(src_dir, "train images are " + to_string(splits[0].shape) + " but test images are " +
                                      to_string(splits[1].shape));

    ImportSummary summary;
    summary.kind = kind;
    summary.out_dir = out_dir;
    summary.class_names = splits[0].class_names;
    std::set<std::string> seen;
    for (const std::string& name : summary.class_names) {
        summary.class_folders.push_back(safe_folder_name(name));
        if (!seen.insert(summary.class_folders.back()).second)
            throw file_error(src_dir, "two classes map to the folder name '" + summary.class_folders.back() + "'");
    }

    {
        Progress progress("import " + std::string(to_string(kind)), splits[0].size() + splits[1].size(),
                          options.progress);
        summary.train = write_split(splits[0], output.staging() / "train", summary.class_folders, progress);
        summary.test = write_split(splits[1], output.staging() / "test", summary.class_folders, progress);
        progress.finish();
    }
    output.commit();
    summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return summary;
}

}  // namespace cvxcnn
