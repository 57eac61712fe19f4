// Patch extraction, pooling regions and numerical rank, checked against plain nested
// loops (direct convolution) and Eigen's SVDs.
#include "cvxcnn/patches/patch_matrix.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/SVD>
#include <oneapi/tbb/global_control.h>

#include "cvxcnn/util/error.hpp"

using namespace cvxcnn;

namespace {

// n images of shape C x H x W with value(i, c, y, x).
template <typename F>
Dataset make_dataset(int n, int channels, int height, int width, F value) {
    Dataset dataset;
    dataset.shape = {channels, height, width};
    dataset.labels.assign(n, 0);
    dataset.class_names = {"only"};
    dataset.images.resize(static_cast<std::size_t>(n) * dataset.shape.values());
    std::size_t index = 0;
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < channels; ++c)
            for (int y = 0; y < height; ++y)
                for (int x = 0; x < width; ++x) dataset.images[index++] = value(i, c, y, x);
    return dataset;
}

Dataset random_dataset(int n, int channels, int height, int width, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    return make_dataset(n, channels, height, width, [&](int, int, int, int) { return uniform(rng); });
}

Architecture conv(int kernel, int stride, int padding, int pool_grid = 1) {
    Architecture a;
    a.kernel = kernel;
    a.stride = stride;
    a.padding = padding;
    a.pool_grid = pool_grid;
    return a;
}

// Input pixel under the (possibly padded) kernel: zero outside the image.
float padded_pixel(const Dataset& d, int i, int c, int y, int x) {
    if (y < 0 || y >= d.shape.height || x < 0 || x >= d.shape.width) return 0.0f;
    return d.image(i)[(static_cast<std::size_t>(c) * d.shape.height + y) * d.shape.width + x];
}

// Number of kernel placements along one side, counted rather than computed by formula.
int count_outputs(int size, const Architecture& a) {
    int count = 0;
    for (int o = 0; o * a.stride + a.kernel <= size + 2 * a.padding; ++o) ++count;
    return count;
}

struct Reference {
    double value = 0;
    double magnitude = 0;  // sum of |terms|, scales the float tolerance
};

// Direct cross-correlation of sample i with filter u (OIHW order) at output (oy, ox).
Reference direct_convolution(const Dataset& d, const Architecture& a, int i, int oy, int ox,
                             const Eigen::VectorXf& u) {
    Reference r;
    int j = 0;
    for (int c = 0; c < d.shape.channels; ++c)
        for (int ky = 0; ky < a.kernel; ++ky)
            for (int kx = 0; kx < a.kernel; ++kx, ++j) {
                const int y = oy * a.stride - a.padding + ky, x = ox * a.stride - a.padding + kx;
                const double term = static_cast<double>(u[j]) * padded_pixel(d, i, c, y, x);
                r.value += term;
                r.magnitude += std::abs(term);
            }
    return r;
}

template <typename F>
void expect_error(F&& call, ErrorKind kind, const std::string& fragment) {
    try {
        call();
        FAIL() << "expected cvxcnn::Error containing '" << fragment << "'";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), kind) << e.what();
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
}

}  // namespace

// ---- extraction ------------------------------------------------------------------------

