// The trained network and its consistency checks (see model.hpp).
#include "cvxcnn/model/model.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string_view>
#include <utility>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {


// Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF), as JSON requires:
// nlohmann would otherwise throw its own exception when the name is written.
bool valid_utf8(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size()) {
        const auto byte = static_cast<unsigned char>(text[i]);
        int length = 0;
        std::uint32_t code = 0;
        if (byte < 0x80) {
            ++i;
            continue;
        }
        if (byte >= 0xC2 && byte <= 0xDF) {
            length = 2;
            code = byte & 0x1Fu;
        } else if (byte >= 0xE0 && byte <= 0xEF) {
            length = 3;
            code = byte & 0x0Fu;
        } else if (byte >= 0xF0 && byte <= 0xF4) {
            length = 4;
            code = byte & 0x07u;
        } else {
            return false;
        }
        if (i + static_cast<std::size_t>(length) > text.size()) return false;
        for (int j = 1; j < length; ++j) {
            const auto next = static_cast<unsigned char>(text[i + static_cast<std::size_t>(j)]);
            if ((next & 0xC0u) != 0x80u) return false;
            code = (code << 6) | (next & 0x3Fu);
        }
        if ((length == 3 && code < 0x800) || (length == 4 && (code < 0x10000 || code > 0x10FFFF)) ||
            (code >= 0xD800 && code <= 0xDFFF))
            return false;
        i += static_cast<std::size_t>(length);
    }
    return true;
}

std::string float_text(float value) {
    std::array<char, 64> buffer{};
    const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
    return {buffer.data(), result.ptr};
}

// Control characters would break the one-line output of messages and of `info`.
bool has_control_character(std::string_view text) {
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7F) return true;
    }
    return false;
}

std::optional<std::string> class_names_defect(const std::vector<std::string>& names) {
    if (names.empty()) return "no class names";
    std::set<std::string_view> seen;
    for (std::size_t c = 0; c < names.size(); ++c) {
        const std::string& name = names[c];
        const std::string where = "class " + std::to_string(c);
        if (name.empty()) return where + " has an empty name";
        if (name.size() > model_max_class_name_bytes)
            return where + " name is " + std::to_string(name.size()) + " bytes, over the limit of " +
                   std::to_string(model_max_class_name_bytes);
        if (!valid_utf8(name)) return where + " name is not valid UTF-8";
        if (has_control_character(name)) return where + " name contains a control character";
        if (!seen.insert(name).second) return where + " name '" + name + "' is a duplicate";
    }
    return std::nullopt;
}

std::optional<std::string> tensor_defect(const Tensor& tensor, const char* name,
                                         const std::vector<std::int64_t>& expected, const char* meaning) {
    if (tensor.shape != expected)
        return std::string(name) + " has shape " + shape_to_string(tensor.shape) + ", expected " + shape_to_string(expected) +
               " " + meaning;
    if (tensor.data.size() != tensor.element_count())
        return std::string(name) + " holds " + std::to_string(tensor.data.size()) + " values, its shape " +
               shape_to_string(tensor.shape) + " needs " + std::to_string(tensor.element_count());
    for (std::size_t i = 0; i < tensor.data.size(); ++i)
        if (!std::isfinite(tensor.data[i]))
            return std::string(name) + " value " + std::to_string(i) + " is not finite (" +
                   (std::isnan(tensor.data[i]) ? "NaN" : "infinite") + ")";
    return std::nullopt;
}

// Readers cap the header's nesting depth (model_file.cpp, 64); staying well below it
// guarantees that every model written can be read back.
constexpr int max_training_depth = 32;

// True if `value` nests deeper than `limit`; recursion stops at the limit.
bool json_depth_exceeds(const nlohmann::json& value, int limit) {
    if (!value.is_structured()) return false;
    if (limit == 0) return true;
    for (const auto& item : value)
        if (json_depth_exceeds(item, limit - 1)) return true;
    return false;
}

}  // namespace

