// Engine benchmark: images per second of the oneDNN engine and of the Eigen reference
// forward pass on one model, at batch 1 (latency-bound) and batch 64 (throughput), all
// measured in one run; prints the engine/reference ratio at the end.
//
//   cvxcnn_bench_engine [--model=FILE] [--threads=N] [--make-model=FILE] [--filters=N]
//                       [--arch=ARCH] [--side=S] [--region-sparse] [--region-path=P]
//                       [benchmark flags]
//
// --model (or env CVXCNN_BENCH_MODEL): a model file. Without one the benchmark builds the
// realistic model of the README: 400 gated ReLU filters, conv3x3s1p1-gated-pool7 on 1x28x28
// (Fashion-MNIST), 10 classes, random weights (speed does not depend on the values).
// --filters=N, --arch (default conv3x3s1p1-gated-pool7) and --side (of the 1 x S x S
// input, default 28) change that model; --region-sparse wires each filter to one random
// pooling region, as the convex program does (fc_weight zero for every other region).
// --make-model=FILE writes that model to FILE and exits.
// --region-path=automatic|always|never: the engine's RegionPath (default automatic). When
// the engine runs some filters on their region only (the region path), it is also timed
// with every filter over the whole map ("engine-full-maps").
// --threads (or env CVXCNN_BENCH_THREADS): caps TBB and OpenMP as cvxcnn --threads does
// (0 = all cores, the default). Inputs are uniform random pixels.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include "cvxcnn/engine/onednn_engine.hpp"
#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/threads.hpp"

namespace {

using namespace cvxcnn;

constexpr std::size_t batches[] = {1, 64};

Model realistic_model(int filters, const std::string& architecture, int side, bool region_sparse) {
    std::vector<std::string> classes;
    for (int c = 0; c < 10; ++c) classes.push_back("class" + std::to_string(c));
    Model model = make_model(parse_architecture(architecture), {1, side, side}, classes, filters);
    std::mt19937 rng(2024);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    for (Tensor* tensor : {&model.conv_weight, &model.conv_bias, &model.gate_weight, &model.fc_weight, &model.fc_bias})
        for (auto& v : tensor->data) v = normal(rng);
    if (region_sparse) {
        const int regions = model.architecture.pool_grid * model.architecture.pool_grid;
        std::uniform_int_distribution<int> region(0, regions - 1);
        std::vector<int> region_of(static_cast<std::size_t>(filters));
        for (auto& r : region_of) r = region(rng);
        for (std::size_t i = 0; i < model.fc_weight.data.size(); ++i) {
            const auto feature = static_cast<int>(i % static_cast<std::size_t>(filters * regions));
            if (feature % regions != region_of[static_cast<std::size_t>(feature / regions)]) model.fc_weight.data[i] = 0.0f;
        }
    }
    model.normalization = {{0.2860f}, {0.3530f}};  // Fashion-MNIST's statistics
    model.training = {{"note", "random weights, made by cvxcnn_bench_engine --make-model"}};
    return model;
}

Dataset random_images(const ImageShape& shape, std::size_t n) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    Dataset data;
    data.shape = shape;
    data.labels.assign(n, 0);
    data.images.resize(n * shape.values());
    for (auto& v : data.images) v = pixel(rng);
    return data;
}

// Keeps each benchmark's images/s (the first run of a name) while printing as usual.
class RateReporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const auto& run : runs)
            if (!run.error_occurred && run.run_type == Run::RT_Iteration && run.counters.count("items_per_second"))
                rates.try_emplace(run.run_name.function_name, run.counters.at("items_per_second").value);
        ConsoleReporter::ReportRuns(runs);
    }
    std::map<std::string, double> rates;  // by benchmark name, e.g. "engine/batch:64"
};

// Removes "--name=value" from argv (Google Benchmark rejects flags it does not know).
std::string take_flag(int& argc, char** argv, std::string_view name, const char* environment) {
    const std::string prefix = "--" + std::string(name) + "=";
    std::string value = std::getenv(environment) ? std::getenv(environment) : "";
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg.starts_with(prefix)) value = arg.substr(prefix.size());
        else argv[kept++] = argv[i];
    }
    argc = kept;
    return value;
}

// Removes "--name" from argv; true if it was there.
bool take_switch(int& argc, char** argv, std::string_view name) {
    const std::string flag = "--" + std::string(name);
    bool found = false;
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        if (argv[i] == flag) found = true;
        else argv[kept++] = argv[i];
    }
    argc = kept;
    return found;
}

