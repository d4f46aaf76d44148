"""The state machine's pure decisions: every arrow of the README's diagram is a row of the table, and
the supersede rule on recorded objects."""

import re
from pathlib import Path

import pytest

from modelops_operator import machine
from modelops_operator.machine import Attempt, next_phase, superseded

README = Path(__file__).resolve().parents[2] / "README.md"


def diagram_rows() -> list[tuple[str, str, str]]:
    text = README.read_text()
    block = text[text.index("stateDiagram-v2"):]
    block = block[:block.index("```")]
    rows = re.findall(r"^\s+(\[\*\]|\w+) --> (\w+): (\w+)\s*$", block, flags=re.M)
    assert len(rows) == len(block.strip().splitlines()) - 1, "a diagram line is not `A --> B: Event`"
    return [("" if a == "[*]" else a, b, event) for a, b, event in rows]


@pytest.mark.parametrize("phase,want,event", diagram_rows())
def test_each_arrow_of_the_readme_diagram_is_what_the_machine_does(phase, want, event):
    has_last_good = want != "Failed"
    assert next_phase(phase, event, has_last_good) == want


def test_every_row_of_the_table_is_drawn_in_the_readme():
    drawn = {(a, e) for a, _, e in diagram_rows()}
    assert set(machine.TRANSITIONS) <= drawn
    assert {e for _, e in drawn} >= set(machine.ANY_PHASE)


def test_an_attempt_that_ends_badly_settles_by_whether_a_good_version_serves():
    assert next_phase("Verifying", "VerificationFailed", True) == "RolledBack"
    assert next_phase("Verifying", "VerificationFailed", False) == "Failed"
    assert next_phase("Ready", "VersionNotFound", True) == "RolledBack"


def test_an_event_a_phase_does_not_know_is_an_error():
    with pytest.raises(machine.IllegalTransition, match="Ready.*Available"):
        next_phase("Ready", "Available", True)


def obj(uid="u1", generation=3, alias=None, deleting=False):
    meta = {"uid": uid, "generation": generation, "annotations": {}}
    if alias:
        meta["annotations"][machine.ALIAS_VERSION_ANNOTATION] = alias
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": meta}


ATTEMPT = Attempt("u1", 3, "7", alias=True, alias_seen="6")


@pytest.mark.parametrize("latest,why", [
    (obj(), None),
    (obj(alias="6"), None),            # the poller has not caught up: the reconcile resolved 7 itself
    (obj(alias="7"), None),            # the poller caught up with this attempt
    (obj(alias="8"), "alias moved"),
    (obj(generation=4), "spec changed"),
    (obj(uid="u2"), "created again"),
    (obj(deleting=True), "being deleted"),
    (None, "deleted"),
])
def test_superseded_names_what_moved_on(latest, why):
    got = superseded(ATTEMPT, latest)
    assert (got is None) if why is None else (why in got), got


def test_a_pinned_version_ignores_the_alias_annotation():
    pinned = Attempt("u1", 3, "7")
    assert superseded(pinned, obj(alias="8")) is None


def test_a_new_attempt_resets_the_step_conditions_and_ready_to_unknown():
    changes = {c[0]: c for c in machine.attempt_started("7", "6")}
    assert all(changes[t][1] is None and changes[t][2] == "Pending" for t in machine.STEP_CONDITIONS)
    assert changes["Ready"][1] is None and "version 6 keeps serving" in changes["Ready"][3]
    assert changes["RolledBack"][1] is False


def test_history_keeps_one_entry_per_attempt_newest_last_and_at_most_the_limit():
    from modelops_operator.machine import with_history_entry

    history = None
    for i in range(4):
        attempt = {"key": f"g{i}-v{i}", "startedAt": 1_800_000_000 + i}
        analysis = {"attempt": attempt["key"], "verdict": "Pass", "reason": "ReplayAgreed"}
        history = with_history_entry(history, attempt, analysis, {"version": str(i), "phase": "Ready",
                                                                  "reason": "Ready"}, limit=3, now=1_800_000_100)
    assert [h["version"] for h in history] == ["1", "2", "3"]
    assert history[-1] == {"version": "3", "phase": "Ready", "reason": "Ready", "attempt": "g3-v3", "verdict": "Pass",
                           "verdictReason": "ReplayAgreed", "startedAt": "2027-01-15T08:00:03Z",
                           "finishedAt": "2027-01-15T08:01:40Z"}
    # held, then promoted and Ready: the same attempt's entry is replaced, not repeated
    held = with_history_entry(history, {"key": "g4-v4"}, None, {"version": "4", "phase": "Held"}, limit=3)
    ready = with_history_entry(held, {"key": "g4-v4"}, {"attempt": "g4-v4", "verdict": "Promoted"},
                               {"version": "4", "phase": "Ready"}, limit=3)
    assert [(h["version"], h["phase"]) for h in ready] == [("2", "Ready"), ("3", "Ready"), ("4", "Ready")]
    assert ready[-1]["verdict"] == "Promoted"
    # another attempt's analysis is not this attempt's verdict
    other = with_history_entry(None, {"key": "g5-v5"}, {"attempt": "g4-v4", "verdict": "Fail"},
                               {"version": "5", "phase": "RolledBack"}, limit=3)
    assert "verdict" not in other[-1]
