"""TablePreprocessor: every inference rule, the imputation and encodings against NumPy
references, the JSON round trip, and every error path."""

import json

import numpy as np
import pandas as pd
import pytest

from fusedtrain import tables
from fusedtrain.data import TablePreprocessor


def plans(preprocessor):
    return {plan.name: plan for plan in preprocessor.columns}


def raw(frame, **options):
    """The preprocessor fitted without scaling, and its features."""
    preprocessor = TablePreprocessor(scale=False, **options).fit(frame)
    return preprocessor, preprocessor.transform(frame)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def mixed_table(rng, rows=41):
    """One column per rule, all as text (as a CSV file gives them)."""
    numbers = rng.normal(50.0, 10.0, rows).round(3)
    days = pd.date_range("2020-01-30", periods=rows, freq="7D")
    return pd.DataFrame({
        "number": numbers.astype(str),
        "code": (np.arange(rows) % 4 + 1).astype(str),
        "colour": np.array(["red", "green", "blue"])[np.arange(rows) % 3],
        "flag": np.array(["yes", "no"])[np.arange(rows) % 2],
        "day": days.strftime("%d/%m/%Y"),
        "name": [f"person {index}" for index in range(rows)],
        "row_id": (np.arange(rows) + 100).astype(str),
        "empty": [""] * rows,
    }, dtype=object)


def test_each_column_gets_its_rule(rng):
    frame = mixed_table(rng)
    preprocessor, x = raw(frame)
    kinds = {name: plan.kind for name, plan in plans(preprocessor).items()}
    assert kinds == {"number": "numeric", "code": "categorical", "colour": "categorical", "flag": "boolean",
                     "day": "datetime", "name": "dropped", "row_id": "dropped", "empty": "dropped"}
    assert plans(preprocessor)["code"].categories == [1, 2, 3, 4]
    assert plans(preprocessor)["colour"].categories == ["blue", "green", "red"]
    assert plans(preprocessor)["day"].date_format == "%d/%m/%Y"
    assert "identifier" in plans(preprocessor)["name"].note and "identifier" in plans(preprocessor)["row_id"].note
    assert x.dtype == np.float32 and x.shape == (41, len(preprocessor.feature_names))
    names = preprocessor.feature_names
    np.testing.assert_array_equal(x[:, names.index("number")], frame["number"].astype(float).to_numpy(np.float32))
    np.testing.assert_array_equal(x[:, names.index("flag")], (frame["flag"] == "yes").to_numpy(np.float32))
    np.testing.assert_array_equal(x[:, names.index("colour=red")], (frame["colour"] == "red").to_numpy(np.float32))
    assert not x[:, names.index("colour=(unknown)")].any()
    # Each one-hot block holds exactly one 1 per row.
    colour = [names.index(f"colour={value}") for value in ("blue", "green", "red", "(unknown)")]
    np.testing.assert_array_equal(x[:, colour].sum(axis=1), 1.0)
    days = pd.to_datetime(frame["day"], format="%d/%m/%Y")
    np.testing.assert_array_equal(x[:, names.index("day:year")], days.dt.year)
    np.testing.assert_array_equal(x[:, names.index("day:month")], days.dt.month)
    np.testing.assert_array_equal(x[:, names.index("day:weekday")], days.dt.day_of_week)
    angle = 2 * np.pi * (days.dt.day_of_year.to_numpy() - 1) / 365.25
    np.testing.assert_allclose(x[:, names.index("day:day_of_year_sin")], np.sin(angle), atol=1e-6)
    assert "day:hour" not in names
    assert len(preprocessor.report()) == 8 and preprocessor.report()[0].startswith("number: numeric")


