"""Read (and, for tests, write) TensorFlow 1 checkpoints without TensorFlow.

A TF checkpoint is two files: ``<prefix>.index``, a LevelDB-format sorted
table mapping each tensor name to a ``BundleEntryProto`` (dtype, shape,
offset and size in the data file), and ``<prefix>.data-00000-of-00001``,
the tensors' raw little-endian bytes back to back.

Table layout (LevelDB ``table_format.md``): data blocks, a meta-index block,
an index block, then a 48-byte footer holding the meta-index and index block
handles (varint64 offset + size each, zero-padded to 40 bytes) and the magic
number ``0xdb4775248b80fb57``. Each block ends with a 5-byte trailer
(compression type, CRC) and holds prefix-compressed entries
``shared | unshared | value_len | key_suffix | value`` followed by restart
offsets. TF writes its blocks uncompressed; compressed tables are refused.

Only the protobuf fields we need are decoded, with a ten-line wire-format
reader: ``BundleEntryProto`` fields 1 (dtype), 2 (shape: repeated dim,
each with field 1 size), 3 (shard id), 4 (offset) and 5 (size).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ArtifactError

MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
DATA_SUFFIX = ".data-00000-of-00001"

# tensorflow/core/framework/types.proto → numpy
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"),
    6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"), 19: np.dtype("<f2"),
}
_DTYPE_CODES = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives in the data file."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


# -- wire-format helpers ------------------------------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ArtifactError("checkpoint index truncated (varint runs past the end)")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ArtifactError("checkpoint index corrupt (varint too long)")


def _put_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: varints as int,
    length-delimited fields as bytes; fixed32/64 as int."""
    out, pos = [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos: pos + n], pos + n
        elif wire == 5:
            val, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        elif wire == 1:
            val, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        else:
            raise ArtifactError(f"checkpoint index corrupt (protobuf wire type {wire})")
        out.append((field, val))
    return out


def _parse_entry(name: str, value: bytes) -> TensorEntry:
    dtype_code, shape, shard, offset, size = 0, [], 0, 0, 0
    for field, val in _proto_fields(value):
        if field == 1:
            dtype_code = int(val)
        elif field == 2:
            for f2, dim in _proto_fields(val):
                if f2 == 2:   # TensorShapeProto.dim
                    shape.append(int(dict(_proto_fields(dim)).get(1, 0)))
        elif field == 3:
            shard = int(val)
        elif field == 4:
            offset = int(val)
        elif field == 5:
            size = int(val)
    if dtype_code not in DTYPES:
        raise ArtifactError(f"checkpoint tensor {name!r} has unsupported dtype code {dtype_code}")
    return TensorEntry(name, DTYPES[dtype_code], tuple(shape), shard, offset, size)


# -- table reading -----------------------------------------------------------

