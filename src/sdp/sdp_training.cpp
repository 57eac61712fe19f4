#include "cvxcnn/sdp/sdp_training.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/patterns/sign_patterns.hpp"
#include "cvxcnn/problem/convex_features.hpp"
#include "cvxcnn/train/convex_training.hpp"
#include "cvxcnn/train/training_split.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using Index = Eigen::Index;

void check_architecture(const Architecture& architecture, const ImageShape& shape) {
    validate_for_input(architecture, shape);
    const bool covered = architecture.activation == Activation::relu ||
                         architecture.activation == Activation::leaky_relu ||
                         architecture.activation == Activation::absolute;
    if (!covered || architecture.conv_output_size(shape.height) != 1 || architecture.conv_output_size(shape.width) != 1 ||
        architecture.pool_grid != 1)
        throw Error(ErrorKind::bad_input, "--arch " + to_string(architecture) +
                                              ": --solver sdp trains a two-layer network on the whole image "
                                              "(relu, leaky or abs); use " + to_string(whole_image_network(shape)));
}

}  // namespace

void SdpTrainingSettings::validate() const {
    solver.validate();
    if (!(beta > 0.0) || !std::isfinite(beta))
        throw Error(ErrorKind::bad_input, "--beta: --solver sdp needs a positive weight decay");
    if (dimension < 0) throw Error(ErrorKind::bad_input, "--sdp-dim: must be >= 1 (0 = the default)");
    if (!(val_split >= 0.0 && val_split < 1.0)) throw Error(ErrorKind::bad_input, "--val-split: must be in [0, 1)");
    if (max_lifted_size < 4) throw Error(ErrorKind::bad_input, "--solver sdp: the lifted size limit must be >= 4");
}

Architecture whole_image_network(const ImageShape& shape, Activation activation) {
    return whole_image_architecture(shape, activation, "--solver sdp");
}

SdpTrainingResult train_sdp_cnn(const Dataset& data, const SdpTrainingSettings& settings) {
    const auto start = std::chrono::steady_clock::now();
    settings.validate();
    if (data.size() == 0) throw Error(ErrorKind::bad_input, "--solver sdp: no images");
    const Architecture architecture = settings.architecture ? *settings.architecture : whole_image_network(data.shape);
    check_architecture(architecture, data.shape);

    SdpTrainingResult result;
    const TrainingSplit split = prepare_training_split(data, architecture, settings.val_split, settings.seed);
    const Dataset &train = split.train, &val = split.val;
    result.train_samples = train.size();
    result.val_samples = val.size();
    const int classes = static_cast<int>(data.class_names.size());
    const int h = static_cast<int>(data.shape.values());
    const int dimension = settings.dimension > 0 ? settings.dimension
                                                 : static_cast<int>(std::min<Index>(h, sdp_default_dimension));
    if (dimension > h)
        throw Error(ErrorKind::bad_input, "--sdp-dim " + std::to_string(dimension) + ": the images have only " +
                                              std::to_string(h) + " values");
    const Index n = static_cast<Index>(train.size());
    const Index lifted = 2 * n + dimension + classes;
    if (lifted > settings.max_lifted_size)
        throw Error(ErrorKind::limit,
                    "--solver sdp: the lifted matrix would be " + std::to_string(lifted) + "x" + std::to_string(lifted) +
                        " (2n + d + c with n = " + std::to_string(n) + " training images, d = " +
                        std::to_string(dimension) + " (--sdp-dim), c = " + std::to_string(classes) +
                        " classes), above the limit " + std::to_string(settings.max_lifted_size) +
                        " (time grows like its cube per iteration): hold out more with --val-split or train on a "
                        "smaller folder");
    result.dimension = dimension;

    const PatchMatrices& patches = split.patches;
    // The neurons live in the span of the top right singular vectors (identity when d = h).
    Eigen::MatrixXd basis;
    SdpProblem problem;
    if (dimension < h) {
        RankProjection projection = project_to_rank(patches.block(0), dimension);
        basis = std::move(projection.basis);
        problem.inputs = std::move(projection.reduced);
        result.projection_residual = projection.relative_residual;
    } else {
        basis = Eigen::MatrixXd::Identity(h, h);
        problem.inputs = patches.block(0).cast<double>();
    }
    problem.targets = RowMatrixD::Zero(n, classes);
    for (Index i = 0; i < n; ++i) problem.targets(i, train.labels[static_cast<std::size_t>(i)]) = 1.0;
    problem.beta = settings.beta;
    problem.negative_part_weight = -FeatureActivation::of(architecture).inactive_slope();

    result.solution = solve_sdp_relaxation(problem, settings.solver);
    result.rounded = round_to_network(problem, result.solution, settings.rounding);
    result.dual_bound = sdp_dual_bound(problem, result.solution, result.rounded.objective);

    const TwoLayerNetwork& network = result.rounded.network;
    const int filters = static_cast<int>(network.neurons());
    Model model = make_model(architecture, data.shape, data.class_names, filters);
    model.normalization = split.normalization;
    const RowMatrixD image_filters = network.first * basis.transpose();  // m x h
    for (int j = 0; j < filters; ++j) {
        for (int k = 0; k < h; ++k)
            model.conv_weight.data[static_cast<std::size_t>(j) * h + k] = static_cast<float>(image_filters(j, k));
        for (int c = 0; c < classes; ++c)
            model.fc_weight.data[static_cast<std::size_t>(c) * filters + j] = static_cast<float>(network.second(j, c));
    }
    result.train_accuracy = reference_accuracy(model, train);
    result.val_accuracy = reference_accuracy(model, val);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    nlohmann::json sdp;
    to_json(sdp, result.solution);
    sdp["dual_bound"] = result.dual_bound;  // tightened by the rounded network
    model.training = {
        {"method", "SDP (doubly nonnegative) relaxation of the completely positive program of the infinite-width "
                   "two-layer network (Prakhya, Birdal, Yurtsever, ICLR 2025), ADMM, rounded to a network"},
        {"solver", "sdp"},
        {"loss", "squared"},
        {"beta", settings.beta},
        {"sdp_dim", dimension},
        {"projection_residual", result.projection_residual},
        {"sdp", sdp},
        {"objective", result.solution.objective},
        {"dual_bound", result.dual_bound},
        {"rank", result.solution.rank},
        {"rounded_objective", result.rounded.objective},
        {"rounded_loss", result.rounded.loss},
        {"refit_objective", result.rounded.refit_objective},
        // How far rounding lands above the relaxation: 0 would certify both optimal.
        {"rounding_gap", (result.rounded.objective - result.solution.objective) / std::max(result.rounded.objective, 1e-300)},
        {"filters", filters},
        {"tol", settings.solver.tol},
        {"max_iters", settings.solver.max_iters}};
    model.training.update(run_facts_json(result, settings.seed));
    result.model = std::move(model);
    return result;
}

}  // namespace cvxcnn
