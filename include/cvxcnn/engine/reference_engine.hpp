// The reference forward pass: the model of model.hpp evaluated with plain Eigen.
//
//   Dataset (pixel/255) -> normalize -> im2col patch matrix -> conv GEMM -> activation
//   -> G x G region averages -> linear layer -> logits
//
// Last stage of the pipeline (recovered CNN -> inference). It is the yardstick the oneDNN
// engine is checked against, so every step is written exactly as model.hpp defines it:
// one patch matrix per image (columns (c, ky, kx), the OIHW order of conv_weight), one
// GEMM with the filter matrix, the activation, the average of each pooling region of
// make_pooling_regions (sum / size, in ascending position order), then fc_weight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/model.hpp"
#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

/// n x classes logits of every image of `images`, which must hold raw pixel/255 values
/// (NOT normalized: model.normalization is applied here, on a copy of each batch of
/// `batch` images, so the dataset is left untouched and memory stays bounded).
/// Parallel over images with TBB; the result is bit-identical for any thread count and
/// any batch size (each image is computed alone, with the same operation order).
/// Throws cvxcnn::Error (bad_input) if the model is invalid, images.shape differs from
/// model.input, the image buffer does not match the labels, or batch is 0.
[[nodiscard]] RowMatrixF reference_logits(const Model& model, const Dataset& images, std::size_t batch = 256);

/// Row-wise softmax, stable: exp(x - max(row)) / sum, so large logits do not overflow.
[[nodiscard]] RowMatrixF softmax_rows(const RowMatrixF& logits);

/// Column index of each row's maximum; ties go to the lowest index (as numpy.argmax).
/// Throws cvxcnn::Error (bad_input) if the matrix has rows but no columns.
[[nodiscard]] std::vector<std::int32_t> argmax_rows(const RowMatrixF& matrix);

}  // namespace cvxcnn
