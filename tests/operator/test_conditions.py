import pytest

from modelops_operator.conditions import get_condition, set_condition


def test_transition_time_moves_only_when_status_flips(monkeypatch):
    times = iter(["t1", "t2", "t3"])
    monkeypatch.setattr("modelops_operator.conditions.now", lambda: next(times))
    conds = set_condition(None, "Available", True, "RolloutComplete", "ok")
    conds = set_condition(conds, "Available", True, "RolloutComplete", "still ok")
    assert get_condition(conds, "Available")["lastTransitionTime"] == "t1"
    assert get_condition(conds, "Available")["message"] == "still ok"
    conds = set_condition(conds, "Available", False, "RolloutFailed", "broken")
    assert get_condition(conds, "Available")["lastTransitionTime"] == "t3"


def test_one_entry_per_type_in_a_stable_order():
    conds = set_condition(None, "Degraded", False, "Healthy", "")
    conds = set_condition(conds, "Exported", True, "ParityVerified", "")
    conds = set_condition(conds, "Degraded", True, "RolloutFailed", "")
    assert [c["type"] for c in conds] == ["Exported", "Degraded"]


def test_unknown_types_are_refused():
    with pytest.raises(ValueError):
        set_condition(None, "Happy", True, "", "")
