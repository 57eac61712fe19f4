#include "cvxcnn/train/checkpoint.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include "cvxcnn/model/model_file.hpp"
#include "cvxcnn/train/convex_training.hpp"
#include "cvxcnn/util/error.hpp"
#include "test_support.hpp"

using namespace cvxcnn;
namespace fs = std::filesystem;

namespace {

// Two classes of 8x8 gray images: a bright bar, horizontal or vertical, in noise.
Dataset bars(int per_class, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> noise(0.0f, 0.5f);
    Dataset data;
    data.shape = {1, 8, 8};
    data.class_names = {"horizontal", "vertical"};
    for (int c = 0; c < 2; ++c)
        for (int i = 0; i < per_class; ++i) {
            const int at = static_cast<int>(rng() % 8);
            for (int y = 0; y < 8; ++y)
                for (int x = 0; x < 8; ++x) data.images.push_back(noise(rng) + ((c == 0 ? y : x) == at ? 0.5f : 0.0f));
            data.labels.push_back(c);
        }
    return data;
}

TrainingSettings path_settings() {
    TrainingSettings settings;
    settings.architecture = parse_architecture("conv3x3s1p1-gated-pool2");
    settings.patterns = 5;
    settings.seed = 3;
    settings.path_points = 2;
    settings.path_max_iters = 40;
    settings.max_iters = 150;
    settings.rel_gap_tol = 1e-9;  // out of reach: every stage runs to its iteration cap
    settings.time_limit_s = 0;
    settings.max_memory_bytes = 0;
    return settings;
}

// The model file bytes without the wall-clock time, the only field that may differ.
std::vector<std::uint8_t> comparable(Model model) {
    model.training.erase("time_s");
    return encode_model(model);
}

}  // namespace

TEST(TrainingCheckpoint, FileRoundTripIsExactAndDamageIsNamed) {
    const Dataset data = bars(10, 1);
    TrainingSettings settings = path_settings();
    std::optional<TrainingCheckpoint> taken;
    int calls = 0;
    settings.interrupt = [&calls] { return ++calls == 60; };  // in the second stage of the path
    settings.on_checkpoint = [&taken](const TrainingCheckpoint& checkpoint) { taken = checkpoint; };
    const TrainingResult result = train_convex_cnn(data, settings);
    EXPECT_TRUE(result.interrupted);
    EXPECT_EQ(result.model.training["status"], "interrupted");
    ASSERT_TRUE(taken.has_value());
    EXPECT_EQ(taken->stage, 1);
    EXPECT_EQ(taken->path.size(), 1u);
    EXPECT_EQ(taken->data_fingerprint, data_fingerprint(data));

    test::ScratchDir dir;
    const fs::path file = dir / "run.ckpt";
    write_checkpoint(file, *taken);
    const TrainingCheckpoint back = read_checkpoint(file);
    EXPECT_EQ(back.settings, taken->settings);
    EXPECT_EQ(back.stage, taken->stage);
    EXPECT_EQ(back.path, taken->path);
    EXPECT_EQ(back.best_weights, taken->best_weights);
    EXPECT_EQ(nlohmann::json(back.best_solve), nlohmann::json(taken->best_solve));
    EXPECT_EQ(back.solver.w, taken->solver.w);
    EXPECT_EQ(back.solver.v, taken->solver.v);
    EXPECT_EQ(back.solver.zw, taken->solver.zw);
    EXPECT_EQ(back.solver.zv, taken->solver.zv);
    EXPECT_EQ(back.solver.t, taken->solver.t);
    EXPECT_EQ(back.solver.eta, taken->solver.eta);
    EXPECT_EQ(back.solver.best_dual, taken->solver.best_dual);
    EXPECT_EQ(back.solver.next_iteration, taken->solver.next_iteration);
    EXPECT_EQ(back.elapsed_s, taken->elapsed_s);

    // Damage: every defect is one line naming the file.
    std::vector<std::uint8_t> bytes = test::read_bytes(file);
    const fs::path damaged = dir / "damaged.ckpt";
    std::vector<std::uint8_t> flipped = bytes;
    flipped[flipped.size() / 2] ^= 0x40;
    test::write_bytes(damaged, flipped);
    test::expect_file_error([&] { (void)read_checkpoint(damaged); }, ErrorKind::bad_input, damaged, "checksum");
    test::write_bytes(damaged, std::span(bytes).first(bytes.size() / 3));
    test::expect_file_error([&] { (void)read_checkpoint(damaged); }, ErrorKind::bad_input, damaged, "checksum");
    test::write_bytes(damaged, encode_model(result.model));
    test::expect_file_error([&] { (void)read_checkpoint(damaged); }, ErrorKind::bad_input, damaged, "not a cvxcnn checkpoint");
    test::write_bytes(damaged, {});
    test::expect_file_error([&] { (void)read_checkpoint(damaged); }, ErrorKind::bad_input, damaged, "not a cvxcnn checkpoint");
}

