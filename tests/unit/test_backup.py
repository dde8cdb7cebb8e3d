"""spec.backup: validation, rendering (pgbackrest.conf, patroni.yml's archiving), the
`pgbackrest info` parser on captured output, the stanza step of the plan and the
BackupsHealthy condition."""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pgha_operator.core import topology
from pgha_operator.core.backup_actions import CreateStanza
from pgha_operator.core.conditions import assess, phase
from pgha_operator.core.desired import PLACEHOLDER_SECRETS, build_desired
from pgha_operator.core.facts.backup import (
    STANZA_MISSING,
    ArchiverFacts,
    BackupFacts,
    InfoParseError,
    parse_backup_info,
    parse_info,
)
from pgha_operator.core.plan import Desired, plan
from pgha_operator.core.render import Binaries
from pgha_operator.core.render.pgbackrest import backup_paths
from pgha_operator.core.spec import Cluster, parse_text
from tests.unit.test_conditions import routed
from tests.unit.test_plan import converged

FIXTURES = Path(__file__).parent / "fixtures"
SYSTEM_ID = 7713176083651910434  # the database of the captured outputs

MANIFEST = """apiVersion: pgha/v1
kind: Cluster
metadata: {name: demo}
spec:
  provider: {type: local}
  etcd: {members: 1}
  postgres:
    instances: 2
%s
"""


def load(backup: str | None = "  backup: {}", parameters: str = "") -> Cluster:
    text = MANIFEST % ((parameters + "\n" if parameters else "") + (backup or ""))
    clusters, problems = parse_text(text, "m.yaml")
    assert problems == [], problems
    return clusters[0].cluster


def problems_of(backup: str) -> list[str]:
    return [f"{p.path}: {p.reason}" for p in parse_text(MANIFEST % backup, "m.yaml")[1]]


def desired_of(cluster: Cluster) -> Desired:
    topo = topology.build(cluster)
    layouts = {m.name: topology.layout(f"/srv/st/machines/{m.name}") for m in topo.machines}
    desired, _ = build_desired(
        cluster, layouts, PLACEHOLDER_SECRETS, Binaries(), "postgres", "local"
    )
    return desired


def file_text(desired: Desired, machine: str, name: str) -> str:
    [f] = [f for f in desired.files if f.machine == machine and f.path.endswith(name)]
    return f.content


# --- spec -----------------------------------------------------------------------------------


def test_backup_is_off_unless_the_manifest_has_it() -> None:
    assert load(None).spec.backup is None
    backup = load().spec.backup
    assert backup is not None and backup.repository.path is None
    assert (backup.schedule.full, backup.retention.full, backup.compression) == (
        "0 1 * * 0",
        2,
        "zst",
    )


@pytest.mark.parametrize(
    ("backup", "expected"),
    [
        ("{repository: {path: backups}}", "repository.path: 'backups' is not an absolute path"),
        ("{repository: {path: /etc/pgha/demo}}", "is under /etc"),
        ("{repository: {path: /var/lib/pgha/demo/b}}", "is under /var/lib/pgha"),
        ("{repository: {path: /}}", "cannot be a repository"),
        ("{repository: {path: /srv//b}}", "write it as '/srv/b'"),
        ("{repository: {type: s3}}", "repository.type: 's3' is not one of 'posix'"),
        ("{schedule: {full: '0 25 * * *'}}", "schedule.full: '0 25 * * *' is not a cron"),
        ("{schedule: {diff: daily}}", "write five fields"),
        ("{retention: {full: 0}}", "retention.full: 0 is too small"),
        ("{compression: rar}", "compression: 'rar' is not one of"),
        ("{schedules: {}}", "unknown field 'schedules'"),
    ],
)
def test_bad_backup_settings_are_refused_naming_the_field(backup: str, expected: str) -> None:
    found = problems_of(f"  backup: {backup}")
    assert any(p.startswith("spec.backup.") and expected in p for p in found), found


