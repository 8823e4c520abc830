"""What the MXNet backends share: importing mxnet, explicit contexts, and checkpoints
(``prefix-symbol.json`` + ``prefix-EPOCH.params``) found, verified and loaded with their
batch-norm statistics matched to the symbol.

MXNet is retired upstream; its last release (1.9.1) needs numpy < 1.24, so it lives in an
environment of its own (``pip install 'facekit[mxnet]'``, see the README). Only the MXNet
backends import this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BackendError, DeviceError, ModelError, ModelNotFoundError
from .zoo import ModelSpec, ResolvedModel, Task, resolve, sha256_of, spec_for_sha256
from .zoo.table import MODELS

__all__ = [
    "Checkpoint",
    "import_mxnet",
    "load_checkpoint",
    "mx_context",
    "resolve_checkpoint",
    "unfused",
]

_LOG = logging.getLogger(__name__)
_PARAMS = re.compile(r"^(?P<prefix>.+)-(?P<epoch>\d{4})\.params$")


def import_mxnet() -> Any:
    """The ``mxnet`` module.

    Raises:
        BackendError: mxnet is not installed; it needs its own environment.
    """
    try:
        import mxnet
    except ImportError as exc:
        raise BackendError(
            f"this backend needs MXNet, which is not installed ({exc}). MXNet 1.9.1 needs "
            "numpy < 1.24: install it in a separate environment with "
            "pip install 'facekit[mxnet]', or convert the checkpoint to ONNX "
            "(facekit models convert-mxnet) and use the ONNX backend"
        ) from None
    return mxnet


def mx_context(device: str) -> Any:
    """The ``mx.Context`` for ``"cpu"``, ``"gpu"``, ``"gpu:N"`` (or ``"cuda"``/``"cuda:N"``).

    Raises:
        DeviceError: an unknown device, or a GPU this MXNet build cannot use.
    """
    mx = import_mxnet()
    if device == "cpu":
        return mx.cpu()
    match = re.fullmatch(r"(?:gpu|cuda)(?::(\d+))?", device)
    if match is None:
        raise DeviceError(f"unknown device {device!r}; use 'cpu' or 'gpu:N'")
    index = int(match.group(1) or 0)
    available = mx.context.num_gpus()
    if index >= available:
        raise DeviceError(
            f"device {device!r} requested but this MXNet sees {available} GPU(s) (a CPU-only "
            "build, or no GPU); use device='cpu'"
        )
    return mx.gpu(index)


@contextlib.contextmanager
def unfused() -> Iterator[None]:
    """Bind MXNet executors inside this block without the MKL-DNN subgraph backend.

    MXNet 1.9.1's fused MKL-DNN graph leaves an internal layer's output (ArcFace's
    ``fc1_output``) in a blocked layout from the second forward pass on, and reading it
    then fails ("We can't generate TBlob for MKLDNN data"). The setting is read when an
    executor is bound, so it is set for the bind only and restored after.
    """
    name = "MXNET_SUBGRAPH_BACKEND"
    before = os.environ.get(name)
    os.environ[name] = "NONE"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A verified MXNet checkpoint on disk.

    Attributes:
        model: the resolved files, ``(symbol, params)``, with their zoo spec if listed.
        prefix: the checkpoint prefix (``.../mnet.25``).
        epoch: the epoch number of the params file.
    """

    model: ResolvedModel
    prefix: Path
    epoch: int

    @property
    def symbol_path(self) -> Path:
        """``prefix-symbol.json``."""
        return self.model.paths[0]

    @property
    def params_path(self) -> Path:
        """``prefix-EPOCH.params``."""
        return self.model.paths[1]


def resolve_checkpoint(
    model: str | os.PathLike[str],
    *,
    epoch: int | None,
    task: Task | None,
    model_dir: str | os.PathLike[str] | None,
    download: bool | None,
    progress: bool,
) -> Checkpoint:
    """Find and verify an MXNet checkpoint given as a zoo name or a prefix.

    Args:
        model: a zoo name, or a prefix ``DIR/NAME`` for ``NAME-symbol.json`` and
            ``NAME-EPOCH.params`` in ``DIR``.
        epoch: the params epoch; ``None`` takes the only (or latest) one.
        task: if given, a zoo model of another task is refused.

    Raises:
        ModelNotFoundError: a file is missing.
        ChecksumError: a zoo file's sha256 is wrong.
        ModelError: a zoo model of another task.
    """
    if isinstance(model, str) and model in {spec.name for spec in MODELS}:
        found = resolve(model, task=task, model_dir=model_dir, download=download, progress=progress)
        symbol, params = _order(found.paths)
        by_path = dict(zip(found.paths, found.sha256, strict=True))
        return _checkpoint(symbol, params, found.spec, (by_path[symbol], by_path[params]))
    prefix = Path(model).expanduser()
    named = _PARAMS.match(prefix.name)
    if prefix.name.endswith("-symbol.json"):
        prefix = prefix.with_name(prefix.name[: -len("-symbol.json")])
    elif named is not None:  # the params file itself
        epoch = int(named["epoch"]) if epoch is None else epoch
        prefix = prefix.with_name(named["prefix"])
    symbol = prefix.with_name(prefix.name + "-symbol.json")
    if not symbol.is_file():
        raise ModelNotFoundError(f"no MXNet checkpoint at prefix {prefix}: {symbol} is missing")
    params = _params_file(prefix, epoch)
    digests = (sha256_of(symbol), sha256_of(params))
    listed = spec_for_sha256(digests[1])
    if listed is not None and task is not None and listed.task != task:
        raise ModelError(f"{params} is {listed.name}, a {listed.task} model, not a {task} model")
    return _checkpoint(symbol, params, listed, digests)


