import csv
import os
import re

import numpy as np
import pytest

import subject_extraction as se
import synthetic
from fine_tuning import UserError, best_weights_path, parse_flags
from tokenizer import DEFAULT_VOCAB_PATH


def write_csv(path, rows, bom=False):
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as writer:
        csv.writer(writer, lineterminator="\n").writerows(rows)
    return str(path)


# ---------------------------------------------------------------------------------------------
# The joined sequence and its labels
# ---------------------------------------------------------------------------------------------

def test_joined_sequence_is_cls_prefix_text_sep_and_text_start_is_the_first_text_token(tokenizer):
    token_ids, segment_ids, text_start = se.encode(tokenizer, "实控人股东变更", "华信集团易主")
    tokens = ["[CLS]", "_", "_", "_", "实", "控", "人", "股", "东", "变", "更", "_", "_", "_",
              "华", "信", "集", "团", "易", "主", "[SEP]"]
    assert token_ids == [tokenizer._token_dict[token] for token in tokens]
    assert segment_ids == [0] * len(tokens)
    assert text_start == 14 and tokens[text_start] == "华"


def test_answer_is_the_first_occurrence_of_an_entity_named_twice(tokenizer):
    example = se.Example("1", "据报道，华信发布公告称，华信被调查", "涉嫌违法", "华信")
    windows = se.encode_questions(tokenizer, [example], 128, 64, "train")
    # prefix ___涉嫌违法___ is 10 characters, so the text starts at token 11; 华 is its 5th character
    assert se.answer_positions(windows, [example], 128, "train") == [(0, 15, 16)]


def test_a_space_in_the_text_stays_one_token_so_positions_still_match_characters(tokenizer):
    example = se.Example("1", "ST 华信被罚", "涉嫌违法", "ST 华信")
    windows = se.encode_questions(tokenizer, [example], 128, 64, "train")
    token_ids, text_start = windows[0].token_ids, windows[0].text_start
    assert token_ids[text_start + 2] == tokenizer._token_dict["[unused1]"]
    assert len(token_ids) == 1 + 10 + len(example.text) + 1
    assert se.answer_positions(windows, [example], 128, "train") == [(0, 11, 15)]


def test_a_text_longer_than_maxlen_is_read_in_windows_and_an_entity_past_the_cut_is_trained_on(tokenizer, capsys):
    examples = [se.Example("1", "华信被罚", "涉嫌违法", "华信"), se.Example("2", "据报道，今日华信被罚", "涉嫌违法", "华信")]
    windows = se.encode_questions(tokenizer, examples, 5, 3, "train")
    assert [(window.question, window.offset) for window in windows] == [(0, 0), (1, 0), (1, 3), (1, 5)]
    assert [tokenizer.decode(window.token_ids)[10:] for window in windows] == [
        list("华信被罚"), list("据报道，今"), list("，今日华信"), list("日华信被罚")]
    # 华信 is characters 6-7: in the windows from 3 (their 4th-5th) and from 5 (2nd-3rd), not in the first
    assert se.answer_positions(windows, examples, 5, "train") == [(0, 11, 12), (2, 14, 15), (3, 12, 13)]
    assert "1 of 2 texts are longer than --maxlen 5: read in windows (4 windows for 2 questions)" in (
        capsys.readouterr().out)


def test_an_entity_longer_than_the_windows_overlap_in_no_window_whole_is_counted(tokenizer, capsys):
    examples = [se.Example("1", "今日华信集团被罚", "涉嫌违法", "华信集团")]
    windows = se.encode_questions(tokenizer, examples, 5, 5, "train")  # windows 今日华信集, 信集团被罚
    assert se.answer_positions(windows, examples, 5, "train") == []
    assert "1 entities lie across every window's edge" in capsys.readouterr().out


def test_batches_are_padded_to_their_longest_sequence_with_one_hot_start_and_end(tokenizer):
    examples = [se.Example("1", "华信被罚", "涉嫌违法", "华信"), se.Example("2", "因故，金鹰科技被罚", "涉嫌违法", "金鹰科技")]
    windows = se.encode_questions(tokenizer, examples, 128, 64, "train")
    positions = se.answer_positions(windows, examples, 128, "train")
    (token_ids, segment_ids, start, end), = se.make_batch(windows, [positions[1], positions[0]])
    assert token_ids.shape == segment_ids.shape == start.shape == end.shape == (2, 21)
    assert token_ids[1, 16:].tolist() == [0] * 5
    assert np.argmax(start, 1).tolist() == [14, 11] and np.argmax(end, 1).tolist() == [17, 12]
    assert start.sum() == end.sum() == 2