def test_typed_frames_bool_dates_with_times_and_category_dtype():
    frame = pd.DataFrame({"ok": [True, False, True, True], "when": pd.to_datetime(
        ["2021-03-01 10:30", "2021-03-02 00:00", None, "2021-03-04 23:59"]),
        "size": pd.Categorical(["s", "m", "s", "m"]), "value": [1.5, np.nan, 2.5, 3.5]})
    preprocessor, x = raw(frame)
    kinds = {name: plan.kind for name, plan in plans(preprocessor).items()}
    assert kinds == {"ok": "boolean", "when": "datetime", "size": "categorical", "value": "numeric"}
    names = preprocessor.feature_names
    assert "when:hour" in names and "when:minute" in names and "when:missing" in names
    np.testing.assert_array_equal(x[:, names.index("when:hour")][[0, 1, 3]], [10, 0, 23])
    np.testing.assert_array_equal(x[:, names.index("when:missing")], [0, 0, 1, 0])
    np.testing.assert_array_equal(x[:, names.index("value")], [1.5, 2.5, 2.5, 3.5])  # the median fills the gap
    np.testing.assert_array_equal(x[:, names.index("value:missing")], [0, 1, 0, 0])
    np.testing.assert_array_equal(x[:, names.index("ok")], [1, 0, 1, 1])


