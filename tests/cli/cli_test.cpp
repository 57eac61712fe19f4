// The command line's contract: exit codes 0 / 1 / 2 and one line on stderr for errors.
#include <gtest/gtest.h>

#include "test_support.hpp"

using cvxcnn::test::count_lines;
using cvxcnn::test::run_cli;

TEST(Cli, HelpAndVersionSucceed) {
    const auto help = run_cli({"--help"});
    EXPECT_EQ(help.exit_code, 0);
    for (const char* command : {"import", "train", "eval", "predict", "info", "export"}) {
        EXPECT_NE(help.out.find(command), std::string::npos) << command;
        const auto sub = run_cli({command, "--help"});
        EXPECT_EQ(sub.exit_code, 0) << command << ": " << sub.err;
        EXPECT_FALSE(sub.out.empty()) << command;
    }
    const auto version = run_cli({"--version"});
    EXPECT_EQ(version.exit_code, 0);
    EXPECT_NE(version.out.find("oneDNN 2."), std::string::npos) << version.out;
}

TEST(Cli, UsageErrorsExitTwoWithOneLine) {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {}, {"frobnicate"}, {"--no-such-flag", "info"}, {"--threads", "-3", "info", "x"}, {"info"}}) {
        const auto result = run_cli(args);
        EXPECT_EQ(result.exit_code, 2) << result.err;
        EXPECT_EQ(count_lines(result.err), 1) << result.err;
        EXPECT_TRUE(result.out.empty()) << result.out;
    }
}
