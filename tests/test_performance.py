"""Performance files: a save/load round trip is bit-exact, the documented token layout and metadata hold, saving
is atomic and refuses to clobber, and every kind of bad file is refused with an HPError that says what the file
is, without ever unpickling anything."""

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import hp_core
import hp_core.performance as perf_mod
from hp_core.errors import HPError
from hp_core.performance import Performance, concat, from_parts, load_performance, save_performance

F, N, D, CHUNK = 30, 4, 6, 8          # 30 frames in chunks of 8 -> 4 chunks
SHA = "ab" * 32


def _perf(frames=F, chunk=CHUNK, seed=0, preset="official") -> Performance:
    g = torch.Generator().manual_seed(seed)
    expression = torch.randn(frames, N, D, generator=g)
    rotation = torch.rand(frames, 3, generator=g) * 360 - 180
    rotation[0, 0], rotation[1, 1], rotation[2, 2] = 180.0, -180.0, -0.0
    rotation[3, 0] = 1e-40                          # a subnormal float32 survives too
    translation = torch.randn(frames, 3, generator=g)
    chunks = -(-frames // chunk)
    ids = [(h % 3, (h * 7) % 5) for h in range(chunks)]
    return from_parts(expression, rotation, translation, ids, fps=29.97, chunk=chunk, preset=preset,
                      source_sha256=SHA)


def _good_tensors(frames=F, chunk=CHUNK):
    p = _perf(frames, chunk)
    return {"expression": p.expression, "rotation": p.rotation, "translation": p.translation,
            "intensity_ids": p.intensity_ids}


def _meta(frames=F, chunk=CHUNK, **over):
    meta = {"format": "hunyuanportrait.performance", "version": "1", "fps": "25.0", "frames": str(frames),
            "chunk": str(chunk), "preset": "official", "source_sha256": "", "pack_version": "0"}
    meta.update(over)
    return meta


# ------------------------------------------------------------------------------------------ round trip

def test_save_load_round_trip_is_bit_exact_and_metadata_is_documented(tmp_path):
    perf = _perf()
    path = save_performance(perf, tmp_path / "take.safetensors")
    assert path == tmp_path / "take.safetensors" and path.is_file()

    back = load_performance(path)
    for name in ("expression", "rotation", "translation", "intensity_ids"):
        a, b = getattr(perf, name), getattr(back, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
        # bit-exact, not merely equal (-0.0 == 0.0 would pass torch.equal)
        assert a.numpy().tobytes() == b.numpy().tobytes(), name
    assert back.fps == 29.97 and back.chunk == CHUNK and back.preset == "official" and back.source_sha256 == SHA
    assert back.frames == F
    assert back.ids == perf.ids

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == {"expression", "rotation", "translation", "intensity_ids"}
        dtypes = {k: f.get_tensor(k).dtype for k in f.keys()}
        shapes = {k: tuple(f.get_tensor(k).shape) for k in f.keys()}
    assert meta["format"] == "hunyuanportrait.performance"
    assert meta["version"] == "1"
    assert meta["frames"] == str(F)
    assert meta["chunk"] == str(CHUNK)
    assert float(meta["fps"]) == 29.97
    assert meta["preset"] == "official" and meta["source_sha256"] == SHA
    assert meta["pack_version"] == hp_core.__version__
    assert dtypes == {"expression": torch.float32, "rotation": torch.float32, "translation": torch.float32,
                      "intensity_ids": torch.int32}
    assert shapes == {"expression": (F, N, D), "rotation": (F, 3), "translation": (F, 3), "intensity_ids": (4, 2)}


def test_tokens_are_expression_then_rotation_on_every_token_then_zeros():
    perf = _perf()
    rot = perf.rotation[:, None, :].repeat(1, N, 1)
    expected = torch.cat([perf.expression, rot, torch.zeros(F, N, 3)], dim=-1)
    tokens = perf.tokens
    assert tokens.shape == (F, N, D + 6)
    assert torch.equal(tokens, expected)
    # translation never reaches the tokens (the release multiplies it by zero)
    assert float(perf.translation.abs().sum()) > 0
    assert torch.equal(tokens[..., D + 3:], torch.zeros(F, N, 3))


def test_from_parts_casts_to_float32_and_defaults_translation_to_zero():
    expression = torch.arange(2 * N * D, dtype=torch.float64).reshape(2, N, D)
    rotation = torch.tensor([[1.5, -2.0, 3.0], [4.0, 5.0, -6.0]], dtype=torch.float16)
    p = from_parts(expression, rotation, None, [(1, 2)], fps=25, chunk=25, preset="tiny")
    assert p.expression.dtype == torch.float32 and p.rotation.dtype == torch.float32
    assert torch.equal(p.translation, torch.zeros(2, 3))
    assert p.intensity_ids.dtype == torch.int32 and p.intensity_ids.tolist() == [[1, 2]]
    assert p.ids == [(1, 2)]
    assert p.problem() is None


def test_concat_joins_consecutive_chunks():
    whole = _perf(frames=20, chunk=8)     # chunks 0-7, 8-15, 16-19
    a = Performance(whole.expression[:8], whole.rotation[:8], whole.translation[:8], whole.intensity_ids[:1],
                    whole.fps, whole.chunk, whole.preset, whole.source_sha256)
    b = Performance(whole.expression[8:], whole.rotation[8:], whole.translation[8:], whole.intensity_ids[1:],
                    whole.fps, whole.chunk, whole.preset, whole.source_sha256)
    joined = concat([a, b])
    for name in ("expression", "rotation", "translation", "intensity_ids"):
        assert torch.equal(getattr(joined, name), getattr(whole, name)), name
    assert joined.problem() is None and joined.frames == 20


# ------------------------------------------------------------------------------------------ saving

def test_save_refuses_an_existing_file_unless_overwrite(tmp_path):
    path = tmp_path / "take.safetensors"
    path.write_bytes(b"someone else's file")
    with pytest.raises(HPError, match="already exists"):
        save_performance(_perf(), path)
    assert path.read_bytes() == b"someone else's file"
    assert sorted(os.listdir(tmp_path)) == ["take.safetensors"]

    save_performance(_perf(seed=3), path, overwrite=True)
    assert torch.equal(load_performance(path).expression, _perf(seed=3).expression)


def test_save_refuses_a_name_that_is_not_safetensors(tmp_path):
    for name in ("take.pt", "take.ckpt", "take"):
        with pytest.raises(HPError, match=r"\.safetensors"):
            save_performance(_perf(), tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_save_refuses_a_broken_performance(tmp_path):
    p = _perf()
    bad = Performance(p.expression.clone(), p.rotation, p.translation, p.intensity_ids, p.fps, p.chunk, p.preset)
    bad.expression[2, 1, 0] = float("nan")
    with pytest.raises(HPError, match="cannot be saved"):
        save_performance(bad, tmp_path / "bad.safetensors")
    assert os.listdir(tmp_path) == []


def test_a_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    def boom(tensors, filename, metadata=None):
        with open(filename, "wb") as f:          # half a file written, then the disk fills up
            f.write(b"\0" * 100)
        raise OSError("No space left on device")

    monkeypatch.setattr(perf_mod, "save_file", boom)
    with pytest.raises(OSError):
        save_performance(_perf(), tmp_path / "new.safetensors")
    assert os.listdir(tmp_path) == []

    # over an existing file, with overwrite: the old file survives untouched and no .partial is left
    old = tmp_path / "old.safetensors"
    old.write_bytes(b"the previous take")
    with pytest.raises(OSError):
        save_performance(_perf(), old, overwrite=True)
    assert os.listdir(tmp_path) == ["old.safetensors"]
    assert old.read_bytes() == b"the previous take"


# ------------------------------------------------------------------------------------------ loading bad files

def _refused(path, **kw) -> str:
    with pytest.raises(HPError) as info:
        load_performance(path, **kw)
    assert type(info.value) is HPError
    return str(info.value)


def test_load_refuses_a_missing_path(tmp_path):
    msg = _refused(tmp_path / "nowhere.safetensors")
    assert "nowhere.safetensors" in msg and "does not exist" in msg
    # a folder is not a file either
    msg = _refused(tmp_path)
    assert "does not exist" in msg


def test_load_refuses_random_bytes(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    msg = _refused(path)
    assert "noise.safetensors" in msg and "not a safetensors file" in msg


def test_load_refuses_a_tiny_file(tmp_path):
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"\x01\x02")
    msg = _refused(path)
    assert "damaged or not a safetensors file" in msg


def test_load_refuses_a_truncated_file(tmp_path):
    path = save_performance(_perf(), tmp_path / "cut.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    msg = _refused(path)
    assert "cut.safetensors" in msg and "damaged" in msg


def test_load_refuses_model_weights(tmp_path):
    path = tmp_path / "unet.safetensors"
    save_file({"conv.weight": torch.zeros(4, 4), "conv.bias": torch.zeros(4)}, str(path),
              metadata={"format": "pt"})
    msg = _refused(path)
    assert "unet.safetensors" in msg and "not a performance" in msg and "2 tensors" in msg

    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))      # no metadata at all
    assert "not a performance" in _refused(bare)


def test_load_refuses_a_newer_version(tmp_path):
    path = tmp_path / "future.safetensors"
    save_file(_good_tensors(), str(path), metadata=_meta(version="2", pack_version="9.9"))
    msg = _refused(path)
    assert "newer version" in msg and "Update" in msg and "future.safetensors" in msg


def test_load_refuses_a_version_that_is_not_a_number(tmp_path):
    path = tmp_path / "v.safetensors"
    save_file(_good_tensors(), str(path), metadata=_meta(version="one"))
    assert "version" in _refused(path)


def test_load_refuses_a_missing_tensor(tmp_path):
    path = tmp_path / "partial.safetensors"
    tensors = _good_tensors()
    del tensors["translation"]
    save_file(tensors, str(path), metadata=_meta())
    assert "translation" in _refused(path)


@pytest.mark.parametrize("name,tensor,word", [
    ("expression", torch.zeros(F, N * D), "expression"),            # rank 2
    ("expression", torch.zeros(F, 1, N, D), "expression"),          # rank 4
    ("rotation", torch.zeros(F, 4), "rotation"),
    ("rotation", torch.zeros(F - 1, 3), "rotation"),
    ("translation", torch.zeros(F), "translation"),
    ("intensity_ids", torch.zeros(3, 2, dtype=torch.int32), "intensity_ids"),
    ("intensity_ids", torch.zeros(4, 2, dtype=torch.int64), "int32"),
    ("rotation", torch.zeros(F, 3, dtype=torch.float16), "float32"),
])
def test_load_refuses_wrong_shapes_and_types(tmp_path, name, tensor, word):
    path = tmp_path / "shape.safetensors"
    tensors = _good_tensors()
    tensors[name] = tensor
    save_file(tensors, str(path), metadata=_meta())
    msg = _refused(path)
    assert "shape.safetensors" in msg and "damaged" in msg and word in msg


def test_load_refuses_frames_that_disagree_with_the_tensors(tmp_path):
    path = tmp_path / "frames.safetensors"
    save_file(_good_tensors(), str(path), metadata=_meta(frames=str(F + 1)))
    msg = _refused(path)
    assert f"records {F + 1} frames but holds {F}" in msg


@pytest.mark.parametrize("meta", [{"frames": "many"}, {"fps": "fast"}, {"chunk": ""}])
def test_load_refuses_unreadable_numbers(tmp_path, meta):
    path = tmp_path / "numbers.safetensors"
    save_file(_good_tensors(), str(path), metadata=_meta(**meta))
    assert "not a number" in _refused(path)


def test_load_refuses_a_missing_number(tmp_path):
    path = tmp_path / "nofps.safetensors"
    meta = _meta()
    del meta["fps"]
    save_file(_good_tensors(), str(path), metadata=meta)
    assert "missing" in _refused(path)


@pytest.mark.parametrize("name,value", [("expression", float("nan")), ("rotation", float("inf")),
                                        ("translation", float("-inf"))])
def test_load_refuses_non_finite_values(tmp_path, name, value):
    path = tmp_path / "nan.safetensors"
    tensors = _good_tensors()
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[5] = value
    save_file(tensors, str(path), metadata=_meta())
    msg = _refused(path)
    assert "not finite" in msg and name in msg


def test_load_refuses_a_bad_fps(tmp_path):
    path = tmp_path / "fps.safetensors"
    save_file(_good_tensors(), str(path), metadata=_meta(fps="nan"))
    assert "fps" in _refused(path)


def test_load_refuses_another_preset_and_names_both(tmp_path):
    path = save_performance(_perf(preset="official"), tmp_path / "take.safetensors")
    msg = _refused(path, preset="tiny")
    assert "'official'" in msg and "'tiny'" in msg
    assert load_performance(path, preset="official").preset == "official"


def test_load_refuses_a_pickle_without_unpickling_it(tmp_path, monkeypatch):
    path = tmp_path / "evil.safetensors"
    torch.save({"expression": torch.zeros(2, N, D)}, str(path))

    def never(*a, **k):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "loads", never)
    monkeypatch.setattr(pickle, "load", never)
    monkeypatch.setattr(torch, "load", never)
    assert "evil.safetensors" in _refused(path)


def test_nothing_is_ever_unpickled(tmp_path, monkeypatch):
    good = save_performance(_perf(), tmp_path / "good.safetensors")
    bad = tmp_path / "bad.safetensors"
    save_file(_good_tensors(), str(bad), metadata=_meta(frames="3"))

    def never(*a, **k):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "loads", never)
    monkeypatch.setattr(pickle, "load", never)
    monkeypatch.setattr(torch, "load", never)
    back = load_performance(good)
    assert torch.equal(back.expression, _perf().expression)
    with pytest.raises(HPError):
        load_performance(bad)
