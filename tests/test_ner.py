"""ner.py: the five layouts as published, the CRF against brute force, decoding, windows, learning, --predict,
--submission, the export, and bad input."""
import contextlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import ner
from fine_tuning import UserError, run

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(ner.__file__)), "data", "ner")


def sample(*parts):
    return os.path.join(SAMPLES, *parts)


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as writer:
        writer.writelines(line + "\n" for line in lines)
    return str(path)


def write_json_lines(path, records):
    return write_lines(path, [json.dumps(record, ensure_ascii=False) for record in records])


def tagged_lines(text, tags, separator=" "):
    return ["%s%s%s" % (character, separator, tag) for character, tag in zip(text, tags)] + [""]


# ---------------------------------------------------------------------------------------------
# The layouts, read field for field from the bundled samples
# ---------------------------------------------------------------------------------------------

def test_cluener_lines_become_texts_with_end_exclusive_offsets_and_test_lines_keep_their_id():
    train = ner.read_examples(sample("cluener", "train.json"))
    assert len(train) == 1000
    assert train[0] == ner.Example(1, "据星海大学介绍，今年国庆前往月牙泉的游客明显增多。",
                                   [("organization", 1, 5), ("scene", 14, 17)], None, False)
    # {"movie": {"白鹭洲": [[3, 5]]}, "address": {"昆明天河区": [[8, 12]]}, "name": {"郑凯": [[21, 22]]}}
    assert train[1].entities == [("movie", 3, 6), ("address", 8, 13), ("name", 21, 23)]
    assert all(example.text[start:end] for example in train for _, start, end in example.entities)
    test = ner.read_examples(sample("cluener", "test.json"))
    assert test[0] == ner.Example(1, "电影《无声之城》在郑州新城区举行首映礼，导演周婷到场。", None, 0, False)
    assert [example.id for example in test] == list(range(100))


@pytest.mark.parametrize("folder, files, first, second_line", [
    ("peoples_daily", ("example.train", "example.dev", "example.test"),
     ("绿野环保协会的同志们在青岛度过了难忘的一天。", [("ORG", 0, 6), ("LOC", 11, 13)]), 24),
    ("msra", ("msra_train_bio.txt", None, "msra_test_bio.txt"),
     ("成都市交通运输局决定，从下月起在北京试行新的管理办法。", [("ORG", 0, 8), ("LOC", 16, 18)]), 29),
    ("weibo", ("weiboNER_2nd_conll.train", "weiboNER_2nd_conll.dev", "weiboNER_2nd_conll.test"),
     ("公司今天加班到十点，累成狗了", [("ORG.NOM", 0, 2)]), 16),
    ("resume", ("train.char.bmes", "dev.char.bmes", "test.char.bmes"),
     ("吴浩然女士，本科，毕业于市作家协会会计学专业。", [("NAME", 0, 3), ("EDU", 6, 8), ("ORG", 12, 17), ("PRO", 17, 20)]),
     25),
])
def test_tagged_layouts_are_found_by_their_file_names_and_read_character_by_character(folder, files, first,
                                                                                      second_line, capsys):
    paths = ner.find_data_files(sample(folder), {"train": None, "dev": None, "test": None})
    assert paths == {split: name and sample(folder, name) for split, name in zip(("train", "dev", "test"), files)}
    examples = ner.read_examples(paths["train"])
    assert (examples[0].text, examples[0].entities) == first
    assert examples[0].line == 1 and examples[1].line == second_line and examples[0].character_lines
    assert "%s: %s tags" % (paths["train"], "BMES" if folder == "resume" else "BIO") in capsys.readouterr().out


def test_weibo_digits_are_dropped_and_its_types_keep_their_nam_and_nom():
    with open(sample("weibo", "weiboNER_2nd_conll.train"), encoding="utf-8") as reader:
        assert reader.readline() == "公0\tB-ORG.NOM\n" and reader.readline() == "司1\tI-ORG.NOM\n"
    types = {entity_type for example in ner.read_examples(sample("weibo", "weiboNER_2nd_conll.train"))
             for entity_type, _, _ in example.entities}
    assert types == {"PER.NAM", "PER.NOM", "GPE.NAM", "LOC.NAM", "LOC.NOM", "ORG.NAM", "ORG.NOM"}


