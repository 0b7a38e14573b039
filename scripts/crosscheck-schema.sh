#!/usr/bin/env bash
# Cross-checks incidentops' validation against a second JSON Schema implementation (Python's
# `jsonschema`, draft 2020-12) on the example files and the invalid samples: both must accept
# and reject the same files. Installs jsonschema and PyYAML into a virtualenv under target/.
#
#   scripts/crosscheck-schema.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/crosscheck-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'jsonschema>=4.18' 'PyYAML>=6'
fi
cargo build --quiet --locked
"$venv/bin/python" - <<'PY'
import json, os, pathlib, shutil, subprocess, sys, tempfile
import yaml, jsonschema

schema = json.load(open("schema/incident.schema.json"))
validator = jsonschema.Draft202012Validator(schema)
binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "incidentops")

class StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys silently; YAML says keys are unique."""
    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        if len(keys) != len(set(map(str, keys))):
            raise yaml.constructor.ConstructorError(None, None, "duplicate key", node.start_mark)
        return super().construct_mapping(node, deep)

def python_verdict(path):
    """True/False, or None when PyYAML cannot read the file (a YAML-level problem)."""
    try:
        docs = [d for d in yaml.load_all(open(path, encoding="utf-8-sig"), Loader=StrictLoader) if d is not None]
    except Exception:
        return None
    return all(validator.is_valid(d) for d in docs)

def incidentops_verdict(path):
    with tempfile.TemporaryDirectory() as repo:
        os.mkdir(os.path.join(repo, "incidents"))
        shutil.copy(path, os.path.join(repo, "incidents", os.path.basename(path)))
        run = subprocess.run([binary, "validate", "--repo", repo], capture_output=True)
        return run.returncode == 0

files = sorted(pathlib.Path("examples").rglob("incidents/**/*.yaml")) + sorted(pathlib.Path("tests/fixtures/valid").glob("*.yaml")) + sorted(pathlib.Path("tests/fixtures/invalid").glob("*.yaml"))
agree = disagree = skipped = 0
for path in files:
    ours, theirs = incidentops_verdict(path), python_verdict(path)
    if theirs is None:
        skipped += 1
        print(f"skip   {path}: not readable by PyYAML (a YAML-level error; incidentops: {'valid' if ours else 'invalid'})")
    elif ours == theirs:
        agree += 1
        print(f"agree  {path}: {'valid' if ours else 'invalid'}")
    else:
        disagree += 1
        print(f"DIFFER {path}: incidentops {'valid' if ours else 'invalid'}, python-jsonschema {'valid' if theirs else 'invalid'}")
print(f"{agree} agree, {disagree} differ, {skipped} skipped")
sys.exit(1 if disagree else 0)
PY
