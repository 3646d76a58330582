"""Writes the tiny GLUE fixtures of `crates/lra-data/tests/glue.rs` in both on-disk layouts.

* `crates/lra-data/tests/fixtures/glue_data/`: the classic layout of the GLUE download script
  (`download_glue_data.py`): `<Task>/{train,dev,test}.tsv`, MNLI's matched/mismatched files and
  `diagnostic/diagnostic.tsv`; tab-separated, no quoting, CoLA train/dev without a header, MRPC
  headers starting with the UTF-8 BOM of the MSR source files.
* `crates/lra-data/tests/fixtures/glue-hf/`: the Hugging Face hub layout of `nyu-mll/glue`:
  `<config>/<split>-00000-of-00001.parquet` with text columns of type string, `label` int64
  (ClassLabel id, -1 on test splits; float32 score for stsb), `idx` int32 and the `huggingface`
  schema metadata `datasets` writes (feature types and ClassLabel names), Snappy-compressed.

Both layouts hold the same examples, so the tests can check that they read to the same targets.
Run once (needs `pyarrow`; made with pyarrow 26.0.1):

    python3 -m venv /tmp/glue-venv && /tmp/glue-venv/bin/pip install pyarrow
    /tmp/glue-venv/bin/python scripts/make_glue_fixtures.py
"""

import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parent.parent / "crates/lra-data/tests/fixtures"
BOM = "\ufeff"

# HF ClassLabel names in id order, and the label string the official TSV uses for each id.
HF_LABELS = {
    "cola": (["unacceptable", "acceptable"], ["0", "1"]),
    "sst2": (["negative", "positive"], ["0", "1"]),
    "mrpc": (["not_equivalent", "equivalent"], ["0", "1"]),
    "qqp": (["not_duplicate", "duplicate"], ["0", "1"]),
    "mnli": (["entailment", "neutral", "contradiction"], ["entailment", "neutral", "contradiction"]),
    "qnli": (["entailment", "not_entailment"], ["entailment", "not_entailment"]),
    "rte": (["entailment", "not_entailment"], ["entailment", "not_entailment"]),
    "wnli": (["not_entailment", "entailment"], ["0", "1"]),
    "ax": (["entailment", "neutral", "contradiction"], None),
}
TEXT_COLUMNS = {
    "cola": ["sentence"],
    "sst2": ["sentence"],
    "mrpc": ["sentence1", "sentence2"],
    "stsb": ["sentence1", "sentence2"],
    "qqp": ["question1", "question2"],
    "mnli": ["premise", "hypothesis"],
    "qnli": ["question", "sentence"],
    "rte": ["sentence1", "sentence2"],
    "wnli": ["sentence1", "sentence2"],
    "ax": ["premise", "hypothesis"],
}