def test_backups_on_a_provider_without_a_repository_yet_are_refused() -> None:
    text = (MANIFEST % "  backup: {}").replace(
        "provider: {type: local}", "provider: {type: nspawn}"
    )
    found = [f"{p.path}: {p.reason}" for p in parse_text(text, "m.yaml")[1]]
    assert any(p.startswith("spec.backup: backups are not supported on the nspawn") for p in found)


@pytest.mark.parametrize("name", ["archive_mode", "archive_command", "restore_command"])
def test_archiving_parameters_are_the_operators(name: str) -> None:
    found = problems_of(f"    parameters: {{{name}: 'x'}}")
    assert any(f"spec.postgres.parameters.{name}" in p and "spec.backup" in p for p in found)


# --- render ---------------------------------------------------------------------------------


def test_without_backup_nothing_archives() -> None:
    desired = desired_of(load(None))
    assert not [f for f in desired.files if "pgbackrest" in f.path]
    patroni = yaml.safe_load(file_text(desired, "node1", "patroni.yml"))
    assert "archive_mode" not in patroni["postgresql"]["parameters"]
    assert "recovery_conf" not in patroni["postgresql"]
    assert "create_replica_methods" not in patroni["postgresql"]  # basebackup only


def replica_method(desired: Desired, machine: str) -> dict:
    return yaml.safe_load(file_text(desired, machine, "patroni.yml"))["postgresql"]


def test_replicas_restore_from_the_repository_first_then_basebackup() -> None:
    desired = desired_of(load("  backup: {repository: {path: /srv/b}}"))
    config = backup_paths(topology.layout("/srv/st/machines/node2")).config
    patroni = replica_method(desired, "node2")
    assert patroni["create_replica_methods"] == ["pgbackrest", "basebackup"]
    # Patroni adds no --scope/--datadir arguments pgBackRest would refuse, and leaves the
    # data directory for --delta; the node's own config names its data directory.
    method = patroni["pgbackrest"]
    assert (method["keep_data"], method["no_params"]) == (True, True)
    sh, flag, script = shlex.split(method["command"])
    assert (sh, flag) == ("/bin/sh", "-c")
    assert script.startswith("if [ -e /srv/b/demo.destroyed-cluster.json ]; then ")
    assert script.endswith(
        f"; exec /usr/bin/pgbackrest --config={config} --stanza=demo --delta restore"
    )
    assert patroni["basebackup"] == [{"checkpoint": "fast"}]  # the fallback's options kept


def test_no_restore_from_a_destroyed_clusters_stanza(tmp_path: Path) -> None:
    """While destroy's marker is there the stanza's database is the former one: the method
    fails (Patroni then runs pg_basebackup) before pgBackRest is ever started."""
    desired = desired_of(load(f"  backup: {{repository: {{path: {tmp_path}}}}}"))
    command = shlex.split(replica_method(desired, "node1")["pgbackrest"]["command"])
    (tmp_path / "demo.destroyed-cluster.json").write_text("{}")
    refused = subprocess.run(command, capture_output=True, text=True, timeout=10)
    assert refused.returncode == 1
    assert "the stanza is a destroyed cluster's; no restore" in refused.stderr


def test_each_node_archives_with_its_own_config_listing_itself_first() -> None:
    desired = desired_of(load("  backup: {repository: {path: /srv/b}, compression: lz4}"))
    node2 = topology.layout("/srv/st/machines/node2")
    config = backup_paths(node2).config
    patroni = yaml.safe_load(file_text(desired, "node2", "patroni.yml"))["postgresql"]
    assert patroni["parameters"]["archive_mode"] == "on"
    assert patroni["parameters"]["archive_command"] == (
        f'/usr/bin/pgbackrest --config={config} --stanza=demo archive-push "%p"'
    )
    assert patroni["recovery_conf"]["restore_command"] == (
        f'/usr/bin/pgbackrest --config={config} --stanza=demo archive-get %f "%p"'
    )
    conf = file_text(desired, "node2", "pgbackrest.conf")
    assert "repo1-path=/srv/b\n" in conf and "compress-type=lz4\n" in conf
    assert f"pg1-path={node2.pg_data}\n" in conf
    assert "pg2-path=/srv/st/machines/node1/pg/data\n" in conf
    [f] = [f for f in desired.files if f.machine == "node2" and f.path == config]
    assert (f.mode, f.owner, f.service) == (0o640, "postgres", None)


