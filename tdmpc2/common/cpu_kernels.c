/* Fused linear bias -> LayerNorm -> Mish or SimNorm for the CPU: one pass per row.
 *
 * ATen runs a hidden layer's bias add, LayerNorm, its affine transform and the activation
 * as separate kernels, each reading and writing the whole activation. Here a row stays in
 * L1 while it is normalised, transformed and activated (and, backwards, while the
 * activation's and LayerNorm's gradients are formed). Built and loaded by
 * cpu_kernels.py; rows are split across PyTorch's own OpenMP threads.
 *
 * Layout: x is [rows, cols], contiguous float32. Rows come in groups of `group_rows`
 * consecutive rows that share one bias, LayerNorm weight and LayerNorm bias row (the Q
 * ensemble: one group per head); a plain layer is a single group. `simplex` selects the
 * activation: 0 for Mish, else SimNorm's softmax over consecutive groups of that many
 * columns.
 */
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define LANES 32 /* independent accumulators: row sums are not one long dependency chain */
#define GRAIN 32768 /* elements below which waking a second thread costs more than it saves */

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
    y = y < -92.0f ? -92.0f : y; /* compares that let NaN through */
    y = y > 57.7f ? 57.7f : y;
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

/* e^v for v <= 0 (a softmax's shifted logits); below 2^-126 it stays at 2^-126, which
 * is 0 next to the group's largest term, 1. */
static inline float exp_nonpositive(float v) {
    float y = v * 1.4426950408889634f;
    return exp2_poly(y < -126.0f ? -126.0f : y);
}

static inline float mish(float v) {
    float u = exp_capped(v);
    float n = u * (u + 2.0f); /* tanh(softplus(v)) = n / (n + 2) */
    return v - 2.0f * v / (n + 2.0f);
}

static inline float mish_slope(float v) {
    float u = exp_capped(v);
    float n = u * (u + 2.0f);
    float inv_d = 1.0f / (n + 2.0f);
    /* mish' = n/d + 4 v u (u + 1) / d^2, with u (u + 1) = n - u; d = n + 2 */
    return n * inv_d + 4.0f * v * inv_d * ((n - u) * inv_d);
}

/* Softmax over each group of `simplex` consecutive entries of a row, in place.
 *
 * The exponentials are shifted by the row's maximum rather than each group's, so that
 * they run vectorised over the whole row (a softmax is the same under any shift). A group
 * far below the row's maximum (sum under 2^-100, where exp's clamp at 2^-126 would show)
 * is redone with its own maximum. */
static void simnorm_row(float *y, int64_t cols, int64_t simplex) {
    float acc[LANES], e[cols];
    for (int k = 0; k < LANES; k++) acc[k] = y[0];
    int64_t c = 0;
    for (; c + LANES <= cols; c += LANES)
        for (int k = 0; k < LANES; k++) acc[k] = y[c + k] > acc[k] ? y[c + k] : acc[k];
    float m = y[0];
    for (; c < cols; c++) m = y[c] > m ? y[c] : m;
    for (int k = 0; k < LANES; k++) m = acc[k] > m ? acc[k] : m;
#pragma omp simd
    for (c = 0; c < cols; c++) e[c] = exp_nonpositive(y[c] - m);
    for (int64_t g = 0; g < cols; g += simplex) {
        float sum = 0.f;
        for (int64_t j = 0; j < simplex; j++) sum += e[g + j];
        if (!(sum >= 0x1p-100f)) { /* also taken for NaN, which the redo propagates */
            float gm = y[g];
            for (int64_t j = 1; j < simplex; j++) gm = y[g + j] > gm ? y[g + j] : gm;
            sum = 0.f;
            for (int64_t j = 0; j < simplex; j++) {
                e[g + j] = exp_nonpositive(y[g + j] - gm);
                sum += e[g + j];
            }
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < simplex; j++) y[g + j] = e[g + j] * inv;
    }
}

/* y = act(w * (x' - mean) / std + b) row by row, for x' = x + lb: the preceding linear
 * layer's bias, added here so that its matmul need not first broadcast it into its output.
 * With `mean_rstd` (training) each row's mean and 1/std are kept for the backward pass. */
