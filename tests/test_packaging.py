"""The sdist and the wheel carry the built front end: both build and install with no npm on PATH,
as does ``pip install .`` from a checkout whose bundle is built, and the package imported from the
install finds its bundle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ("widget.js", "widget.css", "standalone.js", "frozen.js")


def without_npm() -> dict[str, str]:
    """An environment whose PATH holds only this venv's executables (no npm, no node)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PATH": str(Path(sys.executable).parent)}


def run(*args: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> tuple[Path, Path]:
    if not (ROOT / "onthefly_nb" / "static" / "widget.js").exists():
        pytest.fail("build the front end first (npm run build, or make install)")
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT), cwd=out, env=without_npm())
    return next(out.glob("*.tar.gz")), next(out.glob("*.whl"))


def test_the_sdist_and_the_wheel_carry_the_bundle(artefacts):
    sdist, wheel = artefacts
    with tarfile.open(sdist) as archive:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in archive.getnames()}
    assert {f"onthefly_nb/static/{name}" for name in BUNDLE} <= names
    with zipfile.ZipFile(wheel) as archive:
        assert {f"onthefly_nb/static/{name}" for name in BUNDLE} <= set(archive.namelist())


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of this checkout's tracked files and its built bundle: a clone after ``npm run build``."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    dest = tmp_path_factory.mktemp("clone") / "onthefly-nb"
    for name in [*tracked.stdout.splitlines(), *(f"onthefly_nb/static/{n}" for n in BUNDLE)]:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.mark.parametrize("which", ["sdist", "wheel", "checkout"])
def test_each_installs_without_npm_and_the_installed_package_finds_its_bundle(artefacts, checkout, which, tmp_path):
    artefact = {"sdist": artefacts[0], "wheel": artefacts[1], "checkout": checkout}[which]
    target = tmp_path / "site"
    env = without_npm()
    run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
        str(target), str(artefact), cwd=tmp_path, env=env)
    shown = run(sys.executable, "-c", "from onthefly_nb.dashboard import widget; print(widget.STATIC);"
                "print((widget.STATIC / 'widget.js').stat().st_size, len(str(widget.Dashboard._esm)))",
                cwd=tmp_path, env={**env, "PYTHONPATH": str(target)}).split()
    assert Path(shown[0]).resolve() == target / "onthefly_nb" / "static", "the bundle came from the install"
    assert int(shown[1]) > 100_000 and int(shown[2]) == int(shown[1]), "the widget's module is the built bundle"


def test_npm_run_vsix_packs_an_installable_extension(tmp_path):
    """``make vsix`` (``npm run vsix``): a .vsix whose manifest contributes the dashboard renderer."""
    for old in (ROOT / "widgets").glob("*.vsix"):
        old.unlink()
    done = subprocess.run(["npm", "run", "vsix"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"npm run vsix failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (vsix,) = (ROOT / "widgets").glob("onthefly-dashboard-*.vsix")
    try:
        with zipfile.ZipFile(vsix) as archive:
            names = set(archive.namelist())
            manifest = json.loads(archive.read("extension/package.json"))
        assert {"extension.vsixmanifest", "extension/out/renderer.js", "extension/out/extension.js"} <= names
        renderer = manifest["contributes"]["notebookRenderer"][0]
        assert renderer["mimeTypes"] == ["application/vnd.onthefly.dashboard+json"]
        assert not any(n.startswith("extension/src/") or "node_modules" in n for n in names), "only what runs"
    finally:
        vsix.unlink()
