// The solver's narrow-C product kernels against plain double-precision products, on sizes
// that exercise every remainder: rows not a multiple of the 4-row block, columns not a
// multiple of a vector or of a 32- or 64-column strip, every class count from 1 to 21
// (every block width, one to three blocks, as in the solver's 2C-column transposes), and a
// leading dimension wider than the columns used (a block of columns inside F).
#include <random>

#include <gtest/gtest.h>

#include "cvxcnn/util/matrix.hpp"
#include "solvers/feature_products.hpp"

namespace cvxcnn {
namespace {

RowMatrixF random_matrix(Eigen::Index rows, Eigen::Index cols, std::mt19937& rng) {
    std::normal_distribution<float> normal;
    RowMatrixF m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
    return m;
}

// |a - b| <= tol * (sum of |terms|): float products of `terms` entries, each term rounded.
void expect_close(const Eigen::MatrixXd& got, const Eigen::MatrixXd& exact, const Eigen::MatrixXd& magnitude,
                  Eigen::Index terms) {
    const double tol = 4.0 * static_cast<double>(terms) * 6e-8;
    for (Eigen::Index i = 0; i < exact.rows(); ++i)
        for (Eigen::Index j = 0; j < exact.cols(); ++j)
            ASSERT_LE(std::abs(got(i, j) - exact(i, j)), tol * magnitude(i, j) + 1e-30)
                << "entry (" << i << ", " << j << ") of " << exact.rows() << " x " << exact.cols();
}

TEST(FeatureProducts, EqualPlainProductsForEveryRemainder) {
    std::mt19937 rng(7);
    for (const Eigen::Index rows : {1, 3, 4, 7, 16}) {
        for (const Eigen::Index columns : {1, 15, 16, 63, 64, 65, 200}) {
            for (Eigen::Index classes = 1; classes <= 21; ++classes) {
                const Eigen::Index ld = columns + 5;  // F's rows are wider than the block used
                const RowMatrixF f = random_matrix(rows, ld, rng);
                const RowMatrixF u = random_matrix(columns, classes, rng);
                const RowMatrixF g = random_matrix(rows, classes, rng);
                const RowMatrixF start = random_matrix(classes, columns, rng);
                const Eigen::MatrixXd fd = f.leftCols(columns).cast<double>();

                const RowMatrixF ut = u.transpose();
                RowMatrixF z(rows, classes);
                detail::product_rows(f.data(), ld, rows, columns, ut.data(), classes, z.data());
                expect_close(z.cast<double>(), fd * u.cast<double>(), fd.cwiseAbs() * u.cast<double>().cwiseAbs(),
                             columns);

                RowMatrixF acc = start;
                detail::add_transpose_product(f.data(), ld, rows, columns, g.data(), classes, acc.data());
                const Eigen::MatrixXd exact = start.cast<double>() + g.cast<double>().transpose() * fd;
                const Eigen::MatrixXd magnitude =
                    start.cast<double>().cwiseAbs() + g.cast<double>().cwiseAbs().transpose() * fd.cwiseAbs();
                expect_close(acc.cast<double>(), exact, magnitude, rows + 1);

                // Prefetching the next rows is a hint: the same bits with and without it.
                RowMatrixF prefetched = start;
                detail::add_transpose_product(f.data(), ld, rows, columns, g.data(), classes, prefetched.data(),
                                              f.data(), rows);
                ASSERT_EQ(prefetched, acc);
            }
        }
    }
}

// Every output row of product_rows is the same float computation wherever the row sits in
// the block (first of a 4-row block, or in the 1-row tail): the solver relies on it for
// bitwise-reproducible iterates.
TEST(FeatureProducts, EachRowsResultDoesNotDependOnItsBlock) {
    std::mt19937 rng(8);
    const Eigen::Index columns = 77, classes = 10;
    const RowMatrixF f = random_matrix(7, columns, rng);
    const RowMatrixF ut = random_matrix(classes, columns, rng);
    RowMatrixF all(7, classes);
    detail::product_rows(f.data(), columns, 7, columns, ut.data(), classes, all.data());
    for (Eigen::Index r = 0; r < 7; ++r) {
        RowMatrixF one(1, classes);
        detail::product_rows(f.data() + r * columns, columns, 1, columns, ut.data(), classes, one.data());
        EXPECT_EQ(one, all.row(r)) << "row " << r;
    }
}

// Every output column of add_transpose_product is the same float computation whatever the
// other columns of G are: the solver computes two gradients as one 2C-column product and
// relies on each being the bits of its own C-column product.
TEST(FeatureProducts, EachClassesResultDoesNotDependOnTheOtherClasses) {
    std::mt19937 rng(9);
    const Eigen::Index rows = 16, columns = 101, classes = 10;
    const RowMatrixF f = random_matrix(rows, columns, rng);
    const RowMatrixF both = random_matrix(rows, 2 * classes, rng);
    RowMatrixF wide = RowMatrixF::Zero(2 * classes, columns);
    detail::add_transpose_product(f.data(), columns, rows, columns, both.data(), 2 * classes, wide.data());
    for (const Eigen::Index first : {Eigen::Index{0}, classes}) {
        const RowMatrixF g = both.middleCols(first, classes);
        RowMatrixF narrow = RowMatrixF::Zero(classes, columns);
        detail::add_transpose_product(f.data(), columns, rows, columns, g.data(), classes, narrow.data());
        EXPECT_EQ(narrow, wide.middleRows(first, classes)) << "classes from " << first;
    }
}

}  // namespace
}  // namespace cvxcnn