void ln_act_forward(const float *x, const float *lb, const float *w, const float *b, float *y,
                    float *mean_rstd, int64_t rows, int64_t cols, int64_t group_rows,
                    int64_t simplex, float eps) {
#pragma omp parallel for schedule(static) if (rows * cols >= GRAIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t offset = r / group_rows * cols;
        const float *xr = x + r * cols, *lbr = lb + offset, *wr = w + offset, *br = b + offset;
        float *yr = y + r * cols;
        float mean = row_mean(xr, lbr, cols);
        float inv = 1.0f / sqrtf(row_variance(xr, lbr, cols, mean) + eps);
        if (mean_rstd) {
            mean_rstd[2 * r] = mean;
            mean_rstd[2 * r + 1] = inv;
        }
        if (simplex) {
#pragma omp simd
            for (int64_t c = 0; c < cols; c++) yr[c] = (xr[c] + lbr[c] - mean) * inv * wr[c] + br[c];
            simnorm_row(yr, cols, simplex);
        } else {
#pragma omp simd
            for (int64_t c = 0; c < cols; c++) yr[c] = mish((xr[c] + lbr[c] - mean) * inv * wr[c] + br[c]);
        }
    }
}

/* dL/dv for one row into dv, from dL/dy: v is the activation's input, y its output. */
static void activation_backward_row(const float *gr, const float *yr, const float *xr,
                                    const float *lbr, const float *wr, const float *br,
                                    float mean, float inv, float *dv, int64_t cols,
                                    int64_t simplex) {
    if (simplex) { /* softmax: dv_j = y_j (g_j - sum_k g_k y_k) within each group */
        for (int64_t g = 0; g < cols; g += simplex) {
            float dot = 0.f;
            for (int64_t j = 0; j < simplex; j++) dot += gr[g + j] * yr[g + j];
            for (int64_t j = 0; j < simplex; j++) dv[g + j] = yr[g + j] * (gr[g + j] - dot);
        }
        return;
    }
#pragma omp simd
    for (int64_t c = 0; c < cols; c++)
        dv[c] = gr[c] * mish_slope((xr[c] + lbr[c] - mean) * inv * wr[c] + br[c]);
}

/* LayerNorm's backward for one row, from dv (in dx) to dx in place; `params` is a literal
 * at each call, so the compiler emits two loops, neither with a branch per element. */
static inline void layer_norm_backward_row(const float *xr, const float *lbr, float mean,
                                           float inv, const float *wr, float *dx, float *dw,
                                           float *db, float *dlb, int64_t cols,
                                           const int params) {
    float s1 = 0.f, s2 = 0.f;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t c = 0; c < cols; c++) {
        float h = (xr[c] + lbr[c] - mean) * inv;
        if (params) {
            dw[c] += dx[c] * h;
            db[c] += dx[c];
        }
        float gh = dx[c] * wr[c];
        s1 += gh;
        s2 += gh * h;
    }
    float m1 = s1 / (float)cols, m2 = s2 / (float)cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; c++) {
        float h = (xr[c] + lbr[c] - mean) * inv;
        dx[c] = inv * (dx[c] * wr[c] - m1 - h * m2);
        if (params) dlb[c] += dx[c];
    }
}

/* Gradients of ln_act_forward: dx [rows, cols] (that of lb is its sum over rows), and with
 * `dparams` (else NULL) those of w, b and lb, each thread adding its rows into its own
 * slices dparams[thread][w, b or lb][group][cols] (the caller sums over threads): no two
 * threads write the same address. `y` (the forward output) is read by SimNorm only. */
void ln_act_backward(const float *grad, const float *y, const float *x, const float *lb,
                     const float *mean_rstd, const float *w, const float *b, float *dx,
                     float *dparams, int64_t rows, int64_t cols, int64_t group_rows,
                     int64_t simplex, int threads) {
    int64_t size = (rows + group_rows - 1) / group_rows * cols; /* one weight's numel */
#pragma omp parallel for schedule(static) num_threads(threads) if (rows * cols >= GRAIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t offset = r / group_rows * cols;
        const float *xr = x + r * cols, *lbr = lb + offset, *wr = w + offset;
        float mean = mean_rstd[2 * r], inv = mean_rstd[2 * r + 1];
        float *dxr = dx + r * cols;
        activation_backward_row(grad + r * cols, y ? y + r * cols : 0, xr, lbr, wr, b + offset,
                                mean, inv, dxr, cols, simplex);
        if (dparams) {
            int thread = 0;
#ifdef _OPENMP
            thread = omp_get_thread_num();
#endif
            float *dw = dparams + 3 * thread * size + offset;
            layer_norm_backward_row(xr, lbr, mean, inv, wr, dxr, dw, dw + size, dw + 2 * size,
                                    cols, 1);
        } else {
            layer_norm_backward_row(xr, lbr, mean, inv, wr, dxr, 0, 0, 0, cols, 0);
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
