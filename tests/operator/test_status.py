from modelops_operator.status import status_ops


def test_the_first_op_tests_the_uid_so_a_recreated_object_is_never_written():
    ops = status_ops("uid-1", {"phase": "Ready"}, has_status=True)
    assert ops[0] == {"op": "test", "path": "/metadata/uid", "value": "uid-1"}
    assert ops[1:] == [{"op": "add", "path": "/status/phase", "value": "Ready"}]


def test_each_field_is_replaced_whole_and_null_removes_it():
    ops = status_ops("u", {"attempt": {"key": "g2-v2"}, "url": None}, has_status=True)
    assert ops[1:] == [{"op": "add", "path": "/status/attempt", "value": {"key": "g2-v2"}},
                       {"op": "add", "path": "/status/url", "value": None}]


def test_without_a_status_the_whole_status_is_added_without_nulls():
    ops = status_ops("u", {"phase": "Pending", "url": None}, has_status=False)
    assert ops[1:] == [{"op": "add", "path": "/status", "value": {"phase": "Pending"}}]
