#include "cvxcnn/train/checkpoint.hpp"

#include <array>
#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include <zlib.h>

#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/file_io.hpp"

namespace cvxcnn {
namespace {

using json = nlohmann::json;

// The arrays are written as raw host bytes and described as little-endian.
static_assert(std::endian::native == std::endian::little, "checkpoints are written on little-endian hosts only");

constexpr std::array<std::uint8_t, 8> magic = {0x89, 'C', 'V', 'X', 'C', 'K', 'P', '\n'};
constexpr int format_version = 1;
constexpr std::uint64_t max_checkpoint_bytes = 16ull << 30;

template <typename Matrix>
json matrix_to_json(const Matrix& matrix) {
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(matrix.data());
    return {{"rows", matrix.rows()},
            {"cols", matrix.cols()},
            {"data", json::binary(std::vector<std::uint8_t>(bytes, bytes + matrix.size() * sizeof(*matrix.data())))}};
}

template <typename Matrix>
Matrix matrix_from_json(const json& value, const char* name) {
    const auto rows = value.at("rows").get<std::int64_t>(), cols = value.at("cols").get<std::int64_t>();
    const auto& bytes = value.at("data").get_binary();
    using Scalar = typename Matrix::Scalar;
    if (rows < 0 || cols < 0 || (cols > 0 && static_cast<std::uint64_t>(rows) > bytes.size() / sizeof(Scalar) / cols) ||
        bytes.size() != static_cast<std::size_t>(rows * cols) * sizeof(Scalar))
        throw Error(ErrorKind::bad_input, std::string(name) + " is " + std::to_string(rows) + " x " +
                                              std::to_string(cols) + " but holds " + std::to_string(bytes.size()) +
                                              " bytes");
    Matrix matrix(rows, cols);
    if (!bytes.empty()) std::memcpy(matrix.data(), bytes.data(), bytes.size());
    return matrix;
}

json state_to_json(const SolverState& state) {
    return {{"next_iteration", state.next_iteration},
            {"w", matrix_to_json(state.w)},
            {"v", matrix_to_json(state.v)},
            {"zw", matrix_to_json(state.zw)},
            {"zv", matrix_to_json(state.zv)},
            {"t", state.t},
            {"eta", state.eta},
            {"initial_objective", state.initial_objective},
            {"best_dual", state.best_dual},
            {"v_is_w", state.v_is_w},
            {"working_set", state.working_set},
            {"seconds", state.seconds},
            {"info", state.info}};
}

SolverState state_from_json(const json& value) {
    SolverState state;
    value.at("next_iteration").get_to(state.next_iteration);
    state.w = matrix_from_json<RowMatrixD>(value.at("w"), "solver iterate");
    state.v = matrix_from_json<RowMatrixD>(value.at("v"), "solver extrapolation point");
    state.zw = matrix_from_json<RowMatrixD>(value.at("zw"), "solver logits");
    state.zv = matrix_from_json<RowMatrixD>(value.at("zv"), "solver logits");
    value.at("t").get_to(state.t);
    value.at("eta").get_to(state.eta);
    value.at("initial_objective").get_to(state.initial_objective);
    value.at("best_dual").get_to(state.best_dual);
    value.at("v_is_w").get_to(state.v_is_w);
    if (value.contains("working_set")) value.at("working_set").get_to(state.working_set);  // absent before it
    value.at("seconds").get_to(state.seconds);
    value.at("info").get_to(state.info);
    return state;
}

std::uint32_t crc_of(const std::uint8_t* bytes, std::size_t size) {
    return static_cast<std::uint32_t>(crc32_z(crc32_z(0L, Z_NULL, 0), bytes, size));
}

}  // namespace

std::uint64_t data_fingerprint(const Dataset& data) {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    const auto mix = [&hash](const void* bytes, std::size_t size) {
        const auto* p = static_cast<const std::uint8_t*>(bytes);
        for (std::size_t i = 0; i < size; ++i) hash = (hash ^ p[i]) * 0x100000001b3ull;
    };
    const std::array<std::int64_t, 3> shape = {data.shape.channels, data.shape.height, data.shape.width};
    mix(shape.data(), sizeof shape);
    for (const std::string& name : data.class_names) mix(name.data(), name.size() + 1);
    mix(data.labels.data(), data.labels.size() * sizeof(data.labels[0]));
    mix(data.images.data(), data.images.size() * sizeof(data.images[0]));
    return hash;
}

void write_checkpoint(const std::filesystem::path& path, const TrainingCheckpoint& checkpoint) {
    const json document = {{"format_version", format_version},
                           {"settings", checkpoint.settings},
                           {"data_fingerprint", checkpoint.data_fingerprint},
                           {"data_images", checkpoint.data_images},
                           {"stage", checkpoint.stage},
                           {"path", checkpoint.path},
                           {"best_weights", matrix_to_json(checkpoint.best_weights)},
                           {"best_solve", checkpoint.best_solve},
                           {"best_beta", checkpoint.best_beta},
                           {"best_val_accuracy", checkpoint.best_val_accuracy},
                           {"best_train_accuracy", checkpoint.best_train_accuracy},
                           {"solver", state_to_json(checkpoint.solver)},
                           {"elapsed_s", checkpoint.elapsed_s},
                           {"setup_s", checkpoint.setup_s}};
    std::vector<std::uint8_t> bytes(magic.begin(), magic.end());
    json::to_cbor(document, bytes);
    const std::uint32_t crc = crc_of(bytes.data(), bytes.size());
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<std::uint8_t>(crc >> (8 * i)));
    write_file_atomically(path, bytes);
}

