"""Writes the example workflows in both ComfyUI formats from one description per graph.

    python workflows/build.py          # rewrite workflows/*.json (UI) and workflows/api/*.json (API)

UI format (what the frontend loads and saves; version 0.4) and API format (what POST /prompt runs) are
generated together, so they always describe the same graph. The pack's widget order is read from the
node classes; the few ComfyUI core nodes used are described in CORE below (from ComfyUI's /object_info).
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
PACK_ID = "comfyui-hunyuanportrait"

# Core nodes: sockets (name, type, optional), widgets (name, type, default) in frontend order, outputs.
# "upload" is the frontend's upload button; its saved value is "image" and it is not an API input.
CORE = {
    "LoadImage": {"sockets": [], "widgets": [("image", "COMBO", None), ("upload", "IMAGEUPLOAD", "image")],
                  "outputs": [("IMAGE", "IMAGE"), ("MASK", "MASK")]},
    "LoadVideo": {"sockets": [], "widgets": [("file", "COMBO", None), ("upload", "IMAGEUPLOAD", "image")],
                  "outputs": [("VIDEO", "VIDEO")]},
    "GetVideoComponents": {"sockets": [("video", "VIDEO", False)], "widgets": [],
                           "outputs": [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")]},
    "CreateVideo": {"sockets": [("images", "IMAGE", False), ("audio", "AUDIO", True)],
                    "widgets": [("fps", "FLOAT", 30.0)], "outputs": [("VIDEO", "VIDEO")]},
    "SaveVideo": {"sockets": [("video", "VIDEO", False)],
                  "widgets": [("filename_prefix", "STRING", "video/ComfyUI"), ("format", "COMBO", "auto"),
                              ("codec", "COMBO", "auto")], "outputs": []},
    "PreviewImage": {"sockets": [("images", "IMAGE", False)], "widgets": [], "outputs": []},
    "KSamplerSelect": {"sockets": [], "widgets": [("sampler_name", "COMBO", "euler")],
                       "outputs": [("SAMPLER", "SAMPLER")]},
    "AlignYourStepsScheduler": {"sockets": [], "widgets": [("model_type", "COMBO", "SD1"), ("steps", "INT", 10),
                                                           ("denoise", "FLOAT", 1.0)],
                                "outputs": [("SIGMAS", "SIGMAS")]},
    "Note": {"sockets": [], "widgets": [("text", "STRING", "")], "outputs": [], "ui_only": True},
}


def _pack_nodes():
    sys.path.insert(0, str(ROOT))
    try:
        import nodes
    finally:
        sys.path.remove(str(ROOT))
    return nodes.NODE_CLASS_MAPPINGS, nodes.NODE_DISPLAY_NAME_MAPPINGS


def node_spec(class_type: str) -> dict:
    """sockets / widgets / outputs of a node type, in the frontend's order."""
    if class_type in CORE:
        return CORE[class_type]
    classes, _ = _pack_nodes()
    cls = classes[class_type]
    spec = cls.INPUT_TYPES()
    sockets, widgets = [], []
    for section in ("required", "optional"):
        for name, (kind, *rest) in spec.get(section, {}).items():
            opts = rest[0] if rest else {}
            if isinstance(kind, (list, tuple)):
                widgets.append((name, "COMBO", opts.get("default", kind[0])))
            elif kind in WIDGET_TYPES:
                widgets.append((name, kind, opts.get("default")))
                if opts.get("control_after_generate"):
                    widgets.append(("control_after_generate", "CONTROL", "fixed"))
            else:
                sockets.append((name, kind, section == "optional"))
    outputs = list(zip(cls.RETURN_NAMES, cls.RETURN_TYPES))
    return {"sockets": sockets, "widgets": widgets, "outputs": outputs}


@dataclass(frozen=True)
class Out:
    node: int
    slot: int


@dataclass
class Node:
    id: int
    type: str
    values: dict
    pos: tuple[float, float]
    width: float = 320
    title: str | None = None

    def __getitem__(self, slot: int) -> Out:
        return Out(self.id, slot)


