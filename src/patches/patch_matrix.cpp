#include "cvxcnn/patches/patch_matrix.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include <Eigen/Eigenvalues>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_reduce.h>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn {
namespace {

constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();

std::size_t saturating_multiply(std::size_t a, std::size_t b) {
    if (a != 0 && b > size_max / a) return size_max;
    return a * b;
}

std::size_t saturating_add(std::size_t a, std::size_t b) { return b > size_max - a ? size_max : a + b; }

std::string format_bytes(std::size_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double value = static_cast<double>(bytes);
    int unit = 0;
    while (value >= 1024.0 && unit < 6) {
        value /= 1024.0;
        ++unit;
    }
    char text[32];
    std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
    return text;
}

// "conv3x3s1p1" — the architecture tokens a user wrote, so messages point at them.
std::string conv_token(const Architecture& a) {
    return "conv" + std::to_string(a.kernel) + "x" + std::to_string(a.kernel) + "s" + std::to_string(a.stride) + "p" +
           std::to_string(a.padding);
}

// True if the kernel fits the padded input. Checked on H + 2p >= k directly: the inline
// conv_output_size() truncates a negative numerator towards zero and would report one
// output for a kernel slightly larger than the padded input.
bool fits(int input_size, const Architecture& a) { return input_size + 2 * a.padding >= a.kernel; }

bool geometry_valid(const ImageShape& shape, const Architecture& a) {
    return shape.channels >= 1 && shape.height >= 1 && shape.width >= 1 && a.kernel >= 1 && a.stride >= 1 &&
           a.padding >= 0 && fits(shape.height, a) && fits(shape.width, a);
}

void check_geometry(const ImageShape& shape, const Architecture& a) {
    if (shape.channels < 1 || shape.height < 1 || shape.width < 1)
        throw Error(ErrorKind::bad_input, "image shape " + to_string(shape) + " is empty");
    if (a.kernel < 1)
        throw Error(ErrorKind::bad_input, "architecture: kernel size " + std::to_string(a.kernel) + " must be >= 1");
    if (a.stride < 1)
        throw Error(ErrorKind::bad_input, "architecture: stride " + std::to_string(a.stride) + " must be >= 1");
    if (a.padding < 0)
        throw Error(ErrorKind::bad_input, "architecture: padding " + std::to_string(a.padding) + " must be >= 0");
    if (!fits(shape.height, a) || !fits(shape.width, a))
        throw Error(ErrorKind::bad_input, "architecture: " + conv_token(a) + " does not fit " + to_string(shape) +
                                              " images (kernel larger than the padded input)");
}

}  // namespace

PoolingRegions make_pooling_regions(int out_height, int out_width, int grid) {
    if (out_height < 1 || out_width < 1)
        throw Error(ErrorKind::bad_input, "pooling: output map " + std::to_string(out_height) + "x" +
                                              std::to_string(out_width) + " is empty");
    if (grid < 1) throw Error(ErrorKind::bad_input, "architecture: pool" + std::to_string(grid) + " must be >= 1");
    if (grid > out_height || grid > out_width)
        throw Error(ErrorKind::bad_input, "architecture: pool" + std::to_string(grid) + " needs at least " +
                                              std::to_string(grid) + "x" + std::to_string(grid) +
                                              " convolution outputs, got " + std::to_string(out_height) + "x" +
                                              std::to_string(out_width) + " (a pooling region would be empty)");
    PoolingRegions regions;
    regions.grid = grid;
    regions.out_height = out_height;
    regions.out_width = out_width;
    regions.region_of_position.resize(static_cast<std::size_t>(out_height) * out_width);
    regions.positions.resize(static_cast<std::size_t>(grid) * grid);
    regions.sizes.resize(regions.positions.size());
    for (int ry = 0; ry < grid; ++ry)
        for (int rx = 0; rx < grid; ++rx) {
            const int region = ry * grid + rx;
            auto& list = regions.positions[region];
            // Row-major walk over the band rectangle keeps each list ascending.
            for (int oy = regions.row_begin(ry); oy < regions.row_begin(ry + 1); ++oy)
                for (int ox = regions.column_begin(rx); ox < regions.column_begin(rx + 1); ++ox) {
                    const int position = oy * out_width + ox;
                    regions.region_of_position[position] = region;
                    list.push_back(position);
                }
            regions.sizes[region] = static_cast<int>(list.size());
        }
    return regions;
}

