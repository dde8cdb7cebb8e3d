"""spec.bootstrap.recovery: the manifest's refusals, Patroni's custom bootstrap and the files
rendered for it, the plan (the clone's own stanza, never the source's) and the source
check `validate` and `apply` make."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from pgha_operator.core import topology
from pgha_operator.core.backup_actions import CreateStanza
from pgha_operator.core.desired import PLACEHOLDER_SECRETS, build_desired
from pgha_operator.core.facts.backup import BackupFacts, BackupInfoFile, parse_backup_info
from pgha_operator.core.plan import Desired, plan
from pgha_operator.core.render import Binaries
from pgha_operator.core.render.pgbackrest import backup_paths
from pgha_operator.core.render.restore import role_password_statement
from pgha_operator.core.spec import Cluster, LoadedCluster, parse_text
from pgha_operator.core.spec.problems import ManifestError
from pgha_operator.core.spec.recovery import restore_target, source_repository, source_stanza
from pgha_operator.shell.restore_source import refuse_missing_source, source_reason
from tests.unit.test_backup import observed_with

FIXTURES = Path(__file__).parent / "fixtures"

MANIFEST = """apiVersion: pgha/v1
kind: Cluster
metadata: {name: clone}
spec:
  provider: {type: %s}
  etcd: {members: 1}
  postgres:
    instances: 2
    roles: [{name: reporter, login: true}]
  backup: {repository: {path: /srv/b/clone}}
  bootstrap:
    recovery: {%s}
