"""The serving process's application factory (`rempart serve` runs it in each worker)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from rempart.api.app import create_app_from_env
from rempart.bootstrap import initialise
from rempart.config import load_settings


def test_a_serving_process_leaves_its_start_up_objects_out_of_collections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its application's objects, alive as long as the process, are frozen once built: a full
    collection then walks only what requests made since (it walked them all at every pause of
    180-275 ms before)."""
    home = tmp_path / "home"
    initialise(load_settings(home))
    monkeypatch.setenv("REMPART_HOME", str(home))
    monkeypatch.delenv("REMPART_DATABASE_URL", raising=False)
    gc.unfreeze()
    try:
        app = create_app_from_env()
        try:
            frozen = gc.get_freeze_count()
            assert frozen > 10_000  # the app and everything it imported, not a handful
            assert app.state.services.settings.home == home
            # What the collector still walks is what came after: far fewer objects.
            assert len(gc.get_objects()) < frozen / 2
        finally:
            app.state.services.close()
    finally:
        gc.unfreeze()
