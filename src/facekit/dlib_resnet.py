"""dlib's face recognition ResNet as ONNX, without dlib: read the serialised network
(``dlib_face_recognition_resnet_model_v1.dat``) and write an equivalent ONNX graph.

The ``.dat`` file is dlib's own serialisation of the ``anet_type`` of dlib's
``examples/dnn_face_recognition_ex.cpp`` (a 29-convolution ResNet on 150×150 RGB chips,
128-d output). That format has no table of contents: like dlib, the reader walks the
documented architecture and checks every record against it (layer kind, filter count,
kernel, stride, padding, tensor shapes), so a truncated, corrupted or different network
stops with `ModelError` at the first record that does not fit. The format carries no
checksum; a corrupted weight is caught only when it is not finite or implausibly large
(the zoo checks the file's sha256 before converting).

Format facts (dlib ``dlib/serialize.h``, ``dlib/float_details.h``, ``dlib/cuda/tensor.h``,
``dlib/dnn/core.h``, ``layers.h``, ``input.h``, ``loss.h``):

- integers: one control byte (``0x80`` set for a negative value, low nibble the byte count
  1..8), then that many little-endian magnitude bytes; strings: length, then the bytes;
  ``bool``: the character ``'1'`` or ``'0'``; ``float``/``double``: a mantissa (int64) and a
  binary exponent (int16), value ``mantissa · 2**exponent``.
- tensors: version 2, four dimensions, then little-endian IEEE float32 values.
- a network is written outside-in: the loss layer's version and details, then each
  wrapper's version (``add_layer``, ``add_tag_layer``, ``add_skip_layer``) down to the
  input layer, then each ``add_layer``'s details and bookkeeping from the input up.

dlib's ``add_prev`` adds tensors of different shapes as if the smaller were padded with
zeros at the end of each axis. The down-sampling blocks need it: they add the 2×2-pooled
input (``C`` channels) to a strided 3×3 convolution without padding (up to ``2C``
channels), which on an even side gives one row and column fewer (8 → 4 pooled, 3
convolved; 4 → 2 and 1). The graph pads explicitly.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import write_atomically
from .errors import BackendError, ModelError

__all__ = ["EMBEDDING_DIM", "INPUT_SIZE", "dat_to_onnx"]

_LOG = logging.getLogger(__name__)

INPUT_SIZE = 150
"""Side of the square RGB chip the network takes, in pixels."""

EMBEDDING_DIM = 128
"""Length of dlib's face descriptor."""

# Graph metadata fixed so that the same .dat always gives the same bytes.
_OPSET = 13
_IR_VERSION = 7
_PRODUCER = "facekit.dlib_resnet"
_PRODUCER_VERSION = "1"

# dlib's float_details exponents for infinities and NaN
_SPECIAL_EXPONENT = 32000

# Weights of a trained network are small; a flipped exponent byte is not.
_MAX_ABS_WEIGHT = 1e4


class _Malformed(Exception):
    """The bytes do not follow dlib's format or the expected network (message says where)."""


# ---------------------------------------------------------------------------------------
# the documented architecture, from the input up


@dataclass(frozen=True, slots=True)
class _Conv:
    filters: int
    kernel: int
    stride: int

    @property
    def padding(self) -> int:
        # dlib's con_ default: no padding when strided, else half the kernel
        return 0 if self.stride != 1 else self.kernel // 2


@dataclass(frozen=True, slots=True)
class _Affine:
    pass


@dataclass(frozen=True, slots=True)
class _Relu:
    pass


@dataclass(frozen=True, slots=True)
class _MaxPool:
    window: int
    stride: int


@dataclass(frozen=True, slots=True)
class _AvgPool:
    window: int  # 0: the whole input (avg_pool_everything)
    stride: int


@dataclass(frozen=True, slots=True)
class _Fc:
    outputs: int


@dataclass(frozen=True, slots=True)
class _AddPrev:
    tag: int


@dataclass(frozen=True, slots=True)
class _Tag:
    tag: int


@dataclass(frozen=True, slots=True)
class _Skip:
    tag: int


_Step = _Conv | _Affine | _Relu | _MaxPool | _AvgPool | _Fc | _AddPrev | _Tag | _Skip


