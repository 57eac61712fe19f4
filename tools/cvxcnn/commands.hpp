// The cvxcnn command line: one file per subcommand (cmd_<name>.cpp), each registering
// its options on a CLI11 subcommand and returning the function that runs it. Commands
// stay thin: they parse, call the library and print. Library errors (cvxcnn::Error)
// propagate to main(), which prints one line and exits 1.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "cvxcnn/util/progress.hpp"

namespace cvxcnn::cli {

/// Options every subcommand shares (given before or after the subcommand name).
struct GlobalOptions {
    bool quiet = false;  ///< no progress output
    int threads = 0;     ///< 0 = all hardware threads; caps TBB and oneDNN's OpenMP

    [[nodiscard]] ProgressMode progress_mode() const {
        return quiet ? ProgressMode::quiet : ProgressMode::automatic;
    }
};

/// Runs a parsed subcommand; returns the process exit code.
using CommandRunner = std::function<int()>;

/// Each registers its subcommand on `app` and returns its runner.
CommandRunner add_import_command(CLI::App& app, const GlobalOptions& global);
CommandRunner add_train_command(CLI::App& app, const GlobalOptions& global);
CommandRunner add_eval_command(CLI::App& app, const GlobalOptions& global);
CommandRunner add_predict_command(CLI::App& app, const GlobalOptions& global);
CommandRunner add_info_command(CLI::App& app, const GlobalOptions& global);
CommandRunner add_export_command(CLI::App& app, const GlobalOptions& global);
CommandRunner add_certify_command(CLI::App& app, const GlobalOptions& global);

/// Exit codes: 0 success, 1 bad input or failure, 2 usage.
inline constexpr int exit_success = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 2;
/// Ctrl-C / SIGTERM stopped a run after saving its state (the shell's 128 + SIGINT).
inline constexpr int exit_interrupted = 130;

}  // namespace cvxcnn::cli