@pytest.mark.parametrize("token", ["", "NA", "N/A", "nan", "NaN", "null", "None", "?", " na "])
def test_missing_tokens_are_imputed_with_an_indicator(token):
    values = ["1.0", token, "3.0", "10.0", "2.0"]
    frame = pd.DataFrame({"a": values, "c": ["x", token, "y", "x", "y"]}, dtype=object)
    preprocessor, x = raw(frame)
    names = preprocessor.feature_names
    assert names == ["a", "a:missing", "c=x", "c=y", "c=(unknown)", "c=(missing)"]
    np.testing.assert_array_equal(x[:, 0], [1.0, np.median([1.0, 3.0, 10.0, 2.0]), 3.0, 10.0, 2.0])
    np.testing.assert_array_equal(x[:, 1], [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(x[:, 5], [0, 1, 0, 0, 0])
    assert plans(preprocessor)["a"].gaps == 1 and "1 missing" in preprocessor.report()[0]


def test_python_none_and_nan_in_object_columns_are_missing():
    frame = pd.DataFrame({"a": [1.0, None, 3.0, np.nan, 5.0], "b": ["u", None, "v", np.nan, "u"]})
    _, x = raw(frame)
    np.testing.assert_array_equal(x[:, 1], [0, 1, 0, 1, 0])


def test_new_and_rare_categories_set_the_unknown_slot():
    frame = pd.DataFrame({"c": ["a", "a", "b", "b", "rare"] * 1 + ["a"], "n": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    preprocessor = TablePreprocessor(scale=False).fit(frame)
    assert plans(preprocessor)["c"].categories == ["a", "b"]  # 'rare' (seen once) goes to unknown
    x = preprocessor.transform(pd.DataFrame({"c": ["rare", "never seen", "b", None], "n": [1.0, 2.0, 3.0, 4.0]}))
    names = preprocessor.feature_names
    np.testing.assert_array_equal(x[:, names.index("c=(unknown)")], [1, 1, 0, 1])  # no gap in fit: no own slot
    np.testing.assert_array_equal(x[:, names.index("c=b")], [0, 0, 1, 0])


def test_integer_codes_match_whatever_the_type_at_transform():
    frame = pd.DataFrame({"cylinders": [4, 6, 8, 4, 6, 8, 4, 4]})
    preprocessor = TablePreprocessor(scale=False).fit(frame)
    as_text = preprocessor.transform(pd.DataFrame({"cylinders": ["4", "8.0", " 6 "]}))
    as_numbers = preprocessor.transform(pd.DataFrame({"cylinders": [4.0, 8.0, 6.0]}))
    np.testing.assert_array_equal(as_text, as_numbers)
    np.testing.assert_array_equal(as_text[:, :3], np.eye(3)[[0, 2, 1]])


def test_high_cardinality_text_is_dropped_unless_kept(rng):
    names = [f"model {index % 30}" for index in range(40)]
    frame = pd.DataFrame({"name": names, "x": rng.normal(size=40)})
    preprocessor = TablePreprocessor().fit(frame)
    assert plans(preprocessor)["name"].kind == "dropped" and "high-cardinality" in plans(preprocessor)["name"].note
    kept = TablePreprocessor(keep=["name"]).fit(frame)
    assert plans(kept)["name"].kind == "categorical" and len(plans(kept)["name"].categories) == 10  # repeated ones


def test_overrides_categorical_numeric_drop_and_dates(rng):
    frame = mixed_table(rng)
    preprocessor, _ = raw(frame, categorical=["number"], numeric=["code"], drop=["colour"], dates="drop")
    kinds = {name: plan.kind for name, plan in plans(preprocessor).items()}
    assert kinds["number"] == "categorical" and kinds["code"] == "numeric" and kinds["colour"] == "dropped"
    assert kinds["day"] == "dropped" and "dates" in plans(preprocessor)["day"].note
    # Comma-separated names, as the command line passes them.
    assert TablePreprocessor(drop="colour, flag").drop == ["colour", "flag"]


def test_statistics_come_from_the_rows_given(rng):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 100.0, 200.0, np.nan], "c": ["x", "x", "y", "y", "z", "z"]})
    preprocessor = TablePreprocessor(scale=False).fit(frame, rows=[0, 1, 2, 5])
    assert plans(preprocessor)["a"].fill == 2.0
    assert plans(preprocessor)["c"].categories == ["x"]  # y and z are seen at most once in these rows
    mask = np.array([True, True, True, False, False, True])
    assert plans(TablePreprocessor(scale=False).fit(frame, rows=mask))["a"].fill == 2.0
    with pytest.raises(ValueError, match=r"^rows: selects no row"):
        TablePreprocessor().fit(frame, rows=np.zeros(6, dtype=bool))


def test_scaling_standardises_every_feature_as_numpy_does(rng):
    frame = mixed_table(rng)
    unscaled = TablePreprocessor(scale=False).fit_transform(frame).astype(np.float64)
    scaled = TablePreprocessor().fit_transform(frame)
    std = unscaled.std(axis=0)
    expected = (unscaled - unscaled.mean(axis=0)) / np.where(std > 1e-9, std, 1.0)
    np.testing.assert_allclose(scaled, expected, rtol=1e-5, atol=1e-5)


def test_missing_drop_names_incomplete_rows_and_adds_no_indicator():
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": ["x", "y", None, "x"]})
    preprocessor = TablePreprocessor(missing="drop", scale=False).fit(frame)
    np.testing.assert_array_equal(preprocessor.incomplete_rows(frame), [False, True, True, False])
    assert preprocessor.feature_names == ["a", "b=x", "b=(unknown)"]
    assert plans(preprocessor)["a"].fill == 2.5  # the median of the complete rows
    np.testing.assert_array_equal(preprocessor.transform(frame)[:, 0], [1.0, 2.5, 3.0, 4.0])


def test_the_json_round_trip_gives_the_same_features(rng):
    frame = mixed_table(rng)
    frame.loc[3, "number"] = "NA"
    preprocessor = TablePreprocessor(keep=["name"]).fit(frame)
    again = TablePreprocessor.from_config(json.loads(preprocessor.to_json()))
    np.testing.assert_array_equal(again.transform(frame), preprocessor.transform(frame))
    assert again.feature_names == preprocessor.feature_names and again.report() == preprocessor.report()


@pytest.mark.parametrize("change, message", [
    (lambda config: config.update(format_version=2), "format_version 1"),
    (lambda config: config.update(columns=[]), "columns: expected a non-empty list"),
    (lambda config: config["columns"][0].update(kind="magic"), "a kind among"),
    (lambda config: config["columns"][0].update(fill="x"), "fill is not a finite number"),
    (lambda config: config["columns"][0].update(surprise=1), "unexpected keyword"),
    (lambda config: config["columns"][1].update(categories=[[1]]), "categories must be a list"),
    (lambda config: config["options"].update(dates="keep"), "dates: expected"),
    (lambda config: config["scaling"].update(std=[0.0] * len(config["scaling"]["std"])), "positive deviations"),
    (lambda config: config.update(scaling=None), "present exactly when"),
    (lambda config: config.update(options=["scale"]), r"^preprocessor: options: expected a JSON object"),
    (lambda config: config["options"].update(colour=1), r"^preprocessor: options: .*unexpected keyword.*'colour'"),
    (lambda config: config["options"].update(scale="yes"), r"^preprocessor: options: scale: expected True or False"),
    (lambda config: config.update(columns={"a": {}}), r"^preprocessor: columns: expected a non-empty list"),
    (lambda config: config["columns"].__setitem__(0, "a"), r"^preprocessor: columns\[0\]: expected a JSON object"),
    (lambda config: config["columns"][1].update(name="a"),
     r"^preprocessor: columns: two plans name the column 'a'"),
    (lambda config: config["columns"][0].update(name=7), r"^preprocessor: columns\[0\]: expected a column name"),
    (lambda config: [entry.update(kind="dropped") for entry in config["columns"]],
     r"^preprocessor: columns: every column is dropped"),
    (lambda config: config["columns"][2].update(parts=["year", "century"]),
     r"^preprocessor: columns\[2\] \('d'\): parts must be among day, day_of_year"),
    (lambda config: config["columns"][2].update(parts=[]), r"^preprocessor: columns\[2\] \('d'\): parts must be"),
    (lambda config: config["columns"][2].update(parts="year"), r"^preprocessor: columns\[2\] \('d'\): parts must be"),
    (lambda config: config["columns"][2].update(date_format=5),
     r"^preprocessor: columns\[2\] \('d'\): date_format must be a string"),
    (lambda config: config["columns"][0].update(indicator="yes"),
     r"^preprocessor: columns\[0\] \('a'\): indicator must be true or false"),
    (lambda config: config["columns"][1].update(missing_slot=1),
     r"^preprocessor: columns\[1\] \('c'\): missing_slot must be true or false"),
    (lambda config: config["scaling"].pop("std"), r"^preprocessor: scaling: expected lists of numbers mean and std"),
    (lambda config: config["scaling"].update(mean=["one"] * len(config["scaling"]["mean"])),
     r"^preprocessor: scaling: expected lists of numbers mean and std"),
    (lambda config: config.update(scaling=[0.0, 1.0]), r"^preprocessor: scaling: expected lists of numbers"),
    (lambda config: config["scaling"].update(mean=config["scaling"]["mean"][1:]),
     r"^preprocessor: scaling: expected 14 finite means and positive deviations"),
    (lambda config: config["scaling"]["mean"].__setitem__(0, float("nan")),
     r"^preprocessor: scaling: expected 14 finite"),
    (lambda config: config["scaling"].update(std=[[1.0]] * len(config["scaling"]["std"])),
     r"^preprocessor: scaling: expected 14 finite"),
])
def test_damaged_configurations_are_refused(change, message):
    # Columns: a (numeric with a gap: 2 features), c (categorical: 3), d (datetime: 9).
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan], "c": ["x", "y", "x", "y"],
                          "d": ["2020-01-01 10:00", "2020-02-01 11:00", "2020-03-01 12:00", "2020-04-01 13:00"]})
    config = TablePreprocessor().fit(frame).to_config()
    assert len(config["scaling"]["mean"]) == 14
    TablePreprocessor.from_config(json.loads(json.dumps(config)))  # intact, it loads
    change(config)
    with pytest.raises(ValueError, match=message):
        TablePreprocessor.from_config(config)