def _block(filters: int, stride: int) -> list[_Step]:
    """``block<N, affine, stride>``: con, affine, relu, con, affine."""
    return [_Conv(filters, 3, stride), _Affine(), _Relu(), _Conv(filters, 3, 1), _Affine()]


def _ares(filters: int) -> list[_Step]:
    """``ares<N>``: relu(add_prev1(block(tag1(x)))), the identity residual."""
    return [_Tag(1), *_block(filters, 1), _AddPrev(1), _Relu()]


def _ares_down(filters: int) -> list[_Step]:
    """``ares_down<N>``: relu(add_prev2(avg_pool(skip1(tag2(block_s2(tag1(x))))))): the
    strided block plus the 2×2-pooled input."""
    return [
        _Tag(1),
        *_block(filters, 2),
        _Tag(2),
        _Skip(1),
        _AvgPool(2, 2),
        _AddPrev(2),
        _Relu(),
    ]


def _architecture() -> tuple[_Step, ...]:
    """dnn_face_recognition_ex.cpp's ``anet_type`` below ``loss_metric``, input first."""
    steps: list[_Step] = [_Conv(32, 7, 2), _Affine(), _Relu(), _MaxPool(3, 2)]
    steps += _ares(32) * 3  # alevel4
    steps += _ares_down(64) + _ares(64) * 3  # alevel3
    steps += _ares_down(128) + _ares(128) * 2  # alevel2
    steps += _ares_down(256) + _ares(256) * 2  # alevel1
    steps += _ares_down(256)  # alevel0
    steps += [_AvgPool(0, 1), _Fc(EMBEDDING_DIM)]
    return tuple(steps)


_ARCHITECTURE = _architecture()


def _describe(step: _Step) -> str:
    """A step as dlib's templates spell it, for error messages."""
    if isinstance(step, _Conv):
        return f"con<{step.filters},{step.kernel},{step.kernel},{step.stride},{step.stride}>"
    if isinstance(step, _MaxPool | _AvgPool):
        name = "max_pool" if isinstance(step, _MaxPool) else "avg_pool"
        w, s = step.window, step.stride
        return f"{name}<{w},{w},{s},{s}>"
    if isinstance(step, _Fc):
        return f"fc_no_bias<{step.outputs}>"
    if isinstance(step, _AddPrev | _Tag | _Skip):
        return f"{type(step).__name__.lstrip('_').lower()}{step.tag}"
    return type(step).__name__.lstrip("_").lower()


# ---------------------------------------------------------------------------------------
# dlib's serialisation primitives