int run(int argc, char** argv) {
    const std::string model_path = take_flag(argc, argv, "model", "CVXCNN_BENCH_MODEL");
    const std::string make_path = take_flag(argc, argv, "make-model", "CVXCNN_BENCH_MAKE_MODEL");
    const std::string threads_text = take_flag(argc, argv, "threads", "CVXCNN_BENCH_THREADS");
    const std::string filters_text = take_flag(argc, argv, "filters", "CVXCNN_BENCH_FILTERS");
    const bool region_sparse = take_switch(argc, argv, "region-sparse");
    const std::string arch_text = take_flag(argc, argv, "arch", "CVXCNN_BENCH_ARCH");
    const std::string side_text = take_flag(argc, argv, "side", "CVXCNN_BENCH_SIDE");
    const std::string path_text = take_flag(argc, argv, "region-path", "CVXCNN_BENCH_REGION_PATH");
    const int filters = filters_text.empty() ? 400 : std::stoi(filters_text);
    const RegionPath region_path = path_text == "always" ? RegionPath::always
                                   : path_text == "never" ? RegionPath::never
                                   : path_text.empty() || path_text == "automatic"
                                       ? RegionPath::automatic
                                       : throw Error(ErrorKind::bad_input, "--region-path=" + path_text +
                                                                               ": expected automatic, always or never");
    const std::string architecture = arch_text.empty() ? "conv3x3s1p1-gated-pool7" : arch_text;
    const int side = side_text.empty() ? 28 : std::stoi(side_text);
    if (!make_path.empty()) {
        write_model(make_path, realistic_model(filters, architecture, side, region_sparse));
        std::printf("wrote %s (%d filters%s, %s, 1x%dx%d, random weights)\n", make_path.c_str(), filters,
                    region_sparse ? " each on one region" : "", architecture.c_str(), side, side);
        return 0;
    }
    const ThreadLimit threads(threads_text.empty() ? 0 : std::stoi(threads_text));
    const Model model =
        model_path.empty() ? realistic_model(filters, architecture, side, region_sparse) : read_model(model_path);
    const Dataset images = random_images(model.input, 64);

    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;

    for (const std::size_t batch : batches) {
        const std::string suffix = "/batch:" + std::to_string(batch);
        const std::span<const float> input(images.images.data(), batch * model.input.values());
        Dataset subset = images;
        subset.images.resize(input.size());
        subset.labels.resize(batch);
        benchmark::RegisterBenchmark(("engine" + suffix).c_str(), [&model, input, batch, region_path](benchmark::State& state) {
            OnednnEngine engine(model, batch, region_path);
            benchmark::DoNotOptimize(engine.logits(input, batch));  // creates the primitives: not timed
            for (auto _ : state) benchmark::DoNotOptimize(engine.logits(input, batch));
            state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(batch));
        })->UseRealTime()->Unit(benchmark::kMillisecond);
        if (OnednnEngine(model, batch, region_path).region_filters() > 0)
            benchmark::RegisterBenchmark(("engine-full-maps" + suffix).c_str(), [&model, input, batch](benchmark::State& state) {
                OnednnEngine engine(model, batch, RegionPath::never);
                benchmark::DoNotOptimize(engine.logits(input, batch));  // creates the primitives: not timed
                for (auto _ : state) benchmark::DoNotOptimize(engine.logits(input, batch));
                state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(batch));
            })->UseRealTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("reference" + suffix).c_str(), [&model, subset, batch](benchmark::State& state) {
            for (auto _ : state) benchmark::DoNotOptimize(reference_logits(model, subset, batch));
            state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(batch));
        })->UseRealTime()->Unit(benchmark::kMillisecond);
    }

    OnednnEngine probe(model, default_engine_batch, region_path);
    std::printf("model: %s, %s, %d filters (%d on their region only), %d classes; %d threads\noneDNN: %s\n",
                model_path.empty() ? "built-in (random weights)" : model_path.c_str(),
                to_string(model.architecture).c_str(), model.filters(), probe.region_filters(), model.classes(),
                threads.threads(), probe.implementation(64).c_str());
    RateReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();

    for (const std::size_t batch : batches) {
        const std::string suffix = "/batch:" + std::to_string(batch);
        const auto engine = reporter.rates.find("engine" + suffix), reference = reporter.rates.find("reference" + suffix);
        if (engine == reporter.rates.end() || reference == reporter.rates.end()) continue;  // filtered out
        std::printf("batch %2zu: engine %10.0f images/s, reference %10.0f images/s, engine / reference = %.1fx",
                    batch, engine->second, reference->second, engine->second / reference->second);
        if (const auto full = reporter.rates.find("engine-full-maps" + suffix); full != reporter.rates.end())
            std::printf("; full maps %.0f images/s, engine / full maps = %.1fx", full->second, engine->second / full->second);
        std::printf("\n");
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& error) {
        std::fprintf(stderr, "cvxcnn_bench_engine: %s\n", error.what());
        return 1;
    }
}