std::size_t Tensor::element_count() const noexcept {
    if (shape.empty()) return 0;
    std::size_t count = 1;
    for (const std::int64_t dim : shape) {
        if (dim < 0) return 0;
        if (__builtin_mul_overflow(count, static_cast<std::uint64_t>(dim), &count))
            return std::numeric_limits<std::size_t>::max();
    }
    return count;
}

Tensor Tensor::zeros(std::vector<std::int64_t> shape) {
    Tensor tensor;
    tensor.shape = std::move(shape);
    tensor.data.assign(tensor.element_count(), 0.0f);
    return tensor;
}

int Model::filters() const noexcept {
    return conv_weight.shape.empty() ? 0 : static_cast<int>(conv_weight.shape[0]);
}

int Model::hidden_units() const noexcept {
    return hidden_weight.shape.empty() ? 0 : static_cast<int>(hidden_weight.shape[0]);
}

std::int64_t Model::features() const noexcept {
    return static_cast<std::int64_t>(pooled_channels()) * architecture.pool_grid * architecture.pool_grid;
}

std::size_t Model::parameter_count() const noexcept {
    return conv_weight.element_count() + conv_bias.element_count() + gate_weight.element_count() +
           hidden_weight.element_count() + fc_weight.element_count() + fc_bias.element_count();
}

std::optional<std::string> model_defect(const Model& model) {
    const ImageShape& in = model.input;
    if (in.channels < 1 || in.channels > model_max_channels || in.height < 1 || in.height > model_max_side ||
        in.width < 1 || in.width > model_max_side)
        return "input shape " + to_string(in) + " is outside 1..." + std::to_string(model_max_channels) +
               " channels and 1..." + std::to_string(model_max_side) + " pixels per side";
    try {
        validate_for_input(model.architecture, in);
    } catch (const Error& error) {
        // "--arch '...': defect" -> "architecture '...': defect": in a model it is not an option.
        std::string message = error.what();
        if (message.starts_with("--arch ")) message.replace(0, 7, "architecture ");
        return message;
    }
    if (auto defect = class_names_defect(model.class_names)) return defect;

    const Normalization& norm = model.normalization;
    const auto channels = static_cast<std::size_t>(in.channels);
    if (norm.mean.size() != channels || norm.std.size() != channels)
        return "normalization has " + std::to_string(norm.mean.size()) + " means and " +
               std::to_string(norm.std.size()) + " standard deviations for " + std::to_string(channels) +
               " channels";
    for (std::size_t c = 0; c < channels; ++c) {
        if (!std::isfinite(norm.mean[c])) return "normalization mean of channel " + std::to_string(c) + " is not finite";
        if (!std::isfinite(norm.std[c]) || !(norm.std[c] > 0.0f))
            return "normalization std of channel " + std::to_string(c) + " is " + float_text(norm.std[c]) +
                   ", must be finite and > 0";
    }
    if (!model.training.is_object()) return "training settings are not a JSON object";
    if (json_depth_exceeds(model.training, max_training_depth))
        return "training settings are nested deeper than " + std::to_string(max_training_depth) + " levels";
    try {
        (void)model.training.dump();  // the writer's dump() throws on invalid UTF-8 in a string
    } catch (const nlohmann::json::exception&) {
        return "training settings contain a string that is not valid UTF-8";
    }

    if (model.conv_weight.shape.size() != 4)
        return "conv_weight has shape " + shape_to_string(model.conv_weight.shape) + ", expected rank 4 [m, C, k, k]";
    const std::int64_t m = model.conv_weight.shape[0];
    if (m < 0 || m > std::numeric_limits<int>::max() / (model.architecture.pool_grid * model.architecture.pool_grid))
        return "conv_weight has " + std::to_string(m) + " filters";
    const std::int64_t k = model.architecture.kernel;
    const std::int64_t classes = static_cast<std::int64_t>(model.class_names.size());
    const std::vector<std::int64_t> filter_shape = {m, in.channels, k, k};
    if (auto d = tensor_defect(model.conv_weight, "conv_weight", filter_shape, "(filters, channels, kernel, kernel)"))
        return d;
    if (auto d = tensor_defect(model.conv_bias, "conv_bias", {m}, "(filters)")) return d;
    if (model.architecture.activation == Activation::gated_relu) {
        if (auto d = tensor_defect(model.gate_weight, "gate_weight", filter_shape,
                                   "(filters, channels, kernel, kernel; gated ReLU needs its gates)"))
            return d;
    } else if (!model.gate_weight.shape.empty() || !model.gate_weight.data.empty()) {
        return "gate_weight is present but the activation is " + std::string(to_string(model.architecture.activation)) +
               ", not gated";
    }
    if (model.has_hidden_layer()) {
        if (model.architecture.activation != Activation::relu)
            return "hidden_weight is present but the activation is " +
                   std::string(to_string(model.architecture.activation)) +
                   "; a three-layer model has relu (the three-layer program covers ReLU only)";
        if (model.hidden_weight.shape.size() != 4)
            return "hidden_weight has shape " + shape_to_string(model.hidden_weight.shape) +
                   ", expected rank 4 [m2, m, 1, 1]";
        const std::int64_t m2 = model.hidden_weight.shape[0];
        if (m2 < 0 || m2 > std::numeric_limits<int>::max() / (model.architecture.pool_grid * model.architecture.pool_grid))
            return "hidden_weight has " + std::to_string(m2) + " hidden units";
        if (auto d = tensor_defect(model.hidden_weight, "hidden_weight", {m2, m, 1, 1},
                                   "(hidden units, filters, 1, 1)"))
            return d;
    }
    if (auto d = tensor_defect(model.fc_weight, "fc_weight", {classes, model.features()},
                               model.has_hidden_layer() ? "(classes, hidden units * pool * pool)"
                                                        : "(classes, filters * pool * pool)"))
        return d;
    if (auto d = tensor_defect(model.fc_bias, "fc_bias", {classes}, "(classes)")) return d;
    return std::nullopt;
}

