// Solver efficiency benchmark (issue 6, item 5): the GFLOP/s the group-lasso solver achieves
// in its products F U and F^T G, against the machine's own sgemm GFLOP/s measured in the
// same run, and the ratio.
//
//   cvxcnn_bench_solver [--rows=N] [--cols=D] [--classes=C] [--iters=K] [--size=S]
//                       [--threads=T] [benchmark flags]
//
// sgemm/onednn, sgemm/eigen: C = A B on S x S float matrices (default 2048), oneDNN's
//     dnnl_sgemm (its own OpenMP threads) and Eigen's kernel run on TBB over blocks of 256
//     rows (the way the solver runs it): the machine's dense float GEMM rate.
// shape/onednn_FU, shape/onednn_FtG: dnnl_sgemm on the solver's own shapes (F is N x D,
//     U is D x C, G is N x C): what a tuned general library reaches when C is small (each
//     product alone reads F from memory for 2 C flops per 4-byte entry).
// memory/read_F: one read of F (a TBB sum), GB/s: with the solver's fused pass (F U and
//     F^T G on each block of rows while it is in cache, 4 C flops per 4-byte entry), the
//     roofline is C x this bandwidth in GFLOP/s.
// solver: solve_group_lasso on random features (N = 20,000 rows, D = 7,056 = 16 patterns
//     x 49 regions x 9, C = 10 classes: Fashion-MNIST's default problem on a third of its
//     images) for K = 20 iterations; GFLOP/s = 2 N D C x SolveInfo::products / solve time,
//     i.e. all the solver's time (loss, prox, momentum in double included) charged to the
//     products.
// GFLOP/s are computed from wall-clock time measured around each call, so they stay
// meaningful on a loaded machine only as long as the load is steady; compare rates from
// one run only. --threads caps TBB and OpenMP (0 = all cores).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/tbb/parallel_for.h>

#include "cvxcnn/solvers/group_lasso.hpp"
#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/matrix.hpp"
#include "cvxcnn/util/threads.hpp"

namespace {

using namespace cvxcnn;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

RowMatrixF random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed, bool masked = false) {
    std::mt19937_64 engine(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::bernoulli_distribution half(0.5);
    RowMatrixF m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = masked && !half(engine) ? 0.0f : normal(engine);
    return m;
}

// Row-major C (m x n) = A (m x k) B (k x n), or A^T B with A stored k x m.
void onednn_sgemm(bool transpose_a, const RowMatrixF& a, const RowMatrixF& b, RowMatrixF& c) {
    const dnnl_dim_t m = c.rows(), n = c.cols(), k = transpose_a ? a.rows() : a.cols();
    const dnnl_status_t status = dnnl_sgemm(transpose_a ? 'T' : 'N', 'N', m, n, k, 1.0f, a.data(), a.cols(), b.data(),
                                            b.cols(), 0.0f, c.data(), c.cols());
    if (status != dnnl_success) throw Error(ErrorKind::internal, "dnnl_sgemm failed with status " + std::to_string(status));
}

// Eigen's GEMM kernel, one TBB task per block of 256 rows of A (as the solver's F U).
void eigen_sgemm(const RowMatrixF& a, const RowMatrixF& b, RowMatrixF& c) {
    constexpr Eigen::Index block = 256;
    const Eigen::Index tasks = (a.rows() + block - 1) / block;
    oneapi::tbb::parallel_for(Eigen::Index{0}, tasks, [&](Eigen::Index task) {
        const Eigen::Index begin = task * block, rows = std::min(a.rows(), begin + block) - begin;
        c.middleRows(begin, rows).noalias() = a.middleRows(begin, rows) * b;
    });
}

// Sum of every entry, one TBB task per block of 256 rows: reads m from memory once.
double read_all(const RowMatrixF& m) {
    constexpr Eigen::Index block = 256;
    const Eigen::Index tasks = (m.rows() + block - 1) / block;
    std::vector<double> sums(static_cast<std::size_t>(tasks));
    oneapi::tbb::parallel_for(Eigen::Index{0}, tasks, [&](Eigen::Index task) {
        const Eigen::Index begin = task * block, rows = std::min(m.rows(), begin + block) - begin;
        sums[static_cast<std::size_t>(task)] = static_cast<double>(m.middleRows(begin, rows).sum());
    });
    double total = 0.0;
    for (const double s : sums) total += s;
    return total;
}

// Times `call` (returning its flops) over the benchmark loop; reports GFLOP/s of wall time.
template <class Call>
void measure(benchmark::State& state, Call call, std::map<std::string, double>& rates, const std::string& name) {
    call();  // warm-up: first-touch pages, JIT kernels; not timed
    double flops = 0.0, seconds = 0.0;
    for (auto _ : state) {
        const auto start = Clock::now();
        flops += call();
        seconds += seconds_since(start);
    }
    const double gflops = flops / seconds * 1e-9;
    state.counters["GFLOPS"] = gflops;
    rates[name] = gflops;  // the last call is the one Google Benchmark reports (earlier ones size the run)
}

// Removes "--name=value" from argv (Google Benchmark rejects flags it does not know).
std::string take_flag(int& argc, char** argv, std::string_view name, const std::string& fallback) {
    const std::string prefix = "--" + std::string(name) + "=";
    std::string value = fallback;
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg.starts_with(prefix)) value = arg.substr(prefix.size());
        else argv[kept++] = argv[i];
    }
    argc = kept;
    return value;
}

