// ONNX export (see onnx_export.hpp), built with the protobuf classes of Debian's
// libonnx-dev (ONNX 1.12, compiled with ONNX_ML=1 and ONNX_NAMESPACE=onnx).
#include "cvxcnn/export/onnx_export.hpp"

#include <bit>
#include <climits>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include "cvxcnn/patches/patch_matrix.hpp"
#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/file_io.hpp"

namespace cvxcnn {
namespace {

using Dims = std::vector<std::int64_t>;

// ONNX stores raw_data little-endian whatever the host.
std::string little_endian_bytes(const std::vector<float>& values) {
    std::string bytes(values.size() * sizeof(float), '\0');
    for (std::size_t i = 0; i < values.size(); ++i) {
        std::uint32_t word = std::bit_cast<std::uint32_t>(values[i]);
        for (std::size_t b = 0; b < sizeof word; ++b, word >>= 8) bytes[i * sizeof word + b] = static_cast<char>(word & 0xffu);
    }
    return bytes;
}

void add_initializer(onnx::GraphProto& graph, const std::string& name, const Dims& dims, const std::vector<float>& values) {
    onnx::TensorProto* tensor = graph.add_initializer();
    tensor->set_name(name);
    tensor->set_data_type(onnx::TensorProto::FLOAT);
    for (const auto d : dims) tensor->add_dims(d);
    tensor->set_raw_data(little_endian_bytes(values));
}

void add_int64_initializer(onnx::GraphProto& graph, const std::string& name, const Dims& values) {
    onnx::TensorProto* tensor = graph.add_initializer();
    tensor->set_name(name);
    tensor->set_data_type(onnx::TensorProto::INT64);
    tensor->add_dims(static_cast<std::int64_t>(values.size()));
    for (const auto v : values) tensor->add_int64_data(v);
}

onnx::NodeProto& add_node(onnx::GraphProto& graph, const std::string& op, std::initializer_list<std::string> inputs,
                          const std::string& output) {
    onnx::NodeProto* node = graph.add_node();
    node->set_op_type(op);
    node->set_name(output);  // each node named after the value it produces
    for (const auto& input : inputs) node->add_input(input);
    node->add_output(output);
    return *node;
}

void set_ints(onnx::NodeProto& node, const std::string& name, const Dims& values) {
    onnx::AttributeProto* attribute = node.add_attribute();
    attribute->set_name(name);
    attribute->set_type(onnx::AttributeProto::INTS);
    for (const auto v : values) attribute->add_ints(v);
}

void set_int(onnx::NodeProto& node, const std::string& name, std::int64_t value) {
    onnx::AttributeProto* attribute = node.add_attribute();
    attribute->set_name(name);
    attribute->set_type(onnx::AttributeProto::INT);
    attribute->set_i(value);
}

void set_float(onnx::NodeProto& node, const std::string& name, float value) {
    onnx::AttributeProto* attribute = node.add_attribute();
    attribute->set_name(name);
    attribute->set_type(onnx::AttributeProto::FLOAT);
    attribute->set_f(value);
}

// A float tensor value with a symbolic batch dimension "N" first.
void describe_value(onnx::ValueInfoProto& value, const std::string& name, const Dims& trailing_dims,
                    const std::string& doc) {
    value.set_name(name);
    value.set_doc_string(doc);
    onnx::TypeProto_Tensor* type = value.mutable_type()->mutable_tensor_type();
    type->set_elem_type(onnx::TensorProto::FLOAT);
    onnx::TensorShapeProto* shape = type->mutable_shape();
    shape->add_dim()->set_dim_param("N");
    for (const auto d : trailing_dims) shape->add_dim()->set_dim_value(d);
}

void add_metadata(onnx::ModelProto& proto, const std::string& key, const std::string& value) {
    onnx::StringStringEntryProto* entry = proto.add_metadata_props();
    entry->set_key(key);
    entry->set_value(value);
}

// The activation after the convolution output "conv"; returns the name of its output.
std::string add_activation(onnx::GraphProto& graph, const Model& model, const Dims& strides, const Dims& pads,
                           const Dims& kernel) {
    const Architecture& a = model.architecture;
    switch (a.activation) {
        case Activation::relu: add_node(graph, "Relu", {"conv"}, "activation"); break;
        case Activation::leaky_relu:
            set_float(add_node(graph, "LeakyRelu", {"conv"}, "activation"), "alpha", a.leaky_slope);
            break;
        case Activation::absolute: add_node(graph, "Abs", {"conv"}, "activation"); break;
        case Activation::gated_relu: {
            // 1[g.x >= 0] * (u.x + b): ">=" so that a gate on its hyperplane is open, as the
            // sign patterns D = 1[X g >= 0] of training define it.
            add_initializer(graph, "gate_weight", model.gate_weight.shape, model.gate_weight.data);
            add_initializer(graph, "zero", {}, {0.0f});
            onnx::NodeProto& gate = add_node(graph, "Conv", {"normalized", "gate_weight"}, "gate");
            set_ints(gate, "kernel_shape", kernel);
            set_ints(gate, "strides", strides);
            set_ints(gate, "pads", pads);
            add_node(graph, "GreaterOrEqual", {"gate", "zero"}, "gate_open");
            set_int(add_node(graph, "Cast", {"gate_open"}, "gate_mask"), "to", onnx::TensorProto::FLOAT);
            add_node(graph, "Mul", {"conv", "gate_mask"}, "activation");
            break;
        }
    }
    return "activation";
}

onnx::ModelProto build(const Model& model) {
    const Architecture& a = model.architecture;
    const ImageShape& input = model.input;
    const std::int64_t m = model.filters(), classes = model.classes(), grid = a.pool_grid;
    // Channels the pooling reads: the filters, or at depth 3 the hidden 1x1 layer's units.
    const std::int64_t pooled_channels = model.pooled_channels();
    const std::int64_t out_height = a.conv_output_size(input.height), out_width = a.conv_output_size(input.width);

    onnx::ModelProto proto;
    proto.set_ir_version(onnx_ir_version);
    proto.set_producer_name("cvxcnn");
    proto.set_producer_version(CVXCNN_VERSION);
    proto.set_model_version(1);
    proto.set_doc_string(std::string(model.has_hidden_layer() ? "Three-layer CNN (hidden 1x1 layer)" : "Two-layer CNN") +
                         " trained by convex optimization (cvxcnn), architecture " + to_string(a) +
                         ". Input: N x C x H x W raw pixel/255 values; the graph normalizes them.");
    onnx::OperatorSetIdProto* opset = proto.add_opset_import();
    opset->set_domain("");
    opset->set_version(onnx_opset);
    add_metadata(proto, "class_names", nlohmann::json(model.class_names).dump());
    add_metadata(proto, "normalization_mean", nlohmann::json(model.normalization.mean).dump());
    add_metadata(proto, "normalization_std", nlohmann::json(model.normalization.std).dump());
    add_metadata(proto, "architecture", to_string(a));
    add_metadata(proto, "input_shape", to_string(input));
    add_metadata(proto, "input_range", "pixel/255 in [0, 1]; normalized inside the graph");

    onnx::GraphProto& graph = *proto.mutable_graph();
    graph.set_name("cvxcnn");
    describe_value(*graph.add_input(), "input", {input.channels, input.height, input.width},
                   "images, N x C x H x W, pixel/255 in [0, 1]");
    describe_value(*graph.add_output(), "logits", {classes}, "one score per class (class_names metadata)");
    describe_value(*graph.add_output(), "probabilities", {classes}, "softmax of the logits");

    // (x - mean[c]) / std[c], broadcast over 1 x C x 1 x 1: explicit nodes rather than a
    // fold into the convolution, because zero padding pads the *normalized* image.
    const Dims per_channel{1, input.channels, 1, 1};
    add_initializer(graph, "normalization_mean", per_channel, model.normalization.mean);
    add_initializer(graph, "normalization_std", per_channel, model.normalization.std);
    add_node(graph, "Sub", {"input", "normalization_mean"}, "centered");
    add_node(graph, "Div", {"centered", "normalization_std"}, "normalized");

    std::string features;
    if (m == 0 || pooled_channels == 0) {
        // No filter, no feature: logits = fc_bias for every image. A zero linear layer on the
        // flattened input keeps the batch dimension without special operators.
        add_node(graph, "Flatten", {"normalized"}, "features");
        features = "features";
        add_initializer(graph, "fc_weight", {classes, static_cast<std::int64_t>(input.values())},
                        std::vector<float>(static_cast<std::size_t>(classes) * input.values(), 0.0f));
    } else {
        const Dims kernel{a.kernel, a.kernel}, strides{a.stride, a.stride},
            pads{a.padding, a.padding, a.padding, a.padding};
        add_initializer(graph, "conv_weight", model.conv_weight.shape, model.conv_weight.data);
        add_initializer(graph, "conv_bias", model.conv_bias.shape, model.conv_bias.data);
        onnx::NodeProto& conv = add_node(graph, "Conv", {"normalized", "conv_weight", "conv_bias"}, "conv");
        set_ints(conv, "kernel_shape", kernel);
        set_ints(conv, "strides", strides);
        set_ints(conv, "pads", pads);
        std::string activation = add_activation(graph, model, strides, pads, kernel);
        if (model.has_hidden_layer()) {
            // Depth 3: 1x1 convolution without bias, then ReLU, before the pooling.
            add_initializer(graph, "hidden_weight", model.hidden_weight.shape, model.hidden_weight.data);
            onnx::NodeProto& hidden = add_node(graph, "Conv", {activation, "hidden_weight"}, "hidden_pre");
            set_ints(hidden, "kernel_shape", {1, 1});
            add_node(graph, "Relu", {"hidden_pre"}, "hidden");
            activation = "hidden";
        }

        if (out_height % grid == 0 && out_width % grid == 0) {
            onnx::NodeProto& pool = add_node(graph, "AveragePool", {activation}, "pooled");
            set_ints(pool, "kernel_shape", {out_height / grid, out_width / grid});
            set_ints(pool, "strides", {out_height / grid, out_width / grid});
        } else {
            // Unequal floor bands: pooled[n, f, r] = sum_p activation[n, f, p] * P[p, r] with
            // P[p, r] = 1/|r| if position p lies in region r.
            const PoolingRegions regions = make_pooling_regions(static_cast<int>(out_height), static_cast<int>(out_width),
                                                                static_cast<int>(grid));
            const std::int64_t positions = out_height * out_width, region_count = regions.count();
            std::vector<float> pooling(static_cast<std::size_t>(positions * region_count), 0.0f);
            for (std::int64_t p = 0; p < positions; ++p) {
                const int r = regions.region_of_position[static_cast<std::size_t>(p)];
                pooling[static_cast<std::size_t>(p * region_count + r)] = 1.0f / static_cast<float>(regions.sizes[r]);
            }
            add_int64_initializer(graph, "positions_shape", {0, pooled_channels, positions});  // 0: keep N
            add_initializer(graph, "pooling_matrix", {positions, region_count}, pooling);
            add_node(graph, "Reshape", {activation, "positions_shape"}, "positions");
            add_node(graph, "MatMul", {"positions", "pooling_matrix"}, "pooled");
        }
        // N x m x G x G (or N x m x G*G) -> N x m*G*G, feature index (f*G + gy)*G + gx as fc_weight's.
        add_node(graph, "Flatten", {"pooled"}, "features");
        features = "features";
        add_initializer(graph, "fc_weight", model.fc_weight.shape, model.fc_weight.data);
    }
    add_initializer(graph, "fc_bias", model.fc_bias.shape, model.fc_bias.data);
    set_int(add_node(graph, "Gemm", {features, "fc_weight", "fc_bias"}, "logits"), "transB", 1);
    set_int(add_node(graph, "Softmax", {"logits"}, "probabilities"), "axis", 1);
    return proto;
}

}  // namespace

std::vector<std::uint8_t> encode_onnx(const Model& model) {
    validate(model);
    const onnx::ModelProto proto = build(model);
    try {
        onnx::checker::check_model(proto);
        // Strict inference: every node's inferred type and shape must merge with the
        // declared outputs (N x classes), so a wiring mistake cannot pass silently.
        onnx::ModelProto inferred = proto;
        onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                           onnx::ShapeInferenceOptions(true, 1, false));
    } catch (const std::exception& error) {
        throw Error(ErrorKind::internal, std::string("ONNX checker rejected the exported graph: ") + error.what());
    }
    const std::size_t size = proto.ByteSizeLong();
    if (size > static_cast<std::size_t>(INT_MAX))
        throw Error(ErrorKind::limit, "the ONNX graph would be " + std::to_string(size >> 20) +
                                          " MiB, over protobuf's 2 GiB message limit");
    std::vector<std::uint8_t> bytes(size);
    if (!proto.SerializeToArray(bytes.data(), static_cast<int>(size)))
        throw Error(ErrorKind::internal, "protobuf could not serialize the ONNX graph");
    return bytes;
}

void export_onnx(const Model& model, const std::filesystem::path& path) {
    write_file_atomically(path, encode_onnx(model));
}

}  // namespace cvxcnn
