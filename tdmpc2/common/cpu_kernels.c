/* Fused LayerNorm -> Mish for the CPU: one pass over each row instead of eight.
 *
 * ATen runs a hidden layer's LayerNorm, its affine transform and Mish as separate
 * kernels, each reading and writing the whole activation. Here a row stays in L1 while
 * it is normalised, transformed and activated (and, backwards, while Mish's and
 * LayerNorm's gradients are formed). Built and loaded by cpu_kernels.py; rows are split
 * across PyTorch's own OpenMP threads.
 *
 * Layout: x is [rows, cols], contiguous float32. Rows come in groups of `group_rows`
 * consecutive rows that share one LayerNorm weight and bias row (the Q ensemble: one
 * group per head); a plain layer is a single group.
 */
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define LANES 32 /* independent accumulators: row sums are not one long dependency chain */

/* 2^y: exponent bits for floor(y), a degree-6 polynomial for the fraction (rel. err ~2e-7). */
static inline float exp2_poly(float y) {
    float fl = floorf(y);
    float f = y - fl;
    float p = 1.5353362e-4f;
    p = p * f + 1.3398874e-3f;
    p = p * f + 9.6181291e-3f;
    p = p * f + 5.5503348e-2f;
    p = p * f + 2.4022652e-1f;
    p = p * f + 6.9314718e-1f;
    p = p * f + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)fl + 127) << 23};
    return p * scale.f;
}

/* e^v for v capped to [-64, 40]: below, Mish is 0 to float precision; above, it is v,
 * and the cap keeps n = u (u + 2) finite for the backward pass. */
static inline float exp_capped(float v) {
    float y = v * 1.4426950408889634f;
    y = fminf(fmaxf(y, -92.0f), 57.7f);
    return exp2_poly(y);
}

/* Mean of x + lb over a row. */
static float row_mean(const float *x, const float *lb, int64_t n) {
    float acc[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += x[c + k] + lb[c + k];
    float s = 0.f;
    for (; c < n; c++) s += x[c] + lb[c];
    for (int k = 0; k < LANES; k++) s += acc[k];
    return s / (float)n;
}

/* Variance of x + lb over a row, about its mean (two passes: no cancellation). */
static float row_variance(const float *x, const float *lb, int64_t n, float mean) {
    float acc[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int k = 0; k < LANES; k++) {
            float d = x[c + k] + lb[c + k] - mean;
            acc[k] += d * d;
        }
    float s = 0.f;
    for (; c < n; c++) s += (x[c] + lb[c] - mean) * (x[c] + lb[c] - mean);
    for (int k = 0; k < LANES; k++) s += acc[k];
    return s / (float)n;
}

/* y = mish(w * (x' - mean) * rstd + b) row by row, for x' = x + lb: the preceding linear
 * layer's bias, added here so that its matmul need not first broadcast it into the output.
 * With `xhat` and `rstd` (training), the normalised rows and their 1/std are kept for the
 * backward pass. */
void ln_mish_forward(const float *x, const float *lb, const float *w, const float *b, float *y,
                     float *xhat, float *rstd, int64_t rows, int64_t cols, int64_t group_rows,
                     float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t offset = r / group_rows * cols;
        const float *xr = x + r * cols, *lbr = lb + offset, *wr = w + offset, *br = b + offset;
        float *yr = y + r * cols;
        float mean = row_mean(xr, lbr, cols);
        float inv = 1.0f / sqrtf(row_variance(xr, lbr, cols, mean) + eps);
        if (rstd) rstd[r] = inv;
        float *hr = xhat ? xhat + r * cols : 0;
#pragma omp simd
        for (int64_t c = 0; c < cols; c++) {
            float h = (xr[c] + lbr[c] - mean) * inv;
            if (hr) hr[c] = h;
            float v = h * wr[c] + br[c];
            float u = exp_capped(v);
            float n = u * (u + 2.0f); /* tanh(softplus(v)) = n / (n + 2) */
            yr[c] = v - 2.0f * v / (n + 2.0f);
        }
    }
}

/* One row of ln_mish_backward; `params` is a literal at each call, so the compiler
 * emits two loops, neither with a branch per element. */
static inline void backward_row(const float *gr, const float *hr, float inv, const float *wr,
                                const float *br, float *dxr, float *dwr, float *dbr,
                                float *dlbr, int64_t cols, const int params) {
    float s1 = 0.f, s2 = 0.f;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t c = 0; c < cols; c++) {
        float v = hr[c] * wr[c] + br[c];
        float u = exp_capped(v);
        float n = u * (u + 2.0f);
        float inv_d = 1.0f / (n + 2.0f);
        /* mish' = n/d + 4 v u (u + 1) / d^2, with u (u + 1) = n - u; d = n + 2 */
        float gv = gr[c] * (n * inv_d + 4.0f * v * inv_d * ((n - u) * inv_d));
        if (params) {
            dwr[c] += gv * hr[c];
            dbr[c] += gv;
        }
        float gh = gv * wr[c];
        dxr[c] = gh;
        s1 += gh;
        s2 += gh * hr[c];
    }
    float m1 = s1 / (float)cols, m2 = s2 / (float)cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; c++) {
        dxr[c] = inv * (dxr[c] - m1 - hr[c] * m2);
        if (params) dlbr[c] += dxr[c];
    }
}

/* Gradients of ln_mish_forward: dx [rows, cols] (also that of lb, summed over rows), and
 * with `dparams` (else NULL) those of w, b and lb, each thread adding its rows into its
 * own slices dparams[thread][w, b or lb][group][cols] (the caller sums over threads): no
 * two threads write the same address. */
void ln_mish_backward(const float *grad, const float *xhat, const float *rstd, const float *w,
                      const float *b, float *dx, float *dparams, int64_t rows, int64_t cols,
                      int64_t group_rows, int threads) {
    int64_t size = (rows + group_rows - 1) / group_rows * cols; /* one weight's numel */
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < rows; r++) {
        int64_t offset = r / group_rows * cols;
        const float *gr = grad + r * cols, *hr = xhat + r * cols;
        const float *wr = w + offset, *br = b + offset;
        if (dparams) {
            int thread = 0;
#ifdef _OPENMP
            thread = omp_get_thread_num();
#endif
            float *dwr = dparams + 3 * thread * size + offset;
            backward_row(gr, hr, rstd[r], wr, br, dx + r * cols, dwr, dwr + size,
                         dwr + 2 * size, cols, 1);
        } else {
            backward_row(gr, hr, rstd[r], wr, br, dx + r * cols, 0, 0, 0, cols, 0);
        }
    }
}

int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
