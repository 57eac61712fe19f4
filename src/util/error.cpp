#include "cvxcnn/util/error.hpp"

namespace cvxcnn {

Error file_error(const std::filesystem::path& path, const std::string& defect, ErrorKind kind) {
    // append, not operator+: GCC 12 warns falsely (-Wrestrict) on the temporary chain.
    std::string message = path.string();
    message.append(": ").append(defect);
    return Error(kind, message);
}

}  // namespace cvxcnn
