"""Write the NER samples in data/ner/, each in the exact layout of a published Chinese NER set.

Every sentence is made up from the templates below; no line is taken from the real sets. Only the
layouts are the publishers': file names, JSON fields or columns, separators, tag names and
schemes, and each one's quirks (CLUENER's inclusive offsets and unlabelled test file with ids,
Weibo's digit after each character, Resume's BMES tags, MSRA's missing dev file). Entities are
drawn from small fixed lists and sit in telling contexts, so that a tiny model can learn them a
little: the samples are for smoke runs and tests, not for judging a model. data/README.md says
where each real set comes from.

    python data/ner/ner_samples.py                    # rewrites data/ner/
    python data/ner/ner_samples.py --out /tmp/ner --scale 10
"""
import argparse
import json
import os
import random
import string

NAMES = ["王建国", "李晓梅", "张伟", "刘洋", "陈思远", "杨帆", "赵敏", "黄志强", "周婷", "吴浩然", "徐静", "孙磊",
         "胡丽娟", "朱文博", "高翔", "林晓东", "何雪", "郭子墨", "马骏", "罗佳琪", "郑凯", "梁雨桐", "谢宁", "宋明轩"]
PLACES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "重庆", "天津", "苏州", "长沙",
          "郑州", "青岛", "厦门", "昆明", "哈尔滨", "兰州", "南宁"]
ADDRESSES = ["{place}市{district}区{road}路{number}号", "{place}{district}区", "{place}市{road}大街"]
DISTRICTS = ["东城", "西湖", "滨江", "天河", "高新", "江北", "新城", "开发"]
ROADS = ["人民", "解放", "中山", "建设", "长江", "文化", "和平", "光明"]
COMPANIES = ["华信科技", "金鹰集团", "远洋地产", "天宇电子", "盛达证券", "恒通银行", "新锐传媒", "博远股份",
             "海川物流", "瑞丰食品", "鼎盛化工", "汇通保险"]
ORGANIZATIONS = ["红星足球俱乐部", "市青年志愿者协会", "东方篮球队", "星海大学", "蓝天救援队", "市作家协会",
                 "青松中学", "绿野环保协会"]
GOVERNMENTS = ["{place}市政府", "{place}市教育局", "{place}市公安局", "{place}市交通运输局", "{place}市卫生健康委员会"]
POSITIONS = ["董事长", "总经理", "教授", "记者", "主任", "局长", "工程师", "主教练", "总监", "校长"]
BOOKS = ["山海之间", "远方的灯塔", "夜航船", "时光旅人", "青石巷", "北风往事", "星河笔记", "孤岛来信"]
MOVIES = ["追光少年", "长河落日", "归途如虹", "海岸线", "夏日烟火", "白鹭洲", "无声之城", "明月照我"]
GAMES = ["星际远征", "王者之剑", "幻境传说", "疾速飞车", "英雄联盟", "梦幻西游", "天空之城OL", "代号X"]
SCENES = ["青云山风景区", "西湖", "鼓浪屿", "玉龙雪山", "月牙泉", "太湖湿地公园", "千岛湖", "故宫博物院"]


def pools(rng):
    """{slot: [values]}: the made-up names of every kind a template can ask for."""
    def fill(templates, count):
        return sorted({rng.choice(templates).format(place=rng.choice(PLACES), district=rng.choice(DISTRICTS),
                                                    road=rng.choice(ROADS), number=rng.randint(1, 300))
                       for _ in range(count)})
    return {"name": NAMES, "place": PLACES, "address": fill(ADDRESSES, 30), "company": COMPANIES,
            "organization": ORGANIZATIONS, "government": fill(GOVERNMENTS, 20), "position": POSITIONS,
            "book": BOOKS, "movie": MOVIES, "game": GAMES, "scene": SCENES,
            "nominal_person": ["老师", "妈妈", "同学", "男朋友", "医生", "室友", "老板"],
            "nominal_place": ["学校", "宿舍", "小区", "公园", "商场", "医院"],
            "nominal_organization": ["公司", "球队", "剧组"],
            "country": ["中国", "美国", "新加坡", "加拿大"], "race": ["汉族", "回族", "满族", "壮族"],
            "title": ["总经理", "董事", "财务总监", "副总裁", "高级工程师", "独立董事"],
            "education": ["本科", "硕士", "博士", "大专"], "major": ["计算机科学", "会计学", "法学", "金融学", "机械工程"],
            "province": ["湘", "粤", "川", "鲁", "浙"]}


