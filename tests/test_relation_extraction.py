import argparse
import json
import os
import re

import numpy as np
import pytest

import relation_extraction as rex
import synthetic
from fine_tuning import UserError, best_weights_path, run

PREDICATE_IDS = {"歌手": 0, "毕业院校": 1, "国籍": 2}
SCHEMAS = {"歌手": ("歌曲", "人物"), "毕业院校": ("人物", "学校"), "国籍": ("人物", "国家")}


def write_lines(path, records):
    with open(path, "w", encoding="utf-8") as writer:
        for record in records:
            writer.write((record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)) + "\n")


def spo(subject, predicate, obj):
    return {"subject": subject, "predicate": predicate, "object": obj,
            "subject_type": SCHEMAS[predicate][0], "object_type": SCHEMAS[predicate][1]}


def write_schemas(data_dir):
    write_lines(os.path.join(data_dir, "all_50_schemas"),
                [{"subject_type": s, "predicate": p, "object_type": o} for p, (s, o) in SCHEMAS.items()])


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------

def test_encoding_labels_every_occurrence_of_a_subject_and_its_objects(tokenizer):
    # chars: 周0 杰1 伦2 ，3 中4 国5 歌6 手7 ，8 周9 杰10 伦11 毕12 业13 于14 淡15 江16 中17 学18
    example = {"text": "周杰伦，中国歌手，周杰伦毕业于淡江中学",
               "triples": [("周杰伦", "国籍", "中国"), ("周杰伦", "毕业院校", "淡江中学")]}
    encoded = rex.encode_example(tokenizer, example, PREDICATE_IDS)
    assert len(encoded["token_ids"]) == len(example["text"]) + 2
    assert np.flatnonzero(encoded["subject_starts"]).tolist() == [1, 10]  # token = char + 1
    assert np.flatnonzero(encoded["subject_ends"]).tolist() == [3, 12]
    assert encoded["subjects"] == [(1, 3, "周杰伦"), (10, 12, "周杰伦")]
    assert sorted(encoded["objects"]["周杰伦"]) == [(5, 6, 2), (16, 19, 1)]

    object_starts, object_ends = rex.object_labels(encoded["objects"]["周杰伦"], len(encoded["token_ids"]), 3)
    assert object_starts.shape == (21, 3)
    assert sorted(zip(*np.nonzero(object_starts))) == [(5, 2), (16, 1)]
    assert sorted(zip(*np.nonzero(object_ends))) == [(6, 2), (19, 1)]


def test_encoding_keeps_one_token_per_character_in_a_text_with_spaces(tokenizer):
    # chars: 《0 L1 o2 v3 e4 ' '5 S6 t7 o8 r9 y10 》11 的12 歌13 手14 是15 T16 ... t27
    example = {"text": "《Love Story》的歌手是Taylor Swift", "triples": [("Love Story", "歌手", "Taylor Swift")]}
    encoded = rex.encode_example(tokenizer, example, PREDICATE_IDS)
    assert len(encoded["token_ids"]) == len(example["text"]) + 2
    assert encoded["token_ids"][6] == tokenizer._token_dict["[unused1]"]
    assert encoded["subjects"] == [(2, 11, "Love Story")]
    assert encoded["objects"]["Love Story"] == [(17, 28, 0)]


def test_a_training_batch_conditions_on_a_real_subject_and_its_own_objects(tokenizer):
    example = {"text": "小明和小红都毕业于南开大学，小红是中国人",
               "triples": [("小明", "毕业院校", "南开大学"), ("小红", "毕业院校", "南开大学"), ("小红", "国籍", "中国")]}
    encoded = [rex.encode_example(tokenizer, example, PREDICATE_IDS)]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        (token_ids, _, subject_starts, _, k1, k2, object_starts, object_ends), = rex.make_batch(encoded, [0], 3, rng)
        start, end = int(k1[0, 0]), int(k2[0, 0])
        subject = example["text"][start - 1:end]
        seen.add(subject)
        assert (start, end, subject) in encoded[0]["subjects"]
        assert object_starts.shape == (1, token_ids.shape[1], 3)
        found = {(example["text"][s - 1:e], p) for (s, p), (e, _) in
                 zip(zip(*np.nonzero(object_starts[0])), zip(*np.nonzero(object_ends[0])))}
        expected = {(obj, PREDICATE_IDS[p]) for s, p, obj in example["triples"] if s == subject}
        assert found == expected
    assert seen == {"小明", "小红"}


