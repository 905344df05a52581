"""The local Kafka tooling's pure parts: config and pom rendering, jar-cache logic, ports, CLI."""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import socket
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from listener import kafka_cli
from listener.kafka_local import (
    KAFKA_VERSION,
    LOG4J_VERSION,
    KafkaBroker,
    KafkaLocalError,
    default_kafka_home,
    free_port,
    free_ports,
    jars_ready,
    new_cluster_id,
    port_in_use,
    render_pom,
    resolve_jars,
)

POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def fake_resolved_home(home: Path) -> Path:
    """A jar cache that looks completely resolved (marker matches the current pom)."""
    libs = home / "libs"
    libs.mkdir(parents=True)
    (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").write_bytes(b"")
    (home / ".resolved").write_text(hashlib.sha256(render_pom().encode()).hexdigest() + "\n")
    return libs


def write_tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


# --- server.properties and log4j2 ----------------------------------------------------------


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "d", port=19092, controller_port=19093, partitions=6)
    props = broker.server_properties()
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["num.partitions"] == "6"
    assert Path(props["log.dirs"]).parent == tmp_path / "d"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert broker.bootstrap == "127.0.0.1:19092"


def test_write_config_renders_properties_and_log4j(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "d")
    broker.write_config()
    lines = broker.config_file.read_text().splitlines()
    assert "process.roles=broker,controller" in lines
    assert all(line.count("=") >= 1 for line in lines)
    log4j = (tmp_path / "d" / "log4j2.properties").read_text()
    assert f"appender.file.fileName = {tmp_path / 'd' / 'broker.log'}" in log4j
    assert "rootLogger.level = INFO" in log4j


def test_relative_data_dir_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert KafkaBroker(Path("rel")).data_dir == tmp_path / "rel"


# --- pom and the jar cache -----------------------------------------------------------------


def test_pom_names_kafka_and_the_log4j_slf4j_binding() -> None:
    root = ET.fromstring(render_pom())
    deps = {
        (
            d.findtext("m:groupId", namespaces=POM_NS),
            d.findtext("m:artifactId", namespaces=POM_NS),
        ): d.findtext("m:version", namespaces=POM_NS)
        for d in root.iterfind("m:dependencies/m:dependency", POM_NS)
    }
    assert deps == {
        ("org.apache.kafka", "kafka_2.13"): KAFKA_VERSION,
        ("org.apache.logging.log4j", "log4j-slf4j-impl"): LOG4J_VERSION,
    }


def test_jars_ready_needs_matching_marker_and_broker_jar(tmp_path: Path) -> None:
    assert not jars_ready(tmp_path)
    fake_resolved_home(tmp_path)
    assert jars_ready(tmp_path)
    (tmp_path / ".resolved").write_text("digest-of-another-pom\n")
    assert not jars_ready(tmp_path)


def test_resolve_skips_maven_when_marker_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    libs = fake_resolved_home(tmp_path / "home")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no mvn: would fail if called
    assert resolve_jars(tmp_path / "home") == libs


def test_resolve_without_maven_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(KafkaLocalError, match="`mvn` was not found"):
        resolve_jars(tmp_path / "home")


def test_resolve_reports_maven_failure_with_output_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tool(tmp_path / "bin", "mvn", "echo '[ERROR] Could not resolve dependencies'; exit 1\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(KafkaLocalError, match="Could not resolve dependencies") as excinfo:
        resolve_jars(tmp_path / "home")
    assert "exit 1" in str(excinfo.value)
    assert not jars_ready(tmp_path / "home")
    assert (tmp_path / "home" / "pom.xml").read_text() == render_pom()


def test_resolve_writes_marker_after_maven_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in mvn that "copies" the broker jar to -DoutputDirectory.
    write_tool(
        tmp_path / "bin",
        "mvn",
        'for a in "$@"; do case "$a" in -DoutputDirectory=*) d="${a#*=}";; esac; done\n'
        f'mkdir -p "$d" && touch "$d/kafka_2.13-{KAFKA_VERSION}.jar"\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    libs = resolve_jars(tmp_path / "home")
    assert jars_ready(tmp_path / "home")
    assert libs == tmp_path / "home" / "libs"


def test_default_home_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAND_LISTENER_KAFKA_HOME", str(tmp_path))
    assert default_kafka_home() == tmp_path
    monkeypatch.delenv("BRAND_LISTENER_KAFKA_HOME")
    assert default_kafka_home().name == f"kafka-{KAFKA_VERSION}"


def test_format_without_java_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_resolved_home(tmp_path / "home")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(KafkaLocalError, match="`java` was not found"):
        KafkaBroker(tmp_path / "d", kafka_home=tmp_path / "home").format()


# --- ports, ids, pid files -----------------------------------------------------------------


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_port_in_use() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        assert port_in_use("127.0.0.1", holder.getsockname()[1])
    assert not port_in_use("127.0.0.1", free_port())


def test_cluster_id_is_a_base64url_uuid() -> None:
    cluster_id = new_cluster_id()
    assert len(cluster_id) == 22
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert new_cluster_id() != cluster_id


def test_stale_pid_file_is_not_a_running_broker(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path)
    assert broker.pid() is None and not broker.is_running()
    broker.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a Kafka broker
    assert broker.pid() is None
    assert broker.stop() is False
    assert not broker.pid_file.exists()


# --- CLI without a broker ------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    kafka_cli.register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["kafka", *argv])
    return int(args.func(args))


def test_cli_status_stop_logs_when_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "kafka")
    assert run_cli("status", "--data-dir", data) == 3
    assert "not running" in capsys.readouterr().out
    assert run_cli("stop", "--data-dir", data) == 0
    assert "was not running" in capsys.readouterr().out
    assert run_cli("logs", "--data-dir", data) == 1
    assert "no broker log yet" in capsys.readouterr().err


def test_cli_start_reports_a_taken_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code = run_cli("start", "--data-dir", str(tmp_path), "--port", str(port))
    assert code == 1
    assert f"127.0.0.1:{port} is already in use" in capsys.readouterr().err


def test_cli_defaults() -> None:
    parser = argparse.ArgumentParser()
    kafka_cli.register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["kafka", "start"])
    assert (args.host, args.port, args.controller_port, args.partitions) == (
        "127.0.0.1",
        9092,
        9093,
        4,
    )
    assert args.data_dir == Path(".demo/kafka")


def test_cluster_id_never_starts_with_a_dash() -> None:
    """kafka-storage format -t -xyz... fails ("expected one argument"): 1 in 64 random ids would."""
    assert all(not new_cluster_id().startswith("-") for _ in range(2000))
