"""Found, installed and understood: the Registry metadata, what the Registry archive leaves out, the nodes'
search aliases, the template browser's thumbnails, the default models folder, and `pip install .`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hp_core.weights import locations as L

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
UI_WORKFLOWS = sorted(WORKFLOWS.glob("*.json"))


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


# ------------------------------------------------------------------------------------------ Registry

def test_pyproject_registry_fields():
    data = _pyproject()
    name = data["project"]["name"]
    # the two other HunyuanPortrait packs: "hunyuanportrait", and the id ComfyUI-HunyuanPortrait's repository maps to
    assert name.lower() not in ("hunyuanportrait", "comfyui-hunyuanportrait")
    assert data["project"]["urls"]["Repository"].startswith("https://github.com/")
    comfy = data["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert comfy["requires-comfyui"] == ">=0.3.64"
    # The icon is a raw URL to a file of this repository's main branch: square, at most 400 px.
    repo = data["project"]["urls"]["Repository"].removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{repo}/main/"
    assert comfy["Icon"].startswith(prefix)
    icon = ROOT / comfy["Icon"].removeprefix(prefix)
    assert icon.is_file()
    from PIL import Image

    with Image.open(icon) as im:
        assert im.format == "PNG" and im.width == im.height <= 400
    assert icon.stat().st_size < 100_000


def test_pyproject_installs_hp_core_and_the_command():
    data = _pyproject()
    assert data["build-system"]["build-backend"] == "setuptools.build_meta"
    assert data["project"]["scripts"] == {"hunyuan-portrait": "hp_core.cli:main"}
    assert data["tool"]["setuptools"]["packages"]["find"]["include"] == ["hp_core", "hp_core.*"]
    data_files = data["tool"]["setuptools"]["package-data"]["hp_core"]
    assert "configs/*.json" in data_files and "../weights_manifest.json" in data_files


def _ignored(patterns: list[str], path: str) -> bool:
    """gitwildmatch for the plain patterns .comfyignore uses: "folder/" and exact file paths."""
    for p in patterns:
        if p.endswith("/") and (path + "/").startswith(p):
            return True
        if path == p:
            return True
    return False


def test_comfyignore_leaves_out_development_files_only():
    lines = (ROOT / ".comfyignore").read_text(encoding="utf-8").splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    assert not any(set(p) & set("*?[!") for p in patterns), "_ignored only understands plain patterns"
    for dev in ("tests/project/test_packaging.py", "benchmarks/bench_pipeline.py", ".ci/run", "docs/icon.png",
                "requirements-test.txt"):
        assert _ignored(patterns, dev), dev
    shipped = ["__init__.py", "pyproject.toml", "requirements.txt", "weights_manifest.json", "LICENSE",
               "README.md", "nodes/loader.py", "hp_core/cli.py", "hp_core/configs/unet_config.json"]
    shipped += [p.relative_to(ROOT).as_posix() for p in UI_WORKFLOWS]
    shipped += [p.with_suffix(".jpg").relative_to(ROOT).as_posix() for p in UI_WORKFLOWS]
    shipped += [p.relative_to(ROOT).as_posix() for p in (WORKFLOWS / "api").glob("*.json")]
    for path in shipped:
        assert not _ignored(patterns, path), path


def test_every_node_has_search_aliases():
    import nodes

    assert nodes.NODE_CLASS_MAPPINGS
    for name, cls in nodes.NODE_CLASS_MAPPINGS.items():
        aliases = getattr(cls, "SEARCH_ALIASES", None)
        assert aliases and all(isinstance(a, str) and a for a in aliases), name
        assert "portrait animation" in aliases and len(set(aliases)) == len(aliases), name
    # Only what the method does: a driving video, not audio; not another method's name.
    assert not {"lip sync", "liveportrait"} & set(nodes.SEARCH_ALIASES)


def test_workflows_name_this_pack_for_the_manager():
    """The frontend tells the Manager which pack provides a node by its cnr_id: it must be ours."""
    name = _pyproject()["project"]["name"]
    for path in UI_WORKFLOWS:
        for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]:
            cnr = node.get("properties", {}).get("cnr_id")
            if cnr is not None and cnr != "comfy-core":
                assert cnr == name, (path.name, node["type"], cnr)


# ------------------------------------------------------------------------------------------ templates

def test_every_ui_workflow_has_a_thumbnail_and_a_description():
    """ComfyUI's template browser shows workflows/<name>.jpg (frontend 1.27 asks for .jpg only)."""
    from PIL import Image

    sys.path.insert(0, str(WORKFLOWS))
    try:
        import thumbnails
    finally:
        sys.path.remove(str(WORKFLOWS))
    assert UI_WORKFLOWS
    assert set(thumbnails.DESCRIPTIONS) == {p.stem for p in UI_WORKFLOWS}
    for path in UI_WORKFLOWS:
        thumb = path.with_suffix(".jpg")
        assert thumb.is_file(), f"{thumb.name} missing: run python workflows/thumbnails.py"
        assert 5_000 < thumb.stat().st_size < 100_000, thumb.name
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and im.width == im.height >= 256, thumb.name
        title, line = thumbnails.DESCRIPTIONS[path.stem]
        assert title and line and "\n" not in line and len(line) <= 60


