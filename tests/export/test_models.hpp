// Random models and images shared by the inference tests (oneDNN engine, ONNX export,
// predict / eval / export command lines). Header-only; every value comes from a seeded
// generator so a failure reproduces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/model.hpp"
#include "test_support.hpp"

namespace cvxcnn::test {

inline std::vector<std::string> numbered_class_names(int classes) {
    std::vector<std::string> names;
    for (int c = 0; c < classes; ++c) names.push_back("class" + std::to_string(c));
    return names;
}

/// Per-channel mean and std far from the identity, so a missing or doubled
/// normalization shows.
inline Normalization uneven_normalization(int channels) {
    const float means[] = {0.4f, 0.55f, 0.3f}, stds[] = {0.2f, 0.3f, 0.45f};
    Normalization n;
    for (int c = 0; c < channels; ++c) {
        n.mean.push_back(means[c % 3]);
        n.std.push_back(stds[c % 3]);
    }
    return n;
}

/// A model whose five tensors are filled by value(), with `normalization`.
template <typename F>
Model filled_model(const std::string& architecture, const ImageShape& input, int filters, int classes, F value,
                   Normalization normalization) {
    Model model = make_model(parse_architecture(architecture), input, numbered_class_names(classes), filters);
    for (Tensor* tensor : {&model.conv_weight, &model.conv_bias, &model.gate_weight, &model.fc_weight, &model.fc_bias})
        for (auto& v : tensor->data) v = value();
    model.normalization = std::move(normalization);
    validate(model);
    return model;
}

/// Weights ~ N(0, 0.5^2), uneven normalization.
inline Model random_model(const std::string& architecture, const ImageShape& input, int filters, int classes,
                          unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.5f);
    return filled_model(architecture, input, filters, classes, [&] { return normal(rng); },
                        uneven_normalization(input.channels));
}

/// n images of uniform pixel/255 values in [0, 1], labels cycling through `classes`.
inline Dataset random_images(std::size_t n, const ImageShape& shape, unsigned seed, int classes = 1) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset d;
    d.shape = shape;
    d.class_names = numbered_class_names(classes);
    d.images.resize(n * shape.values());
    for (auto& v : d.images) v = pixel(rng);
    for (std::size_t i = 0; i < n; ++i) d.labels.push_back(static_cast<std::int32_t>(i % static_cast<std::size_t>(classes)));
    return d;
}

/// "conv<k>x<k>s<s>p<p>-<activation>-pool<G>".
inline std::string architecture_text(int kernel, int stride, int padding, const std::string& activation, int grid) {
    return "conv" + std::to_string(kernel) + "x" + std::to_string(kernel) + "s" + std::to_string(stride) + "p" +
           std::to_string(padding) + "-" + activation + "-pool" + std::to_string(grid);
}

/// Writes root/class<c>/<i>.png, `per_class` random 8-bit images of `shape` per class
/// (gray for 1 channel, RGB for 3).
inline void write_image_folder(const std::filesystem::path& root, int classes, int per_class, const ImageShape& shape,
                               unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int c = 0; c < classes; ++c)
        for (int i = 0; i < per_class; ++i)
            write_png_pattern(root / ("class" + std::to_string(c)) / (std::to_string(i) + ".png"), shape.height,
                              shape.width, shape.channels, [&](int, int, int) { return byte(rng); });
}

inline const std::vector<std::string> all_activations = {"relu", "gated", "leaky0.1", "abs"};

}  // namespace cvxcnn::test
