/* Depth registration in one fused pass (method="native"): the numpy fast path's float32 arithmetic, operation by
 * operation, followed by the min z-buffer fill of each corner rectangle. Built by native.py with
 * -ffp-contract=off and without -ffast-math, so every float32 operation rounds as numpy's does (tests compare the
 * output with the numpy path and with rs.align); also with -march=native where the compiler takes it (wider loops,
 * the same roundings). Later sections: the IR sampling, the compiled face crops and the frozen-frame thumbnails.
 *
 * p (float32 parameters): 0 scale | 1-3 tu tv tz (folded) | 4-12 R row-major, 13-15 t (exact) |
 *   16 fx 17 cx 18 fy 19 cy (target, float32) | 20 cu = f32(cx + 0.5) 21 cv = f32(cy + 0.5) |
 *   22-26 k1 k2 p1 p2 k3 (target lens)
 * dist: 0 none, 1 align's modified Brown-Conrady, 2 rsutil brown_conrady, 3 rsutil modified/inverse.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 1024
#define LIM 2147483648.0f

/* One loop per model (no branch inside: the loops vectorise). */
static void distort(float *restrict x, float *restrict y, int n, const float *p, int dist) {
    const float k1 = p[22], k2 = p[23], p1 = p[24], p2 = p[25], k3 = p[26], two = 2.0f;
    if (dist == 1) { /* corners._distort_inplace (align's modified Brown-Conrady) */
        for (int i = 0; i < n; i++) {
            float u = x[i], v = y[i];
            float r2 = u * u + v * v;
            float q = r2 * r2;
            float s = (r2 * q) * k3;
            q = q * k2 + s;
            float f = (r2 * k1 + q) + 1.0f;
            float xf = u * f, yf = v * f;
            float dx = ((xf * yf) * p1) * two;
            float sx = ((xf * xf) * two + r2) * p2;
            float dy = ((xf * yf) * p2) * two;
            float sy = ((yf * yf) * two + r2) * p1;
            x[i] = (dx + sx) + xf;
            y[i] = (dy + sy) + yf;
        }
    } else if (dist == 2) { /* corners._distort_f32, rsutil brown_conrady */
        for (int i = 0; i < n; i++) {
            float u = x[i], v = y[i];
            float r2 = u * u + v * v;
            float f = 1.0f + r2 * (k1 + r2 * (k2 + r2 * k3));
            float xy2 = (two * u) * v;
            x[i] = (u * f + p1 * xy2) + p2 * (r2 + (two * u) * u);
            y[i] = (v * f + p2 * xy2) + p1 * (r2 + (two * v) * v);
        }
    } else { /* corners._distort_f32, rsutil modified / inverse */
        for (int i = 0; i < n; i++) {
            float u = x[i], v = y[i];
            float r2 = u * u + v * v;
            float f = 1.0f + r2 * (k1 + r2 * (k2 + r2 * k3));
            float xf = u * f, yf = v * f;
            float xy2 = (two * xf) * yf;
            x[i] = (xf + p1 * xy2) + p2 * (r2 + (two * xf) * xf);
            y[i] = (yf + p2 * xy2) + p1 * (r2 + (two * yf) * yf);
        }
    }
}

/* Corner of n pixels: integer target pixel (iu, iv) and ok = 0 where the pixel is dropped. */
static void corner(const float *d, int n, int folded, const float *a, const float *b, const float *c,
                   const float *p, int dist, int32_t *iu, int32_t *iv, uint8_t *ok) {
    float X[CHUNK], Y[CHUNK], Z[CHUNK];
    if (folded) {
        const float tu = p[1], tv = p[2], tz = p[3];
        for (int i = 0; i < n; i++) {
            float zz = d[i] * c[i] + tz;
            X[i] = (d[i] * a[i] + tu) / zz;
            Y[i] = (d[i] * b[i] + tv) / zz;
            Z[i] = zz;
        }
        if (dist) {
            distort(X, Y, n, p, dist);
            for (int i = 0; i < n; i++) {
                X[i] = X[i] * p[16] + p[20];
                Y[i] = Y[i] * p[18] + p[21];
            }
        }
    } else {
        const float *r = p + 4, *t = p + 13;
        for (int i = 0; i < n; i++) {
            float px = d[i] * a[i], py = d[i] * b[i];
            float o[3];
            for (int k = 0; k < 3; k++) {
                float acc = d[i] * r[3 * k + 2] + t[k];
                o[k] = px * r[3 * k] + (py * r[3 * k + 1] + acc);
            }
            X[i] = o[0] / o[2];
            Y[i] = o[1] / o[2];
            Z[i] = o[2];
        }
        if (dist) distort(X, Y, n, p, dist);
        for (int i = 0; i < n; i++) {
            X[i] = (X[i] * p[16] + p[17]) + 0.5f;
            Y[i] = (Y[i] * p[18] + p[19]) + 0.5f;
        }
    }
    for (int i = 0; i < n; i++) {
        int good = (Z[i] > 0.0f) & (fabsf(X[i]) < LIM) & (fabsf(Y[i]) < LIM); /* NaN compares false */
        ok[i] &= (uint8_t)good;
        iu[i] = (int32_t)(good ? X[i] : 0.0f); /* truncation toward zero */
        iv[i] = (int32_t)(good ? Y[i] : 0.0f);
    }
}

static inline void put(uint16_t *cell, uint16_t z) {
    uint16_t cur = *cell; /* 0 = empty: (cur - 1) wraps to 0xFFFF and loses to any depth */
    *cell = (uint16_t)(cur - 1) > (uint16_t)(z - 1) ? z : cur;
}

/* Register n depth pixels (pixel j = z[index[j]], or z[j] without index) into out (th x tw, zeroed).
 * c0*: corner (-0.5) constants per pixel (folded: au av az; exact: rx ry -); c1*: corner (+0.5), or c1a = NULL
 * for the single-pixel (SSE) footprint. Returns 0. */
