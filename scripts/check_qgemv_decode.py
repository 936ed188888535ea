#!/usr/bin/env python3
"""check_qgemv_decode.py — host check of kern_qgemv's lane decode (kernels/kern_gemv.cu).

Rows are first put in the device layout (pack: kern_qpack_row).  Then:
- the 2-8 row kernel: a lane takes elements 8p..8p+7 (p = lane % 4) of a
  32-element chunk c and decodes them from its loads (qpart_load) into 8 small
  integers q and one (a, b), weight = a * q + b (qpart_decode);
- the one-row kernel (qgemv1_kernel): a lane takes a pair of 32-weight chunks
  (q1_pair_chunk), their scales as A, B (q1_scales) and each group's
  S = sum x (0.5 + v/256) (q1_sum), adding A S + B sum(x) (Q8_0: d sum(x q));
- the tensor-core product (kern_qskinny.cu): lane t's loads of a 256-element
  chunk (qs_load) and its A fragments of each 32-element group j (qs_decode):
  bf16 pairs 2^7 + q by byte permute, the bias taken off in bf16, weight =
  a[m] q + b, at the elements the fragment order gives (8t.. or Q6_K's 4t..).
This script repeats that bit arithmetic in Python for every block type on
random blocks and compares the weights (and the one-row dot product, in
float64) with gguf's dequantize: a change to a lane mapping or the layout can
be checked without a GPU.  Needs numpy and gguf (the project's recording
venv); not part of make test.  Prints one line per type; exit 1 on a mismatch.
"""
import sys
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize


def u16(b, o): return int(b[o]) | int(b[o + 1]) << 8
def u32(b, o): return u16(b, o) | u16(b, o + 2) << 16
def f16(h): return float(np.array([h & 0xffff], dtype=np.uint16).view(np.float16)[0])
def f32(v): return float(np.float32(v))
def s8(v): return v - 256 if v >= 128 else v
def bytes4(w): return [(w >> (8 * i)) & 0xff for i in range(4)]
def spread4(b4): return (b4 & 1) << 4 | (b4 & 2) << 11 | (b4 & 4) << 18 | (b4 & 8) << 25
def vsub4(a, b): return sum(((((a >> (8 * i)) & 0xff) - ((b >> (8 * i)) & 0xff)) & 0xff) << (8 * i) for i in range(4))


