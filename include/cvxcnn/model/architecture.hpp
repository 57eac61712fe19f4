// The network cvxcnn trains and runs:
//   conv(k x k, stride s, padding p) -> activation -> average pooling over a G x G grid
//   of regions of the output map -> linear layer to the classes.
//
// Written as a readable string, e.g. "conv3x3s1p1-relu-pool7":
//   conv<k>x<k>[s<stride>][p<padding>]   stride defaults to 1, padding to 0
//   relu | gated | leaky<slope> | abs    activation (default relu); leaky0.1 = slope 0.1
//   pool<G>                              G x G pooling regions (pool1 = global average)
// Tokens are separated by '-'. Only square kernels are supported.
#pragma once

#include <string>
#include <string_view>

#include "cvxcnn/data/dataset.hpp"

namespace cvxcnn {

enum class Activation {
    relu,        ///< max(0, x); convex equivalent has cone constraints
    gated_relu,  ///< 1[g.x >= 0] * (u.x) with a fixed gate filter g
    leaky_relu,  ///< max(a x, x)
    absolute,    ///< |x|
};

[[nodiscard]] std::string_view to_string(Activation activation);

struct Architecture {
    int kernel = 3;
    int stride = 1;
    int padding = 1;
    Activation activation = Activation::relu;
    float leaky_slope = 0.0f;  ///< a of leaky ReLU, in (0, 1); 0 for other activations
    int pool_grid = 7;         ///< G: the output map is averaged over G x G regions

    /// Output side length of the convolution for an input side length (0 when the
    /// kernel does not fit the padded input; integer division alone would say 1).
    [[nodiscard]] int conv_output_size(int input_size) const noexcept {
        const int span = input_size + 2 * padding - kernel;
        return span < 0 || stride < 1 ? 0 : span / stride + 1;
    }
    /// h = k * k * C: the length of one patch (one row of a patch matrix).
    [[nodiscard]] int patch_size(int channels) const noexcept { return kernel * kernel * channels; }

    friend bool operator==(const Architecture&, const Architecture&) = default;
};

/// Parses the string form above. Throws cvxcnn::Error "--arch '<text>': <defect>".
[[nodiscard]] Architecture parse_architecture(std::string_view text);
/// The canonical string form; parse_architecture(to_string(a)) == a.
[[nodiscard]] std::string to_string(const Architecture& architecture);
/// Throws cvxcnn::Error if the architecture cannot run on images of this shape
/// (kernel larger than the padded input, more pooling regions than output positions, ...).
void validate_for_input(const Architecture& architecture, const ImageShape& input);
/// conv<H>x<H>s1p0-<activation>-pool1: one convolution position reading the whole image, i.e.
/// the fully connected network of the papers, which the relaxation, SDP and three-layer
/// trainers default to. Throws cvxcnn::Error (bad_input) for non-square images (kernels are
/// square), naming `trainer` (e.g. "--solver sdp") and --resize.
[[nodiscard]] Architecture whole_image_architecture(const ImageShape& shape, Activation activation,
                                                    std::string_view trainer);

}  // namespace cvxcnn
