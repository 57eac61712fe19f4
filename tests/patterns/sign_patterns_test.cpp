// Sign patterns: enumeration checked against the cell count of arrangements in general
// position (computed here independently) and against brute-force sampling of directions;
// sampling checked for determinism, deduplication and realizability.
#include "cvxcnn/patterns/sign_patterns.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <oneapi/tbb/global_control.h>

#include "cvxcnn/util/error.hpp"

using namespace cvxcnn;

namespace {

using PatternSet = std::set<std::vector<std::uint64_t>>;

RowMatrixD gaussian_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    std::normal_distribution<double> normal;
    RowMatrixD m(rows, cols);
    for (Eigen::Index i = 0; i < rows; ++i)
        for (Eigen::Index j = 0; j < cols; ++j) m(i, j) = normal(engine);
    return m;
}

// C(n, k) by Pascal's triangle: independent of the library's multiplicative formula.
std::uint64_t binomial(int n, int k) {
    std::vector<std::vector<std::uint64_t>> c(static_cast<std::size_t>(n + 1));
    for (int i = 0; i <= n; ++i) {
        c[static_cast<std::size_t>(i)].assign(static_cast<std::size_t>(i + 1), 1);
        for (int j = 1; j < i; ++j)
            c[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)] =
                c[static_cast<std::size_t>(i - 1)][static_cast<std::size_t>(j - 1)] +
                c[static_cast<std::size_t>(i - 1)][static_cast<std::size_t>(j)];
    }
    return k < 0 || k > n ? 0 : c[static_cast<std::size_t>(n)][static_cast<std::size_t>(k)];
}

std::uint64_t general_position_cells(int rows, int rank) {
    std::uint64_t sum = 0;
    for (int j = 0; j < rank; ++j) sum += binomial(rows - 1, j);
    return 2 * sum;
}

std::vector<std::uint64_t> pack(const std::vector<bool>& bits) {
    std::vector<std::uint64_t> words((bits.size() + 63) / 64, 0);
    for (std::size_t j = 0; j < bits.size(); ++j)
        if (bits[j]) words[j / 64] |= std::uint64_t{1} << (j % 64);
    return words;
}

// 1[M g >= 0] in double.
template <typename Matrix>
std::vector<bool> pattern_of(const Matrix& m, const Eigen::VectorXd& g) {
    std::vector<bool> bits(static_cast<std::size_t>(m.rows()));
    for (Eigen::Index j = 0; j < m.rows(); ++j)
        bits[static_cast<std::size_t>(j)] = m.row(j).template cast<double>().dot(g) >= 0.0;
    return bits;
}

PatternSet as_set(const SignPatterns& patterns) {
    PatternSet set;
    for (std::size_t i = 0; i < patterns.count(); ++i) {
        const auto words = patterns.pattern_words(i);
        set.emplace(words.begin(), words.end());
    }
    return set;
}

// Distinct patterns of `samples` directions uniform on the unit sphere.
template <typename Matrix>
PatternSet brute_force(const Matrix& m, int samples, std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    std::normal_distribution<double> normal;
    PatternSet set;
    Eigen::VectorXd g(m.cols());
    for (int s = 0; s < samples; ++s) {
        for (Eigen::Index c = 0; c < g.size(); ++c) g(c) = normal(engine);
        set.insert(pack(pattern_of(m, g.normalized())));
    }
    return set;
}

// Each stored generator reproduces its pattern, away from rounding-level ties.
template <typename Matrix>
void expect_generators_reproduce(const Matrix& m, const SignPatterns& patterns, double tie = 1e-5) {
    ASSERT_EQ(patterns.generators.rows(), static_cast<Eigen::Index>(patterns.count()));
    ASSERT_EQ(patterns.rows, static_cast<std::size_t>(m.rows()));
    for (std::size_t i = 0; i < patterns.count(); ++i) {
        const Eigen::VectorXd g = patterns.generators.row(static_cast<Eigen::Index>(i)).transpose().cast<double>();
        for (Eigen::Index j = 0; j < m.rows(); ++j) {
            const Eigen::VectorXd row = m.row(j).transpose().template cast<double>();
            const double value = row.dot(g);
            if (row.norm() > 0.0 && std::abs(value) <= tie * row.norm() * g.norm()) continue;
            ASSERT_EQ(patterns.active(i, static_cast<std::size_t>(j)), value >= 0.0)
                << "pattern " << i << " row " << j << " value " << value;
        }
    }
}

