// The architecture string: parsing, canonical printing, and fitting to an input shape.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "cvxcnn/model/architecture.hpp"
#include "cvxcnn/util/error.hpp"

using cvxcnn::Activation;
using cvxcnn::Architecture;
using cvxcnn::ImageShape;
using cvxcnn::parse_architecture;
using cvxcnn::validate_for_input;

namespace {

std::string parse_error(const std::string& text) {
    try {
        (void)parse_architecture(text);
    } catch (const cvxcnn::Error& error) {
        EXPECT_EQ(error.kind(), cvxcnn::ErrorKind::bad_input);
        return error.what();
    }
    return "(no error)";
}

std::string fit_error(const std::string& text, ImageShape input) {
    try {
        validate_for_input(parse_architecture(text), input);
    } catch (const cvxcnn::Error& error) {
        return error.what();
    }
    return "(no error)";
}

}  // namespace

TEST(Architecture, ParsesDocumentedExamples) {
    const Architecture a = parse_architecture("conv3x3s1p1-relu-pool7");
    EXPECT_EQ(a.kernel, 3);
    EXPECT_EQ(a.stride, 1);
    EXPECT_EQ(a.padding, 1);
    EXPECT_EQ(a.activation, Activation::relu);
    EXPECT_EQ(a.leaky_slope, 0.0f);
    EXPECT_EQ(a.pool_grid, 7);

    const Architecture b = parse_architecture("conv5x5p2-leaky0.1-pool2");
    EXPECT_EQ(b.kernel, 5);
    EXPECT_EQ(b.stride, 1);
    EXPECT_EQ(b.padding, 2);
    EXPECT_EQ(b.activation, Activation::leaky_relu);
    EXPECT_EQ(b.leaky_slope, 0.1f);
    EXPECT_EQ(b.pool_grid, 2);

    const Architecture c = parse_architecture("conv3x3-gated-pool1");
    EXPECT_EQ(c.padding, 0);  // the string default, not the struct default (1)
    EXPECT_EQ(c.activation, Activation::gated_relu);
    EXPECT_EQ(c.pool_grid, 1);

    const Architecture d = parse_architecture("conv3x3s2-abs-pool4");
    EXPECT_EQ(d.stride, 2);
    EXPECT_EQ(d.padding, 0);
    EXPECT_EQ(d.activation, Activation::absolute);
    EXPECT_EQ(d.pool_grid, 4);

    const Architecture e = parse_architecture("conv7x7-pool3");  // activation defaults to relu
    EXPECT_EQ(e.activation, Activation::relu);
    EXPECT_EQ(e.kernel, 7);
}

TEST(Architecture, CanonicalStringWritesEveryPart) {
    EXPECT_EQ(to_string(parse_architecture("conv3x3-pool7")), "conv3x3s1p0-relu-pool7");
    EXPECT_EQ(to_string(parse_architecture("conv5x5p2-leaky0.1-pool2")), "conv5x5s1p2-leaky0.1-pool2");
    EXPECT_EQ(to_string(parse_architecture("conv3x3-gated-pool1")), "conv3x3s1p0-gated-pool1");
    EXPECT_EQ(to_string(parse_architecture("conv3x3s2-abs-pool4")), "conv3x3s2p0-abs-pool4");
    EXPECT_EQ(to_string(parse_architecture("conv3x3s1p1-relu-pool7")), "conv3x3s1p1-relu-pool7");
    EXPECT_EQ(to_string(Activation::gated_relu), "gated");
}

