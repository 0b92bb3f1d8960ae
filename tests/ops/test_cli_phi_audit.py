"""Issue 16 defect 7: CLI reads of PHI are audited like the API's (actor: the OS user)."""

from __future__ import annotations

import getpass
import json

import yaml

from bridge.cli import main
from bridge.testing import engine_from_dict, plugin_manager
from tests.core.helpers import encounter_message

CONFIG = {"store": "sqlite:///var/bridge.db",
          "channels": {"visits": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["out"]}]}},
          "destinations": {"out": {"url": "file://outbox", "format": "bridge"}}}


def _site(tmp_path):
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    engine = engine_from_dict(CONFIG, tmp_path, plugin_manager())
    ids = [engine.submit("visits", encounter_message(n, patient=f"MRN-{n}")).message_id for n in (1, 2)]
    engine.drain()
    return engine.store, ids, ["-c", str(path)]


def test_bridge_show_records_a_message_view_by_the_os_user(tmp_path, capsys):
    store, ids, config = _site(tmp_path)
    assert not store.search_audit(action="message.view")
    assert main(["show", str(ids[0]), *config]) == 0
    assert main(["show", str(ids[1]), "--json", *config]) == 0
    assert "MRN-2" in capsys.readouterr().out  # the view did show PHI
    views = store.search_audit(action="message.view")
    assert {(e.actor, e.target) for e in views} == {(f"cli:{getpass.getuser()}", f"message:{ids[0]}"),
                                                    (f"cli:{getpass.getuser()}", f"message:{ids[1]}")}
    assert all(e.detail["via"] == "cli" for e in views)
    assert store.verify_audit() is None


def test_bridge_messages_by_patient_records_the_search_and_a_listing_records_what_it_showed(tmp_path, capsys):
    store, ids, config = _site(tmp_path)
    assert main(["messages", "--key", "patient_id=MRN-2", "--json", *config]) == 0
    assert [m["id"] for m in json.loads(capsys.readouterr().out)] == [ids[1]]
    (search,) = store.search_audit(action="message.search")
    assert search.actor == f"cli:{getpass.getuser()}" and search.detail["keys"] == {"patient_id": "MRN-2"}
    assert search.detail["message_ids"] == [ids[1]] and search.detail["results"] == 1
    assert main(["messages", *config]) == 0
    (listing,) = store.search_audit(action="message.list")
    assert sorted(listing.detail["message_ids"]) == sorted(ids)
    assert main(["messages", "--key", "control_id=none-such", *config]) == 0  # nothing shown: nothing to record
    assert len(store.search_audit(action="message.list")) == 1 and len(store.search_audit(action="message.search")) == 1
