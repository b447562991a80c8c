"""Damaged state and odd files end as one `error:` line (or a note), never a traceback: a damaged lock file is
set aside and rebuilt, a full disk skips the safetensors cache, full or read-only output folders, huge images,
symlink loops, sizes the machine cannot hold, --device meta. A weight file replaced after it was pinned
(same size and modification time) is refused when it is loaded. SIGTERM cleans up like Ctrl-C (exit 143, no
.partial file, no ffmpeg left), and the stale partial files of a killed run are cleared by the next one.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakes import portrait, write_clip
from helpers import load_checkpoint
from hp_core import cli
from hp_core import weights as W
from hp_core.errors import HPError
from hp_core.weights import cache as C
from hp_core.weights import verification as V
from nodes_env import make_models_dir

ROOT = Path(__file__).resolve().parent.parent


def make_clip(path: Path, frames: int = 4) -> Path:
    return write_clip(path, np.stack([portrait(64, 64, (16 + t, 14, 44 + t, 46)) for t in range(frames)]))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("robust")
    make_models_dir(d / "models")
    Image.fromarray(portrait()).save(d / "face.png")
    make_clip(d / "drive.mp4")
    return d


def animate_args(env: Path, out: Path, *extra: str, models: Path | None = None) -> list[str]:
    return ["animate", "--image", str(env / "face.png"), "--video", str(env / "drive.mp4"), "--out", str(out),
            "--models-dir", str(models or env / "models"), "--preset", "tiny", "--size", "64", "--steps", "1",
            "--window", "4", "--overlap", "1", "--max-frames", "4", "--device", "cpu", *extra]


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def fresh_models(tmp_path: Path) -> Path:
    return make_models_dir(tmp_path / "models")


# ------------------------------------------------------------------------------------------- lock file

@pytest.mark.parametrize("damage", ["strings", "wrong_types", "not_json", "not_a_lock"])
def test_damaged_lock_is_set_aside_and_rebuilt(tmp_path, capsys, caplog, damage):
    models = fresh_models(tmp_path)
    lock = models / W.LOCK_NAME
    pins = json.loads(lock.read_text())["files"]
    assert pins
    if damage == "strings":
        text = json.dumps({"version": 1, "files": {rel: "pinned" for rel in pins}})
    elif damage == "wrong_types":
        text = json.dumps({"version": 1, "files": {rel: {**p, "size": str(p["size"]), "mtime_ns": None, "sha256": 5}
                                                   for rel, p in pins.items()}})
    elif damage == "not_json":
        text = lock.read_text()[:-40]
    else:
        text = json.dumps(["files"])
    lock.write_text(text)
    capsys.readouterr()
    assert cli.main(["weights", "status", "--models-dir", str(models)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    notes = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]  # stderr outside pytest
    assert len(notes) == 1 and W.LOCK_NAME in notes[0] and notes[0].startswith("note: "), captured.err
    aside = [p for p in models.iterdir() if p.name.startswith(W.LOCK_NAME + ".damaged-")]
    assert len(aside) == 1 and aside[0].read_text() == text  # kept for inspection, never rewritten
    assert "unverified" in captured.out  # the pins are gone: the files are verified again
    assert cli.main(["weights", "verify", "--models-dir", str(models)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "BAD" not in captured.out
    rebuilt = json.loads(lock.read_text())["files"]
    assert set(pins) <= set(rebuilt) and all(isinstance(p, dict) and p["sha256"] == pins[r]["sha256"]
                                             for r, p in rebuilt.items() if r in pins)


def test_one_wrong_entry_is_ignored_and_its_file_verified_again(tmp_path, caplog):
    models = fresh_models(tmp_path)
    lock = models / W.LOCK_NAME
    data = json.loads(lock.read_text())
    data["files"]["hyportrait/pose_guider.pth"] = ["not", "a", "pin"]
    lock.write_text(json.dumps(data))
    calls = []
    real = V.sha256_file
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(V, "sha256_file", lambda *a, **k: (calls.append(a[0]), real(*a, **k))[1])
        V._HASHED.clear()
        caplog.set_level(logging.WARNING)
        res = W.verify("pose_guider", [models])
        assert res.ok and calls and res.message != V.TRUSTED_PIN  # hashed afresh, pinned again
        assert W.verify("unet", [models]).ok and len(calls) == 1  # the good pins still count
    assert any("set aside" in r.getMessage() for r in caplog.records)
    assert isinstance(W.read_lock(models)["files"]["hyportrait/pose_guider.pth"], dict)


def test_damaged_lock_does_not_stop_animate(env, tmp_path, capsys, caplog):
    models = fresh_models(tmp_path)
    lock = models / W.LOCK_NAME
    lock.write_text(json.dumps({"version": 1, "files": {rel: 7 for rel in json.loads(lock.read_text())["files"]}}))
    out = tmp_path / "o.mp4"
    assert cli.main(animate_args(env, out, models=models)) == 0, capsys.readouterr().err
    assert out.is_file() and any("set aside" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------ full disks

def test_cache_write_on_a_full_disk_loads_without_the_cache(tmp_path, monkeypatch, caplog):
    models = fresh_models(tmp_path)
    monkeypatch.setenv(C.ENV_CACHE_DIR, str(tmp_path / "user_cache"))

    def full(state, path, metadata):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(C, "_save_safetensors", full)
    caplog.set_level(logging.WARNING)
    state = load_checkpoint("pose_guider", [models], preset="tiny")
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    notes = [r.getMessage() for r in caplog.records if "safetensors copy" in r.getMessage()]
    assert len(notes) == 1 and "no space left" in notes[0] and "pose_guider.pth" in notes[0]
    assert not list((models / C.CACHE_SUBDIR).glob("*")) and not (tmp_path / "user_cache").exists() or \
        not list((tmp_path / "user_cache").glob("*"))
    assert "hyportrait/pose_guider.pth" in W.read_lock(models)["files"]  # the load itself succeeded


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   PermissionError(errno.EACCES, "Permission denied"),
                                   OSError(errno.EROFS, "Read-only file system")])
def test_random_weights_into_a_full_or_read_only_folder(tmp_path, monkeypatch, capsys, error):
    target = tmp_path / "out" / "hyportrait" / "unet.pth"
    error.filename = str(target)

    def save(*a, **k):
        raise error
    monkeypatch.setattr(torch, "save", save)
    code = cli.main(["make-random-weights", "--preset", "tiny", "--out", str(tmp_path / "out")])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1 and str(target) in line
    assert ("no space left" in line) if error.errno == errno.ENOSPC else ("write to" in line)


def test_download_into_a_full_folder(tmp_path, monkeypatch, capsys):
    def download(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "hyportrait" / "unet.pth"))
    monkeypatch.setattr(W, "download", download)
    code = cli.main(["weights", "download", "--models-dir", str(tmp_path)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1 and "no space left" in line and "unet.pth" in line


# ----------------------------------------------------------------------------------------- odd inputs

def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that says it is width x height (PIL reads the size without decoding any pixel)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))
    return path


def test_huge_image_is_refused_with_its_size_and_the_limit(env, tmp_path, capsys):
    from hp_core.preprocess import read_image_file

    huge = png_header(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(HPError) as err:
        read_image_file(huge)
    assert "20000x20000" in str(err.value) and f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels" in str(err.value)
    args = animate_args(env, tmp_path / "o.mp4")
    args[args.index("--image") + 1] = str(huge)
    assert cli.main(args) == 1
    assert "20000x20000" in one_error_line(capsys.readouterr().err)


def test_symlink_loop_as_image(env, tmp_path, capsys):
    from hp_core.preprocess import read_image_file

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(HPError, match="loop"):
        read_image_file(a)
    args = animate_args(env, tmp_path / "o.mp4")
    args[args.index("--image") + 1] = str(a)
    assert cli.main(args) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "loop" in line and str(a) in line


def test_size_the_machine_cannot_hold_is_refused_before_work(env, tmp_path, capsys, monkeypatch):
    from hp_core import run as R

    monkeypatch.setattr(R, "preflight", lambda *a, **k: pytest.fail("work started"))
    args = animate_args(env, tmp_path / "o.mp4")
    args[args.index("--size") + 1] = "8192"
    assert cli.main(args) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "--size 8192 needs about" in line and "GiB" in line and "this machine has" in line
    assert "--size of at most" in line


def test_allocator_failure_is_one_message(env, tmp_path, capsys, monkeypatch):
    def fail(args, out=print):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                           "you tried to allocate 68719476736 bytes.")
    monkeypatch.setattr(cli, "_cmd_animate", fail)
    assert cli.main(animate_args(env, tmp_path / "o.mp4")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "ran out of memory" in line and "64.0 GiB" in line and "--size" in line


def test_device_meta_is_refused(env, tmp_path, capsys):
    args = animate_args(env, tmp_path / "o.mp4")
    args[args.index("--device") + 1] = "meta"
    assert cli.main(args) == 1
    assert "--device meta" in one_error_line(capsys.readouterr().err)


# ---------------------------------------------------------------------------- replaced after pinning

def test_file_replaced_with_same_size_and_mtime_is_refused_when_loaded(env, tmp_path, monkeypatch, capsys):
    from hp_core.models import build_component

    models = fresh_models(tmp_path)
    monkeypatch.setenv(C.ENV_CACHE_DIR, str(tmp_path / "user_cache"))
    path = models / "hyportrait" / "pose_guider.pth"
    st = path.stat()
    torch.manual_seed(123)
    torch.save({k: v.float() for k, v in build_component("pose_guider", "tiny").state_dict().items()}, path)
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    V._HASHED.clear()  # a new process: nothing hashed yet

    assert cli.main(["weights", "verify", "--models-dir", str(models), "--only", "pose_guider"]) == 0
    out = capsys.readouterr().out
    assert "size and modification time match its pin" in out and "--full" in out  # says what it trusted

    with pytest.raises(HPError) as err:
        W.read_checkpoint("pose_guider", [models], preset="tiny")
    assert "content changed since it was verified" in str(err.value) and "verify --repin" in str(err.value)

    V._HASHED.clear()
    assert cli.main(animate_args(env, tmp_path / "o.mp4", models=models)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "pose_guider.pth" in line and "content changed since it was verified" in line
    assert not (tmp_path / "o.mp4").exists()

    assert cli.main(["weights", "verify", "--models-dir", str(models), "--only", "pose_guider", "--full"]) == 1
    assert "content changed since it was verified" in capsys.readouterr().out
    assert cli.main(["weights", "verify", "--models-dir", str(models), "--only", "pose_guider", "--repin"]) == 0
    W.read_checkpoint("pose_guider", [models], preset="tiny")  # accepted once re-pinned


# ------------------------------------------------------------------------------- SIGTERM and SIGKILL

# `python -m hp_core animate`, with the writer held after its first frames so the signal lands mid-write.
SLOW_WRITER = """
import sys, time
from hp_core import video
_write = video.VideoWriter.write
def write(self, frames):
    _write(self, frames)
    self._proc.stdin.flush()
    time.sleep(120)
