"""Version management: version.txt is the one place the version lives."""

import pathlib


def current():
    return (pathlib.Path(__file__).resolve().parents[1] / "version.txt").read_text().strip()
