// Sign patterns: the third stage of the pipeline
//   image files -> Dataset -> patch matrices -> sign patterns -> convex problem -> solver
//   -> recovered CNN.
//
// A two-layer ReLU network with weight decay is equivalent to a group lasso over the sign
// patterns D = diag(1[M g >= 0]) of its data (Pilanci & Ergen, ICML 2020, Thm. 1); for a CNN
// with pooled outputs M is the stacked patch matrix [X_1; ...; X_K] (Ergen & Pilanci,
// ICLR 2021; SOLVERS.md 5.1, 5.2). The distinct patterns are the cells of the central
// arrangement of the N = n*K hyperplanes {g : m_j . g = 0} in R^r, r = rank M; there are at
// most 2 * sum_{j<r} C(N-1, j) of them, with equality in general position (Cover 1965).
//
// Two ways to get them:
//   - sample_sign_patterns: random gates g (SOLVERS.md 5.10), the only option at real scale.
//   - enumerate_sign_patterns: every cell, exactly, for tiny rank (after project_to_rank).
// Patterns are kept as bits (N can be tens of millions) together with the generator g_i of
// each, so that the solver and the recovery can re-derive or gate with it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {


/// P sign patterns over N rows, pattern i = 1[M g_i >= 0] bit-packed: row j of pattern i is
/// bit (j % 64) of words[i * words_per_pattern + j / 64]. Bits past `rows` in the last word
/// are zero, so two patterns are equal iff their words are.
struct SignPatterns {
    std::size_t rows = 0;                     ///< N
    RowMatrixF generators;                    ///< P x (columns of the data): g_i
    std::size_t words_per_pattern = 0;        ///< ceil(N / 64)
    std::vector<std::uint64_t> words;         ///< P * words_per_pattern
    std::vector<std::size_t> active_counts;   ///< per pattern, number of rows with bit 1

    [[nodiscard]] std::size_t count() const noexcept { return active_counts.size(); }  ///< P
    [[nodiscard]] bool active(std::size_t pattern, std::size_t row) const noexcept {
        return ((words[pattern * words_per_pattern + row / 64] >> (row % 64)) & 1U) != 0;
    }
    [[nodiscard]] std::size_t active_rows(std::size_t pattern) const noexcept { return active_counts[pattern]; }
    [[nodiscard]] std::span<const std::uint64_t> pattern_words(std::size_t pattern) const noexcept {
        return {words.data() + pattern * words_per_pattern, words_per_pattern};
    }
    /// out[i] = 1.0f if row row_begin + i is active in the pattern, else 0.0f. Throws
    /// cvxcnn::Error (internal) if the pattern or the row range is out of bounds.
    void expand(std::size_t pattern, std::size_t row_begin, std::span<float> out) const;
    /// The whole pattern as an N-vector of 0/1.
    [[nodiscard]] Eigen::VectorXf expand(std::size_t pattern) const;
};

// ---- sampling ------------------------------------------------------------------------

struct SamplingOptions {
    enum class Source {
        gaussian,      ///< g ~ N(0, I_h) (scnn's default gates)
        data_patches,  ///< g = a uniformly chosen row of M plus Gaussian noise
    };
    int count = 0;            ///< P (--patterns): generators drawn, >= 1
    std::uint64_t seed = 0;   ///< same seed and data -> same patterns, for any thread count
    Source source = Source::gaussian;
    /// data_patches: noise standard deviation relative to the RMS entry of the chosen row
    /// (--pattern-noise); a zero row is replaced by a N(0, I) draw.
    float patch_noise = 0.1f;
    bool drop_trivial = true;  ///< remove the all-zero pattern: it carries no information
    /// Refuse (ErrorKind::limit) when P * ceil(N/64) * 8 bytes of pattern bits exceed this.
    std::optional<std::size_t> max_bytes;
};

struct SamplingReport {
    std::size_t requested = 0;   ///< P
    std::size_t kept = 0;        ///< distinct, non-trivial patterns returned
    std::size_t duplicates = 0;  ///< generators whose pattern was already kept
    std::size_t trivial = 0;     ///< generators giving the all-zero pattern (dropped)
};

struct SampledPatterns {
    SignPatterns patterns;
    SamplingReport report;
};

/// Draws options.count generators and keeps the distinct patterns 1[M g >= 0] in draw
/// order (first occurrence wins). M g is formed for 32 generators at a time as one GEMM per
/// fixed block of rows, in parallel over those blocks with TBB; the result does not depend
/// on the number of threads. Generators are rows of patterns.generators (P x h).
/// Throws cvxcnn::Error: bad_input for count < 1, negative or non-finite patch_noise, an
/// empty or non-finite M; limit when max_bytes would be exceeded.
[[nodiscard]] SampledPatterns sample_sign_patterns(const Eigen::Ref<const RowMatrixF>& patches,
                                                   const SamplingOptions& options);