@dataclass
class Graph:
    name: str
    nodes: list[Node] = field(default_factory=list)

    def add(self, class_type: str, values: dict | None = None, pos=(0, 0), width: float = 320,
            title: str | None = None) -> Node:
        node = Node(len(self.nodes) + 1, class_type, dict(values or {}), pos, width, title)
        known = {n for n, *_ in node_spec(class_type)["sockets"]} | {n for n, *_ in node_spec(class_type)["widgets"]}
        unknown = set(node.values) - known
        if unknown:
            raise ValueError(f"{class_type} has no inputs {sorted(unknown)}")
        self.nodes.append(node)
        return node

    # -------------------------------------------------------------------------------------------- helpers

    def _order(self) -> list[Node]:
        done, order = set(), []

        def visit(n: Node):
            if n.id in done:
                return
            for v in n.values.values():
                if isinstance(v, Out):
                    visit(self.nodes[v.node - 1])
            done.add(n.id)
            order.append(n)

        for n in self.nodes:
            visit(n)
        return order

    def _links(self) -> list[tuple[int, int, int, int, int, str]]:
        """[link id, from node, from slot, to node, to slot, type]; to slot indexes the UI inputs list."""
        links = []
        for n in self.nodes:
            for i, (name, kind) in enumerate(self._ui_inputs(n)):
                value = n.values.get(name)
                if isinstance(value, Out):
                    src = self.nodes[value.node - 1]
                    out_type = node_spec(src.type)["outputs"][value.slot][1]
                    links.append((len(links) + 1, src.id, value.slot, n.id, i, out_type))
        return links

    def _ui_inputs(self, n: Node) -> list[tuple[str, str]]:
        spec = node_spec(n.type)
        inputs = [(name, kind) for name, kind, _ in spec["sockets"]]
        inputs += [(name, kind) for name, kind, _ in spec["widgets"] if isinstance(n.values.get(name), Out)]
        return inputs

    # ------------------------------------------------------------------------------------------ formats

    def ui(self) -> dict:
        """The frontend's workflow format (version 0.4)."""
        links = self._links()
        order = {n.id: i for i, n in enumerate(self._order())}
        _, display = _pack_nodes()
        out_nodes = []
        for n in self.nodes:
            spec = node_spec(n.type)
            optional = {name for name, _, opt in spec["sockets"] if opt}
            socket_names = {name for name, _, _ in spec["sockets"]}
            inputs = []
            for i, (name, kind) in enumerate(self._ui_inputs(n)):
                link = next((lk[0] for lk in links if lk[3] == n.id and lk[4] == i), None)
                entry = {"name": name, "type": kind}
                if name in optional:
                    entry["shape"] = 7
                if name not in socket_names:
                    entry["widget"] = {"name": name}
                entry["link"] = link
                inputs.append(entry)
            outputs = []
            for slot, (name, kind) in enumerate(spec["outputs"]):
                ids = [lk[0] for lk in links if lk[1] == n.id and lk[2] == slot]
                outputs.append({"name": name, "type": kind, "links": ids or None, "slot_index": slot})
            widgets = []
            for name, kind, default in spec["widgets"]:
                value = n.values.get(name, default)
                widgets.append(default if isinstance(value, Out) else value)
            rows = max(len(inputs), len(outputs)) + len(widgets)
            props = {"Node name for S&R": n.type}
            if n.type not in CORE:
                props["cnr_id"] = PACK_ID
            entry = {"id": n.id, "type": n.type, "pos": [float(n.pos[0]), float(n.pos[1])],
                     "size": [float(n.width), float(46 + 24 * rows + (120 if n.type == "Note" else 0))],
                     "flags": {}, "order": order[n.id], "mode": 0, "inputs": inputs, "outputs": outputs,
                     "properties": props, "widgets_values": widgets}
            title = n.title or display.get(n.type)
            if title and n.type != "Note":
                entry["title"] = title
            if n.type == "Note":
                entry["color"], entry["bgcolor"] = "#432", "#653"
            out_nodes.append(entry)
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PACK_ID}/{self.name}")),
            "revision": 0,
            "last_node_id": max(n.id for n in self.nodes),
            "last_link_id": len(links),
            "nodes": out_nodes,
            "links": [list(lk) for lk in links],
            "groups": [],
            "config": {},
            "extra": {"ds": {"scale": 0.7, "offset": [40.0, 40.0]}},
            "version": 0.4,
        }

    def api(self) -> dict:
        """The prompt format POST /prompt runs: {id: {class_type, inputs, _meta}} (frontend-only nodes left out)."""
        _, display = _pack_nodes()
        out = {}
        for n in self.nodes:
            spec = node_spec(n.type)
            if spec.get("ui_only"):
                continue
            inputs = {}
            for name, _, _ in spec["sockets"]:
                if isinstance(n.values.get(name), Out):
                    inputs[name] = [str(n.values[name].node), n.values[name].slot]
            for name, kind, default in spec["widgets"]:
                if kind in ("IMAGEUPLOAD", "CONTROL"):
                    continue
                value = n.values.get(name, default)
                inputs[name] = [str(value.node), value.slot] if isinstance(value, Out) else value
            out[str(n.id)] = {"class_type": n.type, "inputs": inputs,
                              "_meta": {"title": n.title or display.get(n.type, n.type)}}
        return out