# ------------------------------------------------------------------------------------------ models folder

def test_default_models_dir_does_not_depend_on_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(L.ENV_MODELS_DIR, raising=False)
    seen = []
    for cwd in (tmp_path, ROOT / "tests"):
        monkeypatch.chdir(cwd)
        seen.append([d.resolve() for d in L.default_search_dirs()])
    assert seen[0] == seen[1] == [L.default_models_dir().resolve()]
    assert L.default_models_dir().is_absolute()
    # --models-dir, then $HP_MODELS_DIR, still win
    assert L.default_search_dirs(str(tmp_path / "flag")) == [tmp_path / "flag"]
    monkeypatch.setenv(L.ENV_MODELS_DIR, str(tmp_path / "env"))
    assert L.default_search_dirs() == [tmp_path / "env"]


def test_default_models_dir_in_comfyui_is_comfyuis_models_folder(tmp_path):
    comfy = tmp_path / "ComfyUI"
    pack = comfy / "custom_nodes" / "ComfyUI-HunyuanPortrait"
    (pack / "hp_core").mkdir(parents=True)
    assert L.comfyui_models_dir(pack / "hp_core") == comfy / "models" / "hunyuan_portrait"
    # the pack linked into custom_nodes (as the ComfyUI tests install it): the link's path counts
    elsewhere = tmp_path / "src" / "pack"
    (elsewhere / "hp_core").mkdir(parents=True)
    link = comfy / "custom_nodes" / "linked"
    try:
        link.symlink_to(elsewhere, target_is_directory=True)
    except OSError:
        pytest.skip("no symlinks here")
    assert L.comfyui_models_dir(link / "hp_core") == comfy / "models" / "hunyuan_portrait"
    assert L.comfyui_models_dir(elsewhere / "hp_core") is None


def test_default_models_dir_outside_comfyui_is_per_user(tmp_path, monkeypatch):
    if os.name == "nt" or sys.platform == "darwin":
        pytest.skip("the XDG folder is the Linux default")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert L.user_models_dir() == tmp_path / "data" / "hunyuan_portrait" / "models"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert L.user_models_dir() == Path.home() / ".local" / "share" / "hunyuan_portrait" / "models"


# ------------------------------------------------------------------------------------------ pip install

def _copy_repo(dest: Path) -> None:
    """The tracked and untracked (not ignored) files, as `pip install` from a fresh clone sees them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.mark.slow
def test_pip_install_gives_the_command_and_the_manifest_anywhere(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git to list the repository's files")
    src, venv, elsewhere = tmp_path / "src", tmp_path / "venv", tmp_path / "elsewhere"
    src.mkdir()
    elsewhere.mkdir()
    _copy_repo(src)
    # A fresh venv that sees this interpreter's packages (torch, pip, setuptools) after its own, as
    # --system-site-packages would when the tests run in the system Python. No pip of its own: ensurepip's
    # older setuptools would shadow the one that builds the wheel.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    import site

    parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(own, "_outer_site_packages.pth").write_text("\n".join(parents) + "\n", encoding="utf-8")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "."],
                   cwd=src, check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", L.ENV_MODELS_DIR)}
    env["PATH"] = str(bindir) + os.pathsep + env.get("PATH", "")

    def run(*cmd):
        return subprocess.run(list(cmd), cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)

    helped = run("hunyuan-portrait", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "weights" in helped.stdout and "animate" in helped.stdout
    bad = run("hunyuan-portrait", "no-such-command")
    assert bad.returncode == 2  # the CLI's own exit code comes through the console script
    probe = run(str(python), "-c", "import hp_core, hp_core.weights as W; print(len(W.load_manifest())); "
                                   "print(hp_core.__file__); from hp_core.weights.locations import default_models_dir as d; print(d())")
    assert probe.returncode == 0, probe.stderr
    count, where, models = probe.stdout.split("\n")[:3]
    assert int(count) == len(json.loads((ROOT / "weights_manifest.json").read_text(encoding="utf-8"))["files"])
    assert not Path(where).resolve().is_relative_to(src.resolve())  # the installed copy, not the source
    assert not Path(models).is_relative_to(elsewhere)
    # only hp_core is installed: the ComfyUI adapters (nodes) and the tests are not importable packages
    for other in ("nodes", "tests", "workflows"):
        found = run(str(python), "-c", f"import importlib.util as u; print(u.find_spec({other!r}) is None)")
        assert found.stdout.strip() == "True", other