class _Reader:
    """Sequential reader of dlib-serialised bytes; every read is bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.offset = 0

    def _take(self, count: int, what: str) -> bytes:
        end = self.offset + count
        if count < 0 or end > len(self._data):
            raise _Malformed(
                f"truncated: {what} needs {count} bytes at byte {self.offset}, "
                f"but the file ends at byte {len(self._data)}"
            )
        chunk = self._data[self.offset : end]
        self.offset = end
        return chunk

    def integer(self, what: str, max_bytes: int = 8, signed: bool = True) -> int:
        """dlib's packed integer of a type ``max_bytes`` wide."""
        at = self.offset
        control = self._take(1, what)[0]
        size = control & 0x0F
        negative = bool(control & 0x80)
        if control & 0x70 or not 1 <= size <= max_bytes or (negative and not signed):
            raise _Malformed(f"{what} at byte {at} is not a dlib integer (byte 0x{control:02x})")
        value = int.from_bytes(self._take(size, what), "little")
        return -value if negative else value

    def expect_integer(self, what: str, allowed: tuple[int, ...], max_bytes: int = 4) -> int:
        at = self.offset
        value = self.integer(what, max_bytes)
        if value not in allowed:
            raise _Malformed(f"{what} at byte {at} is {value}, expected one of {allowed}")
        return value

    def string(self, what: str) -> str:
        length = self.integer(what, signed=False)
        raw = self._take(length, what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise _Malformed(f"{what} before byte {self.offset} is not text") from None

    def boolean(self, what: str) -> bool:
        at = self.offset
        char = self._take(1, what)
        if char not in (b"0", b"1"):
            raise _Malformed(f"{what} at byte {at} is not a dlib bool ({char!r})")
        return char == b"1"

    def real(self, what: str) -> float:
        """dlib's float_details: ``mantissa · 2**exponent`` (int64, int16)."""
        at = self.offset
        mantissa = self.integer(what, 8)
        exponent = self.integer(what, 2)
        if exponent >= _SPECIAL_EXPONENT:
            raise _Malformed(f"{what} at byte {at} is infinite or not a number")
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            raise _Malformed(f"{what} at byte {at} overflows a double") from None

    def dims(self, what: str) -> tuple[int, int, int, int]:
        shape = tuple(self.integer(what, 8) for _ in range(4))
        if any(size < 0 for size in shape):
            raise _Malformed(f"{what}: negative tensor dimensions {shape}")
        return shape[0], shape[1], shape[2], shape[3]

    def tensor(self, what: str) -> np.ndarray:
        """A ``resizable_tensor``: version 2, (n, k, nr, nc), float32 little-endian."""
        self.expect_integer(f"{what} tensor version", (2,))
        shape = self.dims(what)
        count = math.prod(shape)
        raw = self._take(4 * count, f"{what} ({'×'.join(map(str, shape))} floats)")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: version 1 and its four dimensions (a view into params)."""
        self.expect_integer(f"{what} alias version", (1,))
        return self.dims(what)

    def end(self) -> None:
        extra = len(self._data) - self.offset
        if extra:
            raise _Malformed(f"{extra} unexpected bytes after the network's end at {self.offset}")


# ---------------------------------------------------------------------------------------
# reading the network


@dataclass(frozen=True, slots=True)
class _Weights:
    """What a step contributes to the graph (arrays float32)."""

    step: _Step
    arrays: tuple[np.ndarray, ...] = ()
    relu_after: bool = False  # con_6's fused relu
    disabled: bool = False  # relu_2 / affine_2 switched off by dlib's layer fusion


@dataclass(frozen=True, slots=True)
class _Network:
    means: tuple[float, float, float]  # dlib's avg_red, avg_green, avg_blue
    layers: tuple[_Weights, ...]


def _checked(array: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        raise _Malformed(f"{what} has non-finite values")
    if array.size and float(np.max(np.abs(array))) > _MAX_ABS_WEIGHT:
        raise _Malformed(f"{what} has implausible values (|w| up to {np.max(np.abs(array)):.3g})")
    return array


def _split(params: np.ndarray, shapes: list[tuple[int, ...]], what: str) -> list[np.ndarray]:
    """Cut a layer's flat ``params`` into consecutive arrays of the given shapes."""
    flat = params.reshape(-1)
    needed = sum(math.prod(shape) for shape in shapes)
    if flat.size != needed:
        raise _Malformed(f"{what}: params hold {flat.size} values, expected {needed}")
    parts, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        parts.append(_checked(flat[start : start + size].reshape(shape), what))
        start += size
    return parts


def _read_conv(reader: _Reader, step: _Conv, channels: int, where: str) -> _Weights:
    version = reader.string(f"{where} version")
    if version not in ("con_4", "con_5", "con_6"):
        raise _Malformed(f"{where}: expected {_describe(step)} (con_4..6), found {version!r}")
    params = reader.tensor(f"{where} params")
    found = (
        reader.integer(f"{where} num_filters"),
        reader.integer(f"{where} nr"),
        reader.integer(f"{where} nc"),
        reader.integer(f"{where} stride_y", 4),
        reader.integer(f"{where} stride_x", 4),
        reader.integer(f"{where} padding_y", 4),
        reader.integer(f"{where} padding_x", 4),
    )
    k, s, p = step.kernel, step.stride, step.padding
    if found != (step.filters, k, k, s, s, p, p):
        raise _Malformed(
            f"{where}: expected {_describe(step)} padding {p}, found filters, nr, nc, strides, "
            f"paddings {found}"
        )
    filters = reader.alias(f"{where} filters")
    biases = reader.alias(f"{where} biases")
    for name in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        reader.real(f"{where} {name}_multiplier")
    use_bias = reader.boolean(f"{where} use_bias") if version != "con_4" else True
    use_relu = reader.boolean(f"{where} use_relu") if version == "con_6" else False
    weight_shape = (step.filters, channels, k, k)
    if filters != weight_shape:
        raise _Malformed(f"{where}: filters are {filters}, expected {weight_shape}")
    shapes: list[tuple[int, ...]] = [weight_shape]
    if use_bias:
        if biases != (1, step.filters, 1, 1):
            raise _Malformed(f"{where}: biases are {biases}, expected (1, {step.filters}, 1, 1)")
        shapes.append((step.filters,))
    return _Weights(step, tuple(_split(params, shapes, where)), relu_after=use_relu)


def _read_affine(reader: _Reader, step: _Affine, channels: int, where: str) -> _Weights:
    """``affine_`` / ``affine_2``, or a ``bn_con2`` converted the way dlib's affine_ does."""
    version = reader.string(f"{where} version")
    if version == "bn_con2":
        return _read_batch_norm(reader, step, channels, where)
    if version not in ("affine_", "affine_2"):
        raise _Malformed(
            f"{where}: expected affine (affine_, affine_2, bn_con2), found {version!r}"
        )
    params = reader.tensor(f"{where} params")
    gamma = reader.alias(f"{where} gamma")
    beta = reader.alias(f"{where} beta")
    mode = reader.integer(f"{where} mode", 4)
    disabled = reader.boolean(f"{where} disabled") if version == "affine_2" else False
    if disabled:
        return _Weights(step, disabled=True)
    expected = (1, channels, 1, 1)
    if mode != 0 or gamma != expected or beta != expected:
        raise _Malformed(
            f"{where}: expected a per-channel (CONV_MODE) affine of {channels} channels, found "
            f"mode {mode}, gamma {gamma}, beta {beta}"
        )
    return _Weights(step, tuple(_split(params, [(channels,), (channels,)], where)))


def _read_batch_norm(reader: _Reader, step: _Affine, channels: int, where: str) -> _Weights:
    """A training-time ``bn_con2`` folded as dlib's ``affine_(const bn_&)`` folds it:
    ``g = gamma / sqrt(running_var + eps)``, ``b = beta - g · running_mean`` (float32)."""
    params = reader.tensor(f"{where} params")
    gamma = reader.alias(f"{where} gamma")
    beta = reader.alias(f"{where} beta")
    reader.tensor(f"{where} means")
    reader.tensor(f"{where} invstds")
    running_means = reader.tensor(f"{where} running_means")
    running_variances = reader.tensor(f"{where} running_variances")
    reader.integer(f"{where} num_updates", signed=False)
    reader.integer(f"{where} running_stats_window_size", signed=False)
    for name in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        reader.real(f"{where} {name}_multiplier")
    eps = reader.real(f"{where} eps")
    expected = (1, channels, 1, 1)
    if gamma != expected or beta != expected:
        raise _Malformed(f"{where}: gamma {gamma}, beta {beta}; expected {expected}")
    scale, shift = _split(params, [(channels,), (channels,)], where)
    mean = _checked(running_means.reshape(-1), f"{where} running_means")
    variance = _checked(running_variances.reshape(-1), f"{where} running_variances")
    if mean.size != channels or variance.size != channels or eps <= 0:
        raise _Malformed(f"{where}: running statistics do not fit {channels} channels")
    g = (scale / np.sqrt(variance + np.float32(eps))).astype(np.float32)
    return _Weights(step, (g, (shift - g * mean).astype(np.float32)))


def _read_pool(reader: _Reader, step: _MaxPool | _AvgPool, where: str) -> _Weights:
    expected_version = "max_pool_2" if isinstance(step, _MaxPool) else "avg_pool_2"
    version = reader.string(f"{where} version")
    if version != expected_version:
        raise _Malformed(f"{where}: expected {_describe(step)}, found {version!r}")
    found = (
        reader.integer(f"{where} nr"),
        reader.integer(f"{where} nc"),
        reader.integer(f"{where} stride_y", 4),
        reader.integer(f"{where} stride_x", 4),
        reader.integer(f"{where} padding_y", 4),
        reader.integer(f"{where} padding_x", 4),
    )
    w, s = step.window, step.stride
    # dlib's default pooling padding: none when strided, else half the window
    p = 0 if s != 1 else w // 2
    if found != (w, w, s, s, p, p):
        raise _Malformed(
            f"{where}: expected {_describe(step)}, found window, strides, paddings {found}"
        )
    return _Weights(step)


def _read_relu(reader: _Reader, step: _Relu, where: str) -> _Weights:
    version = reader.string(f"{where} version")
    if version not in ("relu_", "relu_2"):
        raise _Malformed(f"{where}: expected relu (relu_, relu_2), found {version!r}")
    disabled = reader.boolean(f"{where} disabled") if version == "relu_2" else False
    return _Weights(step, disabled=disabled)


def _read_fc(reader: _Reader, step: _Fc, inputs: int, where: str) -> _Weights:
    version = reader.string(f"{where} version")
    if version not in ("fc_2", "fc_3"):
        raise _Malformed(f"{where}: expected {_describe(step)} (fc_2, fc_3), found {version!r}")
    outputs = reader.integer(f"{where} num_outputs", signed=False)
    found_inputs = reader.integer(f"{where} num_inputs", signed=False)
    params = reader.tensor(f"{where} params")
    reader.alias(f"{where} weights")
    reader.alias(f"{where} biases")
    bias_mode = reader.integer(f"{where} bias_mode", 4)
    for name in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        reader.real(f"{where} {name}_multiplier")
    if version == "fc_3":
        reader.boolean(f"{where} use_bias")
    if (outputs, found_inputs, bias_mode) != (step.outputs, inputs, 1):
        raise _Malformed(
            f"{where}: expected {_describe(step)} on {inputs} inputs (FC_NO_BIAS), found "
            f"{outputs} outputs, {found_inputs} inputs, bias mode {bias_mode}"
        )
    return _Weights(step, tuple(_split(params, [(inputs, outputs)], where)))


def _read_add_prev(reader: _Reader, step: _AddPrev, where: str) -> _Weights:
    version = reader.string(f"{where} version")
    if version != "add_prev_":
        raise _Malformed(f"{where}: expected {_describe(step)}, found {version!r}")
    return _Weights(step)


def _read_input(reader: _Reader) -> tuple[float, float, float]:
    version = reader.string("input layer")
    if version != "input_rgb_image_sized":
        raise _Malformed(f"the input layer is {version!r}, expected input_rgb_image_sized")
    means = (reader.real("avg_red"), reader.real("avg_green"), reader.real("avg_blue"))
    size = (reader.integer("input rows", signed=False), reader.integer("input columns"))
    if size != (INPUT_SIZE, INPUT_SIZE):
        raise _Malformed(f"the input is {size[0]}×{size[1]}, expected {INPUT_SIZE}×{INPUT_SIZE}")
    if not all(0.0 <= mean <= 255.0 for mean in means):
        raise _Malformed(f"implausible channel means {means}")
    return means


def _shapes(layers: tuple[_Step, ...]) -> Iterator[tuple[int, int]]:
    """``(channels, side)`` entering each step, dlib's shape rules (floor division;
    ``add_prev`` takes the larger of both inputs on every axis)."""
    channels, side = 3, INPUT_SIZE
    tags: dict[int, tuple[int, int]] = {}
    for step in layers:
        yield channels, side
        if isinstance(step, _Conv):
            side = 1 + (side + 2 * step.padding - step.kernel) // step.stride
            channels = step.filters
        elif isinstance(step, _MaxPool | _AvgPool):
            window = step.window or side
            side = 1 + (side - window) // step.stride
        elif isinstance(step, _Fc):
            channels, side = step.outputs, 1
        elif isinstance(step, _Tag):
            tags[step.tag] = (channels, side)
        elif isinstance(step, _Skip):
            channels, side = tags[step.tag]
        elif isinstance(step, _AddPrev):
            other = tags[step.tag]
            channels, side = max(channels, other[0]), max(side, other[1])


def _read_network(data: bytes) -> _Network:
    reader = _Reader(data)
    reader.expect_integer("add_loss_layer version", (1,))
    loss = reader.string("loss layer")
    if loss == "loss_metric_2":
        reader.real("loss margin")
        reader.real("loss distance threshold")
    elif loss != "loss_metric_":
        raise _Malformed(f"the loss layer is {loss!r}: not dlib's metric-learning network")
    steps = _ARCHITECTURE
    # versions of the wrappers, outermost (fc) first, down to the layer on the input
    versions: dict[int, int] = {}
    for index in range(len(steps) - 1, 0, -1):
        step = steps[index]
        what = f"layer {index} ({_describe(step)}) version"
        if isinstance(step, _Tag | _Skip):
            reader.expect_integer(what, (1,))
        else:
            versions[index] = reader.expect_integer(what, (1, 2))
    first_version = reader.expect_integer(f"layer 0 ({_describe(steps[0])}) version", (2, 3))
    means = _read_input(reader)
    layers: list[_Weights] = []
    for index, (step, (channels, side)) in enumerate(zip(steps, _shapes(steps), strict=True)):
        if isinstance(step, _Tag | _Skip):
            continue
        where = f"layer {index} ({_describe(step)})"
        layers.append(_read_layer(reader, step, channels, side, where))
        for name in ("setup_called", "gradient_input_is_stale", "output_disabled"):
            reader.boolean(f"{where} {name}")
        reader.tensor(f"{where} x_grad")
        reader.tensor(f"{where} cached_output")
        if index == 0:
            reader.tensor(f"{where} grad_final")
            if first_version == 3:
                reader.integer(f"{where} sample_expansion_factor", 4, signed=False)
        elif versions[index] == 2:
            reader.tensor(f"{where} params_grad")
    reader.end()
    return _Network(means, tuple(layers))


def _read_layer(reader: _Reader, step: _Step, channels: int, side: int, where: str) -> _Weights:
    """One ``add_layer``'s details; ``channels`` and ``side`` are its input's."""
    if isinstance(step, _Conv):
        return _read_conv(reader, step, channels, where)
    if isinstance(step, _Affine):
        return _read_affine(reader, step, channels, where)
    if isinstance(step, _Relu):
        return _read_relu(reader, step, where)
    if isinstance(step, _MaxPool | _AvgPool):
        return _read_pool(reader, step, where)
    if isinstance(step, _Fc):
        return _read_fc(reader, step, channels * side * side, where)
    if isinstance(step, _AddPrev):
        return _read_add_prev(reader, step, where)
    raise AssertionError(f"no reader for {step}")  # tags and skips carry no details


# ---------------------------------------------------------------------------------------
# writing the graph


class _GraphBuilder:
    """Nodes and initialisers with deterministic names."""

    def __init__(self, onnx_module: Any) -> None:
        self._onnx = onnx_module
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(self._onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], **attributes: Any) -> str:
        self._count += 1
        output = f"{op.lower()}_{self._count}"
        self.nodes.append(
            self._onnx.helper.make_node(op, inputs, [output], name=output, **attributes)
        )
        return output