def test_transform_errors_name_the_column_and_row():
    frame = pd.DataFrame({"a": ["1", "2", "3", "4"], "d": ["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01"],
                          "c": ["x", "y", "x", "y"]}, dtype=object)
    preprocessor = TablePreprocessor().fit(frame)
    with pytest.raises(ValueError, match=r"^table: no column named 'd'; the model reads the columns 'a', 'd', 'c'"):
        preprocessor.transform(frame.drop(columns=["d"]))
    with pytest.raises(ValueError, match=r"^table: the column 'a' holds 'four' at row 2; it was numeric in training"):
        preprocessor.transform(frame.assign(a=["1", "four", "3", "4"]))
    with pytest.raises(ValueError, match=r"^table: the column 'd' holds '1st May' at row 1, not a date in the format "
                                         r"it was trained on \(%Y-%m-%d\)"):
        preprocessor.transform(frame.assign(d=["1st May", "2020-01-01", "2020-01-01", "2020-01-01"]))
    with pytest.raises(ValueError, match=r"^table: the column 'a' holds inf, not a finite number"):
        preprocessor.transform(frame.assign(a=["1", "inf", "3", "4"]))
    with pytest.raises(ValueError, match=r"^table: empty \(0 rows\)"):
        preprocessor.transform(frame.iloc[:0])
    # Extra columns are ignored; missing values are not errors.
    extra = frame.assign(other=["?"] * 4, a=["NA", "2", "3", "4"])
    assert preprocessor.transform(extra).shape == (4, len(preprocessor.feature_names))


