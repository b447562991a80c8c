"""Writes the example workflows in both ComfyUI formats from one description per graph.

    python workflows/build.py          # rewrite workflows/*.json (UI) and workflows/api/*.json (API)

UI format (what the frontend loads and saves; version 0.4) and API format (what POST /prompt runs) are
generated together, so they always describe the same graph. The pack's widget order is read from the
node classes; the few ComfyUI core nodes used are described in CORE below (from ComfyUI's /object_info).
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
# The Registry id the frontend hands the Manager for our nodes: pyproject's [project] name, read, not retyped.
# (tomllib is Python 3.11+, the pack supports 3.10: the one line is read directly.)
PACK_ID = re.search(r'^\[project\][^\[]*?^name\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"),
                    re.M | re.S).group(1)

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
        import nodes  # the pack itself, found through the path set just above
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
    outputs = list(zip(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES), cls.RETURN_TYPES))
    return {"sockets": sockets, "widgets": widgets, "outputs": outputs}


def node_height(n) -> float:
    """Body height of a node (below its title bar): one row per slot pair and widget, or what it reserves."""
    if n.height is not None:
        return n.height
    spec = node_spec(n.type)
    sockets = len(spec["sockets"]) + sum(1 for name, *_ in spec["widgets"] if isinstance(n.values.get(name), Out))
    rows = max(sockets, len(spec["outputs"])) + len(spec["widgets"])
    return 46 + 24 * rows


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
    height: float | None = None  # None: from the rows; media nodes reserve room for what appears after a run

    def __getitem__(self, slot: int) -> Out:
        return Out(self.id, slot)


@dataclass
class Graph:
    name: str
    nodes: list[Node] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    ds: dict = field(default_factory=lambda: {"scale": 0.7, "offset": [40.0, 40.0]})

    def add(self, class_type: str, values: dict | None = None, pos=(0, 0), width: float = 320,
            title: str | None = None, height: float | None = None) -> Node:
        """Add a node with these input values (links are Out). The node keeps its own copy of values: what is
        set in the caller's dict afterwards does not reach it; connect later inputs with set()."""
        node = Node(len(self.nodes) + 1, class_type, {}, pos, width, title, height)
        self.nodes.append(node)
        for name, value in (values or {}).items():
            self.set(node, name, value)
        return node

    def set(self, node: Node, name: str, value) -> None:
        """Set an input of a node already added (a widget value, or a link as Out), checking the name."""
        spec = node_spec(node.type)
        known = {n for n, *_ in spec["sockets"]} | {n for n, *_ in spec["widgets"]}
        if name not in known:
            raise ValueError(f"{node.type} has no input {name!r}")
        if isinstance(value, Out) and not 1 <= value.node <= len(self.nodes):
            raise ValueError(f"{node.type}.{name} links to node {value.node}, which is not in {self.name}")
        node.values[name] = value

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
            props = {"Node name for S&R": n.type}
            if n.type not in CORE:
                props["cnr_id"] = PACK_ID
            entry = {"id": n.id, "type": n.type, "pos": [float(n.pos[0]), float(n.pos[1])],
                     "size": [float(n.width), float(node_height(n))],
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
            "groups": self.groups,
            "config": {},
            "extra": {"ds": self.ds},
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


# Layout, in graph units. The default view must show every node at a zoom where the frontend draws widget
# text (LiteGraph's low-quality threshold: MinFontSizeForLOD 8 px / NODE_TEXT_SIZE 14 = 0.571 at DPR 1).
WINDOW = (1600, 900)           # the window the default view is made for
# The same saved view (zoom + offset) lands differently in the two frontends the examples are made for: the
# one ComfyUI 0.3.64 pins (1.27) puts its canvas right of the side bar and below the tabs + menu, the newer
# ones (1.58) make the canvas the whole window and float their bars over it. Per frontend: where the canvas's
# origin is in the window, and the window px (x0, y0, x1, y1) that bars and the minimap (shown by default,
# setting Comfy.Minimap.Visible) keep covered. The view must keep every node, and every group's title row,
# clear of all of them in both.
FRONTEND_VIEWS = {
    "1.27": {"origin": (64, 78), "covers": {
        "side bar": (0, 0, 64, 900), "tabs + menu": (0, 0, 1600, 78),
        "zoom bar": (0, 860, 1600, 900),  # the canvas's bottom 40 px
        "minimap": (1306, 634, 1556, 834)}},  # 250x200, 44 px from the right edge, 66 px above the bottom
    "1.58": {"origin": (0, 0), "covers": {
        "side bar": (0, 0, 56, 900), "tabs": (0, 0, 1600, 38),
        "graph menu": (64, 46, 208, 86), "run bar": (1243, 46, 1592, 86),  # floating, top left / top right
        "zoom bar": (1352, 852, 1588, 892), "minimap": (1339, 638, 1592, 838)}},
}
EDGE_GAP, COVER_GAP, BOTTOM_GAP = 10, 10, 50  # px kept free at the window's edges, around covers, at its bottom
MIN_SCALE = 0.6                # above the low-quality threshold, with a margin
TITLE_H, GROUP_HEADER, PAD, GAP, COLUMN_GAP, STAGE_GAP = 30, 40, 10, 30, 30, 20
# The newer frontend's node renderer (Vue nodes, setting Comfy.VueNodes.Enabled) draws a node at least as tall
# as saved and taller where its rows need it: these nodes are saved that much taller in graph units, so they
# keep their size in both renderers. Below a node with a problem (a missing file, a refused input) it hangs a
# 20-unit "Issues" / "Error" footer: GAP keeps room for it.
VUE_ROOM = {"HunyuanPortraitModelLoader": 60, "HunyuanPortraitAppearanceExtractor": 10}
# Nodes reserve the room their previews take when they appear (on loading a file, during and after a run);
# otherwise the frontend grows them over their neighbours. Image previews: the frontend keeps at least
# 220 px for the picture and fits the picture inside. Video previews: the frontend makes the player as wide
# as the node and as tall as the clip's aspect asks; room is kept for portrait clips up to 9:16 (width:height,
# a phone held upright), so every flatter clip fits too. The crop video is always square.
IMAGE_PREVIEW = 220
VIDEO_ASPECT = 16 / 9          # height / width of the tallest clip the video nodes keep room for
MEDIA = {"LoadImage": 330, "PreviewImage": 250}
VIDEO_NODES = ("LoadVideo", "SaveVideo")
LIVE_PREVIEW = ("HunyuanPortraitSampler",)  # shows the latent being sampled
STAGE_COLORS = ("#3f789e", "#8A8", "#b06634", "#a1309b", "#88A")


def reserve_preview_room(n: Node) -> None:
    """Give a node that shows an image or video the height it takes once the preview is there (and a node the
    Vue renderer draws taller, that height)."""
    if n.height is not None:
        return
    if n.type in VUE_ROOM:
        n.height = node_height(n) + VUE_ROOM[n.type]
    elif n.type in MEDIA:
        n.height = MEDIA[n.type]
    elif n.type in VIDEO_NODES:
        n.height = node_height(n) + round(n.width * VIDEO_ASPECT)
    elif n.type in LIVE_PREVIEW:
        n.height = node_height(n) + IMAGE_PREVIEW


def _blocked(boxes: list[tuple[str, tuple]], scale: float, offset: tuple[float, float]) -> list[str]:
    """What of boxes (graph units: x0, y0, x1, y1) leaves the window or reaches a cover in either frontend at
    this view, e.g. 'Sampler under the 1.58 run bar'."""
    out = []
    for fe, view in FRONTEND_VIEWS.items():
        ox, oy = view["origin"]
        for name, (x0, y0, x1, y1) in boxes:
            sx0, sy0 = ox + (x0 + offset[0]) * scale, oy + (y0 + offset[1]) * scale
            sx1, sy1 = ox + (x1 + offset[0]) * scale, oy + (y1 + offset[1]) * scale
            if sx0 < EDGE_GAP or sy0 < EDGE_GAP or sx1 > WINDOW[0] - EDGE_GAP or sy1 > WINDOW[1] - BOTTOM_GAP:
                out.append(f"{name} off the {fe} window")
            for cover, (cx0, cy0, cx1, cy1) in view["covers"].items():
                if sx0 < cx1 + COVER_GAP and sx1 > cx0 - COVER_GAP and sy0 < cy1 + COVER_GAP and sy1 > cy0 - COVER_GAP:
                    out.append(f"{name} under the {fe} {cover}")
    return out


def layout(g: Graph, stages: list[tuple[str, list[list[Node]]]]) -> None:
    """Place stages left to right, each a titled group of node columns; set the view that shows them all,
    clear of the minimap, at the largest zoom that does."""
    x, bottom = 0.0, 0.0
    boxes = []
    for title, columns in stages:
        cx, low = x + PAD, 0.0
        for column in columns:
            y = GROUP_HEADER + PAD
            for n in column:
                reserve_preview_room(n)
                n.pos = (cx, y + TITLE_H)
                y += TITLE_H + node_height(n) + GAP
            low = max(low, y - GAP)
            cx += max(n.width for n in column) + COLUMN_GAP
        right = cx - COLUMN_GAP + PAD
        boxes.append((title, x, right))
        bottom = max(bottom, low + PAD)
        x = right + STAGE_GAP
    width = x - STAGE_GAP
    g.groups = [{"id": i + 1, "title": title, "bounding": [left, 0.0, right - left, bottom],
                 "color": STAGE_COLORS[i % len(STAGE_COLORS)], "font_size": 24, "flags": {}}
                for i, (title, left, right) in enumerate(boxes)]
    # What must stay in view and clear: every node (title bar included) and every group's title row.
    shown = [(n.title or n.type, (n.pos[0], n.pos[1] - TITLE_H, n.pos[0] + n.width, n.pos[1] + node_height(n)))
             for n in g.nodes]
    shown += [(f"group {t!r}", (left, 0.0, right, GROUP_HEADER)) for t, left, right in boxes]
    # The largest zoom (in 0.01 steps) at which some view shows all of it in both frontends: the graph's left
    # edge just right of the wider side bar, the top edge moved down px by px until nothing is covered.
    left_px = max(v["covers"]["side bar"][2] - v["origin"][0] for v in FRONTEND_VIEWS.values()) + COVER_GAP
    scale, tried = int(min(1.0, (WINDOW[0] - left_px) / width, WINDOW[1] / bottom) * 100) / 100, []
    while scale >= MIN_SCALE:
        for top_px in range(0, 200, 2):
            offset = (round(left_px / scale, 2), round(top_px / scale, 2))
            tried = _blocked(shown, scale, offset)
            if not tried:
                g.ds = {"scale": scale, "offset": list(offset)}
                return
        scale = round(scale - 0.01, 2)
    raise ValueError(f"{g.name}: no view at zoom >= {MIN_SCALE} shows it in both frontends: {tried[:5]}")


def portrait_graph(name: str, note: str, *, loader: dict | None = None, face: dict | None = None,
                   sampler: dict | None = None, decode: dict | None = None, dwpose: bool = False,
                   comfy_sampler: bool = False, crop_video: bool = True, edit: dict | None = None,
                   saved_performance: bool = False) -> Graph:
    """The card's graph, laid out in five titled stages: load -> driving side (face crop -> motion extractor:
    the performance, independent of the portrait) and portrait side (appearance extractor) (-> DWPose)
    (-> Motion Edit) -> sampler -> decode -> paste back -> Create Video (driving fps + audio) -> Save Video.

    edit: a Motion Edit node (these widget values) between the extractor and the sampler. saved_performance:
    the extracted performance goes to Save Performance, and the sampler reads Load Performance instead."""
    g = Graph(name)
    models = g.add("HunyuanPortraitModelLoader", {**LOADER_FILES, **(loader or {})}, width=300, title="Load Models")
    note_node = g.add("Note", {"text": note}, width=300, height=190)
    image = g.add("LoadImage", {"image": SOURCE_FILE}, width=260, title="Source portrait")
    video = g.add("LoadVideo", {"file": DRIVING_FILE}, width=260, title="Driving video")
    parts = g.add("GetVideoComponents", {"video": video[0]}, width=260, title="Frames, audio, fps")
    # The driving side: nothing of the portrait reaches it, so another portrait reuses its cached results.
    crop = g.add("HunyuanPortraitFaceCropMotionEncoder",
                 {"driving_frames": parts[0], "fps": parts[2], **(face or {})}, width=300,
                 title="Face Crop Motion Encoder")
    motion = g.add("HunyuanPortraitMotionExtractor", {"models": models[0], "motion_features": crop[0]},
                   width=300, title="Motion Extractor")
    # The portrait side.
    appearance = g.add("HunyuanPortraitAppearanceExtractor", {"models": models[0], "source_image": image[0]},
                       width=300, title="Appearance Extractor")
    stage2 = [[crop, motion, appearance]]
    # The driving clip's parts below the note: below the two previews the column would be the graph's tallest.
    inputs = [[models, note_node, parts], [image, video]]
    performance = motion[0]
    if saved_performance:
        save = g.add("HunyuanPortraitSavePerformance", {"performance": performance,
                                                        "filename_prefix": PERFORMANCE_PREFIX},
                     width=300, title="Save Performance")
        load = g.add("HunyuanPortraitLoadPerformance", {"performance_file": SAVED_PERFORMANCE}, width=300,
                     title="Load Performance")
        stage2 = [[crop, motion, save, appearance]]
        inputs[0].insert(2, load)  # a loader: with the inputs, below the note
        performance = load[0]
    values = {"models": models[0], "appearance": appearance[0], **(sampler or {})}
    if edit is not None:
        edited = g.add("HunyuanPortraitMotionEdit", {"performance": performance, "appearance": appearance[0],
                                                     **edit}, width=270, title="Motion Edit")
        stage2.append([edited])
        performance = edited[0]
    values["performance"] = performance
    previews = []
    if dwpose:
        pose = g.add("HunyuanPortraitDWPoseAlignment", {"motion_features": crop[0], "appearance": appearance[0]},
                     width=300, title="DWPose Alignment")
        stage2[0].append(pose)
        # Beside the source crop in stage 4: the stage 2 column has no room left for a preview.
        previews.append(g.add("PreviewImage", {"images": pose[1]}, width=260, title="Aligned poses"))
        values["pose"] = pose[0]
    stage3 = []
    if comfy_sampler:  # in a column before the Sampler: below it they would be in the way of its preview
        select = g.add("KSamplerSelect", {"sampler_name": "dpmpp_2m"}, width=260)
        sigmas = g.add("AlignYourStepsScheduler", {"model_type": "SVD", "steps": 10, "denoise": 1.0}, width=260)
        values["sampler"], values["sigmas"] = select[0], sigmas[0]
        stage3.append([select, sigmas])
    # Added with every input it reads (the node copies values when added; see Graph.add / Graph.set).
    sample = g.add("HunyuanPortraitSampler", values, width=300, title="Sampler (SVD + adapters)")
    stage3.append([sample])
    frames = g.add("HunyuanPortraitDecode", {"models": models[0], "latent": sample[0], **(decode or {})},
                   width=260, title="Decode")
    full = g.add("HunyuanPortraitPasteBack", {"frames": frames[0], "source_image": image[0],
                                              "appearance": appearance[0]}, width=260, title="Paste Back")
    crop_preview = g.add("PreviewImage", {"images": appearance[1]}, width=260, title="Source crop")
    creates, saves = [], []
    if crop_video:
        # 210: the frontend widens a narrower Create Video to that.
        video_crop = g.add("CreateVideo", {"images": frames[0], "fps": parts[2], "audio": parts[1]}, width=210)
        creates.append(video_crop)
        save_crop = g.add("SaveVideo", {"video": video_crop[0], "filename_prefix": f"HunyuanPortrait/{name}_crop"},
                          width=260, title="Save crop video")
        save_crop.height = node_height(save_crop) + save_crop.width  # the crop is square
        saves.append(save_crop)
    video_full = g.add("CreateVideo", {"images": full[0], "fps": parts[2], "audio": parts[1]}, width=210)
    creates.append(video_full)
    saves.append(g.add("SaveVideo", {"video": video_full[0], "filename_prefix": f"HunyuanPortrait/{name}"},
                       width=260, title="Save full video"))
    layout(g, [("1. Inputs", inputs),
               ("2. Motion and appearance", stage2),
               ("3. Sampling", stage3),
               ("4. Decode and paste back", [[frames, full, crop_preview, *previews]]),
               # The Save Video nodes side by side, each in its own column: stacked, they would reach down
               # into the minimap in the bottom-right corner; below its Create Video, a link would hide
               # behind the nodes.
               ("5. Video out", [creates] + [[save] for save in saves])])
    return g


# What Save Performance writes first in an empty performances folder (prefix + counter), so the performance
# example's Load Performance picks it on the second run without touching the list.
PERFORMANCE_PREFIX = "performance"
SAVED_PERFORMANCE = f"{PERFORMANCE_PREFIX}_00001.safetensors"


WORKFLOWS = {
    "hunyuan_portrait_basic": lambda: portrait_graph(
        "hunyuan_portrait_basic",
        "Set: a portrait in Source portrait, a driving video in Driving video, the weights in Load Models "
        "(models/hunyuan_portrait; python -m hp_core weights download).\n"
        "The release's settings: euler, karras, 25 steps, CFG 2 / 2, seed 72580. Saves the 512x512 crop and "
        "the full image, with the driving fps and audio."),
    "hunyuan_portrait_long_video": lambda: portrait_graph(
        "hunyuan_portrait_long_video",
        "Set: portrait, driving video, weights (as in basic).\n"
        "Long videos: every frame is used (frame_limit 0), 25-frame windows with overlap 5, landmark "
        "smoothing 5, keep_on_gpu 'unet', decode_chunk 4. Out of memory: lower context_window.",
        loader={"keep_on_gpu": "unet"}, face={"frame_limit": 0, "smoothing": 5},
        sampler={"context_overlap": 5}, decode={"decode_chunk": 4}, crop_video=False),
    "hunyuan_portrait_dwpose": lambda: portrait_graph(
        "hunyuan_portrait_dwpose",
        "Set: portrait, driving video, weights (as in basic), plus dwpose/yolox_l.onnx and "
        "dwpose/dw-ll_ucoco_384.onnx (weights download --optional).\n"
        "The driving skeletons are aligned to the source face and guide the pose guider (the paper's method).",
        dwpose=True),
    "hunyuan_portrait_fast": lambda: portrait_graph(
        "hunyuan_portrait_fast",
        "Set: portrait, driving video, weights (as in basic).\n"
        "Fast draft: dpmpp_2m with Align-Your-Steps sigmas (ays_svd), 10 steps. For an even quicker draft, "
        "set the Appearance Extractor's resolution to 256.",
        sampler={"sampler_name": "dpmpp_2m", "scheduler": "ays_svd", "steps": 10}),
    "hunyuan_portrait_comfy_sampler": lambda: portrait_graph(
        "hunyuan_portrait_comfy_sampler",
        "Set: portrait, driving video, weights (as in basic).\n"
        "Any ComfyUI sampler drives the Sampler: KSamplerSelect and AlignYourStepsScheduler (model_type SVD) "
        "replace its sampler_name, scheduler, steps and denoise.",
        comfy_sampler=True, crop_video=False),
    "hunyuan_portrait_pose_edit": lambda: portrait_graph(
        "hunyuan_portrait_pose_edit",
        "Set: portrait, driving video, weights (as in basic).\n"
        "Motion Edit: pose_mode relative = the portrait keeps its own head pose and follows the driver's "
        "movement (another person drives); still = only the face moves. pose_smoothing 2 calms jitter. "
        "expression_strength is experimental: judge by eye.",
        edit={"pose_mode": "relative", "pose_smoothing": 2.0, "expression_strength": 1.0}, crop_video=False),
    "hunyuan_portrait_performance": lambda: portrait_graph(
        "hunyuan_portrait_performance",
        "Set: portrait, driving video, weights (as in basic).\n"
        "Run once to save the performance, then pick the file in Load Performance and run again. In ComfyUI, "
        "queueing again with another portrait reuses the cached driving side.",
        saved_performance=True, crop_video=False),
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
