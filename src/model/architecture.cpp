// Parsing, printing and checking the architecture string (see architecture.hpp).
#include "cvxcnn/model/architecture.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <string>
#include <system_error>
#include <vector>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

// Any integer above this is a typo or an attack, not a network: it keeps every later
// product (patch size, output map) far from int overflow.
constexpr int max_value = 1024;

Error arch_error(std::string_view text, const std::string& defect) {
    std::string message = "--arch '";
    message.append(text).append("': ").append(defect);
    return Error(ErrorKind::bad_input, message);
}

std::vector<std::string_view> split_tokens(std::string_view text) {
    std::vector<std::string_view> tokens;
    std::size_t begin = 0;
    while (true) {
        const std::size_t dash = text.find('-', begin);
        tokens.push_back(text.substr(begin, dash == std::string_view::npos ? std::string_view::npos : dash - begin));
        if (dash == std::string_view::npos) return tokens;
        begin = dash + 1;
    }
}

std::size_t count_digits(std::string_view text, std::size_t at) {
    std::size_t end = at;
    while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
    return end - at;
}

// Reads the unsigned decimal number at text[at...] (at least one digit) and advances `at`.
int read_number(std::string_view whole, std::string_view token, std::size_t& at, const char* what) {
    const std::size_t digits = count_digits(token, at);
    if (digits == 0) {
        std::string defect = what;
        throw arch_error(whole, defect.append(" needs a number in '").append(token).append("'"));
    }
    const std::string_view number = token.substr(at, digits);
    at += digits;
    int value = 0;
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec != std::errc() || end != number.data() + number.size() || value > max_value) {
        std::string defect = what;
        defect.append(" ").append(number).append(" is over the limit of ").append(std::to_string(max_value));
        throw arch_error(whole, defect);
    }
    return value;
}

void parse_conv(std::string_view whole, std::string_view token, Architecture& a) {
    std::size_t at = 4;  // after "conv"
    const int kernel_h = read_number(whole, token, at, "kernel size");
    if (at >= token.size() || token[at] != 'x')
        throw arch_error(whole, "kernel must be written <k>x<k>, e.g. 'conv3x3', got '" + std::string(token) + "'");
    ++at;
    const int kernel_w = read_number(whole, token, at, "kernel size");
    if (kernel_h != kernel_w)
        throw arch_error(whole, "only square kernels are supported, got " + std::to_string(kernel_h) + "x" +
                                    std::to_string(kernel_w));
    a.kernel = kernel_h;
    a.stride = 1;
    a.padding = 0;
    if (at < token.size() && token[at] == 's') {
        ++at;
        a.stride = read_number(whole, token, at, "stride");
    }
    if (at < token.size() && token[at] == 'p') {
        ++at;
        a.padding = read_number(whole, token, at, "padding");
    }
    if (at < token.size()) throw arch_error(whole, "unknown token '" + std::string(token.substr(at)) + "'");
}

void parse_leaky(std::string_view whole, std::string_view token, Architecture& a) {
    const std::string_view number = token.substr(5);  // after "leaky"
    if (number.empty()) throw arch_error(whole, "leaky needs a slope, e.g. 'leaky0.1'");
    float slope = 0.0f;
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), slope);
    // from_chars also accepts "nan", "inf" and a sign; the range check below rejects them.
    if (ec != std::errc() || end != number.data() + number.size())
        throw arch_error(whole, "leaky slope '" + std::string(number) + "' is not a number");
    a.activation = Activation::leaky_relu;
    a.leaky_slope = slope;
}

bool parse_activation(std::string_view whole, std::string_view token, Architecture& a) {
    if (token == "relu") {
        a.activation = Activation::relu;
    } else if (token == "gated") {
        a.activation = Activation::gated_relu;
    } else if (token == "abs") {
        a.activation = Activation::absolute;
    } else if (token.starts_with("leaky")) {
        parse_leaky(whole, token, a);
    } else {
        return false;
    }
    return true;
}

// Shortest text that reads back as the same float, in fixed notation: an exponent such
// as "1e-05" would put a '-' (the token separator) inside the leaky token.
std::string shortest_float(float value) {
    std::array<char, 192> buffer{};  // the smallest subnormal needs 45 decimals; FLT_MAX 39 digits
    const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value, std::chars_format::fixed);
    return ec == std::errc() ? std::string(buffer.data(), end) : std::string("?");
}

// Checks that do not depend on the input images; `text` is what messages quote.
void check_structure(const Architecture& a, std::string_view text) {
    auto check_range = [&](int value, int low, const char* what) {
        if (value < low)
            throw arch_error(text, std::string(what) + " " + std::to_string(value) + " must be >= " +
                                       std::to_string(low));
        if (value > max_value)
            throw arch_error(text, std::string(what) + " " + std::to_string(value) + " is over the limit of " +
                                       std::to_string(max_value));
    };
    check_range(a.kernel, 1, "kernel size");
    check_range(a.stride, 1, "stride");
    check_range(a.padding, 0, "padding");
    check_range(a.pool_grid, 1, "pool grid");
    // Padding of a full kernel or more would only add outputs that see nothing but zeros.
    if (a.padding >= a.kernel)
        throw arch_error(text, "padding " + std::to_string(a.padding) + " must be smaller than the kernel size " +
                                   std::to_string(a.kernel));
    if (a.activation == Activation::leaky_relu) {
        if (!(a.leaky_slope > 0.0f && a.leaky_slope < 1.0f))  // also false for NaN
            throw arch_error(text, "leaky slope " + shortest_float(a.leaky_slope) + " must be in (0, 1)");
    } else if (a.leaky_slope != 0.0f) {
        throw arch_error(text, "a slope (" + shortest_float(a.leaky_slope) + ") is only meaningful for leaky");
    }
}

}  // namespace

