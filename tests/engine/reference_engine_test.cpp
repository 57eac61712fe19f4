// The reference forward pass, checked against a direct evaluation of model.hpp's
// definition written here with nothing shared: nested loops over images, filters, output
// positions, channels and kernel offsets, double accumulation, pooling bands computed from
// the documented floor(r * OH / G) formula (not from make_pooling_regions).
#include "cvxcnn/engine/reference_engine.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <oneapi/tbb/global_control.h>

#include "cvxcnn/util/error.hpp"

using namespace cvxcnn;

namespace {

struct Geometry {
    int channels, height, width, kernel, stride, padding, grid;
};

std::string arch_text(const Geometry& g, const std::string& activation) {
    return "conv" + std::to_string(g.kernel) + "x" + std::to_string(g.kernel) + "s" + std::to_string(g.stride) + "p" +
           std::to_string(g.padding) + "-" + activation + "-pool" + std::to_string(g.grid);
}

std::string describe(const Geometry& g, const std::string& activation) {
    return std::to_string(g.channels) + "x" + std::to_string(g.height) + "x" + std::to_string(g.width) + " " +
           arch_text(g, activation);
}

template <typename F>
Dataset make_dataset(int n, const ImageShape& shape, F value) {
    Dataset d;
    d.shape = shape;
    d.labels.assign(static_cast<std::size_t>(n), 0);
    d.class_names = {"only"};
    d.images.resize(static_cast<std::size_t>(n) * shape.values());
    for (auto& v : d.images) v = value();
    return d;
}

Dataset random_images(int n, const ImageShape& shape, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    return make_dataset(n, shape, [&] { return pixel(rng); });
}

std::vector<std::string> class_names(int classes) {
    std::vector<std::string> names;
    for (int c = 0; c < classes; ++c) names.push_back("class" + std::to_string(c));
    return names;
}

template <typename F>
void fill(Tensor& tensor, F value) {
    for (auto& v : tensor.data) v = value();
}

// A model with every weight drawn from value() and a non-trivial normalization.
template <typename F>
Model make_filled_model(const Architecture& a, const ImageShape& input, int filters, int classes, F value,
                        Normalization normalization) {
    Model model = make_model(a, input, class_names(classes), filters);
    fill(model.conv_weight, value);
    fill(model.conv_bias, value);
    fill(model.gate_weight, value);
    fill(model.fc_weight, value);
    fill(model.fc_bias, value);
    model.normalization = std::move(normalization);
    validate(model);
    return model;
}

Normalization some_normalization(int channels) {
    const float means[] = {0.4f, 0.55f, 0.3f}, stds[] = {0.2f, 0.3f, 0.45f};
    Normalization n;
    for (int c = 0; c < channels; ++c) {
        n.mean.push_back(means[c]);
        n.std.push_back(stds[c]);
    }
    return n;
}

Model random_model(const Architecture& a, const ImageShape& input, int filters, int classes, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.5f);
    return make_filled_model(a, input, filters, classes, [&] { return normal(rng); },
                             some_normalization(input.channels));
}

// Band of output coordinate o: r with floor(r * size / G) <= o < floor((r + 1) * size / G).
int band(int o, int size, int grid) {
    for (int r = 0; r < grid; ++r)
        if (o >= r * size / grid && o < (r + 1) * size / grid) return r;
    ADD_FAILURE() << "coordinate " << o << " in no band";
    return 0;
}

struct Naive {
    RowMatrixD logits;
    RowMatrixD magnitude;  // same computation on absolute values: the scale of float rounding
};

