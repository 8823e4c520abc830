"""What the zoo knows about a model: files with sha256, sources, licence, preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..types import Thresholds

__all__ = ["Conversion", "ModelFile", "ModelSpec", "Source", "Task"]

Task = Literal["detection", "recognition"]
"""What a model does: find faces, or embed aligned crops."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a file can be downloaded from.

    Attributes:
        url: the official download address.
        member: path of the file inside the archive at ``url`` (a zip), or ``None`` when
            ``url`` is the file itself. A member at another folder depth with the same
            file name is accepted too (packs differ in whether they wrap files in a folder).
        archive_sha256: sha256 of the archive itself, checked before it is opened.
        archive_size: size of the archive in bytes.
    """

    url: str
    member: str | None = None
    archive_sha256: str | None = None
    archive_size: int | None = None


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of a model.

    Attributes:
        name: file name on disk (``det_10g.onnx``).
        sha256: hex digest every copy must match before it is used; ``None`` when the
            publisher gives none: then the first copy seen is pinned (see
            `facekit.zoo.pins`) and later copies must match it.
        size: size in bytes (``None``: not published).
        sources: official download sources, tried in order.
        aliases: other names the same bytes are distributed under (looked for too).
    """

    name: str
    sha256: str | None
    size: int | None
    sources: tuple[Source, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Conversion:
    """A file facekit makes from a model's downloaded file on first use, and runs instead.

    The converter is called as ``converter(source, target)`` with the verified source file
    (the model's only file) and a path to write; it must be deterministic (the same source
    gives the same bytes). The result is cached under ``converted/<source sha256>/`` in the
    cache directory and checked against ``output.sha256`` (or, while that is ``None``, the
    digest pinned at the first conversion) on every later load.

    Attributes:
        converter: ``"module:function"`` of the converter, imported only when a conversion
            is needed (``facekit.dlib_resnet:dat_to_onnx``).
        output: the converted file: its name, and its sha256 and size as recorded from a
            conversion of the published source (``None``: pinned on first conversion).
    """

    converter: str
    output: ModelFile


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A zoo entry.

    Attributes:
        name: zoo name (``scrfd_10g``).
        task: "detection" or "recognition".
        backend: registry name of the backend that runs it (``scrfd``, ``arcface``...).
        files: the model's files.
        license: the licence of the weights, as published.
        research_only: the weights may not be used commercially.
        description: one line for ``facekit models list``.
        pack: the InsightFace pack the files ship in (``buffalo_l``), if any.
        input_size: network input ``(width, height)``; for detectors with a dynamic input,
            the size facekit letterboxes to by default.
        color: channel order the network expects.
        mean: subtracted from 0..255 pixel values before ``/ std``.
        std: divisor after the mean is subtracted.
        embedding_dim: ``D`` for recognition models.
        template: alignment template name for recognition models.
        thresholds: calibrated verification thresholds (recognition), with protocol.
        architecture: network the weights belong to, for backends that build it
            themselves (torch: ``ir_50``, ``inception_resnet_v1``).
        provenance: where the facts above come from.
        convert: the file the backend runs is made from ``files`` on first use (see
            `Conversion`); ``None``: the backend runs ``files`` themselves.
    """

    name: str
    task: Task
    backend: str
    files: tuple[ModelFile, ...]
    license: str
    research_only: bool
    description: str
    pack: str | None = None
    input_size: tuple[int, int] = (640, 640)
    color: Literal["RGB", "BGR"] = "RGB"
    mean: float = 127.5
    std: float = 128.0
    embedding_dim: int | None = None
    template: str | None = None
    thresholds: Thresholds | None = None
    architecture: str | None = None
    provenance: str = ""
    convert: Conversion | None = None

    @property
    def size(self) -> int:
        """Total bytes of the model's files (those with a published size)."""
        return sum(f.size or 0 for f in self.files)
