// Sign patterns: sampling with one GEMM per block, exact enumeration of arrangement cells,
// and projection to a low rank. See the header for the mathematics.
#include "cvxcnn/patterns/sign_patterns.hpp"

#include "cvxcnn/patches/patch_matrix.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

#include <Eigen/Eigenvalues>
#include <Eigen/LU>
#include <Eigen/SVD>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_reduce.h>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using Index = Eigen::Index;

constexpr std::size_t words_for(std::size_t rows) { return (rows + 63) / 64; }

std::uint64_t mix64(std::uint64_t x) {  // splitmix64 finaliser
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

std::uint64_t hash_words(std::span<const std::uint64_t> words) {
    std::uint64_t h = words.size();
    for (const std::uint64_t w : words) h = mix64(h ^ w);
    return h;
}

std::size_t popcount_words(std::span<const std::uint64_t> words) {
    std::size_t n = 0;
    for (const std::uint64_t w : words) n += static_cast<std::size_t>(std::popcount(w));
    return n;
}

// Bit patterns with exact deduplication: hash first, then compare words of the (rare)
// patterns sharing a hash. Insertion order is kept, so "first occurrence wins".
class PatternStore {
public:
    explicit PatternStore(std::size_t rows) : words_per_pattern_(words_for(rows)) {}

    void reserve(std::size_t patterns) { words_.reserve(patterns * words_per_pattern_); }
    [[nodiscard]] std::size_t count() const noexcept { return count_; }
    [[nodiscard]] std::size_t words_per_pattern() const noexcept { return words_per_pattern_; }
    [[nodiscard]] std::span<const std::uint64_t> pattern(std::size_t i) const noexcept {
        return {words_.data() + i * words_per_pattern_, words_per_pattern_};
    }

    /// Adds the pattern unless an identical one is stored; true if it was added.
    bool insert(std::span<const std::uint64_t> pattern, std::uint64_t hash) {
        const auto [first, last] = index_.equal_range(hash);
        for (auto it = first; it != last; ++it) {
            const auto stored = this->pattern(it->second);
            if (std::equal(pattern.begin(), pattern.end(), stored.begin())) return false;
        }
        index_.emplace(hash, count_);
        words_.insert(words_.end(), pattern.begin(), pattern.end());
        ++count_;
        return true;
    }

    [[nodiscard]] std::vector<std::uint64_t> release() {
        index_.clear();
        words_.shrink_to_fit();
        return std::move(words_);
    }

private:
    std::size_t words_per_pattern_;
    std::size_t count_ = 0;
    std::vector<std::uint64_t> words_;
    std::unordered_multimap<std::uint64_t, std::size_t> index_;
};

void require_data(Index rows, Index cols, bool finite, const char* what) {
    if (rows < 1 || cols < 1)
        throw Error(ErrorKind::bad_input, std::string(what) + ": the data matrix is empty (" + std::to_string(rows) +
                                              " x " + std::to_string(cols) + ")");
    if (!finite) throw Error(ErrorKind::bad_input, std::string(what) + ": the data matrix has a non-finite entry");
}

std::size_t saturating_product(std::size_t a, std::size_t b) {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return std::numeric_limits<std::size_t>::max();
    return a * b;
}

// ---- enumeration internals ----------------------------------------------------------------

// Tolerances for unit-length rows. A row is "on" the ray d when |m . d| <= on_ray_tol; a
// (k-1)-subset of rows defines a ray only when its smallest singular value exceeds
// independence_tol. on_ray_tol is far above the ~1e-16 rounding of exact degeneracies in
// double and far below the margins of data in general position.
constexpr double on_ray_tol = 1e-9;
constexpr double independence_tol = 1e-7;
// Singular values below this fraction of the largest count as zero when reducing the rank.
constexpr double rank_rtol = 1e-6;

// A cell of a small arrangement: which rows are positive in it and a unit interior point.
struct LocalCell {
    std::vector<char> positive;
    Eigen::VectorXd point;
};

// The cells adjacent to the ray spanned by the null space of rows[subset].
struct Ray {
    Eigen::VectorXd direction;     // d, unit
    Eigen::VectorXd along;         // m_j . d, exactly 0 for rows on the ray
    std::vector<Index> on_ray;     // Z, ascending
    std::vector<LocalCell> cells;  // cells of Z around d: positive over Z, unit points orthogonal to d
    double eps = 0.0;              // cell point = +-d + eps * local point
};

std::vector<LocalCell> all_cells(const RowMatrixD& rows);

bool next_combination(std::vector<Index>& combination, Index n) {
    const auto k = static_cast<Index>(combination.size());
    for (Index i = k - 1; i >= 0; --i) {
        const auto slot = static_cast<std::size_t>(i);
        if (combination[slot] < n - k + i) {
            ++combination[slot];
            for (Index j = i + 1; j < k; ++j)
                combination[static_cast<std::size_t>(j)] = combination[static_cast<std::size_t>(j - 1)] + 1;
            return true;
        }
    }
    return false;
}

// rows: z x k unit rows of rank k >= 2; subset: k-1 row indices.
std::optional<Ray> ray_through(const RowMatrixD& rows, std::span<const Index> subset) {
    const Index k = rows.cols();
    Eigen::MatrixXd face(k - 1, k);
    for (Index i = 0; i < k - 1; ++i) face.row(i) = rows.row(subset[static_cast<std::size_t>(i)]);
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(face, Eigen::ComputeFullV);
    if (!(svd.singularValues()(k - 2) > independence_tol)) return std::nullopt;  // no line, or a badly defined one

    Ray ray;
    ray.direction = svd.matrixV().col(k - 1);
    const Eigen::MatrixXd complement = svd.matrixV().leftCols(k - 1);  // orthonormal basis of d's complement
    ray.along.noalias() = rows * ray.direction;
    double smallest_off = std::numeric_limits<double>::infinity();
    for (Index j = 0; j < rows.rows(); ++j) {
        if (std::abs(ray.along(j)) <= on_ray_tol) {
            ray.along(j) = 0.0;
            ray.on_ray.push_back(j);
        } else {
            smallest_off = std::min(smallest_off, std::abs(ray.along(j)));
        }
    }
    // Rank k means some row is off the ray; all |m_j . q| <= 1 for unit q, so half the
    // smallest |m_j . d| keeps every off-ray sign.
    if (!std::isfinite(smallest_off)) throw Error(ErrorKind::internal, "sign patterns: every row lies on a ray");
    ray.eps = 0.5 * smallest_off;

    // The on-ray rows in coordinates of d's complement (rank k-1: they include the subset).
    RowMatrixD local(static_cast<Index>(ray.on_ray.size()), k - 1);
    for (Index i = 0; i < local.rows(); ++i) {
        local.row(i) = rows.row(ray.on_ray[static_cast<std::size_t>(i)]).lazyProduct(complement);
        local.row(i).normalize();
    }
    if (local.rows() == k - 1) {
        // General position at this ray: the cells are the orthants of the subset, with
        // interior points L^-1 s (the brief's B s, written in the complement's basis).
        const Eigen::MatrixXd inverse = Eigen::MatrixXd(local).inverse();
        const Index orthants = Index{1} << (k - 1);
        ray.cells.reserve(static_cast<std::size_t>(orthants));
        for (Index mask = 0; mask < orthants; ++mask) {
            Eigen::VectorXd s(k - 1);
            LocalCell cell;
            cell.positive.resize(static_cast<std::size_t>(k - 1));
            for (Index i = 0; i < k - 1; ++i) {
                const bool plus = ((mask >> i) & 1) != 0;
                s(i) = plus ? 1.0 : -1.0;
                cell.positive[static_cast<std::size_t>(i)] = plus ? 1 : 0;
            }
            cell.point = complement * (inverse * s);
            cell.point.normalize();
            ray.cells.push_back(std::move(cell));
        }
    } else {
        // Extra hyperplanes through the ray: their cells around it are those of a smaller
        // arrangement one dimension down.
        ray.cells = all_cells(local);
        for (LocalCell& cell : ray.cells) {
            cell.point = complement * cell.point;
            cell.point.normalize();
        }
    }
    return ray;
}

// Every cell of the arrangement of z unit rows of rank k (small z: recursion only).
std::vector<LocalCell> all_cells(const RowMatrixD& rows) {
    const Index z = rows.rows(), k = rows.cols();
    std::vector<LocalCell> cells;
    if (k == 1) {
        // The two half-lines; rows are +-1.
        for (const double sign : {1.0, -1.0}) {
            LocalCell cell;
            cell.positive.resize(static_cast<std::size_t>(z));
            for (Index j = 0; j < z; ++j) cell.positive[static_cast<std::size_t>(j)] = sign * rows(j, 0) > 0.0 ? 1 : 0;
            cell.point = Eigen::VectorXd::Constant(1, sign);
            cells.push_back(std::move(cell));
        }
        return cells;
    }
    std::set<std::vector<char>> seen;
    std::vector<Index> subset(static_cast<std::size_t>(k - 1));
    std::iota(subset.begin(), subset.end(), Index{0});
    do {
        const std::optional<Ray> ray = ray_through(rows, subset);
        if (!ray) continue;
        for (const double sign : {1.0, -1.0}) {
            for (const LocalCell& local : ray->cells) {
                LocalCell cell;
                cell.positive.resize(static_cast<std::size_t>(z));
                for (Index j = 0; j < z; ++j) cell.positive[static_cast<std::size_t>(j)] = sign * ray->along(j) > 0.0 ? 1 : 0;
                for (std::size_t i = 0; i < ray->on_ray.size(); ++i)
                    cell.positive[static_cast<std::size_t>(ray->on_ray[i])] = local.positive[i];
                if (!seen.insert(cell.positive).second) continue;
                cell.point = sign * ray->direction + ray->eps * local.point;
                cell.point.normalize();
                cells.push_back(std::move(cell));
            }
        }
    } while (next_combination(subset, z));
    return cells;
}

// A ray of the top-level arrangement with the off-ray signs packed as bits, so a batch of
// them stays small even for many rows.
struct PackedRay {
    bool valid = false;
    std::vector<std::uint64_t> plus;   // bit j: m_j . d > 0
    std::vector<std::uint64_t> minus;  // bit j: m_j . d < 0
    std::vector<Index> on_ray;
    std::vector<LocalCell> cells;
    Eigen::VectorXd direction;
    double eps = 0.0;
};

PackedRay pack_ray(const RowMatrixD& rows, std::span<const Index> subset) {
    PackedRay packed;
    std::optional<Ray> ray = ray_through(rows, subset);
    if (!ray) return packed;
    const std::size_t words = words_for(static_cast<std::size_t>(rows.rows()));
    packed.valid = true;
    packed.plus.assign(words, 0);
    packed.minus.assign(words, 0);
    for (Index j = 0; j < rows.rows(); ++j) {
        const auto row = static_cast<std::size_t>(j);
        const std::uint64_t bit = std::uint64_t{1} << (row % 64);
        if (ray->along(j) > 0.0) packed.plus[row / 64] |= bit;
        if (ray->along(j) < 0.0) packed.minus[row / 64] |= bit;
    }
    packed.on_ray = std::move(ray->on_ray);
    packed.cells = std::move(ray->cells);
    packed.direction = std::move(ray->direction);
    packed.eps = ray->eps;
    return packed;
}

// Rows of the input reduced to their numerical rank, unit length, duplicates merged.
struct DistinctRows {
    RowMatrixD rows;               // n' x k
    Eigen::MatrixXd basis;         // r x k: reduced coordinates -> input coordinates
    std::vector<Index> row_of;     // per input row: its distinct row, or -1 for a zero row
};

DistinctRows distinct_rows(const Eigen::Ref<const RowMatrixD>& input) {
    const Index n = input.rows(), r = input.cols();
    // Scale does not change a sign pattern, so work with unit rows throughout.
    RowMatrixD unit = input;
    std::vector<char> zero(static_cast<std::size_t>(n), 0);
    Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(r, r);
    for (Index j = 0; j < n; ++j) {
        const double norm = unit.row(j).norm();
        if (norm == 0.0) {
            zero[static_cast<std::size_t>(j)] = 1;
            continue;
        }
        unit.row(j) /= norm;
        gram.selfadjointView<Eigen::Lower>().rankUpdate(unit.row(j).transpose());
    }
    gram.triangularView<Eigen::StrictlyUpper>() = gram.transpose();

    DistinctRows result;
    result.row_of.assign(static_cast<std::size_t>(n), -1);
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(gram);
    if (solver.info() != Eigen::Success)
        throw Error(ErrorKind::internal, "sign patterns: eigenvalues of the Gram matrix did not converge");
    const Eigen::VectorXd& eigenvalues = solver.eigenvalues();  // ascending
    const double largest = std::max(eigenvalues(r - 1), 0.0);
    Index k = 0;
    while (k < r && largest > 0.0 && eigenvalues(r - 1 - k) > rank_rtol * rank_rtol * largest) ++k;
    result.basis.resize(r, k);
    for (Index i = 0; i < k; ++i) result.basis.col(i) = solver.eigenvectors().col(r - 1 - i);
    if (k == 0) return result;

    std::unordered_multimap<std::uint64_t, Index> index;
    std::vector<double> values;
    Eigen::RowVectorXd projected(k);
    std::vector<std::uint64_t> key(static_cast<std::size_t>(k));
    Index distinct = 0;
    for (Index j = 0; j < n; ++j) {
        if (zero[static_cast<std::size_t>(j)] != 0) continue;
        projected.noalias() = unit.row(j).lazyProduct(result.basis);
        const double norm = projected.norm();
        if (norm <= on_ray_tol) continue;  // (almost) orthogonal to the kept subspace: zero here
        projected /= norm;
        // Bitwise equal after scaling: repeated patches (padding, flat background) are common.
        for (Index c = 0; c < k; ++c) key[static_cast<std::size_t>(c)] = std::bit_cast<std::uint64_t>(projected(c));
        const std::uint64_t hash = hash_words(key);
        Index found = -1;
        const auto [first, last] = index.equal_range(hash);
        for (auto it = first; it != last && found < 0; ++it)
            if (std::equal(projected.data(), projected.data() + k, values.data() + it->second * k)) found = it->second;
        if (found < 0) {
            found = distinct++;
            index.emplace(hash, found);
            values.insert(values.end(), projected.data(), projected.data() + k);
        }
        result.row_of[static_cast<std::size_t>(j)] = found;
    }
    result.rows = Eigen::Map<const RowMatrixD>(values.data(), distinct, k);
    return result;
}

void check_enumeration_limits(const Eigen::Ref<const RowMatrixD>& input, const DistinctRows& distinct,
                              const EnumerationLimits& limits) {
    const Index k = distinct.rows.cols();
    const auto n = static_cast<std::uint64_t>(distinct.rows.rows());
    const std::uint64_t bound = count_arrangement_cells_bound(n, static_cast<int>(k));
    const std::string where = "--rank " + std::to_string(input.cols()) + ": " + std::to_string(n) +
                              " distinct rows of rank " + std::to_string(k) + " have up to " +
                              (bound == std::numeric_limits<std::uint64_t>::max() ? std::string("2^64 or more")
                                                                                  : std::to_string(bound)) +
                              " sign patterns";
    if (bound > limits.max_patterns)
        throw Error(ErrorKind::limit, where + ", more than the limit of " + std::to_string(limits.max_patterns));
    const std::size_t bytes = saturating_product(static_cast<std::size_t>(bound),
                                                 words_for(static_cast<std::size_t>(input.rows())) * 8 +
                                                     static_cast<std::size_t>(input.cols()) * sizeof(float));
    if (limits.max_bytes && bytes > *limits.max_bytes)
        throw Error(ErrorKind::limit, where + " needing up to " + std::to_string(bytes) +
                                          " bytes, more than the limit of " + std::to_string(*limits.max_bytes));
}

}  // namespace

