"""Issue 17, item 6: ``--storage postgresql://user@host/db`` exactly as docs/search.md writes it works with
the ``[postgres]`` extra (psycopg2-binary): SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg v3, so
trainlab names the installed driver; the error names the driver actually missing. (The server test,
test_search_postgres.py, runs a whole study through the documented form.)"""

from __future__ import annotations

import importlib.util

import pytest

from trainlab.errors import ConfigError
from trainlab.search._storage import open_storage, with_installed_driver

have_pg2 = importlib.util.find_spec("psycopg2") is not None
have_pg3 = importlib.util.find_spec("psycopg") is not None


@pytest.mark.skipif(not have_pg2, reason="psycopg2 (the [postgres] extra) is not installed")
def test_the_documented_url_reaches_the_server_with_the_installed_driver():
    """Before: 'the database driver is not installed (No module named psycopg); pip install psycopg2-binary'
    with psycopg2-binary installed. Now the URL gets as far as the (absent) server."""
    with pytest.raises(ConfigError) as e:
        open_storage("postgresql://user@127.0.0.1:1/db")
    assert "cannot open storage" in str(e.value) and "driver" not in str(e.value), str(e.value)
    want = "psycopg" if have_pg3 else "psycopg2"
    assert with_installed_driver("postgresql://user:pw@h:5/db") == f"postgresql+{want}://user:pw@h:5/db"
    assert with_installed_driver("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"  # as written
    assert with_installed_driver("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.skipif(have_pg3, reason="psycopg (v3) is installed here")
def test_a_url_naming_a_missing_driver_says_which():
    with pytest.raises(ConfigError, match=r"driver 'psycopg', which is not installed: pip install 'psycopg\[binary\]'"):
        open_storage("postgresql+psycopg://user@127.0.0.1:1/db")


def test_no_driver_at_all_names_both_and_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("psycopg", "psycopg2") else real(name, *a))
    with pytest.raises(ConfigError, match=r"neither psycopg nor psycopg2.*trainlab\[postgres\]"):
        open_storage("postgresql://user@127.0.0.1:1/db")


def test_the_recorded_storage_never_holds_the_password(tmp_path):
    """``tune --out DIR --storage postgresql://...`` writes DIR/storage.json for the lab's viewer: the server,
    never the password (in the URL's user part or its query); nothing for a storage that is not a server."""
    from trainlab.search._storage import record_storage, recorded_storage, server_url_without_password

    assert server_url_without_password("postgresql://u:pw@h:5/db?password=pw2&sslmode=require") == \
        "postgresql://u@h:5/db?sslmode=require"
    assert server_url_without_password("mysql+pymysql://u:pw@h/db") == "mysql+pymysql://u@h/db"
    for local in ("sqlite:///x.db", "journal:study.log", "memory", "not a url"):
        assert server_url_without_password(local) is None
        record_storage(tmp_path / "local", local, "s")
        assert not (tmp_path / "local").exists()
    record_storage(tmp_path / "pg", "postgresql://u:secret@h/db", "lr")
    assert "secret" not in (tmp_path / "pg" / "storage.json").read_text()
    assert recorded_storage(tmp_path / "pg") == ("postgresql://u@h/db", "lr")
    (tmp_path / "pg" / "storage.json").write_text('{"storage": "sqlite:////etc/x.db"}')
    with pytest.raises(ConfigError, match="names no database server"):
        recorded_storage(tmp_path / "pg")
    (tmp_path / "pg" / "storage.json").write_text("{half")
    with pytest.raises(ConfigError, match="not readable"):
        recorded_storage(tmp_path / "pg")
