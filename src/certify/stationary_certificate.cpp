#include "cvxcnn/certify/stationary_certificate.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include <Eigen/SVD>
#include <nlohmann/json.hpp>

#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/problem/convex_features.hpp"
#include "cvxcnn/train/convex_training.hpp"
#include "cvxcnn/train/network_gradient.hpp"
#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

using Index = Eigen::Index;

std::string format_number(double value) {
    std::ostringstream out;
    out.precision(4);
    out << value;
    return out.str();
}

bool all_zero(const Tensor& tensor) {
    return std::ranges::all_of(tensor.data, [](float v) { return v == 0.0f; });
}

double training_beta(const Model& model) {
    const auto it = model.training.find("beta");
    if (it == model.training.end() || !it->is_number())
        throw Error(ErrorKind::bad_input, "the model's training record has no beta: pass --beta");
    return it->get<double>();
}

Loss training_loss(const Model& model) {
    const auto it = model.training.find("loss");
    if (it == model.training.end() || !it->is_string()) return Loss::cross_entropy;
    return parse_loss(it->get<std::string>());
}

/// 1[X_k g >= 0] for every row of the stacked patches, as bits: the key that tells two
/// generators with the same pattern apart from different ones. Also counts the rows within
/// 1e-3 (relative) of a generator's hyperplane into `ties`. Products are formed for a fixed
/// block of rows at a time, so memory stays O(block x generators).
std::vector<std::vector<std::uint64_t>> pattern_bits(const PatchMatrices& patches, const RowMatrixF& generators,
                                                     std::size_t& ties) {
    const RowMatrixF& stacked = patches.stacked();
    const Index rows = stacked.rows(), m = generators.rows();
    const std::size_t words = static_cast<std::size_t>((rows + 63) / 64);
    std::vector<std::vector<std::uint64_t>> bits(static_cast<std::size_t>(m), std::vector<std::uint64_t>(words, 0));
    const Eigen::VectorXf generator_norms = generators.rowwise().norm();
    constexpr Index block_rows = 16384;
    ties = 0;
    RowMatrixF products;
    for (Index begin = 0; begin < rows; begin += block_rows) {
        const Index count = std::min(block_rows, rows - begin);
        products.noalias() = stacked.middleRows(begin, count) * generators.transpose();
        for (Index i = 0; i < count; ++i) {
            const float row_norm = stacked.row(begin + i).norm();
            const Index row = begin + i;
            for (Index f = 0; f < m; ++f) {
                if (products(i, f) >= 0.0f)
                    bits[static_cast<std::size_t>(f)][static_cast<std::size_t>(row / 64)] |= std::uint64_t{1} << (row % 64);
                ties += row_norm > 0.0f && std::abs(products(i, f)) <= 1e-3f * row_norm * generator_norms(f);
            }
        }
    }
    return bits;
}

/// Z_p (h x R*C) of pattern p from a (P*R*h) x C matrix in the feature layout: column
/// r*C + c is the block (p, r) of column c.
Eigen::MatrixXd pattern_matrix(const RowMatrixD& u, int pattern, int regions, int h) {
    const Index classes = u.cols();
    Eigen::MatrixXd z(h, regions * classes);
    for (int r = 0; r < regions; ++r)
        for (Index c = 0; c < classes; ++c)
            z.col(r * classes + c) = u.block((static_cast<Index>(pattern) * regions + r) * h, c, h, 1);
    return z;
}