// ---- exact enumeration ---------------------------------------------------------------

/// 2 * sum_{j<rank} C(rows-1, j): the number of cells of a central arrangement of `rows`
/// hyperplanes in general position in R^rank, an upper bound otherwise. Saturates at
/// UINT64_MAX. 1 when rows == 0 or rank <= 0 (a single cell, the whole space).
[[nodiscard]] std::uint64_t count_arrangement_cells_bound(std::uint64_t rows, int rank);

struct EnumerationLimits {
    std::size_t max_patterns = 1'000'000;   ///< refuse when the cell bound exceeds this
    std::optional<std::size_t> max_bytes;   ///< refuse when the bound's bits would exceed this
};

/// Every distinct pattern 1[Mr g >= 0], g in R^r, of the N x r matrix Mr: one per cell of
/// the arrangement (the all-zero pattern included when it is a cell).
///
/// Method: every cell is a pointed cone (after reducing Mr to its numerical rank k), so it
/// has an extreme ray d spanned by the null space of some k-1 linearly independent rows S.
/// For each such S and both directions +-d, the cells adjacent to the ray are the cells of
/// the rows Z containing d (m_j . d = 0, Z contains S) restricted to d's orthogonal
/// complement: in general position Z = S and they are the 2^(k-1) orthants of S, reached
/// at p = +-d + eps * B s with B = pinv(M_S), s in {-1,+1}^(k-1); otherwise they are
/// enumerated recursively in dimension k-1. eps is half the smallest |m_j . d| off Z, so p
/// stays in a cell adjacent to the ray. Rows are compared after scaling to unit length;
/// |m_j . d| <= 1e-9 counts as "on the ray", so data within that of a degenerate position
/// is treated as degenerate. Zero rows are active in every pattern (0 >= 0); duplicate rows
/// are enumerated once. Generators (P x r) are unit-length interior points of their cells.
///
/// Cost O(C(N', k-1) * N' * k) with N' distinct non-zero rows, plus the bits. Throws
/// cvxcnn::Error: limit ("--rank ...") before the enumeration starts when the cell bound
/// for (N', k) exceeds limits.max_patterns or its bits limits.max_bytes; bad_input for an
/// empty or non-finite Mr.
[[nodiscard]] SignPatterns enumerate_sign_patterns(const Eigen::Ref<const RowMatrixD>& reduced,
                                                   const EnumerationLimits& limits = {});

/// Removes the all-zero pattern (if present) with its generator: its feature blocks are
/// zero, so it adds only empty groups to the convex program. Returns how many were removed.
std::size_t drop_empty_patterns(SignPatterns& patterns);

// ---- rank reduction --------------------------------------------------------------------

/// M (N x h) projected onto its top-r right singular vectors V: reduced = M V (N x r).
/// A generator g_r in R^r of the reduced data maps to g = V g_r in R^h.
///
/// When rank M <= r, M = reduced V^T, so 1[M V g_r >= 0] = 1[reduced g_r >= 0] and every
/// pattern of M is one of reduced (take g_r = V^T g): the pattern sets are equal and
/// enumeration of `reduced` is exact for M. Otherwise it is an approximation whose quality
/// relative_residual = ||M - reduced V^T||_F / ||M||_F describes.
struct RankProjection {
    RowMatrixD reduced;                  ///< N x r
    Eigen::MatrixXd basis;               ///< h x r, orthonormal columns, descending singular value
    std::vector<double> singular_values; ///< all h singular values of M, descending
    double relative_residual = 0.0;      ///< sqrt(sum_{i>=r} sigma_i^2 / sum_i sigma_i^2)
};

/// V from the eigenvectors of the h x h Gram matrix M^T M, accumulated in double with a
/// deterministic reduction (Eigen's SelfAdjointEigenSolver); each column's largest entry is
/// made positive. Throws cvxcnn::Error (bad_input) unless 1 <= rank <= h, or if M is empty
/// or non-finite.
[[nodiscard]] RankProjection project_to_rank(const Eigen::Ref<const RowMatrixF>& patches, int rank);

/// Maps P x r generators of the reduced data to P x h generators of M (g = V g_r).
/// Throws cvxcnn::Error (bad_input) if the column count is not r.
[[nodiscard]] RowMatrixF lift_generators(const RankProjection& projection, const RowMatrixF& reduced_generators);

}  // namespace cvxcnn