void validate(const Model& model) {
    if (auto defect = model_defect(model)) throw Error(ErrorKind::bad_input, "invalid model: " + *defect);
}

Model make_model(const Architecture& architecture, const ImageShape& input, std::vector<std::string> class_names,
                 int filters, std::optional<int> hidden_units) {
    if (filters < 0) throw Error(ErrorKind::internal, "make_model: negative filter count");
    if (hidden_units && *hidden_units < 0) throw Error(ErrorKind::internal, "make_model: negative hidden unit count");
    validate_for_input(architecture, input);  // before sizing any tensor from these numbers
    Model model;
    model.architecture = architecture;
    model.input = input;
    model.class_names = std::move(class_names);
    model.normalization = Normalization::identity(input.channels);
    const std::int64_t m = filters, c = input.channels, k = architecture.kernel;
    const auto classes = static_cast<std::int64_t>(model.class_names.size());
    model.conv_weight = Tensor::zeros({m, c, k, k});
    model.conv_bias = Tensor::zeros({m});
    if (architecture.activation == Activation::gated_relu) model.gate_weight = Tensor::zeros({m, c, k, k});
    if (hidden_units) model.hidden_weight = Tensor::zeros({*hidden_units, m, 1, 1});
    const std::int64_t pooled = hidden_units ? *hidden_units : m;
    model.fc_weight = Tensor::zeros({classes, pooled * architecture.pool_grid * architecture.pool_grid});
    model.fc_bias = Tensor::zeros({classes});
    validate(model);
    return model;
}

std::string shape_to_string(const std::vector<std::int64_t>& shape) {
    std::string text = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i > 0) text += ",";
        text += std::to_string(shape[i]);
    }
    return text + "]";
}

}  // namespace cvxcnn
