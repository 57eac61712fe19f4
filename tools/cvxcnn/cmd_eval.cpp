// cvxcnn eval: accuracy, per-class accuracy and confusion matrix of a model on a labelled
// image folder. Runs the oneDNN engine; --engine reference runs the Eigen reference
// forward pass instead (the yardstick the engine is tested against).
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "cvxcnn/engine/metrics.hpp"
#include "cvxcnn/engine/onednn_engine.hpp"
#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/util/error.hpp"
#include "data_options.hpp"

namespace cvxcnn::cli {
namespace {

struct EvalArgs {
    std::string model;
    std::string data_dir;
    bool json = false;
    std::string engine = "onednn";
    std::size_t batch = default_engine_batch;
    DataOptions data;
};

// The folder's classes must be the model's, in the same order: otherwise label i of the
// folder is not output i of the model and the accuracy would be meaningless.
void check_classes(const Model& model, const Dataset& data, const std::string& dir) {
    if (data.class_names == model.class_names) return;
    std::string model_names, data_names;
    for (const auto& name : model.class_names) model_names += (model_names.empty() ? "" : " ") + name;
    for (const auto& name : data.class_names) data_names += (data_names.empty() ? "" : " ") + name;
    throw file_error(dir, "classes [" + data_names + "] differ from the model's [" + model_names + "]");
}

}  // namespace

CommandRunner add_eval_command(CLI::App& app, const GlobalOptions& global) {
    CLI::App* command = app.add_subcommand("eval", "Accuracy, per-class accuracy and confusion matrix of a model on "
                                                   "a labelled image folder");
    auto args = std::make_shared<EvalArgs>();
    command->add_option("MODEL", args->model, "Model file written by 'cvxcnn train'")->required();
    command->add_option("DIR", args->data_dir, "Image folder DIR/<class>/<image> with the model's classes")->required();
    command->add_option("-b,--batch", args->batch, "Images per forward batch")->check(CLI::Range(1, 65536))->capture_default_str();
    command->add_option("--engine", args->engine, "onednn, or reference (the plain Eigen forward pass)")
        ->check(CLI::IsMember({"onednn", "reference"}))
        ->capture_default_str();
    command->add_flag("--json", args->json, "Print accuracy, per-class accuracy, confusion matrix and n as JSON");
    args->data.add_to(*command);
    command->footer("Example:\n  cvxcnn eval sample.cvx datasets/fashion-mnist-sample/test --json");

    return [args, &global]() -> int {
        const Model model = read_model(args->model);
        // Built before the images are loaded, so a --batch too large fails at once.
        std::optional<OnednnEngine> engine;
        if (args->engine == "onednn") engine.emplace(model, args->batch);
        DataOptions data_options = args->data;
        data_options.channels = model.input.channels;  // convert to what the model reads
        const Dataset data = load_folder_reporting(args->data_dir, data_options, global.progress_mode());
        if (data.shape != model.input)
            throw file_error(args->data_dir, "images are " + to_string(data.shape) + ", the model expects " +
                                                 to_string(model.input) + " (pass --resize " +
                                                 std::to_string(model.input.height) + "x" +
                                                 std::to_string(model.input.width) + ")");
        check_classes(model, data, args->data_dir);
        const RowMatrixF logits = engine ? engine->logits(data) : reference_logits(model, data, args->batch);
        const Evaluation evaluation = evaluate(argmax_rows(logits), data.labels, model.classes());
        if (args->json) {
            nlohmann::json out = to_json(evaluation, model.class_names);
            out["model"] = args->model;
            out["data"] = args->data_dir;
            out["engine"] = args->engine;
            std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
            return exit_success;
        }
        std::printf("accuracy %.2f%% +- %.2f%% on %zu images (%s, %s engine)\n", 100 * evaluation.accuracy,
                    100 * evaluation.accuracy_stderr, evaluation.n, args->data_dir.c_str(), args->engine.c_str());
        for (std::size_t c = 0; c < model.class_names.size(); ++c) {
            const double a = evaluation.per_class_accuracy[c];
            std::printf("  %3zu  %-20s %6.2f%%  (%zu images)\n", c, model.class_names[c].c_str(),
                        std::isnan(a) ? 0.0 : 100 * a, evaluation.per_class_count[c]);
        }
        std::printf("%s", confusion_matrix_text(evaluation).c_str());
        return exit_success;
    };
}

}  // namespace cvxcnn::cli