TEST(PatchMatrix, MatchesDirectConvolutionForAllGeometries) {
    const int sizes[][2] = {{5, 5}, {6, 6}, {7, 4}};
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    int checked = 0;
    for (const auto& size : sizes)
        for (int channels : {1, 3})
            for (int kernel : {1, 2, 3, 5})
                for (int stride : {1, 2, 3})
                    for (int padding : {0, 1, 2}) {
                        const int height = size[0], width = size[1];
                        const Architecture a = conv(kernel, stride, padding);
                        if (height + 2 * padding < kernel || width + 2 * padding < kernel) continue;
                        SCOPED_TRACE(std::to_string(channels) + "x" + std::to_string(height) + "x" +
                                     std::to_string(width) + " k" + std::to_string(kernel) + " s" +
                                     std::to_string(stride) + " p" + std::to_string(padding));
                        const int n = 3;
                        const Dataset d = random_dataset(n, channels, height, width, 100 + checked);
                        const PatchMatrices patches = extract_patches(d, a);
                        const int oh = count_outputs(height, a), ow = count_outputs(width, a);
                        ASSERT_EQ(patches.out_height(), oh);
                        ASSERT_EQ(patches.out_width(), ow);
                        ASSERT_EQ(patches.positions(), oh * ow);
                        ASSERT_EQ(patches.samples(), n);
                        ASSERT_EQ(patches.patch_size(), kernel * kernel * channels);
                        ASSERT_EQ(patches.stacked().rows(), static_cast<Eigen::Index>(oh) * ow * n);

                        Eigen::VectorXf u(patches.patch_size());
                        for (auto& v : u) v = normal(rng);
                        for (int oy = 0; oy < oh; ++oy)
                            for (int ox = 0; ox < ow; ++ox) {
                                const int k = patches.position_of(oy, ox);
                                const auto block = patches.block(k);
                                const Eigen::VectorXf product = block * u;
                                for (int i = 0; i < n; ++i) {
                                    // Element-wise: column j = (c, ky, kx).
                                    int j = 0;
                                    for (int c = 0; c < channels; ++c)
                                        for (int ky = 0; ky < kernel; ++ky)
                                            for (int kx = 0; kx < kernel; ++kx, ++j)
                                                ASSERT_EQ(block(i, j),
                                                          padded_pixel(d, i, c, oy * stride - padding + ky,
                                                                       ox * stride - padding + kx))
                                                    << "sample " << i << " output (" << oy << "," << ox << ") column "
                                                    << j;
                                    const Reference r = direct_convolution(d, a, i, oy, ox, u);
                                    ASSERT_NEAR(product[i], r.value, 1e-5 * r.magnitude + 1e-6)
                                        << "sample " << i << " output (" << oy << "," << ox << ")";
                                }
                            }
                        ++checked;
                    }
    EXPECT_GT(checked, 150);  // the skip rule above must not silently drop most cases
}

TEST(PatchMatrix, ColumnsAreChannelThenKernelRowThenKernelColumn) {
    // value = 100 c + 10 y + x makes every entry name its own source pixel.
    const Dataset d = make_dataset(2, 2, 3, 4, [](int i, int c, int y, int x) {
        return static_cast<float>(1000 * i + 100 * c + 10 * y + x);
    });
    const PatchMatrices patches = extract_patches(d, conv(2, 1, 0));
    ASSERT_EQ(patches.out_height(), 2);
    ASSERT_EQ(patches.out_width(), 3);
    const int k = patches.position_of(1, 2);
    EXPECT_EQ(k, 5);
    Eigen::RowVectorXf expected(8);
    expected << 1012, 1013, 1022, 1023, 1112, 1113, 1122, 1123;
    EXPECT_EQ(Eigen::RowVectorXf(patches.block(k).row(1)), expected);
    // Same row through the stacked, position-major layout: row k*n + i.
    EXPECT_EQ(Eigen::RowVectorXf(patches.stacked().row(k * 2 + 1)), expected);
    EXPECT_EQ(patches.block(k).data(), patches.stacked().data() + (k * 2) * 8);
}

TEST(PatchMatrix, PaddingRowsAndColumnsAreZero) {
    const Dataset d = make_dataset(1, 1, 2, 2, [](int, int, int, int) { return 1.0f; });
    const PatchMatrices patches = extract_patches(d, conv(3, 1, 1));
    ASSERT_EQ(patches.positions(), 4);
    // Top-left output: the kernel covers padding on its first row and first column.
    Eigen::RowVectorXf expected(9);
    expected << 0, 0, 0, 0, 1, 1, 0, 1, 1;
    EXPECT_EQ(Eigen::RowVectorXf(patches.block(0).row(0)), expected);
    EXPECT_FLOAT_EQ(patches.stacked().sum(), 16.0f);  // each of the 4 pixels seen by 4 outputs
}