std::string_view to_string(Activation activation) {
    switch (activation) {
        case Activation::relu: return "relu";
        case Activation::gated_relu: return "gated";
        case Activation::leaky_relu: return "leaky";
        case Activation::absolute: return "abs";
    }
    return "unknown";
}

Architecture parse_architecture(std::string_view text) {
    if (text.empty()) throw arch_error(text, "empty; expected e.g. 'conv3x3s1p1-relu-pool7'");
    const std::vector<std::string_view> tokens = split_tokens(text);
    Architecture a;
    a.leaky_slope = 0.0f;
    bool have_conv = false, have_activation = false, have_pool = false;
    for (const std::string_view token : tokens) {
        if (token.empty()) throw arch_error(text, "empty token (two '-' in a row, or a '-' at an end)");
        if (have_pool) throw arch_error(text, "'" + std::string(token) + "' after the pool token, which must be last");
        if (token.starts_with("conv")) {
            if (have_conv) throw arch_error(text, "more than one conv token");
            parse_conv(text, token, a);
            have_conv = true;
            continue;
        }
        if (!have_conv) throw arch_error(text, "must start with a conv token such as 'conv3x3', got '" +
                                                   std::string(token) + "'");
        if (token.starts_with("pool")) {
            std::size_t at = 4;
            a.pool_grid = read_number(text, token, at, "pool grid");
            if (at < token.size()) throw arch_error(text, "unknown token '" + std::string(token.substr(at)) + "'");
            have_pool = true;
            continue;
        }
        Architecture activation = a;
        if (!parse_activation(text, token, activation)) throw arch_error(text, "unknown token '" + std::string(token) + "'");
        if (have_activation) throw arch_error(text, "more than one activation token");
        a = activation;
        have_activation = true;
    }
    if (!have_pool) throw arch_error(text, "missing the pool token, e.g. '-pool7' (pool1 = global average)");
    check_structure(a, text);
    return a;
}

std::string to_string(const Architecture& a) {
    std::string text = "conv";
    text.append(std::to_string(a.kernel)).append("x").append(std::to_string(a.kernel));
    text.append("s").append(std::to_string(a.stride)).append("p").append(std::to_string(a.padding));
    text.append("-").append(to_string(a.activation));
    if (a.activation == Activation::leaky_relu) text.append(shortest_float(a.leaky_slope));
    text.append("-pool").append(std::to_string(a.pool_grid));
    return text;
}

Architecture whole_image_architecture(const ImageShape& shape, Activation activation, std::string_view trainer) {
    if (shape.height != shape.width)
        throw Error(ErrorKind::bad_input, std::string(trainer) + ": the images are " + std::to_string(shape.height) +
                                              "x" + std::to_string(shape.width) +
                                              "; its whole-image network needs square images (kernels are square): "
                                              "pass --resize");
    Architecture architecture;
    architecture.kernel = shape.height;
    architecture.stride = 1;
    architecture.padding = 0;
    architecture.activation = activation;
    architecture.pool_grid = 1;
    return architecture;
}

void validate_for_input(const Architecture& a, const ImageShape& input) {
    const std::string text = to_string(a);
    check_structure(a, text);
    if (input.channels < 1 || input.height < 1 || input.width < 1)
        throw arch_error(text, "input shape " + to_string(input) + " is empty");
    // Compared in 64 bits: a hostile input side near INT_MAX must not wrap.
    const long long padded_h = static_cast<long long>(input.height) + 2LL * a.padding;
    const long long padded_w = static_cast<long long>(input.width) + 2LL * a.padding;
    if (a.kernel > padded_h || a.kernel > padded_w)
        throw arch_error(text, "kernel " + std::to_string(a.kernel) + "x" + std::to_string(a.kernel) +
                                   " is larger than the padded input (" + std::to_string(padded_h) + "x" +
                                   std::to_string(padded_w) + " for " + to_string(input) + " images)");
    const long long out_h = (padded_h - a.kernel) / a.stride + 1;
    const long long out_w = (padded_w - a.kernel) / a.stride + 1;
    if (a.pool_grid > out_h || a.pool_grid > out_w)
        throw arch_error(text, "pool" + std::to_string(a.pool_grid) + " needs at least " +
                                   std::to_string(a.pool_grid) + "x" + std::to_string(a.pool_grid) +
                                   " convolution outputs, " + to_string(input) + " images give " +
                                   std::to_string(out_h) + "x" + std::to_string(out_w));
}

}  // namespace cvxcnn
