#include "commands.hpp"

#include "cvxcnn/util/error.hpp"

namespace cvxcnn::cli {

CommandRunner add_train_command(CLI::App& app, const GlobalOptions& /*global*/) {
    app.add_subcommand("train", "(not available yet)");
    return [] () -> int { throw Error(ErrorKind::bad_input, "'train' is not available in this build yet"); };
}

}  // namespace cvxcnn::cli