def test_the_passfile_escapes_the_password() -> None:
    cluster = load()
    topo = topology.build(cluster)
    layouts = {m.name: topology.layout(f"/srv/st/machines/{m.name}") for m in topo.machines}
    secrets = replace(PLACEHOLDER_SECRETS, superuser_password="a:b\\c")
    desired, _ = build_desired(cluster, layouts, secrets, Binaries(), "postgres", "local")
    assert file_text(desired, "node1", "pgbackrest.pgpass") == "*:*:*:postgres:a\\:b\\\\c\n"


def test_default_repository_is_outside_the_cluster() -> None:
    conf = file_text(desired_of(load()), "node1", "pgbackrest.conf")
    assert "repo1-path=/var/lib/pgha-backups/demo\n" in conf


# --- parsers --------------------------------------------------------------------------------


def test_info_with_a_full_and_a_diff_backup() -> None:
    info = parse_info((FIXTURES / "pgbackrest_info_full_diff.json").read_text(), "cap")
    assert (info.status_code, info.status, info.system_id) == (0, "ok", SYSTEM_ID)
    assert [b.type for b in info.backups] == ["full", "diff"]
    full = info.backups[0]
    assert full.label == "20261128-110246F" and full.size == 22992565
    assert (full.wal_start, full.wal_stop) == (
        "000000010000000000000003",
        "000000010000000000000004",
    )
    assert full.stop - full.start == 3 and full.repository_size == 2823162
    assert info.last is not None and info.last.label.endswith("D")
    assert (info.wal_min, info.wal_max) == ("000000010000000000000001", "000000010000000000000006")
    assert info.exists and not info.backup_running


def test_info_before_the_first_backup_and_without_a_stanza() -> None:
    info = parse_info((FIXTURES / "pgbackrest_info_no_backup.json").read_text(), "cap")
    assert info.exists and info.backups == () and info.status == "no valid backups"
    assert info.wal_max == "000000010000000000000002"
    missing = parse_info((FIXTURES / "pgbackrest_info_missing_stanza.json").read_text(), "demo")
    assert missing.status_code == STANZA_MISSING and not missing.exists
    assert not parse_info("[]", "demo").exists


@pytest.mark.parametrize("text", ["", "ERROR: [055]: unable to load info file", '{"a": 1}'])
def test_info_that_is_not_json_is_an_error(text: str) -> None:
    with pytest.raises(InfoParseError):
        parse_info(text, "demo")


def test_backup_info_file() -> None:
    parsed = parse_backup_info((FIXTURES / "pgbackrest_backup.info").read_text())
    assert parsed.system_id == SYSTEM_ID
    assert [(b.label, b.type) for b in parsed.backups] == [
        ("20261128-110246F", "full"),
        ("20261128-110246F_20261128-110250D", "diff"),
    ]
    listed = parse_info((FIXTURES / "pgbackrest_info_full_diff.json").read_text(), "cap")
    assert parsed.backups == listed.backups  # the file and `pgbackrest info` agree
    empty = parse_backup_info("[backrest]\nbackrest-format=5\n")
    assert (empty.system_id, empty.backups) == (None, ())


def test_backup_json_has_the_columns_backups_prints() -> None:
    info = parse_info((FIXTURES / "pgbackrest_info_full_diff.json").read_text(), "cap")
    row = info.backups[0].as_json()
    assert set(row) >= {"label", "type", "start", "stop", "size", "walStart", "walStop"}
    json.dumps(row)