// ---- SignPatterns ---------------------------------------------------------------------------

void SignPatterns::expand(std::size_t pattern, std::size_t row_begin, std::span<float> out) const {
    if (pattern >= count() || row_begin > rows || out.size() > rows - row_begin)
        throw Error(ErrorKind::internal, "sign patterns: pattern " + std::to_string(pattern) + " rows [" +
                                             std::to_string(row_begin) + ", " +
                                             std::to_string(row_begin + out.size()) + ") out of range");
    const std::uint64_t* bits = words.data() + pattern * words_per_pattern;
    for (std::size_t i = 0; i < out.size(); ++i) {
        const std::size_t row = row_begin + i;
        out[i] = ((bits[row / 64] >> (row % 64)) & 1U) != 0 ? 1.0f : 0.0f;
    }
}

Eigen::VectorXf SignPatterns::expand(std::size_t pattern) const {
    Eigen::VectorXf out(static_cast<Index>(rows));
    expand(pattern, 0, {out.data(), rows});
    return out;
}

// ---- sampling -------------------------------------------------------------------------------

SampledPatterns sample_sign_patterns(const Eigen::Ref<const RowMatrixF>& patches, const SamplingOptions& options) {
    if (options.count < 1)
        throw Error(ErrorKind::bad_input, "--patterns " + std::to_string(options.count) + ": must be at least 1");
    if (!(std::isfinite(options.patch_noise) && options.patch_noise >= 0.0f))
        throw Error(ErrorKind::bad_input,
                    "--pattern-noise " + std::to_string(options.patch_noise) + ": must be finite and at least 0");
    require_data(patches.rows(), patches.cols(), patches.allFinite(), "sign pattern sampling");

    const Index n = patches.rows(), h = patches.cols();
    const auto requested = static_cast<std::size_t>(options.count);
    const std::size_t words = words_for(static_cast<std::size_t>(n));
    const std::size_t bytes = saturating_product(requested, words * 8);
    if (options.max_bytes && bytes > *options.max_bytes)
        throw Error(ErrorKind::limit, "--patterns " + std::to_string(options.count) + ": " + std::to_string(requested) +
                                          " patterns of " + std::to_string(n) + " rows need " + std::to_string(bytes) +
                                          " bytes, more than the limit of " + std::to_string(*options.max_bytes));

    // All generators first, sequentially from one engine: the draws never depend on threads.
    RowMatrixF all(options.count, h);
    std::mt19937_64 engine(options.seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<Index> pick(0, n - 1);
    for (Index p = 0; p < all.rows(); ++p) {
        if (options.source == SamplingOptions::Source::gaussian) {
            for (Index c = 0; c < h; ++c) all(p, c) = normal(engine);
            continue;
        }
        const auto row = patches.row(pick(engine));
        const float rms = row.norm() / std::sqrt(static_cast<float>(h));
        if (rms > 0.0f) {
            for (Index c = 0; c < h; ++c) all(p, c) = row(c) + options.patch_noise * rms * normal(engine);
        } else {
            for (Index c = 0; c < h; ++c) all(p, c) = normal(engine);  // zero patch: no direction to follow
        }
    }

    // Generators per GEMM. The tile type's compile-time row cap of 32 also keeps Eigen from
    // opening an OpenMP team inside every TBB task (it only parallelises taller products).
    constexpr Index block_generators = 32;
    constexpr Index block_rows = 4096;  // multiple of 64: every task owns whole words
    using Tile = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor, block_generators, Eigen::Dynamic>;
    oneapi::tbb::enumerable_thread_specific<Tile> tiles;
    const Index row_blocks = (n + block_rows - 1) / block_rows;

    PatternStore store(static_cast<std::size_t>(n));
    store.reserve(requested);
    std::vector<Index> kept_generators;
    std::vector<std::size_t> active_counts;
    SamplingReport report;
    report.requested = requested;

    std::vector<std::uint64_t> candidates(static_cast<std::size_t>(block_generators) * words);
    std::vector<std::size_t> candidate_active(static_cast<std::size_t>(block_generators));
    std::vector<std::uint64_t> candidate_hash(static_cast<std::size_t>(block_generators));
    for (Index start = 0; start < all.rows(); start += block_generators) {
        const Index count = std::min(block_generators, all.rows() - start);
        const auto generators = all.middleRows(start, count);
        // Fixed row blocks (not the partitioner's ranges): each entry of M g is computed by
        // the same kernel path for any thread count, so near-zero signs cannot flip.
        oneapi::tbb::parallel_for(oneapi::tbb::blocked_range<Index>(0, row_blocks, 1),
                                  [&](const oneapi::tbb::blocked_range<Index>& range) {
                                      Tile& tile = tiles.local();
                                      for (Index block = range.begin(); block != range.end(); ++block) {
                                          const Index first = block * block_rows;
                                          const Index rows = std::min(block_rows, n - first);
                                          tile.resize(count, rows);
                                          tile.noalias() = generators * patches.middleRows(first, rows).transpose();
                                          const Index tile_words = (rows + 63) / 64;
                                          for (Index g = 0; g < count; ++g) {
                                              const float* values = tile.row(g).data();
                                              std::uint64_t* out = candidates.data() + static_cast<std::size_t>(g) * words +
                                                                   static_cast<std::size_t>(first / 64);
                                              for (Index w = 0; w < tile_words; ++w) {
                                                  const Index end = std::min(rows, (w + 1) * 64);
                                                  std::uint64_t word = 0;
                                                  for (Index t = w * 64; t < end; ++t)
                                                      word |= static_cast<std::uint64_t>(values[t] >= 0.0f) << (t - w * 64);
                                                  out[w] = word;
                                              }
                                          }
                                      }
                                  });
        oneapi::tbb::parallel_for(Index{0}, count, [&](Index g) {
            const std::span<const std::uint64_t> bits{candidates.data() + static_cast<std::size_t>(g) * words, words};
            candidate_active[static_cast<std::size_t>(g)] = popcount_words(bits);
            candidate_hash[static_cast<std::size_t>(g)] = hash_words(bits);
        });
        for (Index g = 0; g < count; ++g) {
            const auto slot = static_cast<std::size_t>(g);
            if (options.drop_trivial && candidate_active[slot] == 0) {
                ++report.trivial;
                continue;
            }
            if (!store.insert({candidates.data() + slot * words, words}, candidate_hash[slot])) {
                ++report.duplicates;
                continue;
            }
            kept_generators.push_back(start + g);
            active_counts.push_back(candidate_active[slot]);
        }
    }

    SampledPatterns result;
    report.kept = store.count();
    result.report = report;
    SignPatterns& patterns = result.patterns;
    patterns.rows = static_cast<std::size_t>(n);
    patterns.words_per_pattern = words;
    patterns.words = store.release();
    patterns.active_counts = std::move(active_counts);
    patterns.generators.resize(static_cast<Index>(kept_generators.size()), h);
    for (std::size_t i = 0; i < kept_generators.size(); ++i)
        patterns.generators.row(static_cast<Index>(i)) = all.row(kept_generators[i]);
    return result;
}

// ---- enumeration ----------------------------------------------------------------------------

std::uint64_t count_arrangement_cells_bound(std::uint64_t rows, int rank) {
    constexpr std::uint64_t saturated = std::numeric_limits<std::uint64_t>::max();
    if (rows == 0 || rank <= 0) return 1;
    const std::uint64_t n = rows - 1;
    std::uint64_t sum = 0;
    std::uint64_t binomial = 1;  // C(n, j)
    for (std::uint64_t j = 0; j < static_cast<std::uint64_t>(rank) && j <= n; ++j) {
        if (j > 0) {
            // C(n, j) = C(n, j-1) * (n-j+1) / j, exactly: divide out gcd(C, j) first; the
            // rest of j then divides n-j+1 because the result is an integer.
            const std::uint64_t g = std::gcd(binomial, j);
            const std::uint64_t factor = (n - j + 1) / (j / g);
            binomial /= g;
            if (binomial > saturated / factor) return saturated;
            binomial *= factor;
        }
        if (sum > saturated - binomial) return saturated;
        sum += binomial;
    }
    return sum > saturated / 2 ? saturated : 2 * sum;
}

SignPatterns enumerate_sign_patterns(const Eigen::Ref<const RowMatrixD>& reduced, const EnumerationLimits& limits) {
    require_data(reduced.rows(), reduced.cols(), reduced.allFinite(), "sign pattern enumeration");
    const Index n = reduced.rows(), r = reduced.cols();
    const DistinctRows distinct = distinct_rows(reduced);
    check_enumeration_limits(reduced, distinct, limits);

    const RowMatrixD& rows = distinct.rows;
    const Index k = rows.cols();
    const Index m = rows.rows();
    PatternStore store(static_cast<std::size_t>(m));
    std::vector<Eigen::VectorXd> points;  // in the k reduced coordinates
    const std::size_t words = store.words_per_pattern();
    std::vector<std::uint64_t> scratch(words);

    if (k == 0) {
        // Every row is zero: one cell, the whole space, every row active.
        Eigen::VectorXd point = Eigen::VectorXd::Zero(0);
        store.insert(scratch, hash_words(scratch));
        points.push_back(point);
    } else if (k == 1) {
        for (const LocalCell& cell : all_cells(rows)) {
            std::fill(scratch.begin(), scratch.end(), 0);
            for (Index j = 0; j < m; ++j)
                if (cell.positive[static_cast<std::size_t>(j)] != 0)
                    scratch[static_cast<std::size_t>(j) / 64] |= std::uint64_t{1} << (static_cast<std::size_t>(j) % 64);
            if (store.insert(scratch, hash_words(scratch))) points.push_back(cell.point);
        }
    } else {
        const std::uint64_t bound = count_arrangement_cells_bound(static_cast<std::uint64_t>(m), static_cast<int>(k));
        // Rays in parallel (the O(N k) part), then a sequential merge in subset order so
        // the kept generator of each cell does not depend on the thread count.
        const std::size_t batch = std::clamp<std::size_t>((std::size_t{32} << 20) / (words * 16 + 64), 1, 4096);
        std::vector<Index> subset(static_cast<std::size_t>(k - 1));
        std::iota(subset.begin(), subset.end(), Index{0});
        std::vector<Index> subsets;
        std::vector<PackedRay> packed;
        bool more = true;
        while (more) {
            subsets.clear();
            while (more && subsets.size() < batch * subset.size()) {
                subsets.insert(subsets.end(), subset.begin(), subset.end());
                more = next_combination(subset, m);
            }
            const std::size_t count = subsets.size() / subset.size();
            packed.assign(count, PackedRay{});
            oneapi::tbb::parallel_for(std::size_t{0}, count, [&](std::size_t i) {
                packed[i] = pack_ray(rows, {subsets.data() + i * subset.size(), subset.size()});
            });
            for (const PackedRay& ray : packed) {
                if (!ray.valid) continue;
                for (const double sign : {1.0, -1.0}) {
                    for (const LocalCell& cell : ray.cells) {
                        scratch = sign > 0.0 ? ray.plus : ray.minus;
                        for (std::size_t i = 0; i < ray.on_ray.size(); ++i) {
                            if (cell.positive[i] == 0) continue;
                            const auto row = static_cast<std::size_t>(ray.on_ray[i]);
                            scratch[row / 64] |= std::uint64_t{1} << (row % 64);
                        }
                        if (!store.insert(scratch, hash_words(scratch))) continue;
                        Eigen::VectorXd point = sign * ray.direction + ray.eps * cell.point;
                        point.normalize();
                        points.push_back(std::move(point));
                    }
                }
            }
            if (store.count() > bound)
                throw Error(ErrorKind::internal, "sign pattern enumeration found " + std::to_string(store.count()) +
                                                     " cells, more than the bound " + std::to_string(bound) +
                                                     ": the data is too close to a degenerate position");
        }
    }

    // Back to the input rows (zero rows active everywhere) and input coordinates.
    SignPatterns result;
    const auto patterns = static_cast<Index>(store.count());
    result.rows = static_cast<std::size_t>(n);
    result.words_per_pattern = words_for(result.rows);
    result.words.assign(static_cast<std::size_t>(patterns) * result.words_per_pattern, 0);
    result.active_counts.resize(static_cast<std::size_t>(patterns));
    result.generators.resize(patterns, r);
    oneapi::tbb::parallel_for(Index{0}, patterns, [&](Index p) {
        const auto slot = static_cast<std::size_t>(p);
        const std::span<const std::uint64_t> from = store.pattern(slot);
        std::uint64_t* to = result.words.data() + slot * result.words_per_pattern;
        for (std::size_t j = 0; j < result.rows; ++j) {
            const Index source = distinct.row_of[j];
            const auto s = static_cast<std::size_t>(source);
            const bool on = source < 0 || ((from[s / 64] >> (s % 64)) & 1U) != 0;
            if (on) to[j / 64] |= std::uint64_t{1} << (j % 64);
        }
        result.active_counts[slot] = popcount_words({to, result.words_per_pattern});
        if (k == 0) {
            result.generators.row(p).setZero();
            result.generators(p, 0) = 1.0f;
        } else {
            result.generators.row(p) = (distinct.basis * points[slot]).transpose().cast<float>();
        }
    });
    return result;
}

// ---- rank reduction ---------------------------------------------------------------------------

RankProjection project_to_rank(const Eigen::Ref<const RowMatrixF>& patches, int rank) {
    require_data(patches.rows(), patches.cols(), patches.allFinite(), "rank projection");
    const Index n = patches.rows(), h = patches.cols();
    if (rank < 1 || rank > h)
        throw Error(ErrorKind::bad_input, "--rank " + std::to_string(rank) + ": must be between 1 and the patch size " +
                                              std::to_string(h));

    // Deterministic for any thread count, so V does not change with --threads.
    const Eigen::MatrixXd gram = gram_matrix(patches);
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(gram);
    if (solver.info() != Eigen::Success)
        throw Error(ErrorKind::internal, "rank projection: eigenvalues of the " + std::to_string(h) + "x" +
                                             std::to_string(h) + " Gram matrix did not converge");

    RankProjection projection;
    projection.basis.resize(h, rank);
    double total = 0.0, kept = 0.0;
    for (Index i = 0; i < h; ++i) {
        const double eigenvalue = std::max(solver.eigenvalues()(h - 1 - i), 0.0);  // descending
        projection.singular_values.push_back(std::sqrt(eigenvalue));
        total += eigenvalue;
        if (i < rank) {
            Eigen::VectorXd column = solver.eigenvectors().col(h - 1 - i);
            Index largest = 0;
            column.cwiseAbs().maxCoeff(&largest);
            if (column(largest) < 0.0) column = -column;  // a reproducible sign
            projection.basis.col(i) = column;
            kept += eigenvalue;
        }
    }
    projection.relative_residual = total > 0.0 ? std::sqrt(std::max(total - kept, 0.0) / total) : 0.0;

    projection.reduced.resize(n, rank);
    constexpr Index block_rows = 4096;
    const Index row_blocks = (n + block_rows - 1) / block_rows;
    oneapi::tbb::parallel_for(Index{0}, row_blocks, [&](Index block) {
        const Index first = block * block_rows;
        const Index rows = std::min(block_rows, n - first);
        // Coefficient-wise product: no double copy of M, no OpenMP team inside the task.
        projection.reduced.middleRows(first, rows).noalias() =
            patches.middleRows(first, rows).cast<double>().lazyProduct(projection.basis);
    });
    return projection;
}

RowMatrixF lift_generators(const RankProjection& projection, const RowMatrixF& reduced_generators) {
    if (reduced_generators.cols() != projection.basis.cols())
        throw Error(ErrorKind::bad_input, "lift generators: " + std::to_string(reduced_generators.cols()) +
                                              " columns, the projection has rank " +
                                              std::to_string(projection.basis.cols()));
    return (reduced_generators.cast<double>() * projection.basis.transpose()).cast<float>();
}

std::size_t drop_empty_patterns(SignPatterns& patterns) {
    std::size_t kept = 0;
    const std::size_t words = patterns.words_per_pattern;
    for (std::size_t i = 0; i < patterns.count(); ++i) {
        if (patterns.active_counts[i] == 0) continue;
        if (kept != i) {
            std::copy_n(patterns.words.begin() + static_cast<std::ptrdiff_t>(i * words), words,
                        patterns.words.begin() + static_cast<std::ptrdiff_t>(kept * words));
            patterns.generators.row(static_cast<Eigen::Index>(kept)) = patterns.generators.row(static_cast<Eigen::Index>(i));
            patterns.active_counts[kept] = patterns.active_counts[i];
        }
        ++kept;
    }
    const std::size_t removed = patterns.count() - kept;
    patterns.words.resize(kept * words);
    patterns.active_counts.resize(kept);
    patterns.generators.conservativeResize(static_cast<Eigen::Index>(kept), Eigen::NoChange);
    return removed;
}

}  // namespace cvxcnn
