// Matrix types shared by the numerical stages. Row-major, because the stacked patch
// matrix is stored position block after position block: a block of consecutive rows is
// one contiguous array, so products with it are plain GEMMs.
#pragma once

#include <Eigen/Core>

namespace cvxcnn {

using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace cvxcnn
