#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/ (committed; rerun after
changing it). gdp_fuzz_safetensors gets small safetensors files, valid forward and backward
inputs in every storage dtype and malformed files of each kind the reader refuses;
gdp_fuzz_forward_arguments gets fixed pseudo-random byte strings (its bytes are choices, not a
format). Inputs that once broke the reader are kept beside them under their own names
(regression-*), written by hand or by the fuzzer, never by this script.

Usage: tests/fuzz/make_seed_corpus.py
"""
import json
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
PACK = {"F64": "d", "F32": "f", "I32": "i", "I64": "q", "U8": "B"}
SIZE = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I32": 4, "I64": 8, "U8": 1, "BOOL": 1}


def encode(dtype, values):
    if dtype == "BF16":
        return b"".join(struct.pack("<f", v)[2:] for v in values)
    if dtype == "F16":
        return b"".join(struct.pack("<e", v) for v in values)
    return struct.pack("<%d%s" % (len(values), PACK[dtype]), *values)


def safetensors(tensors, metadata=None, header_extra=None, stated_length=None):
    """tensors: list of (name, dtype, shape, values or raw bytes); packed in order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, values in tensors:
        raw = values if isinstance(values, bytes) else encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if header_extra:
        header.update(header_extra)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    length = len(text) if stated_length is None else stated_length
    return struct.pack("<Q", length) + text + data


def raw_header(text, data_bytes):
    """A file of `text` as the header, as it is, and `data_bytes` zero bytes."""
    return struct.pack("<Q", len(text)) + text + b"\0" * data_bytes


def numbers(rng, count, low=-1.0, high=1.0):
    return [round(rng.uniform(low, high), 3) for _ in range(count)]


def forward_input(rng, dtype, B, T, H, K, V, n, gated=False, h0=False, cu=None, cu_dtype="I64",
                  metadata=None, backward=False):
    N = B if cu is None else len(cu) - 1
    t = [("q", dtype, [B, T, H, K], numbers(rng, B * T * H * K)),
         ("k", dtype, [B, T * n, H, K], numbers(rng, B * T * n * H * K)),
         ("v", dtype, [B, T * n, H, V], numbers(rng, B * T * n * H * V)),
         ("beta", dtype, [B, T * n, H], numbers(rng, B * T * n * H, 0, 1))]
    if gated:
        t.append(("g", "F32", [B, T, H], numbers(rng, B * T * H, -1, 0)))
    if h0:
        t.append(("h0", "F32", [N, H, K, V], numbers(rng, N * H * K * V)))
    if cu is not None:
        t.append(("cu_seqlens", cu_dtype, [len(cu)], cu))
    if backward:
        t.append(("do", dtype, [B, T, H, V], numbers(rng, B * T * H * V)))
        t.append(("dht", "F64", [N, H, K, V], numbers(rng, N * H * K * V)))
    meta = {"num_householder": str(n)} if metadata is None else metadata
    return safetensors(t, meta)


def safetensors_seeds():
    rng = random.Random(7)
    seeds = {
        "valid-f32-equal": forward_input(rng, "F32", 1, 2, 1, 2, 2, 1),
        "valid-f64-gated-h0-n2": forward_input(
            rng, "F64", 2, 3, 1, 2, 3, 2, gated=True, h0=True,
            metadata={"num_householder": "2", "scale": "0.25", "l2norm": "true"}),
        "valid-bf16-varlen-i64": forward_input(rng, "BF16", 1, 4, 2, 2, 2, 1, cu=[0, 1, 4]),
        "valid-f16-varlen-i32-backward": forward_input(
            rng, "F16", 1, 3, 1, 2, 2, 3, h0=True, cu=[0, 0, 3], cu_dtype="I32", backward=True,
            metadata={"num_householder": "3", "l2norm": "0"}),
        "valid-every-dtype": safetensors(
            [("a", "F64", [2], [1.0, -2.0]), ("b", "F32", [1, 2], [0.5, 3.0]),
             ("c", "BF16", [2], [1.0, 2.0]), ("d", "F16", [2], [0.25, -1.0]),
             ("e", "I32", [3], [0, 1, 2]), ("f", "I64", [1], [5]), ("g", "U8", [2], [1, 2]),
             ("empty", "F32", [0, 4], b"")], {"note": "hello"}),
        "valid-no-tensors": safetensors([]),
        "invalid-length-past-end": safetensors([("a", "F32", [1], [1.0])], stated_length=4096),
        "invalid-short-file": b"\x08\x00\x00\x00",
        "invalid-not-json": struct.pack("<Q", 8) + b"{\"a\":!}",
        "invalid-root-array": safetensors([], header_extra=None)[:8] + b"[]      ",
        "invalid-unknown-dtype": safetensors([("a", "F128", [1], b"\0" * 16)]),
        "invalid-shape-mismatch": safetensors(
            [("a", "F32", [3], [1.0, 2.0])]),
        "invalid-negative-extent": safetensors(
            [], header_extra={"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}),
        "invalid-overlap": safetensors(
            [("a", "F32", [2], [1.0, 2.0])],
            header_extra={"b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}),
        "invalid-metadata-number": safetensors([], {"num_householder": 2}),
        "invalid-metadata-option": forward_input(
            rng, "F32", 1, 2, 1, 2, 2, 1, metadata={"num_householder": "x", "scale": "nan?"}),
        "invalid-cu-decreasing": forward_input(rng, "F32", 1, 3, 1, 2, 2, 1, cu=[0, 2, 1, 3]),
        "invalid-k-shape": safetensors(
            [("q", "F32", [1, 2, 1, 2], numbers(rng, 4)), ("k", "F32", [1, 3, 1, 2], numbers(rng, 6)),
             ("v", "F32", [1, 2, 1, 2], numbers(rng, 4)), ("beta", "F32", [1, 2, 1], numbers(rng, 2))]),
        "invalid-missing-field": safetensors(
            [], header_extra={"a": {"dtype": "F32", "shape": [0]}}),
        # Fixed findings (docs/HARDENING.md): a number beyond double's range, nesting deep
        # enough to exhaust the stack, an element count past int64.
        "regression-number-out-of-range": raw_header(
            b'{"q":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}}', 4),
        "regression-deep-nesting": raw_header(b'{"q":' + b"[" * 6000 + b"]" * 6000 + b"}", 0),
        "regression-element-count-past-int64": raw_header(
            b'{"q":{"dtype":"U8","shape":[4611686018427387904,3,0],"data_offsets":[0,0]}}', 0),
    }
    return seeds


def forward_argument_seeds():
    rng = random.Random(11)
    return {"random-%02d" % i: bytes(rng.getrandbits(8) for _ in range(rng.choice([24, 48, 96, 192])))
            for i in range(12)}


def write(target, seeds):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    for name, content in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(content)


if __name__ == "__main__":
    write("gdp_fuzz_safetensors", safetensors_seeds())
    write("gdp_fuzz_forward_arguments", forward_argument_seeds())