# --- plan and condition ---------------------------------------------------------------------

NOW = 1_800_000_000.0


def archiver(archived: float | None = NOW - 5, failed: float | None = None) -> ArchiverFacts:
    return ArchiverFacts(
        archived_count=3,
        last_archived_wal="000000010000000000000003" if archived else None,
        last_archived_time=archived,
        failed_count=0 if failed is None else 4,
        last_failed_wal=None if failed is None else "000000010000000000000004",
        last_failed_time=failed,
    )


def observed_with(desired: Desired, facts: BackupFacts | None):  # noqa: ANN201
    observed = routed(desired, converged(desired))
    return replace(observed, backup=facts, now=NOW, roles=None, databases=None)


def test_the_stanza_is_created_on_the_primary_once_its_config_is_written() -> None:
    desired = desired_of(load("  backup: {repository: {path: /srv/b}}"))
    observed = observed_with(desired, BackupFacts(stanza_exists=False))
    actions = [a for a in plan(desired, observed).actions if isinstance(a, CreateStanza)]
    assert actions == [CreateStanza("node1", "/srv/b", "postgres")]
    # Not before node1's pgbackrest.conf is in place, nor with a restart pending.
    conf = backup_paths(topology.layout("/srv/st/machines/node1")).config
    unwritten = replace(observed, files={**observed.files, ("node1", conf): None})
    assert not [a for a in plan(desired, unwritten).actions if isinstance(a, CreateStanza)]
    members = tuple(replace(m, pending_restart=True) for m in observed.patroni.members)
    pending = replace(observed, patroni=replace(observed.patroni, members=members))
    assert not [a for a in plan(desired, pending).actions if isinstance(a, CreateStanza)]


def test_an_existing_or_unknown_stanza_plans_nothing() -> None:
    desired = desired_of(load())
    for facts in (BackupFacts(stanza_exists=True, archiver=archiver()), None):
        observed = observed_with(desired, facts)
        assert not [a for a in plan(desired, observed).actions if isinstance(a, CreateStanza)]


def backups_condition(desired: Desired, facts: BackupFacts | None):  # noqa: ANN201
    observed = observed_with(desired, facts)
    conditions = assess(desired, observed)
    [c] = [c for c in conditions if c.type == "BackupsHealthy"]
    return c, phase(conditions, plan(desired, observed))


def test_backups_healthy_when_the_archiver_last_succeeded() -> None:
    desired = desired_of(load())
    facts = BackupFacts(True, SYSTEM_ID, archiver(failed=NOW - 60), SYSTEM_ID)
    condition, state = backups_condition(desired, facts)
    assert condition.status and state == "Converged"
    assert not [c for c in assess(desired_of(load(None)), converged(desired)) if "Backup" in c.type]


def test_failing_archiving_degrades_the_cluster_with_the_reason() -> None:
    desired = desired_of(load())
    facts = BackupFacts(True, SYSTEM_ID, archiver(archived=NOW - 600, failed=NOW - 3), SYSTEM_ID)
    condition, state = backups_condition(desired, facts)
    assert not condition.status and state == "Degraded"
    assert condition.reason.startswith("ArchivingFailing: WAL 000000010000000000000004")
    assert "10 min ago" in condition.reason and "pg_wal" in condition.reason


def test_a_stanza_of_another_database_is_reported_never_recreated() -> None:
    desired = desired_of(load())
    facts = BackupFacts(True, 42, archiver(failed=NOW), SYSTEM_ID)
    condition, state = backups_condition(desired, facts)
    assert not condition.status and state == "Degraded"
    assert "ForeignStanza" in condition.reason and "system id 42" in condition.reason
    assert not [
        a
        for a in plan(desired, observed_with(desired, facts)).actions
        if isinstance(a, CreateStanza)
    ]


def test_a_missing_stanza_is_progress() -> None:
    desired = desired_of(load())
    condition, state = backups_condition(desired, BackupFacts(stanza_exists=False))
    assert not condition.status and condition.transient and state == "Progressing"


