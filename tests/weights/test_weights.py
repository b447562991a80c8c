"""Weights: manifest contents, folder resolution, download logic (patched Hub), verification, lock, cache."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import time
from pathlib import Path

import pytest
import torch

from fakes import write_constant_onnx, write_fake_arcface, write_fake_yolo
from helpers import load_checkpoint
from hp_core import weights as W
from hp_core.errors import HPError
from hp_core.weights import cache as cache_mod

OFFICIAL_NAMES = ["unet", "dino", "image_proj", "motion_proj", "expression", "headpose", "pose_guider"]
SVD_REPO = "stabilityai/stable-video-diffusion-img2vid-xt"
ARC2FACE_COMMIT = "da2f1e9aa3954dad093213acfc9ae75a68da6ffd"
DATA = Path(__file__).resolve().parents[1] / "data"
LISTINGS = json.loads((DATA / "hub_listings.json").read_text(encoding="utf-8"))["repos"]
OFFICIAL_KEYS = json.loads((DATA / "official_checkpoint_keys.json").read_text(encoding="utf-8"))


def official_pth(name: str, value: float = 0.0) -> bytes:
    """A .pth with exactly the official keys and shapes (facts of official_checkpoint_keys.json), each tensor a
    one-element storage expanded to its shape, so the file is small but its index is the release's."""
    state = {}
    for key, shape in OFFICIAL_KEYS[f"{name}.pth"]["keys"].items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
        else:
            state[key] = torch.full((1,), value).expand(*shape) if shape else torch.tensor(value)
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def raw_manifest() -> dict:
    return json.loads(W.MANIFEST_PATH.read_text(encoding="utf-8"))


def by_id() -> dict[str, dict]:
    return {e["id"]: e for e in raw_manifest()["files"]}


def pth_bytes(seed: int = 0, n: int = 6) -> bytes:
    g = torch.Generator().manual_seed(seed)
    buf = io.BytesIO()
    torch.save({"weight": torch.randn(n, 5, generator=g), "bias": torch.randn(n, generator=g)}, buf)
    return buf.getvalue()


