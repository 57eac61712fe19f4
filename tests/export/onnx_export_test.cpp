// ONNX export: the file parses with ONNX's own protobuf classes, holds the model's tensors
// verbatim and the documented operators; python3-onnx's checker accepts it; and the graph,
// run outside cvxcnn (tests/export/run_onnx.py), gives the reference engine's logits.
#include "cvxcnn/export/onnx_export.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <onnx/onnx_pb.h>

#include "cvxcnn/engine/reference_engine.hpp"
#include "cvxcnn/util/error.hpp"
#include "export/test_models.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace cvxcnn;

namespace {

onnx::ModelProto parse(const std::vector<std::uint8_t>& bytes) {
    onnx::ModelProto proto;
    EXPECT_TRUE(proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
    return proto;
}

// Initializer values decoded from raw little-endian float32 (what the exporter writes).
struct Initializer {
    std::vector<std::int64_t> dims;
    std::vector<float> values;
};

std::map<std::string, Initializer> float_initializers(const onnx::ModelProto& proto) {
    std::map<std::string, Initializer> result;
    for (const auto& tensor : proto.graph().initializer()) {
        if (tensor.data_type() != onnx::TensorProto::FLOAT) continue;
        Initializer init{{tensor.dims().begin(), tensor.dims().end()}, {}};
        const std::string& raw = tensor.raw_data();
        EXPECT_EQ(raw.size() % 4, 0u) << tensor.name();
        for (std::size_t i = 0; i + 4 <= raw.size(); i += 4) {
            std::uint32_t word = 0;
            for (int b = 3; b >= 0; --b) word = (word << 8) | static_cast<unsigned char>(raw[i + b]);
            init.values.push_back(std::bit_cast<float>(word));
        }
        result[tensor.name()] = std::move(init);
    }
    return result;
}

std::vector<std::string> op_types(const onnx::ModelProto& proto) {
    std::vector<std::string> ops;
    for (const auto& node : proto.graph().node()) ops.push_back(node.op_type());
    return ops;
}

void expect_tensor(const std::map<std::string, Initializer>& initializers, const std::string& name,
                   const std::vector<std::int64_t>& dims, const std::vector<float>& values) {
    const auto it = initializers.find(name);
    ASSERT_NE(it, initializers.end()) << name;
    EXPECT_EQ(it->second.dims, dims) << name;
    EXPECT_EQ(it->second.values, values) << name << " must be stored verbatim";
}

// A python3 that can import onnx and numpy (Debian's python3-onnx), or nullopt. The first
// python3 on PATH may be another installation (pyenv, venv) without them.
std::optional<std::string> python_with_onnx() {
    for (const std::string candidate : {"/usr/bin/python3", "python3"}) {
        const std::string command = candidate + " -c 'import onnx, numpy' >/dev/null 2>&1";
        if (std::system(command.c_str()) == 0) return candidate;
    }
    return std::nullopt;
}

void write_floats(const fs::path& path, const std::vector<float>& values) {
    std::ofstream out(path, std::ios::binary);
    for (const float v : values) {
        std::uint32_t word = std::bit_cast<std::uint32_t>(v);
        for (int b = 0; b < 4; ++b, word >>= 8) out.put(static_cast<char>(word & 0xffu));
    }
}

std::vector<float> read_floats(const fs::path& path) {
    const std::vector<std::uint8_t> bytes = test::read_bytes(path);
    std::vector<float> values;
    for (std::size_t i = 0; i + 4 <= bytes.size(); i += 4) {
        std::uint32_t word = 0;
        for (int b = 3; b >= 0; --b) word = (word << 8) | bytes[i + b];
        values.push_back(std::bit_cast<float>(word));
    }
    return values;
}

struct Case {
    std::string architecture;
    ImageShape input;
    int filters;
    std::vector<std::string> ops;  // expected operator sequence
};

std::vector<Case> cases() {
    const std::vector<std::string> head = {"Sub", "Div", "Conv"};
    auto with = [&](std::vector<std::string> middle, bool pooled) {
        std::vector<std::string> ops = head;
        ops.insert(ops.end(), middle.begin(), middle.end());
        if (pooled) ops.push_back("AveragePool");
        else ops.insert(ops.end(), {"Reshape", "MatMul"});
        ops.insert(ops.end(), {"Flatten", "Gemm", "Softmax"});
        return ops;
    };
    const std::vector<std::string> gated = {"Conv", "GreaterOrEqual", "Cast", "Mul"};
    return {
        {"conv3x3s1p1-relu-pool2", {1, 8, 8}, 4, with({"Relu"}, true)},                // 8x8 map, equal bands
        {"conv3x3s1p1-gated-pool3", {1, 8, 8}, 4, with(gated, false)},                 // bands 2,3,3: pooling matrix
        {"conv3x3s2p1-leaky0.1-pool2", {3, 9, 7}, 5, with({"LeakyRelu"}, false)},     // 5x4 map, odd sides
        {"conv5x5s1p2-abs-pool3", {3, 9, 9}, 3, with({"Abs"}, true)},                  // 9x9 map, bands of 3
        {"conv3x3s1p1-gated-pool7", {1, 28, 28}, 6, with(gated, true)},                // the Fashion-MNIST shape
        {"conv3x3s1p0-relu-pool2", {1, 6, 6}, 0, {"Sub", "Div", "Flatten", "Gemm", "Softmax"}},  // no filters
    };
}

}  // namespace

TEST(OnnxExport, StoresTheModelTensorsAndTheDocumentedGraph) {
    unsigned seed = 1;
    for (const Case& c : cases()) {
        SCOPED_TRACE(c.architecture + " m=" + std::to_string(c.filters));
        const Model model = test::random_model(c.architecture, c.input, c.filters, 4, seed++);
        const onnx::ModelProto proto = parse(encode_onnx(model));
        EXPECT_EQ(proto.ir_version(), onnx_ir_version);
        ASSERT_EQ(proto.opset_import_size(), 1);
        EXPECT_EQ(proto.opset_import(0).version(), onnx_opset);
        EXPECT_EQ(proto.producer_name(), "cvxcnn");
        EXPECT_EQ(op_types(proto), c.ops);

        const auto initializers = float_initializers(proto);
        const std::vector<std::int64_t> per_channel{1, c.input.channels, 1, 1};
        expect_tensor(initializers, "normalization_mean", per_channel, model.normalization.mean);
        expect_tensor(initializers, "normalization_std", per_channel, model.normalization.std);
        expect_tensor(initializers, "fc_bias", model.fc_bias.shape, model.fc_bias.data);
        if (c.filters > 0) {
            expect_tensor(initializers, "conv_weight", model.conv_weight.shape, model.conv_weight.data);
            expect_tensor(initializers, "conv_bias", model.conv_bias.shape, model.conv_bias.data);
            expect_tensor(initializers, "fc_weight", model.fc_weight.shape, model.fc_weight.data);
        }
        EXPECT_EQ(initializers.contains("gate_weight"), model.architecture.activation == Activation::gated_relu);
        if (initializers.contains("gate_weight"))
            expect_tensor(initializers, "gate_weight", model.gate_weight.shape, model.gate_weight.data);
        if (initializers.contains("pooling_matrix")) {
            // Each position belongs to exactly one region, and each column averages its region.
            const Initializer& p = initializers.at("pooling_matrix");
            ASSERT_EQ(p.dims.size(), 2u);
            for (std::int64_t r = 0; r < p.dims[1]; ++r) {
                double column = 0.0;
                for (std::int64_t k = 0; k < p.dims[0]; ++k) column += p.values[static_cast<std::size_t>(k * p.dims[1] + r)];
                EXPECT_NEAR(column, 1.0, 1e-6) << "region " << r;
            }
        }

        std::map<std::string, std::string> metadata;
        for (const auto& entry : proto.metadata_props()) metadata[entry.key()] = entry.value();
        EXPECT_EQ(nlohmann::json::parse(metadata.at("class_names")).get<std::vector<std::string>>(), model.class_names);
        EXPECT_EQ(nlohmann::json::parse(metadata.at("normalization_std")).get<std::vector<float>>(), model.normalization.std);
        EXPECT_EQ(metadata.at("architecture"), to_string(model.architecture));

        ASSERT_EQ(proto.graph().output_size(), 2);
        EXPECT_EQ(proto.graph().output(0).name(), "logits");
        EXPECT_EQ(proto.graph().output(1).name(), "probabilities");
        const auto& dims = proto.graph().input(0).type().tensor_type().shape().dim();
        ASSERT_EQ(dims.size(), 4);
        EXPECT_EQ(dims[0].dim_param(), "N");
        EXPECT_EQ(dims[1].dim_value(), c.input.channels);
    }
}

TEST(OnnxExport, PythonOnnxAcceptsAndRunsTheGraphLikeTheReferenceEngine) {
    const auto python = python_with_onnx();
    if (!python) GTEST_SKIP() << "python3 with onnx and numpy (Debian python3-onnx) is not installed";
    test::ScratchDir dir;
    std::string jobs;
    struct Run {
        fs::path output;
        RowMatrixF want;
    };
    std::vector<Run> runs;
    unsigned seed = 100;
    for (const Case& c : cases()) {
        const Model model = test::random_model(c.architecture, c.input, c.filters, 4, seed++);
        const Dataset images = test::random_images(5, c.input, seed++);
        const std::string stem = std::to_string(runs.size());
        export_onnx(model, dir / (stem + ".onnx"));
        write_floats(dir / (stem + ".in"), images.images);
        jobs += (dir / (stem + ".onnx")).string() + " " + (dir / (stem + ".in")).string() + " 5 " +
                std::to_string(c.input.channels) + " " + std::to_string(c.input.height) + " " +
                std::to_string(c.input.width) + " " + (dir / (stem + ".out")).string() + "\n";
        runs.push_back({dir / (stem + ".out"), reference_logits(model, images)});
    }
    test::write_text(dir / "jobs.txt", jobs);
    const std::string script = std::string(CVXCNN_SOURCE_DIR) + "/tests/export/run_onnx.py";
    const std::string command = *python + " '" + script + "' '" + (dir / "jobs.txt").string() + "' >'" +
                                (dir / "log").string() + "' 2>&1";
    const int status = std::system(command.c_str());
    std::string log;
    for (const auto byte : test::read_bytes(dir / "log")) log += static_cast<char>(byte);
    ASSERT_EQ(status, 0) << log;
    RecordProperty("onnx_evaluator", log.substr(0, log.find('\n')));

    for (std::size_t r = 0; r < runs.size(); ++r) {
        SCOPED_TRACE(cases()[r].architecture);
        const std::vector<float> got = read_floats(runs[r].output);
        const RowMatrixF& want = runs[r].want;
        ASSERT_EQ(got.size(), static_cast<std::size_t>(want.size()));
        for (Eigen::Index i = 0; i < want.rows(); ++i) {
            const double scale = std::max<double>(want.row(i).cwiseAbs().maxCoeff(), 1e-30);
            for (Eigen::Index k = 0; k < want.cols(); ++k)
                EXPECT_LE(std::abs(got[static_cast<std::size_t>(i * want.cols() + k)] - want(i, k)), 1e-4 * scale)
                    << "image " << i << " class " << k;
        }
    }
}

TEST(OnnxExport, WritesAtomicallyAndRefusesInvalidModels) {
    test::ScratchDir dir;
    const fs::path path = dir / "model.onnx";
    test::write_text(path, "earlier file");
    Model broken = test::random_model("conv3x3s1p1-relu-pool2", {1, 6, 6}, 2, 3, 7);
    broken.fc_bias.data.pop_back();
    broken.fc_bias.shape = {2};
    try {
        export_onnx(broken, path);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::bad_input);
        EXPECT_NE(std::string(e.what()).find("invalid model"), std::string::npos) << e.what();
    }
    std::string kept;
    for (const auto byte : test::read_bytes(path)) kept += static_cast<char>(byte);
    EXPECT_EQ(kept, "earlier file");