def test_resume_bmes_reads_m_tags_inside_entities_and_single_character_entities_from_s_tags():
    examples = ner.read_examples(sample("resume", "train.char.bmes"))
    lines = open(sample("resume", "train.char.bmes"), encoding="utf-8").read().split("\n")
    assert lines[:3] == ["吴 B-NAME", "浩 M-NAME", "然 E-NAME"] and examples[0].entities[0] == ("NAME", 0, 3)
    assert lines[12:17] == ["市 B-ORG", "作 M-ORG", "家 M-ORG", "协 M-ORG", "会 E-ORG"]
    assert examples[0].entities[2] == ("ORG", 12, 17)
    example = next(example for example in examples if example.line == 159)
    assert example.text == "张伟，男，壮族，湘籍，上海人。"
    assert example.entities == [("NAME", 0, 2), ("RACE", 5, 7), ("LOC", 8, 9), ("LOC", 11, 13)]
    assert lines[159 - 1 + 8] == "湘 S-LOC" and lines[159 - 1 + 11:159 - 1 + 13] == ["上 B-LOC", "海 E-LOC"]


def test_long_sentences_of_the_news_layouts_exceed_the_default_maxlen():
    for path in (sample("peoples_daily", "example.train"), sample("msra", "msra_train_bio.txt")):
        assert max(len(example.text) for example in ner.read_examples(path)) > ner.SETTINGS["maxlen"]


def test_without_a_dev_file_a_tenth_is_held_out_and_a_labelled_test_file_is_kept(capsys):
    data, types = ner.load_data(sample("msra"), seed=3)
    assert (len(data["train"]), len(data["dev"]), len(data["test"])) == (108, 12, 40)
    assert not {example.line for example in data["dev"]} & {example.line for example in data["train"]}
    assert types == ["LOC", "ORG", "PER"]
    assert ner.load_data(sample("msra"), seed=3)[0]["dev"] == data["dev"] != ner.load_data(sample("msra"), 4)[0]["dev"]
    data, _ = ner.load_data(sample("cluener"), seed=3)
    assert data["test"] is None and "test.json has no labels" in capsys.readouterr().out


def test_a_named_training_file_of_any_name_is_read_by_its_content(tmp_path):
    path = write_lines(tmp_path / "my_ner.txt", tagged_lines("张伟在北京", ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], "\t"))
    assert ner.find_data_files(str(tmp_path), {"train": path, "dev": None, "test": None}) == {
        "train": path, "dev": None, "test": None}
    assert ner.read_examples(path) == [ner.Example(1, "张伟在北京", [("PER", 0, 2), ("LOC", 3, 5)], None, True)]


def test_every_window_of_a_long_text_is_a_training_example_with_its_own_characters_tags(tokenizer):
    text = "我在北京见到了张伟和李娜"  # 12 characters: windows of 8 start at 0 and 4
    tag_ids = {name: i for i, name in enumerate(ner.tag_names(["LOC", "PER"]))}
    tags, _ = ner.entity_tags(len(text), [("LOC", 2, 4), ("PER", 7, 9), ("PER", 10, 12)], tag_ids)
    windows = ner.make_windows(tokenizer, ["短", text], maxlen=8, stride=4, source="train")
    assert [(window.text, window.start) for window in windows] == [(0, 0), (1, 0), (1, 4)]
    (token_ids, segment_ids, batch_tags), = ner.make_batch(windows, [np.zeros(1, np.int32), tags], [2, 0, 1])
    assert token_ids.shape == segment_ids.shape == (3, 10) and batch_tags.shape == (3, 8)
    assert token_ids[0].tolist() == tokenizer.encode(first=text[4:])[0]  # [CLS] 见到了张伟和李娜 [SEP]
    assert batch_tags[0].tolist() == tags[4:].tolist() and batch_tags[2].tolist() == tags[:8].tolist()
    assert batch_tags[1].tolist() == [0] * 8 and token_ids[1, 3:].tolist() == [0] * 7  # padding


# ---------------------------------------------------------------------------------------------
# The CRF against brute force
# ---------------------------------------------------------------------------------------------

def all_paths(scores, transitions, length):
    """(score, path) of every tag path of the first `length` positions."""
    for path in itertools.product(range(scores.shape[1]), repeat=length):
        yield (sum(scores[t, tag] for t, tag in enumerate(path))
               + sum(transitions[a, b] for a, b in zip(path, path[1:])), path)


@pytest.fixture
def crf_case():
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(12, 5, 3)).astype(np.float32) * 2
    transitions = rng.normal(size=(3, 3)).astype(np.float32) * 2
    return scores, transitions, np.array([5, 4, 3, 2, 1, 0, 5, 3, 1, 2, 4, 3], np.int32)


