"""A pure refactor of how builds are described changes none of what they are built from.

tests/fixtures/spec-hashes.json was recorded (tests/spec_hashes.py --write) before the recipe
became variants (issue #29). PHP records its configure command in the binary, so a changed
script text would mean changed modules: every build's script, configure and patch tracking,
series and remote-cache key must still hash the same. A deliberate change to a build records
the fixture again, in the same commit, saying why.
"""
import json

import pytest

import spec_hashes


@pytest.fixture(scope="module")
def recorded_and_now():
    return json.loads(spec_hashes.FIXTURE.read_text()), spec_hashes.current()


def test_every_build_of_the_graph_is_recorded(recorded_and_now):
    recorded, now = recorded_and_now
    assert sorted(now["builds"]) == sorted(recorded["builds"])


@pytest.mark.parametrize("what", ["script", "configure_config", "series", "patch_config",
                                  "regenerates_configure"])
def test_what_each_build_is_built_from_is_unchanged(recorded_and_now, what):
    recorded, now = recorded_and_now
    changed = [b for b in recorded["builds"] if now["builds"][b][what] != recorded["builds"][b][what]]
    assert changed == [], f"{what} changed for {changed}"


def test_the_remote_cache_keys_are_unchanged(recorded_and_now):
    recorded, now = recorded_and_now
    same_autoconf = now["context"]["autoconf"] == recorded["context"]["autoconf"]
    changed = [b for b, hashes in recorded["builds"].items()
               if (same_autoconf or not hashes["regenerates_configure"])
               and now["builds"][b]["cache_key"] != hashes["cache_key"]]
    assert changed == []