def fill_template(template, rng, values, types):
    """(text, [(type, start, end)]) of a template whose {slots} name value pools; `types` maps a slot
    to its entity type in this layout (slots without one are filled but are no entity)."""
    text, entities = "", []
    for literal, slot, _, _ in string.Formatter().parse(template):
        text += literal
        if slot:
            value = rng.choice(values[slot])
            if slot in types:
                entities.append((types[slot], len(text), len(text) + len(value)))
            text += value
    return text, entities


def sentences(templates, types, count, rng, values, long_every=0):
    """`count` (text, entities); with long_every, every such sentence joins twelve templates (hundreds of
    characters)."""
    made = []
    for i in range(count):
        long = long_every and i % long_every == long_every - 1
        parts = rng.choices(templates, k=12) if long else [rng.choice(templates)]
        text, entities = "", []
        for part in parts:
            part_text, part_entities = fill_template(part, rng, values, types)
            entities += [(entity_type, start + len(text), end + len(text)) for entity_type, start, end in part_entities]
            text += part_text
        made.append((text, entities))
    return made


# ---------------------------------------------------------------------------------------------
# CLUENER2020: JSON lines, {"text", "label": {type: {entity: [[start, end]]}}}, offsets inclusive
# ---------------------------------------------------------------------------------------------

CLUENER_TYPES = {slot: slot for slot in ("name", "address", "company", "organization", "government", "position",
                                         "book", "movie", "game", "scene")}
CLUENER_TEMPLATES = [
    "{name}现任{company}{position}，负责公司的日常经营。",
    "{government}昨日发布通知，{address}一带的道路将封闭施工。",
    "据{organization}介绍，今年国庆前往{scene}的游客明显增多。",
    "{name}的新作《{book}》近日由{company}推出。",
    "电影《{movie}》在{address}举行首映礼，导演{name}到场。",
    "{company}推出的手游《{game}》上线首周下载量突破百万。",
    "{position}{name}表示，{government}将继续推进这项工作。",
    "周末不少市民来到{scene}赏花，{organization}派出志愿者维持秩序。",
    "这部改编自小说《{book}》的电影《{movie}》口碑不错。",
    "{name}在《{game}》的比赛中夺冠，{organization}发来贺信。",
    "记者从{government}了解到，{address}的新学校将于九月开学。",
    "{company}{position}{name}说，公司明年计划在{address}设立分部。",
]


def cluener_label(entities, text):
    label = {}
    for entity_type, start, end in entities:
        label.setdefault(entity_type, {}).setdefault(text[start:end], []).append([start, end - 1])
    return label


