"""The thresholds file: the small JSON document ``facekit calibrate`` writes and
``FaceRecognizer(thresholds="calib.json")`` reads.

The file records the embedder it was made with (name and weights sha256): loading it for
another embedder is an error, since thresholds do not carry over between models. This
module needs nothing from ``facekit.evaluation`` (which makes such files), so the
recogniser can read one without importing the evaluation tools.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._atomic import write_atomically
from .errors import ConfigError
from .types import Thresholds

if TYPE_CHECKING:
    from .protocols import Embedder

__all__ = ["CalibrationFile", "load_thresholds"]

_FORMAT = "facekit-thresholds"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class CalibrationFile:
    """Calibrated thresholds with what they were measured on.

    Attributes:
        thresholds: the two thresholds and their protocol.
        embedder: name of the embedder.
        embedder_sha256: its weights' sha256.
        detector: name of the detector that found the faces.
        target_far: the false-accept rate ``same`` was chosen for.
        likely_accuracy: accuracy at ``likely`` on the pairs.
        same_far: measured FAR at ``same``.
        same_tar: measured TAR at ``same``.
    """

    thresholds: Thresholds
    embedder: str
    embedder_sha256: str
    detector: str
    target_far: float
    likely_accuracy: float
    same_far: float
    same_tar: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "likely": self.thresholds.likely,
            "same": self.thresholds.same,
            "protocol": self.thresholds.protocol,
            "embedder": self.embedder,
            "embedder_sha256": self.embedder_sha256,
            "detector": self.detector,
            "target_far": self.target_far,
            "likely_accuracy": self.likely_accuracy,
            "same_far": self.same_far,
            "same_tar": self.same_tar,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON file atomically (`facekit._atomic.write_atomically`): a failed
        write leaves the previous file as it was.

        Raises:
            OSError: the folder or the file cannot be written.
        """
        target = Path(path)
        write_atomically(target, (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        return target


def load_thresholds(path: str | os.PathLike[str], embedder: Embedder | None = None) -> Thresholds:
    """The thresholds of a calibration file.

    Args:
        embedder: if given, the file must have been made with it (same weights sha256).

    Raises:
        ConfigError: unreadable or malformed file, or one made with another embedder.
    """
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read thresholds file {source}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ConfigError(f"{source} is not a facekit thresholds file (facekit calibrate)")
    if data.get("version") != _VERSION:
        raise ConfigError(f"{source} has version {data.get('version')}, this facekit reads 1")
    try:
        thresholds = Thresholds(
            float(data["likely"]), float(data["same"]), str(data.get("protocol", ""))
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source} lacks valid 'likely'/'same' values: {exc}") from None
    if embedder is not None and data.get("embedder_sha256") != embedder.sha256:
        raise ConfigError(
            f"{source} was calibrated for {data.get('embedder')!r} (sha256 "
            f"{str(data.get('embedder_sha256'))[:12]}...), not for {embedder.name!r} (sha256 "
            f"{embedder.sha256[:12]}...): thresholds do not carry over between models"
        )
    return thresholds