TEST(Architecture, RoundTripsThroughCanonicalString) {
    std::vector<Architecture> cases;
    for (const float slope : {0.1f, 0.01f, 0.3333333f, 1e-5f, 0.999f, 0.2f, std::numeric_limits<float>::denorm_min()}) {
        Architecture a;
        a.kernel = 5;
        a.padding = 2;
        a.activation = Activation::leaky_relu;
        a.leaky_slope = slope;
        a.pool_grid = 3;
        cases.push_back(a);
    }
    for (const Activation act : {Activation::relu, Activation::gated_relu, Activation::absolute}) {
        Architecture a;
        a.kernel = 1024;
        a.stride = 1024;
        a.padding = 1023;
        a.activation = act;
        a.pool_grid = 1024;
        cases.push_back(a);
    }
    for (const Architecture& a : cases) {
        const std::string text = to_string(a);
        EXPECT_EQ(parse_architecture(text), a) << text;
        EXPECT_EQ(to_string(parse_architecture(text)), text);
    }
    // Shortest text that round-trips: 0.1f prints as "0.1", not 0.100000001.
    Architecture leaky;
    leaky.activation = Activation::leaky_relu;
    leaky.leaky_slope = 0.1f;
    EXPECT_NE(to_string(leaky).find("-leaky0.1-"), std::string::npos) << to_string(leaky);
    // Fixed notation: "1e-05" would put the token separator '-' inside the token.
    leaky.leaky_slope = 1e-5f;
    EXPECT_NE(to_string(leaky).find("-leaky0.00001-"), std::string::npos) << to_string(leaky);
}

TEST(Architecture, ParseErrorsNameTheOptionAndTheDefect) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"conv3x3q", "unknown token 'q'"},
        {"", "empty"},
        {"conv3x3-relu", "missing the pool token"},
        {"relu-pool7", "must start with a conv token"},
        {"conv3x5-pool1", "only square kernels"},
        {"conv3-pool1", "<k>x<k>"},
        {"convx3-pool1", "kernel size needs a number"},
        {"conv0x0-pool1", "kernel size 0 must be >= 1"},
        {"conv3x3s0-pool1", "stride 0 must be >= 1"},
        {"conv3x3s-pool1", "stride needs a number in 'conv3x3s'"},
        {"conv3x3p3-pool1", "padding 3 must be smaller than the kernel size 3"},
        {"conv3x3p1s1-pool1", "unknown token 's1'"},
        {"conv2000x2000-pool1", "kernel size 2000 is over the limit of 1024"},
        {"conv3x3s99999999999999-pool1", "is over the limit of 1024"},
        {"conv3x3-pool0", "pool grid 0 must be >= 1"},
        {"conv3x3-pool1025", "pool grid 1025 is over the limit of 1024"},
        {"conv3x3-pool", "pool grid needs a number"},
        {"conv3x3-pool2x", "unknown token 'x'"},
        {"conv3x3-tanh-pool2", "unknown token 'tanh'"},
        {"conv3x3-relu-abs-pool2", "more than one activation"},
        {"conv3x3-conv3x3-pool2", "more than one conv"},
        {"conv3x3-pool2-relu", "after the pool token"},
        {"conv3x3--pool2", "empty token"},
        {"conv3x3-pool2-", "empty token"},
        {"conv3x3-leaky-pool2", "leaky needs a slope"},
        {"conv3x3-leaky0-pool2", "must be in (0, 1)"},
        {"conv3x3-leaky1-pool2", "must be in (0, 1)"},
        {"conv3x3-leaky1.5-pool2", "must be in (0, 1)"},
        {"conv3x3-leakynan-pool2", "must be in (0, 1)"},
        {"conv3x3-leakyinf-pool2", "must be in (0, 1)"},
        {"conv3x3-leaky0.1x-pool2", "is not a number"},
        {"conv3x3-leaky-0.1-pool2", "leaky needs a slope"},
        {"conv3x3-pool2-pool3", "after the pool token"},
    };
    for (const auto& [text, defect] : cases) {
        const std::string message = parse_error(text);
        EXPECT_TRUE(message.starts_with("--arch '" + text + "': ")) << text << " -> " << message;
        EXPECT_NE(message.find(defect), std::string::npos) << text << " -> " << message;
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
}

