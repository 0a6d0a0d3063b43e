"""`GET /templates:export` and `POST /templates:import`: the CLI's YAML over the admin API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pureinfer.gateway.app import create_app
from tests.support.gateway import ADMIN, gateway_settings, tpl


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = gateway_settings(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}")
    with TestClient(create_app(settings, start_background=False), headers=ADMIN) as c:
        yield c


def test_export_then_import_round_trips(client: TestClient) -> None:
    assert client.post("/templates", json=tpl(template_name="yaml_one")).status_code == 201
    assert client.put("/templates/yaml_one", json={"system_prompt": "Two\nlines."}).status_code == 200
    latest = client.get("/templates:export")
    assert latest.headers["content-type"].startswith("application/yaml")
    assert "attachment" in latest.headers["content-disposition"]
    assert latest.text.count("template_name: yaml_one") == 1 and "system_prompt: |-\n" in latest.text
    every = client.get("/templates:export", params={"all_versions": "true"}).text
    assert every.count("template_name: yaml_one") == 2
    assert client.post("/templates:import", json={"yaml": latest.text}).json() == \
        {"created": 0, "new_versions": 0, "unchanged": 1}
    renamed = latest.text.replace("yaml_one", "yaml_two")
    assert client.post("/templates:import", json={"yaml": renamed}).json() == \
        {"created": 1, "new_versions": 0, "unchanged": 0}
    assert client.get("/templates/yaml_two").json()["versions"][0]["system_prompt"] == "Two\nlines."


@pytest.mark.parametrize("text", ["templates: 5", "- just a string", "templates: [{template_name: x}]", "a: [b"])
def test_bad_yaml_is_a_400_naming_the_field(client: TestClient, text: str) -> None:
    r = client.post("/templates:import", json={"yaml": text})
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_PAYLOAD" and r.json()["details"]["fields"][0]["field"] == "yaml"


def test_the_yaml_routes_are_for_admins(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}")
    with TestClient(create_app(settings, start_background=False)) as c:
        assert c.get("/templates:export").status_code == 401
        assert c.post("/templates:import", json={"yaml": "templates: []"}).status_code == 401
