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

constexpr int class_block = 4;      // classes per register block (both kernels)
constexpr int row_block = 4;        // rows of F per register block of product_rows
constexpr int strip_vectors = 4;    // vectors of columns per strip of add_transpose_product

// Rows [0, RW) x classes [0, CW) of z (row stride classes), dot products along the columns.
template <int RW, int CW>
void product_block(const float* f, Index ld_f, Index columns, const float* ut, Index classes, float* z) {
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
    Index c = 0;
    for (; c + class_block <= classes; c += class_block)
        product_block<RW, class_block>(f, ld_f, columns, ut + c * columns, classes, z + c);
    switch (classes - c) {
        case 3: product_block<RW, 3>(f, ld_f, columns, ut + c * columns, classes, z + c); break;
        case 2: product_block<RW, 2>(f, ld_f, columns, ut + c * columns, classes, z + c); break;
        case 1: product_block<RW, 1>(f, ld_f, columns, ut + c * columns, classes, z + c); break;
        default: break;
    }
}

// Columns [i, i + strip_vectors * lanes) x classes [0, CW) of acc_t, summed over the rows.
template <int CW>
void transpose_strip(const float* f, Index ld_f, Index rows, Index columns, const float* g, Index classes,
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
                           float* acc_t) {
    constexpr Index strip = strip_vectors * lanes;
    Index i = 0;
    for (; i + strip <= columns; i += strip) {
        Index c = 0;
        for (; c + class_block <= classes; c += class_block)
            transpose_strip<class_block>(f, ld_f, rows, columns, g + c, classes, acc_t + c * columns, i);
        switch (classes - c) {
            case 3: transpose_strip<3>(f, ld_f, rows, columns, g + c, classes, acc_t + c * columns, i); break;
            case 2: transpose_strip<2>(f, ld_f, rows, columns, g + c, classes, acc_t + c * columns, i); break;
            case 1: transpose_strip<1>(f, ld_f, rows, columns, g + c, classes, acc_t + c * columns, i); break;
            default: break;
        }
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
