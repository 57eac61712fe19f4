// The stationary-point certificate of a trained network (`cvxcnn certify`): is this
// network, however it was trained, the global optimum of the convex program built from its
// own activation patterns? (Ergen & Pilanci, "The Convex Landscape of Neural Networks",
// TIT 2025: every stationary point of the non-convex objective is the global optimum of a
// subsampled convex program; SOLVERS.md 5.11.)
//
// The network (model.hpp, biases 0) with filters w_f, activation sigma and sum-pooling
// output weights a_{f,r,c} = fc_weight[c, f*R + r] / |r| computes
//   z_c = sum_f sum_r a_{f,r,c} sum_{k in r} sigma(X_k w_f).
// Its own pattern of filter f is D_f = 1[X_k g_f >= 0] over all samples and positions,
// g_f = its gate (gated ReLU) or the filter itself (ReLU, leaky ReLU, abs); on the data
// sigma(X_k w_f) = M_{f,k} X_k w_f exactly (M = D, a + (1-a) D, 2D - I), so with the
// feature blocks A_{p,r} of problem/convex_features.hpp for the distinct patterns p:
//   z = F U,   U_{p,r,c} = sum_{f with pattern p} a_{f,r,c} w_f          (the induced point)
// Filters with w_f = 0 or a_f = 0 add nothing to z and are left out (so is their pattern), and
// so are vanishing ones (||w_f|| ||a_f|| below dead_tolerance x the largest): under weight
// decay a neuron that dies decays like exp(-beta t) and never reaches 0, and the pattern of a
// 1e-9 filter is noise, not a feature of the network (its block would put an arbitrary
// constraint into the program). logit_difference shows what leaving them out costs.
//
// Two programs over those P patterns, by the network's family (why two: a filter feeding
// several classes/regions pays beta ||w|| ||a||_2 for them, the per-head group lasso charges
// beta ||w|| ||a||_1, up to sqrt(classes x regions) more, so it is not a bound for such a
// network):
//   per-head  min_U L(F U) + beta sum_{p,r,c} ||U_{p,r,c}||_2      (the convex trainer's program)
//             family: every filter feeds one (class, region), as recovered convex models do.
//   shared    min_U L(F U) + beta sum_p ||Z_p||_*,  Z_p = [U_{p,r,c}] (h x R*C, nuclear norm)
//             family: a filter feeds all heads through a full linear layer (the SGD baseline).
// Both are the gated relaxation over these patterns (for ReLU/leaky/abs the exact program adds
// the cones {u : (2D-I) X_k u >= 0}; the induced point lies in them, so the dual bound below
// bounds the exact program too). What is guaranteed:
//   (1) network objective >= convex objective of the induced point >= program optimum >= dual
//       bound (rescaling: (beta/2)(||w||^2 + ||a||^2) >= beta ||w|| ||a||; triangle inequality
//       when filters share a pattern). Equality in the first when every filter is balanced
//       (||w_f|| = ||a_f||) and filters sharing a pattern and head are aligned.
//   (2) per-head, and shared with rank-one gradient blocks (2 classes, cross-entropy, pool1:
//       the softmax gradient's columns are opposite): at a stationary point of the network
//       with nonzero filters, grad_{w} = 0 and grad_{a} = 0 give F_p^T G = -beta u/||u|| on
//       every used group, i.e. the KKT conditions of the program: the duality gap is 0, the
//       network is a global optimum of the program over its own patterns (so no network of
//       any width using only these patterns does better).
//   (3) shared in general: stationarity makes beta *a* singular value of each gradient block
//       G_p; the gap is 0 iff it is the largest (Sahiner et al. ICLR 2024 Thm 3.4 bound
//       (p - p*)/p* <= (max_p ||G_p||_2 / beta - 1)_+ is what the dual point below achieves).
//   (4) ReLU, leaky ReLU, abs at a kink: gradient training drives filters onto hyperplanes
//       through data points (x . w = 0 on some rows; the exact optimum's filters lie on
//       their cones' boundaries too). There the pattern is not locally constant, stationarity
//       is Clarke's, and the exact (cone) program's KKT conditions need multipliers on those
//       rows that the gated relaxation below does not have: its gap need not close, and
//       `ties` counts such rows. Gated ReLU (fixed gates) has no kinks: (2) applies as is.
// The certificate: dual point Theta = s G (G = dL/dZ at the induced point), s = min(1, beta /
// max dual norm of F_p^T G) (block 2-norm per head, spectral norm per pattern for shared),
// dual value -L*(-Theta), gap = convex objective - dual, and the KKT residual (distance of
// -F^T G / beta to the subdifferential of the regularizer, max over groups / patterns).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "cvxcnn/data/dataset.hpp"
#include "cvxcnn/model/model.hpp"
#include "cvxcnn/solvers/group_lasso.hpp"

