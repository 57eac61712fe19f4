// cvxcnn: train convolutional networks by convex optimization, run them with oneDNN.
#include <cstdio>
#include <exception>
#include <map>
#include <new>
#include <string>
#include <string_view>

#include <oneapi/dnnl/dnnl.hpp>

#include "commands.hpp"
#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/threads.hpp"

namespace {

std::string version_text() {
    const dnnl_version_t* dnnl = dnnl_version();
    return "cvxcnn " CVXCNN_VERSION " (oneDNN " + std::to_string(dnnl->major) + "." + std::to_string(dnnl->minor) +
           "." + std::to_string(dnnl->patch) + ")";
}

// Messages quote user input (paths, flag values, header text): CLI11's and standard
// exceptions' texts are escaped here as cvxcnn::Error escapes its own.
using cvxcnn::one_line;

void report_failure(std::string_view message) { std::fprintf(stderr, "cvxcnn: %s\n", one_line(message).c_str()); }

// CLI11 prints two lines and returns codes 100-127 by default; we promise one line and
// exit 2 for usage errors.
int report_usage_error(const CLI::ParseError& error, const CLI::App& app) {
    std::string message = error.what();
    if (message.empty()) message = "invalid command line";
    const std::string command = app.get_parent() ? "cvxcnn " + app.get_name() : std::string("cvxcnn");
    std::fprintf(stderr, "cvxcnn: %s (see '%s --help')\n", one_line(message).c_str(), command.c_str());
    return cvxcnn::cli::exit_usage;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace cvxcnn::cli;
    CLI::App app{"cvxcnn: train convolutional networks by convex optimization, run them with oneDNN.\n"
                 "Typical job: import a dataset, train, eval, predict, export.",
                 "cvxcnn"};
    app.set_version_flag("--version", version_text());
    app.require_subcommand(1);
    app.fallthrough();

    GlobalOptions global;
    app.add_flag("-q,--quiet", global.quiet, "No progress output on stderr")->configurable(false);
    app.add_option("-j,--threads", global.threads, "Worker threads for TBB and oneDNN (0 = all cores)")
        ->check(CLI::Range(0, 1024));

    std::map<const CLI::App*, CommandRunner> runners;
    auto add = [&](CommandRunner (*add_command)(CLI::App&, const GlobalOptions&)) {
        const std::size_t before = app.get_subcommands({}).size();
        CommandRunner runner = add_command(app, global);
        runners[app.get_subcommands({}).at(before)] = std::move(runner);
    };
    add(add_import_command);
    add(add_train_command);
    add(add_eval_command);
    add(add_predict_command);
    add(add_info_command);
    add(add_export_command);
    add(add_certify_command);

    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& success) {  // --help, --version (CallForHelp derives from Success)
        return app.exit(success);
    } catch (const CLI::ParseError& error) {
        const CLI::App* where = &app;
        for (const CLI::App* sub : app.get_subcommands()) where = sub;
        return report_usage_error(error, *where);
    }

    try {
        cvxcnn::ThreadLimit thread_limit(global.threads);
        for (const CLI::App* sub : app.get_subcommands()) return runners.at(sub)();
        return exit_usage;
    } catch (const cvxcnn::Error& error) {
        report_failure(error.what());
        return exit_failure;
    } catch (const std::bad_alloc&) {
        report_failure("out of memory");
        return exit_failure;
    } catch (const std::exception& error) {
        report_failure(std::string("internal error: ") + error.what());
        return exit_failure;
    }
}