def scale_min(j, s):
    byte = lambda i: (s[i // 4] >> (8 * (i & 3))) & 0xff
    if j < 4:
        return byte(j) & 63, byte(j + 4) & 63
    return (byte(j + 4) & 0xf) | (byte(j - 4) >> 6) << 4, (byte(j + 4) >> 4) | (byte(j) >> 6) << 4


QK6_STRIDE = 224


def planes(t, nb):
    """q32_layout: quant run bytes, qh plane offset, d plane offset, d bytes."""
    one, five = t in ('Q4_1', 'Q5_1'), t in ('Q5_0', 'Q5_1')
    qb = 32 if t == 'Q8_0' else 16
    return qb, nb * qb, nb * qb + (nb * 4 if five else 0), 4 if one else 2


def pack(t, row, K):
    """kern_qpack_row: a GGUF row in the kernels' layout."""
    bb, be = TYPES[t][1], TYPES[t][2]
    nb = K // be
    if t == 'Q6_K':
        out = np.zeros(nb * QK6_STRIDE, np.uint8)
        for b in range(nb):
            out[b * QK6_STRIDE:b * QK6_STRIDE + 210] = row[b * 210:(b + 1) * 210]
        return out
    if be != 32:
        return row.copy()
    out = np.zeros((nb * bb + 15) // 16 * 16, np.uint8)
    qb, hoff, doff, db = planes(t, nb)
    for b in range(nb):
        blk = row[b * bb:(b + 1) * bb]
        out[b * qb:(b + 1) * qb] = blk[bb - qb:]
        out[doff + b * db:doff + (b + 1) * db] = blk[:db]
        if t in ('Q5_0', 'Q5_1'):
            out[hoff + 4 * b:hoff + 4 * b + 4] = blk[db:db + 4]
    return out


def part(t, row, c, p, nc):
    """The 8 weights of part p of chunk c (of nc) of a packed row, as qpart_load +
    qpart_decode compute them."""
    b = 0.0
    if t == 'Q8_0':
        a, v0, v1 = f16(u16(row, nc * 32 + 2 * c)), u32(row, c * 32 + 8 * p), u32(row, c * 32 + 4 + 8 * p)
    elif t in ('Q4_0', 'Q4_1', 'Q5_0', 'Q5_1'):
        one, five = t in ('Q4_1', 'Q5_1'), t in ('Q5_0', 'Q5_1')
        _, hoff, doff, db = planes(t, nc)
        h = u32(row, doff + 4 * c) if one else u16(row, doff + 2 * c)
        q = 16 * c + 8 * (p & 1)
        a, b = f16(h), (f16(h >> 16) if one else 0.0)
        sh = 4 * (p >> 1)
        v0, v1 = (u32(row, q) >> sh) & 0x0f0f0f0f, (u32(row, q + 4) >> sh) & 0x0f0f0f0f
        if five:
            bits = u32(row, hoff + 4 * c) >> (8 * p)
            v0 |= spread4(bits & 0xf)
            v1 |= spread4((bits >> 4) & 0xf)
        off = 0 if one else (0x10101010 if five else 0x08080808)
        v0, v1 = vsub4(v0, off), vsub4(v1, off)
    elif t in ('Q4_K', 'Q5_K'):
        five = t == 'Q5_K'
        o = (c >> 3) * (176 if five else 144)
        h, s = u32(row, o), [u32(row, o + 4), u32(row, o + 8), u32(row, o + 12)]
        qo = o + (48 if five else 16) + 32 * ((c & 7) >> 1) + 8 * p
        sb = c & 7
        sc, mn = scale_min(sb, s)
        a, b = f32(f32(f16(h)) * sc), -f32(f32(f16(h >> 16)) * mn)
        sh = 4 * (sb & 1)
        v0, v1 = (u32(row, qo) >> sh) & 0x0f0f0f0f, (u32(row, qo + 4) >> sh) & 0x0f0f0f0f
        if five:
            v0 |= ((u32(row, o + 16 + 8 * p) >> sb) & 0x01010101) << 4
            v1 |= ((u32(row, o + 20 + 8 * p) >> sb) & 0x01010101) << 4
    else:   # Q6_K
        o = (c >> 3) * QK6_STRIDE
        sb = c & 7
        half, tq = sb >> 2, sb & 3
        h = u16(row, o + 208) | u16(row, o + 192 + 8 * half + 2 * tq) << 16
        ql, qh = o + 64 * half + 32 * (tq & 1) + 8 * p, o + 128 + 32 * half + 8 * p
        a = f32(f32(f16(h)) * s8((h >> (16 if p < 2 else 24)) & 0xff))
        sl, sh = 4 * (tq >> 1), 2 * tq
        v0 = vsub4(((u32(row, ql) >> sl) & 0x0f0f0f0f) | ((u32(row, qh) >> sh) & 0x03030303) << 4, 0x20202020)
        v1 = vsub4(((u32(row, ql + 4) >> sl) & 0x0f0f0f0f) | ((u32(row, qh + 4) >> sh) & 0x03030303) << 4, 0x20202020)
    return [a * s8(x) + b for x in bytes4(v0) + bytes4(v1)]


def q1_f(v, i):
    """0.5 + byte i of v / 256 (the byte below 128), as q1_f's byte permute makes it."""
    byte = (v >> (8 * i)) & 0xff
    assert byte < 128
    return 0.5 + byte / 256


def q1_dot(v, x):
    return sum(x[4 * k + i] * q1_f(v[k], i) for k in range(4) for i in range(4))


def q1_pair_chunk(t, p):
    return 8 * (p >> 2) + (p & 1) + 4 * ((p >> 1) & 1) if t in ('Q5_K', 'Q6_K') else 2 * p


def q1_xl(t, c):
    b, i = c >> 3, c & 7
    if t in ('Q4_K', 'Q5_K'):
        return 256 * b + 64 * (i >> 1) + 16 * (i & 1), 32
    if t == 'Q6_K':
        return 256 * b + 128 * (i >> 2) + 16 * (i & 3), 64
    return 32 * c, 16


def q1_chunk(t, row, c, nc, x):
    """One chunk's sum of w x, as q1_load + q1_scales + q1_sum compute it."""
    i = c & 7
    xl, ho = q1_xl(t, c)
    xL, xH = x[xl:xl + 16], x[xl + ho:xl + ho + 16]
    if t == 'Q8_0':
        d = f16(u16(row, nc * 32 + 2 * c))
        return d * sum(x[32 * c + j] * s8(int(row[32 * c + j])) for j in range(32))
    words = lambda o: [u32(row, o + 4 * k) for k in range(4)]
    if t in ('Q4_K', 'Q5_K'):
        five = t == 'Q5_K'
        o = (c >> 3) * (176 if five else 144)
        h = [u32(row, o + 4 * k) for k in range(4)]
        j2, sh = i >> 1, 16 * ((i >> 1) & 1)
        P = (h[1] >> sh) & 0x3F3F if j2 < 2 else ((h[3] >> sh) & 0x0F0F) | ((h[1] >> (sh + 2)) & 0x3030)
        M = (h[2] >> sh) & 0x3F3F if j2 < 2 else ((h[3] >> (sh + 4)) & 0x0F0F) | ((h[2] >> (sh + 2)) & 0x3030)
        d, dm, f = f16(h[0]), f16(h[0] >> 16), 64 if five else 32
        AL, AH = f32(d * (P & 0xff)) * f, f32(d * (P >> 8)) * f
        BL, BH = -0.5 * AL - f32(dm * (M & 0xff)), -0.5 * AH - f32(dm * (M >> 8))
        if five:
            q, e = words(o + 48 + 16 * i), words(o + 16 + 16 * (i & 1))
            vL = [((w << 2) & 0x3C3C3C3C) | ((((ee >> (2 * j2)) << 6)) & 0x40404040) for w, ee in zip(q, e)]
            vH = [((w >> 2) & 0x3C3C3C3C) | ((((ee >> (2 * j2)) << 5)) & 0x40404040) for w, ee in zip(q, e)]
        else:
            q = words(o + 16 + 16 * i)
            vL = [(w << 3) & 0x78787878 for w in q]
            vH = [(w >> 1) & 0x78787878 for w in q]
    elif t == 'Q6_K':
        o, a = (c >> 3) * QK6_STRIDE, i & 3
        q, e = words(o + 16 * i), words(o + 128 + 32 * (i >> 2) + 16 * (i & 1))
        sc = row[o + 192 + 8 * (i >> 2):o + 200 + 8 * (i >> 2)]
        d = f16(u16(row, o + 208))
        AL, AH = f32(d * s8(int(sc[a]))) * 128, f32(d * s8(int(sc[a + 4]))) * 128
        BL, BH = -0.75 * AL, -0.75 * AH
        hs = [ee >> (2 * (a >> 1)) for ee in e]
        vL = [(((w << 1) & 0x1E1E1E1E) | ((hh << 5) & 0x60606060)) & 0xffffffff for w, hh in zip(q, hs)]
        vH = [(((w >> 3) & 0x1E1E1E1E) | ((hh << 1) & 0x60606060)) & 0xffffffff for w, hh in zip(q, hs)]
    else:   # Q4_0, Q4_1, Q5_0, Q5_1
        _, hoff, doff, db = planes(t, nc)
        h = u32(row, doff + 4 * c) if db == 4 else u16(row, doff + 2 * c)
        d = f16(h)
        four = t in ('Q4_0', 'Q4_1')
        A = d * (32 if four else 64)
        off = -8 * d if t == 'Q4_0' else -16 * d if t == 'Q5_0' else f16(h >> 16)
        AL = AH = A
        BL = BH = -0.5 * A + off
        q = words(16 * c)
        if four:
            vL = [(w << 3) & 0x78787878 for w in q]
            vH = [(w >> 1) & 0x78787878 for w in q]
        else:
            qh = u32(row, hoff + 4 * c)
            vL = [((w << 2) & 0x3C3C3C3C) | ((((qh >> (4 * k)) & 15) * 0x08102040) & 0x40404040) for k, w in enumerate(q)]
            vH = [((w >> 2) & 0x3C3C3C3C) | ((((qh >> (16 + 4 * k)) & 15) * 0x08102040) & 0x40404040) for k, w in enumerate(q)]
    vL = [v & 0xffffffff for v in vL]
    vH = [v & 0xffffffff for v in vH]
    return AL * q1_dot(vL, xL) + BL * xL.sum() + AH * q1_dot(vH, xH) + BH * xH.sum()


def bf16(bits):
    return float(np.array([bits << 16], dtype=np.uint32).view(np.float32)[0])


def qs_pair(v, hi, bias, sign=None):
    """qs_pair / qs_pair8: bytes (2hi, 2hi+1) of v as bf16 2^7 + byte, minus the bias."""
    out = []
    for k in (2 * hi, 2 * hi + 1):
        byte = (v >> (8 * k)) & 0xff
        if sign is None:
            assert byte < 128
            out.append(bf16(0x4300 | byte) - bias)
        else:   # int8: low 7 bits in the mantissa, 2^7 or 2^8 off by the sign bit
            out.append(bf16(0x4300 | (byte & 0x7f)) - bf16(0x4300 | (byte & 0x80)))
    return out


def qs_row(t, row, K):
    """A row's weights as kern_qskinny's lanes decode them (qs_load + qs_decode)."""
    w = np.full(K, np.nan)
    nb = K // 32
    for kc in range(0, K, 256):
        ng = min(256, K - kc) // 32
        for tl in range(4):
            for j in range(ng):
                b = 0.0
                if t in ('Q4_K', 'Q5_K'):
                    blk = (kc // 256) * TYPES[t][1]
                    qo = 16 if t == 'Q4_K' else 48
                    h = [u32(row, blk + 4 * i) for i in range(4)]
                    p = j >> 1
                    qx, qy = u32(row, blk + qo + 32 * p + 8 * tl), u32(row, blk + qo + 32 * p + 8 * tl + 4)
                    sh = 4 * (j & 1)
                    u0, u1 = qx >> sh & 0x0F0F0F0F, qy >> sh & 0x0F0F0F0F
                    if t == 'Q5_K':
                        ex, ey = u32(row, blk + 16 + 8 * tl), u32(row, blk + 16 + 8 * tl + 4)
                        u0 |= (ex >> j & 0x01010101) << 4
                        u1 |= (ey >> j & 0x01010101) << 4
                    sc, mn = scale_min(j, h[1:])
                    a = [f32(f16(h[0]) * sc)] * 2
                    b = -f32(f16(h[0] >> 16) * mn)
                    bias, el = 128.0, [8 * tl + i for i in range(8)]
                elif t == 'Q6_K':
                    blk = (kc // 256) * QK6_STRIDE
                    hh, Q = j >> 2, j & 3
                    k = 2 * hh + (Q & 1)
                    qlx = u32(row, blk + 64 * (k >> 1) + 32 * (k & 1) + 4 * tl)
                    qly = u32(row, blk + 64 * (k >> 1) + 32 * (k & 1) + 16 + 4 * tl)
                    e0, e1 = u32(row, blk + 128 + 16 * (2 * hh) + 4 * tl), u32(row, blk + 128 + 16 * (2 * hh + 1) + 4 * tl)
                    sl, sq = 4 * (Q >> 1), 2 * Q
                    u0 = (qlx >> sl & 0x0F0F0F0F) | (e0 >> sq & 0x03030303) << 4
                    u1 = (qly >> sl & 0x0F0F0F0F) | (e1 >> sq & 0x03030303) << 4
                    d = f16(u16(row, blk + 208))
                    s_ = 8 * hh + 2 * Q
                    a = [f32(d * s8(int(row[blk + 192 + s_]))), f32(d * s8(int(row[blk + 192 + s_ + 1])))]
                    bias, el = 160.0, [4 * tl + i for i in range(4)] + [16 + 4 * tl + i for i in range(4)]
                else:
                    qb, hoff, doff, db = planes(t, nb)
                    c = kc // 32 + j
                    o = c * qb + (8 * tl if t == 'Q8_0' else 8 * (tl & 1))
                    qx, qy = u32(row, o), u32(row, o + 4)
                    dd = u32(row, doff + 4 * c) if db == 4 else u16(row, doff + 2 * c)
                    a = [f16(dd)] * 2
                    el = [8 * tl + i for i in range(8)]
                    if t == 'Q8_0':
                        vals = qs_pair(qx, 0, 0, 1) + qs_pair(qx, 1, 0, 1) + qs_pair(qy, 0, 0, 1) + qs_pair(qy, 1, 0, 1)
                        for i, e in enumerate(el):
                            w[kc + 32 * j + e] = f32(a[i // 4] * vals[i])
                        continue
                    sh = 4 * (tl >> 1)
                    u0, u1 = qx >> sh & 0x0F0F0F0F, qy >> sh & 0x0F0F0F0F
                    if t in ('Q5_0', 'Q5_1'):
                        qh = u32(row, hoff + 4 * c)
                        u0 |= spread4(qh >> (8 * tl) & 15)
                        u1 |= spread4(qh >> (8 * tl + 4) & 15)
                    bias = {'Q4_0': 136.0, 'Q5_0': 144.0}.get(t, 128.0)
                    if t in ('Q4_1', 'Q5_1'):
                        b = f16(dd >> 16)
                vals = qs_pair(u0, 0, bias) + qs_pair(u0, 1, bias) + qs_pair(u1, 0, bias) + qs_pair(u1, 1, bias)
                for i, e in enumerate(el):
                    w[kc + 32 * j + e] = a[i // 4] * vals[i] + b
    return w


def q1_row(t, row, K, x):
    """A row's w . x as the one-row kernel adds it: every pair's two chunks."""
    nc = K // 32
    total = 0.0
    for p in range(nc // 2):
        c = q1_pair_chunk(t, p)
        step = 2 if t in ('Q5_K', 'Q6_K') else 1
        total += q1_chunk(t, row, c, nc, x) + q1_chunk(t, row, c + step, nc, x)
    return total


TYPES = {'Q8_0': (T.Q8_0, 34, 32), 'Q4_0': (T.Q4_0, 18, 32), 'Q4_1': (T.Q4_1, 20, 32),
         'Q5_0': (T.Q5_0, 22, 32), 'Q5_1': (T.Q5_1, 24, 32), 'Q4_K': (T.Q4_K, 144, 256),
         'Q5_K': (T.Q5_K, 176, 256), 'Q6_K': (T.Q6_K, 210, 256)}


def main():
    rng, K, bad = np.random.default_rng(1), 768, 0
    for name, (tt, bb, be) in TYPES.items():
        nb = K // be
        row = rng.integers(0, 256, size=nb * bb, dtype=np.uint8)
        for i in range(nb):   # finite f16 scales
            o = i * bb
            d = o + 208 if name == 'Q6_K' else o
            row[d:d + 2] = np.frombuffer(np.float16(rng.uniform(-.1, .1)).tobytes(), np.uint8)
            if name in ('Q4_1', 'Q5_1', 'Q4_K', 'Q5_K'):
                row[o + 2:o + 4] = np.frombuffer(np.float16(rng.uniform(-.1, .1)).tobytes(), np.uint8)
        ref = dequantize(row, tt).reshape(-1).astype(np.float64)
        packed = pack(name, row, K)
        mine = np.zeros(K)
        for c in range(K // 32):
            for p in range(4):
                mine[c * 32 + 8 * p:c * 32 + 8 * p + 8] = part(name, packed, c, p, K // 32)
        err = np.max(np.abs(mine - ref)) / np.max(np.abs(ref))
        x = rng.standard_normal(K)
        e1 = abs(q1_row(name, packed, K, x) - float(ref @ x)) / float(np.abs(ref * x).sum())
        qs = qs_row(name, packed, K)
        e2 = np.max(np.abs(qs - ref)) / np.max(np.abs(ref)) if not np.isnan(qs).any() else np.inf
        print(f"{name}: weights (2-8 rows) max rel err {err:.2e}; one-row dot rel err {e1:.2e}; "
              f"tensor-core fragments max rel err {e2:.2e}")
        bad += err > 1e-6 or e1 > 1e-9 or e2 > 1e-6
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
