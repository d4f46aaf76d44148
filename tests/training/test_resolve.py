import pytest

from modelops_training.errors import InvalidModelUriError
from modelops_training.resolve import ModelRef


@pytest.mark.parametrize(
    "uri, ref",
    [
        ("models:/bc/3", ModelRef("bc", "3")),
        ("models:/my-model@champion", ModelRef("my-model", alias="champion")),
    ],
)
def test_registry_uris_parse(uri, ref):
    assert ModelRef.parse(uri) == ref


@pytest.mark.parametrize("uri", ["bc", "models:/bc", "runs:/abc/model", "models:/bc/latest", "models:/bc@"])
def test_anything_else_is_refused_with_the_expected_forms(uri):
    with pytest.raises(InvalidModelUriError, match="models:/NAME/VERSION or models:/NAME@ALIAS"):
        ModelRef.parse(uri)