def test_crf_log_partition_is_the_log_sum_over_every_path_and_the_path_score_each_paths_score(crf_case):
    scores, transitions, lengths = crf_case
    log_partition = ner.crf_log_partition(scores, lengths, transitions).numpy()
    for row, length in enumerate(lengths):
        path_scores = [score for score, _ in all_paths(scores[row], transitions, length)]
        assert log_partition[row] == pytest.approx(np.logaddexp.reduce(path_scores) if length else 0.0, rel=1e-5)
    rng = np.random.default_rng(1)
    tags = rng.integers(0, 3, size=(12, 5)).astype(np.int32)
    path_scores = ner.crf_path_score(scores, tags, lengths, transitions).numpy()
    for row, length in enumerate(lengths):
        expected = dict((path, score) for score, path in all_paths(scores[row], transitions, length))
        assert path_scores[row] == pytest.approx(expected[tuple(tags[row, :length])], rel=1e-5, abs=1e-5)
    likelihood = ner.crf_log_likelihood(scores, tags, lengths, transitions).numpy()
    assert np.allclose(likelihood, path_scores - log_partition, atol=1e-5)


def test_viterbi_finds_the_best_path_by_brute_force_and_zeros_past_each_length(crf_case):
    scores, transitions, lengths = crf_case
    decoded = ner.viterbi_decode(scores, lengths, transitions).numpy()
    for row, length in enumerate(lengths):
        best = max(all_paths(scores[row], transitions, length))[1]
        assert tuple(decoded[row, :length]) == best and not decoded[row, length:].any()
    # A batch of empty texts (nothing but [CLS] and [SEP]) has no position at all.
    assert ner.viterbi_decode(np.zeros((2, 0, 3), np.float32), np.zeros(2, np.int32), transitions).shape == (2, 0)


def test_strong_transitions_overrule_the_per_character_best_tags():
    scores = np.array([[[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]], np.float32)  # O, B-X, I-X
    forbid_i_after_o = np.zeros((3, 3), np.float32)
    assert ner.viterbi_decode(scores, np.array([3]), forbid_i_after_o).numpy().tolist() == [[1, 2, 2]]
    scores[0, 0] = [2.0, 0.0, 0.0]  # per character: O I-X I-X; with I-X after O forbidden: O B-X I-X
    forbid_i_after_o[0, 2] = -10
    assert ner.viterbi_decode(scores, np.array([3]), forbid_i_after_o).numpy().tolist() == [[0, 1, 2]]


# ---------------------------------------------------------------------------------------------
# Decoding: tags to entities, ill-formed sequences, in Python and in the graph
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tags, entities", [
    ("B-PER I-PER O B-LOC", [("PER", 0, 2), ("LOC", 3, 4)]),
    ("O I-PER I-PER O", [("PER", 1, 3)]),  # I- after O starts an entity (conlleval), it is not dropped
    ("B-PER I-LOC I-LOC", [("PER", 0, 1), ("LOC", 1, 3)]),  # I- of another type starts its own
    ("B-PER B-PER I-PER", [("PER", 0, 1), ("PER", 1, 3)]),  # B- always starts a new one
    ("B-ORG M-ORG E-ORG S-LOC O", [("ORG", 0, 3), ("LOC", 3, 4)]),  # BMES
    ("B-ORG I-ORG E-ORG S-LOC B-PER E-PER", [("ORG", 0, 3), ("LOC", 3, 4), ("PER", 4, 6)]),  # BIOES
    ("O E-LOC M-LOC", [("LOC", 1, 2), ("LOC", 2, 3)]),  # an E- after O is a one-character entity
    ("S-LOC S-LOC E-LOC", [("LOC", 0, 1), ("LOC", 1, 2), ("LOC", 2, 3)]),  # S- and E- end their entity
    ("B-PER.NAM I-PER.NAM I-PER.NOM", [("PER.NAM", 0, 2), ("PER.NOM", 2, 3)]),
    ("I-PER", [("PER", 0, 1)]),
    ("", []),
])
def test_tag_sequences_become_entities_as_conlleval_reads_them(tags, entities):
    assert ner.tags_to_entities(tags.split()) == entities