TEST(TrainingCheckpoint, ResumedRunsEndWithTheUninterruptedModel) {
    const Dataset data = bars(10, 2);
    const TrainingSettings settings = path_settings();
    const TrainingResult whole = train_convex_cnn(data, settings);
    ASSERT_FALSE(whole.interrupted);
    ASSERT_EQ(whole.path.size(), 2u);

    // Interrupted in the path's first stage, its second, and the final solve; each resumed
    // through a checkpoint file, possibly interrupted again.
    test::ScratchDir dir;
    for (const int stop_at : {5, 55, 100}) {
        SCOPED_TRACE(stop_at);
        const fs::path file = dir / "run.ckpt";
        TrainingSettings interrupted = settings;
        int calls = 0;
        interrupted.interrupt = [&calls, stop_at] { return ++calls % stop_at == 0; };
        interrupted.on_checkpoint = [&file](const TrainingCheckpoint& checkpoint) { write_checkpoint(file, checkpoint); };
        TrainingResult result = train_convex_cnn(data, interrupted);
        int resumes = 0;
        while (result.interrupted) {
            const TrainingCheckpoint checkpoint = read_checkpoint(file);
            result = train_convex_cnn(data, interrupted, &checkpoint);
            ++resumes;
        }
        EXPECT_GE(resumes, 1);
        EXPECT_EQ(comparable(result.model), comparable(whole.model));
        EXPECT_EQ(result.path, whole.path);
        EXPECT_EQ(result.solve.iterations, whole.solve.iterations);
    }

    // Periodic checkpoints (here before every iteration) change nothing.
    TrainingSettings periodic = settings;
    int written = 0;
    periodic.checkpoint_every_s = 1e-12;
    periodic.on_checkpoint = [&written](const TrainingCheckpoint&) { ++written; };
    const TrainingResult checked = train_convex_cnn(data, periodic);
    EXPECT_GT(written, 100);
    EXPECT_EQ(comparable(checked.model), comparable(whole.model));
}

TEST(TrainingCheckpoint, ACheckpointResumesOnlyItsOwnRun) {
    const Dataset data = bars(8, 4);
    TrainingSettings settings = path_settings();
    std::optional<TrainingCheckpoint> taken;
    int calls = 0;
    settings.interrupt = [&calls] { return ++calls == 10; };
    settings.on_checkpoint = [&taken](const TrainingCheckpoint& checkpoint) { taken = checkpoint; };
    (void)train_convex_cnn(data, settings);
    ASSERT_TRUE(taken.has_value());
    settings.interrupt = nullptr;

    const auto message = [&](const Dataset& d, const TrainingSettings& s) -> std::string {
        try {
            (void)train_convex_cnn(d, s, &*taken);
        } catch (const Error& e) {
            return e.what();
        }
        return "";
    };
    Dataset other = data;
    other.images[5] += 0.25f;
    EXPECT_NE(message(other, settings).find("other data"), std::string::npos);
    TrainingSettings more_patterns = settings;
    more_patterns.patterns = 6;
    EXPECT_NE(message(data, more_patterns).find("patterns"), std::string::npos);
    TrainingSettings more_memory = settings;
    more_memory.max_memory_bytes = 1ull << 40;  // a machine property, not part of the result
    EXPECT_EQ(message(data, more_memory), "");
}

