// cvxcnn import: dataset distribution files -> PNG image folders (see dataset_import.hpp).
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "cvxcnn/data/dataset_import.hpp"

namespace cvxcnn::cli {
namespace {

struct ImportArgs {
    std::string kind;
    std::string src_dir;
    std::string out_dir;
    bool overwrite = false;
    bool json = false;
};

nlohmann::json split_json(const ImportSummary& summary, const SplitSummary& split) {
    nlohmann::json per_class = nlohmann::json::object();
    for (std::size_t c = 0; c < summary.class_folders.size(); ++c) per_class[summary.class_folders[c]] = split.per_class[c];
    return {{"images", split.images}, {"per_class", per_class}};
}

}  // namespace

CommandRunner add_import_command(CLI::App& app, const GlobalOptions& global) {
    CLI::App* command = app.add_subcommand(
        "import", "Convert MNIST, Fashion-MNIST or CIFAR-10 files into PNG folders OUT_DIR/{train,test}/<class>/");
    auto args = std::make_shared<ImportArgs>();
    command->add_option("KIND", args->kind, "Dataset: mnist, fashion-mnist or cifar10")
        ->required()
        ->check(CLI::IsMember({"mnist", "fashion-mnist", "cifar10"}));
    command->add_option("SRC_DIR", args->src_dir,
                        "Folder with the original files: the 4 IDX files (.gz or not) for mnist and "
                        "fashion-mnist; data_batch_1..5.bin and test_batch.bin (.gz or not) for cifar10")
        ->required();
    command->add_option("OUT_DIR", args->out_dir, "Folder to create (must not exist unless --overwrite)")->required();
    command->add_flag("--overwrite", args->overwrite, "Replace OUT_DIR if it exists (atomically, when complete)");
    command->add_flag("--json", args->json, "Print the summary as JSON on stdout");
    command->footer(
        "Example:\n"
        "  cvxcnn import fashion-mnist data/fashion-mnist fmnist\n"
        "  -> fmnist/train/<class>/00000.png ... (60000) and fmnist/test/<class>/0000.png ... (10000)");

    return [args, &global]() -> int {
        ImportOptions options;
        options.overwrite = args->overwrite;
        options.progress = global.progress_mode();
        const ImportSummary summary =
            import_dataset(parse_dataset_kind(args->kind), args->src_dir, args->out_dir, options);
        if (args->json) {
            nlohmann::json classes = nlohmann::json::array();
            for (std::size_t c = 0; c < summary.class_names.size(); ++c)
                classes.push_back({{"name", summary.class_names[c]}, {"folder", summary.class_folders[c]}});
            const nlohmann::json out = {{"kind", std::string(to_string(summary.kind))},
                                        {"out_dir", summary.out_dir.string()},
                                        {"classes", classes},
                                        {"train", split_json(summary, summary.train)},
                                        {"test", split_json(summary, summary.test)},
                                        {"seconds", summary.seconds}};
            std::printf("%s\n", out.dump(2).c_str());
        } else {
            std::printf("wrote %zu train and %zu test images in %zu classes to %s in %.1f s\n", summary.train.images,
                        summary.test.images, summary.class_names.size(), summary.out_dir.c_str(), summary.seconds);
        }
        return exit_success;
    };
}

}  // namespace cvxcnn::cli