# Examples per (config, HF split): (idx, texts, TSV label string or STS-B score; None on test).
EXAMPLES = {
    ("cola", "train"): [
        (0, ["Our friends won't buy this analysis, let alone the next one we propose."], "1"),
        (1, ["They drank the pub."], "0"),
        (2, ["The sailors rode the breeze clear of the rocks."], "1"),
    ],
    ("cola", "validation"): [
        (0, ["The sailors rode the breeze clear of the rocks."], "1"),
        (1, ["The more we study verbs, the crazier they get get."], "0"),
    ],
    ("cola", "test"): [(0, ["Bill whistled past the house."], None), (1, ["Fred ate."], None)],
    ("sst2", "train"): [
        (0, ["hide new secretions from the parental units "], "0"),
        (1, ["contains no wit , only labored gags "], "0"),
        (2, ["that loves its characters and communicates something rather beautiful "], "1"),
    ],
    ("sst2", "validation"): [(0, ["it 's a charming and often affecting journey . "], "1")],
    ("sst2", "test"): [
        (0, ["uneasy mishmash of styles and genres ."], None),
        (1, ['this film \'s relationship to actual tension is the same as what christmas-tree flocking in a spray can is to actual snow : a poor -- if durable -- imitation .'], None),
    ],
    ("mrpc", "train"): [
        (0, ["Amrozi accused his brother , whom he called \" the witness \" , of deliberately distorting his evidence .", "Referring to him as only \" the witness \" , Amrozi accused his brother of deliberately distorting his evidence ."], "1"),
        (1, ["Yucaipa owned Dominick 's before selling the chain to Safeway in 1998 for $ 2.5 billion .", "Yucaipa bought Dominick 's in 1995 for $ 693 million and sold it to Safeway for $ 1.8 billion in 1998 ."], "0"),
    ],
    ("mrpc", "validation"): [
        (0, ["He said the foodservice pie business doesn 't fit the company 's long-term growth strategy .", "\" The foodservice pie business does not fit our long-term growth strategy ."], "1"),
    ],
    ("mrpc", "test"): [
        (0, ["PCCW 's chief operating officer , Mike Butcher , and Alex Arena , the chief financial officer , will report directly to Mr So .", "Current Chief Operating Officer Mike Butcher and Group Chief Financial Officer Alex Arena will report to So ."], None),
    ],
    ("stsb", "train"): [
        (0, ["A plane is taking off.", "An air plane is taking off."], "5.000"),
        (1, ["A man is playing a large flute.", "A man is playing a flute."], "3.800"),
    ],
    ("stsb", "validation"): [(0, ["A man with a hard hat is dancing.", "A man wearing a hard hat is dancing."], "5.000")],
    ("stsb", "test"): [(0, ["A girl is styling her hair.", "A girl is brushing her hair."], None)],
    ("qqp", "train"): [
        (133273, ["How is the life of a math student? Could you describe your own experiences?", "Which level of prepration is enough for the exam jlpt5?"], "0"),
        (402555, ["How do I control my horny emotions?", "How do you control your horniness?"], "1"),
    ],
    ("qqp", "validation"): [
        (201359, ["Why are African-Americans so beautiful?", "Why are hispanics so beautiful?"], "0"),
    ],
    ("qqp", "test"): [
        (0, ["Why do rockets look white?", "Why are rockets and boosters painted white?"], None),
        (1, ["What's causing someone to be jealous?", "What can I do to avoid being jealous of someone?"], None),
    ],
    ("mnli", "train"): [
        (0, ["Conceptually cream skimming has two basic dimensions - product and geography.", "Product and geography are what make cream skimming work. "], "neutral"),
        (1, ["you know during the season and i guess at at your level uh you lose them to the next level", "You lose the things to the following level if the people recall."], "entailment"),
        (2, ["One of our number will carry out your instructions minutely.", "A member of my team will execute your orders with immense precision."], "entailment"),
        (3, ["How do you know? All this is their information again.", "This information belongs to them."], "contradiction"),
    ],
    ("mnli", "validation_matched"): [
        (0, ["The new rights are nice enough", "Everyone really likes the newest benefits "], "neutral"),
        # A premise starting with a stray double quote: with quoting on it would swallow the rest.
        (1, ['"This site includes a list of all award winners and a searchable database of Government Executive articles.', "The Government Executive articles housed on the website are not able to be searched."], "contradiction"),
    ],
    ("mnli", "validation_mismatched"): [
        (0, ["Your contribution helped make it possible for us to provide our students with a quality education.", "Your contributions were of no help with our students' education."], "contradiction"),
    ],
    ("mnli", "test_matched"): [(0, ["Hierbas, ans seco, ans dulce, and frigola are just a few names worth keeping a look-out for.", "Hierbas is a name worth looking out for."], None)],
    ("mnli", "test_mismatched"): [(0, ["What have you decided, what are you going to do?", "So what's your decision?"], None)],
    ("qnli", "train"): [
        (0, ["When did the third Digimon series begin?", "Unlike the two seasons before it and most of the seasons that followed, Digimon Tamers takes a darker and more realistic approach to its story featuring Digimon who do not reincarnate after their deaths and more complex character development in the original Japanese."], "not_entailment"),
        (1, ["Which missile batteries often have individual launchers several kilometres from one another?", "When MANPADS is operated by specialists, batteries may have several dozen teams deploying separately in small sections; self-propelled air defence guns may deploy in pairs."], "not_entailment"),
        (2, ["What two things does Popper argue Tarski's theory involves in an evaluation of truth?", "He bases this interpretation on the fact that examples such as the one described above refer to two things: assertions and the facts to which they refer."], "entailment"),
    ],
    ("qnli", "validation"): [(0, ["What came into force after the new constitution was herald?", "As of that day, the new constitution heralding the Second Republic came into force."], "entailment")],
    ("qnli", "test"): [(0, ["What organization is devoted to Jihad against Israel?", "For some decades prior to the First Palestine Intifada in 1987, the Muslim Brotherhood in Palestine took a \"quiescent\" stance towards Israel."], None)],
    ("rte", "train"): [
        (0, ["No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction Found in Iraq."], "not_entailment"),
        (1, ["A place of sorrow, after Pope John Paul II died, became a place of celebration, as Roman Catholic faithful gathered in downtown Chicago to mark the installation of new Pope Benedict XVI.", "Pope Benedict XVI is the new leader of the Roman Catholic Church."], "entailment"),
    ],
    ("rte", "validation"): [(0, ["Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, according to the Christopher Reeve Foundation.", "Christopher Reeve had an accident."], "not_entailment")],
    ("rte", "test"): [(0, ["Mangla was summoned after Madhumita's sister Nidhi Shukla, who was the first witness in the case.", "Shukla is related to Mangla."], None)],
    ("wnli", "train"): [
        (0, ["I stuck a pin through a carrot. When I pulled the pin out, it had a hole.", "The carrot had a hole."], "1"),
        (1, ["John couldn't see the stage with Billy in front of him because he is so short.", "John is so short."], "1"),
        (2, ["The police arrested all of the gang members. They were trying to stop the drug trade in the neighborhood.", "The police were trying to stop the drug trade in the neighborhood."], "1"),
        (3, ["Steve follows Fred's example in everything. He influences him hugely.", "Steve influences him hugely."], "0"),
    ],
    ("wnli", "validation"): [(0, ["The drain is clogged with hair. It has to be cleaned.", "The hair has to be cleaned."], "0")],
    ("wnli", "test"): [(0, ["Maude and Dora had seen the trains rushing across the prairie, with long, rolling puffs of black smoke streaming back from the engine.", "Horses ran away when the trains came."], None)],
    ("ax", "test"): [
        (0, ["The cat sat on the mat.", "The cat did not sit on the mat."], None),
        (1, ["When you've got no snow, it's really hard to learn a snow sport.", "When you've got snow, it's really hard to learn a snow sport."], None),
    ],
}