def test_fit_and_option_errors():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    with pytest.raises(ValueError, match=r"^table: no column named 'zz' \(named in the options\)"):
        TablePreprocessor(drop=["zz"]).fit(frame)
    with pytest.raises(ValueError, match=r"^categorical, numeric: the column 'a' is named in both"):
        TablePreprocessor(categorical=["a"], numeric=["a"])
    with pytest.raises(ValueError, match=r"^missing: expected 'impute' or 'drop'"):
        TablePreprocessor(missing="mean")
    with pytest.raises(TypeError, match=r"^scale: expected True or False"):
        TablePreprocessor(scale=1)
    with pytest.raises(TypeError, match=r"^keep: expected column names"):
        TablePreprocessor(keep=[3])
    with pytest.raises(ValueError, match=r"^table: the column 'b' \(numeric on request\) holds 'x' at row 1"):
        TablePreprocessor(numeric=["b"]).fit(frame)
    with pytest.raises(ValueError, match=r"^table: empty \(0 rows\)"):
        TablePreprocessor().fit(frame.iloc[:0])
    with pytest.raises(ValueError, match=r"^table: no usable feature column"):
        TablePreprocessor(drop=["a", "b"]).fit(frame)
    with pytest.raises(ValueError, match=r"^table: the column 'e' has no values to learn from"):
        TablePreprocessor(keep=["e"]).fit(frame.assign(e=[None, None]))
    with pytest.raises(ValueError, match=r"^table: the column 'b' appears more than once"):
        TablePreprocessor().fit(pd.DataFrame([[1, 2]], columns=["b", "b"]))
    with pytest.raises(TypeError, match=r"^table: column names must be strings, got 0"):
        TablePreprocessor().fit(pd.DataFrame(np.ones((2, 2))))
    with pytest.raises(TypeError, match=r"^table: expected a pandas DataFrame"):
        TablePreprocessor().fit(np.ones((2, 2)))
    with pytest.raises(RuntimeError, match=r"^transform: the preprocessor is not fitted"):
        TablePreprocessor().transform(frame)
    with pytest.raises(ValueError, match=r"^table: the column 'a' holds 1e\+40"):
        TablePreprocessor().fit(frame.assign(a=[1.0, 1e40]))


