"""The model zoo: a table of model specs and verified, cached model files.

See `MODELS` for the table, `resolve` for how a name or path becomes files.
"""

from .download import download_file, sha256_of
from .spec import Conversion, ModelFile, ModelSpec, Source, Task
from .store import (
    ENV_CACHE,
    ENV_HOME,
    ENV_OFFLINE,
    MODEL_PACKAGE_GROUP,
    ResolvedModel,
    cache_dir,
    default_model,
    get_spec,
    local_files,
    resolve,
    resolve_dir,
    search_dirs,
    spec_for_sha256,
    verify,
)
from .table import DEFAULT_MODELS, MODELS

__all__ = [
    "DEFAULT_MODELS",
    "ENV_CACHE",
    "ENV_HOME",
    "ENV_OFFLINE",
    "MODELS",
    "MODEL_PACKAGE_GROUP",
    "Conversion",
    "ModelFile",
    "ModelSpec",
    "ResolvedModel",
    "Source",
    "Task",
    "cache_dir",
    "default_model",
    "download_file",
    "get_spec",
    "local_files",
    "resolve",
    "resolve_dir",
    "search_dirs",
    "sha256_of",
    "spec_for_sha256",
    "verify",
]