TrainingCheckpoint read_checkpoint(const std::filesystem::path& path) {
    const std::vector<std::uint8_t> bytes = read_file(path, max_checkpoint_bytes);
    if (bytes.size() < magic.size() + 4 || !std::equal(magic.begin(), magic.end(), bytes.begin()))
        throw file_error(path, "not a cvxcnn checkpoint (bad magic)");
    const std::size_t body = bytes.size() - 4;
    std::uint32_t stored = 0;
    for (int i = 0; i < 4; ++i) stored |= static_cast<std::uint32_t>(bytes[body + i]) << (8 * i);
    if (stored != crc_of(bytes.data(), body)) throw file_error(path, "checksum mismatch (truncated or corrupt checkpoint)");
    try {
        const json document = json::from_cbor(bytes.begin() + magic.size(), bytes.begin() + static_cast<std::ptrdiff_t>(body));
        if (document.at("format_version").get<int>() != format_version)
            throw file_error(path, "checkpoint format version " + document.at("format_version").dump() +
                                       " is not supported (this build reads " + std::to_string(format_version) + ")");
        TrainingCheckpoint checkpoint;
        checkpoint.settings = document.at("settings");
        document.at("data_fingerprint").get_to(checkpoint.data_fingerprint);
        document.at("data_images").get_to(checkpoint.data_images);
        document.at("stage").get_to(checkpoint.stage);
        checkpoint.path = document.at("path");
        checkpoint.best_weights = matrix_from_json<RowMatrixF>(document.at("best_weights"), "best weights");
        document.at("best_solve").get_to(checkpoint.best_solve);
        document.at("best_beta").get_to(checkpoint.best_beta);
        document.at("best_val_accuracy").get_to(checkpoint.best_val_accuracy);
        document.at("best_train_accuracy").get_to(checkpoint.best_train_accuracy);
        checkpoint.solver = state_from_json(document.at("solver"));
        document.at("elapsed_s").get_to(checkpoint.elapsed_s);
        document.at("setup_s").get_to(checkpoint.setup_s);
        if (checkpoint.stage < 0 || !checkpoint.path.is_array() || !checkpoint.settings.is_object())
            throw Error(ErrorKind::bad_input, "inconsistent stage, path or settings");
        return checkpoint;
    } catch (const nlohmann::json::exception& e) {
        throw file_error(path, std::string("malformed checkpoint: ") + e.what());
    } catch (const Error& e) {
        if (std::string(e.what()).starts_with(path.string())) throw;
        throw file_error(path, e.what());
    }
}

}  // namespace cvxcnn