# TSV file of each HF split, relative to glue_data/.
TSV_FOLDERS = {
    "cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP",
    "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "ax": "diagnostic",
}
TSV_FILES = {
    "train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv",
    "validation_matched": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv",
    "test_matched": "test_matched.tsv", "test_mismatched": "test_mismatched.tsv",
}
MNLI_PARSES = ["sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse"]


def tsv_lines(config, split, examples):
    """The header (or None) and one list of fields per example, as the official files lay them out."""
    labelled = not split.startswith("test")
    if config == "cola":
        if labelled:
            return None, [["gj04", label, "" if label == "1" else "*", texts[0]] for _, texts, label in examples]
        return ["index", "sentence"], [[str(idx), texts[0]] for idx, texts, _ in examples]
    if config == "sst2":
        if labelled:
            return ["sentence", "label"], [[texts[0], label] for _, texts, label in examples]
        return ["index", "sentence"], [[str(idx), texts[0]] for idx, texts, _ in examples]
    if config == "mrpc":
        ids = lambda i: [str(702876 + 101 * i), str(702977 + 101 * i)]
        if labelled:
            return [BOM + "Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], [
                [label, *ids(idx), *texts] for idx, texts, label in examples]
        return ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"], [
            [str(idx), *ids(idx), *texts] for idx, texts, _ in examples]
    if config == "stsb":
        header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
        rows = [[str(idx), "main-captions", "MSRvid", "2012test", f"{idx + 1:04}", "none", "none", *texts]
                for idx, texts, _ in examples]
        if labelled:
            return header + ["score"], [row + [label] for row, (_, _, label) in zip(rows, examples)]
        return header, rows
    if config == "qqp":
        if labelled:
            return ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], [
                [str(idx), str(2 * idx + 1), str(2 * idx + 2), *texts, label] for idx, texts, label in examples]
        return ["id", "question1", "question2"], [[str(idx), *texts] for idx, texts, _ in examples]
    if config == "mnli":
        header = ["index", "promptID", "pairID", "genre", *MNLI_PARSES, "sentence1", "sentence2"]
        rows = [[str(idx), str(31193 + idx), f"{31193 + idx}n", "government",
                 *[f"( {texts[i % 2]} )" for i in range(4)], *texts] for idx, texts, _ in examples]
        if split == "train":
            return header + ["label1", "gold_label"], [r + [l, l] for r, (_, _, l) in zip(rows, examples)]
        if labelled:
            return header + [f"label{i}" for i in range(1, 6)] + ["gold_label"], [
                r + [l] * 6 for r, (_, _, l) in zip(rows, examples)]
        return header, rows
    # QNLI, RTE, WNLI and AX: index, two texts, label last.
    header = ["index", *(["question", "sentence"] if config == "qnli" else ["sentence1", "sentence2"])]
    if labelled:
        return header + ["label"], [[str(idx), *texts, label] for idx, texts, label in examples]
    return header, [[str(idx), *texts] for idx, texts, _ in examples]