TEST(PatchMatrix, SameResultWithOneAndTwoThreads) {
    const Dataset d = random_dataset(70, 3, 16, 16, 11);  // 17920 rows: 4 full Gram blocks + a ragged one
    const Architecture a = conv(3, 1, 1, 4);
    auto run = [&](std::size_t threads) {
        oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, threads);
        PatchMatrices patches = extract_patches(d, a);
        RankReport rank = numerical_rank(patches);
        return std::pair{std::move(patches), std::move(rank)};
    };
    const auto [one, rank_one] = run(1);
    const auto [two, rank_two] = run(2);
    ASSERT_GT(one.stacked().rows(), 4 * 4096);  // several Gram blocks, so the reduction really splits
    EXPECT_TRUE(one.stacked() == two.stacked());
    EXPECT_EQ(rank_one.rank, rank_two.rank);
    EXPECT_EQ(rank_one.singular_values, rank_two.singular_values);  // bit-identical: deterministic reduction
}

TEST(PatchMatrix, RejectsKernelLargerThanPaddedInput) {
    const Dataset d = random_dataset(2, 1, 3, 3, 1);
    // (3 - 4) / 2 + 1 truncates to 1 output; the extractor must not believe it.
    expect_error([&] { (void)extract_patches(d, conv(4, 2, 0)); }, ErrorKind::bad_input, "conv4x4s2p0");
    expect_error([&] { (void)extract_patches(d, conv(6, 1, 1)); }, ErrorKind::bad_input, "kernel larger");
    EXPECT_NO_THROW((void)extract_patches(d, conv(5, 1, 1)));
    expect_error([&] { (void)extract_patches(d, conv(0, 1, 0)); }, ErrorKind::bad_input, "kernel size 0");
    expect_error([&] { (void)extract_patches(d, conv(3, 0, 0)); }, ErrorKind::bad_input, "stride 0");
    expect_error([&] { (void)extract_patches(d, conv(3, 1, -1)); }, ErrorKind::bad_input, "padding -1");
    EXPECT_EQ(patch_memory_bytes(2, d.shape, conv(4, 2, 0)), 0u);
}

TEST(PatchMatrix, RejectsEmptyOrInconsistentDataset) {
    Dataset d = random_dataset(2, 1, 4, 4, 1);
    Dataset empty = d;
    empty.labels.clear();
    empty.images.clear();
    expect_error([&] { (void)extract_patches(empty, conv(3, 1, 0)); }, ErrorKind::bad_input, "empty dataset");
    d.images.pop_back();
    expect_error([&] { (void)extract_patches(d, conv(3, 1, 0)); }, ErrorKind::bad_input, "31 values");
}

TEST(PatchMatrix, MemoryEstimateCoversTheStackedMatrix) {
    const Dataset d = random_dataset(5, 3, 9, 7, 3);
    const Architecture a = conv(3, 2, 1, 2);
    const PatchMatrices patches = extract_patches(d, a);
    const std::size_t stacked_bytes = static_cast<std::size_t>(patches.stacked().size()) * sizeof(float);
    const std::size_t estimate = patch_memory_bytes(5, d.shape, a);
    EXPECT_GE(estimate, stacked_bytes);
    EXPECT_LT(estimate, stacked_bytes + 1024);  // bookkeeping is small next to the matrix
    // Linear in n: doubling the samples adds one more stacked matrix.
    EXPECT_EQ(patch_memory_bytes(10, d.shape, a) - estimate, stacked_bytes);
    // MNIST-sized request: 60000 x 676 x 9 floats.
    EXPECT_GE(patch_memory_bytes(60000, {1, 28, 28}, conv(3, 1, 0, 2)), 60000ull * 676 * 9 * 4);
    // Saturates instead of wrapping around.
    EXPECT_EQ(patch_memory_bytes(std::numeric_limits<std::size_t>::max() / 2, {3, 64, 64}, conv(3, 1, 1, 2)),
              std::numeric_limits<std::size_t>::max());
}

TEST(PatchMatrix, MemoryLimitIsALimitError) {
    const Dataset d = random_dataset(4, 1, 8, 8, 5);
    const Architecture a = conv(3, 1, 0, 2);
    const std::size_t needed = patch_memory_bytes(4, d.shape, a);
    expect_error([&] { (void)extract_patches(d, a, needed - 1); }, ErrorKind::limit,
                 "lower the number of samples or the kernel size");
    expect_error([&] { (void)extract_patches(d, a, 100); }, ErrorKind::limit, "limit is 100 B");
    EXPECT_NO_THROW((void)extract_patches(d, a, needed));
    EXPECT_NO_THROW((void)extract_patches(d, a));
}

