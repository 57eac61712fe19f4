// No partial outputs: the real cvxcnn executable is killed with SIGKILL at many moments
// while it writes (an ONNX export of a large model; an import over an existing folder),
// and afterwards the output is exactly the earlier one or exactly the complete new one,
// and the only other entries are the documented hidden temporaries of the killed runs
// (".<name>.tmp-<pid>-<n>", ".<name>.partial-<pid>-<n>"), which the next write removes.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cvxcnn/model/model_file.hpp"
#include "test_support.hpp"

extern char** environ;

namespace fs = std::filesystem;
using namespace cvxcnn;
using Clock = std::chrono::steady_clock;

namespace {

// A running cvxcnn process; stdout and stderr go to /dev/null.
pid_t spawn_cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv_strings{CVXCNN_CLI_PATH};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : argv_strings) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    const int error = posix_spawn(&pid, CVXCNN_CLI_PATH, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(error, 0) << "cannot start " << CVXCNN_CLI_PATH;
    return pid;
}

struct KillOutcome {
    bool killed = false;  // false: it finished before the signal
    pid_t pid = -1;
};

// Starts the command, sends SIGKILL after `delay`, reaps it.
KillOutcome kill_after(const std::vector<std::string>& args, Clock::duration delay) {
    KillOutcome outcome;
    outcome.pid = spawn_cli(args);
    std::this_thread::sleep_for(delay);
    ::kill(outcome.pid, SIGKILL);
    int status = 0;
    ::waitpid(outcome.pid, &status, 0);
    outcome.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (!outcome.killed) {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the command failed";
    }
    return outcome;
}

// Wall time of one complete run (to spread the kill moments over it; nothing is asserted on it).
Clock::duration full_run(const std::vector<std::string>& args) {
    const auto start = Clock::now();
    const pid_t pid = spawn_cli(args);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return Clock::now() - start;
}

// 0, a few early moments, then evenly over 1.2 x the full run (the last ones after the end).
std::vector<Clock::duration> kill_moments(Clock::duration full, int count) {
    std::vector<Clock::duration> moments{Clock::duration::zero(), std::chrono::milliseconds(2),
                                         std::chrono::milliseconds(10)};
    for (int i = 1; i <= count; ++i) moments.push_back(full * 6 * i / (5 * count));
    return moments;
}

// The writer's pid if `entry` is ".<name>.<tmp|partial|old>-<pid>-<n>", else -1.
pid_t temporary_owner(const std::string& entry, const std::string& name) {
    const std::string prefix = "." + name + ".";
    if (!entry.starts_with(prefix)) return -1;
    std::string rest = entry.substr(prefix.size());
    for (const std::string tag : {"tmp-", "partial-", "old-"}) {
        if (!rest.starts_with(tag)) continue;
        rest.erase(0, tag.size());
        const std::size_t dash = rest.find('-');
        const auto digits = [](const std::string& text) {
            return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
        };
        if (dash == std::string::npos || !digits(rest.substr(0, dash)) || !digits(rest.substr(dash + 1))) return -1;
        return static_cast<pid_t>(std::stol(rest.substr(0, dash)));
    }
    return -1;
}

// Every entry of `dir` except the expected ones must be a hidden temporary of `name`
// written by one of `pids`.
void expect_only_documented_litter(const fs::path& dir, const std::set<std::string>& expected,
                                   const std::string& name, const std::set<pid_t>& pids) {
    for (const auto& entry : fs::directory_iterator(dir)) {
        const std::string entry_name = entry.path().filename().string();
        if (expected.contains(entry_name)) continue;
        const pid_t owner = temporary_owner(entry_name, name);
        ASSERT_GT(owner, 0) << "unexpected entry " << entry.path();
        EXPECT_TRUE(pids.contains(owner)) << entry.path() << " is not from a killed run";
    }
}

std::set<std::string> entries_of(const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
    return names;
}

// Relative path -> bytes (empty for folders) of a whole tree.
using Tree = std::map<std::string, std::vector<std::uint8_t>>;
Tree snapshot(const fs::path& root) {
    Tree tree;
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
        const std::string relative = entry.path().lexically_relative(root).string();
        tree[relative] = entry.is_regular_file() ? test::read_bytes(entry.path()) : std::vector<std::uint8_t>{};
    }
    return tree;
}

Model filled_model(int filters, float value) {
    Model model = make_model(parse_architecture("conv3x3s1p1-relu-pool7"), ImageShape{3, 32, 32},
                             {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}, filters);
    for (Tensor* tensor : {&model.conv_weight, &model.conv_bias, &model.fc_weight, &model.fc_bias})
        for (float& x : tensor->data) x = value;
    return model;
}

std::vector<std::uint8_t> big_endian(std::uint32_t value) {
    return {static_cast<std::uint8_t>(value >> 24), static_cast<std::uint8_t>(value >> 16),
            static_cast<std::uint8_t>(value >> 8), static_cast<std::uint8_t>(value)};
}

