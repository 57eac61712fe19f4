// Training checkpoints: where an interrupted `cvxcnn train` stands, so that `--resume`
// continues it to the same model an uninterrupted run writes.
//
// The data pipeline (split, normalization, patterns, features) is a deterministic
// function of the data and the settings, so a checkpoint stores only what the solve has
// learned: the settings, a fingerprint of the data, the position on the beta path, the
// best point so far and the solver's full state (SolverState). Resuming rebuilds the
// features and continues bit for bit.
//
// File: 8-byte magic "\x89CVXCKP\n", the checkpoint as CBOR (RFC 8949; arrays as byte
// strings of little-endian values), CRC-32 of everything before it. Written atomically.
#pragma once

#include <cstdint>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/solvers/group_lasso.hpp"
#include "cvxcnn/util/matrix.hpp"

namespace cvxcnn {

struct TrainingCheckpoint {
    nlohmann::json settings;             ///< TrainingSettings as JSON (to_json)
    std::uint64_t data_fingerprint = 0;  ///< data_fingerprint() of the training folder
    std::uint64_t data_images = 0;
    /// The stage being solved: index into the beta path, or the path's length for the
    /// final solve of the chosen beta.
    int stage = 0;
    nlohmann::json path = nlohmann::json::array();  ///< path points finished so far
    // ---- the best path point so far (none if best_weights is empty)
    RowMatrixF best_weights;
    SolveInfo best_solve;
    double best_beta = 0.0;
    double best_val_accuracy = -1.0;
    double best_train_accuracy = 0.0;
    // ---- the stage in progress
    SolverState solver;
    double elapsed_s = 0.0;  ///< training time spent before the checkpoint (set-up included)
    double setup_s = 0.0;    ///< the original run's set-up time (the path's time shares start there)
};

/// FNV-1a over the labels, class names, shape and pixel values: equal data, equal value.
[[nodiscard]] std::uint64_t data_fingerprint(const Dataset& data);

/// Writes atomically (temp file + rename). Throws cvxcnn::Error (io) naming the path.
void write_checkpoint(const std::filesystem::path& path, const TrainingCheckpoint& checkpoint);
/// Reads and checks magic, checksum, structure and sizes; throws cvxcnn::Error naming
/// the file and the defect.
[[nodiscard]] TrainingCheckpoint read_checkpoint(const std::filesystem::path& path);

}  // namespace cvxcnn