def bump_mtime(path: Path) -> None:
    """Same-size rewrites are told apart by mtime; coarse filesystem clocks could hide one in a fast test."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(base: Path, rel: str, data: bytes) -> Path:
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------ manifest

def test_manifest_has_the_seven_official_checkpoints():
    entries = by_id()
    for name in OFFICIAL_NAMES:
        e = entries[name]
        assert e["component"] == name
        assert e["repo"] == "tencent/HunyuanPortrait"
        assert e["filename"] == f"{name}.pth"  # the repository root: it has no hyportrait/ folder
        assert e["local_path"] == f"hyportrait/{name}.pth"  # where the pack (and the release's README) keeps it
        assert e["format"] == "pth" and e["required"] is True and e["gated"] is False
    from hp_core.models import COMPONENTS
    assert sorted(COMPONENTS) == sorted(OFFICIAL_NAMES)


def test_manifest_svd_arcface_detectors():
    e = by_id()
    vae = e["svd_vae"]
    assert vae["repo"] == SVD_REPO and vae["filename"] == "vae/diffusion_pytorch_model.fp16.safetensors"
    assert vae["gated"] is True and vae["required"] is True
    for cid, fname, bundled in (("svd_vae_config", "vae/config.json", "vae_config.json"),
                                ("svd_unet_config", "unet/config.json", "unet_config.json"),
                                ("svd_scheduler_config", "scheduler/scheduler_config.json", "scheduler_config.json")):
        assert e[cid]["repo"] == SVD_REPO and e[cid]["filename"] == fname and e[cid]["gated"] is True
        assert (W.CONFIG_DIR / bundled).is_file() and e[cid]["bundled"] == bundled
    assert e["arcface"]["repo"] == "FoivosPar/Arc2Face" and e["arcface"]["revision"] == ARC2FACE_COMMIT
    assert e["arcface"]["filename"] == "arcface.onnx" and e["arcface"]["required"]
    assert e["yoloface"]["repo"] == "LeonJoe13/Sonic" and e["yoloface"]["filename"] == "yoloface_v5m.pt"
    assert {e["dwpose_det"]["filename"], e["dwpose_pose"]["filename"]} == {"yolox_l.onnx", "dw-ll_ucoco_384.onnx"}
    assert e["dwpose_det"]["repo"] == e["dwpose_pose"]["repo"] == "yzd-v/DWPose"
    assert e["scrfd"]["filename"].endswith("det_10g.onnx")
    assert [i for i, x in e.items() if not x["required"]] == ["dwpose_det", "dwpose_pose", "scrfd"]
    # Only the Stability repository is gated.
    assert {x["repo"] for x in e.values() if x["gated"]} == {SVD_REPO}


def test_manifest_schema_fields():
    files = raw_manifest()["files"]
    paths = [p for f in files for p in [f["local_path"], *f["alt_local_paths"]]]
    assert len(paths) == len(set(paths)), "local paths must be unique"
    assert len({f["id"] for f in files}) == len(files)
    for f in files:
        assert f["sha256"] is None or (len(f["sha256"]) == 64 and int(f["sha256"], 16) >= 0)
        assert f["size"] is None or (isinstance(f["size"], int) and f["size"] > 0)
        assert f["licence"].strip() and f["revision"].strip()
        assert f["local_path"] == f["filename"] or f["local_path"].endswith("/" + f["filename"])
    assert len(W.load_manifest()) == len(files)


def test_manifest_matches_the_recorded_hub_listings():
    """Every entry names a file its repository really has, at its revision, with the published pins."""
    for f in raw_manifest()["files"]:
        repo = LISTINGS.get(f["repo"])
        assert repo is not None, f"{f['id']}: repository {f['repo']} has no recorded listing"
        assert f["revision"] == repo["revision"], f["id"]
        listed = repo["files"].get(f["filename"])
        assert listed is not None, f"{f['id']}: {f['repo']} has no file {f['filename']!r}"
        assert f["size"] == listed.get("size"), f"{f['id']}: size must be the published one (or null if none)"
        assert f["sha256"] == listed.get("sha256"), f"{f['id']}: sha256 must be the published one (or null)"
        assert f["gated"] == bool(repo.get("gated")), f["id"]


def test_public_hashes_are_pinned():
    e = by_id()
    assert e["dino"]["sha256"] == "72095272688877777a518319de4748ea209a82242d33e87e03057a8a81379605"
    assert (e["yoloface"]["size"], e["yoloface"]["sha256"]) == (
        84574759, "5ef5928d2ee1350ea7050ad7524b26a2b55e5c69fee49cd499667bde6a215b17")
    assert (e["arcface"]["size"], e["arcface"]["sha256"], e["arcface"]["revision"]) == (
        260694151, "ec639a0429b4819130d1405a2d3b38beaa4cc4a6c5bd9cf48b94fdf65461de83", ARC2FACE_COMMIT)
    assert e["svd_vae_config"]["size"] == 607


@pytest.mark.parametrize("mutate, match", [
    (lambda m: m["files"].append(copy.deepcopy(m["files"][0])), "duplicate"),
    (lambda m: m["files"][0].update(sha256="abc"), "sha256"),
    (lambda m: m["files"][0].update(local_path="../unet.pth", filename="unet.pth"), "relative"),
    (lambda m: m["files"][0].update(local_path="elsewhere/net.pth"), "end with"),
    (lambda m: m["files"][1].update(local_path=m["files"][0]["local_path"], filename=m["files"][0]["filename"]),
     "used twice"),
    (lambda m: m["files"][0].update(gated="no"), "gated"),
])
def test_validate_manifest_rejects(mutate, match):
    data = raw_manifest()
    mutate(data)
    with pytest.raises(ValueError, match=match):
        W.validate_manifest(data)


# ---------------------------------------------------------------------------------------- resolution

def test_resolve_in_comfy_folder_list(tmp_path):
    # As folder_paths.get_folder_paths("hunyuan_portrait") returns: models/ first, extra_model_paths after.
    first, extra = tmp_path / "ComfyUI" / "models" / "hunyuan_portrait", tmp_path / "shared" / "hunyuan_portrait"
    dirs = [str(first), str(extra)]
    assert W.resolve("dino", dirs) is None
    in_extra = put(extra, "hyportrait/dino.pth", b"x")
    assert W.resolve("dino", dirs) == in_extra
    in_first = put(first, "hyportrait/dino.pth", b"y")
    assert W.resolve("dino", dirs) == in_first
    alt = put(extra, "vae/diffusion_pytorch_model.safetensors", b"z")
    assert W.resolve("svd_vae", dirs) == alt
    assert W.resolve("svd_unet_config", dirs) == W.CONFIG_DIR / "unet_config.json"
    own = put(extra, "unet/config.json", b"{}")
    assert W.resolve("svd_unet_config", dirs) == own


def test_search_dirs_flag_env_default(tmp_path, monkeypatch):
    monkeypatch.setenv(W.ENV_MODELS_DIR, os.pathsep.join([str(tmp_path / "e1"), str(tmp_path / "e2")]))
    assert W.default_search_dirs(str(tmp_path / "flag")) == [tmp_path / "flag"]
    assert W.default_search_dirs([tmp_path / "a", tmp_path / "b"]) == [tmp_path / "a", tmp_path / "b"]
    assert W.default_search_dirs(None) == [tmp_path / "e1", tmp_path / "e2"]
    monkeypatch.delenv(W.ENV_MODELS_DIR)
    default = W.default_search_dirs(None)
    monkeypatch.chdir(tmp_path)  # the default does not follow the current folder
    assert W.default_search_dirs(None) == default and default[0].is_absolute()


def test_missing_files_are_listed_each_with_where_it_goes(tmp_path):
    put(tmp_path, "hyportrait/dino.pth", pth_bytes())
    found = W.check_files(["unet", "dino", "yoloface"], [tmp_path])
    assert [e.id for e in found.missing] == ["unet", "yoloface"]
    text = W.missing_message(found.missing, [tmp_path])
    assert "hyportrait/unet.pth" in text and "yoloface_v5m.pt" in text and "hyportrait/dino.pth" not in text
    assert "https://huggingface.co/tencent/HunyuanPortrait/resolve/main/unet.pth" in text
    assert str(tmp_path.resolve()) in text


def test_status_rows(tmp_path):
    put(tmp_path, "hyportrait/unet.pth", pth_bytes(1))
    put(tmp_path, "hyportrait/expression.pth", official_pth("expression", 2.0))
    assert W.verify("expression", [tmp_path]).ok
    put(tmp_path, "hyportrait/image_proj.pth", b"")
    rows = {r.id: r for r in W.status([tmp_path])}
    assert rows["unet"].state == "unverified"
    assert rows["expression"].state == "ok"
    assert rows["image_proj"].state == "bad"
    assert rows["motion_proj"].state == "missing" and rows["motion_proj"].path is None
    assert rows["svd_scheduler_config"].state == "bundled"
    assert "scrfd" not in {r.id for r in W.status([tmp_path], include_optional=False)}


# -------------------------------------------------------------------------------------- verification

def test_first_verify_pins_then_trusts_size_and_mtime(tmp_path, monkeypatch):
    data = official_pth("pose_guider", 3.0)
    path = put(tmp_path, "hyportrait/pose_guider.pth", data)
    res = W.verify("pose_guider", [tmp_path])
    assert res.ok and res.sha256 == sha(data)
    pin = W.read_lock(tmp_path)["files"]["hyportrait/pose_guider.pth"]
    assert pin["sha256"] == sha(data) and pin["size"] == len(data) and pin["mtime_ns"] == path.stat().st_mtime_ns

    calls = []
    real = W.sha256_file
    monkeypatch.setattr(W.verification, "sha256_file", lambda p, **k: calls.append(p) or real(p, **k))
    assert W.verify("pose_guider", [tmp_path]).ok and calls == []
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert W.verify("pose_guider", [tmp_path]).ok and len(calls) == 1
    assert W.read_lock(tmp_path)["files"]["hyportrait/pose_guider.pth"]["mtime_ns"] == path.stat().st_mtime_ns
    assert W.verify("pose_guider", [tmp_path], full=True).ok and len(calls) == 2


def test_read_only_folder_is_hashed_once_per_process(tmp_path, monkeypatch):
    path = put(tmp_path, "hyportrait/headpose.pth", official_pth("headpose", 11.0))
    monkeypatch.setattr(W.lock, "_write_lock", lambda base, data: False)
    calls = []
    real = W.sha256_file
    monkeypatch.setattr(W.verification, "sha256_file", lambda p, **k: calls.append(p) or real(p, **k))
    structure = []
    real_structure = W.check_structure
    monkeypatch.setattr(W.structure, "check_structure", lambda p, f: structure.append(p) or real_structure(p, f))
    assert W.verify("headpose", [tmp_path]).ok and W.verify("headpose", [tmp_path]).ok
    assert len(calls) == 1 and len(structure) == 1 and W.read_lock(tmp_path)["files"] == {}
    bump_mtime(path)
    assert W.verify("headpose", [tmp_path]).ok and len(calls) == 2


def test_truncated_file_is_rejected_and_never_loaded(tmp_path, monkeypatch):
    data = official_pth("expression", 4.0)
    path = put(tmp_path, "hyportrait/expression.pth", data)
    assert W.verify("expression", [tmp_path]).ok
    path.write_bytes(data[: len(data) // 2])
    res = W.verify("expression", [tmp_path])
    assert res.state == "bad" and "truncated" in res.reason and f"{len(data) // 2} of {len(data)}" in res.reason

    def no_load(*a, **k):
        raise AssertionError("a damaged file must not be unpickled")
    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(HPError, match="truncated"):
        load_checkpoint("expression", [tmp_path])


def test_damaged_file_before_any_pin_is_rejected_and_not_pinned(tmp_path):
    put(tmp_path, "hyportrait/headpose.pth", official_pth("headpose", 5.0)[:-40])
    res = W.verify("headpose", [tmp_path])
    assert res.state == "bad"
    assert "hyportrait/headpose.pth" not in W.read_lock(tmp_path)["files"]
    # A zip whose payload is flipped keeps its size but fails its CRC.
    data = official_pth("pose_guider", 5.0)
    flipped = bytearray(data)
    start = data.index(b"PK\x03\x04", 200) - 64  # inside the tensor bytes stored before a later record
    flipped[start:start + 16] = bytes(b ^ 0xFF for b in flipped[start:start + 16])
    put(tmp_path, "hyportrait/pose_guider.pth", bytes(flipped))
    assert W.verify("pose_guider", [tmp_path]).state == "bad"


def test_changed_file_after_pin_needs_repin(tmp_path):
    path = put(tmp_path, "hyportrait/motion_proj.pth", official_pth("motion_proj", 6.0))
    assert W.verify("motion_proj", [tmp_path]).ok
    new = official_pth("motion_proj", 7.0)
    path.write_bytes(new)
    bump_mtime(path)
    res = W.verify("motion_proj", [tmp_path])
    assert res.state == "bad" and "changed since it was verified" in res.reason and "--repin" in res.reason
    assert W.verify("motion_proj", [tmp_path], repin=True).ok
    assert W.read_lock(tmp_path)["files"]["hyportrait/motion_proj.pth"]["sha256"] == sha(new)
    # repin does not bless a broken file
    path.write_bytes(new[:-30])
    assert W.verify("motion_proj", [tmp_path], repin=True).state == "bad"


def _manifest_with(monkeypatch, entry_id: str, **changes):
    entries = [W.WeightEntry(**{**e.__dict__, **(changes if e.id == entry_id else {})}) for e in W.load_manifest()]
    monkeypatch.setattr(W.manifest, "load_manifest", lambda path=None: entries)
    monkeypatch.setattr(W, "load_manifest", lambda path=None: entries)


def test_manifest_size_and_hash_are_enforced_except_for_random_folders(tmp_path, monkeypatch):
    good, other = official_pth("image_proj", 8.0), official_pth("image_proj", 9.0)
    assert len(good) == len(other)
    _manifest_with(monkeypatch, "image_proj", size=len(good), sha256=sha(good))
    put(tmp_path, "hyportrait/image_proj.pth", other)
    res = W.verify("image_proj", [tmp_path])
    assert res.state == "bad" and sha(good)[:12] in res.reason
    put(tmp_path, "hyportrait/image_proj.pth", good)
    assert W.verify("image_proj", [tmp_path]).ok
    put(tmp_path, "hyportrait/image_proj.pth", good + b"x")
    assert "wrong size" in W.verify("image_proj", [tmp_path]).reason
    rnd = tmp_path / "random"
    put(rnd, "hyportrait/image_proj.pth", other)
    (rnd / W.RANDOM_MARKER).write_text('{"preset": "official"}')
    assert W.verify("image_proj", [rnd]).ok


def test_safetensors_header_check(tmp_path):
    from safetensors.torch import save_file
    save_file({"a": torch.ones(100)}, str(tmp_path / "ok.safetensors"))
    data = (tmp_path / "ok.safetensors").read_bytes()
    assert W.check_structure(tmp_path / "ok.safetensors", "safetensors") is None
    (tmp_path / "cut.safetensors").write_bytes(data[:-50])
    assert "bytes" in W.check_structure(tmp_path / "cut.safetensors", "safetensors")


# ------------------------------------------------------------------------------------------- caching

def test_safetensors_cache_is_made_once_and_reused(tmp_path, monkeypatch):
    base = torch.arange(64 * 261, dtype=torch.float32).reshape(64, 261)
    state = {"weight": base, "bias": base[1, :64]}  # 'bias' shares memory with 'weight'
    path = tmp_path / "hyportrait" / "image_proj.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)

    reads = []
    real = cache_mod.read_state_dict  # the reader the cache calls (hp_core.checkpoint's)
    monkeypatch.setattr(cache_mod, "read_state_dict", lambda p, **k: reads.append(Path(p).suffix) or real(p, **k))
    first = load_checkpoint("image_proj", [tmp_path])
    assert reads == [".pth"]
    cached = list((tmp_path / W.CACHE_SUBDIR).glob("hyportrait__image_proj.pth.*.safetensors"))
    assert len(cached) == 1
    second = load_checkpoint("image_proj", [tmp_path])
    assert reads == [".pth", ".safetensors"]
    for out in (first, second):
        assert set(out) == set(state)
        for k in state:
            assert torch.equal(out[k], state[k])

    # A file replaced on purpose (re-pinned) gets a new cache entry; the stale one goes.
    torch.save({"weight": torch.full((64, 261), 7.0), "bias": torch.zeros(64)}, path)
    assert W.verify("image_proj", [tmp_path], repin=True).ok
    third = load_checkpoint("image_proj", [tmp_path])
    assert torch.equal(third["weight"], torch.full((64, 261), 7.0))
    now = list((tmp_path / W.CACHE_SUBDIR).glob("hyportrait__image_proj.pth.*.safetensors"))
    assert len(now) == 1 and now != cached


def test_damaged_cache_is_rebuilt(tmp_path):
    path = tmp_path / "hyportrait" / "pose_guider.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(official_pth("pose_guider", 1.0))
    load_checkpoint("pose_guider", [tmp_path], cache_dir=tmp_path / "c")
    (cached,) = (tmp_path / "c").glob("*.safetensors")
    cached.write_bytes(b"garbage")
    again_state = load_checkpoint("pose_guider", [tmp_path], cache_dir=tmp_path / "c")
    assert torch.equal(again_state["conv_out.bias"], torch.ones(320))
    (again,) = (tmp_path / "c").glob("*.safetensors")
    assert again.read_bytes() != b"garbage"


def test_load_checkpoint_missing_says_where(tmp_path):
    with pytest.raises(HPError) as err:
        load_checkpoint("dino", [tmp_path])
    assert "hyportrait/dino.pth" in str(err.value) and "weights download" in str(err.value)


# ------------------------------------------------------------------------------------------ download

_CONTENT: dict[str, bytes] = {}


def content_for(entry: W.WeightEntry, tmp: Path) -> bytes:
    """Stand-in bytes with the structure of the real file (official keys/shapes, ONNX inputs/outputs, the
    detector's call); the published hashes are then those of these bytes (see the hub fixture)."""
    if entry.id in _CONTENT:
        return _CONTENT[entry.id]
    f = tmp / entry.id
    if entry.format == "pth":
        data = official_pth(entry.id, float(len(entry.id)))
    elif entry.format == "safetensors":
        from safetensors.torch import save_file

        from hp_core.models import build_vae
        save_file({k: v.contiguous() for k, v in build_vae("tiny").state_dict().items()}, str(f))
        data = f.read_bytes()
    elif entry.format == "json":
        data = b"{}"
    elif entry.id == "arcface":
        data = write_fake_arcface(f).read_bytes()
    elif entry.id == "yoloface":
        data = write_fake_yolo(f).read_bytes()
    else:
        shape = [1, 3, 384, 288] if entry.id == "dwpose_pose" else [1, 3, 640, 640]
        outs = {"dwpose_pose": 2, "scrfd": 9}.get(entry.id, 1)
        data = _onnx_with_outputs(f, shape, outs)
    _CONTENT[entry.id] = data
    return data


def _onnx_with_outputs(f: Path, shape: list, n: int) -> bytes:
    import numpy as np
    return write_constant_onnx(f, "input", shape, [np.zeros((1, 4), np.float32)] * n).read_bytes()


class FakeHub:
    """Stands in for huggingface_hub.hf_hub_download, held to reality: it answers only the (repository,
    path, revision) pairs of the recorded listings (tests/data/hub_listings.json) and a 404-like
    EntryNotFoundError otherwise; it writes <local_dir>/<filename> and huggingface_hub's metadata."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.calls = []
        self.errors = {}        # repo or filename -> exception to raise
        self.wrong_etag = set()

    def content(self, filename, repo=None):
        entry = next(e for e in W.load_manifest() if e.filename == filename and repo in (None, e.repo))
        return content_for(entry, self.tmp)

    def __call__(self, *, repo_id, filename, revision=None, local_dir=None, token=None, **kw):
        self.calls.append(dict(repo_id=repo_id, filename=filename, revision=revision,
                               local_dir=Path(local_dir), token=token))
        err = self.errors.get(repo_id) or self.errors.get(filename)
        if err is not None:
            raise err
        listing = LISTINGS.get(repo_id)
        if listing is None or filename not in listing["files"] or revision not in (None, listing["revision"]):
            from huggingface_hub.errors import EntryNotFoundError
            raise hub_error(EntryNotFoundError, f"404 Client Error: Entry Not Found for url: "
                                                f"https://huggingface.co/{repo_id}/resolve/{revision}/{filename}")
        data = self.content(filename, repo_id)
        dest = Path(local_dir) / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        self.write_meta(Path(local_dir), filename, sha(b"other" if filename in self.wrong_etag else data))
        return str(dest)

    @staticmethod
    def write_meta(local_dir: Path, filename: str, etag: str):
        meta = local_dir / ".cache" / "huggingface" / "download" / (filename + ".metadata")
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(f"{'0' * 40}\n{etag}\n{time.time()}\n")


@pytest.fixture
def hub(monkeypatch, tmp_path_factory):
    """The patched Hub, and a manifest whose published sizes/hashes are those of the stand-in bytes (the
    real bytes cannot exist here); repositories, paths and revisions stay the manifest's own."""
    import huggingface_hub
    from huggingface_hub import constants
    fake = FakeHub(tmp_path_factory.mktemp("hub"))
    entries = []
    for e in W.load_manifest():
        if e.size or e.sha256:
            data = content_for(e, fake.tmp)
            e = W.WeightEntry(**{**e.__dict__, "size": len(data) if e.size else None,
                                 "sha256": sha(data) if e.sha256 else None})
        entries.append(e)
    monkeypatch.setattr(W.manifest, "load_manifest", lambda path=None: entries)
    monkeypatch.setattr(W, "load_manifest", lambda path=None: entries)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False, raising=False)
    return fake


