// In-memory datasets: the first stage of the pipeline
//   image files -> Dataset -> patch matrices -> patterns -> convex program -> ...
//
// A Dataset holds n images as one float32 NCHW tensor with values pixel/255 in [0, 1],
// their labels and the class names. Normalization (per-channel mean and standard
// deviation of the training set) is kept apart and stored with the model, so that
// inference normalizes exactly as training did.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace cvxcnn {

struct ImageShape {
    int channels = 0;
    int height = 0;
    int width = 0;

    [[nodiscard]] std::size_t pixels_per_channel() const noexcept {
        return static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
    }
    [[nodiscard]] std::size_t values() const noexcept {
        return static_cast<std::size_t>(channels) * pixels_per_channel();
    }
    friend bool operator==(const ImageShape&, const ImageShape&) = default;
};

/// "CxHxW", e.g. "1x28x28".
[[nodiscard]] std::string to_string(const ImageShape& shape);

/// Images as 8-bit samples, NCHW, as the dataset files store them (IDX, CIFAR, decoded
/// image files). Labels index class_names.
struct ByteImages {
    ImageShape shape;
    std::vector<std::uint8_t> pixels;  ///< size() * shape.values(), NCHW
    std::vector<std::int32_t> labels;
    std::vector<std::string> class_names;

    [[nodiscard]] std::size_t size() const noexcept { return labels.size(); }
    [[nodiscard]] std::span<const std::uint8_t> image(std::size_t i) const {
        return {pixels.data() + i * shape.values(), shape.values()};
    }
};

struct Dataset {
    ImageShape shape;
    std::vector<float> images;  ///< size() * shape.values(), NCHW, pixel / 255
    std::vector<std::int32_t> labels;
    std::vector<std::string> class_names;
    std::vector<std::filesystem::path> files;  ///< source file of each image (empty if not from files)

    [[nodiscard]] std::size_t size() const noexcept { return labels.size(); }
    [[nodiscard]] std::span<const float> image(std::size_t i) const {
        return {images.data() + i * shape.values(), shape.values()};
    }
    [[nodiscard]] std::span<float> image(std::size_t i) {
        return {images.data() + i * shape.values(), shape.values()};
    }
};

/// Converts 8-bit images to a Dataset (value / 255).
[[nodiscard]] Dataset to_dataset(const ByteImages& bytes);

/// Per-channel input normalization x -> (x - mean[c]) / std[c].
struct Normalization {
    std::vector<float> mean;  ///< one per channel
    std::vector<float> std;   ///< one per channel, > 0

    /// Mean and (population) standard deviation of each channel over all images,
    /// accumulated in double. A constant channel gets std 1 so it maps to 0, not NaN.
    [[nodiscard]] static Normalization compute(const Dataset& dataset);
    /// The same over the images at `indices` only (a split's training part, not copied).
    [[nodiscard]] static Normalization compute(const Dataset& dataset, std::span<const std::size_t> indices);
    /// The identity normalization for `channels` channels.
    [[nodiscard]] static Normalization identity(int channels);
    void apply(Dataset& dataset) const;
    void apply(std::span<float> image_chw, const ImageShape& shape) const;
};

/// Number of images of each class, indexed by label.
[[nodiscard]] std::vector<std::size_t> class_counts(const Dataset& dataset);

}  // namespace cvxcnn