def _block(data: bytes, offset: int, size: int) -> bytes:
    if offset + size + BLOCK_TRAILER_SIZE > len(data):
        raise ArtifactError("checkpoint index truncated (block past the end of the file)")
    if data[offset + size] != 0:
        raise ArtifactError("checkpoint index uses a compressed block; only uncompressed tables are read")
    return data[offset: offset + size]


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one block, prefix compression undone."""
    if len(block) < 4:
        raise ArtifactError("checkpoint index corrupt (block too small)")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    if end < 0:
        raise ArtifactError("checkpoint index corrupt (restart array)")
    out, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + block[pos: pos + unshared]
        pos += unshared
        out.append((key, block[pos: pos + vlen]))
        pos += vlen
    return out


def read_index(index_path: str | Path) -> dict[str, TensorEntry]:
    """Every tensor entry of a checkpoint ``.index`` file, by name."""
    data = Path(index_path).read_bytes()
    if len(data) < FOOTER_SIZE or struct.unpack_from("<Q", data, len(data) - 8)[0] != MAGIC:
        raise ArtifactError(f"{index_path}: not a TensorFlow checkpoint index (bad magic number)")
    footer = data[-FOOTER_SIZE:]
    _, pos = _varint(footer, 0)          # meta-index handle: not needed
    _, pos = _varint(footer, pos)
    idx_off, pos = _varint(footer, pos)
    idx_size, _ = _varint(footer, pos)
    entries: dict[str, TensorEntry] = {}
    for _, handle in _block_entries(_block(data, idx_off, idx_size)):
        off, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        for key, value in _block_entries(_block(data, off, size)):
            if not key:                 # "" holds the BundleHeaderProto
                continue
            name = key.decode("utf-8")
            entries[name] = _parse_entry(name, value)
    return entries


def read_checkpoint(prefix: str | Path, skip: tuple[str, ...] = ("/Adam",)) -> dict[str, np.ndarray]:
    """All tensors of the checkpoint ``prefix`` (``prefix + ".index"`` etc.)
    as numpy arrays; names containing any of ``skip`` (optimiser state) are
    left out."""
    prefix = str(prefix)
    index, data_path = Path(prefix + ".index"), Path(prefix + DATA_SUFFIX)
    for p in (index, data_path):
        if not p.is_file():
            raise ArtifactError(f"checkpoint file missing: {p}")
    entries = read_index(index)
    raw = data_path.read_bytes()
    out = {}
    for name, e in entries.items():
        if any(s in name for s in skip):
            continue
        if e.shard != 0:
            raise ArtifactError(f"checkpoint tensor {name!r} is in shard {e.shard}; only one shard is read")
        n = int(np.prod(e.shape, dtype=np.int64)) if e.shape else 1
        if e.size != n * e.dtype.itemsize or e.offset + e.size > len(raw):
            raise ArtifactError(f"checkpoint tensor {name!r}: size or offset does not fit the data file")
        out[name] = np.frombuffer(raw, e.dtype, n, e.offset).reshape(e.shape).copy()
    return out


# -- table writing (tests build small checkpoints with this) ----------------

def _entry_proto(dtype: np.dtype, shape: tuple[int, ...], offset: int, size: int) -> bytes:
    dims = b"".join(b"\x12" + _put_varint(len(d)) + d
                    for d in (b"\x08" + _put_varint(s) for s in shape))
    msg = b"\x08" + _put_varint(_DTYPE_CODES[np.dtype(dtype)])
    msg += b"\x12" + _put_varint(len(dims)) + dims
    if offset:
        msg += b"\x20" + _put_varint(offset)
    msg += b"\x28" + _put_varint(size)
    return msg


def _write_block(entries: list[tuple[bytes, bytes]], restart_every: int = 16) -> bytes:
    out, restarts, prev = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += _put_varint(shared) + _put_varint(len(key) - shared) + _put_varint(len(value))
        out += key[shared:] + value
        prev = key
    restarts = restarts or [0]
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def write_checkpoint(prefix: str | Path, tensors: dict[str, np.ndarray]) -> None:
    """Write ``tensors`` as a TF-format checkpoint (one data block, one shard)."""
    prefix = str(prefix)
    data, entries = bytearray(), [(b"", b"\x08\x01")]   # header: num_shards = 1
    for name in sorted(tensors):
        arr = np.asarray(tensors[name], order="C")   # (ascontiguousarray makes scalars 1-d)
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        entries.append((name.encode(), _entry_proto(dt, arr.shape, len(data), arr.nbytes)))
        data += arr.astype(dt.newbyteorder("<"), copy=False).tobytes()
    Path(prefix + DATA_SUFFIX).write_bytes(bytes(data))
    table = bytearray()
    block = _write_block(entries)
    data_handle = _put_varint(0) + _put_varint(len(block))
    table += block + b"\x00\x00\x00\x00\x00"
    meta = _write_block([])
    meta_handle = _put_varint(len(table)) + _put_varint(len(meta))
    table += meta + b"\x00\x00\x00\x00\x00"
    index = _write_block([(entries[-1][0] + b"\x00", data_handle)])
    index_handle = _put_varint(len(table)) + _put_varint(len(index))
    table += index + b"\x00\x00\x00\x00\x00"
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + struct.pack("<Q", MAGIC)
    Path(prefix + ".index").write_bytes(bytes(table + footer))
