#include "cvxcnn/util/error.hpp"

#include <cstdio>

namespace cvxcnn {

std::string one_line(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7F) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
            out += escaped;
        } else {
            out += c;
        }
    }
    return out;
}

Error file_error(const std::filesystem::path& path, const std::string& defect, ErrorKind kind) {
    // append, not operator+: GCC 12 warns falsely (-Wrestrict) on the temporary chain.
    std::string message = path.string();
    message.append(": ").append(defect);
    return Error(kind, message);
}

}  // namespace cvxcnn
