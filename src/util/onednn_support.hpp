// Internal helpers shared by the code that calls oneDNN (the inference engine and the
// SGD baseline's convolutions): the OpenMP thread scope and the error translation.
#pragma once

#include <new>
#include <optional>
#include <string>

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/tbb/task.h>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {

// Sets the calling thread's OpenMP thread count (its own ICV: other threads are not
// affected) for the lifetime of the object; `only_inside_tbb` makes it a no-op outside
// TBB tasks. oneDNN runs on OpenMP: a oneDNN call inside a TBB task must not start a team
// on every TBB worker.
class ScopedOpenMpThreads {
public:
    explicit ScopedOpenMpThreads(int threads, bool only_inside_tbb = false) {
        if (only_inside_tbb && oneapi::tbb::task::current_context() == nullptr) return;
        previous_ = omp_get_max_threads();
        omp_set_num_threads(threads);
    }
    ScopedOpenMpThreads(const ScopedOpenMpThreads&) = delete;
    ScopedOpenMpThreads& operator=(const ScopedOpenMpThreads&) = delete;
    ~ScopedOpenMpThreads() {
        if (previous_) omp_set_num_threads(*previous_);
    }

private:
    std::optional<int> previous_;
};

// oneDNN reports failures as dnnl::error; the library boundary speaks cvxcnn::Error.
template <typename F>
decltype(auto) translate_onednn_errors(const char* what, F&& action) {
    try {
        return action();
    } catch (const dnnl::error& error) {
        if (error.status == dnnl_out_of_memory) throw std::bad_alloc();
        throw Error(ErrorKind::internal, std::string("oneDNN failed to ") + what + ": " + error.what());
    }
}

}  // namespace cvxcnn