def hub_error(cls, text="error"):
    err = cls.__new__(cls)  # their constructors want an HTTP response; the type is what matters here
    Exception.__init__(err, text)
    return err


REQUIRED_DOWNLOADS = {"hyportrait/" + n + ".pth" for n in OFFICIAL_NAMES} | {
    "vae/diffusion_pytorch_model.fp16.safetensors", "arcface.onnx", "yoloface_v5m.pt"}
REQUIRED_REPO_PATHS = {n + ".pth" for n in OFFICIAL_NAMES} | {
    "vae/diffusion_pytorch_model.fp16.safetensors", "arcface.onnx", "yoloface_v5m.pt"}


def test_download_fetches_only_what_is_missing(tmp_path, hub):
    dest = tmp_path / "models"
    unet = put(dest, "hyportrait/unet.pth", official_pth("unet", 42.0))
    written = W.download([dest], token="hf_secret", log=lambda s: None)
    assert {c["filename"] for c in hub.calls} == REQUIRED_REPO_PATHS - {"unet.pth"}
    assert all(c["token"] == "hf_secret" for c in hub.calls)
    calls = {c["filename"]: c for c in hub.calls}
    assert calls["arcface.onnx"]["revision"] == ARC2FACE_COMMIT
    assert calls["dino.pth"]["local_dir"] == dest / W.hub.STAGING / "hyportrait"  # staged, then moved in
    assert unet.read_bytes() == official_pth("unet", 42.0)
    assert {p.relative_to(dest).as_posix() for p in written} == REQUIRED_DOWNLOADS - {"hyportrait/unet.pth"}
    lock = W.read_lock(dest)["files"]
    assert lock["yoloface_v5m.pt"]["sha256"] == sha(hub.content("yoloface_v5m.pt"))
    assert lock["arcface.onnx"]["origin"] == f"FoivosPar/Arc2Face@{ARC2FACE_COMMIT}"

    hub.calls.clear()
    assert W.download([dest], log=lambda s: None) == []
    assert hub.calls == []

    W.download([dest], include_optional=True, log=lambda s: None)
    calls = {c["filename"]: c for c in hub.calls}
    assert set(calls) == {"yolox_l.onnx", "dw-ll_ucoco_384.onnx", "models/buffalo_l/det_10g.onnx"}
    assert calls["yolox_l.onnx"]["local_dir"] == dest / W.hub.STAGING / "dwpose"
    assert calls["models/buffalo_l/det_10g.onnx"]["local_dir"] == dest / W.hub.STAGING / "insightface"
    assert W.resolve("scrfd", [dest]) == dest / "insightface/models/buffalo_l/det_10g.onnx"
    assert not (dest / W.hub.STAGING).exists()  # nothing left behind once every file is in place