# --- shell: the backup source and the repository on destroy ---------------------------------


def test_the_backup_source_is_the_least_lagging_streaming_replica() -> None:
    from pgha_operator.shell.backups import healthy_standby

    desired = desired_of(load())
    observed = converged(desired)
    members = observed.patroni.members
    assert healthy_standby(observed, ("node1", "node2")) == "node2"
    stopped = tuple(replace(m, state="stopped") if m.name == "node2" else m for m in members)
    down = replace(observed, patroni=replace(observed.patroni, members=stopped))
    assert healthy_standby(down, ("node1", "node2")) is None
    lagging = tuple(replace(m, lag_bytes=10**9) if m.name == "node2" else m for m in members)
    behind = replace(observed, patroni=replace(observed.patroni, members=lagging))
    assert healthy_standby(behind, ("node1", "node2")) is None


def test_delete_backups_removes_only_this_clusters_stanza(tmp_path: Path) -> None:
    from pgha_operator.shell.backups import delete_backups, kept_backups

    repository = tmp_path / "repo"
    cluster = load(f"  backup: {{repository: {{path: {repository}}}}}")
    for kind in ("backup", "archive"):
        for stanza in ("demo", "other"):
            (repository / kind / stanza).mkdir(parents=True)
            (repository / kind / stanza / f"{kind}.info").write_text("x")
    assert kept_backups(cluster) == str(repository)
    removed = delete_backups(cluster)
    assert removed == [str(repository / "backup" / "demo"), str(repository / "archive" / "demo")]
    assert (repository / "backup" / "other" / "backup.info").exists()
    delete_backups(
        load(f"  backup: {{repository: {{path: {repository}}}}}").model_copy(
            update={"metadata": cluster.metadata.model_copy(update={"name": "other"})}
        )
    )
    assert not repository.exists()  # emptied: the directory goes too
    assert kept_backups(load(None)) is None and delete_backups(load(None)) == []


def test_status_shows_the_last_backup_and_the_archiver() -> None:
    from pgha_operator.core.backup_health import backup_status, format_backup_status

    desired = desired_of(load())
    last = parse_backup_info((FIXTURES / "pgbackrest_backup.info").read_text()).backups[-1]
    facts = BackupFacts(True, SYSTEM_ID, archiver(), SYSTEM_ID, last_backup=last)
    section = backup_status(desired.cluster, observed_with(desired, facts))
    assert section is not None and section["repository"] == "/var/lib/pgha-backups/demo"
    assert section["lastBackup"]["type"] == "diff"
    assert section["lastBackup"]["ageSeconds"] == int(NOW) - last.stop
    assert section["archiver"]["lastArchivedAgeSeconds"] == 5
    lines = format_backup_status(section)
    assert "last backup 20261128-110246F_20261128-110250D (diff)" in lines[1]
    assert lines[2].startswith("  WAL archiving ok: last archived 000000010000000000000003 5s")
    assert backup_status(load(None), observed_with(desired, None)) is None


# --- a cluster of the same name after destroy ----------------------------------------------

NEW_SYSTEM_ID = 7713179339139075262  # the database stanza-upgrade added (captured)


def test_after_stanza_upgrade_only_the_current_databases_backups_count() -> None:
    info = parse_info((FIXTURES / "pgbackrest_info_upgraded.json").read_text(), "cap")
    assert info.system_id == NEW_SYSTEM_ID and info.backups == ()
    assert (info.wal_min, info.wal_max) == ("000000010000000000000001",) * 2
    parsed = parse_backup_info((FIXTURES / "pgbackrest_backup_upgraded.info").read_text())
    assert parsed.system_id == NEW_SYSTEM_ID and parsed.backups == ()