def _padded(graph: _GraphBuilder, value: str, have: tuple[int, int], want: tuple[int, int]) -> str:
    """``value`` (channels, side) zero-padded at the end of each axis to ``want``."""
    if have == want:
        return value
    extra_channels, extra_side = want[0] - have[0], want[1] - have[1]
    pads = np.array([0, 0, 0, 0, 0, extra_channels, extra_side, extra_side], dtype=np.int64)
    name = graph.constant(f"pads_{len(graph.initializers)}", pads)
    return graph.node("Pad", [value, name], mode="constant")


def _emit(graph: _GraphBuilder, layer: _Weights, index: int, value: str) -> str:
    """Nodes of one ``add_layer`` other than ``add_prev``; returns its output's name."""
    step = layer.step
    if isinstance(step, _Conv):
        parts = ("w", "b")[: len(layer.arrays)]
        names = [
            graph.constant(f"layer{index}_{part}", a)
            for part, a in zip(parts, layer.arrays, strict=True)
        ]
        value = graph.node(
            "Conv",
            [value, *names],
            kernel_shape=[step.kernel] * 2,
            strides=[step.stride] * 2,
            pads=[step.padding] * 4,
        )
        return graph.node("Relu", [value]) if layer.relu_after else value
    if isinstance(step, _Affine):
        gamma, beta = (a.reshape(1, -1, 1, 1) for a in layer.arrays)
        value = graph.node("Mul", [value, graph.constant(f"layer{index}_gamma", gamma)])
        return graph.node("Add", [value, graph.constant(f"layer{index}_beta", beta)])
    if isinstance(step, _Relu):
        return graph.node("Relu", [value])
    if isinstance(step, _AvgPool) and step.window == 0:
        return graph.node("GlobalAveragePool", [value])
    if isinstance(step, _MaxPool | _AvgPool):
        op = "MaxPool" if isinstance(step, _MaxPool) else "AveragePool"
        return graph.node(op, [value], kernel_shape=[step.window] * 2, strides=[step.stride] * 2)
    if isinstance(step, _Fc):
        value = graph.node("Flatten", [value], axis=1)
        return graph.node("MatMul", [value, graph.constant("fc_w", layer.arrays[0])])
    raise AssertionError(f"no nodes for {step}")


