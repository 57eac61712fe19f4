#include "cvxcnn/util/progress.hpp"

#include <cstdio>
#include <string>

#include <unistd.h>

namespace cvxcnn {
namespace {

using Clock = std::chrono::steady_clock;

std::string format_duration(double seconds) {
    if (!(seconds >= 0) || seconds > 359999) return "--:--";
    const auto total = static_cast<long>(seconds + 0.5);
    char text[32];
    if (total >= 3600)
        std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
    else
        std::snprintf(text, sizeof text, "%02ld:%02ld", total / 60, total % 60);
    return text;
}

}  // namespace

Progress::Progress(std::string label, std::uint64_t total, ProgressMode mode)
    : label_(std::move(label)), total_(total), mode_(mode), start_(Clock::now()), last_draw_(start_) {
    if (mode_ == ProgressMode::automatic) mode_ = ::isatty(STDERR_FILENO) ? ProgressMode::bar : ProgressMode::lines;
}

Progress::~Progress() { finish(); }

void Progress::advance(std::uint64_t count) {
    done_.fetch_add(count, std::memory_order_relaxed);
    if (mode_ == ProgressMode::quiet) return;
    const auto interval = mode_ == ProgressMode::bar ? std::chrono::milliseconds(100) : std::chrono::seconds(5);
    // try_lock: workers never wait for the drawing thread.
    std::unique_lock lock(draw_mutex_, std::try_to_lock);
    if (!lock.owns_lock() || finished_) return;
    if (Clock::now() - last_draw_ < interval) return;
    draw(false);
}

void Progress::finish() {
    std::lock_guard lock(draw_mutex_);
    if (finished_) return;
    finished_ = true;
    // A plain-lines run that finished before its first periodic line stays silent: the
    // command's own summary says the rest.
    const bool drew_before = last_draw_ != start_;
    if (mode_ == ProgressMode::bar || (mode_ == ProgressMode::lines && drew_before)) draw(true);
}

void Progress::draw(bool final_draw) {
    const auto now = Clock::now();
    last_draw_ = now;
    const std::uint64_t done = done_.load(std::memory_order_relaxed);
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    const double remaining = rate > 0 && total_ >= done ? static_cast<double>(total_ - done) / rate : -1.0;
    const double fraction = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
    if (mode_ == ProgressMode::bar) {
        constexpr int width = 30;
        const int filled = static_cast<int>(fraction * width);
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.resize(width, ' ');
        std::fprintf(stderr, "\r%s: %3d%%|%s| %llu/%llu [%s<%s, %.1f/s]%s", label_.c_str(),
                     static_cast<int>(fraction * 100), bar.c_str(), static_cast<unsigned long long>(done),
                     static_cast<unsigned long long>(total_), format_duration(elapsed).c_str(),
                     format_duration(remaining).c_str(), rate, final_draw ? "\n" : "");
    } else {
        std::fprintf(stderr, "%s: %llu/%llu (%d%%) elapsed %s, eta %s, %.1f/s\n", label_.c_str(),
                     static_cast<unsigned long long>(done), static_cast<unsigned long long>(total_),
                     static_cast<int>(fraction * 100), format_duration(elapsed).c_str(),
                     format_duration(final_draw ? 0.0 : remaining).c_str(), rate);
    }
    std::fflush(stderr);
}

}  // namespace cvxcnn
