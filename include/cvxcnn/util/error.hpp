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
#include <string_view>

namespace cvxcnn {

enum class ErrorKind {
    bad_input,  ///< malformed or inconsistent data, file or option value
    io,         ///< the operating system refused a read, write or rename
    limit,      ///< a configured resource limit would be exceeded
    internal,   ///< a broken invariant inside cvxcnn (a bug)
};

/// The text with every control character (bytes < 0x20 and 0x7F) written as "\xNN":
/// messages quote paths, flag values and bytes from files, and must stay one line.
[[nodiscard]] std::string one_line(std::string_view text);

class Error : public std::runtime_error {
public:
    /// The message is stored through one_line(), so it is always a single line.
    Error(ErrorKind kind, const std::string& message) : std::runtime_error(one_line(message)), kind_(kind) {}
    [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }

private:
    ErrorKind kind_;
};

/// Bad input attributed to a file: "<path>: <defect>".
[[nodiscard]] Error file_error(const std::filesystem::path& path, const std::string& defect,
                               ErrorKind kind = ErrorKind::bad_input);

}  // namespace cvxcnn