int edgepad_register(const uint16_t *z, int64_t n, const int64_t *index, int folded, const float *c0a,
                     const float *c0b, const float *c0c, const float *c1a, const float *c1b, const float *c1c,
                     const float *p, int dist, uint16_t *out, int tw, int th) {
    float d[CHUNK];
    uint16_t zv[CHUNK];
    int32_t x0[CHUNK], y0[CHUNK], x1[CHUNK], y1[CHUNK];
    uint8_t ok[CHUNK];
    const float scale = p[0];
    for (int64_t lo = 0; lo < n; lo += CHUNK) {
        int m = (int)(n - lo < CHUNK ? n - lo : CHUNK);
        for (int i = 0; i < m; i++) {
            uint16_t v = index ? z[index[lo + i]] : z[lo + i];
            zv[i] = v;
            d[i] = (float)v * scale;
            ok[i] = v != 0;
        }
        corner(d, m, folded, c0a + lo, c0b + lo, folded ? c0c + lo : 0, p, dist, x0, y0, ok);
        if (c1a) {
            corner(d, m, folded, c1a + lo, c1b + lo, folded ? c1c + lo : 0, p, dist, x1, y1, ok);
            for (int i = 0; i < m; i++) {
                if (!ok[i]) continue;
                int xa = x0[i] > 0 ? x0[i] : 0, ya = y0[i] > 0 ? y0[i] : 0;
                int xb = x1[i] < tw - 1 ? x1[i] : tw - 1, yb = y1[i] < th - 1 ? y1[i] : th - 1;
                unsigned dx = (unsigned)(xb - xa), dy = (unsigned)(yb - ya);
                if ((dx | dy) <= 1u) { /* 1 or 2 px per side (the common case): four writes, no branches */
                    uint16_t *c = out + (int64_t)ya * tw + xa;
                    put(c, zv[i]);
                    put(c + dx, zv[i]);
                    put(c + dy * tw, zv[i]);
                    put(c + dy * tw + dx, zv[i]);
                    continue;
                }
                for (int y = ya; y <= yb; y++) { /* larger, or empty (xb < xa) */
                    uint16_t *row = out + (int64_t)y * tw;
                    for (int x = xa; x <= xb; x++) put(row + x, zv[i]);
                }
            }
        } else {
            for (int i = 0; i < m; i++) {
                if (ok[i] && (uint32_t)x0[i] < (uint32_t)tw && (uint32_t)y0[i] < (uint32_t)th)
                    put(out + (int64_t)y0[i] * tw + x0[i], zv[i]);
            }
        }
    }
    return 0;
}

/* The pixel-table runs [runs[2r], runs[2r + 1]) one after another, as one edgepad_register call per run (the face
 * window's block of depth rows × columns: one run per row). Returns the first non-zero status, else 0. */
int edgepad_register_runs(const uint16_t *z, const int64_t *runs, int nruns, const int64_t *index, int folded,
                          const float *c0a, const float *c0b, const float *c0c, const float *c1a, const float *c1b,
                          const float *c1c, const float *p, int dist, uint16_t *out, int tw, int th) {
#define AT(a, lo) ((a) ? (a) + (lo) : 0)
    for (int r = 0; r < nruns; r++) {
        const int64_t lo = runs[2 * r], n = runs[2 * r + 1] - lo;
        if (n <= 0) continue;
        int st = edgepad_register(index ? z : z + lo, n, AT(index, lo), folded, AT(c0a, lo), AT(c0b, lo),
                                  AT(c0c, lo), AT(c1a, lo), AT(c1b, lo), AT(c1c, lo), p, dist, out, tw, th);
        if (st) return st;
    }
#undef AT
    return 0;
}

/* ---------------------------------------------------------------------------------------------- IR crop sampling
 * edgepad_bilinear_box_u8 (native.IrSampler, passed to preprocess.crop_face by the runtime): the IR crop's
 * edgepad.preprocess._bilinear with float32 coordinates, then _box_mean_u8, operation by operation (tests compare
 * them). img uint8 h×w; mx, my float32 n×n pixel coordinates; out uint8 (n/k)×(n/k). Per sample:
 * a non-finite mx or my samples at (-10, -10); xf = floor(x) clipped to [-2, w] (yf to [-2, h]); neighbours outside
 * the image are 0; v00·(gx·gy) + v10·(fx·gy) + v01·(gx·fy) + v11·(fx·fy), every product and sum rounded to
 * float32 in that order. Per output pixel: the k×k samples summed row by row in float32, times f32(1/k²) when
 * k > 1, rounded half to even, clipped to [0, 255]. */

/* One row of n samples: coordinates -> padded-image offsets and weights (a vectorised loop), then four gathers and
 * the float32 sum. pad: the image with a 2-px zero border ((h + 4) × (w + 4)), so every neighbour of a clipped index
 * reads a pixel or the border, as numpy's padded gather. floor(x) is clipped to [-2, w]; for x outside, both x
 * neighbours read the border (0), so the fraction of the clipped x gives the same (zero) products as numpy's. */
