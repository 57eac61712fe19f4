// ONNX export: the recovered CNN as a standard ONNX graph (opset 13, IR version 7), so any
// ONNX runtime can run a model cvxcnn trained. Last stage of the pipeline, beside the
// oneDNN engine:  model file -> Model -> .onnx.
//
// Graph (input "input": N x C x H x W float, raw pixel/255 values, N symbolic):
//   Sub(normalization_mean) -> Div(normalization_std)      normalization as explicit nodes,
//                                                          exact also where padding adds zeros
//   -> Conv(conv_weight, conv_bias; kernel, stride, pads)
//   -> Relu | LeakyRelu(alpha = slope) | Abs
//      gated ReLU: Conv(gate_weight, no bias) -> GreaterOrEqual(0) -> Cast(float) -> Mul
//   -> AveragePool(kernel = stride = OH/G x OW/G) when G divides both sides of the map;
//      otherwise Reshape(N, m, OH*OW) -> MatMul(pooling_matrix, OH*OW x G*G, entries
//      1/|region|): the floor bands have unequal sizes, which no single AveragePool covers
//   -> Flatten -> Gemm(fc_weight, fc_bias, transB = 1) = output "logits" (N x classes)
//   -> Softmax(axis 1) = output "probabilities".
// A model without filters (m = 0) becomes Flatten -> Gemm with a zero weight and fc_bias.
// Every model tensor is stored verbatim as an initializer of the same name (raw
// little-endian float32). metadata_props carry class_names, normalization_mean,
// normalization_std (JSON arrays), architecture, input_shape and input_range.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "cvxcnn/model/model.hpp"

namespace cvxcnn {

inline constexpr int onnx_opset = 13;         ///< default domain; all ops used exist unchanged there
inline constexpr int onnx_ir_version = 7;     ///< the IR version that introduced opset 13

/// The serialized ONNX ModelProto of `model`. Validates the model first (bad_input
/// "invalid model: ..."), then checks the graph with ONNX's own checker and strict shape
/// inference (internal error if they object: that would be a bug here). Throws
/// cvxcnn::Error (limit) if the graph exceeds protobuf's 2 GiB message limit.
[[nodiscard]] std::vector<std::uint8_t> encode_onnx(const Model& model);

/// encode_onnx written atomically to `path`: an earlier file stays intact unless the
/// write succeeds. Throws cvxcnn::Error "<path>: <defect>" on I/O failure.
void export_onnx(const Model& model, const std::filesystem::path& path);

}  // namespace cvxcnn
