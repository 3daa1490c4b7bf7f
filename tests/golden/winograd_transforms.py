#!/usr/bin/env python3
"""Winograd's F(4 x 4, R x R) transforms for the GPU's Winograd convolutions
(src/ops/conv2d/winograd_gpu.rs): derives Aᵀ, G and Bᵀ by Toom-Cook in exact fractions, checks
that Aᵀ [(G g) ⊙ (Bᵀ d)] is the correlation of d with g for every basis pair, and prints each
shader's `winograd3` and `winograd5` functions (1-D transforms of one row or column), which the
shaders hold as printed:

    python3 tests/golden/winograd_transforms.py input|weight|output|output_gradient|weight_gradient [--vec4]

With `--vec4` it prints the same transforms of 4 columns at once (`winograd3v`, `winograd5v`: each
element a vec4<f32>), with which the input, output and output gradient kernels transform a tile's
columns before its rows, so that these kernels hold no two-level private array (docs/PERFORMANCE.md,
history 14 and 53).

`precision` instead prints, for 32 channels of inputs uniform in [-1, 1], the largest error of a
4 x 4 output tile relative to its largest output when the transforms U and V (computed exactly) are
stored in f32 and in f16, the rest exact, and that of the direct sums of f16-rounded operands (mixed
precision's f16 kernels): why mixed precision keeps the Winograd layers in f32
(ops::conv2d::precision). It printed: stored in f32 2.8e-7 (R = 3) and 7.7e-7 (R = 5); in f16
7.4e-3 and 9.2e-3; the direct sums of f16 operands 4.0e-4 and 2.7e-4.

The points: 0, ±1, ±2 and infinity for R = 3 (A = 6); 0, ±1, ±2, ±1/2 and infinity for R = 5
(A = 8). With f32 inputs uniform in [-1, 1] and 32 channels, the 2-D tiles' largest error relative
to the largest output was 8.7e-6 (R = 3) and 1.1e-5 (R = 5), the direct sums' about 1e-6.
"""
import random
import struct
import sys
from fractions import Fraction as F

M = 4
POINTS = {3: [0, 1, -1, 2, -2], 5: [0, 1, -1, 2, -2, F(1, 2), F(-1, 2)]}


def inverse(m):
    n = len(m)
    a = [row[:] + [F(int(i == j)) for j in range(n)] for i, row in enumerate(m)]
    for c in range(n):
        p = next(r for r in range(c, n) if a[r][c] != 0)
        a[c], a[p] = a[p], a[c]
        a[c] = [x / a[c][c] for x in a[c]]
        for r in range(n):
            if r != c and a[r][c] != 0:
                f = a[r][c]
                a[r] = [x - f * y for x, y in zip(a[r], a[c])]
    return [row[n:] for row in a]


def evaluation(points, cols):
    """Rows [p^0 .. p^(cols-1)] for each finite point, then infinity's [0 .. 0, 1]."""
    return [[F(p) ** k for k in range(cols)] for p in points] + [[F(int(k == cols - 1)) for k in range(cols)]]


def transforms(r):
    """(Aᵀ (M x A), G (A x R), Bᵀ (A x A)): the correlation y = Aᵀ [(G g) ⊙ (Bᵀ d)] is the transpose
    of the polynomial product s = C [(E_g g) ⊙ (E_h h)], C the interpolation matrix; each row of Bᵀ
    is scaled to integers (its smallest entry ±1 where it can be) and G's row by the inverse."""
    points = POINTS[r]
    a = len(points) + 1
    at = [list(col) for col in zip(*evaluation(points, M))]
    g = evaluation(points, r)
    c = inverse(evaluation(points, a))
    bt = [[c[j][i] for j in range(a)] for i in range(a)]
    for i in range(a):
        s = min(abs(x) for x in bt[i] if x != 0)
        bt[i] = [x / s for x in bt[i]]
        g[i] = [x * s for x in g[i]]
    return at, g, bt


def check(r):
    at, g, bt = transforms(r)
    a = len(bt)
    for j in range(a):
        for k in range(r):
            d = [F(int(i == j)) for i in range(a)]
            w = [F(int(i == k)) for i in range(r)]
            u = [sum(g[i][l] * w[l] for l in range(r)) for i in range(a)]
            v = [sum(bt[i][l] * d[l] for l in range(a)) for i in range(a)]
            y = [sum(at[o][i] * u[i] * v[i] for i in range(a)) for o in range(M)]
            want = [sum(d[o + l] * w[l] for l in range(r)) for o in range(M)]
            assert y == want, (r, j, k, y, want)