// The four MNIST IDX files of `count` train and count/4 test images, pixels from `seed`.
void write_mnist(const fs::path& dir, std::uint32_t count, std::uint8_t seed) {
    fs::create_directories(dir);
    const auto write_split = [&](const std::string& prefix, std::uint32_t n) {
        std::vector<std::uint8_t> images = big_endian(0x00000803);
        for (const std::uint32_t v : {n, 28u, 28u}) {
            const auto bytes = big_endian(v);
            images.insert(images.end(), bytes.begin(), bytes.end());
        }
        for (std::size_t i = 0; i < std::size_t{n} * 28 * 28; ++i) images.push_back(static_cast<std::uint8_t>(i * seed % 251));
        std::vector<std::uint8_t> labels = big_endian(0x00000801);
        const auto count_bytes = big_endian(n);
        labels.insert(labels.end(), count_bytes.begin(), count_bytes.end());
        for (std::uint32_t i = 0; i < n; ++i) labels.push_back(static_cast<std::uint8_t>(i % 10));
        test::write_bytes(dir / (prefix + "-images-idx3-ubyte"), images);
        test::write_bytes(dir / (prefix + "-labels-idx1-ubyte"), labels);
    };
    write_split("train", count);
    write_split("t10k", count / 4);
}

}  // namespace

TEST(KillDuringWrite, ExportLeavesTheEarlierFileOrTheCompleteNewOne) {
    test::ScratchDir dir;
    const fs::path model = dir / "big.cvx";
    write_model(model, filled_model(6000, 0.5f));  // about 12 MB of ONNX initializers
    const fs::path out = dir / "out.onnx";
    const std::vector<std::string> args{"export", model.string(), "--out", out.string()};

    // The complete new output, and a different earlier file at the destination.
    const Clock::duration full = full_run(args);
    const std::vector<std::uint8_t> complete = test::read_bytes(out);
    write_model(dir / "small.cvx", filled_model(2, 0.25f));
    ASSERT_EQ(test::run_cli({"export", (dir / "small.cvx").string(), "--out", out.string()}).exit_code, 0);
    const std::vector<std::uint8_t> earlier = test::read_bytes(out);
    ASSERT_NE(earlier, complete);

    std::set<pid_t> killed_pids;
    int killed = 0;
    for (const Clock::duration moment : kill_moments(full, 14)) {
        const KillOutcome outcome = kill_after(args, moment);
        killed += outcome.killed;
        killed_pids.insert(outcome.pid);
        const std::vector<std::uint8_t> now = test::read_bytes(out);
        ASSERT_TRUE(now == earlier || now == complete) << "partial output after a kill at "
                                                       << std::chrono::duration<double>(moment).count() << " s";
        expect_only_documented_litter(dir.path(), {"big.cvx", "small.cvx", "out.onnx"}, "out.onnx", killed_pids);
        if (now == complete) test::write_bytes(out, earlier);  // keep a different earlier file for the next kill
    }
    EXPECT_GT(killed, 0);
    // The next complete write removes what the killed runs left.
    ASSERT_EQ(test::run_cli(args).exit_code, 0);
    EXPECT_EQ(test::read_bytes(out), complete);
    EXPECT_EQ(entries_of(dir.path()), (std::set<std::string>{"big.cvx", "small.cvx", "out.onnx"}));
}

TEST(KillDuringWrite, ImportOverAnExistingFolderLeavesTheEarlierTreeOrTheCompleteNewOne) {
    test::ScratchDir dir;
    write_mnist(dir / "src-a", 400, 7);
    write_mnist(dir / "src-b", 1200, 13);
    const fs::path out = dir / "digits";
    ASSERT_EQ(test::run_cli({"import", "mnist", (dir / "src-b").string(), out.string()}).exit_code, 0);
    const Tree complete = snapshot(out);
    fs::remove_all(out);
    ASSERT_EQ(test::run_cli({"import", "mnist", (dir / "src-a").string(), out.string()}).exit_code, 0);
    const Tree earlier = snapshot(out);
    ASSERT_NE(earlier, complete);
    fs::copy(out, dir / "earlier-copy", fs::copy_options::recursive);

    const std::vector<std::string> args{"-q", "import", "mnist", (dir / "src-b").string(), out.string(), "--overwrite"};
    const Clock::duration full = full_run(args);
    ASSERT_EQ(snapshot(out), complete);
    const auto restore_earlier = [&] {
        fs::remove_all(out);
        fs::copy(dir / "earlier-copy", out, fs::copy_options::recursive);
    };
    restore_earlier();

    const std::set<std::string> expected{"src-a", "src-b", "digits", "earlier-copy"};
    std::set<pid_t> killed_pids;
    int killed = 0;
    for (const Clock::duration moment : kill_moments(full, 14)) {
        const KillOutcome outcome = kill_after(args, moment);
        killed += outcome.killed;
        killed_pids.insert(outcome.pid);
        ASSERT_TRUE(fs::is_directory(out)) << "the output folder vanished after a kill at "
                                           << std::chrono::duration<double>(moment).count() << " s";
        const Tree now = snapshot(out);
        ASSERT_TRUE(now == earlier || now == complete) << "partial output after a kill at "
                                                       << std::chrono::duration<double>(moment).count() << " s";
        expect_only_documented_litter(dir.path(), expected, "digits", killed_pids);
        if (now == complete) restore_earlier();
    }
    EXPECT_GT(killed, 0);
    ASSERT_EQ(test::run_cli(args).exit_code, 0);
    EXPECT_EQ(snapshot(out), complete);
    EXPECT_EQ(entries_of(dir.path()), expected);
}
