#include "commands.hpp"

#include "cvxcnn/util/error.hpp"

namespace cvxcnn::cli {

CommandRunner add_eval_command(CLI::App& app, const GlobalOptions& /*global*/) {
    app.add_subcommand("eval", "(not available yet)");
    return [] () -> int { throw Error(ErrorKind::bad_input, "'eval' is not available in this build yet"); };
}

}  // namespace cvxcnn::cli