# ---------------------------------------------------------------------------------------------
# Decoding and metric
# ---------------------------------------------------------------------------------------------

def probabilities(length, positions, value=0.9):
    array = np.full(length, 0.1)
    array[list(positions)] = value
    return array


def test_each_start_takes_the_nearest_end_at_or_after_it():
    assert rex.decode_spans(probabilities(8, [1, 3]), probabilities(8, [5])) == [(1, 5), (3, 5)]  # nested
    assert rex.decode_spans(probabilities(8, [0, 2]), probabilities(8, [3, 5])) == [(0, 3), (2, 3)]  # overlapping
    assert rex.decode_spans(probabilities(8, [4]), probabilities(8, [4])) == [(4, 4)]  # one character


def test_a_start_with_no_end_after_it_gives_no_span():
    assert rex.decode_spans(probabilities(8, [4]), probabilities(8, [2])) == []
    assert rex.decode_spans(np.full(8, 0.1), np.full(8, 0.9)) == []


def test_thresholds_are_strict_and_separate_for_starts_and_ends():
    starts, ends = probabilities(6, [1], 0.5), probabilities(6, [3], 0.45)
    assert rex.decode_spans(starts, ends) == []  # 0.5 is not above 0.5
    starts[1] = 0.51
    assert rex.decode_spans(starts, ends) == [(1, 3)]  # 0.45 is above the end threshold 0.4
    assert rex.decode_spans(starts, ends, end_threshold=0.5) == []


def test_an_object_ends_with_an_end_of_its_own_predicate():
    starts, ends = np.full((6, 2), 0.1), np.full((6, 2), 0.1)
    starts[1, 0] = ends[2, 1] = ends[4, 0] = 0.9
    starts[3, 1] = 0.9
    assert sorted(rex.decode_objects(starts, ends)) == [(1, 4, 0)]  # predicate 1 has no end after 3