static void sample_row(const uint8_t *restrict pad, int h, int w, const float *restrict mx,
                       const float *restrict my, int n, int32_t *restrict at, float *restrict w00,
                       float *restrict w10, float *restrict w01, float *restrict w11, float *restrict o) {
    const int pw = w + 4;
    const float fw = (float)w, fh = (float)h;
    for (int j = 0; j < n; j++) {
        float x = mx[j], y = my[j];
        const int ok = (fabsf(x) <= FLT_MAX) & (fabsf(y) <= FLT_MAX);   /* both finite (NaN compares false) */
        x = ok ? x : -10.0f;
        y = ok ? y : -10.0f;
        x = x < -2.0f ? -2.0f : x;
        x = x > fw ? fw : x;
        y = y < -2.0f ? -2.0f : y;
        y = y > fh ? fh : y;
        int xi = (int)x, yi = (int)y;              /* truncation toward zero, then down for negative non-integers */
        xi -= (float)xi > x;
        yi -= (float)yi > y;
        const float fx = x - (float)xi, fy = y - (float)yi;
        const float gx = 1.0f - fx, gy = 1.0f - fy;
        w00[j] = gx * gy; w10[j] = fx * gy; w01[j] = gx * fy; w11[j] = fx * fy;
        at[j] = (yi + 2) * pw + (xi + 2);
    }
    for (int j = 0; j < n; j++) {
        const uint8_t *p = pad + at[j];
        float o0 = (float)p[0] * w00[j];
        o0 = o0 + (float)p[1] * w10[j];
        o0 = o0 + (float)p[pw] * w01[j];
        o[j] = o0 + (float)p[pw + 1] * w11[j];
    }
}

/* The 2-px zero-bordered copy of a uint8 h×w image ((h + 4) × (w + 4)) that sample_row gathers from. */
static void pad_u8(const uint8_t *img, int h, int w, uint8_t *pad) {
    const int pw = w + 4;
    memset(pad, 0, (size_t)(h + 4) * pw);
    for (int y = 0; y < h; y++) memcpy(pad + (int64_t)(y + 2) * pw + 2, img + (int64_t)y * w, (size_t)w);
}

/* One output row of n / k pixels from k rows of n samples (rows[dy * n + x]): each k×k block summed row by row in
 * float32, times f32(1/k²) when k > 1, rounded half to even, clipped to [0, 255] (preprocess._box_mean_u8). */
static void box_mean_row(const float *rows, int n, int k, uint8_t *out) {
    const int s = n / k;
    const float scale = (float)(1.0 / (double)(k * k));
    for (int j = 0; j < s; j++) {
        float acc = 0.0f;
        for (int dy = 0; dy < k; dy++)
            for (int dx = 0; dx < k; dx++) {
                const float v = rows[(int64_t)dy * n + j * k + dx];
                acc = (dy | dx) ? acc + v : v;
            }
        if (k > 1) acc = acc * scale;
        acc = rintf(acc);
        acc = acc < 0.0f ? 0.0f : (acc > 255.0f ? 255.0f : acc);
        out[j] = (uint8_t)acc;
    }
}

/* scratch: float32, 6 + k rows of n (offsets, 4 weights, spare, k sample rows); pad: uint8 (h + 4) × (w + 4). */
void edgepad_bilinear_box_u8(const uint8_t *img, int h, int w, const float *mx, const float *my, int n, int k,
                             uint8_t *out, float *scratch, uint8_t *pad) {
    const int s = n / k;
    pad_u8(img, h, w, pad);
    int32_t *at = (int32_t *)scratch;
    float *w00 = scratch + n, *w10 = scratch + 2 * n, *w01 = scratch + 3 * n, *w11 = scratch + 4 * n;
    float *rows = scratch + 6 * n;
    for (int i = 0; i < s; i++) {
        for (int dy = 0; dy < k; dy++) {
            const int64_t r = (int64_t)(i * k + dy) * n;
            sample_row(pad, h, w, mx + r, my + r, n, at, w00, w10, w01, w11, rows + (int64_t)dy * n);
        }
        box_mean_row(rows, n, k, out + (int64_t)i * s);
    }
}

/* ---------------------------------------------------------------------------------- compiled crops (session 7)
 * The crops of preprocess.crop_face that the runtime runs compiled (native.CropSampler, passed as crop_face's
 * ``sample``). preprocess.py stays the numpy reference; these differ from it only in the order of float
 * operations noted per function, so a crop value can move by one grey level at a rounding tie (tests bound it).
 *
 * edgepad_lattice_box_u8: the IR crop straight from the grid×grid lattice of preprocess._projected_lattice (lat:
 * float64 (grid, grid, 2) dst-pixel x, y). Sub-sample (i, j) of the n×n map is, in float64,
 *   row pass     T[q] = (1 − fr[i])·lat[g0[i]][q] + fr[i]·lat[g0[i] + 1][q]      (q = 0 .. grid − 1)
 *   column pass  m    = (1 − fr[j])·T[g0[j]]    + fr[j]·T[g0[j] + 1]
 * rounded to float32; numpy forms the same map as two BLAS products (up @ lat @ up.T), whose sums and fused
 * multiply-adds can round the last float64 bit otherwise. Each row of n coordinates is sampled as it is made
 * (sample_row) and every k rows are box-averaged (box_mean_row): no n×n maps. The lattice must be finite (the
 * caller checks: numpy's products spread a NaN over the whole map).
 * scratch: float32, 7 + k rows of n (offsets, 4 weights, x and y coordinates, k sample rows); pad as above. */
