"""What the documentation and the packaging promise.

- Every facekit snippet of ``docs/migrating.md`` runs as written, from a checkout with the
  shared models and photos in ``../shared``, and prints exactly the output the page shows
  under it.
- Every third-party package the library imports is declared (core or an extra), and every
  core dependency is imported by the library; what the tests import is in ``[dev]``.
- A WIDER FACE ``.mat`` file without SciPy gives a `BackendError` naming the extra.
- Files and folders the README's commands create are ignored by git.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from facekit.errors import BackendError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the [dev] extra installs tomli
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
MIGRATING = REPO / "docs" / "migrating.md"

_FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_TITLE = re.compile(r'title="([^"]+)"')


def _fenced_blocks(page: Path) -> list[tuple[str, str]]:
    """``(title, code)`` of every fenced block of ``page`` that has a title, in order."""
    blocks = []
    for match in _FENCE.finditer(page.read_text(encoding="utf-8")):
        title = _TITLE.search(match.group(2))
        if title:
            blocks.append((title.group(1), match.group(3)))
    return blocks


def _facekit_snippets(page: Path) -> list[tuple[str, str]]:
    """``(code, expected output)`` of each ``title="facekit"`` block; the output is the
    ``title="output"`` block right after it."""
    blocks = _fenced_blocks(page)
    snippets = []
    for index, (title, code) in enumerate(blocks):
        if title != "facekit":
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else ("", "")
        assert following[0] == "output", f"facekit snippet {len(snippets) + 1} has no output"
        snippets.append((code, following[1]))
    return snippets


SNIPPETS = _facekit_snippets(MIGRATING)


@pytest.fixture
def in_checkout_beside_shared(
    shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A working directory whose ``../shared`` is the shared folder, as for a checkout."""
    (tmp_path / "shared").symlink_to(shared_dir, target_is_directory=True)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    return checkout


def test_migrating_page_covers_the_three_libraries() -> None:
    titles = [title for title, _ in _fenced_blocks(MIGRATING)]
    for rival in ("insightface", "deepface", "face_recognition"):
        assert titles.count(rival) >= 2, rival
    assert len(SNIPPETS) >= 8
    assert "_OUTPUT" not in MIGRATING.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("number", range(1, len(SNIPPETS) + 1))
def test_migrating_snippet_prints_what_the_page_shows(
    number: int, in_checkout_beside_shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, expected = SNIPPETS[number - 1]
    exec(compile(code, f"docs/migrating.md, facekit snippet {number}", "exec"), {})
    assert capsys.readouterr().out.strip() == expected.strip()


def test_bgr_arrays_read_as_rgb_lose_what_the_page_says(models_dir: Path, data_dir: Path) -> None:
    """The page's "0.617 drops to 0.589" when cv2 arrays are passed without channel_order."""
    import cv2

    from facekit import FaceRecognizer

    fr = FaceRecognizer(
        detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d", model_dir=models_dir
    )
    a, b = (cv2.imread(str(data_dir / f"openface/lennon-{n}.jpg")) for n in (1, 2))
    assert round(fr.verify(a, b).similarity, 3) == 0.589
    assert round(fr.verify(a, b, channel_order="bgr").similarity, 3) == 0.617
    text = MIGRATING.read_text(encoding="utf-8")
    assert "drops from 0.617 to\n0.589" in text or "drops from 0.617 to 0.589" in text


# --- packaging ----------------------------------------------------------------------------


def _pyproject() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (``"a-b[x]>=1"`` -> a_b)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-.]+", "_", name.group(0)).lower()


def _third_party_imports(folder: Path) -> set[str]:
    """Top-level modules imported anywhere under ``folder`` that are neither the standard
    library nor facekit."""
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "facekit"}