// ---- pooling regions ---------------------------------------------------------------------

TEST(PoolingRegions, FormAPartitionWithBalancedBands) {
    for (int oh = 1; oh <= 9; ++oh)
        for (int ow = 1; ow <= 9; ++ow)
            for (int g = 1; g <= std::min(oh, ow); ++g) {
                SCOPED_TRACE(std::to_string(oh) + "x" + std::to_string(ow) + " G" + std::to_string(g));
                const PoolingRegions r = make_pooling_regions(oh, ow, g);
                ASSERT_EQ(r.count(), g * g);
                ASSERT_EQ(r.region_of_position.size(), static_cast<std::size_t>(oh * ow));
                ASSERT_EQ(r.positions.size(), static_cast<std::size_t>(g * g));
                ASSERT_EQ(r.sizes.size(), static_cast<std::size_t>(g * g));
                std::vector<int> seen(oh * ow, 0);
                for (int region = 0; region < g * g; ++region) {
                    ASSERT_EQ(r.sizes[region], static_cast<int>(r.positions[region].size()));
                    ASSERT_GT(r.sizes[region], 0);
                    for (int p : r.positions[region]) {
                        ++seen[p];
                        ASSERT_EQ(r.region_of_position[p], region);
                    }
                }
                for (int p = 0; p < oh * ow; ++p) ASSERT_EQ(seen[p], 1) << "position " << p;
                // Each position's band, by the floor rule written independently.
                for (int oy = 0; oy < oh; ++oy)
                    for (int ox = 0; ox < ow; ++ox) {
                        int ry = 0, rx = 0;
                        while ((ry + 1) * oh / g <= oy) ++ry;
                        while ((rx + 1) * ow / g <= ox) ++rx;
                        ASSERT_EQ(r.region_of_position[oy * ow + ox], ry * g + rx);
                    }
                // Band heights / widths differ by at most one.
                std::set<int> heights, widths;
                for (int b = 0; b < g; ++b) {
                    heights.insert(r.row_begin(b + 1) - r.row_begin(b));
                    widths.insert(r.column_begin(b + 1) - r.column_begin(b));
                }
                ASSERT_LE(*heights.rbegin() - *heights.begin(), 1);
                ASSERT_LE(*widths.rbegin() - *widths.begin(), 1);
                ASSERT_EQ(r.row_begin(g), oh);
                ASSERT_EQ(r.column_begin(g), ow);
            }
}

TEST(PoolingRegions, GlobalPoolingIsOneRegionOfAllPositions) {
    const PoolingRegions r = make_pooling_regions(5, 3, 1);
    ASSERT_EQ(r.count(), 1);
    EXPECT_EQ(r.sizes[0], 15);
    std::vector<int> all(15);
    for (int p = 0; p < 15; ++p) all[p] = p;
    EXPECT_EQ(r.positions[0], all);
}

TEST(PoolingRegions, GridEqualToSquareMapGivesOnePositionPerRegion) {
    const PoolingRegions r = make_pooling_regions(6, 6, 6);
    for (int p = 0; p < 36; ++p) {
        EXPECT_EQ(r.region_of_position[p], p);
        EXPECT_EQ(r.positions[p], std::vector<int>{p});
    }
}

TEST(PoolingRegions, DivisibleGridEqualsAveragePoolWindows) {
    // 6x4 map, G = 2: AveragePool kernel = stride = (3, 2).
    const PoolingRegions r = make_pooling_regions(6, 4, 2);
    for (int oy = 0; oy < 6; ++oy)
        for (int ox = 0; ox < 4; ++ox) EXPECT_EQ(r.region_of_position[oy * 4 + ox], (oy / 3) * 2 + ox / 2);
    for (int size : r.sizes) EXPECT_EQ(size, 6);
}

