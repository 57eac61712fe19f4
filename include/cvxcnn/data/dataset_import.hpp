// `cvxcnn import`: converts the distribution files of MNIST, Fashion-MNIST and CIFAR-10
// into PNG image folders, the layout every other command reads:
//   out_dir/train/<class>/<index>.png   out_dir/test/<class>/<index>.png
// <index> is the image's zero-padded position in the source (for CIFAR-10 training
// images, in data_batch_1..5 taken in order), so names are deterministic and sort in
// source order. The tree is built in a staging folder beside out_dir and renamed into
// place only when complete: a failed import leaves nothing behind.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "cvxcnn/data/cifar.hpp"
#include "cvxcnn/data/idx.hpp"
#include "cvxcnn/util/progress.hpp"

namespace cvxcnn {

enum class DatasetKind { mnist, fashion_mnist, cifar10 };

/// "mnist", "fashion-mnist", "cifar10".
[[nodiscard]] std::string_view to_string(DatasetKind kind);
/// The inverse of to_string; throws cvxcnn::Error (bad_input) for other names.
[[nodiscard]] DatasetKind parse_dataset_kind(std::string_view name);

/// Fashion-MNIST's class names as its authors give them ("T-shirt/top", ..., "Ankle boot").
[[nodiscard]] const std::vector<std::string>& fashion_mnist_class_names();

/// A class name as a folder name: ASCII other than letters, digits, '-', '_' and '.'
/// becomes '_' (so "T-shirt/top" -> "T-shirt_top", "Ankle boot" -> "Ankle_boot"), as
/// does a leading '.' (hidden folders are skipped by the image-folder loader).
/// Non-ASCII UTF-8 bytes are kept. Throws cvxcnn::Error for an empty name.
[[nodiscard]] std::string safe_folder_name(std::string_view class_name);

struct ImportOptions {
    bool overwrite = false;  ///< replace an existing out_dir (atomically) instead of failing
    ProgressMode progress = ProgressMode::quiet;
    IdxLimits idx_limits;
    CifarLimits cifar_limits;  ///< applies to each split
};

struct SplitSummary {
    std::size_t images = 0;
    std::vector<std::size_t> per_class;  ///< indexed by label
};

struct ImportSummary {
    DatasetKind kind = DatasetKind::mnist;
    std::filesystem::path out_dir;
    std::vector<std::string> class_names;    ///< as the dataset names them
    std::vector<std::string> class_folders;  ///< safe_folder_name of each
    SplitSummary train;
    SplitSummary test;
    double seconds = 0.0;  ///< wall time, reading to commit
};

/// Imports `kind` from the files in src_dir:
///   mnist, fashion-mnist: train-images-idx3-ubyte, train-labels-idx1-ubyte,
///     t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally ".gz"
///     (the ".gz" one is used when both exist);
///   cifar10: data_batch_1.bin ... data_batch_5.bin and test_batch.bin, each
///     optionally ".gz", plus batches.meta.txt if present.
/// Every source file is read and validated before the first PNG is written. Throws
/// cvxcnn::Error for missing or bad sources (all missing files named in one line), an
/// existing out_dir without options.overwrite, and an out_dir that is or contains
/// src_dir.
ImportSummary import_dataset(DatasetKind kind, const std::filesystem::path& src_dir,
                             const std::filesystem::path& out_dir, const ImportOptions& options = {});

}  // namespace cvxcnn
