"""ModelKit operators' ``execute`` against a real registry (CNCF Distribution on loopback)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.execution_time.context import OutletEventAccessors
from kitflow_airflow.operators.modelkit import (
    KitPackOperator,
    KitPullOperator,
    KitPushOperator,
    KitUnpackOperator,
)
from kitflow_airflow.operators.run import KitRunOperator
from support.inference_kits import make_kit, read_jsonl, write_jsonl
from support.registry import RunningRegistry, unique_repo


def use_registry(monkeypatch: pytest.MonkeyPatch, reg: RunningRegistry, conn_id: str) -> None:
    """Expose the fixture registry as an Airflow connection (``AIRFLOW_CONN_*``)."""
    conn: dict[str, Any] = {
        "conn_type": "kitops_registry",
        "host": reg.host,
        "extra": {"plain_http": reg.plain_http},
    }
    if reg.username:
        conn["login"] = reg.username
        conn["password"] = reg.password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def echo_kit(tmp_path: Path) -> Path:
    return make_kit(tmp_path / "echo-kit", weights="w7")


def test_pack_push_pull_unpack_run(
    registry: RunningRegistry,
    echo_kit: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_registry(monkeypatch, registry, "kitops_registry_default")
    repo = unique_repo("airflow")
    home = tmp_path / "home-a"

    packed = KitPackOperator(
        task_id="pack", context_dir=str(echo_kit), tag=f"{repo}:v1", home=str(home)
    ).execute(context={})
    # The connection's registry qualifies a reference that names none.
    assert packed["reference"] == f"{registry.host}/{repo}:v1"
    assert packed["digest"].startswith("sha256:") and packed["size"] > 0
    json.dumps(packed)  # plain JSON for XCom

    events = OutletEventAccessors()
    push = KitPushOperator(task_id="push", reference=packed["reference"], home=str(home))
    pushed = push.execute(context={"outlet_events": events})
    assert pushed["digest"] == packed["digest"]
    assert pushed["reference"] == f"{registry.host}/{repo}:v1"
    assert pushed["asset_uri"] == f"oci://{registry.host}/{repo}@{packed['digest']}"
    json.dumps(pushed)
    # The alias outlet (declared at construction) carries the digest-pinned asset event.
    alias = AssetAlias(name=f"modelkit:{registry.host}/{repo}")
    assert alias in push.outlets
    (event,) = events[alias].asset_alias_events
    assert event.dest_asset_key.uri == pushed["asset_uri"]
    assert event.extra["digest"] == packed["digest"]

    home_b = tmp_path / "home-b"
    pulled = KitPullOperator(task_id="pull", reference=f"{repo}:v1", home=str(home_b)).execute(
        context={}
    )
    assert pulled["digest"] == packed["digest"]

    unpacked = KitUnpackOperator(
        task_id="unpack",
        reference=f"{repo}:v1",
        directory=str(tmp_path / "unpacked"),
        filters=["model"],
        home=str(home_b),
    ).execute(context={})
    assert unpacked["digest"] == packed["digest"]
    assert (tmp_path / "unpacked" / "model" / "weights.txt").read_text().strip() == "w7"
    assert not (tmp_path / "unpacked" / "src").exists()

    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"t{i}"} for i in range(7)])
    result = KitRunOperator(
        task_id="run",
        reference=f"{repo}:v1",
        input_path=str(inputs),
        output_path=str(tmp_path / "out.jsonl"),
        shards=2,
        home=str(tmp_path / "home-c"),  # empty store: the run pulls the kit itself
    ).execute(context={})
    json.dumps(result)
    assert result["records"] == 7 and result["backend"] == "local"
    assert result["model_digest"] == packed["digest"]
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["prediction"] for r in rows] == [f"w7:T{i}" for i in range(7)]

    single = KitRunOperator(
        task_id="one",
        reference=f"{repo}:v1",
        record={"id": "q1", "text": "{{ params.text }}"},
        home=str(tmp_path / "home-c"),
    )
    single.render_template_fields(context={"params": {"text": "hello"}})
    one = single.execute(context={})
    assert one["records"] == 1 and one["prediction"] == "w7:HELLO"


def test_push_sets_extra_on_plain_oci_asset_outlets(
    registry: RunningRegistry, echo_kit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_registry(monkeypatch, registry, "reg")
    repo = unique_repo("airflow")
    ref = f"{registry.host}/{repo}:v2"
    KitPackOperator(task_id="pack", context_dir=str(echo_kit), tag=ref, home=str(tmp_path)).execute(
        context={}
    )
    asset = Asset(uri=f"oci://{registry.host}/{repo}")
    events = OutletEventAccessors()
    out = KitPushOperator(
        task_id="push",
        reference=ref,
        kit_registry_conn_id="reg",
        home=str(tmp_path),
        outlets=[asset],
        asset_alias=None,
    ).execute(context={"outlet_events": events})
    assert events[asset].extra == {"reference": ref, "digest": out["digest"], "size": out["size"]}


def test_templates_render_run_ids_into_valid_tags(echo_kit: Path) -> None:
    op = KitPackOperator(
        task_id="pack", context_dir=str(echo_kit), tag="localhost/m:{{ run_id | oci_tag }}"
    )
    op.render_template_fields(context={"run_id": "manual__2026-01-02T03:04:05.6+00:00"})
    assert op.tag == "localhost/m:manual__2026-01-02T03-04-05.6-00-00"


def test_invalid_kitfile_fails_without_retry(tmp_path: Path) -> None:
    (tmp_path / "Kitfile").write_text("manifestVersion: 1.0.0\nmodel: {path: missing}\nbogus: 1\n")
    op = KitPackOperator(task_id="pack", context_dir=str(tmp_path), home=str(tmp_path / "h"))
    with pytest.raises(AirflowFailException):
        op.execute(context={})


def test_secrets_never_in_xcom_rendered_fields_or_logs(
    registry_htpasswd: RunningRegistry,
    echo_kit: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reg = registry_htpasswd
    assert reg.password
    use_registry(monkeypatch, reg, "secure_reg")
    repo = unique_repo("airflow")
    ref = f"{reg.host}/{repo}:v1"
    caplog.set_level(logging.DEBUG)
    ops = [
        KitPackOperator(task_id="pack", context_dir=str(echo_kit), tag=ref, home=str(tmp_path)),
        KitPushOperator(
            task_id="push", reference=ref, kit_registry_conn_id="secure_reg", home=str(tmp_path)
        ),
        KitPullOperator(
            task_id="pull",
            reference=ref,
            kit_registry_conn_id="secure_reg",
            home=str(tmp_path / "other"),
        ),
    ]
    results = []
    for op in ops:
        op.render_template_fields(context={"run_id": "r1"})
        results.append(op.execute(context={"outlet_events": OutletEventAccessors()}))
        rendered = {f: getattr(op, f) for f in op.template_fields}
        assert reg.password not in json.dumps(rendered, default=str)
    assert results[2]["digest"] == results[0]["digest"]
    assert reg.password not in json.dumps(results)
    logs = caplog.text + "".join(capsys.readouterr())
    assert "Pushed" in logs and "Pulled" in logs  # the operators did log (through structlog)
    assert reg.password not in logs


def test_tls_registry_through_the_connections_ca_bundle(
    registry_tls: RunningRegistry, echo_kit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert registry_tls.ca_file is not None and not registry_tls.plain_http
    monkeypatch.setenv(
        "AIRFLOW_CONN_TLS_REG",
        json.dumps(
            {
                "conn_type": "kitops_registry",
                "host": registry_tls.host,
                "extra": {"extra__kitops_registry__ca_bundle": str(registry_tls.ca_file)},
            }
        ),
    )
    repo = unique_repo("airflow-tls")
    packed = KitPackOperator(
        task_id="pack",
        context_dir=str(echo_kit),
        tag=f"{repo}:v1",
        home=str(tmp_path),
        kit_registry_conn_id="tls_reg",
    ).execute(context={})
    assert packed["reference"] == f"{registry_tls.host}/{repo}:v1"
    pushed = KitPushOperator(
        task_id="push",
        reference=packed["reference"],
        home=str(tmp_path),
        kit_registry_conn_id="tls_reg",
    ).execute(context={"outlet_events": OutletEventAccessors()})
    assert pushed["digest"] == packed["digest"]