void edgepad_lattice_box_u8(const uint8_t *img, int h, int w, const double *lat, int grid, const int32_t *g0,
                            const double *fr, int n, int k, uint8_t *out, float *scratch, uint8_t *pad) {
    const int s = n / k;
    pad_u8(img, h, w, pad);
    int32_t *at = (int32_t *)scratch;
    float *w00 = scratch + n, *w10 = scratch + 2 * n, *w01 = scratch + 3 * n, *w11 = scratch + 4 * n;
    float *mx = scratch + 5 * n, *my = scratch + 6 * n, *rows = scratch + 7 * n;
    double tx[grid], ty[grid];
    for (int i = 0; i < s; i++) {
        for (int dy = 0; dy < k; dy++) {
            const int r = i * k + dy;
            const double f = fr[r], g = 1.0 - f;
            const double *p0 = lat + (int64_t)g0[r] * grid * 2, *p1 = p0 + (int64_t)grid * 2;
            for (int q = 0; q < grid; q++) { /* row pass: the lattice rows g0[r], g0[r] + 1 */
                tx[q] = g * p0[2 * q] + f * p1[2 * q];
                ty[q] = g * p0[2 * q + 1] + f * p1[2 * q + 1];
            }
            for (int j = 0; j < n; j++) { /* column pass, then float32 as numpy's astype */
                const int b = g0[j];
                const double fj = fr[j], gj = 1.0 - fj;
                mx[j] = (float)(gj * tx[b] + fj * tx[b + 1]);
                my[j] = (float)(gj * ty[b] + fj * ty[b + 1]);
            }
            sample_row(pad, h, w, mx, my, n, at, w00, w10, w01, w11, rows + (int64_t)dy * n);
        }
        box_mean_row(rows, n, k, out + (int64_t)i * s);
    }
}

/* geometry.undistort's 10 fixed-point iterations on n normalised points, in place (x0, y0: the distorted points).
 * The loop runs over the points inside each iteration, so independent points overlap (and vectorise) instead of
 * waiting on one point's chain of divisions. inverse: inverse_brown_conrady (tangential terms on the radially
 * distorted point), else OpenCV's brown_conrady. */
static void undistort_points(const double *restrict x0, const double *restrict y0, double *restrict x,
                             double *restrict y, int n, const double *k, int inverse) {
    const double k1 = k[0], k2 = k[1], p1 = k[2], p2 = k[3], k3 = k[4];
    for (int it = 0; it < 10; it++) {
        for (int i = 0; i < n; i++) {
            const double r2 = x[i] * x[i] + y[i] * y[i];
            const double icdist = 1.0 / (1.0 + ((k3 * r2 + k2) * r2 + k1) * r2);
            const double xq = inverse ? x[i] / icdist : x[i], yq = inverse ? y[i] / icdist : y[i];
            const double dx = 2.0 * p1 * xq * yq + p2 * (r2 + 2.0 * xq * xq);
            const double dy = 2.0 * p2 * xq * yq + p1 * (r2 + 2.0 * yq * yq);
            x[i] = (x0[i] - dx) * icdist;
            y[i] = (y0[i] - dy) * icdist;
        }
    }
}

/* edgepad_reproject: geometry.reproject for the projection lattice of preprocess._projected_lattice — n src pixels
 * (uv: float64 n × 2, x then y) lifted onto the plane z_src = depth (m), moved into the dst camera and projected
 * there → out: float64 n × 2 dst pixels, NaN where the point is not in front of dst (z ≤ 0, as numpy's project).
 * Every float64 operation is geometry's, in geometry's order (deproject: (u − cx) / fx, undistort's 10 fixed-point
 * iterations; project: x / z, distort, x·fx + cx), so these parts round as numpy's. The one exception is
 * Extrinsics.apply: numpy's matrix product p @ Rᵀ may sum in another order or fuse multiply-adds (BLAS); here
 * ((X·r0 + Y·r1) + Z·r2) + t, which moves a pixel by at most a few ulps (tests bound it).
 * p (float64): 0-3 src fx fy cx cy | 4-8 src k1 k2 p1 p2 k3 | 9-17 R row-major | 18-20 t (m) |
 *   21-24 dst fx fy cx cy | 25-29 dst k1 k2 p1 p2 k3.
 * undist (src lens, geometry.undistort): 0 none, 1 brown_conrady (OpenCV), 2 inverse_brown_conrady.
 * dist (dst lens, geometry.distort): 0 none, 1 brown_conrady (OpenCV), 2 modified/inverse (RealSense's form).
 * The caller passes 0 where geometry skips the model (no coefficient set). */
void edgepad_reproject(const double *uv, int64_t n, double depth, const double *p, int undist, int dist,
                       double *out) {
    enum { BLOCK = 64 };
    const double sfx = p[0], sfy = p[1], scx = p[2], scy = p[3];
    const double *r = p + 9, *t = p + 18;
    const double dfx = p[21], dfy = p[22], dcx = p[23], dcy = p[24];
    const double k1 = p[25], k2 = p[26], p1 = p[27], p2 = p[28], k3 = p[29];
    double x0[BLOCK], y0[BLOCK], x[BLOCK], y[BLOCK];
    for (int64_t b = 0; b < n; b += BLOCK) {
        const int m = n - b < BLOCK ? (int)(n - b) : BLOCK;
        const double *src = uv + 2 * b;
        double *dst = out + 2 * b;
        for (int i = 0; i < m; i++) { /* deproject: normalised src coordinates */
            x0[i] = x[i] = (src[2 * i] - scx) / sfx;
            y0[i] = y[i] = (src[2 * i + 1] - scy) / sfy;
        }
        if (undist == 1)
            undistort_points(x0, y0, x, y, m, p + 4, 0);
        else if (undist == 2)
            undistort_points(x0, y0, x, y, m, p + 4, 1);
        for (int i = 0; i < m; i++) {
            /* the src point (x·z, y·z, z), then p_dst = R p_src + t */
            const double sx = x[i] * depth, sy = y[i] * depth, sz = depth;
            const double px = sx * r[0] + sy * r[1] + sz * r[2] + t[0];
            const double py = sx * r[3] + sy * r[4] + sz * r[5] + t[1];
            const double pz = sx * r[6] + sy * r[7] + sz * r[8] + t[2];
            /* project: behind dst (or z NaN) → NaN, carried through the distortion as numpy's */
            double u = pz > 0 ? px / pz : NAN, v = pz > 0 ? py / pz : NAN;
            if (dist) {
                const double r2 = u * u + v * v;
                const double f = 1.0 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2;
                if (dist == 2) { /* RealSense's modified form: tangential terms on the radially distorted point */
                    const double a = u * f, c = v * f;
                    u = a + 2.0 * p1 * a * c + p2 * (r2 + 2.0 * a * a);
                    v = c + 2.0 * p2 * a * c + p1 * (r2 + 2.0 * c * c);
                } else { /* OpenCV: tangential terms on the undistorted point */
                    const double a = u * f + 2.0 * p1 * u * v + p2 * (r2 + 2.0 * u * u);
                    v = v * f + 2.0 * p2 * u * v + p1 * (r2 + 2.0 * v * v);
                    u = a;
                }
            }
            dst[2 * i] = u * dfx + dcx;
            dst[2 * i + 1] = v * dfy + dcy;
        }
    }
}

