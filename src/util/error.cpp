#include "cvxcnn/util/error.hpp"

namespace cvxcnn {

Error file_error(const std::filesystem::path& path, const std::string& defect, ErrorKind kind) {
    return Error(kind, path.string() + ": " + defect);
}

}  // namespace cvxcnn
