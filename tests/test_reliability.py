"""Bad input gets a clear error and exit status 2; interrupted, diverging or crashing runs lose nothing.

Driven through sentiment.py, whose training goes through the same shared `fine_tuning.train`
as the other two scripts.
"""
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

import bert_checkpoint
import relation_extraction
import sentiment
import subject_extraction
from fine_tuning import parse_flags, run
from synthetic import WRITERS, write_sentiment

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sentiment")
    write_sentiment(str(folder), 300, seed=2)
    return folder


def script_command(tiny_checkpoint, data_dir, output_dir, *extra):
    return [sys.executable, "sentiment.py", "--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(data_dir),
            "--output-dir", str(output_dir), "--lr", "1e-3", "--batch-size", "16", "--epochs", "3", *extra]


def run_main(argv, capsys, script=sentiment):
    with pytest.raises(SystemExit) as exit_info:
        run(script.main, argv)
    return exit_info.value.code, capsys.readouterr().err


# (script, flags, the error): every flag refuses values no run can use, alike in the three scripts.
BAD_FLAGS = [
    (sentiment, ["--lr", "0"], "--lr must be above 0, got 0"),
    (sentiment, ["--lr", "-1"], "--lr must be above 0, got -1"),
    (subject_extraction, ["--lr", "nan"], "--lr must be above 0, got nan"),
    (sentiment, ["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (relation_extraction, ["--batch-size", "-2"], "--batch-size must be at least 1, got -2"),
    (subject_extraction, ["--maxlen", "0"], "--maxlen must be at least 1, got 0"),
    (sentiment, ["--accumulate", "0"], "--accumulate must be at least 1, got 0"),
    (sentiment, ["--seed", "-1"], "--seed cannot be negative, got -1"),
    (relation_extraction, ["--min-lr", "-0.001"], "--min-lr cannot be negative, got -0.001"),
    (subject_extraction, ["--max-span", "-1"], "--max-span cannot be negative, got -1"),
    (subject_extraction, ["--warmup", "1.5"],
     "--warmup is a share of the training steps: it must lie between 0 and 1, got 1.5"),
    (relation_extraction, ["--warmup", "-0.1"],
     "--warmup is a share of the training steps: it must lie between 0 and 1, got -0.1"),
    (relation_extraction, ["--start-threshold", "1.5"],
     "--start-threshold is a probability: it must lie between 0 and 1, got 1.5"),
    (relation_extraction, ["--end-threshold", "0"],
     "--end-threshold is a probability: it must lie between 0 and 1, got 0"),
    (sentiment, ["--output-dir", "{file}"], "--output-dir {file} is a file, not a folder"),
    (relation_extraction, ["--output-dir", "{file}"], "--output-dir {file} is a file, not a folder"),
    (subject_extraction, ["--bert-dir", "{file}"], "--bert-dir {file} is a file, not a folder"),
    (sentiment, ["--data-dir", "{file}"], "--data-dir {file} is a file, not a folder"),
    (subject_extraction, ["--export", "{file}"], "--export {file} is a file, not a folder"),
    (sentiment, ["--train-file", "{folder}"], "--train-file {folder} is a folder, not a file"),
    (subject_extraction, ["--dev-file", "{missing}"], "--dev-file {missing} not found"),
    (sentiment, ["--test-file", "{folder}"], "--test-file {folder} is a folder, not a file"),
    (relation_extraction, ["--predict-file", "{missing}"], "--predict-file {missing} not found"),
    (relation_extraction, ["--schema-file", "{folder}"], "--schema-file {folder} is a folder, not a file"),
]


@pytest.mark.parametrize("script, flags, message", BAD_FLAGS,
                         ids=["%s %s" % (script.__name__, " ".join(flags)) for script, flags, _ in BAD_FLAGS])
def test_a_flag_that_makes_no_sense_is_refused_with_one_line_before_anything_is_loaded(
        script, flags, message, tmp_path, tiny_checkpoint, capsys):
    paths = dict(file=tmp_path / "a_file", folder=tmp_path / "a_folder", missing=tmp_path / "missing.txt")
    paths["file"].write_text("")
    paths["folder"].mkdir()
    status, err = run_main(["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(tmp_path / "out")]
                           + [flag.format(**paths) for flag in flags], capsys, script)
    assert status == 2
    assert err.splitlines() == ["error: " + message.format(**paths)]  # not even the device line: nothing loaded
    assert not (tmp_path / "out").exists()


class ScheduleBuilt(Exception):
    """Raised where the span scripts build their schedule: what it was given, and no training."""


@pytest.mark.parametrize("script", [subject_extraction, relation_extraction])
@pytest.mark.parametrize("flags, warmup", [([], 0.0), (["--warmup", "0.25"], 0.25)],
                         ids=["a named checkpoint's default", "--warmup 0.25"])
def test_the_warmup_flag_reaches_the_schedule(script, flags, warmup, tmp_path, tiny_checkpoint, monkeypatch):
    def build_schedule(lr, min_lr, total_steps, warmup):
        raise ScheduleBuilt(warmup)

    monkeypatch.setattr(script, "WarmupThenDecay", build_schedule)
    with pytest.raises(ScheduleBuilt) as built:
        script.main(["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(tmp_path), "--epochs", "1"] + flags)
    assert built.value.args == (warmup,)


@pytest.mark.parametrize("flags, warmup", [([], 0.1), (["--warmup", "0"], 0.0)], ids=["demo setting", "flag wins"])
def test_the_tiny_bert_brings_googles_warmup_as_a_demo_setting_that_a_flag_overrides(
        flags, warmup, tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(bert_checkpoint, "DEFAULT_BERT_DIR", str(tmp_path / "absent"))
    args, checkpoint = parse_flags(subject_extraction.build_parser(), flags, subject_extraction.TINY_BERT_SETTINGS)
    assert checkpoint.is_tiny and args.warmup == warmup


def test_incomplete_checkpoint_exits_2_with_one_line_naming_the_file(tmp_path, tiny_checkpoint, data_dir):
    bert_dir = tmp_path / "bert"
    bert_dir.mkdir()
    (bert_dir / "bert_config.json").write_text("{}")
    result = subprocess.run(script_command(tiny_checkpoint, data_dir, tmp_path / "out", "--bert-dir", str(bert_dir)),
                            cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 2
    assert "error: vocab.txt is missing from BERT folder %s" % bert_dir in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_malformed_data_line_exits_2_and_writes_nothing(tmp_path, tiny_checkpoint, capsys):
    (tmp_path / "train.tsv").write_text("好\t1\n坏\t0\n没有标签\n", encoding="utf-8")
    status, err = run_main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(tmp_path),
                            "--output-dir", str(tmp_path / "out")], capsys)
    assert status == 2
    assert "train.tsv line 3: expected 2 columns (text_a, label), found 1" in err
    assert not (tmp_path / "out").exists()


def test_maxlen_beyond_the_checkpoints_positions_is_refused(tmp_path, tiny_checkpoint, data_dir, capsys):
    status, err = run_main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(data_dir),
                            "--output-dir", str(tmp_path), "--maxlen", "600"], capsys)
    assert status == 2
    assert "--maxlen gives sequences of up to 602 tokens" in err and "only 512 positions" in err


def test_xla_with_accumulation_is_refused_before_anything_runs(tmp_path, tiny_checkpoint, data_dir, capsys):
    status, err = run_main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(data_dir),
                            "--output-dir", str(tmp_path / "out"), "--xla", "--accumulate", "2"], capsys)
    assert status == 2 and "--xla cannot compile --accumulate" in err
    assert not (tmp_path / "out").exists()


def test_long_texts_are_cut_and_counted(tmp_path, tiny_checkpoint, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("long")
    (folder / "train.tsv").write_text("长" * 700 + "\t1\n" + "短\t0\n" * 3, encoding="utf-8")
    (folder / "dev.tsv").write_text("短\t0\n", encoding="utf-8")
    sentiment.main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(folder),
                    "--output-dir", str(tmp_path), "--epochs", "1"])
    assert "train: 1 of 4 texts were longer than --maxlen 100 and were cut" in capsys.readouterr().out