def test_the_graph_decoder_finds_the_entities_of_the_python_one_on_any_bio_sequence():
    rng = np.random.default_rng(3)
    names = np.asarray(ner.tag_names(["a", "b", "c"]))  # O B-a I-a B-b I-b B-c I-c
    tags = rng.integers(0, 7, size=(300, 9)).astype(np.int32)
    tags[:100] = np.where(rng.random((100, 9)) < 0.6, 0, tags[:100])  # sparser rows, like real ones
    expected = [[row, "abc".index(entity_type), start, end] for row in range(len(tags))
                for entity_type, start, end in ner.tags_to_entities(names[tags[row]])]
    assert ner.entities_in_graph(tags).numpy().tolist() == expected
    assert ner.entities_in_graph(np.zeros((2, 0), np.int32)).numpy().shape == (0, 4)


def test_an_entity_overlapping_one_already_tagged_is_not_trained_on_and_is_counted():
    tag_ids = {name: i for i, name in enumerate(ner.tag_names(["LOC", "ORG"]))}
    tags, overlapping = ner.entity_tags(8, [("LOC", 2, 4), ("ORG", 0, 5), ("LOC", 6, 8), ("ORG", 6, 7)], tag_ids)
    assert [ner.tag_names(["LOC", "ORG"])[tag] for tag in tags] == [
        "B-ORG", "I-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC"]
    assert overlapping == 2


# ---------------------------------------------------------------------------------------------
# Windows over long texts
# ---------------------------------------------------------------------------------------------

def test_each_character_takes_its_tag_from_the_window_where_it_lies_farthest_from_the_edges():
    for length, maxlen, stride in itertools.product(range(0, 30), (1, 4, 7, 10), (1, 3, 4, 5)):
        if stride > maxlen:
            continue
        starts = ner.window_starts(length, maxlen, stride)
        width = min(length, maxlen)
        expected = []
        for character in range(length):
            room = [min(character - start, start + width - 1 - character) for start in starts]
            expected.append(room.index(max(room)))  # the first of the best on a tie
        assert ner.window_owners(length, starts, maxlen).tolist() == expected, (length, maxlen, stride)


class PartialNameTagger:
    """A stand-in model: tags 王建国 as a name where all of it lies in the window, and the part of it that
    a window's edge cuts off as an address, as a model that sees only part of a name might."""

    NAME = "王建国"

    def __init__(self, tokenizer):
        self.name_ids = {tokenizer._token_dict[character] for character in self.NAME}

    def predict_on_batch(self, inputs):
        token_ids = inputs[0]
        tags = np.zeros((len(token_ids), token_ids.shape[1] - 2), np.int32)  # O B-address I-address B-name I-name
        for row, ids in enumerate(token_ids):
            position = 0  # every window here is whole: no [SEP] or padding among ids[1:-1]
            for is_name, run in itertools.groupby(ids[1:-1], key=lambda token_id: token_id in self.name_ids):
                run = len(list(run))
                if is_name:
                    whole = run == len(self.NAME)
                    tags[row, position:position + run] = [3 if whole else 1] + [4 if whole else 2] * (run - 1)
                position += run
        return tags


@pytest.mark.parametrize("name_start", range(0, 14))
def test_an_entity_across_a_window_boundary_is_found_once_in_the_right_place(name_start, tokenizer):
    text = "我" * name_start + PartialNameTagger.NAME + "你" * (16 - name_start)
    entities = ner.predict_entities(PartialNameTagger(tokenizer), tokenizer, [text], ["address", "name"], maxlen=8,
                                    stride=4, batch_size=3, source="test")
    assert entities == [[("name", name_start, name_start + 3)]]


# ---------------------------------------------------------------------------------------------
# Metric
# ---------------------------------------------------------------------------------------------

