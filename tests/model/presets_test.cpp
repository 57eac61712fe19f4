#include "cvxcnn/model/presets.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

#include "cvxcnn/util/error.hpp"

using namespace cvxcnn;

TEST(ArchitecturePresets, EveryPresetOfTheFileIsBuiltInAndValid) {
    // The compiled-in table is models/presets.json as it is in the source tree now.
    std::ifstream file(std::string(CVXCNN_SOURCE_DIR) + "/models/presets.json");
    ASSERT_TRUE(file) << "models/presets.json";
    const nlohmann::json json = nlohmann::json::parse(file);
    const auto& presets = architecture_presets();
    ASSERT_EQ(presets.size(), json.at("presets").size());
    std::set<std::string> names;
    for (std::size_t i = 0; i < presets.size(); ++i) {
        const auto& entry = json.at("presets")[i];
        EXPECT_EQ(presets[i].name, entry.at("name").get<std::string>());
        EXPECT_EQ(to_string(presets[i].architecture), entry.at("arch").get<std::string>()) << "canonical form";
        EXPECT_FALSE(presets[i].description.empty());
        EXPECT_TRUE(names.insert(presets[i].name).second) << "duplicate preset " << presets[i].name;
        EXPECT_EQ(resolve_architecture(presets[i].name), presets[i].architecture);
    }
    ASSERT_TRUE(names.count("default"));
}

TEST(ArchitecturePresets, TheDefaultFitsBoth28And32PixelImages) {
    const Architecture arch = resolve_architecture("default");
    EXPECT_EQ(arch.activation, Activation::gated_relu) << "see the preset's description";
    EXPECT_EQ(resolve_architecture("relu").activation, Activation::relu);
    EXPECT_GE(arch.pool_grid, 7) << "coarser grids cost accuracy even for SGD";
    EXPECT_NO_THROW(validate_for_input(arch, ImageShape{1, 28, 28}));
    EXPECT_NO_THROW(validate_for_input(arch, ImageShape{3, 32, 32}));
}

TEST(ArchitecturePresets, SpecsStillParseAndUnknownNamesListThePresets) {
    EXPECT_EQ(resolve_architecture("conv5x5s1p2-abs-pool2"), parse_architecture("conv5x5s1p2-abs-pool2"));
    try {
        (void)resolve_architecture("tiny");
        FAIL() << "no error";
    } catch (const Error& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("--arch 'tiny'"), std::string::npos) << message;
        EXPECT_NE(message.find("default"), std::string::npos) << message;
    }
    EXPECT_THROW((void)resolve_architecture("conv3x3-bogus"), Error);
}