void expect_consistent_storage(const SignPatterns& patterns) {
    ASSERT_EQ(patterns.words_per_pattern, (patterns.rows + 63) / 64);
    ASSERT_EQ(patterns.words.size(), patterns.count() * patterns.words_per_pattern);
    for (std::size_t i = 0; i < patterns.count(); ++i) {
        std::size_t active = 0;
        for (std::size_t j = 0; j < patterns.rows; ++j) active += patterns.active(i, j) ? 1 : 0;
        EXPECT_EQ(patterns.active_rows(i), active);
    }
    EXPECT_EQ(as_set(patterns).size(), patterns.count()) << "patterns are not distinct";
}

// Three hyperplanes through one line, a duplicate, a positive and a negative multiple
// (the same hyperplane) and a zero row, in R^3.
RowMatrixD degenerate_rank3() {
    RowMatrixD m = gaussian_matrix(10, 3, 77);
    m.row(5) = m.row(0);                 // duplicate
    m.row(6) = 2.5 * m.row(1);           // parallel, same side
    m.row(7) = -m.row(2);                // parallel, opposite side
    m.row(8) = m.row(3) + m.row(4);      // three planes share the line m3 x m4
    m.row(9).setZero();                  // always active (0 >= 0)
    return m;
}

}  // namespace

// ---- enumeration ---------------------------------------------------------------------------

TEST(ArrangementEnumeration, GeneralPositionGivesCoverCount) {
    const std::vector<std::pair<int, int>> cases = {{6, 1}, {7, 2}, {9, 3}, {8, 4}, {12, 3}};
    for (const auto& [n, r] : cases) {
        const RowMatrixD m = gaussian_matrix(n, r, 1000 + static_cast<std::uint64_t>(n * 10 + r));
        const SignPatterns patterns = enumerate_sign_patterns(m);
        EXPECT_EQ(patterns.count(), general_position_cells(n, r)) << "N=" << n << " r=" << r;
        expect_consistent_storage(patterns);
    }
}

TEST(ArrangementEnumeration, RankOneGivesBothHalfLines) {
    RowMatrixD m(4, 1);
    m << 2.0, -1.0, 0.0, 3.0;
    const SignPatterns patterns = enumerate_sign_patterns(m);
    ASSERT_EQ(patterns.count(), 2U);
    // g > 0: 1[m >= 0]; g < 0: 1[-m >= 0]; the zero row is active in both.
    const PatternSet expected = {pack({true, false, true, true}), pack({false, true, true, false})};
    EXPECT_EQ(as_set(patterns), expected);
}

