"""Read the op graph of a TensorFlow 1 ``.meta`` file without TensorFlow.

A ``.meta`` file is a ``MetaGraphDef`` protobuf; its field 2 is the
``GraphDef``, whose repeated field 1 holds one ``NodeDef`` per op:
``name`` (1), ``op`` (2), ``input`` (3, repeated), ``attr`` (5, map
string → ``AttrValue``). Of ``AttrValue`` we decode ``list`` (1), ``s``
(2), ``i`` (3), ``f`` (4), ``b`` (5) and ``shape`` (7) — enough to read a
graph's layer layout: conv kernel strides and padding, pooling windows,
batch-norm epsilons, and which op feeds which. The ports in
:mod:`core.models.musicnn` and :mod:`core.models.msd` were written from
these graphs (``python -m core.models.tf_graph PREFIX`` prints one).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ArtifactError
from core.models.tf_checkpoint import _proto_fields, _varint


@dataclass(frozen=True)
class GraphNode:
    """One op of the graph: ``attrs`` maps attribute name → decoded value
    (bytes → str, lists → tuple, shapes → tuple of dims, -1 unknown)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict)


def _floats(val) -> list[float]:
    """A float field: packed bytes, or one fixed32 the generic reader gave as int."""
    return _packed(val, "f") if isinstance(val, bytes) else [struct.unpack("<f", struct.pack("<I", val))[0]]


def _packed(val, kind: str) -> list:
    if isinstance(val, int):       # not packed: one element
        return [val]
    out, pos = [], 0
    while pos < len(val):
        if kind == "f":
            out.append(struct.unpack_from("<f", val, pos)[0])
            pos += 4
        else:
            v, pos = _varint(val, pos)
            out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


def _shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for f, dim in _proto_fields(buf):
        if f == 2:
            size = int(dict(_proto_fields(dim)).get(1, 0))
            dims.append(size - (1 << 64) if size >= 1 << 63 else size)
    return tuple(dims)


def _attr_value(buf: bytes):
    for f, val in _proto_fields(buf):
        if f == 1:                                   # ListValue
            items: list = []
            for lf, lv in _proto_fields(val):
                if lf == 2:
                    items.append(lv.decode("utf-8", "replace"))
                elif lf in (3, 5, 6):
                    items += _packed(lv, "i")
                elif lf == 4:
                    items += _floats(lv)
                elif lf == 7:
                    items.append(_shape(lv))
            return tuple(items)
        if f == 2:
            return val.decode("utf-8", "replace")
        if f == 3:
            return val - (1 << 64) if val >= 1 << 63 else val
        if f == 4:
            return _floats(val)[0]
        if f in (5, 6):
            return int(val)
        if f == 7:
            return _shape(val)
        if f == 8:
            return _tensor(val)
    return None


def _tensor(buf: bytes):
    """A small constant ``TensorProto`` → nested tuple of its values (int32 /
    int64 / float32 only), or its shape when the values are not decoded."""
    dtype, shape, content, ints, floats = 0, (), b"", [], []
    for f, val in _proto_fields(buf):
        if f == 1:
            dtype = val
        elif f == 2:
            shape = _shape(val)
        elif f == 4:
            content = val
        elif f == 5:
            floats += _floats(val)
        elif f in (7, 10):
            ints += _packed(val, "i")
    np_dtype = {1: "<f4", 3: "<i4", 9: "<i8"}.get(dtype)
    if np_dtype is None:
        return ("tensor", dtype, shape)
    n = int(np.prod(shape)) if shape else 1
    if content:
        arr = np.frombuffer(content, np_dtype)
    else:
        vals = floats if dtype == 1 else ints
        arr = np.array(vals if len(vals) == n else vals * n if len(vals) == 1 else vals, np_dtype)
    return arr.reshape(shape).tolist() if arr.size == n else arr.tolist()


def _node(buf: bytes) -> GraphNode:
    name, op, inputs, attrs = "", "", [], {}
    for f, val in _proto_fields(buf):
        if f == 1:
            name = val.decode()
        elif f == 2:
            op = val.decode()
        elif f == 3:
            inputs.append(val.decode())
        elif f == 5:
            entry = dict(_proto_fields(val))
            attrs[entry.get(1, b"").decode()] = _attr_value(entry.get(2, b""))
    return GraphNode(name, op, tuple(inputs), attrs)


def read_graph(meta_path: str | Path) -> list[GraphNode]:
    """The nodes of a ``.meta`` file's graph, in file order."""
    path = Path(meta_path)
    if not path.is_file():
        raise ArtifactError(f"graph file missing: {path}")
    graph = [v for f, v in _proto_fields(path.read_bytes()) if f == 2]
    if not graph:
        raise ArtifactError(f"{path} holds no GraphDef (not a MetaGraphDef)")
    return [_node(v) for f, v in _proto_fields(graph[0]) if f == 1]


LAYER_OPS = ("Conv2D", "MaxPool", "AvgPool", "FusedBatchNorm", "FusedBatchNormV3", "Relu",
             "Elu", "ConcatV2", "MatMul", "Mean", "Max", "Sigmoid", "Pad", "Reshape", "Squeeze",
             "ExpandDims", "Transpose", "Add", "AddV2", "BiasAdd", "Dropout")


def forward_ops(nodes: list[GraphNode], skip: tuple[str, ...] = ("gradients", "Adam", "save", "train",
                                                                   "cond", "dropout", "Initializer")
                ) -> list[GraphNode]:
    """The layer-like ops of the inference graph (no optimiser, saver, gradients)."""
    return [n for n in nodes if n.op in LAYER_OPS and not any(s in n.name for s in skip)]


def describe(node: GraphNode) -> str:
    """One line: name, op, inputs and the attributes that fix a layer's arithmetic."""
    keep = {k: v for k, v in node.attrs.items()
            if k in ("strides", "ksize", "padding", "epsilon", "data_format", "dilations", "N",
                     "keep_dims", "Tidx", "is_training", "value", "squeeze_dims", "axis")}
    return f"{node.name} [{node.op}] <- {', '.join(node.inputs)} {keep if keep else ''}"


if __name__ == "__main__":   # pragma: no cover - a reading aid
    for n in forward_ops(read_graph(sys.argv[1] + ".meta" if not sys.argv[1].endswith(".meta") else sys.argv[1])):
        print(describe(n))