int positive_flag(int& argc, char** argv, std::string_view name, int fallback, int minimum) {
    const std::string text = take_flag(argc, argv, name, std::to_string(fallback));
    std::size_t used = 0;
    int value = 0;
    try {
        value = std::stoi(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != text.size() || value < minimum)
        throw Error(ErrorKind::bad_input, "--" + std::string(name) + "=" + text + ": expected an integer >= " +
                                              std::to_string(minimum));
    return value;
}

int run(int argc, char** argv) {
    const int rows = positive_flag(argc, argv, "rows", 20000, 1);
    const int cols = positive_flag(argc, argv, "cols", 7056, 9);
    const int classes = positive_flag(argc, argv, "classes", 10, 1);
    const int iters = positive_flag(argc, argv, "iters", 20, 1);
    const int size = positive_flag(argc, argv, "size", 2048, 1);
    const ThreadLimit threads(positive_flag(argc, argv, "threads", 0, 0));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
    if (cols % 9 != 0) throw Error(ErrorKind::bad_input, "--cols=" + std::to_string(cols) + ": must be a multiple of 9");

    std::map<std::string, double> rates;
    const RowMatrixF a = random_matrix(size, size, 1), b = random_matrix(size, size, 2);
    RowMatrixF c(size, size);
    const double square_flops = 2.0 * size * static_cast<double>(size) * size;
    benchmark::RegisterBenchmark("sgemm/onednn", [&](benchmark::State& state) {
        measure(state, [&] { onednn_sgemm(false, a, b, c); return square_flops; }, rates, "sgemm/onednn");
    })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
    benchmark::RegisterBenchmark("sgemm/eigen", [&](benchmark::State& state) {
        measure(state, [&] { eigen_sgemm(a, b, c); return square_flops; }, rates, "sgemm/eigen");
    })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

    // The solver's problem: masked Gaussian features (like D X), random labels.
    const RowMatrixF features = random_matrix(rows, cols, 3, true);
    std::vector<std::int32_t> labels(static_cast<std::size_t>(rows));
    std::mt19937_64 label_engine(4);
    for (auto& y : labels) y = static_cast<std::int32_t>(label_engine() % static_cast<std::uint64_t>(classes));
    const GroupLassoProblem problem{features, 9, labels, classes, Loss::cross_entropy};
    const double product_flops = 2.0 * rows * static_cast<double>(cols) * classes;
    const RowMatrixF u = random_matrix(cols, classes, 5), g = random_matrix(rows, classes, 6);
    RowMatrixF z(rows, classes), grad(cols, classes);
    benchmark::RegisterBenchmark("shape/onednn_FU", [&](benchmark::State& state) {
        measure(state, [&] { onednn_sgemm(false, features, u, z); return product_flops; }, rates, "shape/onednn_FU");
    })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
    benchmark::RegisterBenchmark("shape/onednn_FtG", [&](benchmark::State& state) {
        measure(state, [&] { onednn_sgemm(true, features, g, grad); return product_flops; }, rates, "shape/onednn_FtG");
    })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

    // The memory roofline: F read once, summed (a TBB task per block of 256 rows).
    benchmark::RegisterBenchmark("memory/read_F", [&](benchmark::State& state) {
        const double bytes = static_cast<double>(features.size()) * sizeof(float);
        double total_bytes = 0.0, seconds = 0.0;
        for (auto _ : state) {
            const auto start = Clock::now();
            benchmark::DoNotOptimize(read_all(features));
            seconds += seconds_since(start);
            total_bytes += bytes;
        }
        state.counters["GBps"] = total_bytes / seconds * 1e-9;
        rates["memory/read_F"] = total_bytes / seconds * 1e-9;
    })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

    benchmark::RegisterBenchmark("solver", [&](benchmark::State& state) {
        SolverSettings settings;
        settings.beta = 0.05 * beta_max(problem);
        settings.max_iters = iters;
        settings.rel_gap_tol = 0.0;
        // The rate of the passes over all of F: a working set does less work, not faster work.
        settings.working_set = false;
        double flops = 0.0, seconds = 0.0, products = 0.0, iterations = 0.0;
        for (auto _ : state) {
            RowMatrixF weights = RowMatrixF::Zero(cols, classes);
            const SolveInfo info = solve_group_lasso(problem, settings, weights);
            flops += product_flops * static_cast<double>(info.products);
            seconds += info.seconds;
            products += static_cast<double>(info.products);
            iterations += info.iterations;
        }
        const double gflops = flops / seconds * 1e-9;
        state.counters["GFLOPS"] = gflops;
        state.counters["products_per_iter"] = products / iterations;
        rates["solver"] = gflops;
    })->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);

    std::printf("solver problem: F %d x %d, %d classes, %d iterations per solve; sgemm %d^3; %d threads\n", rows, cols,
                classes, iters, size, threads.threads());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();

    const auto rate = [&](const char* name) { return rates.count(name) ? rates.at(name) : 0.0; };
    const double sgemm = std::max(rate("sgemm/onednn"), rate("sgemm/eigen"));
    const double shape = std::max(rate("shape/onednn_FU"), rate("shape/onednn_FtG"));
    if (rate("solver") > 0 && sgemm > 0)
        std::printf("solver %.1f GFLOP/s = %.0f%% of the machine's sgemm (%.1f GFLOP/s, best of oneDNN and Eigen)\n",
                    rate("solver"), 100 * rate("solver") / sgemm, sgemm);
    // One pass of the solver multiplies every 4-byte entry of F by C weights and by C loss
    // gradients (4 C flops): at the read bandwidth it cannot exceed C flops per byte.
    const double roofline = classes * rate("memory/read_F");
    if (rate("solver") > 0 && roofline > 0)
        std::printf("solver %.1f GFLOP/s = %.0f%% of the memory roofline of its passes over F (%d flops per byte x "
                    "%.1f GB/s read = %.1f GFLOP/s)\n",
                    rate("solver"), 100 * rate("solver") / roofline, classes, rate("memory/read_F"), roofline);
    if (rate("solver") > 0 && shape > 0)
        std::printf("solver %.1f GFLOP/s = %.0f%% of oneDNN's sgemm on the solver's shapes (%.1f GFLOP/s)\n",
                    rate("solver"), 100 * rate("solver") / shape, shape);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& error) {
        std::fprintf(stderr, "cvxcnn_bench_solver: %s\n", error.what());
        return 1;
    }
}