def test_an_entity_counts_as_right_only_when_type_start_and_end_all_match():
    gold = [[("PER", 0, 2), ("LOC", 3, 5)], [("ORG", 0, 4)], []]
    predicted = [[("PER", 0, 2), ("LOC", 3, 4)], [("LOC", 0, 4)], [("PER", 1, 2)]]
    precision, recall, f1 = ner.entity_scores(predicted, gold)
    assert (precision, recall, f1) == pytest.approx((1 / 4, 1 / 3, 2 / 7))
    report = ner.entity_report(predicted, gold, ["LOC", "ORG", "PER"]).splitlines()
    assert report[1].split() == ["LOC", "0.0000", "0.0000", "0.0000", "1"]
    assert report[2].split() == ["ORG", "0.0000", "0.0000", "0.0000", "1"]
    assert report[3].split() == ["PER", "0.5000", "1.0000", "0.6667", "1"]
    assert report[4].split() == ["micro", "0.2500", "0.3333", "0.2857", "3"]
    assert ner.entity_scores([[]], [[]]) == (0.0, 0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# Learning (tiny random BERT): the bundled CLUENER sample read in windows of 16 characters
# ---------------------------------------------------------------------------------------------

def train_run(tiny_checkpoint, folder, crf):
    """Train 3 epochs on 400 lines of the bundled CLUENER sample with --maxlen 16, so that every text is read
    in windows; (flags, printed lines, dev examples, the untrained model's dev f1)."""
    lines = open(sample("cluener", "train.json"), encoding="utf-8").read().splitlines()
    write_lines(folder / "train.json", lines[:400])
    write_lines(folder / "dev.json", open(sample("cluener", "dev.json"), encoding="utf-8").read().splitlines()[:60])
    flags = ["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(folder / "run"), "--maxlen", "16",
             "--stride", "8", "--lr", "2e-3", "--crf" if crf else "--no-crf"]
    types = sorted({entity_type for example in ner.read_examples(str(folder / "train.json"))
                    for entity_type, _, _ in example.entities})
    dev = ner.read_examples(str(folder / "dev.json"))
    untrained, _ = ner.build_model(tiny_checkpoint, len(ner.tag_names(types)), crf)
    predicted = ner.predict_entities(untrained, ner.OurTokenizer(ner.load_vocab()), [example.text for example in dev],
                                     types, 16, 8, 32, "dev")
    untrained_f1 = ner.entity_scores(predicted, [example.entities for example in dev])[2]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ner.main(flags + ["--data-dir", str(folder), "--epochs", "3", "--batch-size", "16"])
    return flags, printed.getvalue().strip().splitlines(), dev, untrained_f1


@pytest.fixture(scope="module")
def softmax_run(tiny_checkpoint, tmp_path_factory):
    return train_run(tiny_checkpoint, tmp_path_factory.mktemp("ner_softmax"), crf=False)


@pytest.fixture(scope="module")
def crf_run(tiny_checkpoint, tmp_path_factory):
    return train_run(tiny_checkpoint, tmp_path_factory.mktemp("ner_crf"), crf=True)


@pytest.mark.parametrize("run_name", ["softmax_run", "crf_run"])
def test_the_tiny_model_learns_entities_read_in_windows_with_either_head(run_name, request):
    flags, lines, dev, untrained_f1 = request.getfixturevalue(run_name)
    assert lines[-1].startswith("best dev f1: ")
    best = float(lines[-1].split(": ")[1])
    assert best >= untrained_f1 + 0.4 and best >= 0.5  # the untrained model finds next to no entity
    assert "train: 400 of 400 texts are longer than --maxlen 16" in "\n".join(lines)
    with open(os.path.join(flags[flags.index("--output-dir") + 1], ner.TAGS_NAME), encoding="utf-8") as reader:
        assert json.load(reader)["crf"] == (run_name == "crf_run")


def test_a_run_prints_each_epoch_ends_with_best_dev_f1_and_writes_the_wrong_dev_entities(tiny_checkpoint, tmp_path,
                                                                                         capsys):
    write_lines(tmp_path / "example.train", sum((tagged_lines("张伟在北京工作" * 3, ["B-PER", "I-PER", "O", "B-LOC", "I-LOC",
                                                                                   "O", "O"] * 3) for _ in range(20)), []))
    write_lines(tmp_path / "example.dev", tagged_lines("李娜去了上海", ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]))
    output_dir = str(tmp_path / "run")
    ner.main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(tmp_path), "--output-dir", output_dir,
              "--epochs", "1", "--maxlen", "8"])
    output = capsys.readouterr().out
    assert "train: 20 of 20 texts are longer than --maxlen 8: read in 100 windows (--stride 4)" in output
    assert re.search(r"epoch 1: loss [\d.]+, dev f1 [\d.]+ \(best [\d.]+, saved\), precision [\d.]+, recall [\d.]+",
                     output)
    last = output.strip().splitlines()[-1]
    assert re.fullmatch(r"best dev f1: [01]\.\d{4}", last)
    report = open(os.path.join(output_dir, "dev_report.txt"), encoding="utf-8").read()
    assert report in output and report.splitlines()[-1].split()[3] == last.split(": ")[1]
    errors = open(os.path.join(output_dir, "dev_errors.tsv"), encoding="utf-8").read().splitlines()
    assert errors[0] == "line\terror\ttype\tstart\tend\tentity\ttext"
    right = round(float(report.splitlines()[-1].split()[2]) * 2)  # recall times the 2 gold entities
    assert sum(row.split("\t")[1] == "missed" for row in errors[1:]) == 2 - right
    for row in errors[1:]:
        line, error, entity_type, start, end, entity, text = row.split("\t")
        assert line == "1" and text == "李娜去了上海" and text[int(start):int(end)] == entity