/* Taps of one axis of preprocess._resample_matrix: s outputs, each the mean of k sub-samples at
 * pos = start + (i + 0.5)·step (float64, i = 0 .. s·k − 1), sub-sample weights f32(1 − f) on floor(pos) and f32(f)
 * on floor(pos) + 1, indices outside [0, n_src) dropped; a source index's weight is the float32 sum over the
 * sub-samples in order, divided by k in float32 (numpy's mean): the same weights as the numpy matrix. Output r
 * reads source indices lo[r] .. lo[r] + cnt[r] − 1 (cnt 0: none) with weights wt[r·span ...]. */
static int64_t floor_i64(double v) { /* floor, clamped to ±2^62 (a window far off the image: no overflow) */
    const double lim = 4611686018427387904.0;
    v = floor(v);
    return (int64_t)(v < -lim ? -lim : (v > lim ? lim : v));
}

static void axis_taps(double start, double step, int s, int k, int n_src, int span, int32_t *lo, int32_t *cnt,
                      float *wt) {
    for (int r = 0; r < s; r++) {
        float *o = wt + (int64_t)r * span;
        const double pa = start + ((double)(r * k) + 0.5) * step;
        const double pb = start + ((double)(r * k + k - 1) + 0.5) * step;
        const int64_t first = floor_i64(pa), last = floor_i64(pb) + 1;
        const int64_t a = first > 0 ? first : 0, b = last < n_src - 1 ? last : n_src - 1;
        lo[r] = (int32_t)a;
        cnt[r] = b >= a ? (int32_t)(b - a + 1) : 0;
        for (int t = 0; t < span; t++) o[t] = 0.0f;
        for (int j = 0; j < k; j++) {
            const double p = start + ((double)(r * k + j) + 0.5) * step;
            const double fl = floor(p), f = p - fl;
            const int64_t i0 = floor_i64(p);
            if (i0 >= a && i0 <= b) o[i0 - a] = o[i0 - a] + (float)(1.0 - f);
            if (i0 + 1 >= a && i0 + 1 <= b) o[i0 + 1 - a] = o[i0 + 1 - a] + (float)f;
        }
        if (k > 1)
            for (int t = 0; t < span; t++) o[t] = o[t] / (float)k;
    }
}

/* A float32 sum rounded half to even and clipped to a uint8 level. */
static inline uint8_t to_u8(float v) {
    v = rintf(v);
    return (uint8_t)(v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v));
}

/* edgepad_resample_u8: the axis-aligned rgb crop (preprocess._resample_matrix + _resample_separable): uint8 h×w×c
 * (row-major, channels last) → uint8 s×s×c, window (x0, y0, side) in continuous pixels, k sub-samples per output
 * pixel and axis, 0 outside the image. Per output row: the vertical taps summed in float32 source row by source row
 * into one row of columns × channels, then the horizontal taps summed column by column, rounded half to even and
 * clipped to [0, 255]. numpy multiplies the full matrices with sgemm (another summation order, fused multiply-adds
 * where the CPU has them, zero weights included). Returns 0, or −1 when out of memory. */
int edgepad_resample_u8(const uint8_t *img, int h, int w, int c, double x0, double y0, double side, int s, int k,
                        uint8_t *out) {
    const double step = side / (double)(s * k);
    /* > the source indices one output can reach (never more than the image has) */
    const double reach = ceil((k - 1) * step) + 4.0, most = (double)(h > w ? h : w) + 4.0;
    const int span = (int)(reach < most ? reach : most);
    int32_t *ylo = malloc(sizeof(int32_t) * 4 * (size_t)s);
    float *yw = malloc(sizeof(float) * (2 * (size_t)s * span + (size_t)w * c));
    if (!ylo || !yw) {
        free(ylo);
        free(yw);
        return -1;
    }
    int32_t *ycnt = ylo + s, *xlo = ylo + 2 * s, *xcnt = ylo + 3 * s;
    float *xw = yw + (int64_t)s * span, *row = xw + (int64_t)s * span;
    axis_taps(y0, step, s, k, h, span, ylo, ycnt, yw);
    axis_taps(x0, step, s, k, w, span, xlo, xcnt, xw);
    int c0 = w, c1 = 0; /* the source columns any output column reads */
    for (int j = 0; j < s; j++)
        if (xcnt[j]) {
            c0 = xlo[j] < c0 ? xlo[j] : c0;
            c1 = xlo[j] + xcnt[j] > c1 ? xlo[j] + xcnt[j] : c1;
        }
    const int64_t a = (int64_t)c0 * c, b = (int64_t)c1 * c;
    for (int r = 0; r < s; r++) {
        uint8_t *o = out + (int64_t)r * s * c;
        if (!ycnt[r] || c1 <= c0) {
            memset(o, 0, (size_t)s * c);
            continue;
        }
        const float *wy = yw + (int64_t)r * span;
        for (int t = 0; t < ycnt[r]; t++) { /* vertical: row[x·c + ch] = Σ_y wy·img[y, x, ch] */
            const uint8_t *src = img + (int64_t)(ylo[r] + t) * w * c;
            const float wt = wy[t];
            if (t == 0)
                for (int64_t i = a; i < b; i++) row[i] = (float)src[i] * wt;
            else
                for (int64_t i = a; i < b; i++) row[i] = row[i] + (float)src[i] * wt;
        }
        for (int j = 0; j < s; j++) { /* horizontal: Σ_x wx·row[x, ch], x ascending */
            const float *wx = xw + (int64_t)j * span, *src = row + (int64_t)xlo[j] * c;
            if (c == 3) { /* rgb: the three channels' sums side by side (the same order per channel) */
                float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
                for (int t = 0; t < xcnt[j]; t++, src += 3) {
                    a0 = a0 + src[0] * wx[t];
                    a1 = a1 + src[1] * wx[t];
                    a2 = a2 + src[2] * wx[t];
                }
                o[3 * j] = to_u8(a0);
                o[3 * j + 1] = to_u8(a1);
                o[3 * j + 2] = to_u8(a2);
                continue;
            }
            for (int ch = 0; ch < c; ch++) {
                float acc = 0.0f;
                for (int t = 0; t < xcnt[j]; t++) acc = acc + src[(int64_t)t * c + ch] * wx[t];
                o[(int64_t)j * c + ch] = to_u8(acc);
            }
        }
    }
    free(ylo);
    free(yw);
    return 0;
}