def test_download_replaces_a_damaged_file(tmp_path, hub):
    damaged = pth_bytes(1)[:100]
    put(tmp_path, "hyportrait/unet.pth", damaged)
    lines = []
    W.download([tmp_path], ids=["unet"], log=lines.append)
    assert [c["filename"] for c in hub.calls] == ["unet.pth"]
    assert W.verify("unet", [tmp_path]).ok
    aside = list((tmp_path / "hyportrait").glob("unet.pth.replaced-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # moved aside, never deleted
    assert any(str(aside[0]) in line for line in lines)          # and the log says where it went


@pytest.mark.parametrize("failure", ["offline", "connection", "not_found", "bad_download"])
def test_download_never_removes_a_file_before_its_replacement_is_verified(tmp_path, hub, monkeypatch, failure):
    """A user's own unet.pth (changed after it was pinned) and a damaged dino.pth stay byte for byte when
    no verified replacement arrives: offline, a dropped connection, a 404, a download that fails its hash."""
    own = official_pth("unet", 7.0)
    unet = put(tmp_path, "hyportrait/unet.pth", official_pth("unet", 1.0))
    assert W.verify("unet", [tmp_path]).ok   # pinned ...
    unet.write_bytes(own)                    # ... then replaced by the user with a file of the same shape
    os.utime(unet, ns=(1, 1))
    damaged = hub.content("dino.pth")[:-10]
    dino = put(tmp_path, "hyportrait/dino.pth", damaged)
    if failure == "offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    elif failure == "connection":
        hub.errors["unet.pth"] = ConnectionError("Name or service not known")
    elif failure == "not_found":
        _manifest_with(monkeypatch, "unet", filename="nowhere/unet.pth")
        _manifest_with(monkeypatch, "dino", filename="nowhere/dino.pth")
    else:
        hub.wrong_etag.update({"unet.pth", "dino.pth"})
    with pytest.raises(HPError):
        W.download([tmp_path], ids=["unet", "dino"], log=lambda s: None)
    assert unet.read_bytes() == own
    assert dino.read_bytes() == damaged
    assert sorted(p.name for p in (tmp_path / "hyportrait").iterdir()) == ["dino.pth", "unet.pth"]
    assert not (tmp_path / W.hub.STAGING / "hyportrait" / "unet.pth").exists()


def test_download_into_a_new_folder_that_fails_leaves_no_empty_folders(tmp_path, hub):
    hub.errors["unet.pth"] = ConnectionError("Name or service not known")
    dest = tmp_path / "new" / "models"
    with pytest.raises(HPError, match="No connection"):
        W.download([dest], ids=["unet"], log=lambda s: None)
    assert not (tmp_path / "new").exists()


def test_download_checks_the_hub_etag(tmp_path, hub):
    hub.wrong_etag.add("dino.pth")
    with pytest.raises(HPError, match="failed verification"):
        W.download([tmp_path], ids=["dino", "headpose"], log=lambda s: None)
    assert not (tmp_path / "hyportrait/dino.pth").exists()
    assert W.verify("headpose", [tmp_path]).ok


def test_download_resumes_an_interrupted_file(tmp_path, monkeypatch, hub):
    """A dropped connection leaves huggingface_hub's partial file; the next run continues it."""
    import huggingface_hub
    full = hub.content("dino.pth")
    resumed_from = []
    state = {"drop": True}

    def resumable(*, repo_id, filename, revision=None, local_dir=None, token=None, **kw):
        if filename != "dino.pth":
            return hub(repo_id=repo_id, filename=filename, revision=revision, local_dir=local_dir, token=token)
        hub.calls.append(dict(filename=filename, local_dir=Path(local_dir)))
        part = Path(local_dir) / ".cache" / "huggingface" / "download" / (filename + ".incomplete")
        part.parent.mkdir(parents=True, exist_ok=True)
        if state.pop("drop", False):
            part.write_bytes(full[: len(full) // 3])
            raise ConnectionError("connection reset by peer")
        have = part.stat().st_size if part.exists() else 0
        resumed_from.append(have)
        with part.open("ab") as f:
            f.write(full[have:])
        dest = Path(local_dir) / filename
        os.replace(part, dest)
        hub.write_meta(Path(local_dir), filename, sha(full))
        return str(dest)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", resumable)
    with pytest.raises(HPError) as err:
        W.download([tmp_path], ids=["unet", "dino", "image_proj"], log=lambda s: None)
    text = str(err.value)
    assert "No connection" in text and "hyportrait/dino.pth" in text and "hyportrait/image_proj.pth" in text
    assert "hyportrait/unet.pth" not in text.split("still missing")[-1]
    assert W.verify("unet", [tmp_path]).ok            # finished before the drop, kept
    hub.calls.clear()
    W.download([tmp_path], ids=["unet", "dino", "image_proj"], log=lambda s: None)
    assert [c["filename"] for c in hub.calls] == ["dino.pth", "image_proj.pth"]
    assert resumed_from == [len(full) // 3]
    assert (tmp_path / "hyportrait/dino.pth").read_bytes() == full
    assert W.read_lock(tmp_path)["files"]["hyportrait/dino.pth"]["sha256"] == sha(full)


def test_gated_svd_explains_licence_token_and_alternatives(tmp_path, hub):
    from huggingface_hub.errors import GatedRepoError
    hub.errors[SVD_REPO] = hub_error(GatedRepoError, "403 Client Error: Cannot access gated repo")
    with pytest.raises(HPError) as err:
        W.download([tmp_path], log=lambda s: None)
    text = str(err.value)
    assert f"https://huggingface.co/{SVD_REPO}" in text and "accept the licence" in text
    assert "HF_TOKEN" in text and "--token" in text and "--vae" in text and "svd_xt.safetensors" in text
    assert "vae/diffusion_pytorch_model.fp16.safetensors" in text
    # everything else still arrived
    assert all(W.resolve(n, [tmp_path]) for n in OFFICIAL_NAMES + ["arcface", "yoloface"])


def test_gated_reported_as_not_found_without_token(tmp_path, hub):
    from huggingface_hub.errors import RepositoryNotFoundError
    hub.errors[SVD_REPO] = hub_error(RepositoryNotFoundError, "401 Client Error")
    with pytest.raises(HPError, match="is gated"):
        W.download([tmp_path], ids=["svd_vae"], log=lambda s: None)


def test_skip_uses_an_existing_vae_instead(tmp_path, hub):
    """`weights download --vae X` leaves the gated VAE alone, and X is the VAE the run then uses."""
    from hp_core import cli
    from hp_core.models import build_vae
    from hp_core.weights.vae import load_vae
    torch.manual_seed(3)
    mine = tmp_path / "elsewhere" / "my_svd_vae"
    build_vae("tiny").save_pretrained(str(mine))
    models = tmp_path / "models"
    lines = []
    assert cli._cmd_weights(cli.build_parser().parse_args(
        ["weights", "download", "--models-dir", str(models), "--vae", str(mine)]), out=lines.append) == 0
    assert SVD_REPO not in {c["repo_id"] for c in hub.calls}
    assert not (models / "vae").exists()
    assert any(str(mine) in line for line in lines)
    found = W.preflight(W.needed_ids(), [models], vae=mine, preset="official")
    assert found["svd_vae"] == mine
    used = load_vae([models], found["svd_vae"])
    ref = build_vae("tiny")
    ref.load_state_dict(__import__("safetensors.torch", fromlist=["x"]).load_file(
        str(mine / "diffusion_pytorch_model.safetensors")))
    for k, v in ref.state_dict().items():
        assert torch.equal(used.state_dict()[k], v), k
    # A --vae that is no VAE is refused before anything is skipped or fetched.
    hub.calls.clear()
    (tmp_path / "not_a_vae.safetensors").write_bytes(open(tmp_path / "elsewhere" / "my_svd_vae" / "config.json", "rb")
                                                      .read())
    with pytest.raises(HPError, match="--vae"):
        cli._cmd_weights(cli.build_parser().parse_args(
            ["weights", "download", "--models-dir", str(models), "--vae", str(tmp_path / "not_a_vae.safetensors")]),
            out=lines.append)
    assert hub.calls == []


def test_offline_mode_lists_missing_files_without_network(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    put(tmp_path, "hyportrait/unet.pth", official_pth("unet"))
    with pytest.raises(HPError) as err:
        W.download([tmp_path], log=lambda s: None)
    text = str(err.value)
    assert hub.calls == []
    assert "Offline" in text and str(tmp_path.resolve()) in text
    assert "weights download" not in text  # the command that just failed is not suggested again
    assert "HF_TOKEN" in text and "--token" in text and "--vae" in text and "models/vae" in text
    for rel in REQUIRED_DOWNLOADS - {"hyportrait/unet.pth"}:
        assert rel in text
    assert "hyportrait/unet.pth " not in text
    assert f"https://huggingface.co/FoivosPar/Arc2Face/resolve/{ARC2FACE_COMMIT}/arcface.onnx" in text


@pytest.mark.parametrize("make_error", [
    lambda: ConnectionError("Name or service not known"),
    lambda: type("ConnectError", (Exception,), {"__module__": "httpx"})("[Errno -3] Temporary failure"),
    lambda: __import__("huggingface_hub.errors", fromlist=["x"]).LocalEntryNotFoundError("cannot reach the Hub"),
])
def test_connection_errors_become_a_missing_files_message(tmp_path, hub, make_error):
    hub.errors["unet.pth"] = make_error()
    with pytest.raises(HPError) as err:
        W.download([tmp_path], ids=["unet", "dino"], log=lambda s: None)
    text = str(err.value)
    assert "No connection" in text and "hyportrait/unet.pth" in text and "hyportrait/dino.pth" in text
    assert "weights download" not in text and str(tmp_path.resolve()) in text
    assert len(hub.calls) == 1  # no point trying the rest without a connection


def test_unknown_errors_are_not_swallowed(tmp_path, hub):
    hub.errors["unet.pth"] = KeyError("bug")
    with pytest.raises(KeyError):
        W.download([tmp_path], ids=["unet"], log=lambda s: None)


def test_the_stand_in_hub_refuses_paths_the_repository_does_not_have(tmp_path, hub, monkeypatch):
    """The path the manifest used to ask for (hyportrait/unet.pth) does not exist upstream: 404."""
    _manifest_with(monkeypatch, "unet", filename="hyportrait/unet.pth")
    with pytest.raises(HPError) as err:
        W.download([tmp_path], ids=["unet"], log=lambda s: None)
    assert "is not in tencent/HunyuanPortrait" in str(err.value) and "404" in str(err.value)
    assert not (tmp_path / "hyportrait" / "unet.pth").exists()
