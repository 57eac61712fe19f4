#include "commands.hpp"

#include "cvxcnn/util/error.hpp"

namespace cvxcnn::cli {

CommandRunner add_export_command(CLI::App& app, const GlobalOptions& /*global*/) {
    app.add_subcommand("export", "(not available yet)");
    return [] () -> int { throw Error(ErrorKind::bad_input, "'export' is not available in this build yet"); };
}

}  // namespace cvxcnn::cli
