"""Verified re-exports of ONNX files whose input shape is fixed.

Published exports often fix what the network does not need fixed. The shared MobileFaceNet
and InsightFace's SCRFD pack files fix the batch at 1, so every crop costs its own
``session.run``; CenterFace's export fixes its whole input at 10×3×32×32 and lists its weights
as graph inputs, which onnxruntime then cannot fold into the convolutions (it ran twice as
slowly). `dynamic_copy` edits such a graph with the ``onnx`` package, checks that the copy
gives the original's outputs on the original's input shape, and caches it under
``<facekit cache>/rebatched/<sha256 of the original>.v<edit format>[.size][.weights].onnx``
(the optional edits below) with the copy's own sha256 in a ``.sha256`` file beside it
(checked on every reuse). Whatever goes wrong, it raises `CopyError` saying why.

Graph edits (each one leaves an input of the original's shape computing exactly what it did):

- the input's and outputs' dim 0 become the symbolic ``batch``;
- with ``free_size``, the input's dims 2 and 3 become ``height`` and ``width`` and the
  outputs' dims 2 and 3 unknown (input and outputs N×C×H×W);
- with ``drop_initializer_inputs``, weights listed among the graph inputs (as old exporters
  did) are inputs no more;
- a ``Reshape`` to a constant shape starting with the fixed batch starts with 0 instead
  (copy dim 0);
- a ``Resize`` to constant ``sizes`` resizes by the equivalent ``scales``;
- SCRFD's heads ``Transpose(perm=[2, 3, 0, 1]) → Reshape([-1, C])``, which fold the batch
  into the rows, become ``Transpose([0, 2, 3, 1]) → Reshape([0, -1, C])``: per image the
  same rows in the same order, with a leading batch axis;
- intermediate shape annotations (``value_info``) are dropped for onnxruntime to re-infer.

Any other ``Reshape`` whose constant shape mixes the batch into another axis, and with
``free_size`` any ``Reshape`` to a constant shape, makes the graph not editable.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import write_atomically
from .zoo.download import sha256_of
from .zoo.store import rebatched_dir

__all__ = ["TOLERANCE", "CopyError", "dynamic_copy"]

_LOG = logging.getLogger(__name__)

TOLERANCE = 1e-5
"""Largest absolute difference allowed between the copy's and the original's outputs."""

_BATCH = "batch"
_SIZE = ("height", "width")
_FORMAT = 1
"""Version of the graph edits, part of the cached copy's name: a facekit that edits graphs
differently does not reuse an older copy."""
_ELEMENTWISE = frozenset({"Sigmoid", "Relu", "Exp", "Identity", "Tanh"})
"""Unary ops that keep the layout of their input (a folded head's Sigmoid)."""


class CopyError(Exception):
    """The copy cannot be made, or differs from the original; the message says why."""


def dynamic_copy(
    path: Path,
    sha256: str,
    *,
    check_input: np.ndarray,
    free_size: bool = False,
    drop_initializer_inputs: bool = False,
) -> Path | bytes:
    """A copy of the ONNX model at ``path`` with a symbolic batch (and optionally height and
    width), made or reused.

    Args:
        path: the original model, whose single input has a fixed batch ``B`` (or already a
            symbolic one, then ``B`` is 1 here).
        sha256: the original's verified sha256 (names the cached copy).
        check_input: ``(N, ...)`` float32 inputs of the original's shape and value range,
            ``N`` a multiple of ``B`` and at least ``2·B``. The copy must give, on the whole
            batch at once, what the original gives on ``B`` rows at a time (max abs
            difference below `TOLERANCE` on every output).
        free_size: also make the input's height and width symbolic (input and outputs
            ``N×C×H×W``, a fully convolutional network). The copy must then also run on an
            input twice as high and wide and give outputs twice as high and wide.
        drop_initializer_inputs: drop the weights listed among the graph inputs from them.

    Returns:
        The cached copy's path; its bytes when the cache cannot be written (debug-logged).

    Raises:
        CopyError: ``onnx`` is missing, the graph cannot be edited, or the copy's outputs
            differ from the original's.
    """
    edits = (".size" if free_size else "") + (".weights" if drop_initializer_inputs else "")
    target = rebatched_dir() / f"{sha256}.v{_FORMAT}{edits}.onnx"
    record = target.with_name(f"{target.name}.sha256")
    if _intact(target, record):
        return target
    try:
        import onnx
    except ImportError:
        raise CopyError("the onnx package is not installed") from None
    try:
        model = onnx.load(str(path))
        _make_dynamic(
            model, onnx, free_size=free_size, drop_initializer_inputs=drop_initializer_inputs
        )
        data: bytes = model.SerializeToString()
        _check_outputs(path, data, check_input, free_size=free_size)
    except CopyError:
        raise
    except Exception as exc:  # onnx/onnxruntime raise their own types for graphs they reject
        raise CopyError(f"re-export failed: {exc}") from None
    try:
        write_atomically(target, data)
        write_atomically(record, hashlib.sha256(data).hexdigest().encode())
    except OSError as exc:
        _LOG.debug("%s: cannot cache its copy (%s): using it from memory", path.name, exc)
        return data
    _LOG.debug("%s: re-exported to %s", path.name, target)
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


def _make_dynamic(model: Any, onnx: Any, *, free_size: bool, drop_initializer_inputs: bool) -> None:
    """Edit ``model`` (an ``onnx.ModelProto``) in place; see the module docstring."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    if drop_initializer_inputs:
        kept = [value for value in graph.input if value.name not in initializers]
        del graph.input[:]
        graph.input.extend(kept)
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise CopyError(f"{len(inputs)} graph inputs, expected 1")
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims:
        raise CopyError("the input has no batch dimension")
    batch = dims[0].dim_value if dims[0].HasField("dim_value") else 1
    if free_size and len(dims) != 4:
        raise CopyError(f"the input has {len(dims)} dimensions, not N×C×H×W")
    shapes = _static_shapes(onnx.shape_inference.infer_shapes(model).graph)
    dims[0].dim_param = _BATCH
    if free_size:
        dims[2].dim_param, dims[3].dim_param = _SIZE
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
        if free_size:
            raise CopyError(
                f"Reshape {node.name or node.output[0]!r} to the constant shape "
                f"{shape.tolist()} fixes the height and width"
            )
        new_shape = _batched_shape(node, shape, batch, producers, consumers, onnx)
        name = f"{node.input[1]}__{node.output[0]}__batched"
        graph.initializer.append(onnx.numpy_helper.from_array(new_shape, name))
        node.input[1] = name
        if new_shape.shape[0] == 3:
            folded.add(node.output[0])
    for node in graph.node:  # nodes are topologically sorted
        if node.op_type in _ELEMENTWISE and node.input[0] in folded:
            folded.add(node.output[0])
    for output in graph.output:
        _free_output(output, batch, folded=output.name in folded, free_size=free_size)
    del graph.value_info[:]
    onnx.checker.check_model(model)


def _free_output(output: Any, batch: int, *, folded: bool, free_size: bool) -> None:
    """Make the batch (and with ``free_size`` the height and width) of a graph output
    symbolic; a ``folded`` output's ``(rows, C)`` becomes ``(batch, rows, C)``."""
    dims = output.type.tensor_type.shape.dim
    if folded:
        columns = dims[-1].dim_value if dims else 0
        output.type.tensor_type.shape.ClearField("dim")
        output.type.tensor_type.shape.dim.add().dim_param = _BATCH
        output.type.tensor_type.shape.dim.add().dim_param = "rows"
        output.type.tensor_type.shape.dim.add().dim_value = columns
        return
    if len(dims) < 2 or (dims[0].HasField("dim_value") and dims[0].dim_value != batch):
        raise CopyError(f"output {output.name!r} has no batch dimension of {batch}")
    dims[0].dim_param = _BATCH
    if free_size:
        if len(dims) != 4:
            raise CopyError(f"output {output.name!r} has {len(dims)} dimensions, not N×C×H×W")
        dims[2].Clear()
        dims[3].Clear()


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
    """Turn a ``Resize`` to constant ``sizes`` into the same ``Resize`` by ``scales``
    (batch scale 1), which follows any batch."""
    if len(node.input) < 4 or not node.input[3]:
        return  # resized by scales already
    sizes = _constant(node.input[3], initializers, producers, onnx)
    if sizes is None:
        return  # sizes computed from Shape ops: follow the batch already
    before = shapes.get(node.input[0])
    if before is None or len(before) != sizes.size or 0 in before:
        raise CopyError(
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
    node: Any,
    shape: np.ndarray,
    batch: int,
    producers: dict[str, Any],
    consumers: dict[str, int],
    onnx: Any,
) -> np.ndarray:
    """The constant target shape of ``node`` rewritten to keep the batch (fixed at
    ``batch`` in the original) as axis 0."""
    if shape.ndim != 1 or shape.size == 0:
        raise CopyError(f"Reshape {node.name!r} has shape {shape.tolist()}")
    if shape[0] == batch:
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
    raise CopyError(
        f"Reshape {node.name or node.output[0]!r} to {shape.tolist()} folds the batch into "
        "another axis"
    )


def _check_outputs(
    original: Path, copy: bytes, check_input: np.ndarray, *, free_size: bool
) -> None:
    """Raise `CopyError` unless the copy on the whole batch equals the original on its
    fixed batch of rows at a time (and, with ``free_size``, runs at twice the size)."""
    import onnxruntime as ort

    batch = np.ascontiguousarray(check_input, dtype=np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    before = ort.InferenceSession(str(original), sess_options=options, providers=providers)
    after = ort.InferenceSession(copy, sess_options=options, providers=providers)
    fixed = before.get_inputs()[0].shape[0]
    rows = fixed if isinstance(fixed, int) and fixed > 0 else 1
    if batch.ndim < 1 or batch.shape[0] < 2 * rows or batch.shape[0] % rows:
        raise CopyError(
            f"check input of shape {batch.shape}: needs a multiple of {rows} rows, at least "
            f"{2 * rows}"
        )
    name_before, name_after = before.get_inputs()[0].name, after.get_inputs()[0].name
    batched = after.run(None, {name_after: batch})
    for start in range(0, batch.shape[0], rows):
        alone = before.run(None, {name_before: batch[start : start + rows]})
        for position, (want, got) in enumerate(zip(alone, batched, strict=True)):
            if want.ndim != got.ndim:  # a head that folded the batch of 1 into its rows
                want = want[None]
            for row in range(rows):
                _compare(position, start + row, got[start + row], want[row])
    if free_size:
        larger = np.tile(batch[:1], (1, 1, 2, 2))
        for position, (small, big) in enumerate(
            zip(batched, after.run(None, {name_after: larger}), strict=True)
        ):
            expected = (1, small.shape[1], 2 * small.shape[2], 2 * small.shape[3])
            if big.shape != expected:
                raise CopyError(
                    f"output {position} on an input twice as high and wide has shape "
                    f"{big.shape}, not {expected}"
                )


def _compare(position: int, row: int, got: np.ndarray, want: np.ndarray) -> None:
    """Raise `CopyError` unless output ``position`` of image ``row`` is the original's."""
    if got.shape != want.shape:
        raise CopyError(
            f"output {position} has shape {got.shape} per image, the original {want.shape}"
        )
    difference = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not difference < TOLERANCE:
        raise CopyError(
            f"output {position} of image {row} differs by {difference:.2e} "
            f"(allowed {TOLERANCE:.0e})"
        )
