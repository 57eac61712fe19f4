// One thread budget for both of cvxcnn's pools: TBB (data loading, per-filter convex
// subproblems) and the OpenMP pool that Debian's oneDNN uses for its primitives.
#pragma once

#include <memory>

namespace cvxcnn {

/// Caps TBB and OpenMP at `threads` workers while alive (0 = all hardware threads).
class ThreadLimit {
public:
    explicit ThreadLimit(int threads);
    ThreadLimit(const ThreadLimit&) = delete;
    ThreadLimit& operator=(const ThreadLimit&) = delete;
    ~ThreadLimit();
    [[nodiscard]] int threads() const noexcept { return threads_; }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    int threads_;
};

/// Hardware threads available to this process.
[[nodiscard]] int hardware_threads();

}  // namespace cvxcnn
