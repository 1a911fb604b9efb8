"""Writes tests/fixtures/pyyaml_meta.json: meta.yaml texts exactly as MLflow writes them.

MLflow's file store dumps meta.yaml with PyYAML (`mlflow/utils/yaml_utils.py` write_yaml:
safe_dump, default_flow_style=False, allow_unicode=True, sort_keys=True). The Rust reader
(serde_norway, see src/yaml.rs) must understand every scalar style PyYAML picks (plain,
single-quoted, double-quoted, wrapped over several lines), so this records PyYAML's output for
awkward experiment names together with the value each must decode to.

Run with any Python that has PyYAML (e.g. the MLflow venv):
    python scripts/make_yaml_fixtures.py
"""

import json
import pathlib

import yaml

NAMES = [
    "Default",
    'a"b',
    "a\\b",
    "a\\'b",
    "it's",
    "tab\tx",
    "nl\nx",
    "cr\rx",
    "multi\n\nblank lines\n",
    "\ttab start",
    "  \n  both  \n",
    "é ü 日本",
    "emoji 😀",
    "  lead",
    "trail  ",
    "sp ace: yes #no",
    "a: b",
    "-dash",
    "- item",
    "@at",
    "%pct",
    "!bang",
    "&anchor",
    "*alias",
    "? q",
    "{flow}",
    "[list]",
    "null",
    "~",
    "123",
    "0x1F",
    "1e3",
    "true",
    "yes",
    "",
    "x" * 500,
    "word " * 40,
    "long 'quoted' words " * 10,
    'key: "v" \'w\' ' * 8,
    "x" + " " * 100 + "y",
    "a\u2028b",
    # (not "a\x85b": PyYAML dumps NEL raw inside single quotes and reads it back as a
    # space, so MLflow itself cannot round-trip it; src/yaml.rs writes it escaped.)
    "a\x07b",
    "a\ufeffb",
    "\\" * 90 + " end",
]


def main():
    out = []
    for name in NAMES:
        meta = {
            "artifact_location": "file:///tmp/mlruns/1",
            "creation_time": 1795558091039,
            "effective_trace_archival_retention": None,
            "experiment_id": "1",
            "last_update_time": 1795558091039,
            "lifecycle_stage": "active",
            "name": name,
            "trace_location": None,
            "workspace": "default",
        }
        text = yaml.safe_dump(meta, default_flow_style=False, allow_unicode=True, sort_keys=True)
        assert yaml.safe_load(text)["name"] == name
        out.append({"name": name, "yaml": text})
    path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pyyaml_meta.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(out)} cases to {path}")


if __name__ == "__main__":
    main()
