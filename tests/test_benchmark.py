"""benchmarks/throughput.py: the tokens it counts are those of the batches the pipeline really yields."""
import os
import re
import sys

import numpy as np
import pytest

from conftest import PROJECT_DIR

sys.path.insert(0, os.path.join(PROJECT_DIR, "benchmarks"))
import throughput  # noqa: E402
from fine_tuning import TrainingBatches, pad  # noqa: E402


def test_counted_tokens_match_the_batches_tf_data_yields_across_epochs():
    lengths = list(np.random.default_rng(0).integers(3, 40, size=50))
    make_batch = lambda indices: ((pad([np.ones(lengths[i], np.int64) for i in indices]),), )  # noqa: E731
    signature = (throughput.tf.TensorSpec((None, None), throughput.tf.int64),),
    for bucket in (False, True):
        dataset = TrainingBatches(lengths, make_batch, signature, 8, seed=3, bucket=bucket).dataset().repeat()
        yielded = [(int(np.count_nonzero(ids)), ids.size, ids.shape[1])
                   for ((ids,),) in dataset.take(17).as_numpy_iterator()]  # 17 steps: past one epoch of 7
        batches = throughput.step_batches(lengths, 8, 3, bucket, 17)
        assert throughput.token_counts(batches, lengths, 1) == yielded


def test_widths_round_up_to_the_multiple():
    assert [width for _, _, width in throughput.token_counts([[0, 1], [2]], [5, 9, 16], 8)] == [16, 16]


def test_bucketing_keeps_padding_of_the_bundled_reviews_under_five_percent():
    import sentiment
    from classification_data import read_examples
    from tokenizer import OurTokenizer, load_vocab

    examples = read_examples(os.path.join(sentiment.SETTINGS["data_dir"], "train.tsv"))
    encoded = sentiment.encode_texts(OurTokenizer(load_vocab()), [example.texts for example in examples], 100,
                                     "train.tsv")
    lengths = [len(token_ids) for token_ids, _ in encoded]
    for bucket, bound in ((False, lambda share: share > 0.3), (True, lambda share: share < 0.05)):
        real, padded, _ = zip(*throughput.token_counts(throughput.step_batches(lengths, 32, 42, bucket, 94), lengths, 1))
        assert bound(1 - sum(real) / sum(padded))


def test_time_to_accuracy_reads_the_scripts_epoch_lines_and_finds_the_first_epoch_at_the_target():
    import time_to_accuracy

    output = ("epoch 1: loss 0.6931, dev accuracy 0.7000 (best 0.7000, saved), 31.4 s, 5397 tokens/s, 0.9% padding\n"
              "dev precision 0.5000, recall 0.2500\n"
              "epoch 2: loss 0.2130, dev f1 0.8420 (best 0.8420, saved), 30.0 s, 5400 tokens/s, 36.5% padding\n"
              "epoch 3: loss 0.1000, dev accuracy 0.8300 (best 0.8420), 29.0 s, 5500 tokens/s, 1.0% padding\n")
    epochs = time_to_accuracy.EPOCH_LINE.findall(output)
    assert [(int(epoch), float(metric), float(seconds)) for epoch, _, metric, seconds, _, _ in epochs] == [
        (1, 0.70, 31.4), (2, 0.842, 30.0), (3, 0.83, 29.0)]
    run = {"epochs": [{"epoch": int(e), "metric": float(m), "seconds": float(s)} for e, _, m, s, _, _ in epochs]}
    assert time_to_accuracy.time_to_target(run, 0.8) == (2, 61.4)
    assert time_to_accuracy.time_to_target(run, 0.9) == (None, None)


