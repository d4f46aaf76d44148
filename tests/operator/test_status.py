from modelops_operator.status import replacing


def test_keys_a_new_object_drops_are_nulled_so_the_merge_patch_replaces_it():
    old = {"key": "g1-v1", "startedAt": 1.0, "rolloutDeadline": 601.0, "exportedAt": 3.0}
    assert replacing(old, {"key": "g2-v2", "startedAt": 9.0}) == {
        "key": "g2-v2", "startedAt": 9.0, "rolloutDeadline": None, "exportedAt": None,
    }


def test_nested_objects_are_replaced_too_and_scalars_pass_through():
    old = {"uri": "a", "parity": {"passed": True, "max_abs_error": 0.1}}
    assert replacing(old, {"uri": "b", "parity": {"passed": False}}) == {
        "uri": "b", "parity": {"passed": False, "max_abs_error": None},
    }
    assert replacing(None, {"a": 1}) == {"a": 1}
    assert replacing({"a": 1}, "Ready") == "Ready"
