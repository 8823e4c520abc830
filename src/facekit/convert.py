"""A way off MXNet: convert a RetinaFace or ArcFace MXNet checkpoint to ONNX.

The result runs in facekit's core install: a detector on `RetinaFace` (ONNX Runtime path),
an embedder on `ArcFace`. Needs the ``[mxnet]`` environment (MXNet's own exporter, and
``onnx`` < 1.18, which it is written against). Three things MXNet's exporter gets wrong
for these checkpoints are fixed on the way:

- ``SoftmaxActivation(mode="channel")`` (RetinaFace's score heads) has no converter; it
  is the same as ``softmax(axis=1)``, which has one.
- ``BatchNorm(fix_gamma=True)`` ignores its stored gamma in MXNet, but the exporter copies
  it; such gammas are set to 1.
- ``LeakyReLU(act_type="prelu")`` slopes of shape ``(C,)`` must be ``(C, 1, 1)`` to
  broadcast over ``(N, C, H, W)`` in ONNX.
- ``FullyConnected`` without a ``flatten`` attribute flattens its input in MXNet (the
  default), but the exporter reads a missing attribute as false and multiplies the last
  axis only; the attribute is written out.

Every conversion is checked: the ONNX file and MXNet run on the same random input and must
agree (relative error below ``tolerance``), or nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._atomic import replacing
from ._mxnet import Checkpoint, import_mxnet, load_checkpoint, resolve_checkpoint, unfused
from .errors import BackendError, ModelError

__all__ = ["Conversion", "mxnet_to_onnx"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Conversion:
    """What `mxnet_to_onnx` wrote.

    Attributes:
        path: the ONNX file.
        task: "detection" or "recognition".
        input_shape: ``(N, 3, H, W)`` of the graph (``N`` is ``-1`` when dynamic).
        max_relative_error: largest ``|onnx - mxnet| / max|mxnet|`` over the outputs on
            the check input.
    """

    path: Path
    task: Literal["detection", "recognition"]
    input_shape: tuple[int, int, int, int]
    max_relative_error: float


def mxnet_to_onnx(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    epoch: int | None = None,
    task: Literal["detection", "recognition"] | None = None,
    input_size: tuple[int, int] | None = None,
    layer: str = "fc1",
    model_dir: str | os.PathLike[str] | None = None,
    tolerance: float = 1e-4,
) -> Conversion:
    """Convert an MXNet RetinaFace or ArcFace checkpoint to an ONNX file.

    Args:
        model: zoo name or checkpoint prefix.
        output: the ONNX file to write (atomically: temporary name, then renamed).
        epoch: params epoch of a prefix (default: the only or latest).
        task: "detection" (RetinaFace) or "recognition" (ArcFace); default: the zoo's,
            else read from the symbol (RetinaFace's nine ``face_rpn_*`` heads).
        input_size: graph input ``(width, height)``; default 640×640 for detectors
            (fixed), 112×112 for recognisers (with a dynamic batch).
        layer: the embedding layer of a recogniser (``fc1`` → ``fc1_output``).
        model_dir: directory searched for zoo files first.
        tolerance: largest relative difference between ONNX and MXNet outputs accepted.

    Raises:
        BackendError: MXNet or a suitable ``onnx`` is missing.
        ModelError: the checkpoint cannot be converted, or the result disagrees with MXNet.
    """
    mx = import_mxnet()
    try:
        import onnx
    except ImportError:
        raise BackendError(
            "converting needs the onnx package: pip install 'facekit[mxnet]'"
        ) from None
    checkpoint = resolve_checkpoint(
        model, epoch=epoch, task=task, model_dir=model_dir, download=None, progress=True
    )
    found_task = task or _task_of(checkpoint)
    recognition = found_task == "recognition"
    symbol, args, aux = load_checkpoint(
        checkpoint, output=f"{layer}_output" if recognition else None
    )
    width, height = input_size or ((112, 112) if recognition else (640, 640))
    shape = (1, 3, height, width)
    symbol, args = _exportable(mx, symbol, args)
    target = Path(output)
    with replacing(target) as temporary:
        try:
            mx.onnx.export_model(
                symbol,
                {**args, **aux},
                in_shapes=[shape],
                in_types=[np.float32],
                onnx_file_path=str(temporary),
                dynamic=recognition,  # recognisers take batches; RetinaFace one image
                dynamic_input_shapes=[(None, 3, height, width)] if recognition else None,
            )
        except Exception as exc:  # the exporter raises AttributeError, KeyError, ...
            raise ModelError(f"MXNet could not export {checkpoint.prefix}: {exc}") from None
        # protobuf whatever the extension (onnx would pick JSON or text by it)
        graph = onnx.load(temporary, format="protobuf")
        _fix_prelu_slopes(graph)
        onnx.save(graph, temporary, format="protobuf")
        error = _check(mx, symbol, args, aux, temporary, shape)
        if error > tolerance:
            raise ModelError(
                f"the ONNX conversion of {checkpoint.prefix} disagrees with MXNet (relative "
                f"error {error:.2e} > {tolerance:.0e}); nothing was written"
            )
    _LOG.info("converted %s to %s (relative error %.1e)", checkpoint.prefix, target, error)
    return Conversion(target, found_task, (-1 if recognition else 1, 3, height, width), error)


def _task_of(checkpoint: Checkpoint) -> Literal["detection", "recognition"]:
    """The zoo's task for the checkpoint, else what its symbol's heads say."""
    if checkpoint.model.spec is not None:
        return checkpoint.model.spec.task
    graph = json.loads(checkpoint.symbol_path.read_text(encoding="utf-8"))
    heads = [n["name"] for n in graph.get("nodes", []) if n["name"].startswith("face_rpn_")]
    return "detection" if heads else "recognition"


def _exportable(mx: Any, symbol: Any, args: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The symbol with softmax for SoftmaxActivation and explicit FullyConnected
    flattening, and args with fixed gammas at 1."""
    graph = json.loads(symbol.tojson())
    args = dict(args)
    for node in graph["nodes"]:
        attrs = node.setdefault("attrs", {})
        if node["op"] == "SoftmaxActivation":
            if attrs.get("mode", "instance") != "channel":
                raise ModelError(f"cannot convert SoftmaxActivation mode {attrs.get('mode')!r}")
            node["op"] = "softmax"
            node["attrs"] = {"axis": "1"}
        elif node["op"] == "FullyConnected":
            attrs.setdefault("flatten", "True")
        elif node["op"] == "BatchNorm":
            fixed = str(attrs.get("fix_gamma", "True")).lower() in ("true", "1")
            gamma = f"{node['name']}_gamma"
            if fixed and gamma in args:
                args[gamma] = mx.nd.ones_like(args[gamma])
    return mx.sym.load_json(json.dumps(graph)), args


def _fix_prelu_slopes(graph: Any) -> None:
    """Give 1-D PRelu slopes the ``(C, 1, 1)`` shape ONNX broadcasting needs."""
    from onnx import numpy_helper

    slopes = {node.input[1] for node in graph.graph.node if node.op_type == "PRelu"}
    for index, initializer in enumerate(graph.graph.initializer):
        if initializer.name in slopes and len(initializer.dims) == 1:
            value = numpy_helper.to_array(initializer).reshape(-1, 1, 1)
            graph.graph.initializer[index].CopyFrom(
                numpy_helper.from_array(value, initializer.name)
            )
    initializers = {i.name for i in graph.graph.initializer}
    inputs = [i for i in graph.graph.input if i.name not in initializers]
    del graph.graph.input[:]
    graph.graph.input.extend(inputs)


def _check(
    mx: Any,
    symbol: Any,
    args: dict[str, Any],
    aux: dict[str, Any],
    path: Path,
    shape: tuple[int, ...],
) -> float:
    """Largest relative output difference, ONNX against MXNet, on one random input."""
    from ._onnx import open_session

    blob = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    module = mx.mod.Module(symbol=symbol, context=mx.cpu(), label_names=None)
    with unfused():
        module.bind(data_shapes=[("data", shape)], for_training=False)
    module.set_params(args, aux, allow_missing=False, allow_extra=True)
    module.forward(mx.io.DataBatch([mx.nd.array(blob)]), is_train=False)
    expected = [out.asnumpy() for out in module.get_outputs()]
    session = open_session(path)
    got = session.run(None, {session.get_inputs()[0].name: blob})
    if len(got) != len(expected):
        raise ModelError(f"the ONNX graph has {len(got)} outputs, MXNet's {len(expected)}")
    return max(
        float(np.abs(g.reshape(e.shape) - e).max()) / max(float(np.abs(e).max()), 1e-12)
        for g, e in zip(got, expected, strict=True)
    )