/// Distance of M = -grad / beta to the subdifferential of the nuclear norm at Z:
/// {U V^T + W : U^T W = 0, W V = 0, ||W||_2 <= 1} with Z = U S V^T (thin, rank r).
double nuclear_kkt_residual(const Eigen::MatrixXd& z, const Eigen::MatrixXd& m) {
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(z, Eigen::ComputeFullU | Eigen::ComputeFullV);
    const Eigen::VectorXd& s = svd.singularValues();
    // Weights are float: singular values below this are rounding, not rank.
    const double cutoff = s.size() > 0 ? 1e-5 * s(0) : 0.0;
    Index rank = 0;
    while (rank < s.size() && s(rank) > cutoff && s(rank) > 0.0) ++rank;
    const Eigen::MatrixXd& u_full = svd.matrixU();
    const Eigen::MatrixXd& v_full = svd.matrixV();
    const Eigen::MatrixXd u = u_full.leftCols(rank), v = v_full.leftCols(rank);
    const Eigen::MatrixXd u_perp = u_full.rightCols(u_full.cols() - rank);
    const Eigen::MatrixXd v_perp = v_full.rightCols(v_full.cols() - rank);
    // M in the basis [U U_perp] x [V V_perp]: the three blocks touching U or V must equal
    // [I 0; 0 .], the U_perp x V_perp block must have spectral norm <= 1.
    double tangent = 0.0;
    if (rank > 0) {
        tangent += (u.transpose() * m * v - Eigen::MatrixXd::Identity(rank, rank)).squaredNorm();
        tangent += (u.transpose() * m * v_perp).squaredNorm();
        tangent += (u_perp.transpose() * m * v).squaredNorm();
    }
    double excess = 0.0;
    if (u_perp.cols() > 0 && v_perp.cols() > 0) {
        const Eigen::MatrixXd rest = u_perp.transpose() * m * v_perp;
        const Eigen::VectorXd sr = Eigen::JacobiSVD<Eigen::MatrixXd>(rest).singularValues();
        for (Index i = 0; i < sr.size(); ++i) excess += std::pow(std::max(0.0, sr(i) - 1.0), 2);
    }
    return std::sqrt(tangent + excess);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::string_view to_string(CertifiedProgram program) noexcept {
    return program == CertifiedProgram::per_head ? "per-head" : "shared";
}

CertifiedProgram parse_certified_program(std::string_view text) {
    if (text == "per-head") return CertifiedProgram::per_head;
    if (text == "shared") return CertifiedProgram::shared;
    throw Error(ErrorKind::bad_input, "--program '" + std::string(text) + "': expected per-head or shared");
}

Dataset certification_data(const Model& model, const Dataset& data) {
    const nlohmann::json& record = model.training;
    const auto number = [&](const char* key) -> std::optional<std::size_t> {
        const auto it = record.find(key);
        if (it == record.end() || !it->is_number_unsigned()) return std::nullopt;
        return it->get<std::size_t>();
    };
    const auto train = number("train_samples"), val = number("val_samples");
    const auto seed = record.find("seed");
    if (!train || !val || *val == 0 || seed == record.end() || !seed->is_number_unsigned()) return data;
    if (data.size() != *train + *val)
        throw Error(ErrorKind::bad_input, "the model was trained on " + std::to_string(*train) + " + " +
                                              std::to_string(*val) + " held-out images, the folder has " +
                                              std::to_string(data.size()) +
                                              ": certify the same folder, or every image with --all");
    // split_indices holds out llround(fraction * n) images: this fraction gives back val.
    const double fraction = static_cast<double>(*val) / static_cast<double>(data.size());
    auto [train_indices, val_indices] = split_indices(data.size(), fraction, seed->get<std::uint64_t>());
    return subset(data, train_indices);
}

StationaryCertificate certify_network(const Model& model, const Dataset& data, const CertifySettings& settings) {
    const auto start = std::chrono::steady_clock::now();
    validate(model);
    if (model.has_hidden_layer())
        throw Error(ErrorKind::bad_input, "the model has a hidden 1x1 layer (depth 3): certify covers two-layer "
                                          "networks only; a --depth 3 model carries its own duality gap");
    if (!all_zero(model.conv_bias) || !all_zero(model.fc_bias))
        throw Error(ErrorKind::bad_input,
                    "the model has nonzero biases (conv_bias or fc_bias): the convex program has no bias terms, so it "
                    "cannot represent this network (models cvxcnn trains have zero biases)");
    if (data.shape.channels != model.input.channels || data.shape.height != model.input.height ||
        data.shape.width != model.input.width)
        throw Error(ErrorKind::bad_input, "the images are " + std::to_string(data.shape.channels) + "x" +
                                              std::to_string(data.shape.height) + "x" + std::to_string(data.shape.width) +
                                              ", the model reads " + std::to_string(model.input.channels) + "x" +
                                              std::to_string(model.input.height) + "x" +
                                              std::to_string(model.input.width));
    if (data.class_names != model.class_names)
        throw Error(ErrorKind::bad_input, "the folder's classes differ from the model's (names and order must match)");
    if (data.size() == 0) throw Error(ErrorKind::bad_input, "no images to certify on");

    StationaryCertificate out;
    out.beta = settings.beta ? *settings.beta : training_beta(model);
    if (!(out.beta > 0.0) || !std::isfinite(out.beta))
        throw Error(ErrorKind::bad_input, "--beta " + format_number(out.beta) + ": must be positive");
    out.loss = settings.loss ? *settings.loss : training_loss(model);
    if (!(settings.tolerance > 0.0))
        throw Error(ErrorKind::bad_input, "--tol " + format_number(settings.tolerance) + ": must be positive");
    if (!(settings.dead_tolerance >= 0.0 && settings.dead_tolerance < 1.0))
        throw Error(ErrorKind::bad_input, "--dead-tol " + format_number(settings.dead_tolerance) + ": must be in [0, 1)");
    out.tolerance = settings.tolerance;
    out.samples = data.size();

    const Architecture& architecture = model.architecture;
    Dataset normalized = data;
    model.normalization.apply(normalized);
    const PatchMatrices patches = extract_patches(normalized, architecture, settings.max_bytes);
    const PoolingRegions& regions = patches.regions();
    const int h = patches.patch_size(), m = model.filters(), region_count = regions.count();
    const int classes = model.classes();
    out.filters = m;
    out.heads = classes * region_count;

    // Filters, gates and sum-pooling output weights a_{f,r,c} = fc / |r|.
    const Eigen::Map<const RowMatrixF> conv(model.conv_weight.data.data(), m, h);
    const bool gated = architecture.activation == Activation::gated_relu;
    const Eigen::Map<const RowMatrixF> gates(gated ? model.gate_weight.data.data() : model.conv_weight.data.data(), m, h);
    const Index features_per_class = static_cast<Index>(m) * region_count;
    const auto output = [&](int f, int r, int c) {
        return static_cast<double>(model.fc_weight.data[static_cast<std::size_t>(c * features_per_class + f * region_count + r)]) /
               regions.sizes[static_cast<std::size_t>(r)];
    };

    // Per filter: heads fed, ||w||, ||a||; then the used ones (non-negligible contribution).
    std::vector<int> heads(static_cast<std::size_t>(m), 0);
    std::vector<double> w_norm(static_cast<std::size_t>(m)), a_norm(static_cast<std::size_t>(m));
    double largest = 0.0;
    for (int f = 0; f < m; ++f) {
        const auto slot = static_cast<std::size_t>(f);
        double a_sq = 0.0;
        for (int c = 0; c < classes; ++c)
            for (int r = 0; r < region_count; ++r) {
                const double a = output(f, r, c);
                heads[slot] += a != 0.0;
                a_sq += a * a;
            }
        w_norm[slot] = conv.row(f).cast<double>().norm();
        a_norm[slot] = std::sqrt(a_sq);
        largest = std::max(largest, w_norm[slot] * a_norm[slot]);
    }
    std::vector<int> used;
    out.per_head_network = true;
    for (int f = 0; f < m; ++f) {
        const auto slot = static_cast<std::size_t>(f);
        const double product = w_norm[slot] * a_norm[slot];
        if (product == 0.0) continue;
        if (product <= settings.dead_tolerance * largest) {
            ++out.dead_filters;
            continue;
        }
        used.push_back(f);
        if (heads[slot] > 1) out.per_head_network = false;
        out.max_imbalance = std::max(out.max_imbalance, std::abs(w_norm[slot] - a_norm[slot]) /
                                                            std::max(w_norm[slot], a_norm[slot]));
    }
    out.used_filters = static_cast<int>(used.size());
    if (used.empty())
        throw Error(ErrorKind::bad_input, "the model has no filter with nonzero weights and outputs: no pattern to "
                                          "build the program from");
    out.program = settings.program ? *settings.program
                                   : (out.per_head_network ? CertifiedProgram::per_head : CertifiedProgram::shared);
    if (out.program == CertifiedProgram::per_head && !out.per_head_network)
        throw Error(ErrorKind::bad_input,
                    "--program per-head: some filters feed several (class, region) heads; the per-head program "
                    "charges them beta ||w|| ||a||_1 and does not bound this network (use --program shared)");

    // The distinct own patterns, first occurrence first. Identical generators (gated filters
    // share their gate) are merged before any product is formed.
    std::map<std::vector<float>, int> generator_of_values;
    std::vector<int> generator_of_used(used.size());
    std::vector<Index> distinct_rows;
    for (std::size_t j = 0; j < used.size(); ++j) {
        const auto row = gates.row(used[j]);
        const auto [it, inserted] =
            generator_of_values.emplace(std::vector<float>(row.data(), row.data() + h), static_cast<int>(distinct_rows.size()));
        if (inserted) distinct_rows.push_back(used[j]);
        generator_of_used[j] = it->second;
    }
    RowMatrixF distinct(static_cast<Index>(distinct_rows.size()), h);
    for (std::size_t g = 0; g < distinct_rows.size(); ++g) distinct.row(static_cast<Index>(g)) = gates.row(distinct_rows[g]);
    const auto bits = pattern_bits(patches, distinct, out.ties);
    if (gated) out.ties = 0;  // fixed gates: no kink in the objective (see (4))
    std::map<std::vector<std::uint64_t>, int> pattern_of_bits;
    std::vector<int> pattern_of_distinct(distinct_rows.size());
    std::vector<Index> generator_rows;
    for (std::size_t g = 0; g < distinct_rows.size(); ++g) {
        const auto [it, inserted] = pattern_of_bits.emplace(bits[g], static_cast<int>(generator_rows.size()));
        if (inserted) generator_rows.push_back(static_cast<Index>(g));
        pattern_of_distinct[g] = it->second;
    }
    std::vector<int> pattern_of_used(used.size());
    for (std::size_t j = 0; j < used.size(); ++j)
        pattern_of_used[j] = pattern_of_distinct[static_cast<std::size_t>(generator_of_used[j])];
    const int pattern_count = static_cast<int>(generator_rows.size());
    out.patterns = pattern_count;
    RowMatrixF generators(pattern_count, h);
    for (int p = 0; p < pattern_count; ++p) generators.row(p) = distinct.row(generator_rows[static_cast<std::size_t>(p)]);

    const ConvexFeatures features =
        build_convex_features(patches, generators, settings.max_bytes, FeatureActivation::of(architecture));

    // The induced point U_{p,r,c} = sum_{f with pattern p} a_{f,r,c} w_f.
    RowMatrixD u = RowMatrixD::Zero(static_cast<Index>(pattern_count) * region_count * h, classes);
    for (std::size_t j = 0; j < used.size(); ++j) {
        const int f = used[j], p = pattern_of_used[j];
        const Eigen::RowVectorXd w = conv.row(f).cast<double>();
        for (int r = 0; r < region_count; ++r)
            for (int c = 0; c < classes; ++c) {
                const double a = output(f, r, c);
                if (a != 0.0) u.block((static_cast<Index>(p) * region_count + r) * h, c, h, 1) += a * w.transpose();
            }
    }
    const RowMatrixF weights = u.cast<float>();

    const GroupLassoProblem problem{features.matrix, h, normalized.labels, classes, out.loss};
    const LossEvaluation at = evaluate_loss(problem, weights);
    const RowMatrixD grad = at.feature_gradient.cast<double>();

    // F U against the network's own logits (the reference engine on the raw images).
    const RowMatrixD network_logits = reference_logits(model, data).cast<double>();
    out.logit_difference =
        (at.logits - network_logits).cwiseAbs().maxCoeff() / std::max(1e-30, network_logits.cwiseAbs().maxCoeff());

    double dual_norm_max = 0.0;
    if (out.program == CertifiedProgram::per_head) {
        const RowMatrixD weights_d = weights.cast<double>();
        for (Index b = 0; b < static_cast<Index>(pattern_count) * region_count; ++b)
            for (int c = 0; c < classes; ++c) {
                out.regularizer += weights_d.block(b * h, c, h, 1).norm();
                dual_norm_max = std::max(dual_norm_max, grad.block(b * h, c, h, 1).norm());
            }
        out.kkt_residual = kkt_residual(problem, out.beta, weights);
    } else {
        const RowMatrixD weights_d = weights.cast<double>();
        for (int p = 0; p < pattern_count; ++p) {
            const Eigen::MatrixXd z = pattern_matrix(weights_d, p, region_count, h);
            const Eigen::MatrixXd g = pattern_matrix(grad, p, region_count, h);
            out.regularizer += Eigen::JacobiSVD<Eigen::MatrixXd>(z).singularValues().sum();
            const Eigen::VectorXd gs = Eigen::JacobiSVD<Eigen::MatrixXd>(g).singularValues();
            dual_norm_max = std::max(dual_norm_max, gs.size() > 0 ? gs(0) : 0.0);
            out.kkt_residual = std::max(out.kkt_residual, nuclear_kkt_residual(z, -g / out.beta));
        }
    }
    out.dual_norm_ratio = dual_norm_max / out.beta;
    out.convex_objective = at.loss + out.beta * out.regularizer;
    out.dual = scaled_loss_dual(problem, at.loss_gradient, dual_norm_max > out.beta ? out.beta / dual_norm_max : 1.0);
    out.gap = out.convex_objective - out.dual;
    out.rel_gap = out.gap / std::max(out.convex_objective, 1e-300);
    out.optimal = out.rel_gap <= out.tolerance;

    const NetworkObjective network = network_objective(model, data, out.beta, out.loss);
    out.network_objective = network.objective;
    out.network_loss = network.loss;
    out.network_weight_decay = network.weight_decay;
    out.seconds = seconds_since(start);
    return out;
}

std::string verdict(const StationaryCertificate& c) {
    const std::string program = "the " + std::string(to_string(c.program)) + " program over its own " +
                                std::to_string(c.patterns) + " patterns";
    if (c.optimal) return "global optimum of " + program + " within relative gap " + format_number(c.rel_gap);
    return "not optimal for " + program + ": relative gap " + format_number(c.rel_gap) + " > tolerance " +
           format_number(c.tolerance);
}

void to_json(nlohmann::json& json, const StationaryCertificate& c) {
    json = {{"program", std::string(to_string(c.program))},
            {"beta", c.beta},
            {"loss", std::string(to_string(c.loss))},
            {"samples", c.samples},
            {"filters", c.filters},
            {"used_filters", c.used_filters},
            {"dead_filters", c.dead_filters},
            {"patterns", c.patterns},
            {"heads", c.heads},
            {"per_head_network", c.per_head_network},
            {"network_objective", c.network_objective},
            {"network_loss", c.network_loss},
            {"network_weight_decay", c.network_weight_decay},
            {"max_imbalance", c.max_imbalance},
            {"logit_difference", c.logit_difference},
            {"ties", c.ties},
            {"convex_objective", c.convex_objective},
            {"regularizer", c.regularizer},
            {"dual_bound", c.dual},
            {"gap", c.gap},
            {"relative_gap", c.rel_gap},
            {"kkt_residual", c.kkt_residual},
            {"dual_norm_ratio", c.dual_norm_ratio},
            {"tolerance", c.tolerance},
            {"optimal", c.optimal},
            {"verdict", verdict(c)},
            {"time_s", c.seconds}};
}

}  // namespace cvxcnn
