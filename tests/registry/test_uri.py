import pytest

from modelops_registry.uri import InvalidModelUri, ModelRef


@pytest.mark.parametrize(
    "uri, ref",
    [
        ("models:/bc/3", ModelRef("bc", "3")),
        ("models:/my-model@champion", ModelRef("my-model", alias="champion")),
        (" models:/bc/3/ ", ModelRef("bc", "3")),
    ],
)
def test_registry_uris_parse(uri, ref):
    assert ModelRef.parse(uri) == ref


@pytest.mark.parametrize("uri", ["bc", "models:/bc", "runs:/abc/model", "models:/bc/latest", "models:/bc@"])
def test_anything_else_is_refused_with_the_expected_forms(uri):
    with pytest.raises(InvalidModelUri, match="models:/NAME/VERSION or models:/NAME@ALIAS"):
        ModelRef.parse(uri)


def test_a_parsed_uri_prints_back_the_same():
    for uri in ("models:/bc/3", "models:/bc@champion"):
        assert ModelRef.parse(uri).uri == uri


def test_an_invalid_uri_is_also_a_value_error_for_generic_callers():
    with pytest.raises(ValueError):
        ModelRef.parse("nope")