def _build(network: _Network, onnx_module: Any) -> bytes:
    """The serialised ONNX model of a network read by `_read_network`, checked by onnx's
    checker; protobuf's deterministic serialisation, so equal networks give equal bytes."""
    helper = onnx_module.helper
    graph = _GraphBuilder(onnx_module)
    means = np.array(network.means, dtype=np.float32).reshape(1, 3, 1, 1)
    # dlib's input layer: (pixel - channel mean) / 256
    value = graph.node("Sub", ["input", graph.constant("rgb_means", means)])
    value = graph.node("Mul", [value, graph.constant("scale", np.array(1 / 256, np.float32))])
    tags: dict[int, tuple[str, tuple[int, int]]] = {}
    layers = iter(network.layers)
    for index, (step, shape) in enumerate(zip(_ARCHITECTURE, _shapes(_ARCHITECTURE), strict=True)):
        if isinstance(step, _Tag):
            tags[step.tag] = (value, shape)
        elif isinstance(step, _Skip):
            value = tags[step.tag][0]
        elif isinstance(step, _AddPrev):
            next(layers)
            other, other_shape = tags[step.tag]
            want = (max(shape[0], other_shape[0]), max(shape[1], other_shape[1]))
            value = graph.node(
                "Add",
                [_padded(graph, value, shape, want), _padded(graph, other, other_shape, want)],
            )
        else:
            layer = next(layers)
            if not layer.disabled:
                value = _emit(graph, layer, index, value)
    graph.nodes[-1].output[0] = "embedding"
    float32 = onnx_module.TensorProto.FLOAT
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "dlib_face_recognition_resnet_model_v1",
            [helper.make_tensor_value_info("input", float32, ["batch", 3, INPUT_SIZE, INPUT_SIZE])],
            [helper.make_tensor_value_info("embedding", float32, ["batch", EMBEDDING_DIM])],
            graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", _OPSET)],
        producer_name=_PRODUCER,
        producer_version=_PRODUCER_VERSION,
        doc_string="dlib's face recognition ResNet (public domain, Davis King), converted from "
        "dlib_face_recognition_resnet_model_v1.dat. Input: RGB 0..255, N×3×150×150 "
        "(dlib's 5-point chips, padding 0.25). Output: dlib's 128-d descriptor.",
    )
    model.ir_version = _IR_VERSION
    onnx_module.checker.check_model(model)
    return bytes(model.SerializeToString(deterministic=True))


