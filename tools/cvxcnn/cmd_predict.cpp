#include "commands.hpp"

#include "cvxcnn/util/error.hpp"

namespace cvxcnn::cli {

CommandRunner add_predict_command(CLI::App& app, const GlobalOptions& /*global*/) {
    app.add_subcommand("predict", "(not available yet)");
    return [] () -> int { throw Error(ErrorKind::bad_input, "'predict' is not available in this build yet"); };
}

}  // namespace cvxcnn::cli
