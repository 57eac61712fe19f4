#include "cvxcnn/util/file_io.hpp"

#include <gtest/gtest.h>

#include "cvxcnn/util/error.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace cvxcnn;

TEST(AtomicFile, UncommittedWriteLeavesEarlierFileIntact) {
    test::ScratchDir dir;
    const fs::path target = dir / "model.cvx";
    test::write_text(target, "earlier");
    {
        AtomicFile file(target);
        file.write("partial", 7);
        // destroyed without commit, as when an exception unwinds mid-write
    }
    EXPECT_EQ(test::read_bytes(target), (std::vector<std::uint8_t>{'e', 'a', 'r', 'l', 'i', 'e', 'r'}));
    int entries = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
    EXPECT_EQ(entries, 1) << "temporary file left behind";
}

TEST(AtomicFile, CommitReplacesDestination) {
    test::ScratchDir dir;
    const fs::path target = dir / "out.bin";
    test::write_text(target, "old");
    const std::vector<std::uint8_t> bytes{1, 2, 3, 4};
    write_file_atomically(target, bytes);
    EXPECT_EQ(test::read_bytes(target), bytes);
}

TEST(ReadFile, RefusesFilesOverTheLimitBeforeReading) {
    test::ScratchDir dir;
    test::write_text(dir / "big", std::string(100, 'x'));
    try {
        (void)read_file(dir / "big", 99);
        FAIL() << "expected an error";
    } catch (const Error& error) {
        EXPECT_EQ(error.kind(), ErrorKind::limit);
        EXPECT_NE(std::string(error.what()).find("big"), std::string::npos);
    }
    EXPECT_EQ(read_file(dir / "big", 100).size(), 100u);
    EXPECT_THROW((void)read_file(dir / "missing", 100), Error);
    EXPECT_THROW((void)read_file(dir.path(), 100), Error);
}

TEST(AtomicDirectory, RefusesExistingUnlessReplacingAndCleansUpStaging) {
    test::ScratchDir dir;
    const fs::path target = dir / "out";
    fs::create_directories(target);
    test::write_text(target / "keep.txt", "earlier");
    EXPECT_THROW(AtomicDirectory(target, false), Error);
    {
        AtomicDirectory staging(target, true);
        test::write_text(staging.staging() / "new.txt", "new");
        // not committed
    }
    EXPECT_TRUE(fs::exists(target / "keep.txt"));
    {
        AtomicDirectory staging(target, true);
        test::write_text(staging.staging() / "new.txt", "new");
        staging.commit();
    }
    EXPECT_FALSE(fs::exists(target / "keep.txt"));
    EXPECT_TRUE(fs::exists(target / "new.txt"));
    int entries = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
    EXPECT_EQ(entries, 1);
}
