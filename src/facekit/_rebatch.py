"""Verified re-exports of ONNX files whose batch dimension is fixed at 1.

Many published exports (the shared MobileFaceNet, InsightFace's SCRFD pack files) fix the
input's batch at 1, so every crop costs its own ``session.run``. `dynamic_batch_copy` edits
such a graph with the ``onnx`` package so the batch becomes a symbolic dimension, checks that
the copy gives the original's outputs, and caches it under
``<facekit cache>/rebatched/<sha256 of the original>.v<edit format>.onnx`` with the copy's
own sha256 in a ``.sha256`` file beside it (checked on every reuse). Whatever goes wrong,
the caller gets ``None`` and a debug log saying why, and keeps running the original at
batch 1.

Graph edits (each one leaves a batch of 1 computing exactly what it did):

- the input's and outputs' dim 0 become the symbolic ``batch``;
- a ``Reshape`` to a constant shape starting with 1 starts with 0 instead (copy dim 0);
- a ``Resize`` to constant ``sizes`` (batch 1) resizes by the equivalent ``scales``;
- SCRFD's heads ``Transpose(perm=[2, 3, 0, 1]) → Reshape([-1, C])``, which fold the batch
  into the rows, become ``Transpose([0, 2, 3, 1]) → Reshape([0, -1, C])``: per image the
  same rows in the same order, with a leading batch axis;
- intermediate shape annotations (``value_info``) are dropped for onnxruntime to re-infer.

Any other ``Reshape`` whose constant shape mixes the batch into another axis makes the graph
not re-batchable.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .zoo.download import sha256_of
from .zoo.store import rebatched_dir

__all__ = ["TOLERANCE", "dynamic_batch_copy"]

_LOG = logging.getLogger(__name__)

TOLERANCE = 1e-5
"""Largest absolute difference allowed between the copy's and the original's outputs."""

_BATCH = "batch"
_FORMAT = 1
"""Version of the graph edits, part of the cached copy's name: a facekit that edits graphs
differently does not reuse an older copy."""
_ELEMENTWISE = frozenset({"Sigmoid", "Relu", "Exp", "Identity", "Tanh"})
"""Unary ops that keep the layout of their input (a folded head's Sigmoid)."""


class _NotRebatchable(Exception):
    """The graph cannot be given a symbolic batch; the message says why."""


def dynamic_batch_copy(path: Path, sha256: str, *, check_input: np.ndarray) -> Path | None:
    """A copy of the ONNX model at ``path`` with a symbolic batch dimension, made or reused.

    Args:
        path: the original model, whose single input has a batch of 1.
        sha256: the original's verified sha256 (names the cached copy).
        check_input: ``(N, ...)`` float32 batch, ``N >= 2``, in the model's input layout.
            The copy must give, on the whole batch at once, what the original gives on each
            row alone (max abs difference below `TOLERANCE` on every output).

    Returns:
        The cached copy's path, or ``None`` (debug-logged) when ``onnx`` is missing, the
        graph cannot be re-batched, or the copy's outputs differ from the original's.
    """
    target = rebatched_dir() / f"{sha256}.v{_FORMAT}.onnx"
    record = target.with_name(f"{target.name}.sha256")
    if _intact(target, record):
        return target
    try:
        import onnx
    except ImportError:
        _LOG.debug("%s: batch stays 1: the onnx package is not installed", path.name)
        return None
    try:
        model = onnx.load(str(path))
        _make_batch_dynamic(model, onnx)
        data = model.SerializeToString()
        _check_outputs(path, data, check_input)
    except _NotRebatchable as exc:
        _LOG.debug("%s: batch stays 1: %s", path.name, exc)
        return None
    except Exception as exc:  # onnx/onnxruntime raise their own types for graphs they reject
        _LOG.debug("%s: batch stays 1: re-export failed: %s", path.name, exc)
        return None
    try:
        _write_atomically(target, data)
        _write_atomically(record, hashlib.sha256(data).hexdigest().encode())
    except OSError as exc:
        _LOG.debug("%s: batch stays 1: cannot write %s: %s", path.name, target, exc)
        return None
    _LOG.debug("%s: re-exported with a dynamic batch to %s", path.name, target)
    return target


def _intact(target: Path, record: Path) -> bool:
    """Whether a cached copy exists and still has the sha256 recorded when it was made."""
    try:
        expected = record.read_text().strip()
    except OSError:
        return False
    if target.is_file() and sha256_of(target) == expected:
        return True
    _LOG.debug("%s does not match its recorded sha256: re-exporting", target)
    return False


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _make_batch_dynamic(model: Any, onnx: Any) -> None:
    """Edit ``model`` (an ``onnx.ModelProto``) in place; see the module docstring."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise _NotRebatchable(f"{len(inputs)} graph inputs, expected 1")
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims or dims[0].dim_param or dims[0].dim_value != 1:
        raise _NotRebatchable("the input's batch is not fixed at 1")
    shapes = _static_shapes(onnx.shape_inference.infer_shapes(model).graph)
    dims[0].dim_param = _BATCH
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    folded: set[str] = set()
    for node in list(graph.node):
        if node.op_type == "Resize":
            _resize_by_scales(node, shapes, initializers, producers, graph, onnx)
        if node.op_type != "Reshape":
            continue
        shape = _constant(node.input[1], initializers, producers, onnx)
        if shape is None:
            continue  # computed from Shape ops: follows the batch already
        new_shape = _batched_shape(node, shape, producers, consumers, onnx)
        name = f"{node.input[1]}__{node.output[0]}__batched"
        graph.initializer.append(onnx.numpy_helper.from_array(new_shape, name))
        node.input[1] = name
        if new_shape.shape[0] == 3:
            folded.add(node.output[0])
    for node in graph.node:  # nodes are topologically sorted
        if node.op_type in _ELEMENTWISE and node.input[0] in folded:
            folded.add(node.output[0])
    for output in graph.output:
        out_dims = output.type.tensor_type.shape.dim
        if output.name in folded:  # (rows, C) became (batch, rows, C)
            columns = out_dims[-1].dim_value if out_dims else 0
            output.type.tensor_type.shape.ClearField("dim")
            output.type.tensor_type.shape.dim.add().dim_param = _BATCH
            output.type.tensor_type.shape.dim.add().dim_param = "rows"
            output.type.tensor_type.shape.dim.add().dim_value = columns
        elif len(out_dims) >= 2 and out_dims[0].dim_value == 1:
            out_dims[0].dim_param = _BATCH
        else:
            raise _NotRebatchable(f"output {output.name!r} has no batch dimension of 1")
    del graph.value_info[:]
    onnx.checker.check_model(model)


def _static_shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """Fully static shapes of the graph's values, by name (from its shape annotations)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(dim.HasField("dim_value") for dim in dims):
            shapes[value.name] = tuple(dim.dim_value for dim in dims)
    return shapes


def _resize_by_scales(
    node: Any,
    shapes: dict[str, tuple[int, ...]],
    initializers: dict[str, Any],
    producers: dict[str, Any],
    graph: Any,
    onnx: Any,
) -> None:
    """Turn a ``Resize`` to constant ``sizes`` (whose batch entry is 1) into the same
    ``Resize`` by ``scales`` (batch scale 1), which follows any batch."""
    if len(node.input) < 4 or not node.input[3]:
        return  # resized by scales already
    sizes = _constant(node.input[3], initializers, producers, onnx)
    if sizes is None:
        return  # sizes computed from Shape ops: follow the batch already
    before = shapes.get(node.input[0])
    if before is None or len(before) != sizes.size or 0 in before:
        raise _NotRebatchable(
            f"Resize {node.name or node.output[0]!r} has constant sizes {sizes.tolist()} and an "
            "input of unknown shape"
        )
    scales = (sizes.astype(np.float32) / np.asarray(before, dtype=np.float32)).astype(np.float32)
    name = f"{node.output[0]}__scales__batched"
    graph.initializer.append(onnx.numpy_helper.from_array(scales, name))
    node.input[2] = name
    del node.input[3]


def _constant(
    name: str, initializers: dict[str, Any], producers: dict[str, Any], onnx: Any
) -> np.ndarray | None:
    if name in initializers:
        return np.asarray(onnx.numpy_helper.to_array(initializers[name]))
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        for attribute in node.attribute:
            if attribute.name == "value":
                return np.asarray(onnx.numpy_helper.to_array(attribute.t))
    return None


def _batched_shape(
    node: Any, shape: np.ndarray, producers: dict[str, Any], consumers: dict[str, int], onnx: Any
) -> np.ndarray:
    """The constant target shape of ``node`` rewritten to keep the batch as axis 0."""
    if shape.ndim != 1 or shape.size == 0:
        raise _NotRebatchable(f"Reshape {node.name!r} has shape {shape.tolist()}")
    if shape[0] == 1:
        return np.concatenate([[0], shape[1:]]).astype(np.int64)
    transpose = producers.get(node.input[0])
    if (
        shape.tolist()[:1] == [-1]
        and shape.size == 2
        and transpose is not None
        and transpose.op_type == "Transpose"
        and consumers.get(transpose.output[0]) == 1
    ):
        perm = next(
            (
                list(onnx.helper.get_attribute_value(a))
                for a in transpose.attribute
                if a.name == "perm"
            ),
            None,
        )
        if perm is not None and len(perm) == 4 and perm[-1] == 1 and perm[0] != 0:
            del transpose.attribute[:]
            transpose.attribute.append(
                onnx.helper.make_attribute("perm", [0] + [axis for axis in perm if axis != 0])
            )
            return np.array([0, -1, shape[1]], dtype=np.int64)
    raise _NotRebatchable(
        f"Reshape {node.name or node.output[0]!r} to {shape.tolist()} folds the batch into "
        "another axis"
    )


def _check_outputs(original: Path, copy: bytes, check_input: np.ndarray) -> None:
    """Raise `_NotRebatchable` unless the copy on the whole batch equals the original per row."""
    import onnxruntime as ort

    batch = np.ascontiguousarray(check_input, dtype=np.float32)
    if batch.ndim < 1 or batch.shape[0] < 2:
        raise _NotRebatchable(f"check input of shape {batch.shape} has fewer than 2 rows")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    before = ort.InferenceSession(str(original), sess_options=options, providers=providers)
    after = ort.InferenceSession(copy, sess_options=options, providers=providers)
    name_before, name_after = before.get_inputs()[0].name, after.get_inputs()[0].name
    batched = after.run(None, {name_after: batch})
    for row in range(batch.shape[0]):
        single = before.run(None, {name_before: batch[row : row + 1]})
        for position, (want, got) in enumerate(zip(single, batched, strict=True)):
            got_row = got[row]
            want_row = want[0] if want.ndim == got.ndim else want
            if got_row.shape != want_row.shape:
                raise _NotRebatchable(
                    f"output {position} has shape {got_row.shape} per image, "
                    f"the original {want_row.shape}"
                )
            difference = float(np.max(np.abs(got_row - want_row))) if got_row.size else 0.0
            if not difference < TOLERANCE:
                raise _NotRebatchable(
                    f"output {position} of image {row} differs by {difference:.2e} "
                    f"(allowed {TOLERANCE:.0e})"
                )