Naive naive_logits(const Model& model, const Dataset& d) {
    const Architecture& a = model.architecture;
    const int n = static_cast<int>(d.size()), m = model.filters(), classes = model.classes();
    const int channels = d.shape.channels, height = d.shape.height, width = d.shape.width, k = a.kernel;
    const int grid = a.pool_grid, regions = grid * grid;
    int oh = 0, ow = 0;  // counted, not computed by formula
    while (oh * a.stride + k <= height + 2 * a.padding) ++oh;
    while (ow * a.stride + k <= width + 2 * a.padding) ++ow;
    auto input = [&](int i, int c, int y, int x) -> double {
        if (y < 0 || y >= height || x < 0 || x >= width) return 0.0;  // zero padding of the normalized input
        const double v = d.images[((static_cast<std::size_t>(i) * channels + c) * height + y) * width + x];
        return (v - model.normalization.mean[c]) / model.normalization.std[c];
    };
    auto w = [&](const Tensor& t, int f, int c, int ky, int kx) -> double {
        return t.data[((static_cast<std::size_t>(f) * channels + c) * k + ky) * k + kx];
    };
    Naive result{RowMatrixD::Zero(n, classes), RowMatrixD::Zero(n, classes)};
    for (int i = 0; i < n; ++i) {
        std::vector<double> pooled(static_cast<std::size_t>(m) * regions, 0.0), scale(pooled.size(), 0.0);
        std::vector<int> count(regions, 0);
        for (int f = 0; f < m; ++f)
            for (int oy = 0; oy < oh; ++oy)
                for (int ox = 0; ox < ow; ++ox) {
                    double z = model.conv_bias.data[f], zabs = std::abs(z), gate = 0.0;
                    for (int c = 0; c < channels; ++c)
                        for (int ky = 0; ky < k; ++ky)
                            for (int kx = 0; kx < k; ++kx) {
                                const double x = input(i, c, oy * a.stride - a.padding + ky, ox * a.stride - a.padding + kx);
                                z += w(model.conv_weight, f, c, ky, kx) * x;
                                zabs += std::abs(w(model.conv_weight, f, c, ky, kx) * x);
                                if (a.activation == Activation::gated_relu) gate += w(model.gate_weight, f, c, ky, kx) * x;
                            }
                    double y = 0.0;
                    switch (a.activation) {
                        case Activation::relu: y = std::max(z, 0.0); break;
                        case Activation::gated_relu: y = gate >= 0.0 ? z : 0.0; break;
                        case Activation::leaky_relu: y = std::max(static_cast<double>(a.leaky_slope) * z, z); break;
                        case Activation::absolute: y = std::abs(z); break;
                    }
                    const int r = band(oy, oh, grid) * grid + band(ox, ow, grid);
                    pooled[static_cast<std::size_t>(f) * regions + r] += y;
                    scale[static_cast<std::size_t>(f) * regions + r] += zabs;
                    if (f == 0) ++count[r];
                }
        for (int c = 0; c < classes; ++c) {
            double logit = model.fc_bias.data[c], magnitude = std::abs(logit);
            for (int j = 0; j < m * regions; ++j) {
                const double fc = model.fc_weight.data[static_cast<std::size_t>(c) * m * regions + j];
                logit += fc * pooled[j] / count[j % regions];
                magnitude += std::abs(fc) * scale[j] / count[j % regions];
            }
            result.logits(i, c) = logit;
            result.magnitude(i, c) = magnitude;
        }
    }
    return result;
}

// |reference - naive| <= 1e-5 relative to the magnitude of the terms summed: a plain
// relative error would be meaningless for a logit that cancels to nearly 0.
void expect_close(const RowMatrixF& got, const Naive& want, double* worst = nullptr) {
    ASSERT_EQ(got.rows(), want.logits.rows());
    ASSERT_EQ(got.cols(), want.logits.cols());
    for (Eigen::Index i = 0; i < got.rows(); ++i)
        for (Eigen::Index c = 0; c < got.cols(); ++c) {
            const double error = std::abs(got(i, c) - want.logits(i, c));
            const double scale = std::max(want.magnitude(i, c), 1e-30);
            EXPECT_LE(error, 1e-5 * scale) << "image " << i << " class " << c << ": " << got(i, c) << " vs "
                                           << want.logits(i, c);
            if (worst) *worst = std::max(*worst, error / scale);
        }
}

template <typename F>
void expect_error(F&& call, ErrorKind kind, const std::vector<std::string>& fragments) {
    try {
        call();
        FAIL() << "expected cvxcnn::Error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), kind) << e.what();
        for (const auto& fragment : fragments)
            EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
}

const std::vector<std::string> activations = {"relu", "gated", "leaky0.1", "abs"};

}  // namespace

TEST(ReferenceEngine, MatchesNaiveForAllActivationsAndGeometries) {
    // Odd and even sides, non-square maps, padding 0/1/2, stride 1/2, 1 and 3 channels and
    // G = 1, 2, 3 with bands that divide the map and bands that do not.
    const std::vector<Geometry> geometries = {
        {1, 5, 5, 3, 1, 0, 2},  // 3x3 map, bands 1,2
        {3, 5, 5, 3, 2, 1, 3},  // 3x3 map, bands 1,1,1
        {1, 6, 7, 3, 1, 1, 3},  // 6x7 map, rows 2,2,2, columns 2,2,3
        {3, 6, 7, 3, 2, 2, 2},  // 4x5 map, columns 2,3
        {1, 9, 9, 3, 1, 2, 3},  // 11x11 map, bands 3,4,4
        {3, 9, 9, 5, 2, 2, 2},  // 5x5 map, bands 2,3
        {1, 7, 6, 5, 1, 2, 3},  // 7x6 map, rows 2,2,3, columns 2,2,2
        {3, 6, 7, 1, 2, 0, 2},  // 1x1 kernel, 3x4 map
        {1, 5, 5, 5, 1, 0, 1},  // kernel = image: one position
        {3, 9, 9, 3, 2, 0, 3},  // 4x4 map, bands 1,1,2
        {1, 6, 6, 3, 1, 1, 2},  // 6x6 map, even bands 3,3
    };
    unsigned seed = 1;
    double worst = 0.0;
    for (const auto& g : geometries)
        for (const auto& activation : activations) {
            SCOPED_TRACE(describe(g, activation));
            const ImageShape shape{g.channels, g.height, g.width};
            const Model model = random_model(parse_architecture(arch_text(g, activation)), shape, 4, 3, seed++);
            const Dataset images = random_images(5, shape, seed++);
            expect_close(reference_logits(model, images, 2), naive_logits(model, images), &worst);  // 2 does not divide 5
        }
    char text[32];
    std::snprintf(text, sizeof text, "%.3g", worst);
    RecordProperty("worst_relative_error", text);
}