@pytest.mark.parametrize("folder, train_texts", [("peoples_daily", 120), ("msra", 108), ("weibo", 100), ("resume", 100)])
def test_each_tagged_layout_trains_from_its_own_file_names_and_scores_its_test_file(folder, train_texts,
                                                                                     tiny_checkpoint, tmp_path, capsys):
    ner.main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", sample(folder), "--output-dir", str(tmp_path),
              "--epochs", "1", "--maxlen", "64"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert "train: %d texts" % train_texts in "\n".join(lines)  # MSRA has no dev file: a tenth of 120 is held out
    assert re.fullmatch(r"test f1 with the best dev weights: [01]\.\d{4}", lines[-2])
    assert re.fullmatch(r"best dev f1: [01]\.\d{4}", lines[-1])
    assert os.path.isfile(tmp_path / "test_report.txt")


# ---------------------------------------------------------------------------------------------
# Prediction, submission and the export
# ---------------------------------------------------------------------------------------------

STATUS_LINE = re.compile(r"^(\S+: \d+ of \d+ texts are longer than|wrote the entities of)")


def printed_entities(output):
    """{text: [(type, start, end, entity)]} of --predict's output: each text, then its entities indented."""
    found, text = {}, None
    for line in output.split("\n")[:-1]:
        if line.startswith("    "):
            if line != "    no entity found":
                entity_type, offsets, entity = line[4:].split(" ", 2)  # an entity may begin with a space
                start, end = map(int, offsets.split(":"))
                found[text].append((entity_type, start, end, entity))
        elif not STATUS_LINE.match(line):
            text = line
            found[text] = []
    return found


def test_predict_file_prints_entities_and_writes_clue_submissions_with_inclusive_offsets(softmax_run, tmp_path, capsys):
    flags, _, dev, _ = softmax_run
    test_file = write_json_lines(tmp_path / "test.json", [{"id": 500 + i, "text": e.text} for i, e in enumerate(dev)])
    capsys.readouterr()
    ner.main(flags + ["--predict-file", test_file, "--submission", str(tmp_path / "cluener_predict.json")])
    printed = printed_entities(capsys.readouterr().out)
    submitted = [json.loads(line) for line in open(tmp_path / "cluener_predict.json", encoding="utf-8")]
    assert [row["id"] for row in submitted] == list(range(500, 500 + len(dev)))
    for example, row in zip(dev, submitted):
        from_submission = sorted((entity_type, start, end + 1, entity) for entity_type, mentions in row["label"].items()
                                 for entity, spans in mentions.items() for start, end in spans)
        assert from_submission == sorted(printed[example.text])
        assert all(example.text[start:end] == entity for _, start, end, entity in from_submission)
    assert sum(map(len, printed.values())) > len(dev)  # the model finds entities: the comparison means something