def _distributions(modules: set[str]) -> set[str]:
    """The installed distributions providing ``modules`` (a module's own name when it is not
    installed here, as mxnet outside its environment)."""
    owners = metadata.packages_distributions()
    return {_name(owners.get(module, [_UNLISTED.get(module, module)])[0]) for module in modules}


_UNLISTED = {"dlib": "dlib-bin"}
"""Distributions whose wheels do not record the modules they install (no top_level.txt),
by module."""


def _extra_closure(extras: dict[str, list[str]], extra: str) -> set[str]:
    """Distribution names an extra installs, following ``facekit[...]`` references."""
    names = set()
    for requirement in extras[extra]:
        if _name(requirement) == "facekit":
            inner = re.search(r"\[(.*)\]", requirement)
            assert inner, requirement
            for other in inner.group(1).split(","):
                names |= _extra_closure(extras, other.strip())
        else:
            names.add(_name(requirement))
    return names


def test_library_imports_are_declared_and_core_dependencies_used() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    core = {_name(r) for r in project["dependencies"]}
    extras: dict[str, list[str]] = project["optional-dependencies"]
    declared = core.union(*(_extra_closure(extras, name) for name in extras))
    used = _distributions(_third_party_imports(REPO / "src" / "facekit"))
    assert used - declared == set(), "imported by facekit but not declared"
    assert core - used == set(), "core dependencies facekit never imports"
    # SciPy is used by evaluation only: an extra, not the core.
    assert "scipy" in _extra_closure(extras, "eval")
    assert "scipy" not in core


def test_test_imports_are_in_the_dev_extra() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    extras: dict[str, list[str]] = project["optional-dependencies"]
    installed = {_name(r) for r in project["dependencies"]} | _extra_closure(extras, "dev")
    installed |= {"pytest", "mxnet"}  # mxnet: tests/test_mxnet.py, in the [mxnet] environment
    local = {path.stem for path in (REPO / "tests").glob("*.py")}  # tests import each other
    used = _distributions(_third_party_imports(REPO / "tests") - local)
    assert used - installed == set()


def test_mxnet_extra_pins_only_what_its_environment_needs() -> None:
    """The [mxnet] environment holds back core packages that must support numpy < 1.24;
    a pin on anything else (scikit-image, once core, now a test tool) installs it for
    nothing."""
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    core = {_name(r) for r in project["dependencies"]}
    for requirement in project["optional-dependencies"]["mxnet"]:
        assert _name(requirement) in core | {"mxnet", "onnx"}, requirement


def test_wider_mat_without_scipy_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facekit.evaluation.detection import read_boxes

    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    (tmp_path / "wider_face_val.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(BackendError, match=r"facekit\[eval\]") as caught:
        read_boxes(tmp_path / "wider_face_val.mat")
    assert "wider_face_val.mat" in str(caught.value)


def _readme_made_paths() -> set[str]:
    """What the README's commands and snippets create in the checkout: virtual
    environments (``-m venv X``), ``--out X`` files, ``--draw X`` folders and gallery files
    (``gallery="X"``)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    made = set(re.findall(r"-m venv (\S+)", text))
    made |= set(re.findall(r"--(?:out|draw) ([^\s`\]]+)", text))
    made |= set(re.findall(r'gallery="([^"]+)"', text))
    return made


def test_files_the_readme_creates_are_ignored() -> None:
    made = _readme_made_paths()
    assert {".venv", ".venv-mxnet", ".venv-compare", "shared_pairs.csv"} <= made
    git = shutil.which("git")
    assert git is not None, "git is needed to check .gitignore"
    probes = [f"{p}/pyvenv.cfg" if p.startswith(".venv") else p for p in sorted(made)]
    done = subprocess.run(
        [git, "check-ignore", "--no-index", "--stdin", "-v", "-n"],
        input="\n".join(probes) + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    not_ignored = [line.split("\t")[1] for line in done.stdout.splitlines() if line[:2] == "::"]
    assert not_ignored == [], f"not in .gitignore: {not_ignored}"
