// Readers for IDX files, the format of MNIST and Fashion-MNIST.
//
// An IDX file is a big-endian header (magic 0x000008dd: unsigned bytes, d dimensions;
// then d uint32 sizes) followed by the raw elements. Files are read through zlib's
// gzopen, so "train-images-idx3-ubyte.gz" and its decompressed twin both work. The
// declared sizes are checked against IdxLimits before anything is allocated, and
// every defect (wrong magic, short data, trailing bytes, corrupt gzip) is a one-line
// cvxcnn::Error naming the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "cvxcnn/data/dataset.hpp"

namespace cvxcnn {

/// Caps on what a header may declare (checked before allocating); exceeding one is
/// an ErrorKind::limit error.
struct IdxLimits {
    std::uint32_t max_images = 10'000'000;           ///< images in an image file, labels in a label file
    std::uint32_t max_side = 4096;                   ///< rows and columns of one image
    std::uint64_t max_payload_bytes = 2ull << 30;    ///< images x rows x cols
};

/// The contents of an image file (magic 0x00000803): count images of rows x cols,
/// row-major, image after image.
struct IdxImages {
    std::size_t count = 0;
    int rows = 0;
    int cols = 0;
    std::vector<std::uint8_t> pixels;  ///< count * rows * cols
};

/// Reads an IDX image file (raw or gzip).
[[nodiscard]] IdxImages read_idx_images(const std::filesystem::path& path, const IdxLimits& limits = {});

/// Reads an IDX label file (magic 0x00000801, raw or gzip): one byte per item.
[[nodiscard]] std::vector<std::uint8_t> read_idx_labels(const std::filesystem::path& path,
                                                        const IdxLimits& limits = {});

/// Reads a matching image and label file into ByteImages of shape 1 x rows x cols.
/// Counts must agree and every label must be < class_names.size().
[[nodiscard]] ByteImages read_idx_dataset(const std::filesystem::path& images_path,
                                          const std::filesystem::path& labels_path,
                                          std::vector<std::string> class_names, const IdxLimits& limits = {});

}  // namespace cvxcnn