namespace cvxcnn {

enum class CertifiedProgram {
    per_head,  ///< group lasso, one group per (pattern, region, class)
    shared,    ///< nuclear norm, one group per pattern
};
[[nodiscard]] std::string_view to_string(CertifiedProgram program) noexcept;  ///< "per-head" | "shared"
/// Inverse of to_string; throws cvxcnn::Error (bad_input) naming --program.
[[nodiscard]] CertifiedProgram parse_certified_program(std::string_view text);

struct CertifySettings {
    std::optional<double> beta;                ///< default: model.training["beta"] (--beta)
    std::optional<Loss> loss;                  ///< default: model.training["loss"], else cross-entropy (--loss)
    std::optional<CertifiedProgram> program;   ///< default: per-head iff every used filter feeds one head (--program)
    double tolerance = 1e-3;                   ///< relative gap of the verdict "global optimum" (--tol)
    double dead_tolerance = 1e-4;              ///< filters with ||w|| ||a|| <= this x the largest count as 0 (--dead-tol)
    std::optional<std::size_t> max_bytes;      ///< patches + features memory cap (--max-memory)
};

struct StationaryCertificate {
    CertifiedProgram program = CertifiedProgram::per_head;
    double beta = 0.0;
    Loss loss = Loss::cross_entropy;
    std::size_t samples = 0;
    int filters = 0;             ///< of the model
    int used_filters = 0;        ///< with ||w|| ||a|| above dead_tolerance x the largest
    int dead_filters = 0;        ///< nonzero but below it (left out)
    int patterns = 0;            ///< distinct own patterns of the used filters: P
    int heads = 0;               ///< classes x regions
    bool per_head_network = false;  ///< every used filter feeds at most one (class, region)
    // ---- the network
    double network_objective = 0.0;     ///< (1/n) sum loss + beta * weight_decay(model)
    double network_loss = 0.0;
    double network_weight_decay = 0.0;  ///< weight_decay(model), not multiplied by beta
    double max_imbalance = 0.0;         ///< max_f | ||w_f|| - ||a_f|| | / max(||w_f||, ||a_f||): 0 at stationarity
    double logit_difference = 0.0;      ///< max |F U - network logits| / max |network logits|
    /// Patch rows within 1e-3 (relative: |x . g| <= 1e-3 ||x|| ||g||) of a used filter's
    /// hyperplane, over all used filters: kinks, see (4). 0 for gated ReLU (fixed gates).
    std::size_t ties = 0;
    // ---- the convex program over the own patterns
    double convex_objective = 0.0;      ///< P(U) at the induced point
    double regularizer = 0.0;           ///< its regularizer / beta
    double dual = 0.0;                  ///< lower bound on the program's optimum
    double gap = 0.0;                   ///< convex_objective - dual
    double rel_gap = 0.0;               ///< gap / convex_objective
    double kkt_residual = 0.0;          ///< 0 exactly at the program's optimum (units of beta)
    double dual_norm_ratio = 0.0;       ///< max over groups of the dual norm of F^T G / beta (<= 1: dual feasible)
    double tolerance = 0.0;
    bool optimal = false;               ///< rel_gap <= tolerance
    double seconds = 0.0;
};

/// Certifies `model` on the raw (pixel/255) images `data` (normalized here with the
/// model's normalization; use certification_data for the split the model was trained on).
/// Throws cvxcnn::Error (bad_input) for a model with nonzero biases (the program has none),
/// without used filters, a beta that is missing or not positive, images or classes that do
/// not match the model, a per-head program for a network whose filters feed several heads;
/// (limit) when the patches and features exceed max_bytes.
[[nodiscard]] StationaryCertificate certify_network(const Model& model, const Dataset& data,
                                                    const CertifySettings& settings = {});

/// The images the model was trained on: with the training record's seed, train_samples and
/// val_samples (both trainers write them), the same split as training (split_indices);
/// `data` itself when the record has no validation split. Throws cvxcnn::Error (bad_input)
/// when data's size is not train_samples + val_samples.
[[nodiscard]] Dataset certification_data(const Model& model, const Dataset& data);

/// One line: "global optimum of the <program> program over its own P patterns within
/// relative gap G" or "not optimal for the <program> program over its own P patterns:
/// relative gap G > tolerance T".
[[nodiscard]] std::string verdict(const StationaryCertificate& certificate);

void to_json(nlohmann::json& json, const StationaryCertificate& certificate);

}  // namespace cvxcnn