def test_nan_loss_stops_with_the_step_and_advice_and_keeps_the_best_weights(
        tmp_path, tiny_checkpoint, data_dir, monkeypatch, capsys):
    argv = ["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(data_dir), "--output-dir", str(tmp_path),
            "--epochs", "1", "--batch-size", "16"]
    sentiment.main(argv)
    weights = open(tmp_path / "best_weights.h5", "rb").read()
    capsys.readouterr()

    make_batch = sentiment.make_batch
    calls = []

    def poisoned_batch(encoded, labels, indices):
        inputs, targets = make_batch(encoded, labels, indices)
        calls.append(1)
        return inputs, targets * np.nan if len(calls) >= 3 else targets

    monkeypatch.setattr(sentiment, "make_batch", poisoned_batch)
    status, err = run_main(argv, capsys)
    assert status == 2
    assert re.search(r"the loss became nan at epoch 1, step \d+; the best weights so far are kept", err)
    assert "lower --lr" in err
    assert open(tmp_path / "best_weights.h5", "rb").read() == weights


def test_out_of_memory_becomes_advice(tmp_path, tiny_checkpoint, data_dir, monkeypatch, capsys):
    def out_of_memory(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[32,12,512,512]")

    monkeypatch.setattr(keras.Model, "fit", out_of_memory)
    status, err = run_main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(data_dir),
                            "--output-dir", str(tmp_path)], capsys)
    assert status == 2
    assert "out of memory" in err and "--batch-size" in err and "--maxlen" in err


def test_resume_without_an_interrupted_run_is_refused(tmp_path, tiny_checkpoint, data_dir, capsys):
    status, err = run_main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(data_dir),
                            "--output-dir", str(tmp_path), "--resume"], capsys)
    assert status == 2 and "nothing to resume in %s" % tmp_path in err


