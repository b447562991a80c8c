"""Starts a real ComfyUI server for the integration tests: 127.0.0.1 on a free port, --cpu, a temporary
--base-directory with this pack linked into its custom_nodes, and tiny weights in a folder that only an
extra_model_paths.yaml names (so the tests also show that folder is honoured)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent

# What makes an example workflow run in seconds on the tiny weights, by node type: API input names, which
# are also the frontend's widget names. The server tests set them in the API prompt, the browser tests in
# the loaded graph's widgets.
TINY_INPUTS = {
    "LoadImage": {"image": "portrait.png"},
    "LoadVideo": {"file": "driving.mp4"},
    # The tiny VAE is fp32 (the fp16 file is not there).
    "HunyuanPortraitModelLoader": {"preset": "tiny", "vae": "vae/diffusion_pytorch_model.safetensors"},
    "HunyuanPortraitFaceCropMotionEncoder": {"frame_limit": 4},
    "HunyuanPortraitAppearanceExtractor": {"resolution": 64},
    "HunyuanPortraitSampler": {"steps": 2, "padding": 2, "context_window": 8, "context_overlap": 2},
    "AlignYourStepsScheduler": {"steps": 3},
}
# A second portrait (the face elsewhere, same size): one driving performance drives both.
OTHER_PORTRAIT = "portrait_b.png"


def write_inputs(folder: Path, portrait_hw: tuple[int, int] = (240, 320), driving_hw: tuple[int, int] = (200, 200),
                 frames: int = 6, fps: float = 25.0) -> None:
    """The synthetic source portrait and driving clip TINY_INPUTS names, and OTHER_PORTRAIT, into ComfyUI's
    input folder."""
    from fakes import driving_frames, portrait, write_clip
    from PIL import Image

    Image.fromarray(portrait(*portrait_hw)).save(folder / TINY_INPUTS["LoadImage"]["image"])
    h, w = portrait_hw
    other = portrait(h, w, (w // 2 - 70, h // 4, w // 2, h // 4 + 80))
    Image.fromarray(other).save(folder / OTHER_PORTRAIT)
    write_clip(folder / TINY_INPUTS["LoadVideo"]["file"], driving_frames(frames, *driving_hw), fps)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running ComfyUI: its url, process, log file and --base-directory."""

    def __init__(self, url: str, proc: subprocess.Popen, log: Path, base: Path):
        self.url, self.proc, self.log, self.base = url, proc, log, base

    def get(self, path: str):
        """GET path and decode the JSON answer."""
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, data: dict):
        """POST data as JSON and decode the answer; an HTTP error fails the test with the server's message."""
        req = urllib.request.Request(self.url + path, data=json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                body = r.read()
                return json.loads(body) if body else {}
        except urllib.error.HTTPError as err:
            raise AssertionError(f"POST {path} -> {err.code}: {err.read().decode()[:2000]}") from None

    def run(self, prompt: dict, timeout: float = 300, client_id: str = "hp-test") -> dict:
        """Queue a prompt and wait for its history entry."""
        pid = self.post("/prompt", {"prompt": prompt, "client_id": client_id})["prompt_id"]
        return self.wait(pid, timeout)

    def wait(self, pid: str, timeout: float = 300) -> dict:
        """Wait until prompt pid finished (success or error) and return its history entry."""
        end = time.time() + timeout
        while time.time() < end:
            hist = self.get(f"/history/{pid}")
            if pid in hist and hist[pid].get("status", {}).get("completed") is not None:
                if hist[pid]["status"].get("status_str") in ("success", "error"):
                    return hist[pid]
            if self.proc.poll() is not None:
                raise AssertionError("ComfyUI exited:\n" + self.log.read_text()[-4000:])
            time.sleep(0.5)
        raise AssertionError(f"prompt {pid} did not finish in {timeout} s:\n" + self.log.read_text()[-4000:])


class Messages:
    """A websocket client of the server (stdlib only): collects (opcode, payload) of every frame it receives
    in a background thread. opcode 1 = JSON text, 2 = binary (4-byte event type + data, e.g. previews)."""

    def __init__(self, url: str, client_id: str):
        host, port = url.split("//")[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.frames: list[tuple[int, bytes]] = []
        self.sock.settimeout(None)
        threading.Thread(target=self._read, daemon=True).start()

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _read(self) -> None:
        try:
            while True:
                b0, b1 = self._exact(2)
                size = b1 & 0x7F
                if size == 126:
                    size = struct.unpack(">H", self._exact(2))[0]
                elif size == 127:
                    size = struct.unpack(">Q", self._exact(8))[0]
                payload = self._exact(size)  # server frames are never masked
                if b0 & 0x0F in (1, 2):
                    self.frames.append((b0 & 0x0F, payload))
        except (OSError, ConnectionError):
            return

    def previews(self) -> list[bytes]:
        """Image data of the preview frames received (event 1: PREVIEW_IMAGE; 4: with metadata)."""
        out = []
        for opcode, payload in self.frames:
            if opcode == 2 and struct.unpack(">I", payload[:4])[0] in (1, 4):
                out.append(payload[4:])
        return out

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def comfyui_server(tmp: Path, comfyui_path: str, python: str | None = None,
                   prepare: Callable[[Path], None] | None = None,
                   front_end_root: str | None = None) -> Iterator[Server]:
    """Start ComfyUI (checkout comfyui_path, interpreter python) with the pack and tiny weights; stop it after.

    prepare(base) runs before the start, e.g. to put files into base / "input". front_end_root: serve that
    frontend build (--front-end-root) instead of the one ComfyUI pins; None: $HP_FRONT_END_ROOT if set; "": the
    pinned one whatever the environment says."""
    from fakes import write_fake_dwpose
    from nodes_env import make_models_dir

    base = tmp / "base"
    for sub in ("models", "custom_nodes", "input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True)
    (base / "custom_nodes" / "ComfyUI-HunyuanPortrait").symlink_to(ROOT, target_is_directory=True)
    make_models_dir(tmp / "elsewhere" / "hp")
    write_fake_dwpose(tmp / "elsewhere" / "hp" / "dwpose")  # so the DWPose workflow runs too
    yaml = tmp / "extra_model_paths.yaml"
    yaml.write_text(f"hp_test:\n  base_path: {tmp / 'elsewhere'}\n  hunyuan_portrait: hp\n", encoding="utf-8")
    if prepare is not None:
        prepare(base)

    port = _free_port()
    log = tmp / "comfyui.log"
    cmd = [python or sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--extra-model-paths-config", str(yaml), "--disable-auto-launch",
           "--database-url", f"sqlite:///{tmp / 'comfyui.db'}",
           "--preview-method", "auto"]  # latent previews on, as artists run it (ComfyUI's default is none)
    if front_end_root is None:
        front_end_root = os.environ.get("HP_FRONT_END_ROOT")
    if front_end_root:  # another frontend build, e.g. pip install --target DIR a newer one
        cmd += ["--front-end-root", str(front_end_root)]
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=comfyui_path, stdout=f, stderr=subprocess.STDOUT)
    srv = Server(f"http://127.0.0.1:{port}", proc, log, base)
    try:
        end = time.time() + 240
        while True:
            try:
                srv.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.time() > end:
                    raise AssertionError("ComfyUI did not start:\n" + log.read_text()[-4000:])
                time.sleep(1)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