def test_the_end_loss_ranks_every_position_also_those_before_the_gold_start():
    start, end = np.zeros((1, 6), np.float32), np.zeros((1, 6), np.float32)
    start[0, 3] = end[0, 4] = 1
    start_logits, end_logits = np.zeros((1, 6), np.float32), np.zeros((1, 6), np.float32)
    even = float(se.pointer_loss(start, end, start_logits, end_logits))
    assert even == pytest.approx(2 * np.log(6), rel=1e-5)  # both softmaxes over all six positions
    end_logits[0, 1] = 5.0  # an end before the gold start that best_span could pair with an earlier start
    assert float(se.pointer_loss(start, end, start_logits, end_logits)) > even + 3


# ---------------------------------------------------------------------------------------------
# Reading the contest's CSV files
# ---------------------------------------------------------------------------------------------

def test_csv_reader_handles_a_bom_quoted_commas_doubled_quotes_and_a_line_break_in_a_field(tmp_path, capsys):
    path = write_csv(tmp_path / "train.csv", [
        ["1", '华信亏损1,200万元，发布"澄清公告"', "业绩下滑", "华信"],
        ["2", "金鹰科技董事长失联，\n公司停牌", "高管负面", "金鹰科技"],
        ["3", "远洋地产召开股东大会", "其他", ""],
    ], bom=True)
    with open(path, encoding="utf-8") as reader:
        assert reader.read(1) == "\ufeff" and '"华信亏损1,200万元，发布""澄清公告"""' in reader.read()
    examples = se.read_labelled(path)
    assert examples == [se.Example("1", '华信亏损1,200万元，发布"澄清公告"', "业绩下滑", "华信"),
                        se.Example("2", "金鹰科技董事长失联，\n公司停牌", "高管负面", "金鹰科技")]
    assert "2 rows with a subject, 1 of type 其他 left out" in capsys.readouterr().out


def test_a_row_with_too_few_columns_is_an_error_naming_the_file_and_its_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('1,"两行\n的文本",高管负面,两行\n\n2,华信被罚,涉嫌违法\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"train\.csv line 4: expected 4 comma-separated columns "
                                        r"\(id, text, event_type, entity\), found 3"):
        se.read_labelled(str(path))


def test_rows_whose_entity_is_not_in_the_text_are_kept_counted_and_never_trained_on(tmp_path, tokenizer, capsys):
    path = write_csv(tmp_path / "train.csv", [
        ["1", "华信被罚", "涉嫌违法", "华信"], ["2", "华信被罚", "涉嫌违法", "华信集团"], ["3", "华信被罚", "涉嫌违法", ""]])
    examples = se.read_labelled(path)
    assert [example.id for example in examples] == ["1", "2", "3"]
    output = capsys.readouterr().out
    assert "3 rows with a subject" in output
    assert "2 rows name a subject that does not occur in their text (lines 2, 3)" in output
    windows = se.encode_questions(tokenizer, examples, 128, 64, "train")
    assert [windows[w].question for w, _, _ in se.answer_positions(windows, examples, 128, "train")] == [0]


def test_dev_accuracy_counts_every_question_a_subject_not_in_its_text_as_wrong():
    gold = ["华信", "金鹰科技", "华信集团"]  # the third does not occur in its text: no span can equal it
    assert se.accuracy(["华信", "金鹰科技", "华信"], gold) == pytest.approx(2 / 3)


def test_a_file_without_a_subject_is_an_error_and_one_whose_subjects_are_not_in_their_texts_trains_nothing(
        tmp_path, tiny_checkpoint):
    path = write_csv(tmp_path / "train.csv", [["1", "华信开会", "其他", ""]])
    with pytest.raises(UserError, match=r"train\.csv has no row"):
        se.read_labelled(path)
    write_csv(tmp_path / se.TRAIN_FILE_NAME, [["1", "华信开会", "其他", ""], ["2", "华信被罚", "涉嫌违法", "金鹰"]])
    dev = write_csv(tmp_path / "dev.csv", [["3", "华信被罚", "涉嫌违法", "华信"]])
    with pytest.raises(UserError, match=r"no training question has its subject in its text"):
        se.main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(tmp_path), "--dev-file", dev,
                 "--output-dir", str(tmp_path / "out")])


