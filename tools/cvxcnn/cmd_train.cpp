// cvxcnn train: a two-layer CNN trained by solving its convex equivalent to a certified
// duality gap (--solver convex, the default), or the same network trained directly by
// SGD with momentum or Adam (--solver sgd|adam: the non-convex baseline), saved as a
// model file; or (--solver relaxation) one ReLU neuron per class fit by the single-neuron
// convex relaxation; or (--solver sdp) the SDP relaxation of the infinite-width network's
// completely positive program, rounded to a network; --depth 3 trains a three-layer CNN by
// its convex program over pattern pairs. One switch picks the trainer, so no
// combination means nothing; --method is its other name (the papers speak of methods).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <vector>
#include <memory>
#include <optional>
#include <string>

#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "cvxcnn/deep/three_layer_training.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/model/presets.hpp"
#include "cvxcnn/relaxation/relaxation_training.hpp"
#include "cvxcnn/sdp/sdp_training.hpp"
#include "cvxcnn/train/checkpoint.hpp"
#include "cvxcnn/train/convex_training.hpp"
#include "cvxcnn/train/sgd_training.hpp"
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
    std::string resume;
    std::string checkpoint;
    double checkpoint_every = 300.0;
    bool json = false;
    DataOptions data;
    // --solver sgd | adam
    std::string solver = "convex";
    int depth = 2;  // 3: the three-layer program (deep/three_layer_training.hpp)
    double lr = SgdSettings{}.learning_rate;
    int epochs = SgdSettings{}.epochs;
    int width = SgdSettings{}.width;
    int batch_size = SgdSettings{}.batch_size;
    double momentum = SgdSettings{}.momentum;
    // --solver sdp
    int sdp_dim = 0;
};

// Options that only one kind of solver reads; given with the other they are refused
// rather than silently ignored.
struct SolverOnlyOptions {
    std::vector<CLI::Option*> convex;    // --patterns, --rank, --tol, ...
    std::vector<CLI::Option*> gradient;  // --lr, --epochs, --width, --batch-size
    CLI::Option* momentum = nullptr;     // sgd only
    CLI::Option* beta = nullptr;
    // --solver relaxation reads these of the convex list, and refuses every other option
    // of the two lists and --loss, --time-limit (it fits the squared loss, in a few seconds).
    CLI::Option* tol = nullptr;
    CLI::Option* max_iters = nullptr;
    CLI::Option* loss = nullptr;
    CLI::Option* time_limit = nullptr;
    CLI::Option* arch = nullptr;
    CLI::Option* sdp_dim = nullptr;  // --solver sdp only
    // --depth 3 reads these of the convex list and refuses the others (checkpoints,
    // --pattern-source, --max-memory belong to the two-layer trainer).
    CLI::Option* depth = nullptr;
    CLI::Option* patterns = nullptr;
    CLI::Option* path_max = nullptr;
    CLI::Option* path_min = nullptr;
    std::vector<CLI::Option*> three_layer_reads;
};

std::string applies_only_to(const std::string& applies_to, const std::string& solver) {
    return "applies to " + applies_to + " only, not to --solver " + solver;
}

// What --solver sdp, --solver relaxation and --depth 3 accept: some options of the convex
// list and none of the gradient list (nor --momentum); the other options are refused.
struct MethodOptionRules {
    std::vector<const CLI::Option*> convex_reads;  // of SolverOnlyOptions::convex
    std::string convex_refusal;                     // the reason the rest of the convex list is refused
    std::vector<const CLI::Option*> refused;        // further options refused, with `refusal`
    std::string refusal;
    std::string beta_auto_refusal;  // the reason --beta auto is refused; empty: it is accepted
};