def test_a_dict_of_columns_is_a_table():
    preprocessor = TablePreprocessor(scale=False).fit({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"]})
    # "y" was seen once: it sets the unknown slot, as a new category does.
    assert preprocessor.transform([{"a": 5.0, "b": "y"}]).tolist() == [[5.0, 0.0, 1.0]]
    assert tables.is_table(pd.DataFrame()) and not tables.is_table({"a": [1]})


@pytest.mark.parametrize("table, error, message", [
    ({"a": [1.0, 2.0], "b": [1.0]}, ValueError, r"^table: cannot be read as a table \(All arrays must be of the same"),
    ({"a": 1.0, "b": 2.0}, ValueError, r"^table: cannot be read as a table \(If using all scalar values"),
    ([{"a": 1.0}, 5], ValueError, r"^table: cannot be read as a table"),
    (pd.DataFrame(index=range(3)), ValueError, r"^table: no columns"),
    ("a,b\n1,2", TypeError, r"^table: expected a pandas DataFrame \(or a dict of columns\), got str"),
])
def test_what_is_not_a_table_is_refused(table, error, message):
    with pytest.raises(error, match=message):
        TablePreprocessor().fit(table)


@pytest.mark.parametrize("rows", [[0, 6], [-7], np.zeros(5, dtype=bool), ["a"], [0.5], [[0, 1], [2]]],
                         ids=["past-the-end", "before-the-start", "short-mask", "text", "fraction", "ragged"])
def test_rows_that_are_not_row_indices_are_refused(rows):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    with pytest.raises(ValueError, match=r"^rows: expected row indices or a mask of 6 rows$"):
        TablePreprocessor().fit(frame, rows=rows)


@pytest.mark.parametrize("train, value", [
    (["yes", "no", "yes", "no"], "maybe"),
    ([True, False, True, False], "maybe"),
    (["y", "n", "y", "n"], "2"),  # a number is no true/false word either
])
def test_a_word_that_is_neither_true_nor_false_names_the_column_and_row(train, value):
    preprocessor = TablePreprocessor().fit(pd.DataFrame({"flag": train, "n": [1.0, 2.0, 3.0, 4.0]}))
    assert plans(preprocessor)["flag"].kind == "boolean"
    rows = pd.DataFrame({"flag": ["yes" if isinstance(train[0], str) else "True", value], "n": [1.0, 2.0]},
                        dtype=object)
    with pytest.raises(ValueError, match=rf"^table: the column 'flag' holds '{value}' at row 2; it was true/false "
                                         rf"in training$"):
        preprocessor.transform(rows)


# The inference rules at their limits ------------------------------------------------------------

def repeated_words(distinct, times):
    """``distinct`` words, each ``times`` times, shuffled the same way every run."""
    words = np.repeat([f"word {index:03d}" for index in range(distinct)], times)
    return np.random.default_rng(5).permutation(words)


@pytest.mark.parametrize("distinct, kind", [(tables.MAX_CATEGORIES, "categorical"),
                                            (tables.MAX_CATEGORIES + 1, "dropped")])
def test_text_with_more_than_100_categories_is_dropped_with_the_reason(distinct, kind):
    # Three rows per word: the share of distinct values stays under a half, so only the cap decides.
    words = repeated_words(distinct, 3)
    preprocessor = TablePreprocessor().fit(pd.DataFrame({"word": words, "n": np.arange(words.size) % 7}))
    plan = plans(preprocessor)["word"]
    assert plan.kind == kind
    if kind == "dropped":
        assert plan.note == (f"high-cardinality text, {distinct} distinct values in {3 * distinct} rows; "
                             f"keep it with keep=")
        assert preprocessor.report()[0] == f"word: dropped ({plan.note})"
        assert not any(name.startswith("word") for name in preprocessor.feature_names)
    else:
        assert len(plan.categories) == distinct


def test_keep_gives_the_100_most_frequent_values_slots_and_the_rest_unknown():
    words = np.concatenate([repeated_words(tables.MAX_CATEGORIES, 3), ["rare one", "rare one", "rare two", "rare two"]])
    frame = pd.DataFrame({"word": words, "n": np.arange(words.size) % 7})
    assert plans(TablePreprocessor().fit(frame))["word"].kind == "dropped"
    preprocessor = TablePreprocessor(keep=["word"], scale=False).fit(frame)
    plan = plans(preprocessor)["word"]
    assert plan.kind == "categorical" and plan.note == "kept on request"
    assert plan.categories == [f"word {index:03d}" for index in range(tables.MAX_CATEGORIES)]
    x = preprocessor.transform(pd.DataFrame({"word": ["rare one", "rare two", "word 042", "never seen"], "n": [1] * 4}))
    names = preprocessor.feature_names
    np.testing.assert_array_equal(x[:, names.index("word=(unknown)")], [1, 1, 0, 1])
    np.testing.assert_array_equal(x[:, names.index("word=word 042")], [0, 0, 1, 0])


@pytest.mark.parametrize("rows, kind", [(tables.MIN_IDENTIFIER_ROWS - 1, "categorical"),
                                        (tables.MIN_IDENTIFIER_ROWS, "dropped")])
def test_text_unique_per_row_is_an_identifier_from_20_rows(rows, kind):
    frame = pd.DataFrame({"name": [f"person {index}" for index in range(rows)], "n": np.arange(rows) % 3})
    plan = plans(TablePreprocessor().fit(frame))["name"]
    assert plan.kind == kind
    if kind == "dropped":
        assert plan.note == "identifier: text unique per row; keep it with keep="
    else:
        # No value repeats: each gets a slot rather than all going to 'unknown'.
        assert plan.categories == sorted(frame["name"])


@pytest.mark.parametrize("rows, kind", [(tables.MIN_IDENTIFIER_ROWS - 1, "numeric"),
                                        (tables.MIN_IDENTIFIER_ROWS, "dropped")])
def test_consecutive_integers_are_an_identifier_from_20_rows(rows, kind):
    ids = np.random.default_rng(2).permutation(np.arange(rows) + 1000)
    frame = pd.DataFrame({"row_id": ids, "as_text": ids.astype(str), "n": np.arange(rows) % 3})
    preprocessor = TablePreprocessor().fit(frame)
    assert plans(preprocessor)["row_id"].kind == kind and plans(preprocessor)["as_text"].kind == kind
    if kind == "dropped":
        assert plans(preprocessor)["row_id"].note == "identifier: consecutive integers, unique per row"


@pytest.mark.parametrize("values, kind", [
    (["yes", "no"], "boolean"),
    (["Yes", "NO", "yes"], "boolean"),  # any case
    (["true", "no"], "boolean"),  # one word for each side, not the pair
    (["t", "f"], "boolean"),
    (["yes"], "boolean"),
    (["yes", "no", "true"], "categorical"),  # two words for true
    (["y", "n", "no"], "categorical"),  # two words for false
    (["true", "false", "maybe"], "categorical"),
])
def test_a_boolean_has_one_word_for_true_and_one_for_false_at_most(values, kind):
    column = [values[index % len(values)] for index in range(12)]
    preprocessor = TablePreprocessor(scale=False).fit(pd.DataFrame({"flag": column, "n": np.arange(12) % 5}))
    assert plans(preprocessor)["flag"].kind == kind
    if kind == "boolean":
        expected = [word.lower() in tables.TRUE_WORDS for word in column]
        np.testing.assert_array_equal(preprocessor.transform(pd.DataFrame({"flag": column, "n": [0] * 12}))[:, 0],
                                      expected)


def test_dates_with_a_time_zone_are_read_as_utc():
    # Evening times in New York fall on the next day in UTC, so the day and weekday move too;
    # the days span the change to summer time, so the text's offsets differ (-05:00, -04:00).
    local = pd.date_range("2021-03-12 21:30", periods=9, freq="17h", tz="America/New_York")
    utc = local.tz_convert("UTC")
    assert len({stamp.utcoffset() for stamp in local}) == 2
    for column in (pd.Series(local), pd.Series([stamp.isoformat() for stamp in local], dtype=object)):
        preprocessor = TablePreprocessor(scale=False).fit(pd.DataFrame({"when": column}))
        names = preprocessor.feature_names
        x = preprocessor.transform(pd.DataFrame({"when": column}))
        for part, expected in (("year", utc.year), ("month", utc.month), ("day", utc.day),
                               ("weekday", utc.day_of_week), ("day_of_year", utc.day_of_year),
                               ("hour", utc.hour), ("minute", utc.minute)):
            np.testing.assert_array_equal(x[:, names.index(f"when:{part}")], expected, err_msg=part)
        assert not np.array_equal(x[:, names.index("when:day")], local.day)