TEST(Architecture, ValidateForInputChecksGeometry) {
    const ImageShape mnist{1, 28, 28};
    EXPECT_NO_THROW(validate_for_input(parse_architecture("conv3x3s1p1-relu-pool7"), mnist));
    EXPECT_NO_THROW(validate_for_input(parse_architecture("conv28x28-pool1"), mnist));      // output 1x1
    EXPECT_NO_THROW(validate_for_input(parse_architecture("conv3x3p1-pool28"), mnist));     // one position per region
    EXPECT_NO_THROW(validate_for_input(parse_architecture("conv5x5s3p2-pool10"), mnist));   // (28+4-5)/3+1 = 10

    EXPECT_NE(fit_error("conv29x29-pool1", mnist).find("larger than the padded input"), std::string::npos);
    EXPECT_NO_THROW(validate_for_input(parse_architecture("conv29x29p1-pool1"), mnist));  // 28 + 2 >= 29
    EXPECT_NE(fit_error("conv3x3-pool27", mnist).find("pool27 needs at least 27x27 convolution outputs"),
              std::string::npos);
    EXPECT_NE(fit_error("conv5x5s3p2-pool11", mnist).find("give 10x10"), std::string::npos);
    EXPECT_NE(fit_error("conv3x3-pool1", ImageShape{1, 2, 28}).find("larger than the padded input"),
              std::string::npos);
    EXPECT_NE(fit_error("conv3x3-pool1", ImageShape{0, 28, 28}).find("is empty"), std::string::npos);
    // Messages name the canonical form of the architecture.
    EXPECT_TRUE(fit_error("conv29x29-pool1", mnist).starts_with("--arch 'conv29x29s1p0-relu-pool1': "));

    // Values that only code (not the parser) can produce.
    const std::vector<std::pair<Architecture, std::string>> cases = [] {
        std::vector<std::pair<Architecture, std::string>> list;
        Architecture a;
        a.pool_grid = 1;
        Architecture s = a;
        s.stride = 0;
        list.emplace_back(s, "stride 0 must be >= 1");
        Architecture p = a;
        p.padding = 3;
        list.emplace_back(p, "padding 3 must be smaller than the kernel size 3");
        Architecture n = a;
        n.padding = -1;
        list.emplace_back(n, "padding -1 must be >= 0");
        Architecture g = a;
        g.pool_grid = 0;
        list.emplace_back(g, "pool grid 0 must be >= 1");
        Architecture big = a;
        big.kernel = 5000;
        list.emplace_back(big, "kernel size 5000 is over the limit of 1024");
        Architecture leaky = a;
        leaky.activation = Activation::leaky_relu;
        leaky.leaky_slope = 1.0f;
        list.emplace_back(leaky, "must be in (0, 1)");
        Architecture slope = a;
        slope.leaky_slope = 0.5f;  // relu with a slope
        list.emplace_back(slope, "only meaningful for leaky");
        return list;
    }();
    for (const auto& [arch, defect] : cases) {
        try {
            validate_for_input(arch, mnist);
            ADD_FAILURE() << "accepted: " << defect;
        } catch (const cvxcnn::Error& error) {
            EXPECT_NE(std::string(error.what()).find(defect), std::string::npos) << error.what();
            EXPECT_TRUE(std::string(error.what()).starts_with("--arch '")) << error.what();
        }
    }
}

// Fuzzing regression (tools/fuzz.sh arch): the defect quotes the --arch text, which held
// \x03 and \r; the message must be one line with them escaped.
TEST(Architecture, FuzzControlCharactersAreEscapedInTheMessage) {
    std::ifstream in(std::string(CVXCNN_TEST_DATA_DIR) + "/fuzz/arch-control-characters.txt", std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_EQ(text, "sfo\x03v2-as\r-abs-po-af-abt");
    try {
        (void)parse_architecture(text);
        FAIL() << "accepted " << text;
    } catch (const cvxcnn::Error& error) {
        const std::string message = error.what();
        EXPECT_EQ(message.find_first_of("\r\n\x03"), std::string::npos) << message;
        EXPECT_TRUE(message.starts_with("--arch 'sfo\\x03v2-as\\x0d-abs-po-af-abt': ")) << message;
    }
}