def epoch_lines(output):
    """{epoch: "loss 0.xxxx, dev accuracy 0.xxxx[, macro-F1 0.xxxx]"}: what an epoch's line reports, to the
    printed 4 decimals."""
    return {int(epoch): loss + accuracy + macro_f1 for epoch, loss, accuracy, macro_f1 in re.findall(
        r"^epoch (\d+): (loss [\d.]+), (dev accuracy [\d.]+) \(.*?\)(, macro-F1 [\d.]+)?", output, re.M)}


@pytest.fixture(scope="module")
def topics_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("topics")
    WRITERS["topics"](str(folder), 300, seed=2)
    return folder


@pytest.mark.parametrize("labels", ["0/1 labels", "4 labels"])
def test_sigint_stops_cleanly_and_the_resumed_run_is_the_uninterrupted_run_to_4_decimals(
        tmp_path, tiny_checkpoint, labels, request):
    data_dir = request.getfixturevalue("data_dir" if labels == "0/1 labels" else "topics_dir")
    # The tiny BERT's default settings, dropout included; 9 steps an epoch, so the signal lands in epoch 2.
    command = [sys.executable, "sentiment.py", "--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(data_dir),
               "--lr", str(sentiment.TINY_BERT_SETTINGS["lr"]), "--epochs", str(sentiment.TINY_BERT_SETTINGS["epochs"])]
    interrupted_dir = tmp_path / "interrupted"
    process = subprocess.Popen(command + ["--output-dir", str(interrupted_dir)], cwd=PROJECT_DIR,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first_log = ""
        for line in process.stdout:
            first_log += line
            if line.startswith("epoch 1: "):
                process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130, first_log
    finally:
        process.kill()
    assert "stopped by SIGINT" in first_log and "--resume" in first_log
    assert "Traceback" not in first_log
    assert (interrupted_dir / "best_weights.h5").is_file()
    assert (interrupted_dir / "resume" / "state.json").is_file()
    assert not (interrupted_dir / "run.lock").exists()

    rerun = subprocess.run(command + ["--output-dir", str(interrupted_dir)], cwd=PROJECT_DIR,
                           capture_output=True, text=True)
    assert rerun.returncode == 2 and "add --resume" in rerun.stderr  # a plain rerun must not discard the saved state

    resumed = subprocess.run(command + ["--output-dir", str(interrupted_dir), "--resume"],
                             cwd=PROJECT_DIR, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    done = int(re.search(r"resuming after epoch (\d+) of 3", resumed.stdout).group(1))
    assert done == 1, first_log  # stopped in epoch 2
    uninterrupted = subprocess.run(command + ["--output-dir", str(tmp_path / "straight")],
                                   cwd=PROJECT_DIR, capture_output=True, text=True, check=True)
    assert sorted(epoch_lines(resumed.stdout)) == [2, 3]
    assert epoch_lines(first_log) | epoch_lines(resumed.stdout) == epoch_lines(uninterrupted.stdout)
    best = re.compile(r"^best dev accuracy: .*", re.M)
    assert best.search(resumed.stdout).group() == best.search(uninterrupted.stdout).group()


def test_a_second_run_on_a_busy_output_dir_stops_at_once_while_the_first_finishes_untouched(
        tmp_path, tiny_checkpoint, data_dir, capsys):
    output_dir = tmp_path / "out"
    first = subprocess.Popen(script_command(tiny_checkpoint, data_dir, output_dir), cwd=PROJECT_DIR,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first_log = ""
        for line in first.stdout:
            first_log += line
            if line.startswith("epoch 1: "):
                first.send_signal(signal.SIGSTOP)  # held mid-run, however long the second takes to start
                break
        files_before = {name: os.stat(output_dir / name).st_mtime_ns for name in os.listdir(output_dir)}
        second = subprocess.run(script_command(tiny_checkpoint, data_dir, output_dir), cwd=PROJECT_DIR,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert "Traceback" not in second.stderr
        assert [line for line in second.stderr.splitlines() if line.startswith("error")] == [
            "error: %s is in use by a run of process %d (lock file %s): wait for it to end, or give another "
            "--output-dir" % (output_dir, first.pid, output_dir / "run.lock")]
        assert "train:" not in second.stdout  # stopped before reading the data
        assert {name: os.stat(output_dir / name).st_mtime_ns for name in os.listdir(output_dir)} == files_before

        # Reading the best weights so far needs no lock.
        sentiment.main(["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(output_dir), "--predict", "好"])
        assert re.fullmatch(r"0\.\d{4}\t好\n", capsys.readouterr().out)
        sentiment.main(["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(output_dir),
                        "--export", str(tmp_path / "export")])
        assert (tmp_path / "export" / "saved_model.pb").is_file()

        first.send_signal(signal.SIGCONT)
        first_log += first.stdout.read()
        assert first.wait(timeout=120) == 0, first_log
    finally:
        first.kill()
    assert [int(n) for n in re.findall(r"^epoch (\d+): ", first_log, re.M)] == [1, 2, 3]
    assert re.search(r"^best dev accuracy: ", first_log, re.M)
    assert not (output_dir / "run.lock").exists()