def _checkpoint(
    symbol: Path, params: Path, spec: ModelSpec | None, digests: tuple[str, str]
) -> Checkpoint:
    named = _PARAMS.match(params.name)
    if named is None:
        raise ModelError(f"{params} is not named PREFIX-EPOCH.params")
    return Checkpoint(
        ResolvedModel(spec, (symbol, params), digests),
        params.parent / named["prefix"],
        int(named["epoch"]),
    )


def _order(paths: tuple[Path, ...]) -> tuple[Path, Path]:
    symbol = next((p for p in paths if p.name.endswith("-symbol.json")), None)
    params = next((p for p in paths if p.name.endswith(".params")), None)
    if symbol is None or params is None:
        raise ModelError(f"{paths} is not an MXNet checkpoint (symbol.json + .params)")
    return symbol, params


def _params_file(prefix: Path, epoch: int | None) -> Path:
    if epoch is not None:
        path = prefix.with_name(f"{prefix.name}-{epoch:04d}.params")
        if not path.is_file():
            raise ModelNotFoundError(f"no params file for epoch {epoch}: {path} is missing")
        return path
    candidates = sorted(prefix.parent.glob(f"{prefix.name}-[0-9][0-9][0-9][0-9].params"))
    if not candidates:
        raise ModelNotFoundError(f"no {prefix.name}-EPOCH.params file next to {prefix}")
    if len(candidates) > 1:
        _LOG.info(
            "%s: %d epochs found, using the latest, %s", prefix, len(candidates), candidates[-1]
        )
    return candidates[-1]


_BN_STATS = (("_running_mean", "_moving_mean"), ("_running_var", "_moving_var"))


def load_checkpoint(
    checkpoint: Checkpoint, output: str | None = None
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Symbol, arg params and aux params of ``checkpoint``, with the aux (batch-norm
    statistics) names matched to the symbol's.

    Args:
        output: take this internal output (``fc1_output``) as the symbol instead of the
            saved outputs.

    Checkpoints in the wild name batch-norm statistics ``*_moving_mean/var`` in one file and
    ``*_running_mean/var`` in the other; a name the symbol wants that the params file has
    under the other spelling is renamed (logged at debug level).

    Raises:
        ModelError: the files are not an MXNet checkpoint, or parameters are missing.
    """
    mx = import_mxnet()
    try:
        symbol = mx.sym.load(str(checkpoint.symbol_path))
        saved = mx.nd.load(str(checkpoint.params_path))
    except Exception as exc:  # mxnet raises MXNetError and others for bad files
        raise ModelError(f"{checkpoint.prefix} is not a loadable MXNet checkpoint: {exc}") from None
    if not isinstance(saved, dict):
        raise ModelError(f"{checkpoint.params_path} holds no named parameters")
    if output is not None:
        outputs = symbol.get_internals().list_outputs()
        if output not in outputs:
            near = [name for name in outputs if name.startswith(output.split("_")[0])][:8]
            raise ModelError(
                f"{checkpoint.symbol_path} has no layer output {output!r} (similar: "
                f"{', '.join(near) or 'none'})"
            )
        symbol = symbol.get_internals()[output]
    args: dict[str, Any] = {}
    aux: dict[str, Any] = {}
    for key, value in saved.items():
        kind, _, name = key.partition(":")
        if kind == "arg":
            args[name] = value
        elif kind == "aux":
            aux[name] = value
    renamed = 0
    for name in symbol.list_auxiliary_states():
        if name in aux:
            continue
        for one, other in _BN_STATS:
            for old, new in ((one, other), (other, one)):
                if name.endswith(new) and name[: -len(new)] + old in aux:
                    aux[name] = aux.pop(name[: -len(new)] + old)
                    renamed += 1
    if renamed:
        _LOG.debug(
            "%s: renamed %d batch-norm statistics to the symbol's names", checkpoint.prefix, renamed
        )
    missing = [n for n in symbol.list_auxiliary_states() if n not in aux]
    missing += [n for n in symbol.list_arguments() if n not in args and n != "data"]
    missing = [n for n in missing if not n.endswith("_label")]
    if missing:
        raise ModelError(
            f"{checkpoint.params_path} lacks {len(missing)} parameters of its symbol "
            f"({', '.join(missing[:5])}...): the two files do not belong together"
        )
    return symbol, args, aux
