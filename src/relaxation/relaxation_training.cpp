#include "cvxcnn/relaxation/relaxation_training.hpp"

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "cvxcnn/train/convex_training.hpp"
#include "cvxcnn/train/training_split.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
Architecture whole_image_neuron(const ImageShape& shape) {
    return whole_image_architecture(shape, Activation::relu, "--solver relaxation");
}

RelaxationTrainingResult train_relaxation_cnn(const Dataset& data, const RelaxationTrainingSettings& settings) {
    const auto start = std::chrono::steady_clock::now();
    settings.solver.validate();
    if (!(settings.val_split >= 0.0 && settings.val_split < 1.0))
        throw Error(ErrorKind::bad_input, "--val-split: must be in [0, 1)");
    if (data.size() == 0) throw Error(ErrorKind::bad_input, "--solver relaxation: no images");
    const Architecture architecture = settings.architecture ? *settings.architecture : whole_image_neuron(data.shape);
    validate_for_input(architecture, data.shape);
    if (architecture.activation != Activation::relu || architecture.conv_output_size(data.shape.height) != 1 ||
        architecture.conv_output_size(data.shape.width) != 1 || architecture.pool_grid != 1)
        throw Error(ErrorKind::bad_input, "--arch " + to_string(architecture) +
                                              ": --solver relaxation fits one ReLU neuron per class on the whole "
                                              "image; use " + to_string(whole_image_neuron(data.shape)));

    RelaxationTrainingResult result;
    const TrainingSplit split = prepare_training_split(data, architecture, settings.val_split, settings.seed);
    const Dataset &train = split.train, &val = split.val;
    result.train_samples = train.size();
    result.val_samples = val.size();
    const RowMatrixD x = split.patches.block(0).cast<double>();  // n x h: one position

    const int classes = static_cast<int>(data.class_names.size());
    RowMatrixD targets = RowMatrixD::Zero(x.rows(), classes);
    for (Eigen::Index i = 0; i < x.rows(); ++i) targets(i, train.labels[static_cast<std::size_t>(i)]) = 1.0;
    MultiRelaxationResult fit = solve_multi_neuron_relaxation(x, targets, settings.solver);

    Model model = make_model(architecture, data.shape, data.class_names, classes);
    model.normalization = split.normalization;
    const Eigen::Index h = x.cols();
    for (int c = 0; c < classes; ++c) {
        for (Eigen::Index j = 0; j < h; ++j)
            model.conv_weight.data[static_cast<std::size_t>(c * h + j)] = static_cast<float>(fit.weights(j, c));
        // Class c reads neuron c; one position, so average and sum pooling agree.
        model.fc_weight.data[static_cast<std::size_t>(c * classes + c)] = 1.0f;
    }
    result.neurons = std::move(fit.neurons);
    result.train_accuracy = reference_accuracy(model, train);
    result.val_accuracy = reference_accuracy(model, val);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    nlohmann::json relaxed = nlohmann::json::array(), losses = nlohmann::json::array(),
                   iterations = nlohmann::json::array();
    bool converged = true;
    for (const RelaxationResult& neuron : result.neurons) {
        relaxed.push_back(neuron.relaxed);
        losses.push_back(neuron.loss);
        iterations.push_back(neuron.iterations);
        converged = converged && neuron.converged;
    }
    model.training = {
        {"method", "single-neuron convex relaxation (Ergen & Pilanci, Allerton 2019), one ReLU neuron per class on "
                   "its one-hot column"},
        {"solver", "relaxation"},
        {"loss", "squared"},
        {"beta", settings.solver.ridge},
        {"relaxed_objectives", relaxed},
        {"neuron_losses", losses},
        {"iterations", iterations},
        {"converged", converged},
        {"tol", settings.solver.tol},
        {"max_iters", settings.solver.max_iters}};
    model.training.update(run_facts_json(result, settings.seed));
    result.model = std::move(model);
    return result;
}

}  // namespace cvxcnn
