// libFuzzer target: the model-file reader (decode_model, the same code as read_model).
// Invariant beyond "no crash, one-line error": a file that loads re-encodes to bytes that
// load again to the same encoding (encode(decode(encode(m))) == encode(m)).
#include <cstdint>
#include <span>

#include "cvxcnn/model/model_file.hpp"
#include "fuzz_support.hpp"

using namespace cvxcnn;

namespace {

Model seed_model(const char* arch, ImageShape input, int filters) {
    Model model = make_model(parse_architecture(arch), input, {"zero", "one", "two"}, filters);
    float value = 0.25f;
    for (Tensor* tensor : {&model.conv_weight, &model.conv_bias, &model.gate_weight, &model.fc_weight, &model.fc_bias})
        for (float& x : tensor->data) x = (value = -value * 1.5f);
    model.training = {{"solver", "fuzz"}, {"beta", 1e-3}};
    return model;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::write_seeds({encode_model(seed_model("conv3x3s1p1-relu-pool2", {1, 6, 6}, 2)),
                       encode_model(seed_model("conv2x2s2-gated-pool1", {3, 4, 4}, 1)),
                       encode_model(seed_model("conv3x3-leaky0.1-pool1", {2, 5, 5}, 0))});
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Small caps keep each input fast; the real defaults differ only in these numbers.
    const ReadLimits limits{.max_file_bytes = 1 << 20, .max_header_bytes = 64 << 10};
    fuzz::expect_clean([&] {
        const Model model = decode_model(std::span(data, size), "fuzz.cvx", limits);
        const std::vector<std::uint8_t> once = encode_model(model);
        const std::vector<std::uint8_t> twice = encode_model(decode_model(once, "fuzz-reencoded.cvx"));
        fuzz::require(once == twice, "a loaded model re-encodes to bytes that load back identically");
    });
    return 0;
}
