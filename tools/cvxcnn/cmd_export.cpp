// cvxcnn export: a model file as a standard ONNX graph (see export/onnx_export.hpp).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "cvxcnn/export/onnx_export.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/file_io.hpp"

namespace fs = std::filesystem;

namespace cvxcnn::cli {
namespace {

struct ExportArgs {
    std::string model;
    std::string format = "onnx";
    std::string out;
    bool json = false;
};

}  // namespace

CommandRunner add_export_command(CLI::App& app, const GlobalOptions& /*global*/) {
    CLI::App* command = app.add_subcommand("export", "Write a model as a standard ONNX graph (opset " +
                                                         std::to_string(onnx_opset) + ")");
    auto args = std::make_shared<ExportArgs>();
    command->add_option("MODEL", args->model, "Model file written by 'cvxcnn train'")->required();
    command->add_option("-f,--format", args->format, "Output format")
        ->check(CLI::IsMember({"onnx"}))
        ->capture_default_str();
    command->add_option("-o,--out", args->out, "File to write (atomically; an existing file is replaced)")->required();
    command->add_flag("--json", args->json, "Print a summary as JSON on stdout");
    command->footer("The graph takes N x C x H x W images with pixel/255 values and normalizes them itself;\n"
                    "outputs 'logits' and 'probabilities'; class names are in the metadata.\n"
                    "Example:\n  cvxcnn export sample.cvx --format onnx --out sample.onnx");

    return [args]() -> int {
        const Model model = read_model(args->model);
        std::error_code ec;
        if (fs::equivalent(args->model, args->out, ec))
            throw file_error(args->out, "--out names the model file itself; choose another file");
        const std::vector<std::uint8_t> bytes = encode_onnx(model);
        write_file_atomically(args->out, bytes);
        if (args->json) {
            const nlohmann::json out = {{"model", args->model},  {"out", args->out},
                                        {"format", args->format}, {"opset", onnx_opset},
                                        {"bytes", bytes.size()},  {"classes", model.class_names}};
            std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        } else {
            std::printf("wrote %s (ONNX opset %d, %zu bytes, input %s, %d classes)\n", args->out.c_str(), onnx_opset,
                        bytes.size(), to_string(model.input).c_str(), model.classes());
        }
        return exit_success;
    };
}

}  // namespace cvxcnn::cli