def test_the_destroyed_marker_round_trips() -> None:
    from pgha_operator.core.facts.backup import (
        destroyed_marker,
        destroyed_marker_text,
        parse_destroyed_marker,
    )

    assert destroyed_marker("/srv/b/", "demo") == "/srv/b/demo.destroyed-cluster.json"
    assert parse_destroyed_marker(destroyed_marker_text("demo", SYSTEM_ID)) == SYSTEM_ID
    for text in ("", "[]", '{"systemId": "1"}', "not json"):
        assert parse_destroyed_marker(text) is None


def test_a_destroyed_clusters_stanza_is_continued_another_is_not() -> None:
    from pgha_operator.core.backup_actions import AdoptStanza

    desired = desired_of(load("  backup: {repository: {path: /srv/b}}"))
    left = BackupFacts(True, 42, archiver(failed=NOW), SYSTEM_ID, destroyed_system_id=42)
    actions = plan(desired, observed_with(desired, left)).actions
    marker = "/srv/b/demo.destroyed-cluster.json"
    assert [a for a in actions if isinstance(a, AdoptStanza)] == [
        AdoptStanza("node1", "/srv/b", "postgres", marker)
    ]
    condition, state = backups_condition(desired, left)
    assert condition.transient and "AdoptingStanza" in condition.reason and state == "Progressing"
    # A marker naming another database than the stanza's does not let it be taken over.
    other = replace(left, destroyed_system_id=43)
    assert not [
        a
        for a in plan(desired, observed_with(desired, other)).actions
        if isinstance(a, AdoptStanza | CreateStanza)
    ]
    assert "ForeignStanza" in backups_condition(desired, other)[0].reason


# --- shell: the stanza actions' commands ----------------------------------------------------


class RecordingHost:
    """Records commands; fails the ones whose pgBackRest command is in `failing`."""

    name = "node1"

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.failing = failing
        self.ran: list[tuple[list[str], str | None]] = []
        self.dirs: list[tuple[str, int, str | None]] = []
        self.removed: list[str] = []

    def run(self, argv, *, user=None, timeout=30, check=True, input=None):  # noqa: ANN001, ANN201, A002
        from pgha_operator.shell.hosts.base import CommandResult, HostError

        self.ran.append((list(argv), user))
        if any(word in argv for word in self.failing):
            raise HostError(f"node1: {argv[3]} failed with exit code 28")
        return CommandResult(tuple(argv), 0, "", "")

    def ensure_dir(self, path: str, mode: int = 0o755, owner: str | None = None) -> bool:
        self.dirs.append((path, mode, owner))
        return True

    def remove(self, path: str) -> None:
        self.removed.append(path)


def test_the_stanza_is_created_then_checked_as_postgres_with_the_passfile() -> None:
    from pgha_operator.shell.backup_execute import perform_backup

    layout = topology.layout("/srv/st/machines/node1")
    host = RecordingHost()
    perform_backup(CreateStanza("node1", "/srv/b", "postgres"), host, layout, "demo")  # type: ignore[arg-type]
    assert host.dirs == [("/srv/b", 0o750, "postgres")]
    paths = backup_paths(layout)
    assert [
        (argv[-2:] if argv[-1].startswith("--") else argv[-1:], user) for argv, user in host.ran
    ] == [
        (["stanza-create"], "postgres"),
        (["check", "--archive-timeout=30"], "postgres"),
    ]
    argv = host.ran[0][0]
    assert argv[:5] == [
        "env",
        f"PGPASSFILE={paths.passfile}",
        "/usr/bin/pgbackrest",
        f"--config={paths.config}",
        "--stanza=demo",
    ]


