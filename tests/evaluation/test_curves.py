import json

from napari_segflow.evaluation.curves import read_metrics


def test_a_resumed_runs_repeated_steps_replace_the_abandoned_ones(tmp_path):
    lines = [{"kind": "train", "global_step": s, "loss": 1.0} for s in (1, 2, 3)]
    lines.append({"kind": "validation", "global_step": 2, "val_error": 0.5})
    # saved at step 2, stopped after 3, resumed: steps 3 and 4 again
    lines += [{"kind": "train", "global_step": s, "loss": 0.5} for s in (3, 4)]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = read_metrics(path)
    assert [(r["kind"], r["global_step"]) for r in records] == [
        ("train", 1), ("train", 2), ("validation", 2), ("train", 3), ("train", 4)
    ]
    assert records[3]["loss"] == 0.5
