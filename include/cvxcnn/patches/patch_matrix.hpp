// Patch matrices: the second stage of the pipeline
//   image files -> Dataset -> patch matrices -> sign patterns -> convex problem -> solver
//   -> recovered CNN.
//
// A k x k convolution with stride s and zero padding p maps each C x H x W image to an
// OH x OW output map, K = OH * OW positions. At position k it takes the dot product of one
// filter with the patch of h = k * k * C input values under the kernel; collecting that
// patch for all n samples gives the patch matrix X_k (n x h), and the convex program of
// SOLVERS.md 5.2 is written entirely in terms of X_1..X_K and of the sign patterns
// D = diag(1[M g >= 0]) of the stacked matrix M = [X_1; ...; X_K].
//
// Also here: the G x G pooling regions of the output map (which positions a pooled
// output averages), and the numerical rank of M, which decides whether exact pattern
// enumeration is thinkable at all (see numerical_rank).
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include <Eigen/Core>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/architecture.hpp"
#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {


/// A G x G grid of average-pooling regions partitioning the OH x OW output map.
/// Row band r covers oy in [floor(r*OH/G), floor((r+1)*OH/G)), column bands likewise;
/// region index = ry * G + rx. Band heights (widths) differ by at most one. G = 1 is global
/// average pooling. When G divides OH and OW this is exactly AveragePool with
/// kernel = stride = (OH/G, OW/G), which is what the ONNX / oneDNN model will use.
struct PoolingRegions {
    int grid = 0;                                 ///< G
    int out_height = 0;                           ///< OH
    int out_width = 0;                            ///< OW
    std::vector<int> region_of_position;          ///< size K = OH*OW, position = oy*OW + ox
    std::vector<std::vector<int>> positions;      ///< per region, ascending positions
    std::vector<int> sizes;                       ///< per region, positions[r].size()

    [[nodiscard]] int count() const noexcept { return grid * grid; }
    /// First output row of row band r (r = G gives OH), likewise for columns.
    [[nodiscard]] int row_begin(int r) const noexcept { return r * out_height / grid; }
    [[nodiscard]] int column_begin(int r) const noexcept { return r * out_width / grid; }
};

/// Builds the G x G regions of an OH x OW map. Throws cvxcnn::Error (bad_input) if
/// G < 1 or G > OH or G > OW (some region would be empty).
[[nodiscard]] PoolingRegions make_pooling_regions(int out_height, int out_width, int grid);

class PatchMatrices;

/// Extracts the patch matrices of every image (parallel over rows with TBB).
/// Throws cvxcnn::Error: bad_input if the dataset is empty or inconsistent or the
/// architecture does not fit the images (kernel larger than the padded input, pool grid
/// larger than the output map, ...); limit if patch_memory_bytes exceeds max_bytes.
[[nodiscard]] PatchMatrices extract_patches(const Dataset& dataset, const Architecture& architecture,
                                            std::optional<std::size_t> max_bytes = std::nullopt);

/// The patch matrices X_1..X_K of n images, stored as ONE (K*n) x h row-major matrix,
/// position-major: rows [k*n, (k+1)*n) are X_k, sample i of X_k is row k*n + i. Columns are
/// ordered (c, ky, kx), the OIHW order of a convolution weight, so a filter u in R^h is one
/// output channel's weights and (X_k u)_i is the convolution (cross-correlation, as oneDNN
/// and PyTorch compute it) of sample i at position k. Position k = oy * OW + ox.
class PatchMatrices {
public:
    [[nodiscard]] const RowMatrixF& stacked() const noexcept { return stacked_; }
    /// X_k, n x h, a view into stacked().
    [[nodiscard]] Eigen::Map<const RowMatrixF> block(int position) const {
        return {stacked_.data() + static_cast<Eigen::Index>(position) * samples_ * stacked_.cols(), samples_,
                stacked_.cols()};
    }
    [[nodiscard]] int position_of(int oy, int ox) const noexcept { return oy * out_width_ + ox; }

    [[nodiscard]] Eigen::Index samples() const noexcept { return samples_; }  ///< n
    [[nodiscard]] int positions() const noexcept { return out_height_ * out_width_; }  ///< K
    [[nodiscard]] int patch_size() const noexcept { return static_cast<int>(stacked_.cols()); }  ///< h
    [[nodiscard]] int out_height() const noexcept { return out_height_; }
    [[nodiscard]] int out_width() const noexcept { return out_width_; }
    [[nodiscard]] const ImageShape& input_shape() const noexcept { return input_; }
    [[nodiscard]] const Architecture& architecture() const noexcept { return architecture_; }
    [[nodiscard]] const PoolingRegions& regions() const noexcept { return regions_; }

private:
    friend PatchMatrices extract_patches(const Dataset&, const Architecture&, std::optional<std::size_t>);
    PatchMatrices() = default;

    ImageShape input_;
    Architecture architecture_;
    Eigen::Index samples_ = 0;
    int out_height_ = 0;
    int out_width_ = 0;
    RowMatrixF stacked_;
    PoolingRegions regions_;
};

/// Bytes extract_patches will allocate for n samples of this shape: the stacked float
/// matrix plus the region tables. 0 if the architecture does not fit the input.
/// Saturates at SIZE_MAX instead of overflowing.
[[nodiscard]] std::size_t patch_memory_bytes(std::size_t samples, const ImageShape& shape,
                                             const Architecture& architecture);

/// Numerical rank of the stacked patch matrix M.
///
/// Why it matters: the sign patterns of M are those of N = n*K hyperplanes through the
/// origin in R^r, r = rank M <= h, and their number is 2 * sum_{j<r} C(N-1, j) = O(N^r).
/// Exact enumeration therefore costs a power of N whose exponent is r: feasible only for
/// tiny r; otherwise patterns must be sampled.
struct RankReport {
    int rank = 0;
    double rtol = 0.0;                     ///< relative threshold used
    std::vector<double> singular_values;  ///< all h of them, descending
};

/// Default relative threshold. Not numpy's max(rows, cols) * eps rule: with tens of
/// millions of rows that product exceeds 1, i.e. the threshold would exceed sigma_max
/// itself, and the Gram matrix (formed in double) only resolves singular values down to
/// about sqrt(eps_double) ~ 1e-8 relative, so anything below ~1e-7 is noise anyway.
inline constexpr double default_rank_rtol = 1e-6;

/// M^T M (h x h, symmetric), accumulated in double over row blocks with a deterministic
/// TBB reduction: the result is bit-identical whatever the number of threads.
[[nodiscard]] Eigen::MatrixXd gram_matrix(const Eigen::Ref<const RowMatrixF>& matrix);

/// Singular values sigma_i = sqrt(max(lambda_i, 0)) from the eigenvalues of the Gram
/// matrix; rank = #{sigma_i > rtol * sigma_max}. Throws bad_input unless 0 < rtol < 1.
[[nodiscard]] RankReport numerical_rank(const RowMatrixF& matrix, double rtol = default_rank_rtol);
[[nodiscard]] RankReport numerical_rank(const PatchMatrices& patches, double rtol = default_rank_rtol);

}  // namespace cvxcnn