"""


def parse(recovery: str, provider: str = "local") -> tuple[list[LoadedCluster], list[str]]:
    loaded, problems = parse_text(MANIFEST % (provider, recovery), "clone.yaml")
    return loaded, [f"{p.file}: {p.path}: {p.reason}" for p in problems]


def load(recovery: str) -> Cluster:
    loaded, problems = parse(recovery)
    assert problems == [], problems
    return loaded[0].cluster


def desired_of(cluster: Cluster) -> Desired:
    topo = topology.build(cluster)
    layouts = {m.name: topology.layout(f"/srv/st/machines/{m.name}") for m in topo.machines}
    secrets = PLACEHOLDER_SECRETS.with_role_passwords({"reporter": "rep-pass"})
    desired, _ = build_desired(cluster, layouts, secrets, Binaries(), "postgres", "local")
    return desired


def file_text(desired: Desired, machine: str, name: str) -> str:
    [f] = [f for f in desired.files if f.machine == machine and f.path.endswith("/" + name)]
    return f.content


# --- spec -----------------------------------------------------------------------------------


def test_a_source_is_a_cluster_name_or_a_repository_path() -> None:
    by_name = load("source: src, latest: true").spec.bootstrap.recovery
    assert by_name is not None
    assert (source_repository(by_name), source_stanza(by_name)) == (
        "/var/lib/pgha-backups/src",
        "src",
    )
    assert restore_target(by_name) == ("default", None)
    by_path = load("source: /srv/old/repo, stanza: shop, targetLsn: 0/3a000060").spec
    recovery = by_path.bootstrap.recovery
    assert recovery is not None
    assert (source_repository(recovery), source_stanza(recovery)) == ("/srv/old/repo", "shop")
    assert restore_target(recovery) == ("lsn", "0/3A000060")
    # PostgreSQL's spelling of the zone (what `SELECT now()` prints) is taken too.
    pg_style = load("source: src, targetTime: '2026-11-28 14:16:39.148821+00'").spec
    assert pg_style.bootstrap.recovery is not None
    assert restore_target(pg_style.bootstrap.recovery) == (
        "time",
        "2026-11-28 14:16:39.148821+00:00",
    )
    timed = load("source: /srv/old/src, targetTime: '2026-11-28 14:00:00.25+01:00'").spec
    assert timed.bootstrap.recovery is not None
    assert source_stanza(timed.bootstrap.recovery) == "src"  # the path's last component
    assert restore_target(timed.bootstrap.recovery) == ("time", "2026-11-28 14:00:00.250000+01:00")


def test_without_recovery_the_cluster_runs_initdb() -> None:
    text = (MANIFEST % ("local", "")).replace("  bootstrap:\n    recovery: {}\n", "")
    loaded, problems = parse_text(text, "clone.yaml")
    assert problems == [] and loaded[0].cluster.spec.bootstrap.recovery is None
    desired = desired_of(loaded[0].cluster)
    patroni = yaml.safe_load(file_text(desired, "node1", "patroni.yml"))
    assert "method" not in patroni["bootstrap"] and "post_bootstrap" not in patroni["bootstrap"]
    assert "use_unix_socket" not in patroni["postgresql"]
    assert not [f for f in desired.files if "restore" in f.path or "source" in f.path]


@pytest.mark.parametrize(
    ("recovery", "field", "reason"),
    [
        (
            "source: src, targetTime: '2026-11-28 14:00:00Z', targetLsn: 0/3000060",
            "spec.bootstrap.recovery",
            "targetTime and targetLsn are both given",
        ),
        ("source: src", "spec.bootstrap.recovery", "none is given"),
        ("source: src, latest: false", "spec.bootstrap.recovery.latest", ""),
        ("source: src, targetTime: '2026-11-28 14:00:00'", "targetTime", "timezone"),
        ("source: src, targetTime: 'yesterday'", "targetTime", "is not a time: write it like"),
        ("source: src, targetLsn: 3000060", "spec.bootstrap.recovery.targetLsn", ""),
        ("source: Src!, latest: true", "spec.bootstrap.recovery.source", "neither a cluster"),
        ("source: srv/b, latest: true", "spec.bootstrap.recovery.source", "neither a cluster"),
        ("source: /etc/b, latest: true", "spec.bootstrap.recovery.source", "is under /etc"),
        ("source: clone, latest: true", "spec.bootstrap.recovery.source", "own stanza"),
        # the clone's own repository and stanza, by path
        ("source: /srv/b/clone, latest: true", "spec.bootstrap.recovery.source", "own stanza"),
        ("source: src, latest: true, backup: 1", "spec.bootstrap.recovery.backup", ""),
    ],
)
def test_refusals_name_the_file_the_field_and_the_reason(
    recovery: str, field: str, reason: str
) -> None:
    _, problems = parse(recovery)
    assert len(problems) == 1, problems
    assert problems[0].startswith("clone.yaml") and field in problems[0], problems
    assert reason in problems[0], problems


def test_another_stanza_in_the_clones_own_repository_is_a_source() -> None:
    assert load("source: /srv/b/clone, stanza: old, latest: true").spec.bootstrap.recovery


def test_a_restore_is_refused_where_backups_are_not_built() -> None:
    _, problems = parse("source: src, latest: true", provider="nspawn")
    assert any(
        "spec.bootstrap.recovery: a restore is not supported on the nspawn" in p for p in problems
    )


# --- render ---------------------------------------------------------------------------------


def test_patroni_restores_the_source_read_only_then_sets_this_clusters_passwords() -> None:
    desired = desired_of(load("source: src, targetTime: '2026-11-28 14:00:00Z'"))
    layout = topology.layout("/srv/st/machines/node2")
    etc = "/srv/st/machines/node2/etc/patroni"
    bootstrap = yaml.safe_load(file_text(desired, "node2", "patroni.yml"))["bootstrap"]
    assert bootstrap["method"] == "pgha_restore"
    method = bootstrap["pgha_restore"]
    # pgBackRest's recovery settings are kept; Patroni adds no arguments pgBackRest refuses.
    assert (method["no_params"], method["keep_existing_recovery_conf"]) == (True, True)
    sh, flag, script = shlex.split(method["command"])
    assert (sh, flag) == ("/bin/sh", "-c")
    assert script.startswith(f"mkdir -p {layout.pg_data} && chmod 0700 {layout.pg_data} && exec ")
    assert shlex.split(script.split(" && exec ")[1]) == [
        "/usr/bin/pgbackrest",
        f"--config={etc}/pgbackrest-source.conf",
        "--stanza=src",
        "--type=time",
        "--target=2026-11-28 14:00:00+00:00",
        "--target-action=promote",
        "restore",
    ]
    post = shlex.split(bootstrap["post_bootstrap"])
    assert post[:2] == ["/bin/sh", "-c"] and f"-f {etc}/restore-roles.sql" in post[2]
    assert post[3] == "pgha-post-bootstrap"  # $0: Patroni's connection string becomes $1
    assert bootstrap["initdb"]  # kept: unused by the custom method
    # Patroni's own trust access during the bootstrap is `local` (its TCP logins to the
    # node's address come from 127.0.0.1): it logs in over the socket.
    postgresql = yaml.safe_load(file_text(desired, "node2", "patroni.yml"))["postgresql"]
    assert postgresql["use_unix_socket"] is True


def test_the_source_config_reads_the_sources_repository_into_this_node() -> None:
    desired = desired_of(load("source: src, latest: true"))
    conf = file_text(desired, "node2", "pgbackrest-source.conf")
    node2 = topology.layout("/srv/st/machines/node2")
    assert "repo1-path=/var/lib/pgha-backups/src\n" in conf and "[src]\n" in conf
    assert f"pg1-path={node2.pg_data}\n" in conf and "pg2-path" not in conf
    assert "retention" not in conf  # nothing run with it expires or writes
    # The cluster's own archive: its own config, stanza and repository.
    own = file_text(desired, "node2", "pgbackrest.conf")
    assert "repo1-path=/srv/b/clone\n" in own and "[clone]\n" in own
    patroni = yaml.safe_load(file_text(desired, "node2", "patroni.yml"))["postgresql"]
    own_config = backup_paths(node2).config
    assert (
        f"--config={own_config} --stanza=clone archive-push"
        in patroni["parameters"]["archive_command"]
    )


def test_the_roles_file_sets_every_generated_database_password() -> None:
    desired = desired_of(load("source: src, latest: true"))
    [f] = [
        f for f in desired.files if f.machine == "node1" and f.path.endswith("restore-roles.sql")
    ]
    assert (f.mode, f.owner, f.service) == (0o600, "postgres", None)
    lines = f.content.splitlines()
    assert "SET log_statement = 'none';" in lines
    roles = [line.split("rolname = '")[1].split("'")[0] for line in lines if "rolname" in line]
    # The superuser last; the REST and stats logins are not database roles.
    assert roles == ["replicator", "admin", "app", "pgha_pooler", "reporter", "postgres"]
    assert "'reporter', 'rep-pass'" in f.content
    assert PLACEHOLDER_SECRETS.app_password in f.content


def test_a_role_statement_quotes_what_it_holds() -> None:
    statement = role_password_statement("o'neil", "pa'ss")
    assert "rolname = 'o''neil'" in statement and "'pa''ss'" in statement
    with pytest.raises(ValueError, match="holds"):
        role_password_statement("app", "x$pgha$y")


# --- plan -----------------------------------------------------------------------------------


def test_the_clone_creates_its_own_stanza_never_the_sources() -> None:
    desired = desired_of(load("source: src, latest: true"))
    observed = observed_with(desired, BackupFacts(stanza_exists=False))
    made = [a for a in plan(desired, observed).actions if isinstance(a, CreateStanza)]
    assert made == [CreateStanza("node1", "/srv/b/clone", "postgres")]


# --- the source, checked before the cluster is made -----------------------------------------


def source_info() -> BackupInfoFile:
    return parse_backup_info((FIXTURES / "pgbackrest_backup.info").read_text())


def test_the_source_must_hold_a_backup_ending_before_the_target() -> None:
    info = source_info()
    first_stop = info.backups[0].stop
    after = datetime.fromtimestamp(first_stop + 60, UTC).isoformat()
    ok = load(f"source: src, targetTime: '{after}'").spec.bootstrap.recovery
    assert ok is not None and source_reason(ok, info) is None
    before = datetime.fromtimestamp(first_stop - 60, UTC).isoformat()
    early = load(f"source: src, targetTime: '{before}'").spec.bootstrap.recovery
    assert early is not None
    assert "no backup of stanza src ends before targetTime" in (source_reason(early, info) or "")
    latest = load("source: src, latest: true").spec.bootstrap.recovery
    assert latest is not None
    assert "unknown source 'src'" in (source_reason(latest, None) or "")
    empty = replace(info, backups=())
    assert "has no backup yet" in (source_reason(latest, empty) or "")


def test_validate_and_apply_refuse_an_unknown_source(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    loaded, _ = parse(f"source: {repository}, stanza: src, latest: true")
    with pytest.raises(ManifestError) as refused:
        refuse_missing_source(loaded[0])
    [problem] = refused.value.problems
    assert (problem.file, problem.path) == ("clone.yaml", "spec.bootstrap.recovery.source")
    assert f"{repository} holds no pgBackRest stanza src" in problem.reason
    (repository / "backup" / "src").mkdir(parents=True)
    shutil.copy(FIXTURES / "pgbackrest_backup.info", repository / "backup" / "src" / "backup.info")
    refuse_missing_source(loaded[0])  # there now: accepted