def test_predict_without_a_trained_model_says_how_to_train(tiny_checkpoint, tmp_path):
    with pytest.raises(UserError, match=r"no trained model in .* train first with `python ner.py --output-dir"):
        ner.main(["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(tmp_path), "--predict", "张伟"])


@pytest.mark.parametrize("run_name", ["softmax_run", "crf_run"])
def test_export_answers_raw_text_without_keras_bert_as_predict_does(run_name, request, serve_standalone, tmp_path,
                                                                    capsys):
    flags, _, dev, _ = request.getfixturevalue(run_name)
    ner.main(flags + ["--export", str(tmp_path / "export")])
    texts = ["", "Ｆｕｌｌ　ｗｉｄｔｈ 王建国😀在北京", "郑凯" * 40, "".join(example.text for example in dev[:6])] + [
        example.text for example in dev]  # the empty text goes by --predict: a file's blank lines are skipped
    outputs = serve_standalone(tmp_path / "export", text=texts)
    assert {name: dtype for name, (dtype, _) in outputs.items()} == {
        "text_index": "int32", "type": "string", "start": "int32", "end": "int32", "entity": "string"}
    served = {i: [] for i in range(len(texts))}
    for i, entity_type, start, end, entity in zip(*(outputs[name][1] for name in ("text_index", "type", "start", "end",
                                                                                   "entity"))):
        served[i].append((entity_type, start, end, entity))
        assert texts[i][start:end] == entity
    predict_file = write_lines(tmp_path / "texts.txt", texts[1:])
    capsys.readouterr()
    ner.main(flags + ["--predict", texts[0], "--predict-file", predict_file])
    printed = printed_entities(capsys.readouterr().out)
    assert [printed[text] for text in texts] == [served[i] for i in range(len(texts))]
    assert len(set(entity for found in served.values() for entity in found)) > 20  # something to compare


def test_export_without_trained_weights_says_how_to_train(tiny_checkpoint, tmp_path):
    with pytest.raises(UserError, match=r"train first with `python ner.py --output-dir"):
        ner.main(["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(tmp_path / "run"),
                  "--export", str(tmp_path / "export")])
    assert not os.path.exists(tmp_path / "export")


def test_resume_with_other_entity_types_or_head_than_the_interrupted_run_is_refused(tiny_checkpoint, tmp_path):
    write_lines(tmp_path / "example.train", GOOD_TRAIN * 10)
    (tmp_path / ner.TAGS_NAME).write_text('{"types": ["LOC", "PER"], "crf": false}', encoding="utf-8")
    with pytest.raises(UserError, match=r"tags\.json holds other entity types or another head than this run's"):
        ner.main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(tmp_path), "--output-dir", str(tmp_path),
                  "--resume"])


def test_the_crf_is_the_default_head_and_no_crf_gives_the_softmax():
    parser = ner.build_parser()
    assert parser.parse_args([]).crf is True  # measured ahead on real weights (benchmarks/README.md)
    assert parser.parse_args(["--no-crf"]).crf is False


def test_help_lists_the_shared_flags_and_ner_s_own():
    result = subprocess.run([sys.executable, "ner.py", "--help"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(ner.__file__)))
    assert result.returncode == 0
    for flag in ("--bert-dir", "--data-dir", "--train-file", "--dev-file", "--test-file", "--output-dir", "--epochs",
                 "--batch-size", "--maxlen", "--stride", "--lr", "--seed", "--export", "--resume", "--bucket",
                 "--accumulate", "--mixed-precision", "--xla", "--strategy", "--predict", "--predict-file",
                 "--submission", "--crf"):
        assert re.search(r"^  %s\b" % flag, result.stdout, re.M), flag  # listed as a flag, not only named


# ---------------------------------------------------------------------------------------------
# Bad input: one error line naming the file and the line, exit status 2, nothing written lost
# ---------------------------------------------------------------------------------------------