TEST(ReferenceEngine, IntegerWeightsAndInputsGiveExactlyTheNaiveResult) {
    // benchdnn's trick: small integers, normalization by powers of two and pooling regions
    // of power-of-two size keep every intermediate exact in float, so any rounding or
    // indexing difference shows up as inequality. Integer gates also hit g.x == 0 exactly,
    // which checks the open-at-zero convention 1[g.x >= 0].
    const std::vector<Geometry> geometries = {
        {1, 8, 8, 3, 1, 1, 2},  // 8x8 map, regions of 16
        {3, 8, 8, 3, 2, 1, 2},  // 4x4 map, regions of 4
        {3, 8, 4, 3, 1, 1, 2},  // 8x4 map, regions of 8
        {1, 4, 4, 3, 1, 1, 1},  // global average of 16
        {3, 6, 6, 3, 1, 0, 4},  // 4x4 map, regions of 1
        {1, 6, 6, 3, 1, 2, 1},  // padding 2, 8x8 map, global average of 64
    };
    const std::vector<std::string> exact_activations = {"relu", "gated", "leaky0.25", "abs"};
    unsigned seed = 100;
    for (const auto& g : geometries)
        for (const auto& activation : exact_activations) {
            SCOPED_TRACE(describe(g, activation));
            const ImageShape shape{g.channels, g.height, g.width};
            std::mt19937 rng(seed++);
            std::uniform_int_distribution<int> small(-3, 3), pixel(0, 4);
            Normalization norm;
            const float means[] = {1.0f, 2.0f, 3.0f}, stds[] = {0.5f, 1.0f, 0.25f};
            for (int c = 0; c < g.channels; ++c) {
                norm.mean.push_back(means[c]);
                norm.std.push_back(stds[c]);
            }
            const Model model = make_filled_model(parse_architecture(arch_text(g, activation)), shape, 5, 4,
                                                  [&] { return static_cast<float>(small(rng)); }, norm);
            const Dataset images = make_dataset(6, shape, [&] { return static_cast<float>(pixel(rng)); });
            const RowMatrixF got = reference_logits(model, images, 4);
            const Naive want = naive_logits(model, images);
            for (Eigen::Index i = 0; i < got.rows(); ++i)
                for (Eigen::Index c = 0; c < got.cols(); ++c)
                    ASSERT_EQ(static_cast<double>(got(i, c)), want.logits(i, c)) << "image " << i << " class " << c;
            // Not all zero: the test would be vacuous otherwise.
            EXPECT_GT(got.cwiseAbs().maxCoeff(), 1.0f);
        }
}

TEST(ReferenceEngine, BatchSizeAndThreadCountDoNotChangeTheResult) {
    const ImageShape shape{3, 9, 9};
    const Model model = random_model(parse_architecture("conv3x3s1p1-gated-pool3"), shape, 6, 4, 21);
    const Dataset images = random_images(23, shape, 22);
    const std::vector<float> before = images.images;
    const RowMatrixF all = reference_logits(model, images);  // default batch 256 > n
    EXPECT_EQ(images.images, before) << "normalization must work on a copy";
    expect_close(all, naive_logits(model, images));
    for (const std::size_t batch : {1, 2, 5, 23, 24}) {
        SCOPED_TRACE("batch " + std::to_string(batch));
        EXPECT_EQ(reference_logits(model, images, batch), all);
    }
    for (const std::size_t threads : {1, 2}) {
        SCOPED_TRACE("threads " + std::to_string(threads));
        oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism, threads);
        EXPECT_EQ(reference_logits(model, images, 3), all);
    }
}

TEST(ReferenceEngine, SingleImageBatchOfOne) {
    const ImageShape shape{1, 6, 7};
    const Model model = random_model(parse_architecture("conv3x3s2p1-abs-pool2"), shape, 3, 2, 31);
    const Dataset images = random_images(1, shape, 32);
    expect_close(reference_logits(model, images, 1), naive_logits(model, images));
}

