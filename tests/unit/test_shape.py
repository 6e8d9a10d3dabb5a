"""The package's shape holds: a pure model, nothing done at import, the same messages as before."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hospital_stream.model import HospitalConfig
from hospital_stream.tools.digest import message_digest

#: every message of days 0..40 of a small hospital, digested before the package was cut into
#: layers (flat-layout commit 3ac413c): a change to what the pipeline sends changes it
GOLDEN_DIGEST = "47b7cf5386f8517b5709f93ee3e49065"
#: the default hospital's days 0..40 (1,800 beds, 5 M people; ``scripts/message_digest.py``)
DEFAULT_HOSPITAL_DIGEST = "d735309f09d13c2891fab3c7df68bca6"


def _in_a_fresh_interpreter(code: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_the_model_loads_neither_faust_nor_psycopg() -> None:
    loaded = _in_a_fresh_interpreter(
        "import json, sys; import hospital_stream.sim, hospital_stream.schema; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('faust', 'mode', 'aiokafka', 'psycopg', 'psycopg_pool'))))"
    )
    assert loaded == []


def test_the_dashboard_panels_load_neither_the_app_nor_a_database_driver() -> None:
    loaded = _in_a_fresh_interpreter(
        "import json, sys; import hospital_stream.web.panels, hospital_stream.web.page; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiokafka', 'psycopg', 'psycopg_pool') or m in ('hospital_stream.app', "
        "'hospital_stream.agents', 'hospital_stream.services', 'hospital_stream.tables', "
        "'hospital_stream.topics'))))"
    )
    assert loaded == []


def test_importing_the_agents_changes_no_process_setting_and_opens_no_connection() -> None:
    seen = _in_a_fresh_interpreter(
        "import json, os, sys, threading\n"
        "def sockets():\n"
        "    found = []\n"
        "    for fd in os.listdir('/proc/self/fd'):\n"
        "        try:\n"
        "            if os.readlink(f'/proc/self/fd/{fd}').startswith('socket:'):\n"
        "                found.append(fd)\n"
        "        except OSError:\n"
        "            pass  # the listing's own descriptor, closed since\n"
        "    return sorted(found)\n"
        "before = (sys.getswitchinterval(), sockets(), threading.active_count())\n"
        "import hospital_stream.agents, hospital_stream.web.dashboard, hospital_stream.web.dashboard_views\n"
        "import hospital_stream.web.views\n"
        "after = (sys.getswitchinterval(), sockets(), threading.active_count())\n"
        "from hospital_stream import services\n"
        "planned = services.hospital.cache_info().currsize\n"
        "print(json.dumps({'before': before, 'after': after, 'planned': planned}))\n"
    )
    assert seen["after"] == seen["before"]
    assert seen["planned"] == 0, "the hospital's wards were planned at import"


def test_the_same_seed_sends_the_same_messages_as_before_the_layers() -> None:
    config = HospitalConfig(seed=7, beds=120, population=40_000)
    assert message_digest(config, 41) == GOLDEN_DIGEST


def test_the_digest_sees_a_changed_seed() -> None:
    assert message_digest(HospitalConfig(seed=8, beds=120, population=40_000), 3) != message_digest(
        HospitalConfig(seed=7, beds=120, population=40_000), 3
    )


@pytest.mark.slow
def test_the_default_hospital_sends_the_same_messages_as_before_the_layers() -> None:
    assert message_digest(HospitalConfig(), 41) == DEFAULT_HOSPITAL_DIGEST
