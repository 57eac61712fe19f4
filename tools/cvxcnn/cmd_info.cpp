// cvxcnn info: what a model file holds (architecture, shapes, classes, normalization,
// training summary), or what an image folder holds (classes, counts, normalization and
// the patch matrices of an architecture with their numerical rank), as text or JSON.
#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>

#include "commands.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/model/presets.hpp"
#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/patterns/sign_patterns.hpp"
#include "data_options.hpp"

namespace cvxcnn::cli {
namespace {

struct InfoArgs {
    std::string model;
    bool json = false;
    std::string arch = "default";
    std::size_t max_patch_bytes = std::size_t{8} << 30;
    double rank_rtol = default_rank_rtol;
    DataOptions data;
};

std::string shortest(float value) {
    std::array<char, 32> buffer{};
    const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
    return {buffer.data(), result.ptr};
}

std::string float_list(const std::vector<float>& values) {
    std::string text = "[";
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (i > 0) text += ", ";
        text += shortest(values[i]);
    }
    return text + "]";
}

bool printable(const std::string& text) {
    return std::none_of(text.begin(), text.end(), [](char c) {
        const auto byte = static_cast<unsigned char>(c);
        return byte < 0x20 || byte == 0x7F;
    });
}

// Strings as they are unless they would break the line; everything else as compact JSON.
std::string human(const nlohmann::json& value) {
    if (value.is_string() && printable(value.get_ref<const std::string&>())) return value.get<std::string>();
    return value.dump();
}

nlohmann::json info_json(const std::string& path, const Model& model) {
    const Architecture& a = model.architecture;
    return {{"path", path},
            {"format_version", model_format_version},
            {"architecture", to_string(a)},
            {"input", {{"channels", model.input.channels}, {"height", model.input.height}, {"width", model.input.width}}},
            {"conv_output",
             {{"height", a.conv_output_size(model.input.height)}, {"width", a.conv_output_size(model.input.width)}}},
            {"pool_grid", a.pool_grid},
            {"filters", model.filters()},
            {"depth", model.has_hidden_layer() ? 3 : 2},
            {"hidden_units", model.hidden_units()},
            {"features", model.features()},
            {"parameter_count", model.parameter_count()},
            {"class_names", model.class_names},
            {"normalization", {{"mean", model.normalization.mean}, {"std", model.normalization.std}}},
            {"training", model.training}};
}

void print_text(const std::string& path, const Model& model) {
    const Architecture& a = model.architecture;
    const int out_h = a.conv_output_size(model.input.height), out_w = a.conv_output_size(model.input.width);
    std::printf("model          %s\n", path.c_str());
    std::printf("architecture   %s\n", to_string(a).c_str());
    std::printf("input          %s (channels x height x width)\n", to_string(model.input).c_str());
    std::printf("conv output    %dx%d, pooled to %dx%d\n", out_h, out_w, a.pool_grid, a.pool_grid);
    std::printf("filters        %d\n", model.filters());
    if (model.has_hidden_layer())
        std::printf("hidden layer   %d units (1x1 convolution + ReLU after the activation: depth 3)\n",
                    model.hidden_units());
    std::printf("features       %lld (%s x %d x %d)\n", static_cast<long long>(model.features()),
                model.has_hidden_layer() ? "hidden units" : "filters", a.pool_grid, a.pool_grid);
    std::printf("parameters     %zu\n", model.parameter_count());
    std::printf("classes        %d\n", model.classes());
    for (std::size_t c = 0; c < model.class_names.size(); ++c)
        std::printf("  %3zu  %s\n", c, model.class_names[c].c_str());
    std::printf("normalization  mean %s, std %s\n", float_list(model.normalization.mean).c_str(),
                float_list(model.normalization.std).c_str());
    if (model.training.empty()) {
        std::printf("training       (no settings recorded)\n");
        return;
    }
    std::printf("training\n");
    std::size_t width = 0;
    for (const auto& item : model.training.items()) width = std::max(width, human(item.key()).size());
    for (const auto& item : model.training.items())
        std::printf("  %-*s  %s\n", static_cast<int>(width), human(item.key()).c_str(), human(item.value()).c_str());
}

// log10 of 2 * sum_{j<r} C(N-1, j), the number of cells of N hyperplanes in general
// position in R^r: the count exact enumeration would have to visit.
double log10_cell_count(double rows, int rank) {
    double total = 0.0;  // accumulated in log space: the count overflows any integer
    double max_term = -1e300;
    std::vector<double> terms;
    for (int j = 0; j < rank && j < rows; ++j) {
        const double term = (std::lgamma(rows) - std::lgamma(j + 1.0) - std::lgamma(rows - j)) / std::log(10.0);
        terms.push_back(term);
        max_term = std::max(max_term, term);
    }
    for (const double term : terms) total += std::pow(10.0, term - max_term);
    return std::log10(2.0) + max_term + std::log10(total);
}

nlohmann::json dataset_json(const std::string& root, const Dataset& dataset, const Normalization& normalization,
                            const ImageFolderReport& report, const Architecture& architecture,
                            const PatchMatrices& patches, const RankReport& rank) {
    const std::vector<std::size_t> counts = class_counts(dataset);
    nlohmann::json classes = nlohmann::json::array();
    for (std::size_t c = 0; c < counts.size(); ++c)
        classes.push_back({{"index", c}, {"name", dataset.class_names[c]}, {"images", counts[c]}});
    nlohmann::json skipped = nlohmann::json::array();
    for (const auto& file : report.skipped) skipped.push_back(file.reason);
    const double rows = static_cast<double>(patches.samples()) * patches.positions();
    return {{"path", root},
            {"images", dataset.size()},
            {"input", {{"channels", dataset.shape.channels}, {"height", dataset.shape.height}, {"width", dataset.shape.width}}},
            {"classes", classes},
            {"normalization", {{"mean", normalization.mean}, {"std", normalization.std}}},
            {"load_seconds", report.seconds},
            {"skipped", skipped},
            {"hidden_ignored", report.hidden.size()},
            {"converted", report.converted},
            {"resized", report.resized},
            {"patches",
             {{"architecture", to_string(architecture)},
              {"positions", patches.positions()},
              {"patch_size", patches.patch_size()},
              {"rows", rows},
              {"numerical_rank", rank.rank},
              {"rank_rtol", rank.rtol},
              {"singular_values", rank.singular_values},
              {"log10_exact_pattern_count", log10_cell_count(rows, rank.rank)}}}};
}

void print_dataset_text(const nlohmann::json& info) {
    std::printf("dataset        %s\n", info["path"].get<std::string>().c_str());
    const auto& input = info["input"];
    std::printf("images         %zu in %zu classes, %dx%dx%d (channels x height x width)\n",
                info["images"].get<std::size_t>(), info["classes"].size(), input["channels"].get<int>(),
                input["height"].get<int>(), input["width"].get<int>());
    for (const auto& c : info["classes"])
        std::printf("  %3zu  %-20s %zu\n", c["index"].get<std::size_t>(), c["name"].get<std::string>().c_str(),
                    c["images"].get<std::size_t>());
    std::printf("normalization  mean %s, std %s\n",
                float_list(info["normalization"]["mean"].get<std::vector<float>>()).c_str(),
                float_list(info["normalization"]["std"].get<std::vector<float>>()).c_str());
    const double seconds = info["load_seconds"].get<double>();
    std::printf("loaded in      %.2f s (%.0f images/s)\n", seconds,
                seconds > 0 ? static_cast<double>(info["images"].get<std::size_t>()) / seconds : 0.0);
    const auto& p = info["patches"];
    std::printf("patches        %s: K = %d positions, h = %d, stacked matrix %.0f x %d\n",
                p["architecture"].get<std::string>().c_str(), p["positions"].get<int>(), p["patch_size"].get<int>(),
                p["rows"].get<double>(), p["patch_size"].get<int>());
    std::printf("numerical rank %d of %d (singular values above %g x the largest)\n", p["numerical_rank"].get<int>(),
                p["patch_size"].get<int>(), p["rank_rtol"].get<double>());
    std::printf("singular values");
    for (const double sigma : p["singular_values"]) std::printf(" %.4g", sigma);
    std::printf("\nexact patterns ~1e%.1f cells for N = %.0f hyperplanes in R^%d (2 sum_{j<r} C(N-1, j))\n",
                p["log10_exact_pattern_count"].get<double>(), p["rows"].get<double>(), p["numerical_rank"].get<int>());
}

int run_dataset_info(const InfoArgs& args, const GlobalOptions& global) {
    const Architecture architecture = resolve_architecture(args.arch);
    ImageFolderReport report;
    Dataset dataset = load_folder_reporting(args.model, args.data, global.progress_mode(), &report);
    validate_for_input(architecture, dataset.shape);
    const Normalization normalization = Normalization::compute(dataset);
    normalization.apply(dataset);  // the rank is that of the patches the solver would see
    const PatchMatrices patches = extract_patches(dataset, architecture, args.max_patch_bytes);
    const RankReport rank = numerical_rank(patches, args.rank_rtol);
    const nlohmann::json info = dataset_json(args.model, dataset, normalization, report, architecture, patches, rank);
    if (args.json)
        std::printf("%s\n", info.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    else
        print_dataset_text(info);
    return exit_success;
}

}  // namespace

CommandRunner add_info_command(CLI::App& app, const GlobalOptions& global) {
    CLI::App* command = app.add_subcommand(
        "info", "Show what a model file holds (architecture, input shape, filters, parameter count, classes, "
                "normalization, training summary) or what an image folder holds (classes, counts, normalization, "
                "patch matrices and their numerical rank)");
    auto args = std::make_shared<InfoArgs>();
    // No ExistingFile check: read_model reports a missing file as "<path>: no such file".
    command->add_option("PATH", args->model, "Model file written by 'cvxcnn train', or an image folder")->required();
    command->add_flag("--json", args->json, "Print the same information as one JSON object on stdout");
    command->add_option("--arch", args->arch, "For a folder: the architecture whose patch matrices to analyse")
        ->capture_default_str();
    command->add_option("--rank-rtol", args->rank_rtol,
                        "For a folder: singular values above this fraction of the largest count toward the rank")
        ->check(CLI::Range(1e-12, 0.5))
        ->capture_default_str();
    args->data.add_to(*command);
    command->footer(
        "Examples:\n"
        "  cvxcnn info fmnist.cvxcnn\n"
        "  cvxcnn info fmnist.cvxcnn --json | jq .parameter_count\n"
        "  cvxcnn info data/fashion-mnist/train --arch conv3x3s1p1-relu-pool7");

    return [args, &global]() -> int {
        std::error_code ec;
        if (std::filesystem::is_directory(args->model, ec)) return run_dataset_info(*args, global);
        const Model model = read_model(args->model);
        if (args->json)
            std::printf("%s\n", info_json(args->model, model).dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        else
            print_text(args->model, model);
        return exit_success;
    };
}

}  // namespace cvxcnn::cli
