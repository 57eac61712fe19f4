// The oneDNN engine against the Eigen reference forward pass (itself checked against a
// naive loop evaluation in reference_engine_test.cpp): every activation, odd and even
// sizes, padding, stride, pooling by equal bands (oneDNN pooling) and by unequal bands
// (folded into the inner product), batch 1 and 64, random and real images; the region path
// (filters wired to one pooling region, computed on it alone), alone and mixed with dense
// filters.
#include "cvxcnn/engine/onednn_engine.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/data/image_folder.hpp"
#include "cvxcnn/engine/metrics.hpp"
#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/threads.hpp"
#include "export/test_models.hpp"

using namespace cvxcnn;
using test::all_activations;
using test::architecture_text;
using test::random_images;
using test::random_model;

namespace {

// |engine - reference| <= tolerance * (largest |reference logit| of the image): relative
// to the row's scale, since a single logit may cancel to nearly 0. Returns the worst ratio.
double expect_close(const RowMatrixF& got, const RowMatrixF& want, double tolerance = 1e-4) {
    EXPECT_EQ(got.rows(), want.rows());
    EXPECT_EQ(got.cols(), want.cols());
    if (got.rows() != want.rows() || got.cols() != want.cols()) return INFINITY;
    double worst = 0.0;
    for (Eigen::Index i = 0; i < got.rows(); ++i) {
        const double scale = std::max<double>(want.row(i).cwiseAbs().maxCoeff(), 1e-30);
        for (Eigen::Index c = 0; c < got.cols(); ++c) {
            const double error = std::abs(static_cast<double>(got(i, c)) - want(i, c)) / scale;
            EXPECT_LE(error, tolerance) << "image " << i << " class " << c << ": " << got(i, c) << " vs " << want(i, c);
            worst = std::max(worst, error);
        }
    }
    return worst;
}

struct Geometry {
    int channels, height, width, kernel, stride, padding, grid;
};

std::string describe(const Geometry& g, const std::string& activation) {
    return std::to_string(g.channels) + "x" + std::to_string(g.height) + "x" + std::to_string(g.width) + " " +
           architecture_text(g.kernel, g.stride, g.padding, activation, g.grid);
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

// An exact case (IntegerWeightsAndInputsGiveExactlyTheReference): weights in [-3, 3],
// 6 images of pixels in [0, 4], normalization means c + 1 and standard deviations 1 or
// 0.5, all drawn from one engine seeded with `seed`.
struct IntegerCase {
    Model model;
    Dataset images;
};

IntegerCase integer_case(const Geometry& g, const std::string& activation, int filters, unsigned seed) {
    const ImageShape shape{g.channels, g.height, g.width};
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> small(-3, 3), pixel(0, 4);
    Normalization norm;
    for (int c = 0; c < g.channels; ++c) {
        norm.mean.push_back(static_cast<float>(c + 1));
        norm.std.push_back(c == 1 ? 1.0f : 0.5f);
    }
    // Braced initialization runs in order: the weights are drawn before the pixels.
    IntegerCase out{test::filled_model(architecture_text(g.kernel, g.stride, g.padding, activation, g.grid), shape,
                                       filters, 4, [&] { return static_cast<float>(small(rng)); }, norm),
                    random_images(6, shape, 0)};
    for (auto& v : out.images.images) v = static_cast<float>(pixel(rng));
    return out;
}

// Every logit equal, and not all of them near zero (which would make the test vacuous).
void expect_exactly(const RowMatrixF& got, const RowMatrixF& want) {
    ASSERT_EQ(got.rows(), want.rows());
    ASSERT_EQ(got.cols(), want.cols());
    for (Eigen::Index i = 0; i < got.rows(); ++i)
        for (Eigen::Index c = 0; c < got.cols(); ++c) ASSERT_EQ(got(i, c), want(i, c)) << "image " << i << " class " << c;
    EXPECT_GT(want.cwiseAbs().maxCoeff(), 1.0f) << "all-zero logits would make the test vacuous";
}

}  // namespace

TEST(OnednnEngine, MatchesReferenceForAllActivationsAndGeometries) {
    const std::vector<Geometry> geometries = {
        {1, 5, 5, 3, 1, 0, 2},    // 3x3 map, bands 1,2: folded
        {3, 5, 5, 3, 2, 1, 3},    // 3x3 map, bands 1,1,1: pooled
        {1, 6, 7, 3, 1, 1, 3},    // 6x7 map, columns 2,2,3: folded
        {3, 6, 7, 3, 2, 2, 2},    // 4x5 map: folded
        {1, 9, 9, 3, 1, 2, 3},    // 11x11 map, bands 3,4,4: folded
        {3, 9, 9, 5, 2, 2, 2},    // 5x5 map: folded
        {1, 7, 6, 5, 1, 2, 3},    // 7x6 map, rows 2,2,3: folded
        {3, 6, 7, 1, 2, 0, 2},    // 1x1 kernel, 3x4 map: folded
        {1, 5, 5, 5, 1, 0, 1},    // kernel = image: one position
        {1, 6, 6, 3, 1, 1, 2},    // 6x6 map, bands 3,3: pooled
        {3, 11, 13, 3, 1, 1, 1},  // odd sides, global average: pooled
        {1, 28, 28, 3, 1, 1, 7},  // the Fashion-MNIST shape: 4x4 bands, pooled
        {1, 28, 28, 3, 1, 1, 3},  // bands 9,9,10: folded
        {3, 3, 3, 1, 1, 0, 1},    // 1x1 kernel on RGB, global average: no gated conv with
                                  // binary post-ops exists, the separate binary steps run
        {3, 2, 2, 1, 1, 0, 1},
    };
    unsigned seed = 1;
    double worst = 0.0;
    for (const auto& g : geometries)
        for (const auto& activation : all_activations) {
            SCOPED_TRACE(describe(g, activation));
            const ImageShape shape{g.channels, g.height, g.width};
            const Model model = random_model(architecture_text(g.kernel, g.stride, g.padding, activation, g.grid),
                                             shape, 5, 3, seed++);
            const Dataset images = random_images(7, shape, seed++);
            OnednnEngine engine(model, 3);  // 3 does not divide 7: a partial last batch
            const int oh = model.architecture.conv_output_size(g.height), ow = model.architecture.conv_output_size(g.width);
            EXPECT_EQ(engine.folds_pooling(), oh % g.grid != 0 || ow % g.grid != 0);
            worst = std::max(worst, expect_close(engine.logits(images), reference_logits(model, images)));
        }
    char text[32];
    std::snprintf(text, sizeof text, "%.3g", worst);
    RecordProperty("worst_relative_error", text);
}

TEST(OnednnEngine, IntegerWeightsAndInputsGiveExactlyTheReference) {
    // benchdnn's trick: small integers, power-of-two normalization and power-of-two region
    // sizes keep every intermediate exact in float whatever the summation order, so the
    // engine must equal the reference bit for bit. Integer gates also hit g.x == 0
    // exactly: both must treat the gate as open there (1[g.x >= 0]).
    const std::vector<Geometry> geometries = {
        {1, 8, 8, 3, 1, 1, 2},  // 8x8 map, pooled regions of 16
        {3, 8, 8, 3, 2, 1, 2},  // 4x4 map, pooled regions of 4
        {1, 6, 6, 3, 1, 1, 4},  // 6x6 map, bands 1,2,1,2: folded, regions of 1, 2, 4
        {3, 6, 6, 3, 1, 2, 1},  // padding 2, 8x8 map, global average of 64
    };
    unsigned seed = 100;
    for (const auto& g : geometries)
        for (const std::string activation : {"relu", "gated", "leaky0.25", "abs"}) {
            SCOPED_TRACE(describe(g, activation));
            const IntegerCase exact = integer_case(g, activation, 5, seed++);
            OnednnEngine engine(exact.model, 4);
            expect_exactly(engine.logits(exact.images), reference_logits(exact.model, exact.images));
        }
}

TEST(OnednnEngine, BatchOfOneAndOfSixtyFourAgreeWithReference) {
    const ImageShape shape{1, 28, 28};
    for (const auto& activation : all_activations) {
        SCOPED_TRACE(activation);
        const Model model = random_model("conv3x3s1p1-" + activation + "-pool7", shape, 24, 10, 7);
        const Dataset images = random_images(64, shape, 8);
        const RowMatrixF want = reference_logits(model, images);
        OnednnEngine batch64(model, 64), batch1(model, 1);
        EXPECT_EQ(batch64.batch(), 64u);
        expect_close(batch64.logits(images), want);
        expect_close(batch1.logits(images), want);
    }
}

TEST(OnednnEngine, RealImagesGiveTheReferencePredictions) {
    // The bundled Fashion-MNIST sample: real pixel statistics (many exact zeros, a few
    // saturated values) rather than uniform noise. Equal predictions => equal accuracy.
    const std::filesystem::path folder = std::filesystem::path(CVXCNN_SOURCE_DIR) / "datasets/fashion-mnist-sample/test";
    if (!std::filesystem::exists(folder)) GTEST_SKIP() << folder << " is absent";
    ImageFolderOptions options;
    options.channels = 1;
    const Dataset images = load_image_folder(folder, options);
    ASSERT_EQ(images.shape, (ImageShape{1, 28, 28}));
    for (const std::string arch : {"conv3x3s1p1-gated-pool7", "conv5x5s2p2-relu-pool3"}) {
        SCOPED_TRACE(arch);
        Model model = random_model(arch, images.shape, 32, 10, 11);
        model.normalization = Normalization::compute(images);
        model.class_names = images.class_names;
        OnednnEngine engine(model);
        const RowMatrixF want = reference_logits(model, images);
        const RowMatrixF got = engine.logits(images);
        expect_close(got, want);
        EXPECT_EQ(argmax_rows(got), argmax_rows(want));
        const Evaluation a = evaluate(argmax_rows(got), images.labels, model.classes());
        const Evaluation b = evaluate(argmax_rows(want), images.labels, model.classes());
        EXPECT_EQ(a.accuracy, b.accuracy);
        EXPECT_EQ(a.confusion, b.confusion);
    }
}

TEST(OnednnEngine, ProbabilitiesAreTheSoftmaxOfTheLogits) {
    const ImageShape shape{3, 9, 9};
    const Model model = random_model("conv3x3s2p1-leaky0.2-pool2", shape, 6, 5, 21);
    const Dataset images = random_images(9, shape, 22);
    OnednnEngine engine(model, 4);
    const RowMatrixF p = engine.probabilities(images);
    const RowMatrixF want = softmax_rows(reference_logits(model, images));
    ASSERT_EQ(p.rows(), 9);
    for (Eigen::Index i = 0; i < p.rows(); ++i) {
        EXPECT_NEAR(p.row(i).sum(), 1.0f, 1e-5);
        for (Eigen::Index c = 0; c < p.cols(); ++c) EXPECT_NEAR(p(i, c), want(i, c), 1e-5);
    }
}

TEST(OnednnEngine, ReusedAcrossCallsOfEverySize) {
    // Batch shapes 1..4 are created, cached, evicted and rebuilt: all must give the same answer.
    const ImageShape shape{1, 7, 7};
    const Model model = random_model("conv3x3s1p1-gated-pool2", shape, 4, 3, 31);
    const Dataset all = random_images(11, shape, 32);
    OnednnEngine engine(model, 4);
    const RowMatrixF whole = engine.logits(all);
    expect_close(whole, reference_logits(model, all));
    for (std::size_t n = 1; n <= all.size(); ++n) {
        SCOPED_TRACE("n " + std::to_string(n));
        const std::span<const float> first(all.images.data(), n * shape.values());
        expect_close(engine.logits(first, n), whole.topRows(static_cast<Eigen::Index>(n)), 1e-6);
    }
    EXPECT_EQ(engine.logits(all), whole) << "same batch shapes, same primitives: same bits";
}

TEST(OnednnEngine, ThreadCountDoesNotChangeTheResult) {
    // 24 gated filters on 28x28: slices of 13 images, so batch 64 runs 5 slices in parallel.
    const ImageShape shape{1, 28, 28};
    const Model model = random_model("conv3x3s1p1-gated-pool7", shape, 24, 10, 35);
    const Dataset images = random_images(70, shape, 36);
    const RowMatrixF want = reference_logits(model, images);
    for (const int threads : {1, 2, 3}) {
        SCOPED_TRACE("threads " + std::to_string(threads));
        const ThreadLimit limit(threads);
        OnednnEngine engine(model);
        expect_close(engine.logits(images), want);
    }
}

TEST(OnednnEngine, WorksInsideTbbTasks) {
    // One engine per task; each oneDNN call then runs with one OpenMP thread.
    const ImageShape shape{1, 8, 8};
    const Model model = random_model("conv3x3s1p1-abs-pool2", shape, 4, 3, 41);
    const Dataset images = random_images(5, shape, 42);
    const RowMatrixF want = reference_logits(model, images);
    std::vector<RowMatrixF> got(6);
    oneapi::tbb::parallel_for(std::size_t{0}, got.size(), [&](std::size_t i) {
        OnednnEngine engine(model, 2);
        got[i] = engine.logits(images);
    });
    for (const auto& logits : got) expect_close(logits, want);
}

TEST(OnednnEngine, ModelWithoutFiltersPredictsFcBias) {
    for (const auto& activation : all_activations) {
        SCOPED_TRACE(activation);
        const ImageShape shape{3, 5, 5};
        const Model model = random_model("conv3x3s1p1-" + activation + "-pool2", shape, 0, 3, 51);
        OnednnEngine engine(model, 2);
        const RowMatrixF logits = engine.logits(random_images(3, shape, 52));
        ASSERT_EQ(logits.rows(), 3);
        for (Eigen::Index i = 0; i < 3; ++i)
            for (Eigen::Index c = 0; c < 3; ++c) EXPECT_EQ(logits(i, c), model.fc_bias.data[c]);
        EXPECT_NEAR(engine.probabilities(random_images(3, shape, 53)).row(2).sum(), 1.0f, 1e-6);
    }
}

TEST(OnednnEngine, EmptyInputGivesNoRows) {
    const ImageShape shape{1, 5, 5};
    OnednnEngine engine(random_model("conv3x3-relu-pool1", shape, 2, 3, 61));
    const RowMatrixF logits = engine.logits(random_images(0, shape, 62));
    EXPECT_EQ(logits.rows(), 0);
    EXPECT_EQ(logits.cols(), 3);
}

TEST(OnednnEngine, ReportsItsImplementation) {
    OnednnEngine pooled(random_model("conv3x3s1p1-gated-pool2", {1, 8, 8}, 4, 3, 71));
    const std::string text = pooled.implementation(2);
    for (const char* part : {"conv ", "gate conv ", "pool ", "ip ", "softmax "})
        EXPECT_NE(text.find(part), std::string::npos) << text;
    OnednnEngine folded(random_model("conv3x3s1p1-relu-pool3", {1, 8, 8}, 4, 3, 72));
    EXPECT_TRUE(folded.folds_pooling());
    EXPECT_EQ(folded.implementation(2).find("pool "), std::string::npos);
}

TEST(OnednnEngine, RejectsBadInput) {
    const ImageShape shape{1, 9, 9};
    const Model model = random_model("conv3x3s1p1-relu-pool3", shape, 2, 3, 81);
    OnednnEngine engine(model);
    expect_error([&] { (void)engine.logits(random_images(2, {3, 9, 9}, 82)); }, ErrorKind::bad_input,
                 {"3x9x9", "1x9x9"});
    expect_error([&] { (void)engine.logits(random_images(2, {1, 9, 8}, 83)); }, ErrorKind::bad_input, {"1x9x8"});
    std::vector<float> short_buffer(2 * shape.values() - 1);
    expect_error([&] { (void)engine.logits(short_buffer, 2); }, ErrorKind::bad_input, {"values"});
    expect_error([&] { OnednnEngine zero(model, 0); }, ErrorKind::bad_input, {"batch"});
    expect_error([&] { OnednnEngine huge(random_model("conv3x3s1p1-gated-pool7", {1, 28, 28}, 400, 10, 84), 60000); },
                 ErrorKind::limit, {"--batch 60000", "MiB"});
    Model broken = model;
    broken.fc_bias.data.pop_back();
    broken.fc_bias.shape = {2};
    expect_error([&] { OnednnEngine bad(broken); }, ErrorKind::bad_input, {"invalid model", "fc_bias"});
}

// --- The region path: filters wired to one pooling region, computed on that region only.

namespace {

constexpr int all_columns_zero = -1;  // region_of value: the filter reaches no logit
constexpr int every_region = -2;      // region_of value: the filter keeps all its columns (dense)

// The model's fc_weight rewired as the convex program leaves it: filter f keeps its
// columns of region region_of[f] only (or none, or all; see the constants above).
Model rewire_regions(Model model, const std::vector<int>& region_of) {
    const auto regions = static_cast<std::size_t>(model.architecture.pool_grid * model.architecture.pool_grid);
    const auto m = static_cast<std::size_t>(model.filters());
    for (std::size_t i = 0; i < model.fc_weight.data.size(); ++i) {
        const std::size_t f = i % (m * regions) / regions, r = i % regions;
        const int wanted = region_of[f];
        if (wanted != every_region && static_cast<std::size_t>(wanted) != r) model.fc_weight.data[i] = 0.0f;
    }
    return model;
}

// Random regions for `filters` filters, leaving every third region empty (when there are
// three or more); every fifth filter gets all-zero columns, and with `dense_every` > 0
// every dense_every-th filter keeps all its columns.
std::vector<int> random_regions(int filters, int grid, unsigned seed, int dense_every = 0) {
    std::vector<int> allowed;
    for (int r = 0; r < grid * grid; ++r)
        if (grid * grid < 3 || r % 3 != 1) allowed.push_back(r);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> pick(0, allowed.size() - 1);
    std::vector<int> region_of;
    for (int f = 0; f < filters; ++f) {
        if (f % 5 == 4) region_of.push_back(all_columns_zero);
        else if (dense_every > 0 && f % dense_every == 0) region_of.push_back(every_region);
        else region_of.push_back(allowed[pick(rng)]);
    }
    return region_of;
}

int single_region_filters(const std::vector<int>& region_of) {
    return static_cast<int>(std::ranges::count_if(region_of, [](int r) { return r >= 0; }));
}

// Filters of `model` with nonzero fc columns on exactly one region (integer weights may
// zero a wired column by chance).
int single_region_filters(const Model& model) {
    const int regions = model.architecture.pool_grid * model.architecture.pool_grid, m = model.filters();
    int count = 0;
    for (int f = 0; f < m; ++f) {
        int touched = 0;
        for (int r = 0; r < regions; ++r) {
            bool nonzero = false;
            for (int c = 0; c < model.classes(); ++c)
                nonzero = nonzero || model.fc_weight.data[static_cast<std::size_t>((c * m + f) * regions + r)] != 0.0f;
            touched += nonzero ? 1 : 0;
        }
        count += touched == 1 ? 1 : 0;
    }
    return count;
}

const std::vector<Geometry> region_geometries = {
    {1, 28, 28, 3, 1, 1, 7},  // the Fashion-MNIST shape: 4x4 regions, G divides the map
    {1, 28, 28, 3, 1, 1, 3},  // bands 9,9,10: G does not divide
    {3, 9, 9, 3, 2, 1, 2},    // stride 2, padding 1: 5x5 map, bands 2,3
    {1, 9, 9, 3, 1, 0, 3},    // padding 0: 7x7 map, bands 2,2,3
    {3, 8, 8, 3, 2, 0, 3},    // padding 0, stride 2: 3x3 map, one-position regions
    {1, 12, 11, 5, 2, 2, 3},  // 5x5 kernel, stride 2: 6x6 map; crops overlap
    {1, 9, 9, 3, 1, 2, 3},    // padding 2: 11x11 map, crops reach two pixels into padding
    {3, 6, 7, 1, 2, 0, 2},    // 1x1 kernel, stride 2: 3x4 map, crops without halo
    {1, 7, 6, 3, 1, 1, 1},    // global average: the region is the whole map
};

}  // namespace

TEST(OnednnEngineRegions, RegionWiredModelsMatchReference) {
    // Random nonzero-mean inputs (uniform pixels, uneven normalization) and random
    // asymmetric filters: a crop one pixel off, a region's band misread or a filter in
    // the wrong group changes the logits far beyond the tolerance.
    unsigned seed = 500;
    for (const auto& g : region_geometries)
        for (const auto& activation : all_activations)
            for (const std::size_t batch : {std::size_t{1}, std::size_t{64}}) {
                SCOPED_TRACE(describe(g, activation) + " batch " + std::to_string(batch));
                const ImageShape shape{g.channels, g.height, g.width};
                const std::vector<int> region_of = random_regions(14, g.grid, seed++);
                const Model model = rewire_regions(
                    random_model(architecture_text(g.kernel, g.stride, g.padding, activation, g.grid), shape, 14, 4,
                                 seed++),
                    region_of);
                const Dataset images = random_images(batch == 1 ? 5 : 70, shape, seed++);  // 70: a partial batch
                OnednnEngine engine(model, batch, RegionPath::always);
                EXPECT_EQ(engine.region_filters(), single_region_filters(region_of));
                expect_close(engine.logits(images), reference_logits(model, images));
            }
}

TEST(OnednnEngineRegions, MixedModelsMatchReference) {
    // Some filters dense (all regions), some on one region, some reaching no logit: the
    // dense path (pooled or folded) and the region groups add into the same logits.
    const std::vector<Geometry> geometries = {
        {1, 28, 28, 3, 1, 1, 7},  // dense path pooled: the batch's inner product adds last
        {1, 9, 9, 3, 1, 0, 3},    // dense path folded: its inner product writes first
        {3, 9, 9, 3, 2, 1, 2},    // folded, stride 2
        {3, 8, 8, 3, 1, 1, 2},    // pooled, 3 channels
    };
    unsigned seed = 700;
    for (const auto& g : geometries)
        for (const auto& activation : all_activations)
            for (const std::size_t batch : {std::size_t{1}, std::size_t{64}}) {
                SCOPED_TRACE(describe(g, activation) + " batch " + std::to_string(batch));
                const ImageShape shape{g.channels, g.height, g.width};
                const std::vector<int> region_of = random_regions(15, g.grid, seed++, 3);
                const Model model = rewire_regions(
                    random_model(architecture_text(g.kernel, g.stride, g.padding, activation, g.grid), shape, 15, 5,
                                 seed++),
                    region_of);
                const Dataset images = random_images(batch == 1 ? 4 : 67, shape, seed++);
                OnednnEngine engine(model, batch, RegionPath::always);
                ASSERT_GT(single_region_filters(region_of), 0);
                EXPECT_EQ(engine.region_filters(), single_region_filters(region_of));
                const RowMatrixF want = reference_logits(model, images);
                expect_close(engine.logits(images), want);
                // The same model entirely on the dense path agrees too.
                OnednnEngine full_maps(model, batch, RegionPath::never);
                EXPECT_EQ(full_maps.region_filters(), 0);
                expect_close(full_maps.logits(images), want);
            }
}

TEST(OnednnEngineRegions, IntegerWeightsGiveExactlyTheReference) {
    // As IntegerWeightsAndInputsGiveExactlyTheReference, with region-wired filters: any
    // misplaced input value, position or weight shows as an inexact logit.
    const std::vector<Geometry> geometries = {
        {1, 8, 8, 3, 1, 1, 2},  // regions of 16
        {3, 8, 8, 3, 2, 1, 2},  // stride 2: regions of 4
        {1, 6, 6, 3, 1, 1, 4},  // bands 1,2,1,2: regions of 1, 2, 4
        {3, 6, 6, 3, 1, 2, 2},  // padding 2: 8x8 map, regions of 16
    };
    unsigned seed = 900;
    for (const auto& g : geometries)
        for (const std::string activation : {"relu", "gated", "leaky0.25", "abs"}) {
            SCOPED_TRACE(describe(g, activation));
            const IntegerCase exact = integer_case(g, activation, 9, seed++);
            const Model model = rewire_regions(exact.model, random_regions(9, g.grid, seed++, 4));
            OnednnEngine engine(model, 4, RegionPath::always);
            EXPECT_EQ(engine.region_filters(), single_region_filters(model));
            EXPECT_GT(engine.region_filters(), 0);
            expect_exactly(engine.logits(exact.images), reference_logits(model, exact.images));
        }
}

TEST(OnednnEngineRegions, FiltersReachingNoLogitAreSkipped) {
    const ImageShape shape{1, 9, 9};
    Model model = random_model("conv3x3s1p1-gated-pool3", shape, 6, 3, 1001);
    std::ranges::fill(model.fc_weight.data, 0.0f);
    for (const RegionPath path : {RegionPath::automatic, RegionPath::always, RegionPath::never}) {
        OnednnEngine engine(model, 4, path);
        EXPECT_EQ(engine.region_filters(), 0);
        const RowMatrixF logits = engine.logits(random_images(5, shape, 1002));
        for (Eigen::Index i = 0; i < logits.rows(); ++i)
            for (Eigen::Index c = 0; c < logits.cols(); ++c) EXPECT_EQ(logits(i, c), model.fc_bias.data[c]);
    }
}

TEST(OnednnEngineRegions, ThreadCountDoesNotChangeTheBits) {
    // Slices of a fixed size, each summing its groups in a fixed order on one thread.
    const ImageShape shape{1, 28, 28};
    const std::vector<int> region_of = random_regions(60, 7, 1101);
    const Model model = rewire_regions(random_model("conv3x3s1p1-gated-pool7", shape, 60, 10, 1102), region_of);
    const Dataset images = random_images(70, shape, 1103);
    const RowMatrixF want = reference_logits(model, images);
    RowMatrixF first;
    for (const int threads : {1, 2, 3}) {
        SCOPED_TRACE("threads " + std::to_string(threads));
        const ThreadLimit limit(threads);
        OnednnEngine engine(model);
        EXPECT_EQ(engine.region_filters(), single_region_filters(region_of));
        const RowMatrixF got = engine.logits(images);
        expect_close(got, want);
        if (first.size() == 0) first = got;
        EXPECT_EQ(got, first);
    }
}

TEST(OnednnEngineRegions, AutomaticRuleTakesTheRegionPathWhenItSavesWork) {
    const ImageShape shape{1, 28, 28};
    // Fashion-MNIST-like: 4x4 regions of a 28x28 map, a 49th of the convolution work.
    const std::vector<int> wired = random_regions(98, 7, 1201);
    const Model convex = rewire_regions(random_model("conv3x3s1p1-gated-pool7", shape, 98, 10, 1202), wired);
    OnednnEngine engine(convex);
    EXPECT_EQ(engine.region_filters(), single_region_filters(wired));
    EXPECT_NE(engine.implementation(1).find("regions "), std::string::npos) << engine.implementation(1);
    // Dense columns (SGD-like): nothing to restrict.
    EXPECT_EQ(OnednnEngine(random_model("conv3x3s1p1-gated-pool7", shape, 98, 10, 1203)).region_filters(), 0);
    // Global average: the region is the whole map, nothing is saved.
    const Model global = rewire_regions(random_model("conv3x3s1p1-relu-pool1", shape, 8, 10, 1204),
                                        std::vector<int>(8, 0));
    OnednnEngine whole_map(global);
    EXPECT_EQ(whole_map.region_filters(), 0);
    const Dataset images = random_images(3, shape, 1205);
    expect_close(whole_map.logits(images), reference_logits(global, images));
}