def test_time_to_accuracy_runs_each_task_with_the_flags_and_target_given(monkeypatch, capsys):
    import time_to_accuracy

    commands = []

    def fake_run(command, **kwargs):  # the script's own process, as far as time_to_accuracy can tell
        commands.append(command)
        stdout = ("epoch 1: loss 1.0, dev accuracy 0.4000 (best 0.4000, saved), 10.0 s, 100 tokens/s, 1.0% padding\n"
                  "epoch 2: loss 0.5, dev accuracy 0.6000 (best 0.6000, saved), 12.0 s, 100 tokens/s, 1.0% padding\n")
        return time_to_accuracy.subprocess.CompletedProcess(command, 0, stdout, "")

    monkeypatch.setattr(time_to_accuracy.subprocess, "run", fake_run)
    monkeypatch.setitem(time_to_accuracy.TASKS, "sentiment", dict(time_to_accuracy.TASKS["sentiment"]))
    time_to_accuracy.main(["--tasks", "sentiment", "--seeds", "7", "--bert-dir", "some/bert",
                           "--flags", "sentiment=--epochs 2 --lr 1e-4", "--target", "sentiment=0.55"])
    report = capsys.readouterr().out
    assert len(commands) == 2 and {os.path.basename(command[1]) for command in commands} == {"sentiment.py"}
    for command in commands:
        assert command[command.index("--bert-dir") + 1] == "some/bert"
        assert command[command.index("--seed") + 1] == "7" and command[command.index("--lr") + 1] == "1e-4"
        assert "5e-4" not in command  # the tiny BERT's learning rate is replaced, not appended to
    assert {"--bucket" in command for command in commands} == {True, False}
    assert "target 0.55 (sentiment.py --epochs 2 --lr 1e-4)" in report
    assert report.count("| 2 | 22 |") == 2  # both runs reach 0.55 at epoch 2, after 10 + 12 s


def test_bert_base_row_has_bert_base_shape_and_the_matmul_rate_is_measured():
    from bert_checkpoint import google_variable_shapes

    shapes = google_variable_shapes(throughput.BERT_BASE_CONFIG)
    parameters = sum(int(np.prod(shape)) for name, shape in shapes.items() if name.startswith("bert/"))
    assert parameters == 102_267_648  # Google's chinese_L-12_H-768_A-12
    assert 0 < throughput.matmul_flops_per_second(size=64, repeats=2) < 1e16


def test_condition_sets_need_the_event_type_and_the_blind_baseline_is_one_over_the_companies(tmp_path):
    import condition_learning

    for clause in condition_learning.CLAUSES.values():
        rows = condition_learning.condition_rows(clause, 300, seed=1)
        by_text = {}
        for _, text, event_type, entity in rows:
            clause, = [clause for clause in text.split("；") if entity in clause]
            assert text.count(entity) == 1 and event_type in clause
            by_text.setdefault(text, []).append(entity)
        assert any(len(set(entities)) > 1 for entities in by_text.values())  # the text alone does not tell
        path = tmp_path / "rows.csv"
        with open(path, "w", encoding="utf-8", newline="") as writer:
            condition_learning.csv.writer(writer).writerows(rows)
        companies = {text: len(entities) for text, entities in by_text.items()}
        expected = np.mean([1 / companies[text] for _, text, _, _ in rows])
        # The last text may be cut short by the row count; away from that, the baseline is 1/companies.
        assert abs(condition_learning.event_blind_accuracy(str(path)) - expected) < 1e-9
        assert 0.4 < expected < 0.6


def test_subject_parity_without_dropout_takes_the_same_steps_on_both_sides(tiny_checkpoint, tmp_path, monkeypatch,
                                                                            capsys):
    """The pairing's claim (benchmarks/README.md, "Step by step"): with dropout off the script's step is the loop's."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import subject_parity
    import synthetic
    from hub_layouts import hub_tensors_from_google, write_hub_folder

    hub = write_hub_folder(str(tmp_path / "hub"), tiny_checkpoint.config(),
                           hub_tensors_from_google(tiny_checkpoint.bert_dir))
    synthetic.write_subject(str(tmp_path), 160, seed=5)
    monkeypatch.setattr(sys, "argv", [
        "subject_parity.py", "--bert-dir", hub, "--ccks-dir", str(tmp_path), "--dev-rows", "20", "--train-rows", "100",
        "--steps", "4", "--batch-size", "8", "--lr", "1e-3", "--eval-every", "4", "--eval-rows", "20", "--head", "torch",
        "--no-dropout"])
    subject_parity.main()
    output = capsys.readouterr().out
    losses = [(float(script), float(loop)) for script, loop in
              re.findall(r"^step \d+: loss ([\d.]+) \(script\) ([\d.]+) \(loop\)", output, flags=re.MULTILINE)]
    assert len(losses) == 4 and losses[-1][1] < losses[0][1]  # it trained
    # with dropout on, the two part by 0.08 to 0.2 in these steps
    assert all(abs(script - loop) < 5e-3 for script, loop in losses), output
    (script_dev, loop_dev), = re.findall(r"script accuracy [\d.]+, loss ([\d.]+); loop accuracy [\d.]+, loss ([\d.]+)",
                                         output)
    assert abs(float(script_dev) - float(loop_dev)) < 5e-3, output
