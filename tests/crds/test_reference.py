import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "crd_reference", Path(__file__).parents[2] / "hack" / "crd_reference.py"
)
crd_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(crd_reference)


def test_readme_reference_is_generated_from_the_crd():
    text = crd_reference.README.read_text()
    assert crd_reference.updated(text) == text, "README is stale: run `python hack/crd_reference.py`"


def test_reference_lists_every_spec_field_with_its_validation():
    text = crd_reference.render()
    assert "`spec.model.alias`" in text and "`spec.autoscaling.maxReplicas`" in text
    assert "set exactly one of spec.model.version" in text
    assert "`none` \\| `dynamic-int8`" in text