# ---------------------------------------------------------------------------------------


def dat_to_onnx(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Convert dlib's ``dlib_face_recognition_resnet_model_v1.dat`` to an ONNX file.

    The graph takes ``input``: float32 ``(N, 3, 150, 150)``, RGB pixel values 0..255 of
    dlib-style 150×150 face chips (dlib's per-channel means and 1/256 scale are inside), and
    gives ``embedding``: float32 ``(N, 128)``, dlib's descriptor as dlib computes it (not
    re-normalised; dlib compares descriptors by Euclidean distance, 0.6 its documented
    tolerance). The same ``.dat`` always gives the same bytes.

    Args:
        source: the ``.dat`` file.
        target: the ONNX file to write (a temporary file beside it, then renamed).

    Raises:
        ModelError: ``source`` cannot be read, is truncated or corrupt, or is not this network.
        BackendError: the ``onnx`` package is not installed.
    """
    source, target = Path(source), Path(target)
    try:
        import onnx
    except ImportError:
        raise BackendError(
            "converting dlib's network needs the onnx package: pip install onnx"
        ) from None
    try:
        data = source.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read {source}: {error}") from None
    try:
        network = _read_network(data)
    except _Malformed as error:
        raise ModelError(
            f"{source} is not a usable dlib_face_recognition_resnet_model_v1.dat: {error}"
        ) from None
    payload = _build(network, onnx)
    try:
        write_atomically(target, payload)
    except OSError as error:
        raise ModelError(f"cannot write {target}: {error}") from None
    _LOG.info("converted %s to %s (%d bytes)", source, target, len(payload))