def test_dev_is_a_fixed_one_in_nine_of_the_training_rows(tmp_path):
    rows = synthetic.subject_examples(300, seed=3)
    write_csv(tmp_path / se.TRAIN_FILE_NAME, rows)
    first, again, other_seed = (se.load_data(str(tmp_path), None, seed) for seed in (1, 1, 2))
    usable = len(first["train"]) + len(first["dev"])
    assert len(first["dev"]) == -(-usable // 9)
    assert first["dev"] == again["dev"] and first["dev"] != other_seed["dev"]
    assert not set(first["dev"]) & set(first["train"]) and first["eval"] is None


def test_the_shared_train_and_dev_file_flags_name_files_by_other_names(tmp_path, tiny_checkpoint):
    train = write_csv(tmp_path / "my_train.csv", synthetic.subject_examples(40, seed=3))
    dev = write_csv(tmp_path / "my_dev.csv", [["1", "华信被罚", "涉嫌违法", "华信"]])
    args, _ = parse_flags(se.build_parser(), ["--bert-dir", tiny_checkpoint.bert_dir, "--train-file", train,
                                              "--dev-file", dev], se.TINY_BERT_SETTINGS)
    assert args.data_dir == str(tmp_path)  # the eval file is looked for beside the training file, not in the sample
    data = se.load_data(args.data_dir, args.dev_file, args.seed, args.train_file)
    assert data["train"] == se.read_labelled(train) and [example.id for example in data["dev"]] == ["1"]
    assert data["eval"] is None


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------

def test_decoder_takes_the_best_pair_with_end_not_before_start_not_two_argmaxes():
    start = np.array([0, 0, 0, 5, 0, 9, 0, 0], float)
    end = np.array([0, 0, 0, 8, 4, 0, 0, 0], float)
    # Independent argmaxes give start 5, end 3; the best pair with end >= start is (3, 3): 5 + 8.
    assert se.best_span(start, end, 1, 7)[:2] == (3, 3)
    end[6] = 5  # now (5, 6) scores 9 + 5 = 14 > 13
    assert se.best_span(start, end, 1, 7)[:2] == (5, 6)


def test_decoder_never_returns_the_prefix_cls_sep_or_padding():
    start = np.full(12, -1.0)
    end = np.full(12, -1.0)
    start[[0, 2, 9, 10, 11]] = end[[0, 2, 9, 10, 11]] = 100  # [CLS], prefix, [SEP], padding
    start[6], end[7] = 1, 1
    assert se.best_span(start, end, 4, 9)[:2] == (6, 7)


def test_max_span_limits_the_entity_length():
    start = np.array([0, 3, 0, 0, 0, 0], float)
    end = np.array([0, 0, 1, 0, 0, 4], float)
    assert se.best_span(start, end, 1, 6)[:2] == (1, 5)
    assert se.best_span(start, end, 1, 6, max_span=3)[:2] == (1, 2)
    assert se.best_span(start, end, 1, 6, max_span=1)[:2] == (5, 5)  # one character: 0 + 4 beats 3 + 0


class FixedLogits:
    """A stand-in model that puts the start and end logits at chosen characters of each text."""

    def __init__(self, spans):
        self.spans = spans

    def predict_on_batch(self, inputs):
        token_ids = inputs[0]
        start, end = np.zeros(token_ids.shape), np.zeros(token_ids.shape)
        for row, ids in enumerate(token_ids):
            (start_char, end_char), = [span for key, span in self.spans.items() if tuple(ids[:len(key)]) == key]
            start[row, start_char], end[row, end_char] = 10, 10
        return start, end


def test_predicted_spans_are_cut_from_the_original_characters(tokenizer):
    examples = [se.Example("1", "ST 华信被罚", "违法", None), se.Example("2", "据报道，Ａ公司造假", "财务造假", None)]
    windows = se.encode_questions(tokenizer, examples, 128, 64, "eval")
    spans = {tuple(windows[0].token_ids): (9, 13), tuple(windows[1].token_ids): (15, 17)}  # 9 = 1 + len("___违法___")
    assert se.predict_entities(FixedLogits(spans), windows, examples, 128, 1, 0) == ["ST 华信", "Ａ公司"]


def pointer_model(start_id, end_id):
    """A stand-in for a trained model: start logit 10 wherever the token is start_id, end logit 10 at end_id."""
    token_ids, segment_ids = se.keras.layers.Input((None,)), se.keras.layers.Input((None,))

    def logits_at(token_id):
        return se.keras.layers.Lambda(lambda ids: 10.0 * se.tf.cast(se.tf.equal(ids, token_id), "float32"))(token_ids)

    return se.keras.Model([token_ids, segment_ids], [logits_at(start_id), logits_at(end_id)])


def test_an_entity_past_maxlen_is_found_in_its_window_by_predict_and_by_the_export_alike(tokenizer):
    far = "据报道，" + "，" * 150 + "华信被罚"  # 华信 at characters 154-155, past the first 128
    twice = "华信被罚，" + "，" * 150 + "华信被罚"  # a tie between windows: the earliest wins
    examples = [se.Example("1", far, "涉嫌违法", None), se.Example("2", twice, "涉嫌违法", None),
                se.Example("3", "华信被罚", "涉嫌违法", None)]
    model = pointer_model(tokenizer._token_dict["华"], tokenizer._token_dict["信"])
    windows = se.encode_questions(tokenizer, examples, 128, 64, "--predict")
    assert se.predict_entities(model, windows, examples, 128, 8, se.MAX_SPAN) == ["华信"] * 3

    serving = se.SubjectServing([model], DEFAULT_VOCAB_PATH, 128, 64, se.MAX_SPAN)
    answers = serving.serve(event_type=se.tf.constant([e.event_type for e in examples]),
                            text=se.tf.constant([e.text for e in examples]))
    assert [entity.decode() for entity in answers["entity"].numpy()] == ["华信"] * 3
    assert answers["start"].numpy().tolist() == [154, 0, 0] and answers["end"].numpy().tolist() == [156, 2, 2]


def test_result_file_has_one_quoted_id_entity_line_per_row(tmp_path):
    examples = [se.Example("7", "x", "t", None), se.Example("8", "y", "t", None)]
    path = str(tmp_path / "result.txt")
    se.write_results(path, examples, ["华信", 'a,"b"'])
    with open(path, encoding="utf-8") as reader:
        assert reader.read() == '"7","华信"\n"8","a,""b"""\n'


# ---------------------------------------------------------------------------------------------
# Training (tiny random BERT)
# ---------------------------------------------------------------------------------------------

def test_tiny_model_learns_to_point_at_company_names_within_a_few_epochs(tiny_checkpoint, tokenizer, tmp_path):
    se.keras.utils.set_random_seed(0)
    write_csv(tmp_path / se.TRAIN_FILE_NAME, synthetic.subject_examples(800, seed=5))
    data = se.load_data(str(tmp_path), None, seed=0)
    windows = {name: se.encode_questions(tokenizer, data[name], 128, 64, name) for name in ("train", "dev")}
    positions = se.answer_positions(windows["train"], data["train"], 128, "train")
    batches = se.TrainingBatches(
        [len(windows["train"][w].token_ids) for w, _, _ in positions],
        lambda indices: se.make_batch(windows["train"], [positions[i] for i in indices]),
        se.BATCH_SIGNATURE, batch_size=32, seed=0)  # random batches: the scripts' default
    model, train_model = se.build_model(tiny_checkpoint)
    train_model.compile(optimizer=se.keras.optimizers.Adam(se.WarmupThenDecay(1e-3, 1e-3, 4 * len(batches), 0.1)))

    companies = {}
    for example in data["train"] + data["dev"]:
        companies.setdefault(example.text, set()).add(example.entity)

    def dev_companies_found():
        """The share of dev answers that are one of their text's companies, asked for or not."""
        predicted = se.predict_entities(model, windows["dev"], data["dev"], 128, 64, se.MAX_SPAN)
        return np.mean([answer in companies[example.text] for answer, example in zip(predicted, data["dev"])])

    untrained = dev_companies_found()
    train_model.fit(batches.dataset(), epochs=4, verbose=0)
    # A random 2-layer BERT learns where names begin and end in a few epochs; which one the event
    # type asks for takes a pretrained one (benchmarks/README.md, "condition learning").
    assert dev_companies_found() > untrained + 0.3


def test_main_trains_writes_best_weights_and_result_file_then_predicts_from_them(tiny_checkpoint, tmp_path, capsys):
    data_dir, output_dir = tmp_path / "data", str(tmp_path / "out")
    data_dir.mkdir()
    synthetic.write_subject(str(data_dir), 120, seed=7)
    flags = ["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", output_dir, "--lr", "1e-3"]
    with pytest.raises(UserError, match="no trained weights"):
        se.main(flags + ["--predict", "财务造假", "华信集团被曝连续三年财务造假"])

    se.main(flags + ["--data-dir", str(data_dir), "--epochs", "1"])
    output = capsys.readouterr().out
    assert re.search(r"epoch 1: loss [\d.]+, dev accuracy [\d.]+", output)
    assert re.fullmatch(r"best dev accuracy: [01]\.\d{4}", output.strip().splitlines()[-1])
    assert os.path.isfile(best_weights_path(output_dir))
    with open(data_dir / se.EVAL_FILE_NAME, encoding="utf-8") as reader:
        eval_rows = list(csv.reader(reader))
    with open(os.path.join(output_dir, "result.txt"), encoding="utf-8") as reader:
        results = list(csv.reader(reader))
    assert [row[0] for row in results] == [row[0] for row in eval_rows]
    assert all(entity in row[1] for (_, entity), row in zip(results, eval_rows))

    text = "记者获悉，华信集团被曝连续三年财务造假。"
    se.main(flags + ["--predict", "财务造假", text])
    entity = capsys.readouterr().out.strip().splitlines()[-1]
    assert entity and entity in text


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    """A model trained one epoch on a slice of the bundled sample, and its export."""
    folder = tmp_path_factory.mktemp("subject_export")
    bundled = os.path.join(os.path.dirname(os.path.abspath(se.__file__)), "data", "subject")
    rows = se.read_rows(os.path.join(bundled, se.TRAIN_FILE_NAME), se.Example._fields)
    write_csv(folder / se.TRAIN_FILE_NAME, [row for _, row in rows[:300]])
    flags = ["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(folder / "run"), "--lr", "1e-3"]
    se.main(flags + ["--data-dir", str(folder), "--epochs", "1"])
    se.main(flags + ["--export", str(folder / "export")])
    questions = se.read_unlabelled(os.path.join(bundled, se.EVAL_FILE_NAME))[:100]
    return flags, folder / "export", questions


def test_export_answers_raw_text_without_keras_bert_as_predict_does(
        exported, serve_standalone, tiny_checkpoint, tokenizer, capsys):
    flags, export_dir, questions = exported
    questions = questions + [se.Example("x", "ＳＴ 华信😀被罚", "涉嫌违法", None), se.Example("y", "华信" * 100, "", None)]
    outputs = serve_standalone(export_dir, event_type=[q.event_type for q in questions], text=[q.text for q in questions])
    assert {name: dtype for name, (dtype, _) in outputs.items()} == {"entity": "string", "start": "int32", "end": "int32"}
    entities, starts, ends = (outputs[name][1] for name in ("entity", "start", "end"))
    assert all(q.text[start:end] == entity for q, entity, start, end in zip(questions, entities, starts, ends))

    # What --predict does for each question: the best weights, one question a batch, the script's decoder.
    model, train_model = se.build_model(tiny_checkpoint)
    se.load_best_weights(train_model, flags[3], "subject_extraction.py")
    windows = se.encode_questions(tokenizer, questions, 128, 64, "--predict")
    assert entities == se.predict_entities(model, windows, questions, 128, 1, se.MAX_SPAN)
    assert len(set(entities)) > 5  # the model tells the questions apart: the comparison means something
    capsys.readouterr()
    se.main(flags + ["--predict", questions[-2].event_type, questions[-2].text])
    assert capsys.readouterr().out.splitlines()[-1] == entities[-2]


def test_export_without_trained_weights_says_how_to_train(tiny_checkpoint, tmp_path):
    flags = ["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(tmp_path / "run")]
    with pytest.raises(UserError, match=r"no trained weights at .*python subject_extraction.py --output-dir"):
        se.main(flags + ["--export", str(tmp_path / "export")])