/* ---- Frozen-frame thumbnails (edgepad.runtime.sensors.thumbnail) ------------------------------------------------
 * Block sums of an 8- or 16-bit image, h × w × c (c = 1 for a grey image), blocks of s × s px: hb = h / s block
 * rows, wb = w / s block columns; the rows / columns that do not fill a block go to the last block row / column,
 * except the bottom-right corner (rows >= hb·s and columns >= wb·s), which is left out. Integer sums, so any order
 * gives numpy's _block_sums exactly. acc: uint32 scratch of w·c. out: uint32 hb × wb × c. Returns 1 when all out
 * values are equal (a constant thumbnail), else 0. */
int edgepad_block_sums(const void *img, int bytes, int h, int w, int c, int s, uint32_t *out, uint32_t *acc) {
    const int hb = h / s, wb = w / s;
    const int64_t row = (int64_t)w * c;
    /* 8-bit column sums in uint16 while a block row (at most 2s - 1 rows) cannot overflow it: twice the lanes */
    const int narrow = bytes == 1 && (2 * s - 1) * 255 <= 65535;
    uint16_t *acc16 = (uint16_t *)acc;
    for (int by = 0; by < hb; by++) {
        const int y0 = by * s, y1 = by == hb - 1 ? h : y0 + s;
        memset(acc, 0, (size_t)row * sizeof(uint32_t));
        for (int y = y0; y < y1; y++) {                  /* column sums of the block row: contiguous, vectorised */
            const int64_t n = y >= hb * s ? (int64_t)wb * s * c : row;   /* a remainder row: the corner stays out */
            if (narrow) {
                const uint8_t *p = (const uint8_t *)img + (int64_t)y * row;
                for (int64_t i = 0; i < n; i++) acc16[i] += p[i];
            } else if (bytes == 1) {
                const uint8_t *p = (const uint8_t *)img + (int64_t)y * row;
                for (int64_t i = 0; i < n; i++) acc[i] += p[i];
            } else {
                const uint16_t *p = (const uint16_t *)img + (int64_t)y * row;
                for (int64_t i = 0; i < n; i++) acc[i] += p[i];
            }
        }
        uint32_t *o = out + (int64_t)by * wb * c;
        for (int bx = 0; bx < wb; bx++) {
            const int x0 = bx * s, x1 = bx == wb - 1 ? w : x0 + s;
            for (int ch = 0; ch < c; ch++) {
                uint32_t t = 0;
                if (narrow)
                    for (int x = x0; x < x1; x++) t += acc16[(int64_t)x * c + ch];
                else
                    for (int x = x0; x < x1; x++) t += acc[(int64_t)x * c + ch];
                o[(int64_t)bx * c + ch] = t;
            }
        }
    }
    const int64_t n = (int64_t)hb * wb * c;
    for (int64_t i = 1; i < n; i++)
        if (out[i] != out[0]) return 0;
    return 1;
}

/* The fewest differing values between key (n; the thumbnail's block sums, low 16 bits) and any of the m kept keys
 * ring (m × n, row-major); n + 1 when m = 0. */
int64_t edgepad_fewest_changed(const uint16_t *key, const uint16_t *ring, int m, int64_t n) {
    int64_t best = n + 1;
    for (int j = 0; j < m; j++) {
        const uint16_t *r = ring + (int64_t)j * n;
        int64_t d = 0;
        for (int64_t i0 = 0; i0 < n; i0 += 65535) {     /* counted in uint16 lanes (2× the int64 count's speed) */
            const int64_t i1 = i0 + 65535 < n ? i0 + 65535 : n;
            uint16_t c = 0;
            for (int64_t i = i0; i < i1; i++) c += (uint16_t)(key[i] != r[i]);
            d += c;
        }
        if (d < best) best = d;
    }
    return best;
}

