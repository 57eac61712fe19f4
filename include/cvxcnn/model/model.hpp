// The trained network: what training produces, what a model file stores and what
// inference runs.
//
//   input C x H x W, normalized by (x - mean[c]) / std[c]
//   -> conv (m filters of C x k x k, bias) -> activation (see Architecture)
//   -> average pooling over a G x G grid of regions -> m*G*G features
//   -> linear layer fc_weight * features + fc_bias -> one score per class
//
// Depth 3 (the three-layer program, deep/three_layer_program.hpp): an optional second
// layer between activation and pooling, a 1x1 convolution hidden_weight (m2 x m, no
// bias) followed by ReLU; pooling and the linear layer then read its m2 channels. A
// model without hidden_weight is the two-layer network above, so every older file is
// still the same model.
//
// A gated ReLU model also carries its fixed gate filters. m may be 0 (training kept no
// active filter): such a model predicts from fc_bias alone and is still valid.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/architecture.hpp"

namespace cvxcnn {

/// "[m,C,k,k]": a tensor shape as messages print it.
[[nodiscard]] std::string shape_to_string(const std::vector<std::int64_t>& shape);

/// A dense float32 array, row-major. An empty shape means "absent" (0 elements), which
/// is how a non-gated model stores gate_weight; a present tensor has rank 1 to 4.
struct Tensor {
    std::vector<std::int64_t> shape;
    std::vector<float> data;  ///< element_count() values, row-major

    /// Product of the dimensions; 0 for an empty shape or a negative dimension;
    /// saturates at SIZE_MAX instead of overflowing.
    [[nodiscard]] std::size_t element_count() const noexcept;
    /// A tensor of this shape filled with zeros.
    [[nodiscard]] static Tensor zeros(std::vector<std::int64_t> shape);

    friend bool operator==(const Tensor&, const Tensor&) = default;
};

struct Model {
    Architecture architecture;
    ImageShape input;
    std::vector<std::string> class_names;  ///< index = class label = row of fc_weight
    Normalization normalization;
    /// Free-form training settings and results (solver, beta, objective, duality_gap,
    /// patterns, filters, iterations, time_s, seed, ...); always a JSON object.
    nlohmann::json training = nlohmann::json::object();

    Tensor conv_weight;  ///< [m, C, k, k] (OIHW)
    Tensor conv_bias;    ///< [m]
    Tensor gate_weight;  ///< [m, C, k, k] for gated ReLU; empty shape otherwise
    /// [m2, m, 1, 1] for a three-layer network (1x1 convolution, then ReLU); empty shape
    /// for the two-layer one. Only with activation relu.
    Tensor hidden_weight;
    /// [classes, m*G*G] (depth 3: [classes, m2*G*G]); feature index = (channel * G + gy)
    /// * G + gx, i.e. the NCHW flattening of the pooled map.
    Tensor fc_weight;
    Tensor fc_bias;  ///< [classes]

    /// m: number of convolution filters (0 if conv_weight is absent).
    [[nodiscard]] int filters() const noexcept;
    /// True when hidden_weight is present: conv -> ReLU -> 1x1 conv -> ReLU -> pool -> linear.
    [[nodiscard]] bool has_hidden_layer() const noexcept { return !hidden_weight.shape.empty(); }
    /// m2: channels of the hidden 1x1 layer (0 without one).
    [[nodiscard]] int hidden_units() const noexcept;
    /// Channels the pooling reads: m2 with a hidden layer, m otherwise.
    [[nodiscard]] int pooled_channels() const noexcept { return has_hidden_layer() ? hidden_units() : filters(); }
    /// pooled_channels() * G * G: length of the feature vector the linear layer reads.
    [[nodiscard]] std::int64_t features() const noexcept;
    [[nodiscard]] int classes() const noexcept { return static_cast<int>(class_names.size()); }
    /// Number of learned values: elements of all six tensors (gate filters included,
    /// normalization excluded).
    [[nodiscard]] std::size_t parameter_count() const noexcept;
};

/// Upper bounds on what a Model may hold; anything above is a corrupt or hostile file.
inline constexpr int model_max_channels = 1024;
inline constexpr int model_max_side = 65536;
inline constexpr std::size_t model_max_class_name_bytes = 256;

/// The first inconsistency found, as a one-line phrase without a prefix (e.g.
/// "conv_weight has shape [4,1,3,3], expected [4,1,5,5] (filters, channels, kernel, kernel)"),
/// or nullopt if the model is valid. Checks: the architecture fits the input; class
/// names non-empty, unique, valid UTF-8 without control characters; normalization has
/// one finite mean and one finite std > 0 per channel; training is an object; every
/// tensor shape matches architecture, input, filters and classes; every weight finite.
[[nodiscard]] std::optional<std::string> model_defect(const Model& model);

/// Throws cvxcnn::Error (bad_input) "invalid model: <defect>" if model_defect finds one.
void validate(const Model& model);

/// A valid model with `filters` zero filters and a zero linear layer, identity
/// normalization and an empty training object (tests and the trainer fill it in).
/// Throws cvxcnn::Error if the architecture does not fit the input or the class names
/// are invalid. With `hidden_units` (>= 0), a three-layer model with that many zero hidden
/// units (the architecture's activation must then be relu).
[[nodiscard]] Model make_model(const Architecture& architecture, const ImageShape& input,
                               std::vector<std::string> class_names, int filters,
                               std::optional<int> hidden_units = std::nullopt);

}  // namespace cvxcnn
