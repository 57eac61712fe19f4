#include "cvxcnn/util/memory.hpp"

#include <cctype>
#include <cmath>
#include <cstdlib>

#include <unistd.h>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {

std::size_t physical_memory_bytes() {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page_size = ::sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page_size <= 0) return 0;
    return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page_size);
}

std::size_t parse_byte_size(const std::string& text, const std::string& option) {
    const auto fail = [&] {
        return Error(ErrorKind::bad_input, option + " '" + text + "': expected a size such as 12G, 800M or 1048576");
    };
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || !std::isfinite(value) || value <= 0) throw fail();
    std::string unit(end);
    for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (unit.ends_with("ib")) unit.resize(unit.size() - 2);
    else if (unit.ends_with("b")) unit.resize(unit.size() - 1);
    double scale = 1;
    if (unit == "k") scale = 1024.0;
    else if (unit == "m") scale = 1024.0 * 1024;
    else if (unit == "g") scale = 1024.0 * 1024 * 1024;
    else if (unit == "t") scale = 1024.0 * 1024 * 1024 * 1024;
    else if (!unit.empty()) throw fail();
    const double bytes = value * scale;
    if (bytes >= 1.8e19) throw fail();
    return static_cast<std::size_t>(bytes);
}

}  // namespace cvxcnn
