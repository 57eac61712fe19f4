// Classification metrics (see metrics.hpp).
#include "cvxcnn/engine/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

void check_label(std::int32_t value, int classes, const char* what, std::size_t index) {
    if (value < 0 || value >= classes)
        throw Error(ErrorKind::bad_input, std::string(what) + " " + std::to_string(index) + " is " +
                                              std::to_string(value) + ", outside 0.." + std::to_string(classes - 1));
}

// JSON has no NaN; nlohmann would silently write null anyway, but say so explicitly.
nlohmann::json number_or_null(double value) { return std::isnan(value) ? nlohmann::json(nullptr) : nlohmann::json(value); }

}  // namespace

Evaluation evaluate(std::span<const std::int32_t> predicted, std::span<const std::int32_t> labels, int classes) {
    if (classes < 1) throw Error(ErrorKind::bad_input, "evaluate: " + std::to_string(classes) + " classes, need >= 1");
    if (predicted.size() != labels.size())
        throw Error(ErrorKind::bad_input, "evaluate: " + std::to_string(predicted.size()) + " predictions for " +
                                              std::to_string(labels.size()) + " labels");
    const auto c = static_cast<std::size_t>(classes);
    Evaluation e;
    e.n = labels.size();
    e.per_class_count.assign(c, 0);
    e.confusion.assign(c, std::vector<std::size_t>(c, 0));
    for (std::size_t i = 0; i < e.n; ++i) {
        check_label(labels[i], classes, "label", i);
        check_label(predicted[i], classes, "prediction", i);
        ++e.confusion[static_cast<std::size_t>(labels[i])][static_cast<std::size_t>(predicted[i])];
        ++e.per_class_count[static_cast<std::size_t>(labels[i])];
    }
    std::size_t correct = 0;
    e.per_class_accuracy.assign(c, not_a_number);
    for (std::size_t k = 0; k < c; ++k) {
        correct += e.confusion[k][k];
        if (e.per_class_count[k] > 0)
            e.per_class_accuracy[k] =
                static_cast<double>(e.confusion[k][k]) / static_cast<double>(e.per_class_count[k]);
    }
    if (e.n == 0) {
        e.accuracy = e.accuracy_stderr = not_a_number;
    } else {
        const double count = static_cast<double>(e.n);
        e.accuracy = static_cast<double>(correct) / count;
        e.accuracy_stderr = std::sqrt(e.accuracy * (1.0 - e.accuracy) / count);
    }
    return e;
}

nlohmann::json to_json(const Evaluation& evaluation, const std::vector<std::string>& class_names) {
    const std::size_t c = evaluation.per_class_count.size();
    if (class_names.size() != c)
        throw Error(ErrorKind::bad_input, "evaluation has " + std::to_string(c) + " classes but " +
                                              std::to_string(class_names.size()) + " class names were given");
    nlohmann::json classes = nlohmann::json::array();
    for (std::size_t k = 0; k < c; ++k)
        classes.push_back({{"name", class_names[k]},
                           {"count", evaluation.per_class_count[k]},
                           {"correct", evaluation.confusion[k][k]},
                           {"accuracy", number_or_null(evaluation.per_class_accuracy[k])}});
    return {{"n", evaluation.n},
            {"accuracy", number_or_null(evaluation.accuracy)},
            {"accuracy_stderr", number_or_null(evaluation.accuracy_stderr)},
            {"classes", std::move(classes)},
            {"confusion", evaluation.confusion}};
}

std::string confusion_matrix_text(const Evaluation& evaluation) {
    const std::size_t c = evaluation.confusion.size();
    std::size_t widest = c == 0 ? 1 : c - 1;
    for (const auto& row : evaluation.confusion)
        for (const std::size_t count : row) widest = std::max(widest, count);
    const int width = static_cast<int>(std::to_string(widest).size()) + 1;
    const int label_width = static_cast<int>(std::to_string(c == 0 ? 0 : c - 1).size()) + 2;
    auto cell = [](std::size_t value, int w) {
        const std::string text = std::to_string(value);
        return std::string(static_cast<std::size_t>(std::max(0, w - static_cast<int>(text.size()))), ' ') + text;
    };
    std::string text = "confusion matrix (rows: true class, columns: predicted class)\n";
    text += std::string(static_cast<std::size_t>(label_width), ' ');
    for (std::size_t k = 0; k < c; ++k) text += cell(k, width);
    text += "\n";
    for (std::size_t t = 0; t < c; ++t) {
        text += cell(t, label_width);
        for (std::size_t k = 0; k < c; ++k) text += cell(evaluation.confusion[t][k], width);
        text += "\n";
    }
    return text;
}

}  // namespace cvxcnn
