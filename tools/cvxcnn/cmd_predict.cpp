// cvxcnn predict: classify image files with the oneDNN engine.
//   path<TAB>class<TAB>probability    one line per image (K lines with --top K, best first)
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "cvxcnn/data/image_folder.hpp"
#include "cvxcnn/engine/onednn_engine.hpp"
#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/util/error.hpp"

namespace fs = std::filesystem;

namespace cvxcnn::cli {
namespace {

struct PredictArgs {
    std::string model;
    std::vector<std::string> paths;
    int top = 1;
    bool json = false;
    bool resize = false;
    std::size_t batch = default_engine_batch;
    int max_image_side = DecodeLimits{}.max_side;
};

bool is_hidden(const fs::path& path) {
    const std::string name = path.filename().string();
    return !name.empty() && name.front() == '.';
}

struct Collected {
    std::vector<fs::path> files;
    std::size_t ignored = 0;  // hidden entries and non-image files inside folders
};

// A folder's image files, recursively (following symlinks), in sorted order: the order
// of `cvxcnn eval` and torchvision. Hidden entries and other file types are ignored.
void collect_folder(const fs::path& dir, Collected& out, int depth) {
    if (depth > 64) throw file_error(dir, "folders nested too deep (a symlink loop?)");
    std::vector<fs::path> entries;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) entries.push_back(it->path());
    if (ec) throw file_error(dir, "cannot list folder: " + ec.message(), ErrorKind::io);
    std::ranges::sort(entries, {}, [](const fs::path& p) { return p.filename().string(); });
    for (const auto& path : entries) {
        if (is_hidden(path)) {
            ++out.ignored;
        } else if (fs::is_directory(path, ec)) {
            collect_folder(path, out, depth + 1);
        } else if (has_image_extension(path)) {
            out.files.push_back(path);
        } else {
            ++out.ignored;
        }
    }
}

// Files named on the command line are taken as they are (the decoder reports a file that
// is no image); folders contribute their image files.
Collected collect(const std::vector<std::string>& paths) {
    Collected out;
    for (const auto& text : paths) {
        const fs::path path(text);
        std::error_code ec;
        if (fs::is_directory(path, ec)) {
            const std::size_t before = out.files.size();
            collect_folder(path, out, 0);
            if (out.files.size() == before)
                throw file_error(path, "folder holds no image file (.png .jpg .jpeg .bmp .pgm .ppm)");
        } else if (fs::exists(path, ec)) {
            out.files.push_back(path);
        } else {
            throw file_error(path, "no such file or folder");
        }
    }
    return out;
}

// Class indices of one probability row, best first; ties keep the lower index (as argmax).
std::vector<int> ranked_classes(const RowMatrixF& p, Eigen::Index row, int top) {
    std::vector<int> order(static_cast<std::size_t>(p.cols()));
    std::iota(order.begin(), order.end(), 0);
    std::ranges::stable_sort(order, [&](int a, int b) { return p(row, a) > p(row, b); });
    order.resize(static_cast<std::size_t>(top));
    return order;
}

}  // namespace

CommandRunner add_predict_command(CLI::App& app, const GlobalOptions& global) {
    CLI::App* command = app.add_subcommand("predict", "Classify images with a model (oneDNN engine): one line "
                                                      "path<TAB>class<TAB>probability per image");
    auto args = std::make_shared<PredictArgs>();
    command->add_option("MODEL", args->model, "Model file written by 'cvxcnn train'")->required();
    command->add_option("PATH", args->paths, "Image files, or folders searched recursively for images")->required();
    command->add_option("-k,--top", args->top, "Print the K most probable classes of each image (at most the "
                                               "number of classes), best first, one line each")
        ->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    command->add_flag("--json", args->json, "Print the predictions as JSON on stdout");
    command->add_flag("--resize", args->resize, "Resample images whose size differs from the model's input "
                                                "(otherwise that is an error)");
    command->add_option("-b,--batch", args->batch, "Images per forward pass")
        ->check(CLI::Range(1, 65536))
        ->capture_default_str();
    command->add_option("--max-image-side", args->max_image_side, "Refuse images declaring a larger width or height")
        ->check(CLI::Range(1, 16384))
        ->capture_default_str();
    command->footer("Images are converted to the model's channels (gray or RGB).\n"
                    "Example:\n  cvxcnn predict sample.cvx datasets/fashion-mnist-sample/test/Bag --top 3");

    return [args, &global]() -> int {
        const Model model = read_model(args->model);
        OnednnEngine engine(model, args->batch);  // refuses a --batch too large before decoding anything
        const Collected collected = collect(args->paths);
        if (collected.ignored > 0 && global.progress_mode() != ProgressMode::quiet)
            std::fprintf(stderr, "cvxcnn: ignored %zu hidden or non-image entr%s in the folders\n", collected.ignored,
                         collected.ignored == 1 ? "y" : "ies");
        DecodeLimits limits;
        limits.max_side = args->max_image_side;
        const Dataset images =
            load_image_files(collected.files, model.input, args->resize, limits, global.progress_mode());
        const RowMatrixF probabilities = engine.probabilities(images);
        const int top = std::min(args->top, model.classes());

        if (args->json) {
            nlohmann::json list = nlohmann::json::array();
            for (std::size_t i = 0; i < images.files.size(); ++i) {
                nlohmann::json predictions = nlohmann::json::array();
                for (const int c : ranked_classes(probabilities, static_cast<Eigen::Index>(i), top))
                    predictions.push_back({{"class", model.class_names[static_cast<std::size_t>(c)]},
                                           {"index", c},
                                           {"probability", probabilities(static_cast<Eigen::Index>(i), c)}});
                list.push_back({{"path", images.files[i].string()}, {"predictions", std::move(predictions)}});
            }
            const nlohmann::json out = {{"model", args->model}, {"engine", "onednn"}, {"images", std::move(list)}};
            // Paths need not be UTF-8; JSON must be: undecodable bytes become U+FFFD.
            std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
            return exit_success;
        }
        for (std::size_t i = 0; i < images.files.size(); ++i)
            for (const int c : ranked_classes(probabilities, static_cast<Eigen::Index>(i), top))
                std::printf("%s\t%s\t%.6f\n", images.files[i].string().c_str(),
                            model.class_names[static_cast<std::size_t>(c)].c_str(),
                            static_cast<double>(probabilities(static_cast<Eigen::Index>(i), c)));
        return exit_success;
    };
}

}  // namespace cvxcnn::cli
