#include "commands.hpp"

#include "cvxcnn/util/error.hpp"

namespace cvxcnn::cli {

CommandRunner add_info_command(CLI::App& app, const GlobalOptions& /*global*/) {
    app.add_subcommand("info", "(not available yet)");
    return [] () -> int { throw Error(ErrorKind::bad_input, "'info' is not available in this build yet"); };
}

}  // namespace cvxcnn::cli