TEST(PoolingRegions, RejectsGridsWithEmptyRegions) {
    expect_error([] { (void)make_pooling_regions(5, 5, 6); }, ErrorKind::bad_input, "pool6");
    expect_error([] { (void)make_pooling_regions(7, 4, 5); }, ErrorKind::bad_input, "7x4");
    expect_error([] { (void)make_pooling_regions(5, 5, 0); }, ErrorKind::bad_input, "pool0");
    // Through extraction: 6x6 input, conv3 valid -> 4x4 map, pool5 cannot fit.
    const Dataset d = random_dataset(1, 1, 6, 6, 2);
    expect_error([&] { (void)extract_patches(d, conv(3, 1, 0, 5)); }, ErrorKind::bad_input, "pool5");
    const PatchMatrices patches = extract_patches(d, conv(3, 1, 0, 4));
    EXPECT_EQ(patches.regions().count(), 16);
    EXPECT_EQ(patches.regions().region_of_position.size(), static_cast<std::size_t>(patches.positions()));
}

// ---- rank ----------------------------------------------------------------------------------

TEST(RankOfPatches, RandomDataIsFullRank) {
    const Dataset d = random_dataset(6, 3, 8, 8, 21);
    const RankReport report = numerical_rank(extract_patches(d, conv(3, 1, 1)));
    EXPECT_EQ(report.rank, 27);
    EXPECT_EQ(report.rtol, default_rank_rtol);
    ASSERT_EQ(report.singular_values.size(), 27u);
    for (std::size_t i = 1; i < report.singular_values.size(); ++i)
        EXPECT_GE(report.singular_values[i - 1], report.singular_values[i]);
    EXPECT_GT(report.singular_values.back(), 1e-3 * report.singular_values.front());
}

TEST(RankOfPatches, ChannelConstantImagesHaveRankC) {
    for (int channels : {1, 2, 3}) {
        std::mt19937 rng(channels);
        std::uniform_real_distribution<float> uniform(0.1f, 1.0f);
        std::vector<float> level(6 * channels);
        for (auto& v : level) v = uniform(rng);
        const Dataset d = make_dataset(6, channels, 7, 6,
                                       [&](int i, int c, int, int) { return level[i * channels + c]; });
        // Padding 0: every patch is (level_c repeated k*k times) per channel.
        const RankReport report = numerical_rank(extract_patches(d, conv(3, 1, 0)));
        EXPECT_EQ(report.rank, channels);
        // With padding, border patches mix in zeros and the rank grows past C.
        EXPECT_GT(numerical_rank(extract_patches(d, conv(3, 1, 1))).rank, channels);
    }
}

TEST(RankOfPatches, PolynomialImagesSpanThePolynomialPatchSpace) {
    // Patches of a polynomial image are polynomials of the same degree in (ky, kx): images of
    // degree <= 1 give a 3-dimensional patch space per channel, degree <= 2 a 6-dimensional
    // one. Small integer coefficients keep every value exact in float.
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> coefficient(-4, 4);
    std::vector<int> a(8 * 2 * 6);
    for (auto& v : a) v = coefficient(rng);
    auto affine = [&](int i, int c, int y, int x) {
        const int* p = &a[(i * 2 + c) * 6];
        return static_cast<float>(p[0] + p[1] * y + p[2] * x);
    };
    auto quadratic = [&](int i, int c, int y, int x) {
        const int* p = &a[(i * 2 + c) * 6];
        return static_cast<float>(p[0] + p[1] * y + p[2] * x + p[3] * y * y + p[4] * x * y + p[5] * x * x);
    };
    EXPECT_EQ(numerical_rank(extract_patches(make_dataset(8, 1, 9, 9, affine), conv(3, 1, 0))).rank, 3);
    EXPECT_EQ(numerical_rank(extract_patches(make_dataset(8, 2, 9, 9, affine), conv(3, 1, 0))).rank, 6);
    EXPECT_EQ(numerical_rank(extract_patches(make_dataset(8, 1, 9, 9, quadratic), conv(3, 2, 0))).rank, 6);
    EXPECT_EQ(numerical_rank(extract_patches(make_dataset(8, 1, 9, 9, quadratic), conv(5, 1, 0))).rank, 6);

    // 1x1 kernel on 3 channels whose pixel vectors lie in a fixed plane of R^3.
    const Dataset plane = make_dataset(4, 3, 5, 5, [](int i, int c, int y, int x) {
        const int s = (i + 2 * y + x) % 7 - 3, t = (3 * i + y * x) % 5 - 2;
        const int v1[3] = {1, 2, -1}, v2[3] = {0, 1, 3};
        return static_cast<float>(s * v1[c] + t * v2[c]);
    });
    EXPECT_EQ(numerical_rank(extract_patches(plane, conv(1, 1, 0))).rank, 2);
}