def test_a_refused_stanza_command_is_retried_later_and_keeps_the_marker() -> None:
    from pgha_operator.core.backup_actions import AdoptStanza
    from pgha_operator.core.errors import TemporaryError
    from pgha_operator.shell.backup_execute import RETRY_SECONDS, perform_backup

    layout = topology.layout("/srv/st/machines/node1")
    host = RecordingHost(failing=("stanza-upgrade",))
    adopt = AdoptStanza("node1", "/srv/b", "postgres", "/srv/b/demo.destroyed-cluster.json")
    with pytest.raises(TemporaryError) as raised:
        perform_backup(adopt, host, layout, "demo")  # type: ignore[arg-type]
    assert raised.value.delay == RETRY_SECONDS and host.removed == []
    ok = RecordingHost()
    perform_backup(adopt, ok, layout, "demo")  # type: ignore[arg-type]
    assert ok.removed == ["/srv/b/demo.destroyed-cluster.json", "/srv/b/demo.wal-timeline"]
    assert [argv[5] for argv, _ in ok.ran] == ["stanza-upgrade", "check"]


# --- after a failover ------------------------------------------------------------------------


def test_older_timeline_segments_in_pg_wal() -> None:
    from pgha_operator.core.facts.backup import older_timeline_segments

    names = [
        "000000010000000000000004",
        "000000010000000000000003",
        "000000010000000000000005.partial",
        "00000002.history",
        "000000020000000000000005",
        "archive_status",
        "000000010000000000000004.00000028.backup",
    ]
    assert older_timeline_segments(names, 2) == [
        "000000010000000000000003",
        "000000010000000000000004",
    ]
    assert older_timeline_segments(names, 1) == []


def test_a_new_timeline_pushes_the_older_wal_once() -> None:
    from pgha_operator.core.backup_actions import PushOlderTimelineWal

    desired = desired_of(load("  backup: {repository: {path: /srv/b}}"))
    facts = BackupFacts(True, SYSTEM_ID, archiver(), SYSTEM_ID)
    observed = observed_with(desired, facts)
    members = tuple(replace(m, timeline=2) for m in observed.patroni.members)
    failed_over = replace(observed, patroni=replace(observed.patroni, members=members))

    def pushes(o):  # noqa: ANN001, ANN202
        return [a for a in plan(desired, o).actions if isinstance(a, PushOlderTimelineWal)]

    assert pushes(observed) == []  # timeline 1: nothing before it
    assert pushes(failed_over) == [
        PushOlderTimelineWal("node1", 2, "postgres", "/srv/b/demo.wal-timeline")
    ]
    done = replace(failed_over, backup=replace(facts, pushed_timeline=2))
    assert pushes(done) == []
    foreign = replace(failed_over, backup=replace(facts, stanza_system_id=42))
    assert pushes(foreign) == []


def test_the_push_lists_pg_wal_pushes_each_older_segment_then_notes_the_timeline() -> None:
    from pgha_operator.core.backup_actions import PushOlderTimelineWal
    from pgha_operator.shell.backup_execute import perform_backup
    from pgha_operator.shell.hosts.base import CommandResult

    class ListingHost(RecordingHost):
        def __init__(self) -> None:
            super().__init__()
            self.written: list[tuple[str, bytes, str | None]] = []

        def run(self, argv, *, user=None, timeout=30, check=True, input=None):  # noqa: ANN001, ANN201, A002
            self.ran.append((list(argv), user))
            out = "000000010000000000000003\n000000010000000000000004.partial\n00000002.history\n"
            return CommandResult(tuple(argv), 0, out if argv[0] == "ls" else "", "")

        def write(self, path: str, data: bytes, *, mode: int = 0o644, owner=None) -> bool:  # noqa: ANN001
            self.written.append((path, data, owner))
            return True

    layout = topology.layout("/srv/st/machines/node1")
    host = ListingHost()
    action = PushOlderTimelineWal("node1", 2, "postgres", "/srv/b/demo.wal-timeline")
    perform_backup(action, host, layout, "demo")  # type: ignore[arg-type]
    pushed = [argv[-1] for argv, _ in host.ran if "archive-push" in argv]
    assert pushed == [f"{layout.pg_data}/pg_wal/000000010000000000000003"]
    assert host.written == [("/srv/b/demo.wal-timeline", b"2\n", "postgres")]