TEST(ArrangementEnumeration, EqualsBruteForceOnTinyData) {
    const RowMatrixD m = gaussian_matrix(8, 3, 2024);
    const SignPatterns patterns = enumerate_sign_patterns(m);
    EXPECT_EQ(patterns.count(), general_position_cells(8, 3));
    EXPECT_EQ(as_set(patterns), brute_force(m, 200'000, 5));
}

TEST(ArrangementEnumeration, DegenerateDataEqualsBruteForce) {
    const RowMatrixD degenerate = degenerate_rank3();
    const SignPatterns a = enumerate_sign_patterns(degenerate);
    expect_consistent_storage(a);
    EXPECT_EQ(as_set(a), brute_force(degenerate, 200'000, 6));
    // 6 distinct hyperplanes (rows 0-4 and 8) with a triple line: fewer than general position.
    EXPECT_LT(a.count(), general_position_cells(6, 3));

    // Rank 2 padded to r = 3: the arrangement of N lines through the origin of a plane,
    // times the lineality direction: 2N cells.
    const RowMatrixD rank2 = gaussian_matrix(9, 2, 31) * gaussian_matrix(2, 3, 32);
    const SignPatterns b = enumerate_sign_patterns(rank2);
    EXPECT_EQ(b.count(), 2U * 9U);
    EXPECT_EQ(as_set(b), brute_force(rank2, 200'000, 7));

    // R^4 with four hyperplanes through a common plane and a duplicated row: the
    // recursion goes two levels down. Random instances of this structure have slivers
    // that sampling misses; this one (seed 43) has none thinner than ~1/150000 of the sphere.
    const auto deep = [](std::uint64_t seed) {
        RowMatrixD m = gaussian_matrix(9, 4, seed);
        m.row(4) = m.row(0) - 0.5 * m.row(1);
        m.row(5) = 0.3 * m.row(0) + m.row(1);
        m.row(8) = m.row(2);
        return m;
    };
    const SignPatterns c = enumerate_sign_patterns(deep(43));
    expect_consistent_storage(c);
    expect_generators_reproduce(deep(43), c, 0.0);
    EXPECT_EQ(as_set(c), brute_force(deep(43), 400'000, 8));
    // The cell count depends only on the intersection lattice (Zaslavsky), the same for
    // every generic instance of the structure.
    EXPECT_EQ(enumerate_sign_patterns(deep(41)).count(), c.count());
}

TEST(ArrangementEnumeration, EveryPatternIsRealizedByItsGenerator) {
    const RowMatrixD general = gaussian_matrix(12, 3, 99);
    expect_generators_reproduce(general, enumerate_sign_patterns(general), 0.0);
    const RowMatrixD degenerate = degenerate_rank3();
    expect_generators_reproduce(degenerate, enumerate_sign_patterns(degenerate), 1e-12);
    const RowMatrixD four = gaussian_matrix(8, 4, 100);
    expect_generators_reproduce(four, enumerate_sign_patterns(four), 0.0);
}

TEST(ArrangementEnumeration, DeterministicForAnyThreadCount) {
    const RowMatrixD m = gaussian_matrix(40, 3, 5);
    SignPatterns one, two;
    {
        const oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 1);
        one = enumerate_sign_patterns(m);
    }
    {
        const oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 2);
        two = enumerate_sign_patterns(m);
    }
    EXPECT_EQ(one.words, two.words);
    EXPECT_EQ(one.generators, two.generators);
    EXPECT_EQ(one.count(), general_position_cells(40, 3));
}

TEST(ArrangementBound, MatchesBinomialSum) {
    for (int n = 1; n <= 30; ++n)
        for (int r = 1; r <= 8; ++r)
            EXPECT_EQ(count_arrangement_cells_bound(static_cast<std::uint64_t>(n), r), general_position_cells(n, r))
                << n << " " << r;
    EXPECT_EQ(count_arrangement_cells_bound(1'000'000, 2), 2U * 1'000'000U);
    // 2 * (1 + 999999 + C(999999, 2) + C(999999, 3))
    EXPECT_EQ(count_arrangement_cells_bound(1'000'000, 4), 333'332'333'336'000'000ULL);
    EXPECT_EQ(count_arrangement_cells_bound(std::uint64_t{1} << 40, 10), std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(count_arrangement_cells_bound(0, 3), 1U);
}

TEST(ArrangementLimits, RefusesHugeEnumerationQuickly) {
    const RowMatrixD m = gaussian_matrix(1'000'000, 4, 3);
    try {
        (void)enumerate_sign_patterns(m);
        FAIL() << "expected a limit error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::limit);
        EXPECT_NE(std::string(e.what()).find("--rank 4"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("333332333336000000"), std::string::npos) << e.what();
    }
    EnumerationLimits small;
    small.max_bytes = 64;
    EXPECT_THROW((void)enumerate_sign_patterns(gaussian_matrix(10, 3, 4), small), Error);
}

// ---- sampling --------------------------------------------------------------------------------

TEST(SignPatternSampling, SameSeedSameResultDifferentSeedDifferent) {
    const RowMatrixF m = gaussian_matrix(3000, 9, 11).cast<float>();
    SamplingOptions options;
    options.count = 200;
    options.seed = 42;
    const SampledPatterns a = sample_sign_patterns(m, options);
    const SampledPatterns b = sample_sign_patterns(m, options);
    EXPECT_EQ(a.patterns.words, b.patterns.words);
    EXPECT_EQ(a.patterns.generators, b.patterns.generators);
    options.seed = 43;
    const SampledPatterns c = sample_sign_patterns(m, options);
    EXPECT_NE(a.patterns.generators.row(0), c.patterns.generators.row(0));
    EXPECT_NE(a.patterns.words, c.patterns.words);
    expect_consistent_storage(a.patterns);
    expect_generators_reproduce(m, a.patterns);
}

TEST(SignPatternSampling, ThreadCountDoesNotChangeResult) {
    const RowMatrixF m = gaussian_matrix(20'000, 9, 12).cast<float>();  // several row blocks
    SamplingOptions options;
    options.count = 70;  // three generator blocks, the last partial
    options.seed = 7;
    SampledPatterns one, two;
    {
        const oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 1);
        one = sample_sign_patterns(m, options);
    }
    {
        const oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, 2);
        two = sample_sign_patterns(m, options);
    }
    EXPECT_EQ(one.patterns.words, two.patterns.words);
    EXPECT_EQ(one.patterns.generators, two.patterns.generators);
    EXPECT_EQ(one.patterns.count(), 70U);
    expect_generators_reproduce(m, one.patterns);
}

TEST(SignPatternSampling, DuplicatesRemoved) {
    const RowMatrixD data = gaussian_matrix(5, 2, 13);
    SamplingOptions options;
    options.count = 5000;
    options.seed = 1;
    const SampledPatterns sampled = sample_sign_patterns(data.cast<float>(), options);
    const SamplingReport& report = sampled.report;
    EXPECT_EQ(report.requested, 5000U);
    EXPECT_LE(sampled.patterns.count(), 2U * (1U + 4U));
    EXPECT_EQ(report.kept, sampled.patterns.count());
    EXPECT_EQ(report.kept + report.duplicates + report.trivial, report.requested);
    expect_consistent_storage(sampled.patterns);
    // Every sampled pattern is a cell of the arrangement.
    const PatternSet cells = as_set(enumerate_sign_patterns(data));
    for (const auto& pattern : as_set(sampled.patterns)) EXPECT_TRUE(cells.contains(pattern));
}

TEST(SignPatternSampling, TrivialPatternDroppedOnlyWhenAsked) {
    // All rows within 45 degrees of e1: the all-zero cell (M g < 0) spans a quarter turn.
    RowMatrixF m(6, 2);
    m << 1.0f, 0.1f, 1.0f, -0.5f, 2.0f, 0.9f, 1.0f, 0.0f, 3.0f, -2.0f, 1.0f, 0.7f;
    SamplingOptions options;
    options.count = 400;
    options.seed = 3;
    const SampledPatterns dropped = sample_sign_patterns(m, options);
    EXPECT_GT(dropped.report.trivial, 0U);
    for (std::size_t i = 0; i < dropped.patterns.count(); ++i) EXPECT_GT(dropped.patterns.active_rows(i), 0U);
    options.drop_trivial = false;
    const SampledPatterns kept = sample_sign_patterns(m, options);
    EXPECT_EQ(kept.report.trivial, 0U);
    EXPECT_EQ(kept.patterns.count(), dropped.patterns.count() + 1);
    bool has_zero = false;
    for (std::size_t i = 0; i < kept.patterns.count(); ++i) has_zero |= kept.patterns.active_rows(i) == 0;
    EXPECT_TRUE(has_zero);
}

TEST(SignPatternSampling, DataPatchSource) {
    const RowMatrixF m = gaussian_matrix(300, 9, 14).cast<float>();
    SamplingOptions options;
    options.count = 100;
    options.seed = 9;
    options.source = SamplingOptions::Source::data_patches;
    options.patch_noise = 0.0f;
    const SampledPatterns exact = sample_sign_patterns(m, options);
    ASSERT_GT(exact.patterns.count(), 0U);
    // g = m_j exactly: every generator is a row of M and that row is active (m_j . m_j > 0).
    for (Eigen::Index i = 0; i < exact.patterns.generators.rows(); ++i) {
        bool found = false;
        for (Eigen::Index j = 0; j < m.rows() && !found; ++j)
            if (m.row(j) == exact.patterns.generators.row(i)) {
                found = true;
                EXPECT_TRUE(exact.patterns.active(static_cast<std::size_t>(i), static_cast<std::size_t>(j)));
            }
        EXPECT_TRUE(found) << "generator " << i;
    }
    options.patch_noise = 0.1f;
    const SampledPatterns noisy = sample_sign_patterns(m, options);
    expect_consistent_storage(noisy.patterns);
    expect_generators_reproduce(m, noisy.patterns);
    EXPECT_EQ(noisy.patterns.count(), 100U);
}

TEST(SignPatternSampling, RejectsBadOptions) {
    const RowMatrixF m = gaussian_matrix(10, 3, 15).cast<float>();
    SamplingOptions options;
    options.count = 0;
    try {
        (void)sample_sign_patterns(m, options);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::bad_input);
        EXPECT_EQ(std::string(e.what()), "--patterns 0: must be at least 1");
    }
    options.count = 1000;
    options.max_bytes = 1000;  // 1000 patterns x 1 word need 8000 bytes
    try {
        (void)sample_sign_patterns(m, options);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::limit);
    }
    options.max_bytes.reset();
    RowMatrixF bad = m;
    bad(3, 1) = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THROW((void)sample_sign_patterns(bad, options), Error);
}

TEST(SignPatterns, ExpandMatchesActiveBits) {
    const RowMatrixF m = gaussian_matrix(150, 4, 16).cast<float>();
    SamplingOptions options;
    options.count = 5;
    const SampledPatterns sampled = sample_sign_patterns(m, options);
    const SignPatterns& patterns = sampled.patterns;
    for (std::size_t i = 0; i < patterns.count(); ++i) {
        const Eigen::VectorXf full = patterns.expand(i);
        ASSERT_EQ(full.size(), 150);
        std::vector<float> part(70);
        patterns.expand(i, 60, part);
        for (std::size_t j = 0; j < 150; ++j) {
            EXPECT_EQ(full(static_cast<Eigen::Index>(j)), patterns.active(i, j) ? 1.0f : 0.0f);
            if (j >= 60 && j < 130) {
                EXPECT_EQ(part[j - 60], full(static_cast<Eigen::Index>(j)));
            }
        }
        EXPECT_EQ(static_cast<std::size_t>(full.sum()), patterns.active_rows(i));
    }
    std::vector<float> too_long(100);
    EXPECT_THROW(patterns.expand(0, 60, too_long), Error);
}

// ---- rank projection ---------------------------------------------------------------------------

TEST(SignPatternProjection, ExactRankTwoDataEnumeratesExactly) {
    const RowMatrixF m = (gaussian_matrix(10, 2, 17) * gaussian_matrix(2, 9, 18)).cast<float>();
    const RankProjection projection = project_to_rank(m, 2);
    ASSERT_EQ(projection.basis.rows(), 9);
    ASSERT_EQ(projection.basis.cols(), 2);
    EXPECT_TRUE((projection.basis.transpose() * projection.basis).isIdentity(1e-12));
    EXPECT_LT(projection.relative_residual, 1e-5);
    EXPECT_LT(projection.singular_values[2], 1e-5 * projection.singular_values[0]);

    const SignPatterns reduced = enumerate_sign_patterns(projection.reduced);
    EXPECT_EQ(reduced.count(), 2U * 10U);  // rank 2 in general position: 2N cells
    SignPatterns lifted = reduced;
    lifted.generators = lift_generators(projection, reduced.generators);
    ASSERT_EQ(lifted.generators.cols(), 9);
    expect_generators_reproduce(m, lifted, 0.0);
    EXPECT_EQ(as_set(reduced), brute_force(m, 200'000, 19));

    try {
        (void)project_to_rank(m, 10);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::bad_input);
        EXPECT_NE(std::string(e.what()).find("--rank 10"), std::string::npos);
    }
}