def literal(f):
    return f"{float(f)!r}" if f.denominator & (f.denominator - 1) == 0 else f"({f.numerator}.0 / {f.denominator}.0)"


def combination(row):
    terms = []
    for j, c in enumerate(row):
        if c == 0:
            continue
        x = f"x[{j}]"
        term = x if abs(c) == 1 else f"{literal(abs(c))} * {x}"
        terms.append(("- " if c < 0 else "+ ") + term)
    s = " ".join(terms)
    return s[2:] if s.startswith("+ ") else "-" + s[2:]


def function(name, matrix, n_in, out_type, in_type="f32"):
    rows = ",\n        ".join(combination(row) for row in matrix)
    return f"fn {name}(x: array<{in_type}, {n_in}>) -> {out_type} {{\n    return {out_type}(\n        {rows},\n    );\n}}"


def rounded(x, fmt):
    """x rounded to the IEEE format struct calls `fmt` ("e": f16, "f": f32)."""
    return struct.unpack(fmt, struct.pack(fmt, x))[0]


def precision(channels=32, trials=3):
    mm = lambda a, b: [[sum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]
    tr = lambda m: [list(col) for col in zip(*m)]
    for r in (3, 5):
        at, g, bt = ([[float(x) for x in row] for row in m] for m in transforms(r))
        a = len(bt)
        rng = random.Random(r)
        worst = {"f32 transforms": 0.0, "f16 transforms": 0.0, "direct, f16 operands": 0.0}
        for _ in range(trials):
            d = [[[rng.uniform(-1, 1) for _ in range(a)] for _ in range(a)] for _ in range(channels)]
            w = [[[rng.uniform(-1, 1) for _ in range(r)] for _ in range(r)] for _ in range(channels)]
            taps = [(c, u, v) for c in range(channels) for u in range(r) for v in range(r)]
            direct = lambda rd: [[sum(rd(d[c][i + u][j + v]) * rd(w[c][u][v]) for c, u, v in taps) for j in range(M)] for i in range(M)]
            exact = direct(float)
            top = max(abs(x) for row in exact for x in row)
            uv = [(mm(mm(g, w[c]), tr(g)), mm(mm(bt, d[c]), tr(bt))) for c in range(channels)]
            tiles = {"direct, f16 operands": direct(lambda x: rounded(x, "e"))}
            for name, fmt in (("f32 transforms", "f"), ("f16 transforms", "e")):
                m = [[sum(rounded(u[i][j], fmt) * rounded(v[i][j], fmt) for u, v in uv) for j in range(a)] for i in range(a)]
                tiles[name] = mm(mm(at, m), tr(at))
            for name, y in tiles.items():
                err = max(abs(y[i][j] - exact[i][j]) for i in range(M) for j in range(M)) / top
                worst[name] = max(worst[name], err)
        print(f"R = {r}: " + ", ".join(f"{name} {e:.1e}" for name, e in worst.items()))


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "input"
    vec4 = "--vec4" in sys.argv[2:]
    if which == "precision":
        return precision()
    out = []
    for r in (3, 5):
        check(r)
        at, g, bt = transforms(r)
        a = len(bt)
        transpose = lambda m: [list(col) for col in zip(*m)]
        matrix, n_in, out_type = {
            "input": (bt, a, f"array<f32, {a}>"),
            "weight": (g, r, f"array<f32, {a}>"),
            "output": (at, a, "vec4<f32>"),
            # The backward's: A x for an output gradient's tile, Gᵀ x for the weight's.
            "output_gradient": (transpose(at), M, f"array<f32, {a}>"),
            "weight_gradient": (transpose(g), a, f"array<f32, {r}>"),
        }[which]
        if vec4:
            out.append(function(f"winograd{r}v", matrix, n_in, f"array<vec4<f32>, {len(matrix)}>", "vec4<f32>"))
        else:
            out.append(function(f"winograd{r}", matrix, n_in, out_type))
    print("\n\n".join(out))


if __name__ == "__main__":
    main()
