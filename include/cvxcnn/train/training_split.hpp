// What every trainer does before and after its solver: the seeded train / validation
// split, the normalization computed on the training part, its patch matrices, and the run
// facts (sizes, accuracies, seed, time) that end each model file's training record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/architecture.hpp"
#include "cvxcnn/model/model.hpp"
#include "cvxcnn/patches/patch_matrix.hpp"

namespace cvxcnn {

/// Splits indices 0..n-1 into (train, validation) by a seeded shuffle; deterministic.
[[nodiscard]] std::pair<std::vector<std::size_t>, std::vector<std::size_t>> split_indices(std::size_t n,
                                                                                          double val_fraction,
                                                                                          std::uint64_t seed);
/// The images and labels at `indices`, in that order.
[[nodiscard]] Dataset subset(const Dataset& data, const std::vector<std::size_t>& indices);

/// The seeded split of a run and the normalization of its training part: what every
/// trainer fixes before it builds anything big.
struct SplitIndices {
    std::vector<std::size_t> train;
    std::vector<std::size_t> val;
    Normalization normalization;  ///< computed on the training part
};

/// split_indices(data.size(), val_split, seed) and the training part's normalization.
/// Throws cvxcnn::Error (bad_input) naming --val-split when it leaves no training image.
[[nodiscard]] SplitIndices split_for_training(const Dataset& data, double val_split, std::uint64_t seed);

/// A training run's data: the raw split (accuracies are measured through the model, which
/// normalizes its input itself), the normalization of the training part, and the patch
/// matrices of the normalized training images.
struct TrainingSplit {
    Dataset train;
    Dataset val;
    Normalization normalization;
    PatchMatrices patches;
};

/// Splits `data` by split_indices(val_split, seed), normalizes the training part and
/// extracts its patches for `architecture`. Throws cvxcnn::Error (bad_input) naming
/// --val-split when it leaves no training image.
[[nodiscard]] TrainingSplit prepare_training_split(const Dataset& data, const Architecture& architecture,
                                                   double val_split, std::uint64_t seed);

/// The facts every trainer reports about its run.
struct RunFacts {
    double train_accuracy = 0.0;
    double val_accuracy = -1.0;  ///< -1 without a validation split
    std::size_t train_samples = 0;
    std::size_t val_samples = 0;
    double seconds = 0.0;
};

/// The fraction of `predicted` equal to `labels` (same length); -1 for none, as RunFacts
/// reports a run without a validation split.
[[nodiscard]] double prediction_accuracy(std::span<const std::int32_t> predicted,
                                         std::span<const std::int32_t> labels);

/// prediction_accuracy of the reference engine's classes for `images`.
[[nodiscard]] double reference_accuracy(const Model& model, const Dataset& images);

/// {train_samples, val_samples, train_accuracy, val_accuracy, seed, time_s}: the tail of a
/// model file's training record (merge it with json::update).
[[nodiscard]] nlohmann::json run_facts_json(const RunFacts& facts, std::uint64_t seed);

}  // namespace cvxcnn
