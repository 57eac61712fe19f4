// The one exception type of cvxcnn's library boundary.
//
// Every failure that a user can cause (a bad file, a bad flag value, a limit exceeded)
// is thrown as cvxcnn::Error with a one-line message that names the file or option and
// the defect. The command line turns it into that line on stderr and exit code 1.
// Solver outcomes (max iterations, time limit) are not errors: they are statuses.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

namespace cvxcnn {

enum class ErrorKind {
    bad_input,  ///< malformed or inconsistent data, file or option value
    io,         ///< the operating system refused a read, write or rename
    limit,      ///< a configured resource limit would be exceeded
    internal,   ///< a broken invariant inside cvxcnn (a bug)
};

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }

private:
    ErrorKind kind_;
};

/// Bad input attributed to a file: "<path>: <defect>".
[[nodiscard]] Error file_error(const std::filesystem::path& path, const std::string& defect,
                               ErrorKind kind = ErrorKind::bad_input);

}  // namespace cvxcnn
