"""ConfigRecord (automl/core/record.py): the typed config record and its state-file form."""
from automl.core.record import ConfigRecord, Kind, State

ENTRY = {"config_id": "config_003", "kind": "reward", "cycle": 2, "state": "complete",
         "params": {"learning_rate": 0.001}, "reward_weights": {"alive": 1.0, "pole_angle": -0.5},
         "seeds": [{"seed": 0, "state": "complete", "episode_reward_mean": 210.5}],
         "score": {"mean": 210.5, "iqm": 210.5, "ci95": [210.5, 210.5], "n_seeds": 1}}


def test_state_file_entry_round_trips_with_the_same_keys_in_the_same_order():
    record = ConfigRecord.from_dict(ENTRY)
    assert record.to_dict() == ENTRY and list(record.to_dict()) == list(ENTRY)
    assert record.tuning and record.kind == Kind.REWARD and record.state in State.SCORED


def test_optional_fields_appear_only_when_set():
    rejected = ConfigRecord("config_004", Kind.HP, 1, State.REJECTED, {"learning_rate": 0.5}, reason="constraint: x")
    assert rejected.to_dict() == {"config_id": "config_004", "kind": "hp", "cycle": 1, "state": "rejected",
                                  "params": {"learning_rate": 0.5}, "reward_weights": {}, "seeds": [],
                                  "reason": "constraint: x"}
    held = ConfigRecord.from_dict({"config_id": "config_001", "kind": "heldout", "heldout_of": "config_001",
                                   "state": "running", "params": {}, "cycle": 0})
    assert not held.tuning and held.heldout_of == "config_001" and "score" not in held.to_dict()


def test_vector_names_weights_as_the_record_study_does_and_metric_reads_the_score():
    record = ConfigRecord.from_dict({**ENTRY, "seeds": [
        {"seed": 0, "state": "complete", "episode_reward_mean": 200.0, "success_rate": 0.5},
        {"seed": 1, "state": "failed", "reason": "nan"},
        {"seed": 2, "state": "complete", "episode_reward_mean": 100.0, "success_rate": float("nan")}],
        "score": {"mean": 50.0, "iqm": 120.0, "n_seeds": 3}}, number=7)
    assert record.number == 7 and "number" not in record.to_dict()
    assert record.vector == {"learning_rate": 0.001, "reward.alive": 1.0, "reward.pole_angle": -0.5}
    assert record.seed_values("episode_reward_mean") == [200.0, 100.0]   # the failed seed has no value
    assert record.metric("episode_reward_mean") == 50.0                   # the run's score: failed = worst
    assert record.metric("iqm") == 120.0
    assert record.metric("success_rate") == 0.5                           # NaN stays out of the mean
    assert ConfigRecord("c", Kind.HP, 0, State.FAILED, {}).metric("iqm") is None


def test_kinds_and_states_are_enums_written_in_their_yaml_spelling():
    import json

    import yaml

    from automl.run.state import dump_yaml

    record = ConfigRecord.from_dict(ENTRY)
    assert record.kind is Kind.REWARD and record.state is State.COMPLETE  # read back as members
    entry = ConfigRecord("config_005", Kind.JOINT, 1, State.PRUNED, {}).to_dict()
    for text in (yaml.safe_dump(entry), dump_yaml(entry)):  # plain strings, no Python tags
        assert "kind: joint" in text and "state: pruned" in text and "!!" not in text
        assert yaml.safe_load(text) == {**entry, "kind": "joint", "state": "pruned"}
    assert json.loads(json.dumps(entry))["kind"] == "joint" and f"{Kind.HELDOUT}_seed0" == "heldout_seed0"
    assert Kind.TUNING == (Kind.HP, Kind.REWARD, Kind.JOINT) and State.SCORED == ("complete", "failed")
    # a state file written by another version keeps a kind or state it does not know, as text
    odd = ConfigRecord.from_dict({**ENTRY, "kind": "ladder", "state": "waiting"})
    assert (odd.kind, odd.state, odd.tuning) == ("ladder", "waiting", False)
