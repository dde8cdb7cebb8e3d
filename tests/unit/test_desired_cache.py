"""build_desired is memoised by content: same inputs, same object; any input changed, a new
render. And the faster YAML emitter writes exactly what the pure-Python one wrote."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pgha_operator.core import spec, topology
from pgha_operator.core.desired import PLACEHOLDER_SECRETS, build_desired, clear_desired_cache
from pgha_operator.core.render import Binaries, RenderContext, etcd_config, patroni_config
from pgha_operator.core.render.context import dump_yaml
from pgha_operator.core.topology import Layout

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "manifests" / "demo.yaml"


def demo(**postgres: object) -> spec.Cluster:
    doc = yaml.safe_load(DEMO.read_text())
    doc["spec"]["postgres"].update(postgres)
    return spec.Cluster.model_validate(doc)


def layouts(cluster: spec.Cluster, root: str = "/srv/pgha/demo") -> dict[str, Layout]:
    return {m.name: topology.layout(f"{root}/{m.name}") for m in topology.build(cluster).machines}


def build(
    cluster: spec.Cluster,
    lay: dict[str, Layout] | None = None,
    secrets: object = PLACEHOLDER_SECRETS,
    binaries: Binaries | None = None,
) -> tuple[object, RenderContext]:
    return build_desired(
        cluster,
        layouts(cluster) if lay is None else lay,
        secrets,  # type: ignore[arg-type]
        binaries or Binaries(),
        "postgres",
        "local",
    )


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    clear_desired_cache()


def test_equal_inputs_give_the_same_object_without_rendering_again() -> None:
    # Equal, not identical, inputs: the manifest is parsed anew every cycle.
    first, ctx = build(demo())
    second, ctx2 = build(demo())
    assert second is first and ctx2 is ctx


def test_new_secrets_render_anew() -> None:
    first, _ = build(demo())
    rekeyed = replace(PLACEHOLDER_SECRETS, replication_password="another one")
    second, _ = build(demo(), secrets=rekeyed)
    assert second is not first
    assert any("another one" in f.content for f in second.files)  # type: ignore[attr-defined]
    assert build(demo())[0] is first  # the old key still finds the old value


def test_a_spec_change_renders_anew() -> None:
    first, _ = build(demo())
    second, _ = build(demo(parameters={"max_connections": 300}))
    assert second is not first
    assert second.dynamic_config != first.dynamic_config  # type: ignore[attr-defined]


def test_new_layouts_or_binaries_render_anew() -> None:
    first, _ = build(demo())
    moved, _ = build(demo(), lay=layouts(demo(), root="/elsewhere"))
    other_bin, _ = build(demo(), binaries=Binaries(etcd="/opt/etcd"))
    assert moved is not first and other_bin is not first and moved is not other_bin


def test_the_cached_value_does_not_follow_the_callers_layouts_dict() -> None:
    lay = layouts(demo())
    first, ctx = build(demo(), lay=lay)
    lay["node1"] = topology.layout("/changed/node1")
    assert ctx.layouts["node1"].root == "/srv/pgha/demo/node1"
    assert build(demo(), lay=lay)[0] is not first


@pytest.mark.parametrize("manifest", sorted((REPO / "manifests").glob("*.yaml")), ids=str)
def test_dump_yaml_writes_what_safe_dump_wrote(manifest: Path) -> None:
    # A different text would rewrite (and reload) every config of a running cluster.
    cluster = spec.load([manifest])[0].cluster
    _, ctx = build(cluster, lay=layouts(cluster))
    docs = [patroni_config(ctx, n) for n in ctx.topology.postgres]
    docs += [etcd_config(ctx, n) for n in ctx.topology.etcd]
    for doc in docs:
        assert dump_yaml(doc) == yaml.safe_dump(doc, sort_keys=False)


def test_dump_yaml_quotes_like_safe_dump() -> None:
    tricky = {
        "s": ["on", "yes", "null", "1.0", "0777", "a: b", "- x", "#c", "é", "", " x", "x\ny"],
        "n": [1, 1.5, True, None],
        "long": "word " * 40,
    }
    assert dump_yaml(tricky) == yaml.safe_dump(tricky, sort_keys=False)


def test_topology_finds_machines_by_name() -> None:
    topo = topology.build(demo(instances=30))
    assert topo.machine("node30").address == "127.0.10.40"
    with pytest.raises(KeyError):
        topo.machine("node31")


def test_the_shared_value_cannot_be_changed_by_one_caller() -> None:
    desired, ctx = build(demo())
    with pytest.raises(TypeError):
        desired.services["node1"] = ()  # type: ignore[attr-defined,index]
    with pytest.raises(TypeError):
        ctx.layouts["node1"] = topology.layout("/x")  # type: ignore[index]


def test_the_manifest_is_parsed_once_per_content() -> None:
    text = DEMO.read_text()
    first, problems = spec.parse_text(text, "demo.yaml")
    again, _ = spec.parse_text(text, "demo.yaml")
    assert again is not first and again == first  # the caller's own list...
    assert again[0] is first[0]  # ...of the same frozen, already validated cluster
    edited, _ = spec.parse_text(
        text.replace("max_connections: 200", "max_connections: 300"), "demo.yaml"
    )
    assert edited[0].cluster.spec.postgres.parameters["max_connections"] == 300
    broken, found = spec.parse_text(text.replace("instances: 3", "instances: three"), "demo.yaml")
    assert broken == [] and found and problems == []