std::size_t patch_memory_bytes(std::size_t samples, const ImageShape& shape, const Architecture& architecture) {
    if (!geometry_valid(shape, architecture)) return 0;
    const auto positions = static_cast<std::size_t>(architecture.conv_output_size(shape.height)) *
                           static_cast<std::size_t>(architecture.conv_output_size(shape.width));
    const auto h = static_cast<std::size_t>(architecture.patch_size(shape.channels));
    const std::size_t values = saturating_multiply(saturating_multiply(samples, positions), h);
    std::size_t bytes = saturating_multiply(values, sizeof(float));
    // Region tables: region_of_position and the position lists (one int each), plus one
    // vector header and size per region.
    const auto regions = static_cast<std::size_t>(std::max(architecture.pool_grid, 0));
    bytes = saturating_add(bytes, 2 * positions * sizeof(int));
    bytes = saturating_add(bytes, regions * regions * (sizeof(std::vector<int>) + sizeof(int)));
    return bytes;
}

PatchMatrices extract_patches(const Dataset& dataset, const Architecture& architecture,
                              std::optional<std::size_t> max_bytes) {
    const ImageShape& shape = dataset.shape;
    check_geometry(shape, architecture);
    const std::size_t n = dataset.size();
    if (n == 0) throw Error(ErrorKind::bad_input, "cannot extract patches of an empty dataset");
    if (dataset.images.size() != n * shape.values())
        throw Error(ErrorKind::bad_input, "dataset holds " + std::to_string(dataset.images.size()) +
                                              " values but " + std::to_string(n) + " labels of " + to_string(shape) +
                                              " images need " + std::to_string(n * shape.values()));

    const int out_height = architecture.conv_output_size(shape.height);
    const int out_width = architecture.conv_output_size(shape.width);
    PatchMatrices result;
    result.regions_ = make_pooling_regions(out_height, out_width, architecture.pool_grid);

    const int positions = out_height * out_width;
    const int h = architecture.patch_size(shape.channels);
    const std::size_t needed = patch_memory_bytes(n, shape, architecture);
    if (max_bytes && needed > *max_bytes)
        throw Error(ErrorKind::limit, "patch matrices need " + format_bytes(needed) + " (" + std::to_string(n) +
                                          " samples x " + std::to_string(positions) + " positions x " +
                                          std::to_string(h) + " values, float32) but the limit is " +
                                          format_bytes(*max_bytes) +
                                          "; lower the number of samples or the kernel size");

    result.input_ = shape;
    result.architecture_ = architecture;
    result.samples_ = static_cast<Eigen::Index>(n);
    result.out_height_ = out_height;
    result.out_width_ = out_width;
    const Eigen::Index rows = static_cast<Eigen::Index>(positions) * result.samples_;
    result.stacked_.resize(rows, h);

    const int k = architecture.kernel, stride = architecture.stride, padding = architecture.padding;
    const int height = shape.height, width = shape.width, channels = shape.channels;
    const std::size_t plane = shape.pixels_per_channel();
    const Eigen::Index samples = result.samples_;
    const float* images = dataset.images.data();
    float* stacked = result.stacked_.data();

    // Parallel over rows (one row = one sample at one position) rather than samples or
    // positions alone: either of those can be tiny (one image, or a global-kernel conv
    // with K = 1). Every row is written by exactly one task, so the result is the same
    // for any number of threads.
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<Eigen::Index>(0, rows, 512), [&](const oneapi::tbb::blocked_range<Eigen::Index>& r) {
            for (Eigen::Index row = r.begin(); row != r.end(); ++row) {
                const auto position = static_cast<int>(row / samples);
                const Eigen::Index sample = row % samples;
                const int y0 = (position / out_width) * stride - padding;
                const int x0 = (position % out_width) * stride - padding;
                const float* image = images + static_cast<std::size_t>(sample) * shape.values();
                float* out = stacked + row * h;
                for (int c = 0; c < channels; ++c) {
                    const float* channel = image + c * plane;
                    for (int ky = 0; ky < k; ++ky) {
                        const int y = y0 + ky;
                        if (y < 0 || y >= height) {
                            out = std::fill_n(out, k, 0.0f);  // zero padding row
                            continue;
                        }
                        const float* line = channel + static_cast<std::size_t>(y) * width;
                        for (int kx = 0; kx < k; ++kx) {
                            const int x = x0 + kx;
                            *out++ = (x >= 0 && x < width) ? line[x] : 0.0f;
                        }
                    }
                }
            }
        });
    return result;
}

