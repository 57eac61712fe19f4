#include "cvxcnn/train/training_split.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <utility>

#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn {

std::pair<std::vector<std::size_t>, std::vector<std::size_t>> split_indices(std::size_t n, double val_fraction,
                                                                            std::uint64_t seed) {
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);  // its own stream, apart from the pattern draws
    // Fisher-Yates by hand: std::shuffle's algorithm is unspecified, so results would
    // change between standard libraries.
    for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
    const auto held_out = static_cast<std::size_t>(std::llround(val_fraction * static_cast<double>(n)));
    std::vector<std::size_t> val(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(held_out));
    std::vector<std::size_t> train(order.begin() + static_cast<std::ptrdiff_t>(held_out), order.end());
    std::ranges::sort(val);
    std::ranges::sort(train);
    return {train, val};
}

Dataset subset(const Dataset& data, const std::vector<std::size_t>& indices) {
    Dataset out;
    out.shape = data.shape;
    out.class_names = data.class_names;
    const std::size_t values = data.shape.values();
    out.images.resize(indices.size() * values);
    out.labels.reserve(indices.size());
    for (std::size_t i = 0; i < indices.size(); ++i) {
        const auto image = data.image(indices[i]);
        std::copy(image.begin(), image.end(), out.images.begin() + static_cast<std::ptrdiff_t>(i * values));
        out.labels.push_back(data.labels[indices[i]]);
        if (!data.files.empty()) out.files.push_back(data.files[indices[i]]);
    }
    return out;
}

SplitIndices split_for_training(const Dataset& data, double val_split, std::uint64_t seed) {
    auto [train_indices, val_indices] = split_indices(data.size(), val_split, seed);
    if (train_indices.empty()) throw Error(ErrorKind::bad_input, "--val-split leaves no training images");
    const Normalization normalization = Normalization::compute(data, train_indices);
    return {std::move(train_indices), std::move(val_indices), normalization};
}

TrainingSplit prepare_training_split(const Dataset& data, const Architecture& architecture, double val_split,
                                     std::uint64_t seed) {
    const SplitIndices split = split_for_training(data, val_split, seed);
    Dataset train = subset(data, split.train);
    Dataset normalized = train;
    split.normalization.apply(normalized);
    PatchMatrices patches = extract_patches(normalized, architecture);
    return {std::move(train), subset(data, split.val), split.normalization, std::move(patches)};
}

double prediction_accuracy(std::span<const std::int32_t> predicted, std::span<const std::int32_t> labels) {
    if (predicted.size() != labels.size())
        throw Error(ErrorKind::internal, "prediction_accuracy: " + std::to_string(predicted.size()) +
                                             " predictions for " + std::to_string(labels.size()) + " labels");
    if (labels.empty()) return -1.0;
    std::size_t correct = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) correct += predicted[i] == labels[i];
    return static_cast<double>(correct) / static_cast<double>(labels.size());
}

double reference_accuracy(const Model& model, const Dataset& images) {
    if (images.size() == 0) return -1.0;
    return prediction_accuracy(argmax_rows(reference_logits(model, images)), images.labels);
}

nlohmann::json run_facts_json(const RunFacts& facts, std::uint64_t seed) {
    return {{"train_samples", facts.train_samples},
            {"val_samples", facts.val_samples},
            {"train_accuracy", facts.train_accuracy},
            {"val_accuracy", facts.val_accuracy},
            {"seed", seed},
            {"time_s", facts.seconds}};
}

}  // namespace cvxcnn