/* ---- Area resize (edgepad.runtime.detector.crop_batch: the MTCNN crops) ---------------------------------------------
 * uint8 h × w × c (rows `stride` bytes apart, c = 1..4) → uint8 dh × dw × c (contiguous), equal value for value to
 * OpenCV's cv2.resize(..., interpolation=INTER_AREA) where that downscales by a non-integer factor (its weighted
 * "area" path; the integer-factor block means and the non-downscaling cases are OpenCV's other paths: return 1,
 * the caller resizes with cv2). OpenCV's arithmetic (read in its resize.cpp, not copied), operation by operation:
 *  - per axis, in float64: scale = 1 / (dst / src); destination cell d covers [d·scale, d·scale + scale), of width
 *    min(scale, src − d·scale); it takes the partly covered source pixel before ceil(start) (if covered by more than
 *    1e-3), the whole pixels up to floor(end) (clamped to src − 1), then the partly covered pixel at floor(end) (if
 *    more than 1e-3, at most 1 and at most the width); each weight = covered length / width, rounded to float32;
 *  - per source row, in float32, each destination column's taps in source order: acc = acc + v·weight (no FMA:
 *    the file is built with -ffp-contract=off);
 *  - per destination row, its source rows in order: sum = beta·row, then sum = sum + beta·row;
 *  - rounded half to even, clipped to [0, 255].
 * A source row is weighted horizontally once (eight rows at a time, side by side in vector lanes: independent
 * float chains) even when it falls into two destination rows (OpenCV redoes it; the same values). Returns 0, 1 (not
 * an area downscale with a non-integer factor: nothing written), -1 (out of memory) or -2 (bad arguments).
 * tests/drivers/test_area_resize.py compares the output with cv2.resize value for value. */
#define AREA_ROWS 8
#if defined(__GNUC__)
#define AREA_VEC 1 /* GCC / clang vector types */
#if defined(__AVX__)
#define AREA_VW 8
#else
#define AREA_VW 4 /* SSE2, NEON */
#endif
#endif

static int area_axis(int n_src, int n_dst, double scale, int32_t *src, float *wt, int32_t *first) {
    int k = 0;
    for (int d = 0; d < n_dst; d++) {
        const double lo = d * scale, hi = lo + scale, room = n_src - lo;
        const double cell = room < scale ? room : scale;
        int a = (int)ceil(lo), b = (int)floor(hi);
        if (b > n_src - 1) b = n_src - 1;
        if (a > b) a = b;
        first[d] = k;
        if (a - lo > 1e-3) {
            src[k] = a - 1;
            wt[k++] = (float)((a - lo) / cell);
        }
        for (int s = a; s < b; s++) {
            src[k] = s;
            wt[k++] = (float)(1.0 / cell);
        }
        if (hi - b > 1e-3) {
            double part = hi - b;
            part = 1.0 < part ? 1.0 : part;
            part = cell < part ? cell : part;
            src[k] = b;
            wt[k++] = (float)(part / cell);
        }
    }
    first[n_dst] = k;
    return k;
}

/* The horizontal pass of source rows r0 .. r0 + AREA_ROWS − 1 (rows past the image repeat the last one, unused):
 * hb[r][d·c + ch] = Σ_k v·weight over column d's taps, in tap order. The rows are interleaved first (q[(x·c + ch)·
 * AREA_ROWS + r], bytes) and converted to float32 (rowf, same layout), so that one tap is one multiply-add of
 * c·AREA_ROWS contiguous lanes: each lane is one row's chain, rounded as a scalar one. */
static inline void area_rows(const uint8_t *img, int64_t stride, int h, int w, const int c, int r0,
                             const int32_t *restrict xs, const float *restrict xw, const int32_t *restrict xf,
                             int dw, uint8_t *restrict q, float *restrict rowf, float *restrict hb) {
    const int64_t wc = (int64_t)w * c, dwc = (int64_t)dw * c;
    const uint8_t *p[AREA_ROWS];
    for (int r = 0; r < AREA_ROWS; r++) p[r] = img + (int64_t)(r0 + r < h ? r0 + r : h - 1) * stride;
    for (int64_t i = 0; i < wc; i++)
        for (int r = 0; r < AREA_ROWS; r++) q[i * AREA_ROWS + r] = p[r][i];
    for (int64_t i = 0; i < AREA_ROWS * wc; i++) rowf[i] = (float)q[i];
    for (int d = 0; d < dw; d++) {
        float acc[4 * AREA_ROWS];
#ifdef AREA_VEC
        /* GCC / clang vector types, AREA_VW lanes (rows) each: one multiply and one add per tap and lane as below
         * (the loop vectorisers turn the plain loop into gathers) */
        typedef float vf __attribute__((vector_size(4 * AREA_VW)));
        vf a[4 * AREA_ROWS / AREA_VW];
        const int nv = c * AREA_ROWS / AREA_VW;
        for (int j = 0; j < nv; j++) a[j] = (vf){0.0f};
        for (int k = xf[d]; k < xf[d + 1]; k++) {
            const float wt = xw[k];
            vf wv;
            for (int l = 0; l < AREA_VW; l++) wv[l] = wt;
            const float *v = rowf + (int64_t)xs[k] * c * AREA_ROWS;
            for (int j = 0; j < nv; j++) {
                vf x;
                memcpy(&x, v + AREA_VW * j, sizeof x);
                a[j] = a[j] + x * wv;
            }
        }
        memcpy(acc, a, sizeof(float) * c * AREA_ROWS);
#else
        for (int i = 0; i < c * AREA_ROWS; i++) acc[i] = 0.0f;
        for (int k = xf[d]; k < xf[d + 1]; k++) {
            const float wt = xw[k];
            const float *v = rowf + (int64_t)xs[k] * c * AREA_ROWS;
            for (int i = 0; i < c * AREA_ROWS; i++) acc[i] = acc[i] + v[i] * wt;
        }
#endif
        for (int ch = 0; ch < c; ch++)
            for (int r = 0; r < AREA_ROWS; r++) hb[r * dwc + (int64_t)d * c + ch] = acc[ch * AREA_ROWS + r];
    }
}

/* area_rows for rgb and grey images, compiled with c fixed (whole-vector lanes) */
static void area_rows3(const uint8_t *img, int64_t stride, int h, int w, int r0, const int32_t *xs, const float *xw,
                       const int32_t *xf, int dw, uint8_t *q, float *rowf, float *hb) {
    area_rows(img, stride, h, w, 3, r0, xs, xw, xf, dw, q, rowf, hb);
}

