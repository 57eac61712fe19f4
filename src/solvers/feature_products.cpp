#include "solvers/feature_products.hpp"

#include <cstring>

namespace cvxcnn::detail {

namespace {

using Index = Eigen::Index;

// The widest float vector the target has (GCC/Clang vector extensions: the same code is
// AVX-512, AVX or SSE, whatever -march allows).
#if defined(__AVX512F__)
constexpr int vector_bytes = 64;
#elif defined(__AVX__)
constexpr int vector_bytes = 32;
#else
constexpr int vector_bytes = 16;
#endif
typedef float Vector __attribute__((vector_size(vector_bytes)));
constexpr int lanes = vector_bytes / static_cast<int>(sizeof(float));

inline Vector load(const float* p) {
    Vector v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline void store(float* p, const Vector& v) { std::memcpy(p, &v, sizeof v); }
// Keeps a loaded vector in a register. Without it GCC folds the load into every FMA that
// uses the vector (a memory operand each), which turns a 4 x 4 block's 8 loads per 16 FMAs
// into 20 and makes the kernels load-bound.
inline void keep_in_register(Vector& v) {
#if defined(__AVX512F__)
    asm("" : "+v"(v));  // any of the 32 vector registers
#elif defined(__GNUC__)
    asm("" : "+x"(v));
#else
    (void)v;
#endif
}

// Register blocks, sized to the vector registers (32 with AVX-512, else 16): product_rows
// keeps row_block x product_classes accumulators plus product_classes vectors of U^T;
// add_transpose_product keeps transpose_classes x strip_vectors accumulators plus the
// strip's vectors of F. Wider blocks read each vector of F (and of U^T) for more FMAs: with
// AVX-512 and C = 10 the transpose reads every strip of F once instead of three times.
#if defined(__AVX512F__)
constexpr int product_classes = 5;     // 4 x 5 accumulators + 5 of U^T
constexpr int transpose_classes = 10;  // 10 x 2 accumulators + 2 of F
constexpr int strip_vectors = 2;
#else
constexpr int product_classes = 4;
constexpr int transpose_classes = 4;
constexpr int strip_vectors = 4;
#endif
constexpr int row_block = 4;  // rows of F per register block of product_rows

/// Splits `classes` into the fewest blocks of at most `widest`, as even as possible, and
/// calls block(first_class, width) for each (so 10 classes in blocks of 4 are 4, 3, 3, not
/// 4, 4, 2: a narrow last block does few FMAs per vector it loads).
template <typename Block>
void for_class_blocks(Index classes, int widest, Block&& block) {
    const Index blocks = (classes + widest - 1) / widest;
    Index first = 0;
    for (Index b = 0; b < blocks; ++b) {
        const Index width = classes / blocks + (b < classes % blocks ? 1 : 0);
        block(first, static_cast<int>(width));
        first += width;
    }
}

/// Calls kernel.template operator()<W>() for the compile-time width W = width in [1, Max].
template <int Max, typename Kernel>
void with_width(int width, Kernel&& kernel) {
    if constexpr (Max >= 1) {
        if (width == Max) kernel.template operator()<Max>();
        else with_width<Max - 1>(width, kernel);
    }
}

// Rows [0, RW) x classes [0, CW) of z (row stride classes), dot products along the columns.
// Kernels are kept out of line: inlined into their dispatch, GCC 12 spilled the
// accumulators of the 4 x 5 block to the stack in every iteration (1.5x slower).
template <int RW, int CW>
[[gnu::noinline]] void product_block(const float* f, Index ld_f, Index columns, const float* ut, Index classes, float* z) {
    Vector acc[RW][CW] = {};
    Index i = 0;
    for (; i + lanes <= columns; i += lanes) {
        Vector u[CW];
        for (int c = 0; c < CW; ++c) {
            u[c] = load(ut + c * columns + i);
            keep_in_register(u[c]);
        }
        for (int r = 0; r < RW; ++r) {
            Vector x = load(f + r * ld_f + i);
            keep_in_register(x);
            for (int c = 0; c < CW; ++c) acc[r][c] += x * u[c];
        }
    }
    for (int r = 0; r < RW; ++r)
        for (int c = 0; c < CW; ++c) {
            float sum = 0.0f;
            for (int l = 0; l < lanes; ++l) sum += acc[r][c][l];
            for (Index k = i; k < columns; ++k) sum += f[r * ld_f + k] * ut[c * columns + k];
            z[r * classes + c] = sum;
        }
}

template <int RW>
void product_row_block(const float* f, Index ld_f, Index columns, const float* ut, Index classes, float* z) {
    for_class_blocks(classes, product_classes, [&](Index c, int width) {
        with_width<product_classes>(width, [&]<int CW>() {
            product_block<RW, CW>(f, ld_f, columns, ut + c * columns, classes, z + c);
        });
    });
}

// Columns [i, i + strip_vectors * lanes) x classes [0, CW) of acc_t, summed over the rows.
template <int CW>
[[gnu::noinline]] void transpose_strip(const float* f, Index ld_f, Index rows, Index columns, const float* g, Index classes,
                     float* acc_t, Index i) {
    Vector acc[CW][strip_vectors];
    for (int c = 0; c < CW; ++c)
        for (int w = 0; w < strip_vectors; ++w) acc[c][w] = load(acc_t + c * columns + i + w * lanes);
    for (Index r = 0; r < rows; ++r) {
        Vector x[strip_vectors];
        for (int w = 0; w < strip_vectors; ++w) {
            x[w] = load(f + r * ld_f + i + w * lanes);
            keep_in_register(x[w]);
        }
        for (int c = 0; c < CW; ++c) {
            const float scale = g[r * classes + c];
            for (int w = 0; w < strip_vectors; ++w) acc[c][w] += x[w] * scale;
        }
    }
    for (int c = 0; c < CW; ++c)
        for (int w = 0; w < strip_vectors; ++w) store(acc_t + c * columns + i + w * lanes, acc[c][w]);
}

}  // namespace

void product_rows(const float* f, Index ld_f, Index rows, Index columns, const float* ut, Index classes, float* z) {
    Index r = 0;
    for (; r + row_block <= rows; r += row_block)
        product_row_block<row_block>(f + r * ld_f, ld_f, columns, ut, classes, z + r * classes);
    for (; r < rows; ++r) product_row_block<1>(f + r * ld_f, ld_f, columns, ut, classes, z + r * classes);
}

void add_transpose_product(const float* f, Index ld_f, Index rows, Index columns, const float* g, Index classes,
                           float* acc_t, const float* prefetch, Index prefetch_rows) {
    constexpr Index strip = strip_vectors * lanes;
    constexpr Index floats_per_line = 64 / sizeof(float);
    Index i = 0;
    for (; i + strip <= columns; i += strip) {
        // The next rows' part of this strip, into L2 while this one computes: the next pass
        // block's F U then finds them there instead of waiting for memory.
        for (Index r = 0; r < prefetch_rows; ++r)
            for (Index k = 0; k < strip; k += floats_per_line) __builtin_prefetch(prefetch + r * ld_f + i + k, 0, 2);
        for_class_blocks(classes, transpose_classes, [&](Index c, int width) {
            with_width<transpose_classes>(width, [&]<int CW>() {
                transpose_strip<CW>(f, ld_f, rows, columns, g + c, classes, acc_t + c * columns, i);
            });
        });
    }
    // The last columns (fewer than a strip), one at a time.
    for (; i < columns; ++i)
        for (Index c = 0; c < classes; ++c) {
            float sum = acc_t[c * columns + i];
            for (Index r = 0; r < rows; ++r) sum += f[r * ld_f + i] * g[r * classes + c];
            acc_t[c * columns + i] = sum;
        }
}

}  // namespace cvxcnn::detail