def write_cluener(folder, rng, values, scale):
    for name, count in (("train.json", 1000), ("dev.json", 150)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as writer:
            for text, entities in sentences(CLUENER_TEMPLATES, CLUENER_TYPES, count * scale, rng, values):
                writer.write(json.dumps({"text": text, "label": cluener_label(entities, text)}, ensure_ascii=False)
                             + "\n")
    with open(os.path.join(folder, "test.json"), "w", encoding="utf-8") as writer:
        for i, (text, _) in enumerate(sentences(CLUENER_TEMPLATES, CLUENER_TYPES, 100 * scale, rng, values)):
            writer.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# A character and its tag a line, a blank line between sentences (People's Daily, MSRA, Weibo, Resume)
# ---------------------------------------------------------------------------------------------

def character_tags(text, entities, scheme):
    """The tag of each character: BIO (B-, I-) or BMES (B-, M-, E-, and S- for one character)."""
    tags = ["O"] * len(text)
    for entity_type, start, end in entities:
        if scheme == "BMES" and end - start == 1:
            tags[start] = "S-" + entity_type
            continue
        tags[start:end] = ["I-" + entity_type] * (end - start)
        tags[start] = "B-" + entity_type
        if scheme == "BMES":
            tags[start + 1:end - 1] = ["M-" + entity_type] * (end - start - 2)
            tags[end - 1] = "E-" + entity_type
    return tags


def word_positions(text, rng):
    """Weibo's digit after each character: its place in a word of one to three characters."""
    positions = []
    while len(positions) < len(text):
        positions += list(range(rng.randint(1, 3)))
    return positions[:len(text)]


def write_tagged(path, made, scheme, separator, rng=None):
    """One `character<separator>tag` line per character; with rng, Weibo's word places after the characters."""
    with open(path, "w", encoding="utf-8") as writer:
        for text, entities in made:
            places = word_positions(text, rng) if rng else [""] * len(text)
            for character, place, tag in zip(text, places, character_tags(text, entities, scheme)):
                writer.write("%s%s%s%s\n" % (character, place, separator, tag))
            writer.write("\n")


NEWS_TYPES = {"name": "PER", "place": "LOC", "company": "ORG", "organization": "ORG", "government": "ORG"}
PEOPLES_DAILY_TEMPLATES = [
    "新华社{place}电{organization}{name}今天在{place}会见了来访的代表团。",
    "{name}说，{company}将在{place}建设新的研究中心。",
    "据{government}统计，{place}今年粮食产量比去年增长一成。",
    "{name}和{name}一起走访了{place}的几家企业。",
    "{organization}的同志们在{place}度过了难忘的一天。",
    "本报{place}讯记者{name}报道：{government}召开全市工作会议。",
    "{company}与{organization}签署合作协议，共同开发{place}的旅游资源。",
    "在{place}工作了十年的{name}，对这里的一草一木都很有感情。",
]
MSRA_TEMPLATES = [
    "{name}同志在{place}考察时强调，要做好今年的各项工作。",
    "{company}在{place}开设了第三家分店，{name}出席开业仪式。",
    "来自{place}的{name}获得了{organization}颁发的奖状。",
    "{government}决定，从下月起在{place}试行新的管理办法。",
    "{place}和{place}之间的高速公路已经全线贯通。",
    "{organization}代表团由{name}率领，昨天抵达{place}。",
]
WEIBO_TYPES = {"name": "PER.NAM", "nominal_person": "PER.NOM", "place": "GPE.NAM", "scene": "LOC.NAM",
               "nominal_place": "LOC.NOM", "company": "ORG.NAM", "nominal_organization": "ORG.NOM"}
WEIBO_TEMPLATES = [
    "今天和{nominal_person}去{scene}玩了一天，好开心😀",
    "终于回到{place}啦，还是家里的饭最香～",
    "{name}的新歌太好听了吧！！单曲循环中",
    "{nominal_person}说{nominal_place}门口新开了一家奶茶店，下课去看看",
    "感谢{company}的客服，问题解决得很快，点赞👍",
    "在{nominal_place}等了一个小时，{nominal_person}还没来……",
    "{nominal_organization}今天加班到十点，累成狗了",
    "周末想去{place}看{name}的演唱会，有人一起吗？",
]
RESUME_TYPES = {"name": "NAME", "country": "CONT", "race": "RACE", "title": "TITLE", "education": "EDU",
                "company": "ORG", "organization": "ORG", "major": "PRO", "place": "LOC", "province": "LOC"}
RESUME_TEMPLATES = [
    "{name}先生：{country}国籍，无境外居留权，{race}，{education}学历。",
    "现任{company}{title}，兼任{organization}理事。",
    "{name}女士，{education}，毕业于{organization}{major}专业。",
    "曾任{company}{title}、{company}{title}。",
    "{name}，男，{race}，{province}籍，{place}人。",
    "{education}学历，高级会计师，现任{company}{title}。",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--scale", type=int, default=1, help="this many times as many sentences (default: 1)")
    args = parser.parse_args()
    rng = random.Random(2024)
    values = pools(rng)
    folders = {name: os.path.join(args.out, name) for name in ("cluener", "peoples_daily", "msra", "weibo", "resume")}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    write_cluener(folders["cluener"], rng, values, args.scale)
    for name, count in (("example.train", 120), ("example.dev", 40), ("example.test", 40)):
        made = sentences(PEOPLES_DAILY_TEMPLATES, NEWS_TYPES, count * args.scale, rng, values, long_every=30)
        write_tagged(os.path.join(folders["peoples_daily"], name), made, "BIO", " ")
    for name, count in (("msra_train_bio.txt", 120), ("msra_test_bio.txt", 40)):
        made = sentences(MSRA_TEMPLATES, NEWS_TYPES, count * args.scale, rng, values, long_every=40)
        write_tagged(os.path.join(folders["msra"], name), made, "BIO", "\t")
    for suffix, count in (("train", 100), ("dev", 30), ("test", 30)):
        made = sentences(WEIBO_TEMPLATES, WEIBO_TYPES, count * args.scale, rng, values)
        write_tagged(os.path.join(folders["weibo"], "weiboNER_2nd_conll." + suffix), made, "BIO", "\t", rng)
    for name, count in (("train.char.bmes", 100), ("dev.char.bmes", 30), ("test.char.bmes", 30)):
        made = sentences(RESUME_TEMPLATES, RESUME_TYPES, count * args.scale, rng, values)
        write_tagged(os.path.join(folders["resume"], name), made, "BMES", " ")


if __name__ == "__main__":
    main()
