#!/usr/bin/env python3
"""check_qgemv_decode.py — host check of kern_qgemv's lane decode (kernels/kern_gemv.cu).

A lane of kern_qgemv takes elements 8p..8p+7 (p = lane % 4) of a 32-element
chunk c and decodes them from its loads (qpart_load) into 8 small integers q
and one (a, b), weight = a * q + b (qpart_decode).  This script repeats that
bit arithmetic in Python for every block type on random blocks and compares
the weights with gguf's dequantize: a change to the lane mapping or a layout
can be checked without a GPU.  Needs numpy and gguf (the project's recording
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


def part(t, row, c, p):
    """The 8 weights of part p of chunk c, as qpart_load + qpart_decode compute them."""
    b = 0.0
    if t == 'Q8_0':
        o = c * 34
        a, v0, v1 = f16(u16(row, o)), u32(row, o + 2 + 8 * p), u32(row, o + 6 + 8 * p)
    elif t in ('Q4_0', 'Q4_1', 'Q5_0', 'Q5_1'):
        one, five = t in ('Q4_1', 'Q5_1'), t in ('Q5_0', 'Q5_1')
        nb = 18 + (2 if one else 0) + (4 if five else 0)
        o = c * nb
        h = u32(row, o) if one else u16(row, o)
        q = o + nb - 16 + 8 * (p & 1)
        a, b = f16(h), (f16(h >> 16) if one else 0.0)
        sh = 4 * (p >> 1)
        v0, v1 = (u32(row, q) >> sh) & 0x0f0f0f0f, (u32(row, q + 4) >> sh) & 0x0f0f0f0f
        if five:
            bits = u32(row, o + (4 if one else 2)) >> (8 * p)
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
        o = (c >> 3) * 210
        sb = c & 7
        half, tq = sb >> 2, sb & 3
        h = u16(row, o + 208) | u16(row, o + 192 + 8 * half + 2 * tq) << 16
        ql, qh = o + 64 * half + 32 * (tq & 1) + 8 * p, o + 128 + 32 * half + 8 * p
        a = f32(f32(f16(h)) * s8((h >> (16 if p < 2 else 24)) & 0xff))
        sl, sh = 4 * (tq >> 1), 2 * tq
        v0 = vsub4(((u32(row, ql) >> sl) & 0x0f0f0f0f) | ((u32(row, qh) >> sh) & 0x03030303) << 4, 0x20202020)
        v1 = vsub4(((u32(row, ql + 4) >> sl) & 0x0f0f0f0f) | ((u32(row, qh + 4) >> sh) & 0x03030303) << 4, 0x20202020)
    return [a * s8(x) + b for x in bytes4(v0) + bytes4(v1)]


TYPES = {'Q8_0': (T.Q8_0, 34, 32), 'Q4_0': (T.Q4_0, 18, 32), 'Q4_1': (T.Q4_1, 20, 32),
         'Q5_0': (T.Q5_0, 22, 32), 'Q5_1': (T.Q5_1, 24, 32), 'Q4_K': (T.Q4_K, 144, 256),
         'Q5_K': (T.Q5_K, 176, 256), 'Q6_K': (T.Q6_K, 210, 256)}


def main():
    rng, K, bad = np.random.default_rng(1), 512, 0
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
        mine = np.zeros(K)
        for c in range(K // 32):
            for p in range(4):
                mine[c * 32 + 8 * p:c * 32 + 8 * p + 8] = part(name, row, c, p)
        err = np.max(np.abs(mine - ref)) / np.max(np.abs(ref))
        print(f"{name}: max rel err {err:.2e}")
        bad += err > 1e-6
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
