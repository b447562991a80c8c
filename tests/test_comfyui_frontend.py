"""Integration: every UI-format workflow in workflows/ loads in the real ComfyUI browser frontend (served by a
real ComfyUI with this pack installed, driven in headless Chromium): no node type is missing, no node is
flagged as broken, every link joins existing slots of compatible types, no "missing nodes" dialog or console
error appears, and the frontend's own conversion of the loaded graph to a prompt equals the API-format file.

Needs $COMFYUI_PATH (a ComfyUI checkout with its frontend package, run by $COMFYUI_PYTHON, default: this
interpreter), a Chromium binary ($CHROMIUM_PATH, or chromium / chromium-browser / google-chrome on PATH) and
the `playwright` Python package (used only to drive that binary; no browser download). Skipped otherwise.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
CHROMIUM = os.environ.get("CHROMIUM_PATH") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)

if not COMFYUI_PATH:
    pytest.skip("COMFYUI_PATH is not set (path of a ComfyUI checkout)", allow_module_level=True)
if not CHROMIUM:
    pytest.skip("no Chromium binary (set CHROMIUM_PATH or put chromium on PATH)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package drives Chromium")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # headless=True adds --headless
READY = "window.app && window.app.graph && window.LiteGraph && 'HunyuanPortraitSampler' in LiteGraph.registered_node_types"

# Runs in the page: load one UI workflow through the app and report what the frontend made of it.
CHECK = """async (wf) => {
  const LG = window.LiteGraph, registered = LG.registered_node_types;
  const unknownTypes = [...new Set(wf.nodes.map(n => n.type).filter(t => !(t in registered)))];
  await window.app.loadGraphData(wf, true, false, null);
  const g = window.app.graph, nodes = g._nodes || g.nodes;
  // An unknown type becomes a bare LGraphNode marked has_errors (litegraph's placeholder).
  const flagged = nodes.filter(n => n.has_errors || !(n.type in registered) || n.constructor === LG.LGraphNode)
                       .map(n => `${n.id}:${n.type}`);
  const links = (g.links instanceof Map ? [...g.links.values()] : Object.values(g.links || {})).filter(Boolean);
  const broken = [];
  for (const l of links) {
    const o = g.getNodeById(l.origin_id), t = g.getNodeById(l.target_id);
    const tag = `link ${l.id} ${l.origin_id}[${l.origin_slot}] -> ${l.target_id}[${l.target_slot}]`;
    if (!o || !t) { broken.push(tag + ': node gone'); continue; }
    const out = o.outputs?.[l.origin_slot], inp = t.inputs?.[l.target_slot];
    if (!out || !inp) { broken.push(tag + ': slot gone'); continue; }
    if (inp.link !== l.id) broken.push(tag + `: the input holds link ${inp.link}`);
    if (!(out.links || []).includes(l.id)) broken.push(tag + ': the output does not list it');
    if (!LG.isValidConnection(out.type, inp.type)) broken.push(tag + `: ${out.type} -> ${inp.type}`);
  }
  for (const n of wf.nodes) for (const s of (n.inputs || []))
    if (s.link != null && !links.some(l => l.id === s.link)) broken.push(`node ${n.id} input ${s.name}: link ${s.link} dropped`);
  const dialogs = [...document.querySelectorAll('.p-dialog, [role="dialog"]')].map(d => d.innerText.slice(0, 500));
  const { output } = await window.app.graphToPrompt();
  return { unknownTypes, flagged, broken, dialogs, nodes: nodes.length, links: links.length,
           prompt: JSON.parse(JSON.stringify(output)) };
}"""


class Frontend:
    """A headless Chromium that opens the ComfyUI page and records console errors and uncaught exceptions."""

    def __init__(self, browser, url: str):
        self.browser, self.url = browser, url

    def open(self, viewport: dict | None = None):
        page = self.browser.new_page(viewport=viewport) if viewport else self.browser.new_page()
        page.errors = []
        page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                and page.errors.append(m.text))
        page.on("pageerror", lambda e: page.errors.append(f"uncaught: {e}"))
        page.on("dialog", lambda d: (page.errors.append(f"dialog: {d.message}"), d.dismiss()))
        page.goto(self.url + "/")
        page.wait_for_function(READY, timeout=120_000)
        page.errors.clear()  # what the page logs while starting is not about the workflows
        return page

    def load(self, page, workflow: dict) -> dict:
        """Load one UI workflow; the report of CHECK plus the console errors seen while loading."""
        page.errors.clear()
        report = page.evaluate(CHECK, workflow)
        page.wait_for_timeout(300)  # dialogs and deferred warnings land after the awaited load
        report["dialogs"] = page.evaluate("[...document.querySelectorAll('.p-dialog, [role=\"dialog\"]')]"
                                          ".map(d => d.innerText.slice(0, 500))")
        report["console"] = list(page.errors)
        return report


@pytest.fixture(scope="module")
def frontend(tmp_path_factory):
    from comfy_server import comfyui_server

    def settings(base):
        # A first visit opens the template browser; a returning user's settings keep the page to the graph.
        user = base / "user" / "default"
        user.mkdir(parents=True)
        (user / "comfy.settings.json").write_text(json.dumps(
            {"Comfy.TutorialCompleted": True, "Comfy.Workflow.ShowMissingNodesWarning": True,
             "Comfy.Minimap.Visible": False}), encoding="utf-8")

    tmp = tmp_path_factory.mktemp("comfy_frontend")
    with comfyui_server(tmp, COMFYUI_PATH, os.environ.get("COMFYUI_PYTHON", sys.executable), settings) as srv:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield Frontend(browser, srv.url)
            finally:
                browser.close()


@pytest.fixture(scope="module")
def page(frontend):
    page = frontend.open()
    yield page
    page.close()


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_loads_without_missing_nodes_or_broken_links(frontend, page, path):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    report = frontend.load(page, workflow)
    assert report["unknownTypes"] == [], report
    assert report["flagged"] == [], report
    assert report["broken"] == [], report
    assert report["dialogs"] == [], report
    assert report["console"] == [], report
    assert report["nodes"] == len(workflow["nodes"]) and report["links"] == len(workflow["links"]), report
    # The frontend turns the loaded graph into the same prompt as the API file: every widget value landed
    # under the input name the API format uses.
    api = json.loads((path.parent / "api" / path.name).read_text(encoding="utf-8"))
    prompt = report["prompt"]
    assert sorted(prompt, key=int) == sorted(api, key=int)
    for node_id, node in api.items():
        assert prompt[node_id]["class_type"] == node["class_type"], node_id
        assert prompt[node_id]["inputs"] == node["inputs"], (node_id, node["class_type"])


def test_a_broken_workflow_is_reported(frontend):
    """The checks above see what they look for: an unknown node type and a link between unlike sockets."""
    workflow = json.loads((ROOT / "workflows" / "hunyuan_portrait_basic.json").read_text(encoding="utf-8"))
    bad = copy.deepcopy(workflow)
    renamed = next(n for n in bad["nodes"] if n["type"] == "HunyuanPortraitSampler")
    renamed["type"] = "HunyuanPortraitNoSuchNode"
    # GetVideoComponents' images output feeds an IMAGE input; rewire that link to its AUDIO output.
    components = next(n["id"] for n in bad["nodes"] if n["type"] == "GetVideoComponents")
    link = next(l for l in bad["links"] if l[1] == components and l[2] == 0)
    link[2] = 1
    page = frontend.open()
    try:
        report = frontend.load(page, bad)
    finally:
        page.close()
    assert report["unknownTypes"] == ["HunyuanPortraitNoSuchNode"]
    assert report["flagged"] == [f"{renamed['id']}:HunyuanPortraitNoSuchNode"]
    assert any(f"link {link[0]} " in b and "AUDIO -> IMAGE" in b for b in report["broken"]), report["broken"]
    assert any("HunyuanPortraitNoSuchNode" in d for d in report["dialogs"]), report["dialogs"]


# Runs in the page: load a UI workflow at its saved view and report the frontend's own geometry.
LAYOUT = """async (wf) => {
  await window.app.loadGraphData(wf, true, true, null);  // restore_view: open at the workflow's saved view
  await new Promise(r => setTimeout(r, 400));
  const c = window.app.canvas, g = window.app.graph, nodes = g._nodes || g.nodes;
  c.setDirty(true, true); c.draw(true, true);
  const ctx = c.canvas.getContext('2d');
  const cr = c.canvas.getBoundingClientRect();  // node positions are canvas px; report window px
  const screen = (x, y) => [cr.left + (x + c.ds.offset[0]) * c.ds.scale, cr.top + (y + c.ds.offset[1]) * c.ds.scale];
  const out = nodes.map(n => {
    const b = n.getBounding();  // [x, y, w, h] in graph units, title bar included
    ctx.font = n.titleFontStyle || `${LiteGraph.NODE_TEXT_SIZE}px Arial`;
    return { title: n.getTitle(), type: n.type, box: [...screen(b[0], b[1]), ...screen(b[0] + b[2], b[1] + b[3])],
             width: n.size[0], titleWidth: ctx.measureText(n.getTitle()).width };
  });
  const rect = (sel) => { const e = document.querySelector(sel); if (!e) return null;
    const r = e.getBoundingClientRect(); return r.width && r.height ? [r.left, r.top, r.right, r.bottom] : null; };
  return { scale: c.ds.scale, threshold: c._lowQualityZoomThreshold, lowQuality: c.low_quality,
           canvas: [cr.left, cr.top, cr.right, cr.bottom], nodes: out,
           covers: [rect('.side-tool-bar-container'), rect('.comfyui-body-top'), rect('.comfyui-menu'),
                    rect('.workflow-tabs-container'), rect('.graph-canvas-container .p-panel')].filter(Boolean) };
}"""


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_default_view_shows_every_node_readably_in_a_1600x900_window(frontend, path):
    """At the workflow's saved view: zoom above the frontend's low-quality threshold, every node inside the
    canvas and clear of the side bar and menus, no two nodes overlapping, no title cut."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    page = frontend.open(viewport={"width": 1600, "height": 900})
    try:
        report = page.evaluate(LAYOUT, workflow)
        shots = os.environ.get("HP_SCREENSHOTS")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"{path.stem}.png"))
    finally:
        page.close()
    assert report["scale"] == pytest.approx(workflow["extra"]["ds"]["scale"])  # the saved view was applied
    assert report["scale"] > report["threshold"] and not report["lowQuality"], report["scale"]
    left, top, right, bottom = report["canvas"]
    right, bottom = min(right, 1600), min(bottom, 900)  # the window
    for n in report["nodes"]:
        x0, y0, x1, y1 = n["box"]
        # 40 px at the bottom: the canvas's zoom / tool bar.
        assert left <= x0 and top <= y0 and x1 <= right and y1 <= bottom - 40, f"{n['title']} off-screen: {n['box']}"
        for c in report["covers"]:
            assert x1 <= c[0] or c[2] <= x0 or y1 <= c[1] or c[3] <= y0, f"{n['title']} is under {c}"
        assert n["titleWidth"] + 30 <= n["width"], f"title {n['title']!r} is cut"
    boxes = report["nodes"]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a["box"], b["box"]
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, f"{a['title']} overlaps {b['title']}"