def test_scores_are_micro_f1_precision_recall_over_exact_triples():
    a, b, c, d = ("甲", "作者", "乙"), ("甲", "作者", "丙"), ("丁", "歌手", "戊"), ("丁", "歌手", "己")
    f1, precision, recall = rex.triple_scores([{a, b}, {c}], [{a}, {c, d}])
    assert (f1, precision, recall) == pytest.approx((2 * 2 / 6, 2 / 3, 2 / 3))
    f1, precision, recall = rex.triple_scores([{a, b, d}], [{a}])
    assert (f1, precision, recall) == pytest.approx((2 / 4, 1 / 3, 1.0))
    assert rex.triple_scores([set()], [{a}]) == (0.0, 0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# Reading DuIE files
# ---------------------------------------------------------------------------------------------

def test_malformed_json_is_reported_with_its_line_number(tmp_path):
    path = tmp_path / "train_data.json"
    write_lines(path, [{"text": "周杰伦毕业于淡江中学", "spo_list": [spo("周杰伦", "毕业院校", "淡江中学")]}, "",
                       '{"text": "broken", "spo_list": ['])
    with pytest.raises(UserError, match=r"train_data\.json line 3: expected one JSON object, got malformed JSON"):
        rex.read_examples(str(path), SCHEMAS, 160)


def test_a_predicate_missing_from_the_schemas_is_an_error(tmp_path):
    path = tmp_path / "dev_data.json"
    bad = dict(spo("周杰伦", "毕业院校", "淡江中学"), predicate="校友")
    write_lines(path, [{"text": "周杰伦毕业于淡江中学", "spo_list": [bad]}])
    with pytest.raises(UserError, match=r"dev_data\.json line 1: predicate '校友' is not in the schema file"):
        rex.read_examples(str(path), SCHEMAS, 160)


def test_a_line_without_text_is_an_error(tmp_path):
    path = tmp_path / "train_data.json"
    write_lines(path, [{"text": "周杰伦毕业于淡江中学", "spo_list": []}, {"spo_list": []}])
    with pytest.raises(UserError, match=r'train_data\.json line 2: expected a "text" string'):
        rex.read_examples(str(path), SCHEMAS, 160)


def test_a_triple_not_in_the_text_is_skipped_and_counted_but_still_scored_against(tmp_path, capsys):
    path = tmp_path / "train_data.json"
    write_lines(path, [{"text": "周杰伦毕业于淡江中学", "postag": [],
                        "spo_list": [spo("周杰伦", "毕业院校", "淡江中学"), spo("周杰伦", "国籍", "中国")]},
                       {"text": "周杰伦是一位歌手" * 30, "spo_list": [spo("周杰伦", "国籍", "中国")]}])
    examples = rex.read_examples(str(path), SCHEMAS, 160)
    assert examples[0]["triples"] == [("周杰伦", "毕业院校", "淡江中学")]
    assert examples[1]["triples"] == [] and len(examples[1]["text"]) == 160
    assert examples[0]["gold"] == {("周杰伦", "毕业院校", "淡江中学"), ("周杰伦", "国籍", "中国")}
    assert examples[1]["gold"] == {("周杰伦", "国籍", "中国")}
    output = capsys.readouterr().out
    assert "2 triples skipped" in output
    assert "1 of 2 texts were longer than --maxlen 160" in output


def test_a_data_set_with_no_triple_left_is_an_error(tmp_path):
    path = tmp_path / "train_data.json"
    write_lines(path, [{"text": "今天天气不错", "spo_list": [spo("周杰伦", "国籍", "中国")]}])
    with pytest.raises(UserError, match="no sentence has a triple"):
        rex.read_examples(str(path), SCHEMAS, 160)


# ---------------------------------------------------------------------------------------------
# Reading DuIE 2.0 and CMeIE files
# ---------------------------------------------------------------------------------------------

DUIE2_SCHEMAS = dict(SCHEMAS, 饰演=("娱乐人物", "人物"))


def duie2_spo(subject, predicate, obj, **extra):
    """A DuIE 2.0 / CMeIE spo_list item: object and object_type are {"@value": ...} objects."""
    subject_type, object_type = DUIE2_SCHEMAS[predicate]
    return dict({"predicate": predicate, "subject": subject, "subject_type": subject_type,
                 "object": {"@value": obj}, "object_type": {"@value": object_type}}, **extra)


DUIE2_SENTENCES = [
    {"text": "《七里香》是周杰伦演唱的歌曲", "spo_list": [duie2_spo("七里香", "歌手", "周杰伦")]},
    {"text": "周杰伦在《不能说的秘密》中饰演叶湘伦", "spo_list": [dict(
        duie2_spo("周杰伦", "饰演", "叶湘伦"), object={"@value": "叶湘伦", "inWork": "不能说的秘密"},
        object_type={"@value": "人物", "inWork": "影视作品"})]},
    {"text": "王菲毕业于北京大学", "spo_list": [duie2_spo("王菲", "毕业院校", "北京大学", Combined=False, subject_start_idx=0)]},
]


def write_duie2_schemas(path):
    write_lines(path, [{"object_type": {"@value": "人物"}, "predicate": "歌手", "subject_type": "歌曲"},
                       {"object_type": {"@value": "人物", "inWork": "影视作品"}, "predicate": "饰演", "subject_type": "娱乐人物"},
                       {"object_type": {"@value": "学校"}, "predicate": "毕业院校", "subject_type": "人物"},
                       {"object_type": {"@value": "国家"}, "predicate": "国籍", "subject_type": "人物"}])


def test_duie2_and_cmeie_objects_are_read_by_their_value_extra_keys_ignored_and_extra_slots_counted(tmp_path, capsys):
    path = tmp_path / "duie_train.json"
    write_lines(path, DUIE2_SENTENCES)
    assert rex.read_examples(str(path), DUIE2_SCHEMAS, 160) == [
        {"text": "《七里香》是周杰伦演唱的歌曲", "triples": [("七里香", "歌手", "周杰伦")], "gold": {("七里香", "歌手", "周杰伦")}},
        {"text": "周杰伦在《不能说的秘密》中饰演叶湘伦", "triples": [("周杰伦", "饰演", "叶湘伦")],
         "gold": {("周杰伦", "饰演", "叶湘伦")}},
        {"text": "王菲毕业于北京大学", "triples": [("王菲", "毕业院校", "北京大学")], "gold": {("王菲", "毕业院校", "北京大学")}},
    ]
    assert "duie_train.json: 1 extra object slots not modelled (inWork 1)" in capsys.readouterr().out


def test_schema_files_with_object_types_as_objects_give_their_values(tmp_path):
    write_duie2_schemas(tmp_path / "duie_schema.json")
    assert rex.read_schemas(str(tmp_path / "duie_schema.json")) == {
        "歌手": ("歌曲", "人物"), "饰演": ("娱乐人物", "人物"), "毕业院校": ("人物", "学校"), "国籍": ("人物", "国家")}
    write_lines(tmp_path / "53_schemas.json", [{"subject_type": "疾病", "predicate": "预防", "object_type": "其他"}])
    assert rex.read_schemas(str(tmp_path / "53_schemas.json")) == {"预防": ("疾病", "其他")}


def test_files_are_found_under_2019_or_duie2_names_unless_named(tmp_path):
    duie2, duie2019 = tmp_path / "DuIE2.0", tmp_path / "DuIE"
    for folder, names in ((duie2, ("duie_train.json", "duie_dev.json", "duie_schema.json")), (duie2019, ("all_50_schemas",))):
        folder.mkdir()
        for name in names:
            (folder / name).write_text("{}\n", encoding="utf-8")
    unnamed = {"train": None, "dev": None, "schema": None}
    assert rex.find_data_files(str(duie2), unnamed) == {
        part: str(duie2 / name) for part, name in rex.FILE_NAMES["DuIE 2.0"].items()}
    assert rex.find_data_files(str(duie2), dict(unnamed, train="CMeIE_train.json", schema="53_schemas.json")) == {
        "train": "CMeIE_train.json", "dev": str(duie2 / "duie_dev.json"), "schema": "53_schemas.json"}
    assert rex.find_data_files(str(duie2019), {"schema": None}) == {"schema": str(duie2019 / "all_50_schemas")}
    assert rex.find_data_files(str(tmp_path), {"schema": "s.json"}) == {"schema": "s.json"}


def test_a_release_file_in_a_folder_of_its_own_name_is_found_as_its_zip_unpacks(tmp_path):
    for path in ("duie_train.json", "duie_dev.json", "duie_schema/duie_schema.json"):
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text("{}\n", encoding="utf-8")
    assert rex.find_data_files(str(tmp_path), {"train": None, "dev": None, "schema": None}) == {
        "train": str(tmp_path / "duie_train.json"), "dev": str(tmp_path / "duie_dev.json"),
        "schema": str(tmp_path / "duie_schema" / "duie_schema.json")}


@pytest.mark.parametrize("obj", [["周杰伦"], {"value": "周杰伦"}, {"@value": 3}, None])
def test_an_object_neither_a_string_nor_a_value_object_exits_2_naming_the_line(tiny_checkpoint, tmp_path, capsys, obj):
    write_duie2_schemas(tmp_path / "duie_schema.json")
    write_lines(tmp_path / "duie_train.json", DUIE2_SENTENCES[:1] + [
        {"text": "王菲毕业于北京大学", "spo_list": [dict(duie2_spo("王菲", "毕业院校", "北京大学"), object=obj)]}])
    write_lines(tmp_path / "duie_dev.json", DUIE2_SENTENCES)
    with pytest.raises(SystemExit) as exit_info:
        run(rex.main, demo_flags(tiny_checkpoint, tmp_path, tmp_path / "out"))
    assert exit_info.value.code == 2
    assert re.search(r'^error: .*duie_train\.json line 2: expected each spo_list item to have "subject" and "predicate" '
                    r'strings and an "object" string or \{"@value": string\}, found', capsys.readouterr().err, re.M)


def test_a_folder_with_neither_releases_files_exits_2_listing_the_names_looked_for(tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(rex.main, demo_flags(tiny_checkpoint, tmp_path, tmp_path / "out"))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (  # the last line: the device line comes first
        "error: %s has none of the files looked for (DuIE 2019's train_data.json, dev_data.json, all_50_schemas; "
        "DuIE 2.0's duie_train.json, duie_dev.json, duie_schema.json): name them with --train-file, --dev-file, "
        "--schema-file" % tmp_path)


def test_predicted_triples_are_written_in_the_format_of_the_input():
    assert rex.output_spo("七里香", "歌手", "周杰伦", SCHEMAS, as_values=True) == {
        "subject": "七里香", "predicate": "歌手", "object": {"@value": "周杰伦"},
        "subject_type": "歌曲", "object_type": {"@value": "人物"}}
    assert rex.output_spo("七里香", "歌手", "周杰伦", SCHEMAS, as_values=False) == spo("七里香", "歌手", "周杰伦")
    assert rex.uses_values(DUIE2_SENTENCES[0]["spo_list"])
    assert rex.uses_values([{"object_type": {"@value": "人物"}, "predicate": "歌手", "subject_type": "歌曲"}])
    assert not rex.uses_values([spo("七里香", "歌手", "周杰伦")] + [{"predicate": "歌手", "object_type": "人物"}])


# ---------------------------------------------------------------------------------------------
# Training and prediction
# ---------------------------------------------------------------------------------------------

def demo_flags(tiny_checkpoint, data_dir, output_dir):
    """The tiny BERT's demo settings as flags: giving --bert-dir turns their automatic use off."""
    flags = ["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(data_dir), "--output-dir", str(output_dir)]
    for name, value in rex.TINY_BERT_SETTINGS.items():
        flags += ["--" + name.replace("_", "-"), str(value)]
    return flags


def test_every_pointer_starts_out_answering_no_at_every_position(tiny_checkpoint):
    subject_model, object_model, _ = rex.build_models(tiny_checkpoint, 5)
    token_ids = np.random.default_rng(0).integers(106, 1000, size=(2, 30))
    segment_ids = np.zeros_like(token_ids)
    outputs = subject_model.predict_on_batch([token_ids, segment_ids]) + object_model.predict_on_batch(
        [token_ids, segment_ids, np.array([[3], [5]]), np.array([[4], [9]])])
    for probabilities in outputs:  # a start at 0.5 everywhere costs ~0.7 an output (pointer_head)
        assert 0.005 < probabilities.mean() < 0.02 and probabilities.max() < 0.05


def test_the_tiny_model_learns_triples_from_a_synthetic_set(tiny_checkpoint, tmp_path, capsys):
    synthetic.write_relation(str(tmp_path), 600, seed=1)
    rex.main(demo_flags(tiny_checkpoint, tmp_path, tmp_path / "out") + ["--epochs", "3"])
    output = capsys.readouterr().out
    f1_per_epoch = [float(f1) for f1 in re.findall(r"epoch \d+: loss [\d.]+, dev f1 ([\d.]+)", output)]
    assert len(f1_per_epoch) == 3
    assert max(f1_per_epoch) > 0.1  # exact triples are never right by chance: any F1 this high is learned
    assert output.strip().splitlines()[-1] == "best dev f1: %.4f" % max(f1_per_epoch)


def test_training_writes_best_weights_that_predict_then_reads(tiny_checkpoint, tmp_path, capsys):
    data_dir, output_dir = tmp_path / "data", tmp_path / "out"
    data_dir.mkdir()
    write_schemas(data_dir)
    sentences = [{"text": "《稻香》是周杰伦演唱的歌曲", "spo_list": [spo("稻香", "歌手", "周杰伦")]},
                 {"text": "王菲，中国歌手，毕业于北京大学", "spo_list": [spo("王菲", "国籍", "中国"),
                                                                spo("王菲", "毕业院校", "北京大学"),
                                                                spo("王菲", "毕业院校", "清华大学")]}]
    write_lines(data_dir / "train_data.json", sentences * 4)
    write_lines(data_dir / "dev_data.json", sentences)
    flags = demo_flags(tiny_checkpoint, data_dir, output_dir)
    rex.main(flags + ["--epochs", "1"])
    output = capsys.readouterr().out
    assert "train_data.json: 4 triples skipped" in output
    assert re.fullmatch(r"best dev f1: \d\.\d{4}", output.strip().splitlines()[-1])
    assert os.path.isfile(best_weights_path(str(output_dir)))

    predict_file = tmp_path / "test_data.json"
    long_text = "王菲毕业于北京大学" * 70  # longer than BERT's 512 positions: cut to --maxlen, as in training
    write_lines(predict_file, [{"text": "《晴天》是周杰伦演唱的歌曲"}, {"text": "王菲毕业于北京大学"}, {"text": long_text}])
    rex.main(flags + ["--predict", "《晴天》是周杰伦演唱的歌曲", "今天天气不错", "--predict-file", str(predict_file)])
    output = capsys.readouterr().out
    lines = output.splitlines()
    assert "《晴天》是周杰伦演唱的歌曲" in lines and "今天天气不错" in lines
    written = output_dir / "test_data_pred.json"
    assert str(written) in output
    rows = [json.loads(line) for line in written.read_text(encoding="utf-8").splitlines()]
    assert [row["text"] for row in rows] == ["《晴天》是周杰伦演唱的歌曲", "王菲毕业于北京大学", long_text]
    assert all(isinstance(row["spo_list"], list) for row in rows)


def test_a_duie2_folder_trains_as_it_is_and_predictions_are_written_in_its_format(
        tiny_checkpoint, tmp_path, capsys, monkeypatch):
    data_dir, output_dir = tmp_path / "DuIE2.0", tmp_path / "out"
    data_dir.mkdir()
    write_duie2_schemas(data_dir / "duie_schema.json")
    write_lines(data_dir / "duie_train.json", DUIE2_SENTENCES * 3)
    write_lines(data_dir / "duie_dev.json", DUIE2_SENTENCES)
    flags = demo_flags(tiny_checkpoint, data_dir, output_dir)
    rex.main(flags + ["--epochs", "1"])
    output = capsys.readouterr().out
    assert "4 predicates: 歌手 饰演 毕业院校 国籍" in output
    assert "duie_train.json: 9 sentences, 9 with triples, 9 triples" in output
    assert "duie_train.json: 3 extra object slots not modelled (inWork 3)" in output
    assert re.fullmatch(r"best dev f1: \d\.\d{4}", output.strip().splitlines()[-1])

    # What the tiny model finds is chance; the format of what is written is the point here.
    monkeypatch.setattr(rex, "predict_triples", lambda models, tokenizer, texts, predicates, args: [
        {("七里香", "歌手", "周杰伦")} for _ in texts])
    write_lines(tmp_path / "duie_test2.json", [{"text": "《七里香》是周杰伦演唱的歌曲"}])
    rex.main(flags + ["--predict-file", str(tmp_path / "duie_test2.json")])
    written = (output_dir / "duie_test2_pred.json").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in written] == [{"text": "《七里香》是周杰伦演唱的歌曲", "spo_list": [
        {"subject": "七里香", "predicate": "歌手", "object": {"@value": "周杰伦"},
         "subject_type": "歌曲", "object_type": {"@value": "人物"}}]}]


def test_predictions_take_the_input_format_else_the_dev_file_format_else_the_schema_format(tmp_path):
    plain_schemas, value_dev = tmp_path / "53_schemas.json", tmp_path / "CMeIE_dev.json"
    write_lines(plain_schemas, [{"subject_type": "歌曲", "predicate": "歌手", "object_type": "人物"}])
    write_lines(value_dev, [{"text": "《七里香》是周杰伦演唱的歌曲", "spo_list": [duie2_spo("七里香", "歌手", "周杰伦")]}])
    flags = argparse.Namespace(data_dir=str(tmp_path / "nowhere"), dev_file=None)
    untyped_test = [{"text": "《七里香》是周杰伦演唱的歌曲"}]
    assert not rex.predictions_use_values(untyped_test, flags, str(plain_schemas))  # only the schema to go by
    flags.dev_file = str(value_dev)
    assert rex.predictions_use_values(untyped_test, flags, str(plain_schemas))  # CMeIE: its dev file decides
    assert not rex.predictions_use_values([{"text": "t", "spo_list": [spo("七里香", "歌手", "周杰伦")]}],
                                          flags, str(plain_schemas))  # the input's own items first
    flags.dev_file = None
    assert rex.predictions_use_values([{"text": "t", "spo_list": [duie2_spo("七里香", "歌手", "周杰伦")]}],
                                      flags, str(plain_schemas))  # first also over a plain schema file


def test_predicting_without_trained_weights_says_to_train_first(tiny_checkpoint, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_schemas(data_dir)
    with pytest.raises(UserError, match="no trained weights"):
        rex.main(demo_flags(tiny_checkpoint, data_dir, tmp_path / "out") + ["--predict", "今天天气不错"])


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    """A model trained three epochs on a slice of the bundled sample (the first ones find no triple), and its export.

    Low thresholds, the same for the export and --predict, so that there are many triples to compare.
    """
    folder = tmp_path_factory.mktemp("relation_export")
    bundled = os.path.join(os.path.dirname(os.path.abspath(rex.__file__)), "data", "relation")
    for name, lines in (("all_50_schemas", None), ("train_data.json", 400), ("dev_data.json", None)):
        with open(os.path.join(bundled, name), encoding="utf-8") as reader:
            (folder / name).write_text("".join(reader.readlines()[:lines]), encoding="utf-8")
    flags = demo_flags(tiny_checkpoint, folder, folder / "run") + ["--start-threshold", "0.2", "--end-threshold", "0.2"]
    rex.main(flags + ["--epochs", "3"])
    rex.main(flags + ["--export", str(folder / "export")])
    return flags, folder


def test_export_answers_raw_text_without_keras_bert_as_predict_does(exported, serve_standalone, capsys):
    flags, folder = exported
    rex.main(flags + ["--predict-file", str(folder / "dev_data.json")])
    rows = [json.loads(line) for line in (folder / "run" / "dev_data_pred.json").read_text(encoding="utf-8").splitlines()]
    predicted = [{(t["subject"], t["predicate"], t["object"]) for t in row["spo_list"]} for row in rows]

    outputs = serve_standalone(folder / "export", text=[row["text"] for row in rows])
    assert {name: dtype for name, (dtype, _) in outputs.items()} == {
        "text_index": "int32", "subject": "string", "predicate": "string", "object": "string"}
    served = list(zip(*(outputs[name][1] for name in ("text_index", "subject", "predicate", "object"))))
    assert len(served) == len(set(served))  # one entry per triple
    assert [{(s, p, o) for i, s, p, o in served if i == row} for row in range(len(rows))] == predicted
    assert len(served) > 10  # enough triples that the comparison means something


def test_export_without_trained_weights_says_how_to_train(tiny_checkpoint, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_schemas(data_dir)
    with pytest.raises(UserError, match=r"no trained weights at .*python relation_extraction.py --output-dir"):
        rex.main(demo_flags(tiny_checkpoint, data_dir, tmp_path / "out") + ["--export", str(tmp_path / "export")])