# ------------------------------------------------------------------------------------------- graphs

LOADER_FILES = {"unet": "hyportrait/unet.pth", "dino": "hyportrait/dino.pth", "image_proj": "hyportrait/image_proj.pth",
                "motion_proj": "hyportrait/motion_proj.pth", "expression": "hyportrait/expression.pth",
                "headpose": "hyportrait/headpose.pth", "pose_guider": "hyportrait/pose_guider.pth",
                "vae": "vae/diffusion_pytorch_model.fp16.safetensors"}
SOURCE_FILE = "hunyuan_portrait_source.png"
DRIVING_FILE = "hunyuan_portrait_driving.mp4"


def portrait_graph(name: str, note: str, *, loader: dict | None = None, face: dict | None = None,
                   sampler: dict | None = None, decode: dict | None = None, dwpose: bool = False,
                   comfy_sampler: bool = False, crop_video: bool = True) -> Graph:
    """The card's graph: load -> face crop -> motion / appearance (-> DWPose) -> sampler -> decode ->
    paste back -> Create Video (driving fps + audio) -> Save Video."""
    g = Graph(name)
    g.add("Note", {"text": note}, pos=(20, -260), width=420)
    image = g.add("LoadImage", {"image": SOURCE_FILE}, pos=(20, 20), width=300)
    video = g.add("LoadVideo", {"file": DRIVING_FILE}, pos=(20, 420), width=300)
    parts = g.add("GetVideoComponents", {"video": video[0]}, pos=(360, 420), width=220)
    models = g.add("HunyuanPortraitModelLoader", {**LOADER_FILES, **(loader or {})}, pos=(360, -260), width=380)
    crop = g.add("HunyuanPortraitFaceCropMotionEncoder",
                 {"source_image": image[0], "driving_frames": parts[0], **(face or {})}, pos=(620, 300), width=340)
    motion = g.add("HunyuanPortraitMotionExtractor", {"models": models[0], "motion_features": crop[0]},
                   pos=(1000, 300), width=340)
    appearance = g.add("HunyuanPortraitAppearanceExtractor",
                       {"models": models[0], "source_image": image[0], "motion_features": crop[0]},
                       pos=(1000, 20), width=340)
    values = {"models": models[0], "appearance": appearance[0], "motion": motion[0], **(sampler or {})}
    if dwpose:
        pose = g.add("HunyuanPortraitDWPoseAlignment", {"motion_features": crop[0]}, pos=(1000, 520), width=340)
        g.add("PreviewImage", {"images": pose[1]}, pos=(1000, 680), width=300)
        values["pose"] = pose[0]
    if comfy_sampler:
        select = g.add("KSamplerSelect", {"sampler_name": "dpmpp_2m"}, pos=(1000, 560), width=300)
        sigmas = g.add("AlignYourStepsScheduler", {"model_type": "SVD", "steps": 10, "denoise": 1.0},
                       pos=(1000, 680), width=300)
        values["sampler"], values["sigmas"] = select[0], sigmas[0]
    sample = g.add("HunyuanPortraitSampler", values, pos=(1380, 20), width=360)
    frames = g.add("HunyuanPortraitDecode", {"models": models[0], "latent": sample[0], **(decode or {})},
                   pos=(1780, 20), width=300)
    full = g.add("HunyuanPortraitPasteBack", {"frames": frames[0], "source_image": image[0],
                                              "appearance": appearance[0]}, pos=(1780, 200), width=300)
    g.add("PreviewImage", {"images": appearance[1]}, pos=(1380, 560), width=300)
    video_full = g.add("CreateVideo", {"images": full[0], "fps": parts[2], "audio": parts[1]}, pos=(2120, 200),
                       width=260)
    g.add("SaveVideo", {"video": video_full[0], "filename_prefix": f"HunyuanPortrait/{name}"}, pos=(2420, 200),
          width=420)
    if crop_video:
        video_crop = g.add("CreateVideo", {"images": frames[0], "fps": parts[2], "audio": parts[1]},
                           pos=(2120, 20), width=260)
        g.add("SaveVideo", {"video": video_crop[0], "filename_prefix": f"HunyuanPortrait/{name}_crop"},
              pos=(2420, -300), width=420)
    return g


