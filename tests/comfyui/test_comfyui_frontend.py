"""Integration: every UI-format workflow in workflows/ loads in the real ComfyUI browser frontend (served by a
real ComfyUI with this pack installed, driven in headless Chromium): no node type is missing, no node is
flagged as broken, every link joins existing slots of compatible types, no "missing nodes" dialog or console
error appears, and the frontend's own conversion of the loaded graph to a prompt equals the API-format file.

Every test runs against two frontends: the one ComfyUI pins (its requirements.txt), and the newest
comfyui-frontend-package installed apart ($HP_NEW_FRONT_END_ROOT: the folder of
`pip install --target DIR comfyui-frontend-package`, or its static folder), once with its new node renderer
(Vue nodes: nodes drawn as DOM elements) off and once on. Without that newer frontend its parameters skip.

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
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
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
# The frontends the tests run against: ComfyUI's pinned one, the newest installed apart with its default
# (canvas) node renderer, and the same with its Vue node renderer on.
FRONTENDS = ["pinned", "newest", "newest-vue-nodes"]


def newest_front_end_root() -> Path | None:
    """The static folder of the newer frontend package ($HP_NEW_FRONT_END_ROOT), if one is given and installed."""
    if not os.environ.get("HP_NEW_FRONT_END_ROOT"):
        return None
    root = Path(os.environ["HP_NEW_FRONT_END_ROOT"])
    for static in (root, root / "static", root / "comfyui_frontend_package" / "static"):
        if (static / "index.html").is_file():
            return static
    return None


def _version_of(static: Path) -> str | None:
    """The package version pip recorded beside a --target install (its *.dist-info folder)."""
    for info in static.parent.parent.glob("comfyui_frontend_package-*.dist-info"):
        return info.name[len("comfyui_frontend_package-"):-len(".dist-info")]
    return None


def _pinned_version() -> str | None:
    req = Path(COMFYUI_PATH) / "requirements.txt"
    for line in req.read_text(encoding="utf-8").splitlines() if req.is_file() else []:
        if line.strip().startswith("comfyui-frontend-package=="):
            return line.split("==", 1)[1].strip()
    return None


# The newest frontend asks for the queue at /api/jobs, which ComfyUI 0.3.64 does not serve yet; it logs that
# 404 as an error whenever it refreshes the queue. That is the pair's mismatch, not the workflows'.
KNOWN_NOISE = ("[Jobs API] Error fetching jobs", "Failed to fetch queue: JobsApiError")

READY = "window.app && window.app.graph && window.LiteGraph && 'HunyuanPortraitSampler' in LiteGraph.registered_node_types"

# Runs in the page: load one UI workflow through the app and report what the frontend made of it.
CHECK = """async (wf) => {
  const LG = window.LiteGraph, registered = LG.registered_node_types;
  const unknownTypes = [...new Set(wf.nodes.map(n => n.type).filter(t => !(t in registered)))];
  await window.app.loadGraphData(wf, true, false, null);
  const g = window.app.graph, nodes = g._nodes || g.nodes;
  // An unknown type becomes a bare LGraphNode (litegraph's placeholder), marked has_errors. The newer
  // frontend also marks has_errors a node whose file (model, picture, clip) is not on the server: marked.
  const flagged = nodes.filter(n => !(n.type in registered) || n.constructor === LG.LGraphNode)
                       .map(n => `${n.id}:${n.type}`);
  const marked = nodes.filter(n => n.has_errors).map(n => `${n.id}:${n.type}`);
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
  return { unknownTypes, flagged, marked, broken, dialogs, nodes: nodes.length, links: links.length,
           prompt: JSON.parse(JSON.stringify(output)) };
}"""


class Frontend:
    """A headless Chromium that opens the ComfyUI page and records console errors and uncaught exceptions.

    name: which of FRONTENDS; version: what the page says it is (set on the first open); vue_nodes: the new
    node renderer is on."""

    def __init__(self, browser, server, name: str = "pinned", vue_nodes: bool = False):
        self.browser, self.server, self.url = browser, server, server.url
        self.name, self.vue_nodes, self.version = name, vue_nodes, None

    def open(self, viewport: dict | None = None):
        page = self.browser.new_page(viewport=viewport) if viewport else self.browser.new_page()
        page.errors = []
        page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                and not m.text.startswith(KNOWN_NOISE) and page.errors.append(m.text))
        page.on("pageerror", lambda e: page.errors.append(f"uncaught: {e}"))
        page.on("dialog", lambda d: (page.errors.append(f"dialog: {d.message}"), d.dismiss()))
        page.goto(self.url + "/")
        page.wait_for_function(READY, timeout=120_000)
        self.version = page.evaluate("window.__COMFYUI_FRONTEND_VERSION__ || null")
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

    def run(self, page, timeout: float = 240) -> dict:
        """Queue the loaded graph as the Run button does; wait until it finished; its history entry."""
        seen = set(self.server.get("/history"))
        page.errors.clear()
        # Its answer is no help (false also after a clean queueing); a refused prompt logs an error.
        page.evaluate("window.app.queuePrompt(0, 1)")
        assert not page.errors, page.errors
        end = time.time() + timeout
        while time.time() < end:
            done = {k: v for k, v in self.server.get("/history").items() if k not in seen}
            if done:
                return next(iter(done.values()))
            time.sleep(0.5)
        raise AssertionError(f"no run finished in {timeout} s: {page.errors}\n" + self.server.log.read_text()[-3000:])


@pytest.fixture(scope="module", params=FRONTENDS)
def frontend(request, tmp_path_factory):
    from comfy_server import comfyui_server, write_inputs

    root = ""  # "": the frontend ComfyUI pins, whatever $HP_FRONT_END_ROOT says
    if request.param != "pinned":
        root = newest_front_end_root()
        if root is None:
            pytest.skip("no newer frontend: pip install --target DIR comfyui-frontend-package, then set "
                        "HP_NEW_FRONT_END_ROOT=DIR")
    vue_nodes = request.param.endswith("vue-nodes")

    def prepare(base):
        # A first visit opens the template browser; a returning user's settings keep the page to the graph.
        # Everything else is the frontend's default, the minimap included (the node renderer as the parameter
        # asks).
        user = base / "user" / "default"
        user.mkdir(parents=True)
        settings = {"Comfy.TutorialCompleted": True, "Comfy.Workflow.ShowMissingNodesWarning": True}
        if vue_nodes:
            settings["Comfy.VueNodes.Enabled"] = True
        (user / "comfy.settings.json").write_text(json.dumps(settings), encoding="utf-8")
        # A 9:16 source and driving clip (a phone held upright): the tallest the workflows keep preview room for.
        write_inputs(base / "input", portrait_hw=(400, 225), driving_hw=(356, 200))

    tmp = tmp_path_factory.mktemp(f"comfy_frontend_{request.param}")
    with comfyui_server(tmp, COMFYUI_PATH, os.environ.get("COMFYUI_PYTHON", sys.executable), prepare,
                        front_end_root=str(root)) as srv:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield Frontend(browser, srv, request.param, vue_nodes)
            finally:
                browser.close()


@pytest.fixture(scope="module")
def page(frontend):
    page = frontend.open()
    yield page
    page.close()


def test_the_frontend_is_the_one_asked_for(frontend, page):
    """The page runs the frontend of the parameter (the pinned version, or the newer package's), with the node
    renderer it asks for: otherwise the tests below would test one frontend twice."""
    if frontend.name == "pinned":
        assert frontend.version == _pinned_version(), frontend.version
    else:
        installed = _version_of(newest_front_end_root())
        assert frontend.version == (installed or frontend.version) and frontend.version != _pinned_version()
    vue = page.evaluate("window.app.extensionManager.setting.get('Comfy.VueNodes.Enabled') ?? null")
    assert bool(vue) == frontend.vue_nodes, vue


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_loads_without_missing_nodes_or_broken_links(frontend, page, path):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    report = frontend.load(page, workflow)
    assert report["unknownTypes"] == [], report
    assert report["flagged"] == [], report
    # Only loaders are marked, by the newer frontend: the example's weights, portrait, clip and saved
    # performance are not on the test server (the pinned frontend marks nothing).
    loaders = {f"{n['id']}:{n['type']}" for n in workflow["nodes"] if n["type"] in MISSING_HERE}
    assert set(report["marked"]) <= loaders, report["marked"]
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


# Runs in the page: close the newer frontend's properties panel again. Whether it is open is a setting the
# server keeps, so it would stay open over the canvas for the tests after.
CLOSE_PANEL = "window.app.extensionManager.setting.set('Comfy.RightSidePanel.IsOpen', false)"

# The loaders whose example files the test server does not have.
MISSING_HERE = ("HunyuanPortraitModelLoader", "LoadImage", "LoadVideo", "HunyuanPortraitLoadPerformance")


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
        if frontend.name != "pinned":
            # The newer frontend has no missing-nodes dialog: its "N issues found" notice opens the Issues tab.
            notice = page.locator('[role="status"]', has_text="issues found")
            notice.get_by_role("button", name="View details").click(timeout=10_000)
            page.wait_for_timeout(1000)
            report["dialogs"] = page.evaluate(SHOWN_ERRORS)
            _screenshot(page, f"broken_workflow_{frontend.name}")
            page.evaluate(CLOSE_PANEL)
    finally:
        page.close()
    assert report["unknownTypes"] == ["HunyuanPortraitNoSuchNode"]
    assert report["flagged"] == [f"{renamed['id']}:HunyuanPortraitNoSuchNode"]
    assert f"{renamed['id']}:HunyuanPortraitNoSuchNode" in report["marked"]
    assert any(f"link {link[0]} " in b and "AUDIO -> IMAGE" in b for b in report["broken"]), report["broken"]
    if frontend.name == "pinned":  # a missing-nodes dialog names the type
        assert any("HunyuanPortraitNoSuchNode" in d for d in report["dialogs"]), report["dialogs"]
    else:  # the Issues tab: "Missing Node Packs", by the Registry id the node's cnr_id names
        pack = renamed["properties"]["cnr_id"]
        assert any("Missing Node Pack" in d and pack in d for d in report["dialogs"]), report["dialogs"]


# Runs in the page: load a UI workflow at its saved view (restore_view), as opening the file does.
LOAD_AT_SAVED_VIEW = """async (wf) => {
  await window.app.loadGraphData(wf, true, true, null);
  await new Promise(r => setTimeout(r, 400));
}"""

# Runs in the page: the frontend's own geometry of the graph on screen, in window px. Node boxes come from
# getBounding (title bar included; the size grows when a preview lands), or, where the new node renderer draws
# nodes as DOM elements (Vue nodes), from those elements; DOM widgets (video players, text areas) are
# reported with their node; covers are the page's elements drawn over the canvas: the frontend 1.27's side
# bar, top bar, menu, tabs, zoom panel and minimap, and the newer frontend's floating ones (its canvas fills
# the window: side bar, tabs, the graph menu top left, the run bar top right, zoom bar, minimap and the
# properties panel where open). notices: its "N issues found" notice (not a bar: it lists what to set before
# a run and closes), reported, not checked.
GEOMETRY = """() => {
  const c = window.app.canvas, g = window.app.graph, nodes = g._nodes || g.nodes;
  c.setDirty(true, true); c.draw(true, true);
  const ctx = c.canvas.getContext('2d');
  const cr = c.canvas.getBoundingClientRect();  // node positions are canvas px; report window px
  const screen = (x, y) => [cr.left + (x + c.ds.offset[0]) * c.ds.scale, cr.top + (y + c.ds.offset[1]) * c.ds.scale];
  const box = (e) => { const r = e.getBoundingClientRect();
    return r.width && r.height && getComputedStyle(e).display !== 'none' ? [r.left, r.top, r.right, r.bottom] : null; };
  const union = (els) => { const bs = els.map(box).filter(Boolean);
    return bs.length ? [Math.min(...bs.map(b => b[0])), Math.min(...bs.map(b => b[1])),
                        Math.max(...bs.map(b => b[2])), Math.max(...bs.map(b => b[3]))] : null; };
  const vueNodes = !!window.app.extensionManager.setting.get('Comfy.VueNodes.Enabled');
  const out = nodes.map(n => {
    const b = n.getBounding();  // [x, y, w, h] in graph units, title bar included
    const el = vueNodes ? document.querySelector(`[data-node-id="${n.id}"]`) : null;
    ctx.font = n.titleFontStyle || `${LiteGraph.NODE_TEXT_SIZE}px Arial`;
    const doms = (n.widgets || []).filter(w => w.element).map(w => ({ name: w.name, box: box(w.element) }))
                                   .filter(w => w.box);
    const video = el ? el.querySelector('video') : n.videoContainer?.querySelector('video');
    if (el && video && box(video) && !doms.some(w => w.name === 'video-preview'))
      doms.push({ name: 'video-preview', box: box(video) });  // the Vue node draws its player inside itself
    const pictures = el ? [...el.querySelectorAll('img')].filter(i => i.naturalWidth).length : 0;
    return { title: n.getTitle(), type: n.type, id: n.id,
             box: el ? box(el) : [...screen(b[0], b[1]), ...screen(b[0] + b[2], b[1] + b[3])],
             width: el ? el.getBoundingClientRect().width / c.ds.scale : n.size[0], height: n.size[1],
             titleWidth: ctx.measureText(n.getTitle()).width, doms,
             images: n.imgs?.length || pictures, video: video?.videoWidth ? [video.videoWidth, video.videoHeight] : null };
  });
  const rect = (sel) => { const e = document.querySelector(sel); return e ? box(e) : null; };
  const covers = { 'side bar': rect('.side-tool-bar-container'), 'top bar': rect('.comfyui-body-top'),
                   'menu': rect('.comfyui-menu'), 'tabs': rect('.workflow-tabs-container'),
                   'canvas panel': rect('.graph-canvas-container .p-panel'), 'minimap': rect('.litegraph-minimap'),
                   'graph menu': rect('[data-testid="view-mode-toggle"]'), 'run bar': rect('.actionbar-container'),
                   'zoom bar': union([...document.querySelectorAll('.graph-canvas-container .bottom-0 button')]),
                   'properties panel': rect('[data-testid="properties-panel"]') };
  const notices = [...document.querySelectorAll('[role="status"]')].filter(e => /issues? found/.test(e.innerText))
    .map(e => ({ text: e.innerText.slice(0, 300), box: box(e) })).filter(e => e.box);
  return { scale: c.ds.scale, threshold: c._lowQualityZoomThreshold, lowQuality: c.low_quality, vueNodes,
           canvas: [cr.left, cr.top, cr.right, cr.bottom], nodes: out, notices,
           minimapSetting: window.app.extensionManager.setting.get('Comfy.Minimap.Visible'),
           covers: Object.fromEntries(Object.entries(covers).filter(([, r]) => r)) };
}"""


def _apart(a, b) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def check_layout(report: dict, when: str = "") -> None:
    """Zoom above the frontend's low-quality threshold, every node (and its video player / text area) inside
    the canvas and clear of the side bar, menus and minimap, no two nodes overlapping, no title cut."""
    assert report["scale"] > report["threshold"] and not report["lowQuality"], report["scale"]
    # The frontend's default shows the minimap; it must be found where it is on, or nothing is checked.
    assert report["minimapSetting"] is True, "the page should run with the default settings (minimap on)"
    assert "minimap" in report["covers"], f"the minimap is on but no minimap element was found: {report['covers']}"
    left, top, right, bottom = report["canvas"]
    right, bottom = min(right, 1600), min(bottom, 900)  # the window
    for n in report["nodes"]:
        x0, y0, x1, y1 = n["box"]
        # 40 px at the bottom: the canvas's zoom / tool bar.
        assert left <= x0 and top <= y0 and x1 <= right and y1 <= bottom - 40, \
            f"{when}: {n['title']} off-screen: {n['box']}"
        for name, c in report["covers"].items():
            assert _apart(n["box"], c), f"{when}: {n['title']} {n['box']} is under the {name} {c}"
        for w in n["doms"]:
            (wx0, wy0, wx1, wy1), slack = w["box"], 2
            assert x0 - slack <= wx0 and y0 - slack <= wy0 and wx1 <= x1 + slack and wy1 <= y1 + slack, \
                f"{when}: {n['title']}'s {w['name']} {w['box']} reaches out of the node {n['box']}"
        assert n["titleWidth"] + 30 <= n["width"], f"title {n['title']!r} is cut"
    boxes = report["nodes"]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert _apart(a["box"], b["box"]), f"{when}: {a['title']} {a['box']} overlaps {b['title']} {b['box']}"


def _screenshot(page, name: str) -> None:
    shots = os.environ.get("HP_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / f"{name}.png"))


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_default_view_shows_every_node_readably_in_a_1600x900_window(frontend, path):
    """At the workflow's saved view: zoom above the frontend's low-quality threshold, every node inside the
    canvas and clear of the side bar, menus and minimap, no two nodes overlapping, no title cut."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    page = frontend.open(viewport={"width": 1600, "height": 900})
    try:
        page.evaluate(LOAD_AT_SAVED_VIEW, workflow)
        report = page.evaluate(GEOMETRY)
        _screenshot(page, f"{path.stem}_{frontend.name}")
    finally:
        page.close()
    assert report["scale"] == pytest.approx(workflow["extra"]["ds"]["scale"])  # the saved view was applied
    check_layout(report, "at the saved view")


def test_a_node_under_the_minimap_is_reported(frontend):
    """The layout check sees the minimap: the basic workflow with a node moved under it fails."""
    workflow = json.loads((ROOT / "workflows" / "hunyuan_portrait_basic.json").read_text(encoding="utf-8"))
    page = frontend.open(viewport={"width": 1600, "height": 900})
    try:
        page.evaluate(LOAD_AT_SAVED_VIEW, workflow)
        minimap = page.evaluate(GEOMETRY)["covers"]["minimap"]
        # Move the last Create Video (small enough to fit) so its top-left corner is 20 px inside the minimap.
        page.evaluate("""([x, y]) => { const c = window.app.canvas;
          const n = window.app.graph._nodes.findLast(n => n.type === 'CreateVideo');
          const r = c.canvas.getBoundingClientRect();
          n.pos = [(x - r.left) / c.ds.scale - c.ds.offset[0], (y - r.top) / c.ds.scale - c.ds.offset[1]]; }""",
                      [minimap[0] + 20, minimap[1] + 20 + 30 * workflow["extra"]["ds"]["scale"]])
        report = page.evaluate(GEOMETRY)
    finally:
        page.close()
    with pytest.raises(AssertionError, match="under the minimap"):
        check_layout(report)


# Every workflow runs on the tiny setup (DWPose on ONNX stand-ins of its two files; the performance example
# once its performance was saved, as its note says).
RUNNABLE = ["basic", "fast", "long_video", "comfy_sampler", "dwpose", "pose_edit", "performance"]

# Runs in the page: set widgets by node type ({type: {widget: value}}), as a user picks files and values.
SET_WIDGETS = """(values) => {
  for (const n of window.app.graph._nodes) for (const [name, value] of Object.entries(values[n.type] || {})) {
    const w = n.widgets.find(w => w.name === name);
    if (!w) throw new Error(`${n.type} has no widget ${name}`);
    w.value = value; w.callback?.(value);
  }
  window.app.canvas.setDirty(true, true);
}"""

# Runs in the page: true once every node of these types shows its preview (picture or loaded video).
PREVIEWS_SHOWN = """(types) => (window.app.graph._nodes).filter(n => types.includes(n.type)).every(n => {
  const el = document.querySelector(`[data-node-id="${n.id}"]`);  // a Vue node draws its previews itself
  return n.imgs?.length || n.videoContainer?.querySelector('video')?.videoWidth
    || [...(el?.querySelectorAll('img') || [])].some(i => i.naturalWidth)
    || [...(el?.querySelectorAll('video') || [])].some(v => v.videoWidth); })"""


def _save_the_performance(server) -> None:
    """The performance example's first run (its Save Performance), queued as an API prompt: Load Performance's
    file is there afterwards, so the loaded workflow runs whole."""
    from comfy_server import TINY_INPUTS

    prompt = json.loads((ROOT / "workflows" / "api" / "hunyuan_portrait_performance.json").read_text())
    for node in prompt.values():
        node["inputs"].update(TINY_INPUTS.get(node["class_type"], {}))
    wanted = next(n["inputs"]["performance_file"] for n in prompt.values()
                  if n["class_type"] == "HunyuanPortraitLoadPerformance")
    if (server.base / "models" / "hunyuan_portrait" / "performances" / wanted).is_file():
        return
    result = server.wait(server.post("/prompt", {"prompt": prompt, "client_id": "hp-save"})["prompt_id"])
    assert result["status"]["status_str"] == "success", json.dumps(result["status"])[:3000]
    assert (server.base / "models" / "hunyuan_portrait" / "performances" / wanted).is_file()


@pytest.mark.parametrize("name", RUNNABLE)
def test_no_node_overlaps_or_leaves_the_view_before_or_after_a_run(frontend, name):
    """Run the workflow in the frontend on tiny weights with the synthetic portrait and driving clip picked in
    its loaders: with the input previews shown, and again after the run with the sampler's latent preview,
    the source-crop picture and both result videos in their nodes, every node is still readable and in
    view, clear of the minimap and menus, and no two nodes overlap."""
    from comfy_server import TINY_INPUTS

    workflow = json.loads((ROOT / "workflows" / f"hunyuan_portrait_{name}.json").read_text(encoding="utf-8"))
    values = {**TINY_INPUTS, "HunyuanPortraitSampler": {**TINY_INPUTS["HunyuanPortraitSampler"],
                                                        "seed": 100 + RUNNABLE.index(name)}}  # not cached
    if name == "performance":
        _save_the_performance(frontend.server)
    page = frontend.open(viewport={"width": 1600, "height": 900})
    try:
        page.evaluate(LOAD_AT_SAVED_VIEW, workflow)
        page.evaluate(SET_WIDGETS, values)
        page.wait_for_function(PREVIEWS_SHOWN, arg=["LoadImage", "LoadVideo"], timeout=30_000)
        page.wait_for_timeout(300)
        before = page.evaluate(GEOMETRY)
        _screenshot(page, f"{name}_{frontend.name}_before_run")
        result = frontend.run(page)
        assert result["status"]["status_str"] == "success", json.dumps(result["status"])[:3000]
        page.wait_for_function(PREVIEWS_SHOWN, arg=["PreviewImage", "SaveVideo", "HunyuanPortraitSampler"],
                               timeout=30_000)
        page.wait_for_timeout(500)  # the frontend sizes the node to the video once its data is there
        after = page.evaluate(GEOMETRY)
        _screenshot(page, f"{name}_{frontend.name}_after_run")
    finally:
        page.close()
    check_layout(before, f"{name} before the run")
    check_layout(after, f"{name} after the run")
    shown = {n["type"] for n in after["nodes"] if n["images"] or n["video"]}
    assert {"LoadImage", "LoadVideo", "HunyuanPortraitSampler", "PreviewImage", "SaveVideo"} <= shown, shown
    players = [n for n in after["nodes"] if n["video"]]
    assert all(any(w["name"] == "video-preview" for w in n["doms"]) for n in players), players


# Runs in the page: the text of every open dialog and toast, and of the newer frontend's properties panel
# (where its Issues tab lists what the server refused).
SHOWN_ERRORS = """() => [...document.querySelectorAll(
  '.p-dialog, [role="dialog"], .p-toast-message, [data-testid="properties-panel"]')].map(d => d.innerText)"""


def test_impossible_sampler_widgets_show_one_error_dialog_and_run_nothing(frontend):
    """context_overlap >= context_window, queued from the frontend: its error dialog says what to set, once,
    and nothing runs (no silent run of the outputs that do not need the sampler)."""
    from comfy_server import TINY_INPUTS

    workflow = json.loads((ROOT / "workflows" / "hunyuan_portrait_basic.json").read_text(encoding="utf-8"))
    values = {**TINY_INPUTS, "HunyuanPortraitSampler": {**TINY_INPUTS["HunyuanPortraitSampler"],
                                                        "context_window": 8, "context_overlap": 8, "seed": 77}}
    before = set(frontend.server.get("/history"))
    page = frontend.open(viewport={"width": 1600, "height": 900})
    try:
        page.evaluate(LOAD_AT_SAVED_VIEW, workflow)
        page.evaluate(SET_WIDGETS, values)
        page.evaluate("window.app.queuePrompt(0, 1)")
        if frontend.name == "pinned":  # 1.27: a dialog with the server's message
            page.wait_for_function("(" + SHOWN_ERRORS + ")().some(t => t.includes('context_overlap'))",
                                   timeout=30_000)
        else:
            # The newer frontend opens no dialog for a prompt refused with HTTP 400: its "N issues found" notice
            # (top right) turns to Error, the node is outlined red, and the notice's View details opens the
            # Issues tab of the properties panel: "Validation failed", the node and input, and behind its info
            # button the server's message.
            notice = page.locator('[role="status"]', has_text="issues found").filter(has_text="Error")
            notice.wait_for(timeout=30_000)
            _screenshot(page, f"impossible_sampler_widgets_{frontend.name}_notice")
            notice.get_by_role("button", name="View details").click(timeout=10_000)
            page.get_by_role("button", name="Info for Sampler (SVD + adapters)").click(timeout=10_000)
            page.wait_for_function("(" + SHOWN_ERRORS + ")().some(t => t.includes('context_overlap'))",
                                   timeout=10_000)
            refused = page.evaluate("Object.keys(window.app.lastNodeErrors || {})")
        page.wait_for_timeout(500)
        shown = page.evaluate(SHOWN_ERRORS)
        _screenshot(page, f"impossible_sampler_widgets_{frontend.name}")
        if frontend.name != "pinned":
            page.evaluate(CLOSE_PANEL)
    finally:
        page.close()
    text = "\n".join(shown)
    assert text.count("Set context_overlap below context_window") == 1, shown
    if frontend.name != "pinned":
        sampler = next(n["id"] for n in workflow["nodes"] if n["type"] == "HunyuanPortraitSampler")
        assert refused == [str(sampler)] and "Validation failed" in text, (refused, shown)
    time.sleep(1)
    assert set(frontend.server.get("/history")) == before  # nothing ran