static void area_rows1(const uint8_t *img, int64_t stride, int h, int w, int r0, const int32_t *xs, const float *xw,
                       const int32_t *xf, int dw, uint8_t *q, float *rowf, float *hb) {
    area_rows(img, stride, h, w, 1, r0, xs, xw, xf, dw, q, rowf, hb);
}

int edgepad_area_u8(const uint8_t *img, int64_t stride, int h, int w, int c, int dw, int dh, uint8_t *out) {
    if (h < 1 || w < 1 || c < 1 || c > 4 || dw < 1 || dh < 1 || stride < (int64_t)w * c) return -2;
    const double fx = (double)dw / w, fy = (double)dh / h;
    const double sx = 1.0 / fx, sy = 1.0 / fy;
    if ((dw == w && dh == h) || !(sx >= 1.0 && sy >= 1.0)) return 1;          /* a copy, or linear */
    if (fabs(sx - rint(sx)) < DBL_EPSILON && fabs(sy - rint(sy)) < DBL_EPSILON) return 1;  /* block means */
    const int64_t wc = (int64_t)w * c, dwc = (int64_t)dw * c;
    int32_t *xs = malloc(sizeof(int32_t) * (2 * (size_t)w + 2 * (size_t)h + dw + dh + 2));
    float *xw = malloc(sizeof(float) * (2 * (size_t)w + 2 * (size_t)h + AREA_ROWS * (wc + dwc) + dwc));
    uint8_t *q = malloc((size_t)(AREA_ROWS * wc));
    if (!xs || !xw || !q) {
        free(xs);
        free(xw);
        free(q);
        return -1;
    }
    int32_t *ys = xs + 2 * w, *xf = ys + 2 * h, *yf = xf + dw + 1;
    float *yw = xw + 2 * w, *rowf = yw + 2 * h, *hb = rowf + AREA_ROWS * wc, *sum = hb + AREA_ROWS * dwc;
    area_axis(w, dw, sx, xs, xw, xf);
    area_axis(h, dh, sy, ys, yw, yf);
    int blk = -AREA_ROWS - 1; /* first source row of the rows in hb */
    for (int dy = 0; dy < dh; dy++) {
        for (int j = yf[dy]; j < yf[dy + 1]; j++) {
            const int s = ys[j];
            const float beta = yw[j];
            if (s < blk || s >= blk + AREA_ROWS) {
                blk = s;
                if (c == 3)
                    area_rows3(img, stride, h, w, blk, xs, xw, xf, dw, q, rowf, hb);
                else if (c == 1)
                    area_rows1(img, stride, h, w, blk, xs, xw, xf, dw, q, rowf, hb);
                else
                    area_rows(img, stride, h, w, c, blk, xs, xw, xf, dw, q, rowf, hb);
            }
            const float *row = hb + (int64_t)(s - blk) * dwc;
            if (j == yf[dy])
                for (int64_t i = 0; i < dwc; i++) sum[i] = beta * row[i];
            else
                for (int64_t i = 0; i < dwc; i++) sum[i] = sum[i] + beta * row[i];
        }
        uint8_t *o = out + (int64_t)dy * dwc;
        if (yf[dy] == yf[dy + 1])
            memset(o, 0, (size_t)dwc);
        else
            for (int64_t i = 0; i < dwc; i++) o[i] = to_u8(sum[i]);
    }
    free(xs);
    free(xw);
    free(q);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Model inputs (edgepad.preprocess.normalise, the runtime's compiled drop-in): one pass per crop doing numpy's
 * float32 steps in numpy's order, each rounded as numpy rounds it (this file is built without contraction), so the
 * results are equal bit for bit.
 *
 * 8-bit image (rgb H×W×C interleaved, IR H×W): x = (float)v; [x = x·gain]; x = x − lo; x = x / span;
 * x = min(max(x, 0), 1); out[c] = (x − mean[c]) / std[c], written channel-planar (C, N).
 * Depth (uint16): x = (float)v · scale; [x = x − ref]; x = x − lo; x = x / span; clip to [0, 1];
 * (x − mean) / std; hole (v == 0) → hole value.
 * ------------------------------------------------------------------------------------------------------------- */
static inline float edgepad_clip01(float x) {
    x = x > 0.0f ? x : 0.0f;  /* numpy's maximum(x, 0): 0 for x <= 0 (x is never NaN here) */
    return x < 1.0f ? x : 1.0f;
}

void edgepad_inputs_u8(const uint8_t *img, int64_t n, int c, int use_gain, float gain, float lo, float span,
                       const float *mean, const float *std, float *out) {
    for (int ch = 0; ch < c; ch++) {
        const float m = mean[ch], s = std[ch];
        float *o = out + (int64_t)ch * n;
        const uint8_t *p = img + ch;
        if (use_gain) {
            for (int64_t i = 0; i < n; i++) {
                float x = (float)p[i * c] * gain;
                x = edgepad_clip01((x - lo) / span);
                o[i] = (x - m) / s;
            }
        } else {
            for (int64_t i = 0; i < n; i++) {
                float x = edgepad_clip01(((float)p[i * c] - lo) / span);
                o[i] = (x - m) / s;
            }
        }
    }
}

void edgepad_inputs_depth(const uint16_t *d, int64_t n, float scale, int use_ref, float ref, float lo, float span,
                          float mean, float std, float hole, float *out) {
    for (int64_t i = 0; i < n; i++) {
        float x = (float)d[i] * scale;
        if (use_ref)
            x = x - ref;
        x = edgepad_clip01((x - lo) / span);
        out[i] = d[i] ? (x - mean) / std : hole;
    }
}
