// cvxcnn certify: is a trained network (any trainer: convex, SGD, Adam) the global optimum
// of the convex program built from its own activation patterns? Prints the network's
// objective, the convex objective of the point it induces, the dual lower bound, the gap,
// the KKT residual and a verdict (certify/stationary_certificate.hpp).
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "cvxcnn/certify/stationary_certificate.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/memory.hpp"
#include "data_options.hpp"

namespace cvxcnn::cli {
namespace {

struct CertifyArgs {
    std::string model;
    std::string data_dir;
    double beta = 0.0;
    std::string loss;
    std::string program;
    double tolerance = CertifySettings{}.tolerance;
    double dead_tolerance = CertifySettings{}.dead_tolerance;
    bool all = false;
    bool json = false;
    std::string max_memory;
    DataOptions data;
};

}  // namespace

CommandRunner add_certify_command(CLI::App& app, const GlobalOptions& global) {
    CLI::App* command = app.add_subcommand(
        "certify", "Certify a trained network: global optimum of the convex program over its own activation "
                   "patterns, with the duality gap");
    auto args = std::make_shared<CertifyArgs>();
    command->add_option("MODEL", args->model, "Model file (from 'cvxcnn train', any --solver)")->required();
    command->add_option("DIR", args->data_dir, "The image folder it was trained on, DIR/<class>/<image>")->required();
    CLI::Option* beta = command->add_option("--beta", args->beta, "Weight decay (default: the model's training beta)")
                            ->check(CLI::PositiveNumber);
    CLI::Option* loss = command->add_option("--loss", args->loss, "cross-entropy or squared (default: the model's)")
                            ->check(CLI::IsMember({"cross-entropy", "squared"}));
    CLI::Option* program =
        command->add_option("--program", args->program,
                            "per-head (group per pattern, region, class) or shared (nuclear norm per pattern); "
                            "default: per-head when every filter feeds one class and region")
            ->check(CLI::IsMember({"per-head", "shared"}));
    command->add_option("--tol", args->tolerance, "Relative gap below which the network is declared optimal")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command->add_option("--dead-tol", args->dead_tolerance,
                        "Filters with ||w|| ||a|| below this fraction of the largest count as dead (left out)")
        ->check(CLI::Range(0.0, 0.999))
        ->capture_default_str();
    command->add_flag("--all", args->all, "Certify on every image of DIR, not the model's training split");
    command->add_option("--max-memory", args->max_memory, "Refuse runs estimated above this (default 75% of RAM)");
    command->add_flag("--json", args->json, "Print the certificate as JSON");
    args->data.add_to(*command);
    command->footer("Example:\n  cvxcnn certify adam.cvx /tmp/tiny/train --json");

    return [args, &global, beta, loss, program]() -> int {
        const Model model = read_model(args->model);
        DataOptions data_options = args->data;
        data_options.channels = model.input.channels;
        const Dataset folder = load_folder_reporting(args->data_dir, data_options, global.progress_mode());
        if (folder.shape != model.input)
            throw file_error(args->data_dir, "images are " + to_string(folder.shape) + ", the model expects " +
                                                 to_string(model.input));
        if (folder.class_names != model.class_names)
            throw file_error(args->data_dir, "its classes differ from the model's (names and order must match)");

        CertifySettings settings;
        if (beta->count() > 0) settings.beta = args->beta;
        if (loss->count() > 0) settings.loss = parse_loss(args->loss);
        if (program->count() > 0) settings.program = parse_certified_program(args->program);
        settings.tolerance = args->tolerance;
        settings.dead_tolerance = args->dead_tolerance;
        settings.max_bytes = args->max_memory.empty() ? physical_memory_bytes() / 4 * 3
                                                      : parse_byte_size(args->max_memory, "--max-memory");
        StationaryCertificate certificate;
        try {
            const Dataset data = args->all ? folder : certification_data(model, folder);
            certificate = certify_network(model, data, settings);
        } catch (const Error& error) {
            // Name the file the defect is in: the folder for split and image mismatches, else the model.
            const std::string message = error.what();
            if (error.kind() == ErrorKind::bad_input && message.rfind("--", 0) != 0)
                throw file_error(message.find("folder") != std::string::npos ? args->data_dir : args->model, message,
                                 error.kind());
            throw;
        }

        if (args->json) {
            nlohmann::json out = certificate;
            out["model"] = args->model;
            out["data"] = args->data_dir;
            std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
            return exit_success;
        }
        const StationaryCertificate& c = certificate;
        std::printf("model %s on %zu images of %s\n", args->model.c_str(), c.samples, args->data_dir.c_str());
        std::printf("program            %s (%s), beta %.6g, %s loss\n", std::string(to_string(c.program)).c_str(),
                    c.program == CertifiedProgram::per_head ? "group per pattern, region and class"
                                                            : "nuclear norm per pattern",
                    c.beta, std::string(to_string(c.loss)).c_str());
        std::printf("patterns           %d distinct own patterns of %d used filters (of %d; %d vanishing left out), "
                    "%d heads\n", c.patterns, c.used_filters, c.filters, c.dead_filters, c.heads);
        std::printf("network objective  %.9g (loss %.9g + beta x weight decay %.9g)\n", c.network_objective,
                    c.network_loss, c.network_weight_decay);
        std::printf("convex objective   %.9g (its induced point; F U vs network logits: %.2g relative)\n",
                    c.convex_objective, c.logit_difference);
        std::printf("dual lower bound   %.9g\n", c.dual);
        std::printf("gap                %.3g (relative %.3g)\n", c.gap, c.rel_gap);
        std::printf("KKT residual       %.3g (dual norm / beta %.6g, filter imbalance %.3g, %zu patch rows on a "
                    "filter's hyperplane)\n", c.kkt_residual, c.dual_norm_ratio, c.max_imbalance, c.ties);
        std::printf("verdict            %s\n", verdict(c).c_str());
        return exit_success;
    };
}

}  // namespace cvxcnn::cli
