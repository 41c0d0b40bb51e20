import numpy as np

from napari_segflow.evaluation.accuracy import accuracy_table, evaluate
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.training.davis import find_sequences
from napari_segflow.training.online import FinetuneConfig


def test_ablations_and_peers_are_scored_on_the_same_frames(tiny_config, davis_folder):
    sequences = find_sequences(davis_folder, names=["alpha", "beta"])
    results = evaluate(SegFlowNet(tiny_config), sequences, methods=("full", "-ol", "-prior", "dis"),
                       finetune_config=FinetuneConfig(steps=2, time_budget=None, long_side=128), long_side=128)
    by_method = {r.method: r for r in results}
    for result in results:
        assert set(result.j) == {"alpha", "beta"} and all(0 <= v <= 1 for v in result.j.values())
    assert by_method["-ol"].mean(by_method["-ol"].finetune_seconds) == 0
    assert by_method["full"].mean(by_method["full"].finetune_seconds) > 0
    # the synthetic objects move: carrying the first mask by DIS beats an untrained network
    assert by_method["dis"].jf > by_method["full"].jf
    assert set(by_method["full"].attention_spearman) == {"alpha", "beta"}
    assert not by_method["dis"].attention_spearman
    table = accuracy_table(results)
    assert "| SegFlow -prior |" in table and "Full method J&F / DIS peer J&F" in table
    assert "Spearman correlation" in table
    assert np.isfinite(by_method["full"].jf)
