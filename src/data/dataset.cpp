#include "cvxcnn/data/dataset.hpp"

#include <cmath>
#include <numeric>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {

std::string to_string(const ImageShape& shape) {
    return std::to_string(shape.channels) + "x" + std::to_string(shape.height) + "x" + std::to_string(shape.width);
}

Dataset to_dataset(const ByteImages& bytes) {
    Dataset dataset;
    dataset.shape = bytes.shape;
    dataset.labels = bytes.labels;
    dataset.class_names = bytes.class_names;
    dataset.images.resize(bytes.pixels.size());
    constexpr float scale = 1.0f / 255.0f;
    for (std::size_t i = 0; i < bytes.pixels.size(); ++i) dataset.images[i] = static_cast<float>(bytes.pixels[i]) * scale;
    return dataset;
}

Normalization Normalization::compute(const Dataset& dataset) {
    std::vector<std::size_t> all(dataset.size());
    std::iota(all.begin(), all.end(), std::size_t{0});
    return compute(dataset, all);
}

Normalization Normalization::compute(const Dataset& dataset, std::span<const std::size_t> indices) {
    const int channels = dataset.shape.channels;
    if (indices.empty()) throw Error(ErrorKind::bad_input, "cannot compute normalization of an empty dataset");
    std::vector<double> sum(channels, 0.0), sum_squares(channels, 0.0);
    const std::size_t plane = dataset.shape.pixels_per_channel();
    for (const std::size_t i : indices) {
        if (i >= dataset.size())
            throw Error(ErrorKind::bad_input, "normalization: image " + std::to_string(i) + " of a dataset of " +
                                                  std::to_string(dataset.size()));
        const auto image = dataset.image(i);
        for (int c = 0; c < channels; ++c) {
            double s = 0, s2 = 0;
            for (std::size_t p = 0; p < plane; ++p) {
                const double v = image[c * plane + p];
                s += v;
                s2 += v * v;
            }
            sum[c] += s;
            sum_squares[c] += s2;
        }
    }
    const double count = static_cast<double>(indices.size() * plane);
    Normalization result;
    for (int c = 0; c < channels; ++c) {
        const double mean = sum[c] / count;
        const double variance = std::max(0.0, sum_squares[c] / count - mean * mean);
        const double deviation = std::sqrt(variance);
        result.mean.push_back(static_cast<float>(mean));
        result.std.push_back(deviation > 1e-12 ? static_cast<float>(deviation) : 1.0f);
    }
    return result;
}

Normalization Normalization::identity(int channels) {
    return {std::vector<float>(channels, 0.0f), std::vector<float>(channels, 1.0f)};
}

void Normalization::apply(std::span<float> image_chw, const ImageShape& shape) const {
    if (mean.size() != static_cast<std::size_t>(shape.channels) || std.size() != mean.size())
        throw Error(ErrorKind::bad_input, "normalization has " + std::to_string(mean.size()) +
                                              " channels, images have " + std::to_string(shape.channels));
    const std::size_t plane = shape.pixels_per_channel();
    for (int c = 0; c < shape.channels; ++c) {
        const float m = mean[c];
        const float inverse = 1.0f / std[c];
        for (std::size_t p = 0; p < plane; ++p) image_chw[c * plane + p] = (image_chw[c * plane + p] - m) * inverse;
    }
}

void Normalization::apply(Dataset& dataset) const {
    for (std::size_t i = 0; i < dataset.size(); ++i) apply(dataset.image(i), dataset.shape);
}

std::vector<std::size_t> class_counts(const Dataset& dataset) {
    std::vector<std::size_t> counts(dataset.class_names.size(), 0);
    for (const auto label : dataset.labels)
        if (label >= 0 && static_cast<std::size_t>(label) < counts.size()) ++counts[label];
    return counts;
}

}  // namespace cvxcnn