Eigen::MatrixXd gram_matrix(const Eigen::Ref<const RowMatrixF>& matrix) {
    const Eigen::Index h = matrix.cols();
    // Fixed row blocks and a deterministic reduction tree: the summation order depends
    // only on the row count, so rank and singular values do not change with --threads.
    constexpr Eigen::Index block_rows = 4096;
    using Range = oneapi::tbb::blocked_range<Eigen::Index>;
    Eigen::MatrixXd gram = oneapi::tbb::parallel_deterministic_reduce(
        Range(0, matrix.rows(), block_rows), Eigen::MatrixXd(Eigen::MatrixXd::Zero(h, h)),
        [&matrix](const Range& r, Eigen::MatrixXd accumulated) {
            // float * float is exact in double; only the sums round.
            const auto rows = static_cast<Eigen::Index>(r.size());
            const Eigen::MatrixXd block = matrix.middleRows(r.begin(), rows).cast<double>();
            // Symmetric rank-k update fills the lower triangle only (half the flops, and
            // Eigen does not start its own OpenMP threads for it inside TBB tasks).
            accumulated.selfadjointView<Eigen::Lower>().rankUpdate(block.transpose());
            return accumulated;
        },
        [](Eigen::MatrixXd left, const Eigen::MatrixXd& right) {
            left += right;
            return left;
        });
    gram.triangularView<Eigen::StrictlyUpper>() = gram.transpose();
    return gram;
}

RankReport numerical_rank(const RowMatrixF& matrix, double rtol) {
    if (!(rtol > 0.0 && rtol < 1.0))
        throw Error(ErrorKind::bad_input, "rank tolerance " + std::to_string(rtol) + " must be in (0, 1)");
    RankReport report;
    report.rtol = rtol;
    if (matrix.cols() == 0) return report;
    const Eigen::MatrixXd gram = gram_matrix(matrix);
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(gram, Eigen::EigenvaluesOnly);
    if (solver.info() != Eigen::Success)
        throw Error(ErrorKind::internal, "eigenvalues of the " + std::to_string(gram.rows()) + "x" +
                                             std::to_string(gram.cols()) + " Gram matrix did not converge");
    const Eigen::VectorXd& eigenvalues = solver.eigenvalues();  // ascending
    report.singular_values.reserve(static_cast<std::size_t>(eigenvalues.size()));
    // Rounding can make eigenvalues of a PSD matrix slightly negative: clamp to 0.
    for (Eigen::Index i = eigenvalues.size(); i-- > 0;)
        report.singular_values.push_back(std::sqrt(std::max(eigenvalues[i], 0.0)));
    const double threshold = rtol * report.singular_values.front();
    report.rank = static_cast<int>(std::count_if(report.singular_values.begin(), report.singular_values.end(),
                                                 [threshold](double s) { return s > threshold; }));
    return report;
}

RankReport numerical_rank(const PatchMatrices& patches, double rtol) { return numerical_rank(patches.stacked(), rtol); }

}  // namespace cvxcnn
