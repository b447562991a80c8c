"""Saving in the official layout and loading back strictly; wrong and damaged files give our error."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from hp_core.errors import HPError
from hp_core.models import COMPONENTS, PRESET_DIMS, build_component, load_component


def _inputs(name):
    d = PRESET_DIMS["tiny"]
    g = torch.Generator().manual_seed(3)
    if name == "unet":
        return (torch.randn(1, 3, 8, 8, 8, generator=g), torch.tensor(0.2),
                torch.randn(1, 3, 16, 32, generator=g), torch.tensor([[12.5, 0.0, 0.0]]))
    if name == "dino":
        return (torch.randn(1, 3, d.appearance_size, d.appearance_size, generator=g), torch.randn(1, 512, generator=g))
    if name == "image_proj":
        return (torch.randn(1, 21, 32, generator=g),)
    if name == "motion_proj":
        return (torch.randn(4, d.expression_dim, generator=g), 5, 9)
    return (torch.rand(2, 3, 64, 64, generator=g),)


def _out(module, args):
    with torch.no_grad():
        out = module(*args)
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("name", COMPONENTS)
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_save_official_layout_and_load_back_identical(tmp_path, name, fmt):
    torch.manual_seed(0)
    src = build_component(name, "tiny")
    path = tmp_path / "hyportrait" / f"{name}.{fmt}"
    path.parent.mkdir()
    state = src.state_dict()
    if fmt == "pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded = load_component(name, path, preset="tiny", dtype=torch.float32)
    for key, value in src.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    args = _inputs(name)
    # identical weights; the kernels may pick another summation order for differently allocated memory
    torch.testing.assert_close(_out(loaded, args), _out(src, args), rtol=1e-5, atol=1e-6)
    assert not loaded.training


def test_default_precision_follows_release(tmp_path):
    for name, want in [("motion_proj", torch.float32), ("expression", torch.float32), ("pose_guider", torch.float16)]:
        path = tmp_path / f"{name}.pth"
        torch.save(build_component(name, "tiny").state_dict(), path)
        assert next(load_component(name, path, preset="tiny").parameters()).dtype == want
    path = tmp_path / "headpose.pth"
    torch.save(build_component("headpose", "tiny").state_dict(), path)
    assert next(load_component("headpose", path, preset="tiny", dtype="bf16").parameters()).dtype == torch.bfloat16


def test_wrong_component_file_names_file_component_and_keys(tmp_path):
    path = tmp_path / "expression.pth"
    torch.save(build_component("expression", "tiny").state_dict(), path)
    with pytest.raises(HPError) as err:
        load_component("headpose", path, preset="tiny")
    msg = str(err.value)
    assert str(path) in msg and "headpose" in msg
    assert "missing keys" in msg and "head_pose_net." in msg
    assert "unexpected keys" in msg and "resnet50." in msg
    assert "looks like the 'expression' checkpoint" in msg


def test_preset_mismatch_reports_shapes(tmp_path):
    path = tmp_path / "pose_guider.pth"
    torch.save(build_component("pose_guider", "tiny").state_dict(), path)
    with pytest.raises(HPError, match="shape mismatches"):
        load_component("pose_guider", path, preset="official")


def test_truncated_pth_is_a_clear_error(tmp_path):
    path = tmp_path / "motion_proj.pth"
    torch.save(build_component("motion_proj", "tiny").state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HPError, match="truncated or corrupted") as err:
        load_component("motion_proj", path, preset="tiny")
    assert "download it again" in str(err.value)


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    path = tmp_path / "image_proj.safetensors"
    save_file(build_component("image_proj", "tiny").state_dict(), str(path))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(HPError, match="truncated or corrupted"):
        load_component("image_proj", path, preset="tiny")


def test_non_checkpoint_and_missing_files(tmp_path):
    text = tmp_path / "unet.pth"
    text.write_text("<html>401 Unauthorized</html>")
    with pytest.raises(HPError, match="is not a plain weights checkpoint") as err:
        load_component("unet", text, preset="tiny")
    assert "it was not loaded" in str(err.value)
    with pytest.raises(HPError, match="does not exist"):
        load_component("unet", tmp_path / "nope.pth", preset="tiny")
    empty = tmp_path / "dino.pth"
    empty.touch()
    with pytest.raises(HPError, match="empty"):
        load_component("dino", empty, preset="tiny")


class _Payload:
    def __reduce__(self):
        return (exec, ("import sys; sys.modules['__hp_pwned__'] = 1",))


def test_unsafe_pickle_is_refused_not_executed(tmp_path):
    import sys
    path = tmp_path / "headpose.pth"
    torch.save({"x": _Payload()}, path, pickle_module=pickle)
    with pytest.raises(HPError):
        load_component("headpose", path, preset="tiny")
    assert "__hp_pwned__" not in sys.modules