def write_tsv(config, split, examples):
    path = ROOT / "glue_data" / TSV_FOLDERS[config] / ("diagnostic.tsv" if config == "ax" else TSV_FILES[split])
    path.parent.mkdir(parents=True, exist_ok=True)
    header, rows = tsv_lines(config, split, examples)
    lines = ([header] if header else []) + rows
    # newline="" keeps "\n" line ends on every platform, as the download script's files have.
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.writelines("\t".join(fields) + "\n" for fields in lines)


def hf_label(config, split, label):
    if split.startswith("test"):
        return -1.0 if config == "stsb" else -1
    if config == "stsb":
        return float(label)
    return HF_LABELS[config][1].index(label)


def write_parquet(config, split, examples):
    columns = {name: [texts[i] for _, texts, _ in examples] for i, name in enumerate(TEXT_COLUMNS[config])}
    label_type = pa.float32() if config == "stsb" else pa.int64()
    columns["label"] = pa.array([hf_label(config, split, label) for _, _, label in examples], label_type)
    columns["idx"] = pa.array([idx for idx, _, _ in examples], pa.int32())
    features = {name: {"dtype": "string", "_type": "Value"} for name in TEXT_COLUMNS[config]}
    features["label"] = (
        {"dtype": "float32", "_type": "Value"} if config == "stsb"
        else {"names": HF_LABELS[config][0], "_type": "ClassLabel"})
    features["idx"] = {"dtype": "int32", "_type": "Value"}
    table = pa.table(columns).replace_schema_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})})
    path = ROOT / "glue-hf" / config / f"{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy")


def main():
    for (config, split), examples in EXAMPLES.items():
        write_tsv(config, split, examples)
        write_parquet(config, split, examples)


if __name__ == "__main__":
    main()
