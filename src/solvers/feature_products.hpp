// The group-lasso solver's two products with the features, for few classes:
//   Z = F U        (n x C)      and      F^T G        ((B*h) x C),
// with C (the number of classes) small, 2 to 10 in practice. General GEMM kernels are made
// for both dimensions large: for C = 10 Eigen's and oneDNN's sgemm reach about a sixth of
// their square-matrix speed here, far below what the memory traffic of F allows. These
// kernels are register-blocked for a narrow C (with AVX-512: 4 rows x 5 classes for F U,
// 32 columns x 10 classes for F^T G), so that F is read once per product and the rest
// stays in registers and L1. The solver runs both products in one pass over F (pass() in
// group_lasso.cpp), so every block of rows of F is used twice while it is still in cache,
// and the transpose product prefetches the next block, so that reading F from memory
// overlaps the arithmetic.
//
// The arithmetic of every output row (forward) and every output column (transpose) is a
// fixed sequence of float operations that depends only on the sizes, not on the thread or
// the block it runs in: results are the same bits for any thread count.
#pragma once

#include <Eigen/Core>

namespace cvxcnn::detail {

/// z[r, c] = sum_i f[r, i] * ut[c, i] for rows r < rows, classes c < classes, i < columns:
/// f is row-major with leading dimension ld_f, ut = U^T (classes x columns, row-major),
/// z row-major rows x classes.
void product_rows(const float* f, Eigen::Index ld_f, Eigen::Index rows, Eigen::Index columns, const float* ut,
                  Eigen::Index classes, float* z);

/// acc_t[c, i] += sum_r f[r, i] * g[r, c]: the transpose product of the same rows,
/// accumulated into acc_t (classes x columns, row-major); g is row-major rows x classes.
/// `prefetch` (optional): prefetch_rows rows (leading dimension ld_f) that the caller will
/// multiply next, fetched into L2 while this product computes, so that memory and
/// arithmetic overlap (a hint only: the result does not depend on it).
void add_transpose_product(const float* f, Eigen::Index ld_f, Eigen::Index rows, Eigen::Index columns,
                           const float* g, Eigen::Index classes, float* acc_t, const float* prefetch = nullptr,
                           Eigen::Index prefetch_rows = 0);

}  // namespace cvxcnn::detail
