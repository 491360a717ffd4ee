"""The package ships its type information: py.typed (PEP 561) inside npvae, listed as package data."""

from __future__ import annotations

import configparser
import importlib.resources
from pathlib import Path


def test_py_typed_marker_is_in_the_package_and_its_package_data():
    assert (importlib.resources.files("npvae") / "py.typed").is_file()
    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert "py.typed" in config["options.package_data"]["npvae"]