std::optional<MethodOptionRules> method_option_rules(const TrainArgs& args, const SolverOnlyOptions& options) {
    if (args.depth == 3)
        return MethodOptionRules{
            .convex_reads = {options.three_layer_reads.begin(), options.three_layer_reads.end()},
            .convex_refusal = "does not apply to --depth 3",
            .refused = {},
            .refusal = {},
            .beta_auto_refusal = {}};
    if (args.solver == "sdp")  // reads --tol, --max-iters (ADMM) and --time-limit; squared loss
        return MethodOptionRules{
            .convex_reads = {options.tol, options.max_iters},
            .convex_refusal = applies_only_to("--solver convex", args.solver),
            .refused = {options.momentum, options.loss},
            .refusal = "does not apply to --solver sdp (squared loss on one-hot targets, shared neurons)",
            .beta_auto_refusal = "--solver sdp needs a number (a positive weight decay, default 1e-3)"};
    if (args.solver == "relaxation")
        return MethodOptionRules{
            .convex_reads = {options.tol, options.max_iters},
            .convex_refusal = applies_only_to("--solver convex", args.solver),
            .refused = {options.momentum, options.loss, options.time_limit},
            .refusal = "does not apply to --solver relaxation (squared loss, one neuron per class)",
            .beta_auto_refusal = "--solver relaxation needs a number (a ridge, default 0)"};
    return std::nullopt;
}

void check_solver_options(const TrainArgs& args, const SolverOnlyOptions& options) {
    auto refuse = [&](const CLI::Option* option, const std::string& applies_to) {
        throw CLI::ValidationError(option->get_name(), applies_only_to(applies_to, args.solver));
    };
    if (args.solver != "sdp" && options.sdp_dim->count() > 0) refuse(options.sdp_dim, "--solver sdp");
    if (args.depth == 3 && args.solver != "convex")
        throw CLI::ValidationError("--depth", "3 is trained by the convex three-layer program only, not by --solver " +
                                                  args.solver);
    if (const std::optional<MethodOptionRules> rules = method_option_rules(args, options)) {
        for (const CLI::Option* option : options.convex)
            if (option->count() > 0 && std::ranges::find(rules->convex_reads, option) == rules->convex_reads.end())
                throw CLI::ValidationError(option->get_name(), rules->convex_refusal);
        for (const CLI::Option* option : options.gradient)
            if (option->count() > 0) refuse(option, "--solver sgd and adam");
        for (const CLI::Option* option : rules->refused)
            if (option->count() > 0) throw CLI::ValidationError(option->get_name(), rules->refusal);
        if (options.momentum->count() > 0) refuse(options.momentum, "--solver sgd");
        if (!rules->beta_auto_refusal.empty() && options.beta->count() > 0 && args.beta == "auto")
            throw CLI::ValidationError("--beta", rules->beta_auto_refusal);
        return;
    }
    const bool convex = args.solver == "convex";
    for (const CLI::Option* option : convex ? options.gradient : options.convex)
        if (option->count() > 0) refuse(option, convex ? "--solver sgd and adam" : "--solver convex");
    if (args.solver != "sgd" && options.momentum->count() > 0) refuse(options.momentum, "--solver sgd");
    if (!convex && options.beta->count() > 0 && args.beta == "auto")
        throw CLI::ValidationError("--beta", "auto picks beta on the convex path; --solver " + args.solver +
                                                 " needs a number");
}

double parse_beta(const std::string& text) {
    try {
        std::size_t used = 0;
        const double beta = std::stod(text, &used);
        if (used != text.size()) throw std::invalid_argument("trailing text");
        return beta;
    } catch (const std::exception&) {
        throw Error(ErrorKind::bad_input, "--beta '" + text + "': expected 'auto' or a positive number");
    }
}

SgdSettings sgd_settings_from(const TrainArgs& args, bool beta_given) {
    SgdSettings settings;
    settings.architecture = resolve_architecture(args.arch);
    settings.optimizer = args.solver == "sgd" ? Optimizer::sgd : Optimizer::adam;
    settings.width = args.width;
    settings.learning_rate = args.lr;
    settings.epochs = args.epochs;
    settings.batch_size = args.batch_size;
    settings.momentum = args.momentum;
    if (beta_given) settings.beta = parse_beta(args.beta);
    settings.loss = parse_loss(args.loss);
    settings.val_split = args.val_split;
    settings.seed = args.seed;
    settings.time_limit_s = args.time_limit;
    settings.validate();
    return settings;
}