    const Model model = test::random_model("conv3x3s1p1-relu-pool2", {1, 6, 6}, 2, 3, 8);
    export_onnx(model, path);
    EXPECT_EQ(test::read_bytes(path), encode_onnx(model));
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
    EXPECT_EQ(entries, 1u) << "no temporary file may be left behind";
    test::expect_file_error([&] { export_onnx(model, dir / "missing-folder" / "m.onnx"); }, ErrorKind::io,
                            dir / "missing-folder" / "m.onnx", "");
}

// Depth 3: the hidden 1x1 layer becomes Conv (no bias) + Relu before the pooling, and the
// graph computes the reference engine's logits (equal bands and folded unequal bands).
TEST(OnnxExport, ThreeLayerModelsRunLikeTheReferenceEngine) {
    struct DeepCase {
        std::string architecture;
        ImageShape input;
        bool pooled;
    };
    const std::vector<DeepCase> deep_cases = {{"conv3x3s1p1-relu-pool2", {1, 8, 8}, true},
                                              {"conv2x2s1p0-relu-pool2", {2, 4, 4}, false}};
    const auto python = python_with_onnx();
    test::ScratchDir dir;
    std::string jobs;
    std::vector<std::pair<fs::path, RowMatrixF>> runs;
    unsigned seed = 300;
    for (const DeepCase& c : deep_cases) {
        SCOPED_TRACE(c.architecture);
        Model model = test::random_model(c.architecture, c.input, 5, 3, seed++);
        std::mt19937 rng(seed++);
        std::normal_distribution<float> normal(0.0f, 0.5f);
        const std::int64_t grid = model.architecture.pool_grid;
        model.hidden_weight = Tensor::zeros({4, 5, 1, 1});
        for (float& w : model.hidden_weight.data) w = normal(rng);
        model.fc_weight = Tensor::zeros({3, 4 * grid * grid});
        for (float& w : model.fc_weight.data) w = normal(rng);
        validate(model);
        const onnx::ModelProto proto = parse(encode_onnx(model));
        std::vector<std::string> ops = {"Sub", "Div", "Conv", "Relu", "Conv", "Relu"};
        if (c.pooled) ops.push_back("AveragePool");
        else ops.insert(ops.end(), {"Reshape", "MatMul"});
        ops.insert(ops.end(), {"Flatten", "Gemm", "Softmax"});
        EXPECT_EQ(op_types(proto), ops);
        expect_tensor(float_initializers(proto), "hidden_weight", {4, 5, 1, 1}, model.hidden_weight.data);
        if (!python) continue;
        const Dataset images = test::random_images(5, c.input, seed++);
        const std::string stem = "deep" + std::to_string(runs.size());
        export_onnx(model, dir / (stem + ".onnx"));
        write_floats(dir / (stem + ".in"), images.images);
        jobs += (dir / (stem + ".onnx")).string() + " " + (dir / (stem + ".in")).string() + " 5 " +
                std::to_string(c.input.channels) + " " + std::to_string(c.input.height) + " " +
                std::to_string(c.input.width) + " " + (dir / (stem + ".out")).string() + "\n";
        runs.emplace_back(dir / (stem + ".out"), reference_logits(model, images));
    }
    if (!python) GTEST_SKIP() << "python3 with onnx and numpy (Debian python3-onnx) is not installed";
    test::write_text(dir / "jobs.txt", jobs);
    const std::string script = std::string(CVXCNN_SOURCE_DIR) + "/tests/export/run_onnx.py";
    const std::string command =
        *python + " '" + script + "' '" + (dir / "jobs.txt").string() + "' >'" + (dir / "log").string() + "' 2>&1";
    const int status = std::system(command.c_str());
    std::string log;
    for (const auto byte : test::read_bytes(dir / "log")) log += static_cast<char>(byte);
    ASSERT_EQ(status, 0) << log;
    for (const auto& [output, want] : runs) {
        const std::vector<float> got = read_floats(output);
        ASSERT_EQ(got.size(), static_cast<std::size_t>(want.size()));
        for (Eigen::Index i = 0; i < want.rows(); ++i) {
            const double scale = std::max<double>(want.row(i).cwiseAbs().maxCoeff(), 1e-30);
            for (Eigen::Index k = 0; k < want.cols(); ++k)
                EXPECT_LE(std::abs(got[static_cast<std::size_t>(i * want.cols() + k)] - want(i, k)), 1e-4 * scale);
        }
    }
}