TEST(ReferenceEngine, ModelWithoutFiltersPredictsFcBias) {
    for (const auto& activation : activations) {
        SCOPED_TRACE(activation);
        const ImageShape shape{3, 5, 5};
        const Model model = random_model(parse_architecture("conv3x3s1p1-" + activation + "-pool2"), shape, 0, 3, 41);
        ASSERT_EQ(model.filters(), 0);
        const RowMatrixF logits = reference_logits(model, random_images(4, shape, 42), 3);
        ASSERT_EQ(logits.rows(), 4);
        ASSERT_EQ(logits.cols(), 3);
        for (Eigen::Index i = 0; i < 4; ++i)
            for (Eigen::Index c = 0; c < 3; ++c) EXPECT_EQ(logits(i, c), model.fc_bias.data[c]);
    }
}

TEST(ReferenceEngine, EmptyDatasetGivesNoRows) {
    const ImageShape shape{1, 5, 5};
    const Model model = random_model(parse_architecture("conv3x3-relu-pool1"), shape, 2, 3, 51);
    const RowMatrixF logits = reference_logits(model, random_images(0, shape, 52));
    EXPECT_EQ(logits.rows(), 0);
    EXPECT_EQ(logits.cols(), 3);
}

TEST(ReferenceEngine, RejectsMismatchedInput) {
    const ImageShape shape{1, 9, 9};
    const Model model = random_model(parse_architecture("conv3x3s1p1-relu-pool3"), shape, 2, 3, 61);
    expect_error([&] { (void)reference_logits(model, random_images(2, {3, 9, 9}, 62)); }, ErrorKind::bad_input,
                 {"3x9x9", "1x9x9"});
    expect_error([&] { (void)reference_logits(model, random_images(2, {1, 9, 8}, 63)); }, ErrorKind::bad_input,
                 {"1x9x8", "1x9x9"});
    expect_error([&] { (void)reference_logits(model, random_images(2, shape, 64), 0); }, ErrorKind::bad_input,
                 {"batch"});
    Dataset short_buffer = random_images(2, shape, 65);
    short_buffer.images.pop_back();
    expect_error([&] { (void)reference_logits(model, short_buffer); }, ErrorKind::bad_input, {"values"});
    Model broken = model;
    broken.fc_bias.data.pop_back();
    broken.fc_bias.shape = {2};
    expect_error([&] { (void)reference_logits(broken, random_images(2, shape, 66)); }, ErrorKind::bad_input,
                 {"invalid model", "fc_bias"});
}

// ---- softmax / argmax ----------------------------------------------------------------

TEST(ReferenceSoftmax, MatchesFormulaAndSurvivesLargeLogits) {
    RowMatrixF logits(4, 3);
    logits << 1, 2, 3,  //
        1000, 1000, 999,  // exp(1000) overflows float: needs the max subtraction
        -1000, 0, -1000,  //
        0, 0, 0;
    const RowMatrixF p = softmax_rows(logits);
    const double e1 = std::exp(1.0), e2 = std::exp(2.0), e3 = std::exp(3.0), s = e1 + e2 + e3;
    EXPECT_NEAR(p(0, 0), e1 / s, 1e-7);
    EXPECT_NEAR(p(0, 1), e2 / s, 1e-7);
    EXPECT_NEAR(p(0, 2), e3 / s, 1e-7);
    const double t = 2.0 + std::exp(-1.0);
    EXPECT_NEAR(p(1, 0), 1.0 / t, 1e-7);
    EXPECT_NEAR(p(1, 2), std::exp(-1.0) / t, 1e-7);
    EXPECT_EQ(p(2, 1), 1.0f);
    EXPECT_EQ(p(2, 0), 0.0f);
    EXPECT_FLOAT_EQ(p(3, 0), 1.0f / 3.0f);
    for (Eigen::Index i = 0; i < p.rows(); ++i) {
        EXPECT_TRUE(p.row(i).allFinite());
        EXPECT_NEAR(p.row(i).sum(), 1.0f, 1e-6);
    }
    EXPECT_EQ(softmax_rows(RowMatrixF(0, 3)).rows(), 0);
}

TEST(ReferenceArgmax, FirstMaximumWinsTies) {
    RowMatrixF m(4, 3);
    m << 0, 5, 5,  //
        -3, -1, -2,  //
        7, 7, 7,  //
        0, 0, 1;
    EXPECT_EQ(argmax_rows(m), (std::vector<std::int32_t>{1, 1, 0, 2}));
    EXPECT_TRUE(argmax_rows(RowMatrixF(0, 3)).empty());
    expect_error([] { (void)argmax_rows(RowMatrixF(2, 0)); }, ErrorKind::bad_input, {"no columns"});
}