video.VideoWriter.write = write
from hp_core.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def ffmpeg_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if int(rest[1]) == pid and "ffmpeg" in name:
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def start_slow_run(env: Path, out: Path) -> tuple[subprocess.Popen, Path, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, *animate_args(env, out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        partial = list(out.parent.glob(f".{out.stem}.partial-{proc.pid}-*.mp4"))
        if partial:
            return proc, partial[0], ffmpeg_children(proc.pid)
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no partial file appeared: " + proc.communicate()[1][-2000:])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_cleans_up_like_ctrl_c(env, tmp_path):
    out = tmp_path / "out" / "crop.mp4"
    out.parent.mkdir()
    proc, partial, children = start_slow_run(env, out)
    assert children, "the writer's ffmpeg should be running"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in one_error_line(err)
    assert list(out.parent.iterdir()) == []  # no output, no .partial file
    assert not any(running(pid) for pid in children)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_next_run_clears_the_partial_files_of_a_killed_run(env, tmp_path, capsys):
    out = tmp_path / "out" / "crop.mp4"
    out.parent.mkdir()
    proc, partial, children = start_slow_run(env, out)
    proc.kill()
    proc.communicate(timeout=60)
    for pid in children:  # the orphaned ffmpeg sees its input end and exits
        deadline = time.time() + 30
        while running(pid) and time.time() < deadline:
            time.sleep(0.1)
    assert partial.exists()
    # someone else's files in that folder, and a partial of a live process, stay
    live = out.parent / f".crop.partial-{os.getpid()}-abc.mp4"
    live.write_bytes(b"x")
    other = out.parent / ".notes.partial"
    other.write_bytes(b"x")
    fresh_perf = out.parent / ".perf.safetensors.abcd1234.partial"
    fresh_perf.write_bytes(b"x")
    old_perf = out.parent / ".perf.safetensors.zyxw9876.partial"
    old_perf.write_bytes(b"x")
    os.utime(old_perf, (time.time() - 3600, time.time() - 3600))
    os.utime(partial, (time.time() - 3600, time.time() - 3600))  # untouched for an hour: its writer is gone
    os.utime(live, (time.time() - 3600, time.time() - 3600))     # a live process's is kept however old
    recent_dead = out.parent / ".crop.partial-999999999-abc.mp4"  # a dead pid, but written a moment ago: kept
    recent_dead.write_bytes(b"x")
    assert cli.main(animate_args(env, out)) == 0, capsys.readouterr().err
    left = sorted(p.name for p in out.parent.iterdir())
    assert left == sorted([out.name, live.name, other.name, fresh_perf.name, recent_dead.name]), left
