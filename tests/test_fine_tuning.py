"""The shared plumbing: padding, bucketed batches, the warmup schedule, atomic weights, data files."""
import importlib

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

import fine_tuning
from fine_tuning import UserError, WarmupThenDecay, epoch_batches, pad, read_data_file, save_weights_atomically


def test_pad_fills_to_the_longest_sequence_of_the_batch_only():
    assert pad([[1, 2, 3], [4]]).tolist() == [[1, 2, 3], [4, 0, 0]]
    labels = pad([np.ones((2, 3)), np.ones((1, 3))])
    assert labels.shape == (2, 2, 3) and labels[1, 1].tolist() == [0, 0, 0]


@pytest.mark.parametrize("bucket", [True, False])
def test_every_example_appears_exactly_once_per_epoch_in_a_new_order(bucket):
    lengths = np.random.default_rng(0).integers(5, 300, size=1003)
    first = epoch_batches(lengths, 32, seed=1, epoch=0, bucket=bucket)
    second = epoch_batches(lengths, 32, seed=1, epoch=1, bucket=bucket)
    for batches in (first, second):
        assert sorted(np.concatenate(batches).tolist()) == list(range(1003))
        assert all(len(batch) <= 32 for batch in batches)
    assert np.concatenate(first).tolist() != np.concatenate(second).tolist()
    again = epoch_batches(lengths, 32, seed=1, epoch=0, bucket=bucket)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def padding_share(lengths, batches):
    return 1 - sum(lengths[b].sum() for b in batches) / sum(lengths[b].max() * len(b) for b in batches)


def test_bucketing_cuts_padding_to_a_few_percent():
    lengths = np.clip(np.random.default_rng(0).lognormal(4.2, 0.6, size=5000).astype(int), 5, 130)
    random_share = padding_share(lengths, epoch_batches(lengths, 32, 0, 0, bucket=False))
    bucketed_share = padding_share(lengths, epoch_batches(lengths, 32, 0, 0, bucket=True))
    assert random_share > 0.3
    assert bucketed_share < 0.05


@pytest.mark.parametrize("script", ["sentiment", "relation_extraction", "subject_extraction"])
def test_every_script_batches_at_random_as_the_blog_unless_asked_to_bucket(script):
    # Measured: length-sorted batches reached the dev target in more epochs (README, "Batching: time to accuracy").
    parser = importlib.import_module(script).build_parser()
    assert parser.parse_args([]).bucket is False
    assert parser.parse_args(["--bucket"]).bucket is True
    assert parser.parse_args(["--no-bucket"]).bucket is False


def test_schedule_warms_up_over_epoch_one_decays_over_epoch_two_then_stays():
    schedule = WarmupThenDecay(lr=5e-5, min_lr=1e-5, steps_per_epoch=100)
    values = [float(schedule(step)) for step in (0, 50, 100, 150, 200, 1000)]
    np.testing.assert_allclose(values, [0, 2.5e-5, 5e-5, 3e-5, 1e-5, 1e-5], rtol=1e-6)


def test_a_crash_while_saving_leaves_the_previous_weights_whole(tmp_path, monkeypatch):
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    path = str(tmp_path / "best_weights.h5")
    save_weights_atomically(model, path)
    saved = open(path, "rb").read()

    def crash_midway(filepath, *args, **kwargs):
        open(filepath, "wb").write(b"half a file")
        raise OSError("disk full")

    model.set_weights([w + 1 for w in model.get_weights()])
    monkeypatch.setattr(model, "save_weights", crash_midway)
    with pytest.raises(OSError):
        save_weights_atomically(model, path)
    assert open(path, "rb").read() == saved


def test_data_file_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_data_file(str(tmp_path / "absent.tsv"))
    (tmp_path / "empty.tsv").write_text(" \n", encoding="utf-8")
    with pytest.raises(UserError, match="empty"):
        read_data_file(str(tmp_path / "empty.tsv"))
    (tmp_path / "bom.tsv").write_bytes("\ufeff好\t1\n".encode("utf-8"))
    assert read_data_file(str(tmp_path / "bom.tsv")) == "好\t1\n"
    (tmp_path / "latin.tsv").write_bytes(b"ok\n\xff\xfe\xfd\n")
    with pytest.raises(UserError, match=r"line 2 is not UTF-8"):
        read_data_file(str(tmp_path / "latin.tsv"))


def test_training_batches_feed_keras_with_per_batch_padding():
    lengths = [3, 5, 2, 7]
    seen_widths = []

    def make_batch(indices):
        width = max(lengths[i] for i in indices)
        seen_widths.append(width)
        token_ids = pad([[1] * lengths[i] for i in indices])
        return (token_ids,), np.zeros((len(indices), 1), np.float32)

    signature = ((tf.TensorSpec((None, None), tf.int64),), tf.TensorSpec((None, 1), tf.float32))
    batches = fine_tuning.TrainingBatches(lengths, make_batch, signature, batch_size=2, seed=0)
    shapes = [inputs[0].shape[1] for inputs, _ in batches.dataset()]
    assert len(shapes) == len(batches) == 2
    assert sorted(shapes) == sorted(seen_widths)
    assert batches.real_tokens == sum(lengths)
