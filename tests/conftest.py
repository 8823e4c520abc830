"""Shared fixtures. Real weights and photos live in ``../shared`` (or ``$FACEKIT_SHARED``);
when they are missing the run fails: facekit's tests never skip real-model checks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Files facekit writes to its cache (re-exported models, pins) go to a folder of this
    test run, never to the user's cache; tests that need their own set it again."""
    old = os.environ.get("FACEKIT_CACHE")
    os.environ["FACEKIT_CACHE"] = str(tmp_path_factory.mktemp("facekit-cache"))
    yield
    if old is None:
        del os.environ["FACEKIT_CACHE"]
    else:
        os.environ["FACEKIT_CACHE"] = old


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared folder with ``models/`` and ``data/``."""
    path = Path(os.environ.get("FACEKIT_SHARED", REPO.parent / "shared")).resolve()
    for needed in (path / "models", path / "data"):
        if not needed.is_dir():
            pytest.fail(
                f"{needed} is missing: real weights and photos are required "
                "(set FACEKIT_SHARED to the folder holding models/ and data/)"
            )
    return path


@pytest.fixture(scope="session")
def models_dir(shared_dir: Path) -> Path:
    return shared_dir / "models"


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    return shared_dir / "data"


_MEASURED: list[str] = []


@pytest.fixture(scope="session")
def report() -> Callable[[str], None]:
    """Record a measured number (AUC, accuracy ...) to print in the run's summary."""
    return _MEASURED.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _MEASURED:
        terminalreporter.section("measured on the real weights and photos")
        for line in _MEASURED:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test counts as a failure unless FACEKIT_ALLOW_SKIPS=1."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and os.environ.get("FACEKIT_ALLOW_SKIPS") != "1" and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_line(
                f"FAILED: {skipped} test(s) skipped; real-model tests must run "
                "(FACEKIT_ALLOW_SKIPS=1 to allow)",
                red=True,
            )
