// Progress of long steps on stderr: a bar with rate and ETA when stderr is a terminal,
// a plain line every few seconds otherwise, nothing when quiet. Thread-safe: advance()
// may be called from TBB workers; only one thread draws at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace cvxcnn {

enum class ProgressMode {
    automatic,  ///< bar if stderr is a terminal, else periodic lines
    bar,
    lines,
    quiet,
};

class Progress {
public:
    Progress(std::string label, std::uint64_t total, ProgressMode mode);
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;
    ~Progress();

    void advance(std::uint64_t count = 1);
    /// Draws the final state and ends the line (idempotent; also done by the destructor).
    void finish();

private:
    void draw(bool final_draw);

    std::string label_;
    std::uint64_t total_;
    ProgressMode mode_;
    std::atomic<std::uint64_t> done_{0};
    std::chrono::steady_clock::time_point start_;
    std::chrono::steady_clock::time_point last_draw_;
    std::mutex draw_mutex_;
    bool finished_ = false;
};

}  // namespace cvxcnn