TEST(RankOfPatches, MatchesEigenSvdOnSmallMatrix) {
    // Channels at very different scales spread the singular values over decades.
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    const float scale[3] = {1.0f, 0.05f, 0.002f};
    const Dataset spread = make_dataset(4, 3, 6, 6, [&](int, int c, int, int) { return scale[c] * uniform(rng); });
    const Dataset constant = make_dataset(4, 2, 6, 6, [](int i, int c, int, int) {
        return 0.3f + 0.2f * static_cast<float>(i) - 0.1f * static_cast<float>(c);
    });
    for (const Dataset* d : {&spread, &constant}) {
        const PatchMatrices patches = extract_patches(*d, conv(3, 1, d == &spread ? 1 : 0));
        const Eigen::MatrixXd m = patches.stacked().cast<double>();
        const RankReport report = numerical_rank(patches);

        Eigen::BDCSVD<Eigen::MatrixXd> bdc(m);
        const Eigen::VectorXd& reference = bdc.singularValues();
        ASSERT_EQ(static_cast<Eigen::Index>(report.singular_values.size()), reference.size());
        int compared = 0;
        for (Eigen::Index i = 0; i < reference.size(); ++i) {
            if (reference[i] <= 1e-3 * reference[0]) continue;
            EXPECT_NEAR(report.singular_values[i], reference[i], 1e-4 * reference[i]) << "singular value " << i;
            ++compared;
        }
        EXPECT_GT(compared, 0);

        Eigen::JacobiSVD<Eigen::MatrixXd> jacobi(m);
        jacobi.setThreshold(default_rank_rtol);
        EXPECT_EQ(report.rank, jacobi.rank());
    }
    EXPECT_EQ(numerical_rank(extract_patches(constant, conv(3, 1, 0))).rank, 2);
}

TEST(RankOfPatches, GramMatrixEqualsDirectProductOverManyBlocks) {
    std::mt19937 rng(13);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    RowMatrixF m(10000, 7);  // several 4096-row blocks plus a ragged end
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = uniform(rng);
    const Eigen::MatrixXd md = m.cast<double>();
    const Eigen::MatrixXd expected = md.transpose() * md;
    const Eigen::MatrixXd gram = gram_matrix(m);
    EXPECT_LT((gram - expected).norm(), 1e-12 * expected.norm());
    EXPECT_TRUE(gram.isApprox(gram.transpose(), 0.0));
}

TEST(RankOfPatches, ZeroImagesHaveRankZeroAndToleranceIsChecked) {
    const Dataset zeros = make_dataset(2, 1, 4, 4, [](int, int, int, int) { return 0.0f; });
    const PatchMatrices patches = extract_patches(zeros, conv(2, 1, 0));
    const RankReport report = numerical_rank(patches);
    EXPECT_EQ(report.rank, 0);
    EXPECT_EQ(report.singular_values, std::vector<double>(4, 0.0));
    expect_error([&] { (void)numerical_rank(patches, 0.0); }, ErrorKind::bad_input, "rank tolerance");
    expect_error([&] { (void)numerical_rank(patches, 1.0); }, ErrorKind::bad_input, "rank tolerance");
    expect_error([&] { (void)numerical_rank(patches, std::nan("")); }, ErrorKind::bad_input, "rank tolerance");
    // A looser tolerance can only lower the rank.
    const Dataset d = random_dataset(3, 1, 6, 6, 4);
    const PatchMatrices random = extract_patches(d, conv(3, 1, 0));
    EXPECT_EQ(numerical_rank(random, 0.999).rank, 1);
    EXPECT_EQ(numerical_rank(random, 1e-6).rank, 9);
}
