"""What jinit 0.1.0 wrote still loads: `configs_0.1.0.json` holds the config, repr and pickle of every initializer
of the 0.1.0 test table (and a few more), written by that release. Never rewrite the file; add one per release."""

import base64
import json
import pathlib
import pickle

import pytest

import jinit

ENTRIES = json.loads(pathlib.Path(__file__).with_name("configs_0.1.0.json").read_text())["entries"]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["repr"][:60] for e in ENTRIES])
def test_configs_and_pickles_of_0_1_0_load(entry):
    init = jinit.deserialize(entry["config"])
    assert repr(init) == entry["repr"]
    assert jinit.serialize(init) == entry["config"]  # the format is unchanged
    unpickled = pickle.loads(base64.b64decode(entry["pickle"]))
    assert unpickled == init and hash(unpickled) == hash(init) and type(unpickled) is type(init)


def test_the_file_covers_every_factory_of_0_1_0():
    names = {e["config"]["class_name"] for e in ENTRIES}
    assert len(ENTRIES) == 56 and len(names) == 23
    assert names <= set(jinit.registered_names())