TrainingSettings settings_from(const TrainArgs& args) {
    TrainingSettings settings;
    settings.architecture = resolve_architecture(args.arch);
    settings.patterns = args.patterns;
    settings.pattern_source =
        args.pattern_source == "data" ? SamplingOptions::Source::data_patches : SamplingOptions::Source::gaussian;
    settings.seed = args.seed;
    settings.loss = parse_loss(args.loss);
    if (args.rank > 0) settings.rank = args.rank;
    if (args.beta != "auto") settings.beta = parse_beta(args.beta);
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

// Ctrl-C and SIGTERM ask training to stop after the current iteration (it then writes a
// checkpoint and the model so far); a second Ctrl-C ends the process at once.
std::atomic<bool> interrupt_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void request_interrupt(int) {
    interrupt_requested.store(true);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
}

// Installs request_interrupt for the lifetime of a training run, then restores the old handlers.
class InterruptHandlers {
public:
    InterruptHandlers() {
        interrupt_requested.store(false);
        struct sigaction action {};
        action.sa_handler = request_interrupt;
        sigemptyset(&action.sa_mask);
        sigaction(SIGINT, &action, &old_int_);
        sigaction(SIGTERM, &action, &old_term_);
    }
    InterruptHandlers(const InterruptHandlers&) = delete;
    InterruptHandlers& operator=(const InterruptHandlers&) = delete;
    ~InterruptHandlers() {
        sigaction(SIGINT, &old_int_, nullptr);
        sigaction(SIGTERM, &old_term_, nullptr);
    }

private:
    struct sigaction old_int_ {};
    struct sigaction old_term_ {};
};

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

// The --json summary every trainer prints: the model's training record, where it was
// written and its architecture.
int print_json_summary(const Model& model, const std::string& path) {
    nlohmann::json out = model.training;
    out["model"] = path;
    out["architecture"] = to_string(model.architecture);
    std::printf("%s\n", out.dump(2).c_str());
    return exit_success;
}

// The last line of every trainer's text summary (val_accuracy < 0: no validation split).
void print_accuracy_and_output(double train_accuracy, double val_accuracy, double seconds, const std::string& path) {
    std::printf("train accuracy %.2f%%", 100 * train_accuracy);
    if (val_accuracy >= 0) std::printf(", validation accuracy %.2f%%", 100 * val_accuracy);
    std::printf(", %.1f s\nwrote %s\n", seconds, path.c_str());
}

// --solver sgd | adam: one progress line per epoch, the summary on stdout.
int run_gradient_training(const TrainArgs& args, bool beta_given, const GlobalOptions& global) {
    SgdSettings settings = sgd_settings_from(args, beta_given);  // every flag checked before any loading
    const Dataset data = load_folder_reporting(args.data_dir, args.data, global.progress_mode());
    if (!global.quiet) settings.on_progress = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    const SgdResult result = train_sgd_cnn(data, settings);
    write_model(args.out, result.model);
    if (args.json) return print_json_summary(result.model, args.out);
    std::printf("trained %s by %s on %zu images (%zu held out): %d filters, lr %.4g, beta %.4g, batch %d\n",
                to_string(result.model.architecture).c_str(), std::string(to_string(settings.optimizer)).c_str(),
                result.train_samples, result.val_samples, result.model.filters(), settings.learning_rate, settings.beta,
                settings.batch_size);
    std::printf("objective %.6g (loss %.6g) after %d of %d epochs, %zu steps (%s)\n", result.objective, result.loss,
                result.epochs_done, settings.epochs, result.steps, std::string(to_string(result.status)).c_str());
    print_accuracy_and_output(result.train_accuracy, result.val_accuracy, result.seconds, args.out);
    return exit_success;
}

// --solver sdp: every flag checked before loading, progress lines on stderr, the summary on stdout.
int run_sdp_training(const TrainArgs& args, const SolverOnlyOptions& options, const GlobalOptions& global) {
    SdpTrainingSettings settings;
    if (options.arch->count() > 0) settings.architecture = resolve_architecture(args.arch);
    if (options.tol->count() > 0) settings.solver.tol = args.tol;
    if (options.max_iters->count() > 0) settings.solver.max_iters = args.max_iters;
    if (options.time_limit->count() > 0) settings.solver.time_limit_s = args.time_limit;
    if (options.beta->count() > 0) settings.beta = parse_beta(args.beta);
    settings.dimension = args.sdp_dim;
    settings.val_split = args.val_split;
    settings.seed = args.seed;
    settings.validate();
    const Dataset data = load_folder_reporting(args.data_dir, args.data, global.progress_mode());
    if (!global.quiet) settings.solver.on_progress = progress_printer();
    const SdpTrainingResult result = train_sdp_cnn(data, settings);
    if (!global.quiet && ::isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
    write_model(args.out, result.model);
    if (args.json) return print_json_summary(result.model, args.out);
    const SdpResult& sdp = result.solution;
    std::printf("trained %s by the SDP relaxation on %zu images (%zu held out), projected to d = %d (residual %.3f), "
                "lifted size %td, beta %.4g\n",
                to_string(result.model.architecture).c_str(), result.train_samples, result.val_samples,
                result.dimension, result.projection_residual, sdp.lifted.rows(), settings.beta);
    std::printf("SDP objective %.6g, certified lower bound %.6g, rank %d (%s after %d iterations; residuals %.1e "
                "primal, %.1e dual, %.1e nonnegativity, %.1e complementarity)\n",
                sdp.objective, result.dual_bound, sdp.rank, std::string(to_string(sdp.status)).c_str(), sdp.iterations,
                sdp.primal_residual, sdp.dual_residual, sdp.residuals.nonnegativity, sdp.residuals.complementarity);
    std::printf("rounded network: %d neurons, objective %.6g (loss %.6g), %.3g of it above the SDP objective\n",
                result.model.filters(), result.rounded.objective, result.rounded.loss,
                result.model.training.value("rounding_gap", 0.0));
    print_accuracy_and_output(result.train_accuracy, result.val_accuracy, result.seconds, args.out);
    return exit_success;
}

// --solver relaxation: every flag checked before loading, the summary on stdout.
int run_relaxation_training(const TrainArgs& args, const SolverOnlyOptions& options, const GlobalOptions& global) {
    RelaxationTrainingSettings settings;
    if (options.arch->count() > 0) settings.architecture = resolve_architecture(args.arch);
    if (options.tol->count() > 0) settings.solver.tol = args.tol;
    if (options.max_iters->count() > 0) settings.solver.max_iters = args.max_iters;
    if (options.beta->count() > 0) settings.solver.ridge = parse_beta(args.beta);
    settings.val_split = args.val_split;
    settings.seed = args.seed;
    settings.solver.validate();
    const Dataset data = load_folder_reporting(args.data_dir, args.data, global.progress_mode());
    const RelaxationTrainingResult result = train_relaxation_cnn(data, settings);
    write_model(args.out, result.model);
    if (args.json) return print_json_summary(result.model, args.out);
    int converged = 0, steps = 0;
    for (const RelaxationResult& neuron : result.neurons) {
        converged += neuron.converged;
        steps += neuron.iterations;
    }
    std::printf("trained %s by the single-neuron relaxation on %zu images (%zu held out): %d neurons, %d converged, "
                "%d gradient steps in all\n",
                to_string(result.model.architecture).c_str(), result.train_samples, result.val_samples,
                result.model.filters(), converged, steps);
    print_accuracy_and_output(result.train_accuracy, result.val_accuracy, result.seconds, args.out);
    return exit_success;
}

// --depth 3: every flag checked before loading, progress as the two-layer trainer, the
// summary on stdout.
int run_three_layer_training(const TrainArgs& args, const SolverOnlyOptions& options, const GlobalOptions& global) {
    ThreeLayerTrainingSettings settings;
    if (options.arch->count() > 0) settings.architecture = resolve_architecture(args.arch);
    if (options.patterns->count() > 0) settings.patterns = args.patterns;
    if (args.rank > 0) settings.rank = args.rank;
    settings.seed = args.seed;
    settings.loss = parse_loss(args.loss);
    if (args.beta != "auto") settings.beta = parse_beta(args.beta);
    settings.path_points = args.path_points;
    if (options.path_max->count() > 0) settings.path_max_ratio = args.path_max;
    if (options.path_min->count() > 0) settings.path_min_ratio = args.path_min;
    settings.val_split = args.val_split;
    settings.rel_gap_tol = args.tol;
    settings.max_iters = args.max_iters;
    settings.time_limit_s = args.time_limit;
    settings.validate();
    const Dataset data = load_folder_reporting(args.data_dir, args.data, global.progress_mode());
    if (!global.quiet) settings.on_progress = progress_printer();
    const ThreeLayerTrainingResult result = train_three_layer_cnn(data, settings);
    if (!global.quiet && ::isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
    const ConeSolveInfo& info = result.solve.solve;
    if (info.status == ConeSolverStatus::diverged)
        std::fprintf(stderr, "cvxcnn: warning: the solver diverged; the model keeps the last certified iterate "
                             "(relative duality gap %.2e)\n", info.rel_gap);
    write_model(args.out, result.model);
    if (args.json) return print_json_summary(result.model, args.out);
    std::printf("trained %s with a hidden 1x1 layer (depth 3) on %zu images (%zu held out): %d filters in %d hidden "
                "units from %zu x %zu patterns%s, beta %.4g\n",
                to_string(result.model.architecture).c_str(), result.train_samples, result.val_samples,
                result.model.filters(), result.model.hidden_units(), result.first_patterns, result.second_patterns,
                result.complete_patterns ? " (complete)" : "", result.beta);
    std::printf("objective %.6g, dual %.6g, relative duality gap %.2e, cone violation %.1e (%s after %d iterations); "
                "network objective %.6g\n",
                info.primal, info.dual, info.rel_gap, info.violation, std::string(to_string(info.status)).c_str(),
                info.inner_iterations, result.solve.network_objective);
    print_accuracy_and_output(result.train_accuracy, result.val_accuracy, result.seconds, args.out);
    return exit_success;
}

}  // namespace

CommandRunner add_train_command(CLI::App& app, const GlobalOptions& global) {
    CLI::App* command = app.add_subcommand(
        "train", "Train a two-layer CNN by solving its convex equivalent (group lasso over sign patterns) to a "
                 "certified duality gap, and save the recovered network; or (--solver sgd|adam) train the same "
                 "network directly by SGD with momentum or Adam, the non-convex baseline");
    auto args = std::make_shared<TrainArgs>();
    auto only = std::make_shared<SolverOnlyOptions>();
    command->add_option("DATA_DIR", args->data_dir, "Image folder: DATA_DIR/<class>/<image>")->required();
    command->add_option("-o,--out", args->out, "Model file to write (atomically)")->required();
    command->add_option("--solver,--method", args->solver,
                        "convex (group lasso, certified), the non-convex baseline: sgd (with momentum) or adam, or "
                        "relaxation (one ReLU neuron per class, single-neuron convex relaxation), or sdp (SDP "
                        "relaxation of the infinite-width network, rounded; small n)")
        ->check(CLI::IsMember({"convex", "sgd", "adam", "relaxation", "sdp"}))
        ->capture_default_str();
    only->depth = command->add_option("--depth", args->depth,
                        "2: conv -> activation -> pool -> linear; 3: a hidden 1x1 layer with ReLU after the "
                        "activation, trained by the three-layer convex program (--solver convex, ReLU only; default "
                        "architecture: one patch over the whole image, conv<H>x<W>s1p0-relu-pool1)")
        ->check(CLI::Range(2, 3))
        ->capture_default_str();
    only->arch = command->add_option("--arch", args->arch, "A preset of models/presets.json (default, relu, fast, wide, cifar) or an architecture such as conv3x3s1p1-relu-pool7")->capture_default_str();
    CLI::Option* patterns_option = command->add_option("-P,--patterns", args->patterns, "Sign patterns to sample (generators drawn)")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    only->convex.push_back(patterns_option);
    only->patterns = patterns_option;
    only->convex.push_back(command->add_option("--pattern-source", args->pattern_source, "Generators: gaussian N(0, I) or data patches")
        ->check(CLI::IsMember({"gaussian", "data"}))
        ->capture_default_str());
    only->convex.push_back(command->add_option("--rank", args->rank,
                        "Enumerate every sign pattern exactly, of the patches projected to this rank "
                        "(exact when their rank is <= it; tiny data only) instead of sampling")
        ->check(CLI::Range(1, 16))
        ->excludes(patterns_option));
    command->add_option("--seed", args->seed, "Seed of the pattern draws (sgd, adam: of the initialization, gates and "
                                              "minibatch order) and of the validation split")->capture_default_str();
    only->loss = command->add_option("--loss", args->loss, "cross-entropy (softmax) or squared (one-hot targets)")
        ->check(CLI::IsMember({"cross-entropy", "squared"}))
        ->capture_default_str();
    only->beta = command->add_option("--beta", args->beta, "Weight decay: a number, or auto (best validation accuracy on a "
                                                           "path; convex only). sgd, adam: default 1e-4, the convex "
                                                           "objective's scaling")
        ->capture_default_str();
    command->add_option("--val-split", args->val_split, "Fraction of DATA_DIR held out for validation")
        ->check(CLI::Range(0.0, 0.9))
        ->capture_default_str();
    only->convex.push_back(command->add_option("--path-max", args->path_max, "Largest beta of --beta auto, as a fraction of beta_max")
        ->check(CLI::Range(1e-12, 1.0))
        ->capture_default_str());
    only->convex.push_back(command->add_option("--path-min", args->path_min, "Smallest beta of --beta auto, as a fraction of beta_max")
        ->check(CLI::Range(1e-12, 1.0))
        ->capture_default_str());
    only->convex.push_back(command->add_option("--path-points", args->path_points, "Betas tried by --beta auto")
        ->check(CLI::Range(1, 100))
        ->capture_default_str());
    only->convex.push_back(command->add_option("--tol", args->tol, "Stop at this relative duality gap (relaxation: relative gradient norm)")->capture_default_str());
    only->convex.push_back(command->add_option("--max-iters", args->max_iters, "Iteration cap of the chosen beta (its path iterations included; relaxation: gradient steps per neuron)")->capture_default_str());
    only->tol = only->convex.end()[-2];
    only->max_iters = only->convex.end()[-1];
    only->path_max = command->get_option("--path-max");
    only->path_min = command->get_option("--path-min");
    only->three_layer_reads = {only->patterns, command->get_option("--rank"), only->path_max, only->path_min,
                               command->get_option("--path-points"), only->tol, only->max_iters};
    only->time_limit = command->add_option("--time-limit", args->time_limit, "Seconds for the whole run (0 = none); the model keeps the duality gap "
                                                          "reached (sgd, adam: the weights after the step that passes it)")->capture_default_str();
    only->convex.push_back(command->add_option("--max-memory", args->max_memory, "Refuse runs estimated above this (default 75% of RAM)"));
    only->gradient.push_back(command->add_option("--lr", args->lr, "sgd, adam: learning rate")->capture_default_str());
    only->gradient.push_back(command->add_option("--epochs", args->epochs, "sgd, adam: passes over the training split")
        ->check(CLI::Range(1, 1000000))
        ->capture_default_str());
    only->gradient.push_back(command->add_option("--width", args->width, "sgd, adam: convolution filters m")
        ->check(CLI::Range(1, 65536))
        ->capture_default_str());
    only->gradient.push_back(command->add_option("--batch-size", args->batch_size, "sgd, adam: images per step")
        ->check(CLI::Range(1, 1000000))
        ->capture_default_str());
    only->momentum = command->add_option("--momentum", args->momentum, "sgd: heavy-ball momentum")
        ->check(CLI::Range(0.0, 0.999999))
        ->capture_default_str();
    only->sdp_dim = command->add_option("--sdp-dim", args->sdp_dim,
                                        "sdp: project the images onto their top d singular vectors (default "
                                        "min(pixels, 16)); the lifted matrix is (2n + d + classes)-square")
        ->check(CLI::Range(1, 4096));
    only->convex.push_back(command->add_option("--checkpoint", args->checkpoint,
                        "Checkpoint file written on Ctrl-C/SIGTERM and every --checkpoint-every seconds "
                        "(default OUT.ckpt; removed when training completes)"));
    only->convex.push_back(command->add_option("--checkpoint-every", args->checkpoint_every, "Seconds between checkpoints (0 = only when interrupted)")
        ->check(CLI::Range(0.0, 1e9))
        ->capture_default_str());
    CLI::Option* resume_option = command->add_option(
        "--resume", args->resume,
        "Continue an interrupted run from its checkpoint, with its settings, to the model the uninterrupted run gives");
    only->convex.push_back(resume_option);
    // A resumed run is the checkpoint's run: every option that shapes the result is its.
    for (const char* name : {"--arch", "--patterns", "--pattern-source", "--rank", "--seed", "--loss", "--beta",
                             "--val-split", "--path-max", "--path-min", "--path-points", "--tol", "--max-iters",
                             "--time-limit"})
        resume_option->excludes(command->get_option(name));
    command->add_flag("--json", args->json, "Print the training summary as JSON on stdout");
    args->data.add_to(*command);
    // A ParseError thrown here leaves app.parse(): main reports it as a usage error.
    command->final_callback([args, only] { check_solver_options(*args, *only); });
    command->footer(
        "Examples:\n"
        "  cvxcnn train datasets/fashion-mnist-sample/train --out sample.cvx --patterns 16\n"
        "  cvxcnn train datasets/fashion-mnist-sample/train --out adam.cvx --solver adam --lr 1e-3 --epochs 5 "
        "--width 64 --arch relu\n"
        "  cvxcnn train datasets/fashion-mnist-sample/train --out sdp.cvx --solver sdp --val-split 0.8 --beta 1e-3\n"
        "  cvxcnn train datasets/fashion-mnist-sample/train --out deep.cvx --depth 3 --resize 8x8 --patterns 6 "
        "--beta 1e-3\n"
        "  cvxcnn eval sample.cvx datasets/fashion-mnist-sample/test");

    return [args, only, &global]() -> int {
        check_output_folder(args->out);  // before any loading: a typo must not cost a training run
        if (args->depth == 3) return run_three_layer_training(*args, *only, global);
        if (args->solver == "relaxation")
            return run_relaxation_training(*args, *only, global);
        if (args->solver == "sdp") return run_sdp_training(*args, *only, global);
        if (args->solver != "convex") return run_gradient_training(*args, only->beta->count() > 0, global);
        // Every flag and the checkpoint are checked before any loading.
        TrainingSettings settings = settings_from(*args);
        std::optional<TrainingCheckpoint> resume;
        if (!args->resume.empty()) {
            resume = read_checkpoint(args->resume);
            const std::size_t max_memory = settings.max_memory_bytes;
            try {
                from_json(resume->settings, settings);
            } catch (const Error& e) {
                throw file_error(args->resume, e.what());
            }
            settings.max_memory_bytes = max_memory;
        }
        const std::filesystem::path checkpoint_path = args->checkpoint.empty() ? args->out + ".ckpt" : args->checkpoint;
        const Dataset data = load_folder_reporting(args->data_dir, args->data, global.progress_mode());
        if (!global.quiet) settings.on_progress = progress_printer();
        settings.checkpoint_every_s = args->checkpoint_every;
        settings.interrupt = [] { return interrupt_requested.load(); };
        settings.on_checkpoint = [&checkpoint_path](const TrainingCheckpoint& checkpoint) {
            write_checkpoint(checkpoint_path, checkpoint);
        };
        TrainingResult result;
        {
            const InterruptHandlers handlers;
            result = train_convex_cnn(data, settings, resume ? &*resume : nullptr);
        }
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
        if (result.interrupted) {
            std::fprintf(stderr,
                         "interrupted: wrote the best model so far to %s (status interrupted) and the checkpoint %s; "
                         "continue with: cvxcnn train %s --resume %s --out %s\n",
                         args->out.c_str(), checkpoint_path.c_str(), args->data_dir.c_str(), checkpoint_path.c_str(),
                         args->out.c_str());
            return exit_interrupted;
        }
        // The run is complete: its checkpoint would only resume what is already done.
        std::error_code ignored;
        std::filesystem::remove(checkpoint_path, ignored);
        if (args->json) return print_json_summary(result.model, args->out);
        std::printf("trained %s on %zu images (%zu held out): %d filters from %zu patterns, beta %.4g\n",
                    to_string(result.model.architecture).c_str(), result.train_samples, result.val_samples,
                    result.model.filters(), result.patterns_kept, result.beta);
        std::printf("objective %.6g, dual %.6g, relative duality gap %.2e (%s after %d iterations)\n",
                    result.solve.primal, result.solve.dual, result.solve.rel_gap,
                    std::string(to_string(result.solve.status)).c_str(), result.solve.iterations);
        print_accuracy_and_output(result.train_accuracy, result.val_accuracy, result.seconds, args->out);
        return exit_success;
    };
}

}  // namespace cvxcnn::cli