TEST(TrainingCheckpoint, SettingsJsonRoundTrip) {
    TrainingSettings settings = path_settings();
    settings.rank = 3;
    settings.beta = 0.125;
    settings.loss = Loss::squared;
    settings.pattern_source = SamplingOptions::Source::data_patches;
    const nlohmann::json json = settings;
    TrainingSettings back;
    from_json(json, back);
    EXPECT_EQ(nlohmann::json(back), json);
    nlohmann::json broken = json;
    broken.erase("seed");
    EXPECT_THROW(from_json(broken, back), Error);
}

// A real run, a real SIGINT: the interrupted command writes a checkpoint and a usable
// model, exits 130, and --resume ends with the model of the uninterrupted command.
TEST(TrainCli, CtrlCWritesACheckpointAndResumeFinishesTheSameModel) {
    test::ScratchDir dir;
    // Noisy labels: no separating network, so the solve runs to its iteration cap.
    Dataset data = bars(150, 5);
    std::mt19937 flip(9);
    for (auto& label : data.labels)
        if (flip() % 3 == 0) label = 1 - label;
    for (std::size_t i = 0; i < data.size(); ++i) {
        std::vector<std::uint8_t> pixels;
        for (float v : data.image(i)) pixels.push_back(static_cast<std::uint8_t>(std::min(255.0f, v * 255.0f)));
        test::write_png_hwc(dir / ("data/" + data.class_names[data.labels[i]] + "/" + std::to_string(i) + ".png"), pixels,
                            8, 8, 1);
    }
    const std::string folder = (dir / "data").string();
    const std::vector<std::string> common = {"-q", "train", folder, "--arch", "conv3x3s1p1-gated-pool2", "--patterns", "6",
                                             "--path-points", "2", "--path-max", "1e-4", "--path-min", "1e-5",
                                             "--max-iters", "20000", "--tol", "1e-12",
                                             "--time-limit", "0"};
    auto with = [&common](std::vector<std::string> extra) {
        std::vector<std::string> args = common;
        args.insert(args.end(), extra.begin(), extra.end());
        return args;
    };
    const std::string whole = (dir / "whole.cvx").string();
    const auto straight = test::run_cli(with({"--out", whole}));
    ASSERT_EQ(straight.exit_code, 0) << straight.err;
    EXPECT_FALSE(fs::exists(whole + ".ckpt")) << "a finished run leaves no checkpoint behind";

    // The same command in the background, interrupted once its first checkpoint exists.
    const std::string model = (dir / "m.cvx").string(), checkpoint = (dir / "m.ckpt").string();
    std::vector<std::string> args = with({"--out", model, "--checkpoint", checkpoint, "--checkpoint-every", "0.05"});
    std::vector<char*> argv;
    std::string binary = CVXCNN_CLI_PATH;
    argv.push_back(binary.data());
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const std::string err_file = (dir / "stderr").string();
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        const int err = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(err, 2);
        ::execv(argv[0], argv.data());
        _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!fs::exists(checkpoint) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_TRUE(fs::exists(checkpoint)) << "no periodic checkpoint within 60 s";
    ::kill(child, SIGINT);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "killed by the signal instead of stopping cleanly";
    const std::vector<std::uint8_t> err_bytes = test::read_bytes(err_file);
    const std::string err(err_bytes.begin(), err_bytes.end());
    ASSERT_EQ(WEXITSTATUS(status), 130) << err;
    EXPECT_EQ(test::count_lines(err), 1) << err;
    EXPECT_NE(err.find("--resume " + checkpoint), std::string::npos) << err;
    const Model partial = read_model(model);
    EXPECT_EQ(partial.training["status"], "interrupted");

    const auto resumed = test::run_cli({"-q", "train", folder, "--resume", checkpoint, "--out", model, "--checkpoint",
                                        checkpoint});
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    EXPECT_EQ(comparable(read_model(model)), comparable(read_model(whole)));
    EXPECT_FALSE(fs::exists(checkpoint));

    // --resume takes the checkpoint's settings: a result-shaping flag beside it is a usage error.
    const auto conflicting = test::run_cli({"-q", "train", folder, "--resume", checkpoint, "--out", model, "--seed", "1"});
    EXPECT_EQ(conflicting.exit_code, 2);
    const auto missing = test::run_cli({"-q", "train", folder, "--resume", checkpoint, "--out", model});
    test::expect_one_line_error(missing, 1, checkpoint);
}
