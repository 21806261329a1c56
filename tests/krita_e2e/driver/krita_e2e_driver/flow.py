"""Steps shared by scenarios: generate, wait for previews, apply, and measure what changed."""

from __future__ import annotations

from . import probes
from .context import PREVIEW_PREFIX, Context, ScenarioFailed, Wait, sleep

GENERATE = "diffusion_layers_generate"
APPLY = "diffusion_layers_apply"
APPLY_ALL = "diffusion_layers_apply_all"


def wait_previews(ctx: Context, doc, count: int, timeout_s: float = 120) -> Wait:
    """``count`` preview layers are on the canvas and the plugin has settled on them."""

    def ready() -> bool:
        state = ctx.state()
        if state == "error":
            raise ScenarioFailed(f"plugin went to 'error': {ctx.last_error()!r}")
        enough = len(probes.find_nodes(doc, PREVIEW_PREFIX)) >= count
        return enough and state in (None, "preview", "idle")

    return Wait(f"{count} preview layer(s)", ready, timeout_s)


def no_previews(doc) -> Wait:
    return Wait("preview layers gone", lambda: not probes.find_nodes(doc, PREVIEW_PREFIX), 30)


def generate_and_apply(ctx: Context, doc, previews: int = 1, action: str = APPLY, shot: str = ""):
    """Generate, wait for the previews, apply; records and returns (before, after) snapshots."""
    before = probes.snapshot(doc)
    active = doc.activeNode()
    ctx.data["active_before"] = probes.node_id(active) if active is not None else None
    ctx.trigger(GENERATE)
    yield wait_previews(ctx, doc, previews)
    ctx.data["previews_seen"] = [n.name() for n in probes.find_nodes(doc, PREVIEW_PREFIX)]
    ctx.data["state_with_previews"] = ctx.state()
    ctx.data["results_count"] = ctx.results_count()
    if shot:
        yield sleep(0.3)
        ctx.screenshot(shot)
    ctx.trigger(action)
    yield no_previews(doc)
    yield sleep(0.3)
    doc.waitForDone()
    after = probes.snapshot(doc)
    ctx.data["before"] = before
    ctx.data["after"] = after
    ctx.data["new"] = new_nodes(before, after)
    ctx.data["state_after"] = ctx.state()
    ctx.data["last_error"] = ctx.last_error()
    return before, after


def new_nodes(before: list[dict], after: list[dict]) -> list[dict]:
    known = {node["id"] for node in before}
    return [node for node in after if node["id"] not in known]


def node_by_id(doc, key: str):
    for node, _, _ in probes.walk(doc.rootNode()):
        if probes.node_id(node) == key:
            return node
    raise ScenarioFailed(f"no node with id {key}")


def record_annotations(ctx: Context, doc) -> None:
    ctx.data["annotations"] = {
        node["id"]: probes.annotation_for(doc, node["id"]) for node in ctx.data.get("new", [])
    }
