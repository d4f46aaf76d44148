import kopf

from modelops_operator.alias import ALIAS_VERSION_ANNOTATION
from modelops_operator.handlers import PREFIX


def test_a_moved_alias_changes_what_kopf_diffs_so_the_update_handler_runs():
    """kopf drops annotations under its storage prefix from the diffed essence; the alias annotation
    must not be one of them, or a moved alias would never reach the reconcile."""
    storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    body = kopf.Body({
        "metadata": {"name": "m", "annotations": {f"{PREFIX}/kopf-managed": "yes", ALIAS_VERSION_ANNOTATION: "2"}},
        "spec": {"model": {"name": "m", "alias": "champion"}},
    })
    essence = storage.build(body=body)
    assert essence["metadata"]["annotations"] == {ALIAS_VERSION_ANNOTATION: "2"}
