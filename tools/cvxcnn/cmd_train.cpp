// cvxcnn train: a two-layer CNN trained by solving its convex equivalent to a certified
// duality gap, saved as a model file.
#include <chrono>
#include <cstdio>
#include <functional>

#include <unistd.h>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/model/presets.hpp"
#include "cvxcnn/train/convex_training.hpp"
#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/file_io.hpp"
#include "cvxcnn/util/memory.hpp"
#include "data_options.hpp"

namespace cvxcnn::cli {
namespace {

struct TrainArgs {
    std::string data_dir;
    std::string out;
    std::string arch = "default";
    int patterns = TrainingSettings{}.patterns;
    std::string pattern_source = "gaussian";
    std::uint64_t seed = 0;
    std::string loss = "cross-entropy";
    int rank = 0;
    std::string beta = "auto";
    double val_split = TrainingSettings{}.val_split;
    int path_points = TrainingSettings{}.path_points;
    double path_max = TrainingSettings{}.path_max_ratio;
    double path_min = TrainingSettings{}.path_min_ratio;
    double tol = TrainingSettings{}.rel_gap_tol;
    int max_iters = TrainingSettings{}.max_iters;
    double time_limit = TrainingSettings{}.time_limit_s;
    std::string max_memory;
    bool json = false;
    DataOptions data;
};

TrainingSettings settings_from(const TrainArgs& args) {
    TrainingSettings settings;
    settings.architecture = resolve_architecture(args.arch);
    settings.patterns = args.patterns;
    settings.pattern_source =
        args.pattern_source == "data" ? SamplingOptions::Source::data_patches : SamplingOptions::Source::gaussian;
    settings.seed = args.seed;
    settings.loss = parse_loss(args.loss);
    if (args.rank > 0) settings.rank = args.rank;
    if (args.beta != "auto") {
        try {
            std::size_t used = 0;
            settings.beta = std::stod(args.beta, &used);
            if (used != args.beta.size()) throw std::invalid_argument("trailing text");
        } catch (const std::exception&) {
            throw Error(ErrorKind::bad_input, "--beta '" + args.beta + "': expected 'auto' or a positive number");
        }
    }
    settings.val_split = args.val_split;
    settings.path_points = args.path_points;
    settings.path_max_ratio = args.path_max;
    settings.path_min_ratio = args.path_min;
    settings.rel_gap_tol = args.tol;
    settings.max_iters = args.max_iters;
    settings.time_limit_s = args.time_limit;
    settings.max_memory_bytes = args.max_memory.empty() ? physical_memory_bytes() / 4 * 3
                                                        : parse_byte_size(args.max_memory, "--max-memory");
    return settings;
}

// Solver checks arrive every few iterations: on a terminal the line is redrawn in place,
// in a pipe or log one line is written every 5 seconds.
std::function<void(const std::string&)> progress_printer() {
    const bool terminal = ::isatty(STDERR_FILENO) != 0;
    auto last = std::make_shared<std::chrono::steady_clock::time_point>();
    return [terminal, last](const std::string& line) {
        const auto now = std::chrono::steady_clock::now();
        if (terminal) {
            std::fprintf(stderr, "\r\033[K%s", line.c_str());
        } else if (now - *last >= std::chrono::seconds(5)) {
            std::fprintf(stderr, "%s\n", line.c_str());
            *last = now;
        }
    };
}

}  // namespace

CommandRunner add_train_command(CLI::App& app, const GlobalOptions& global) {
    CLI::App* command = app.add_subcommand(
        "train", "Train a two-layer CNN by solving its convex equivalent (group lasso over sign patterns) to a "
                 "certified duality gap, and save the recovered network");
    auto args = std::make_shared<TrainArgs>();
    command->add_option("DATA_DIR", args->data_dir, "Image folder: DATA_DIR/<class>/<image>")->required();
    command->add_option("-o,--out", args->out, "Model file to write (atomically)")->required();
    command->add_option("--arch", args->arch, "A preset of models/presets.json (default, relu, fast, wide, cifar) or an architecture such as conv3x3s1p1-relu-pool7")->capture_default_str();
    CLI::Option* patterns_option = command->add_option("-P,--patterns", args->patterns, "Sign patterns to sample (generators drawn)")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    command->add_option("--pattern-source", args->pattern_source, "Generators: gaussian N(0, I) or data patches")
        ->check(CLI::IsMember({"gaussian", "data"}))
        ->capture_default_str();
    command->add_option("--rank", args->rank,
                        "Enumerate every sign pattern exactly, of the patches projected to this rank "
                        "(exact when their rank is <= it; tiny data only) instead of sampling")
        ->check(CLI::Range(1, 16))
        ->excludes(patterns_option);
    command->add_option("--seed", args->seed, "Seed of the pattern draws and the validation split")->capture_default_str();
    command->add_option("--loss", args->loss, "cross-entropy (softmax) or squared (one-hot targets)")
        ->check(CLI::IsMember({"cross-entropy", "squared"}))
        ->capture_default_str();
    command->add_option("--beta", args->beta, "Weight decay: a number, or auto (best validation accuracy on a path)")
        ->capture_default_str();
    command->add_option("--val-split", args->val_split, "Fraction of DATA_DIR held out for validation")
        ->check(CLI::Range(0.0, 0.9))
        ->capture_default_str();
    command->add_option("--path-max", args->path_max, "Largest beta of --beta auto, as a fraction of beta_max")
        ->check(CLI::Range(1e-12, 1.0))
        ->capture_default_str();
    command->add_option("--path-min", args->path_min, "Smallest beta of --beta auto, as a fraction of beta_max")
        ->check(CLI::Range(1e-12, 1.0))
        ->capture_default_str();
    command->add_option("--path-points", args->path_points, "Betas tried by --beta auto")
        ->check(CLI::Range(1, 100))
        ->capture_default_str();
    command->add_option("--tol", args->tol, "Stop at this relative duality gap")->capture_default_str();
    command->add_option("--max-iters", args->max_iters, "Iteration cap of the chosen beta (its path iterations included)")->capture_default_str();
    command->add_option("--time-limit", args->time_limit, "Seconds for the whole run (0 = none); the model keeps the duality gap reached")->capture_default_str();
    command->add_option("--max-memory", args->max_memory, "Refuse runs estimated above this (default 75% of RAM)");
    command->add_flag("--json", args->json, "Print the training summary as JSON on stdout");
    args->data.add_to(*command);
    command->footer(
        "Example:\n"
        "  cvxcnn train datasets/fashion-mnist-sample/train --out sample.cvx --patterns 16\n"
        "  cvxcnn eval sample.cvx datasets/fashion-mnist-sample/test");

    return [args, &global]() -> int {
        TrainingSettings settings = settings_from(*args);  // every flag checked before any loading
        check_output_folder(args->out);
        const Dataset data = load_folder_reporting(args->data_dir, args->data, global.progress_mode());
        if (!global.quiet) settings.on_progress = progress_printer();
        const TrainingResult result = train_convex_cnn(data, settings);
        if (!global.quiet && ::isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
        // Divergence is a solver outcome, not an error: the model keeps the last finite
        // iterate and its certificate, but the user must hear of it (even with --quiet).
        for (const nlohmann::json& point : result.path)
            if (point.value("status", "") == "diverged")
                std::fprintf(stderr, "cvxcnn: warning: the solver diverged at beta %.4g and stopped there\n",
                             point.value("beta", 0.0));
        if (result.solve.status == SolverStatus::diverged)
            std::fprintf(stderr,
                         "cvxcnn: warning: the solver diverged; the model keeps the last finite iterate "
                         "(relative duality gap %.2e)\n",
                         result.solve.rel_gap);
        write_model(args->out, result.model);
        if (args->json) {
            nlohmann::json out = result.model.training;
            out["model"] = args->out;
            out["architecture"] = to_string(result.model.architecture);
            std::printf("%s\n", out.dump(2).c_str());
        } else {
            std::printf("trained %s on %zu images (%zu held out): %d filters from %zu patterns, beta %.4g\n",
                        to_string(result.model.architecture).c_str(), result.train_samples, result.val_samples,
                        result.model.filters(), result.patterns_kept, result.beta);
            std::printf("objective %.6g, dual %.6g, relative duality gap %.2e (%s after %d iterations)\n",
                        result.solve.primal, result.solve.dual, result.solve.rel_gap,
                        std::string(to_string(result.solve.status)).c_str(), result.solve.iterations);
            std::printf("train accuracy %.2f%%", 100 * result.train_accuracy);
            if (result.val_accuracy >= 0) std::printf(", validation accuracy %.2f%%", 100 * result.val_accuracy);
            std::printf(", %.1f s\nwrote %s\n", result.seconds, args->out.c_str());
        }
        return exit_success;
    };
}

}  // namespace cvxcnn::cli
