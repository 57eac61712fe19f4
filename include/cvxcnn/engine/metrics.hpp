// Classification metrics: the last step of evaluation
//   model -> logits (reference or oneDNN engine) -> argmax -> evaluate -> report / JSON.
//
// Counts only: which labels were predicted for which true labels. Where there is nothing
// to measure (a class without samples, an empty set) the accuracy is NaN, never a made-up
// 0 or 1; the accompanying count of 0 says why, and to_json writes null for it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cvxcnn {

struct Evaluation {
    std::size_t n = 0;                        ///< samples evaluated
    double accuracy = 0.0;                    ///< correct / n; NaN if n == 0
    std::vector<double> per_class_accuracy;   ///< recall of each true class; NaN if it has no sample
    std::vector<std::size_t> per_class_count; ///< samples of each true class
    std::vector<std::vector<std::size_t>> confusion;  ///< [true][predicted], classes x classes
    double accuracy_stderr = 0.0;             ///< sqrt(a (1 - a) / n), binomial; NaN if n == 0
};

/// Compares predictions with true labels. Throws cvxcnn::Error (bad_input) if the spans
/// differ in length, classes < 1, or a label or prediction lies outside [0, classes).
[[nodiscard]] Evaluation evaluate(std::span<const std::int32_t> predicted, std::span<const std::int32_t> labels,
                                  int classes);

/// {"n", "accuracy", "accuracy_stderr",
///  "classes": [{"name", "count", "correct", "accuracy"}, ...],
///  "confusion": [[...], ...]  (rows = true class, columns = predicted class)}.
/// NaN accuracies are written as null (JSON has no NaN). Throws cvxcnn::Error (bad_input)
/// if class_names does not have one name per class of the evaluation.
[[nodiscard]] nlohmann::json to_json(const Evaluation& evaluation, const std::vector<std::string>& class_names);

/// The confusion matrix as a text table for terminals: a title line, a header of
/// predicted class indices, then one row per true class ("<index> <counts...>"), columns
/// right-aligned to the widest count; every line ends with '\n'. Classes are numbered,
/// not named, so that wide names do not break the table (the per-class list names them).
[[nodiscard]] std::string confusion_matrix_text(const Evaluation& evaluation);

}  // namespace cvxcnn