WORKFLOWS = {
    "hunyuan_portrait_basic": lambda: portrait_graph(
        "hunyuan_portrait_basic",
        "HunyuanPortrait, the release's settings: euler, Karras sigmas 700 -> 0.002, 25 steps, appearance and "
        "motion CFG 2, windows of 25 frames with overlap 3, 15 padding frames, seed 72580.\n\n"
        "Put the weights in models/hunyuan_portrait (python -m hp_core weights download), a portrait in "
        "LoadImage and a driving video in LoadVideo. The result keeps the driving video's fps and audio; one "
        "video is the 512x512 crop, the other is pasted back into the full source image."),
    "hunyuan_portrait_long_video": lambda: portrait_graph(
        "hunyuan_portrait_long_video",
        "Long driving videos: every frame is used (frame_limit 0); the sampler covers the video with "
        "overlapping 25-frame windows, so memory does not grow with length. Landmark smoothing calms detector "
        "jitter; a wider overlap (5) smooths window seams; keep_on_gpu 'unet' sends the encoders and VAE back "
        "to the CPU after use; decode_chunk 4 bounds decoder memory. Lower context_window if you run out of "
        "memory. Long videos take a while: every 22 frames cost one UNet window per step.",
        loader={"keep_on_gpu": "unet"}, face={"frame_limit": 0, "smoothing": 5},
        sampler={"context_overlap": 5}, decode={"decode_chunk": 4}, crop_video=False),
    "hunyuan_portrait_dwpose": lambda: portrait_graph(
        "hunyuan_portrait_dwpose",
        "DWPose-aligned pose guidance (the paper's method; the release feeds blank pose images): DWPose reads "
        "the source and driving crops, the driving skeletons are moved to the source's nose and scaled to its "
        "bone lengths, and the pose guider sees them. Needs dwpose/yolox_l.onnx and dwpose/dw-ll_ucoco_384.onnx "
        "in models/hunyuan_portrait (python -m hp_core weights download --optional).",
        dwpose=True),
    "hunyuan_portrait_fast": lambda: portrait_graph(
        "hunyuan_portrait_fast",
        "Fast preview: dpmpp_2m with Align-Your-Steps sigmas for SVD (ays_svd) at 10 steps instead of euler at "
        "25. Lower the appearance extractor's resolution to 256 for an even quicker rough draft.",
        sampler={"sampler_name": "dpmpp_2m", "scheduler": "ays_svd", "steps": 10}),
    "hunyuan_portrait_comfy_sampler": lambda: portrait_graph(
        "hunyuan_portrait_comfy_sampler",
        "Any ComfyUI sampler and scheduler can drive the sampler: here KSamplerSelect (dpmpp_2m) and "
        "AlignYourStepsScheduler (model_type SVD, 10 steps) are connected to its optional sampler and sigmas "
        "inputs, which replace its own sampler_name, scheduler, steps and denoise.",
        comfy_sampler=True, crop_video=False),
}


def write_all(folder: Path = HERE) -> list[Path]:
    """Write every workflow in both formats; returns the files written."""
    written = []
    (folder / "api").mkdir(parents=True, exist_ok=True)
    for name, make in WORKFLOWS.items():
        graph = make()
        for path, data in ((folder / f"{name}.json", graph.ui()), (folder / "api" / f"{name}.json", graph.api())):
            path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all():
        print(p.relative_to(ROOT))