GOOD_TRAIN = tagged_lines("张伟在北京", ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"])
DEEP = "[" * 100000 + "]" * 100000


@pytest.mark.parametrize("files, message", [
    ({"example.train": GOOD_TRAIN + tagged_lines("李娜", ["B-PER", "X-PER"])},
     r"example\.train line 8: tag 'X-PER' is not O or one of B-, I-, M-, E-, S- followed by -TYPE"),
    ({"example.train": GOOD_TRAIN + tagged_lines("李娜", ["B-PER", "PER"])}, r"example\.train line 8: tag 'PER' is not O"),
    ({"example.train": GOOD_TRAIN + tagged_lines("李娜", ["B-PER", "M-PER"])},
     r"example\.train line 8: tag 'M-PER' is BMES', but line 2's 'I-PER' is BIO's or BIOES': a file uses one tagging"),
    ({"example.train": GOOD_TRAIN + ["李", "娜 I-PER", ""]},
     r"example\.train line 7: expected a character and its tag, separated by a tab or a space, found '李'"),
    ({"example.train": GOOD_TRAIN + ["李娜 B-PER", ""]}, r"example\.train line 7: expected a character and its tag"),
    ({"example.train": GOOD_TRAIN, "example.dev": tagged_lines("上海", ["B-GPE", "I-GPE"])},
     r"example\.dev line 1: entity type 'GPE' never occurs in the training file .*example\.train \(its types: LOC, PER\)"),
    ({"example.train": []}, r"data file .*example\.train is empty"),
    ({"example.train": ["", "  ", ""]}, r"data file .*example\.train is empty"),
    ({"train.json": ['{"text": "张伟在北京", "label": {"name": {"张伟": [[0, 1]]}}}',
                     '{"text": "李娜", "label": {"name": {"李娜": [[0, 2]]}}}']},
     r"train\.json line 2: name '李娜' at \[0, 2\] lies outside the text of 2 characters"),
    ({"train.json": ['{"text": "张伟在北京", "label": {"name": {"张伟": [[0, 1]]}}}',
                     '{"text": "李娜在上海", "label": {"address": {"上海": [[2, 3]]}}}']},
     r"train\.json line 2: address '上海' at \[2, 3\]: the text there is '在上'"),
    ({"train.json": ['{"text": "张伟", "label": {"name": {"张伟": [0, 1]}}}']},
     r"train\.json line 1: expected \"label\" to be \{type: \{entity: \[\[start, end\], \.\.\.\]\}\}, found 0 for '张伟'"),
    ({"train.json": ['{"text": "张伟", "label": {"name": {"张伟": [[0, 1]]}}}', '{"text": "李娜"}']},
     r"train\.json line 2: expected a \"label\" \{type: \{entity: \[\[start, end\], \.\.\.\]\}\}, found none"),
    ({"train.json": ['{"text": "张伟", "label": {"name": {"张伟": [[0, 1]]}}}', DEEP]},
     r"train\.json line 2: expected one JSON object, got malformed JSON"),
    ({"train.json": ['{"text": "张伟", "label": {"name": {"张伟": [[0, 1]]}}}'],
      "dev.json": ['{"text": "上海", "label": {"address": {"上海": [[0, 1]]}}}']},
     r"dev\.json line 1: entity type 'address' never occurs in the training file"),
], ids=["tag_outside_schemes", "tag_without_prefix", "mixed_schemes", "character_without_tag", "two_characters",
        "dev_type_unknown", "empty_file", "blank_file", "cluener_outside_text", "cluener_misspelled",
        "cluener_span_shape", "cluener_label_missing", "deep_json", "cluener_dev_type_unknown"])
def test_bad_input_is_one_error_line_naming_the_file_and_line(files, message, tiny_checkpoint, tmp_path, capsys):
    for name, lines in files.items():
        write_lines(tmp_path / name, lines) if lines else (tmp_path / name).write_text("", encoding="utf-8")
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    (output_dir / ner.TAGS_NAME).write_text('{"types": ["old"], "crf": false}', encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        run(ner.main, ["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(tmp_path),
                       "--output-dir", str(output_dir)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search("^error: .*" + message, err, re.M) and "Traceback" not in err
    assert len(err.splitlines()[-1]) < 400  # the message quotes a piece of the input, never all of it
    assert (output_dir / ner.TAGS_NAME).read_text(encoding="utf-8") == '{"types": ["old"], "crf": false}'


def test_a_gbk_file_is_named_with_the_command_to_convert_it(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "example.train").write_bytes("\n".join(GOOD_TRAIN).encode("gbk"))
    with pytest.raises(SystemExit) as exit_info:
        run(ner.main, ["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(tmp_path),
                       "--output-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert re.search(r"^error: .*example\.train line 1 is not UTF-8 \(it looks like GBK/GB18030: iconv -f GB18030",
                     capsys.readouterr().err, re.M)


@pytest.mark.parametrize("name, line", [
    ("example.train", "中" * 10 ** 6),
    ("train.json", json.dumps({"text": "中" * 10 ** 6, "label": {"name": {"中" * 10 ** 6: [[1, 10 ** 6]]}}},
                              ensure_ascii=False)),
])
def test_a_million_character_line_is_refused_quickly_with_a_short_message(name, line, tiny_checkpoint, tmp_path,
                                                                          capsys):
    write_lines(tmp_path / name, [line])
    began = time.monotonic()
    with pytest.raises(UserError) as error:
        ner.load_data(str(tmp_path), seed=0)
    assert time.monotonic() - began < 10
    assert len(str(error.value)) < 300 and "line 1" in str(error.value)


def test_a_labelled_test_file_with_an_unlabelled_line_is_an_error_naming_it(tmp_path):
    write_json_lines(tmp_path / "train.json", [{"text": "张伟", "label": {"name": {"张伟": [[0, 1]]}}}] * 10)
    write_json_lines(tmp_path / "test.json", [{"text": "张伟", "label": {"name": {"张伟": [[0, 1]]}}}, {"text": "李娜"}])
    with pytest.raises(UserError, match=r"test\.json line 2: expected a \"label\""):
        ner.load_data(str(tmp_path), seed=0)
