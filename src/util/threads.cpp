#include "cvxcnn/util/threads.hpp"

#include <thread>

#include <omp.h>
#include <oneapi/tbb/global_control.h>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {

struct ThreadLimit::Impl {
    explicit Impl(int threads)
        : tbb_limit(oneapi::tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads)),
          previous_omp(omp_get_max_threads()) {
        omp_set_num_threads(threads);
    }
    ~Impl() { omp_set_num_threads(previous_omp); }
    oneapi::tbb::global_control tbb_limit;
    int previous_omp;
};

int hardware_threads() {
    const unsigned count = std::thread::hardware_concurrency();
    return count == 0 ? 1 : static_cast<int>(count);
}

ThreadLimit::ThreadLimit(int threads) {
    if (threads < 0) throw Error(ErrorKind::bad_input, "--threads " + std::to_string(threads) + ": must be >= 0");
    threads_ = threads == 0 ? hardware_threads() : threads;
    impl_ = std::make_unique<Impl>(threads_);
}

ThreadLimit::~ThreadLimit() = default;

}  // namespace cvxcnn
