"""Raw tables to model features: TablePreprocessor infers each column's type from the data,
imputes missing values, one-hot encodes categories and expands dates, and keeps all of it as
JSON so that a saved model takes raw rows. The command line's ``train`` uses the same object.

The rules (each column of the table ``fit`` sees):
- missing: an empty field, NaN/None, or one of MISSING_TOKENS ('NA', 'N/A', 'nan', 'null',
  '?', ... compared case-insensitively after stripping spaces).
- boolean: bool dtype, or text whose values are all true/false, yes/no, y/n or t/f words,
  one word for true and one for false at most (yes/no/true is categorical). Encoded 0/1.
- numeric: numbers (text that parses as numbers included). Integers with at most
  MAX_INTEGER_CATEGORIES distinct values, each seen twice on average, are categorical instead
  (codes such as cylinders or a class of travel).
- datetime: datetime dtype, or text that parses as dates in one format. Expanded into year,
  month, day, weekday, day of year and the day of year as a point on a circle (sin, cos), plus
  hour and minute when the times are not all midnight (times with a time zone, a dtype's or
  offsets in the text, are read in UTC). ``dates="drop"`` drops them.
- categorical: any other text, pandas' category dtype, or the integers above. One-hot
  encoded: a slot per category seen in fit (sorted), one 'unknown' slot that a category first
  seen later (and one seen only once in fit, when others repeat) sets, and a 'missing' slot
  where fit saw gaps. When no category repeats, each gets a slot (MAX_CATEGORIES at most).
- dropped, with the reason in the report: a column with no values; an identifier (text unique
  per row, or integers that are a permutation of consecutive numbers, over at least
  MIN_IDENTIFIER_ROWS rows); high-cardinality text (more distinct values than MAX_CATEGORIES,
  or than HIGH_CARDINALITY_SHARE of its rows when more than MIN_IDENTIFIER_ROWS). ``keep``
  keeps such a column as categorical, its MAX_CATEGORIES most frequent values in slots and the
  rest 'unknown'.
Missing values in numeric, boolean and date columns are imputed with the median of fit's
values, and a 0/1 indicator feature ``<column>:missing`` is added where fit saw gaps.
``missing="drop"``: ``incomplete_rows`` names the rows to leave out of training; the column
statistics come from the complete rows and no indicator is added (later gaps are imputed).
``scale`` (the default): every output feature is standardised with the mean and standard
deviation fit saw (a constant feature is only centred), so the features suit a network as
they are; the command line passes scale=False and puts a Normalization layer in the model."""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

MISSING_TOKENS = frozenset(["", "na", "n/a", "nan", "-nan", "null", "none", "<na>", "#n/a", "#na", "nat",
                            "?", "-1.#ind", "1.#qnan", "1.#ind", "-1.#qnan", "#n/a n/a"])
TRUE_WORDS = frozenset(["true", "yes", "y", "t"])
FALSE_WORDS = frozenset(["false", "no", "n", "f"])
MAX_INTEGER_CATEGORIES = 10
MAX_CATEGORIES = 100
HIGH_CARDINALITY_SHARE = 0.5
MIN_IDENTIFIER_ROWS = 20
KINDS = ("numeric", "categorical", "boolean", "datetime", "dropped")
DATE_PARTS = ("year", "month", "day", "weekday", "day_of_year", "day_of_year_sin", "day_of_year_cos")
TIME_PARTS = ("hour", "minute")
UNKNOWN = "(unknown)"
MISSING = "(missing)"
FORMAT_VERSION = 1


def is_table(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame (without importing pandas when it is not one)."""
    return type(value).__module__.startswith("pandas") and hasattr(value, "columns") and hasattr(value, "iloc")


def _pandas():
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is a dependency
        raise ImportError("fusedtrain's table handling needs pandas (pip install pandas)") from None
    return pandas


def as_frame(table: Any, name: str = "table"):
    """``table`` as a DataFrame: a DataFrame as is, a dict of columns or a list of row dicts
    through pandas.DataFrame. Column names must be distinct strings."""
    pd = _pandas()
    if not is_table(table):
        if isinstance(table, dict) or (isinstance(table, (list, tuple)) and table and isinstance(table[0], dict)):
            try:
                table = pd.DataFrame(table)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{name}: cannot be read as a table ({error})") from None
        else:
            raise TypeError(f"{name}: expected a pandas DataFrame (or a dict of columns), got "
                            f"{type(table).__name__}")
    names = list(table.columns)
    strange = [column for column in names if not isinstance(column, str)]
    if strange:
        raise TypeError(f"{name}: column names must be strings, got {strange[0]!r}; name the columns "
                        f"(df.columns = [...])")
    duplicates = sorted({column for column in names if names.count(column) > 1})
    if duplicates:
        raise ValueError(f"{name}: the column {duplicates[0]!r} appears more than once")
    return table


@dataclass
class ColumnPlan:
    """What TablePreprocessor does with one column; ``note`` says why, for the report."""

    name: str
    kind: str
    note: str = ""
    fill: Optional[float] = None
    indicator: bool = False
    categories: List[Any] = field(default_factory=list)
    missing_slot: bool = False
    date_format: Optional[str] = None
    parts: List[str] = field(default_factory=list)
    gaps: int = 0

    def outputs(self) -> List[str]:
        """The names of the features this column becomes."""
        if self.kind == "dropped":
            return []
        if self.kind == "categorical":
            names = [f"{self.name}={category}" for category in self.categories] + [f"{self.name}={UNKNOWN}"]
            return names + ([f"{self.name}={MISSING}"] if self.missing_slot else [])
        names = [self.name] if self.kind != "datetime" else [f"{self.name}:{part}" for part in self.parts]
        return names + ([f"{self.name}:missing"] if self.indicator else [])

    def describe(self) -> str:
        """One line for the report, e.g. "island: categorical, 3 categories"."""
        text = f"{self.name}: {self.kind}"
        if self.kind == "categorical":
            text += f", {len(self.categories)} categor{'y' if len(self.categories) == 1 else 'ies'}"
        elif self.kind == "datetime":
            text += f", {len(self.parts)} parts"
        if self.note:
            text += f" ({self.note})"
        if self.gaps and self.kind != "dropped":
            filled = "own category" if self.kind == "categorical" else f"median {_short(self.fill, self.kind)}"
            text += f"; {self.gaps} missing, filled: {filled}"
        return text


def _short(value: Optional[float], kind: str) -> str:
    if value is None:
        return "-"
    if kind == "datetime":
        return str(_pandas().Timestamp(int(value)).date())
    return f"{value:.6g}"


def _key(value: Any) -> Any:
    """A category as the plan stores it: an int for integral numbers, else the stripped text."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return int(number) if number.is_integer() else repr(number)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer() and abs(number) < 2 ** 53:
        return int(number)
    return text


class _Column:
    """One column of a table as the rules read it: ``missing`` (bool per row), and ``numbers``
    (float64, NaN where missing or not a number), ``text`` (stripped strings, None where
    missing) or ``dates`` (datetime64[ns]) depending on its dtype."""

    def __init__(self, series):
        pd = _pandas()
        self.name = str(series.name)
        self.rows = len(series)
        self.dtype_kind = "text"
        self.numbers = self.text = self.dates = None
        dtype = series.dtype
        if pd.api.types.is_bool_dtype(dtype):
            self.dtype_kind = "bool"
            self.numbers = series.astype("float64").to_numpy()
            self.missing = np.isnan(self.numbers)
        elif pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
            self.dtype_kind = "number"
            self.numbers = series.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
            self.missing = np.isnan(self.numbers)
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            self.dtype_kind = "date"
            dates = series
            if getattr(dtype, "tz", None) is not None:
                dates = dates.dt.tz_convert("UTC").dt.tz_localize(None)
            self.dates = dates.astype("datetime64[ns]").to_numpy()
            self.missing = np.isnat(self.dates)
        else:
            if isinstance(dtype, pd.CategoricalDtype):
                self.dtype_kind = "category"
            values = series.astype(object)
            missing = values.isna().to_numpy().copy()
            present = np.flatnonzero(~missing)
            stripped = values.iloc[present].astype(str).str.strip()
            token = stripped.str.lower().isin(MISSING_TOKENS).to_numpy()
            self.text = np.full(self.rows, None, dtype=object)
            self.text[present[~token]] = stripped.to_numpy(dtype=object)[~token]
            missing[present[token]] = True
            self.missing = missing

    def parsed_numbers(self) -> np.ndarray:
        """The values as float64 (NaN where missing or not a number)."""
        if self.numbers is not None:
            return self.numbers
        pd = _pandas()
        return pd.to_numeric(pd.Series(self.text, dtype=object), errors="coerce").to_numpy(dtype=np.float64,
                                                                                          na_value=np.nan)


class TablePreprocessor:
    """Infers a plan for each column of a table (see the module's rules), then turns tables
    into float32 feature arrays: ``fit(table)``, ``transform(table)``, ``fit_transform``.

    categorical, numeric, drop, keep: column names that override the inferred type (keep:
    columns the rules would drop, kept as categorical). dates: "expand" or "drop".
    missing: "impute" (the default) or "drop" (see incomplete_rows).
    After fit: ``columns`` (a ColumnPlan per input column), ``feature_names`` (one per output
    feature), ``report()`` (a line per column). ``to_config()`` / ``from_config()`` give the
    JSON the model file holds."""

    def __init__(self, categorical: Sequence[str] = (), numeric: Sequence[str] = (), drop: Sequence[str] = (),
                 keep: Sequence[str] = (), dates: str = "expand", missing: str = "impute", scale: bool = True):
        self.categorical = _names(categorical, "categorical")
        self.numeric = _names(numeric, "numeric")
        self.drop = _names(drop, "drop")
        self.keep = _names(keep, "keep")
        for first, second in (("categorical", "numeric"), ("categorical", "drop"), ("numeric", "drop"),
                              ("keep", "drop")):
            both = sorted(set(getattr(self, first)) & set(getattr(self, second)))
            if both:
                raise ValueError(f"{first}, {second}: the column {both[0]!r} is named in both")
        if dates not in ("expand", "drop"):
            raise ValueError(f"dates: expected 'expand' or 'drop', got {dates!r}")
        if missing not in ("impute", "drop"):
            raise ValueError(f"missing: expected 'impute' or 'drop', got {missing!r}")
        if not isinstance(scale, bool):
            raise TypeError(f"scale: expected True or False, got {scale!r}")
        self.dates = dates
        self.missing = missing
        self.scale = scale
        self.columns: Optional[List[ColumnPlan]] = None
        self.mean: Optional[np.ndarray] = None
        self.std: Optional[np.ndarray] = None

    @property
    def fitted(self) -> bool:
        return self.columns is not None

    @property
    def feature_names(self) -> List[str]:
        self._require_fitted("feature_names")
        return [name for plan in self.columns for name in plan.outputs()]

    @property
    def input_columns(self) -> List[str]:
        """The columns transform reads (every column fit saw that is not dropped)."""
        self._require_fitted("input_columns")
        return [plan.name for plan in self.columns if plan.kind != "dropped"]

    def _require_fitted(self, what: str) -> None:
        if self.columns is None:
            raise RuntimeError(f"{what}: the preprocessor is not fitted; call fit(table) first")

    # Fitting ------------------------------------------------------------------------------------

    def fit(self, table: Any, rows: Any = None) -> "TablePreprocessor":
        """Infers the plan from ``table``. ``rows`` (indices or a boolean mask): the rows whose
        values give the statistics (medians, categories, scaling), such as a training split;
        the types are read from every row, and messages number the rows of ``table``."""
        frame = as_frame(table)
        if len(frame) == 0:
            raise ValueError("table: empty (0 rows)")
        if frame.shape[1] == 0:
            raise ValueError("table: no columns")
        named = self.categorical + self.numeric + self.drop + self.keep
        unknown = [name for name in named if name not in frame.columns]
        if unknown:
            raise ValueError(f"table: no column named {unknown[0]!r} (named in the options); the columns are "
                             f"{_listing(list(frame.columns))}")
        columns = [_Column(frame[name]) for name in frame.columns]
        complete = None
        if rows is not None:
            complete = np.zeros(len(frame), dtype=bool)
            try:
                complete[np.asarray(rows)] = True
            except (IndexError, TypeError, ValueError):
                raise ValueError(f"rows: expected row indices or a mask of {len(frame)} rows") from None
            if not complete.any():
                raise ValueError("rows: selects no row")
        if self.missing == "drop":
            masks = [column.missing for column in columns if column.name not in self.drop and not column.missing.all()]
            selected = ~np.any(masks, axis=0) if masks else np.ones(len(frame), dtype=bool)
            complete = selected if complete is None else complete & selected
            if not complete.any():
                raise ValueError("missing='drop': every row has a missing value; use missing='impute'")
        plans = [self._plan(column, complete) for column in columns]
        if not any(plan.kind != "dropped" for plan in plans):
            reasons = "; ".join(plan.describe() for plan in plans[:5])
            raise ValueError(f"table: no usable feature column ({reasons})")
        self.columns = plans
        self.mean = self.std = None
        if self.scale:
            encoded = self._encode_frame(frame)[complete if complete is not None else slice(None)]
            self.mean = encoded.mean(axis=0)
            std = encoded.std(axis=0)
            std[std <= 1e-12 * np.maximum(1.0, np.abs(self.mean))] = 1.0
            self.std = std
        return self

    def _plan(self, column: _Column, complete: Optional[np.ndarray]) -> ColumnPlan:
        name = column.name
        if name in self.drop:
            return ColumnPlan(name, "dropped", "dropped on request")
        rows = np.ones(column.rows, dtype=bool) if complete is None else complete
        missing = column.missing[rows]
        # Gaps are counted over every row (an indicator wherever one may occur), filled from ``rows``.
        gaps = int(column.missing.sum()) if self.missing == "impute" else 0
        present = int((~missing).sum())
        if present == 0:
            if name in self.keep or name in self.categorical or name in self.numeric:
                raise ValueError(f"table: the column {name!r} has no values to learn from")
            return ColumnPlan(name, "dropped", "no values")
        if name in self.categorical:
            return self._categorical(column, rows, gaps, "categorical on request")
        if name in self.numeric:
            return self._numeric(column, rows, gaps, "numeric on request", require=True)
        # The type is read from every row, the statistics from ``rows``.
        kind = column.dtype_kind
        values = ~column.missing
        if kind == "bool":
            return self._numeric(column, rows, gaps, "", kind="boolean")
        if kind == "date":
            return self._dates(column, rows, gaps, None)
        if kind == "category":
            return self._categorical(column, rows, gaps, "")
        if kind == "text":
            words = {value.lower() for value in column.text[values]}
            # One word for true and one for false at most: "yes"/"no", "True"/"False", "y"/"n".
            if words <= (TRUE_WORDS | FALSE_WORDS) and len(words & TRUE_WORDS) <= 1 and len(words & FALSE_WORDS) <= 1:
                return self._boolean_words(column, rows, gaps)
        numbers = column.parsed_numbers()
        parsed = ~np.isnan(numbers)
        if parsed.sum() == values.sum():
            _check_finite(numbers[parsed], name)
            integral = np.all(numbers[parsed] == np.round(numbers[parsed]))
            distinct = np.unique(numbers[parsed])
            if integral and distinct.size <= MAX_INTEGER_CATEGORIES and 2 * distinct.size <= parsed.sum():
                return self._categorical(column, rows, gaps, f"integers, {distinct.size} distinct values")
            if integral and distinct.size >= MIN_IDENTIFIER_ROWS and distinct.size == parsed.sum() \
                    and distinct[-1] - distinct[0] == distinct.size - 1 and name not in self.keep:
                return ColumnPlan(name, "dropped", "identifier: consecutive integers, unique per row")
            return self._numeric(column, rows, gaps, "")
        fmt = _date_format(column.text[values])
        if fmt is not None:
            return self._dates(column, rows, gaps, fmt)
        present = int(values.sum())
        distinct = len(set(column.text[values]))
        if name not in self.keep:
            if distinct == present and present >= MIN_IDENTIFIER_ROWS:
                return ColumnPlan(name, "dropped", "identifier: text unique per row; keep it with keep=")
            if distinct > MAX_CATEGORIES or (distinct > HIGH_CARDINALITY_SHARE * present and distinct > MIN_IDENTIFIER_ROWS):
                return ColumnPlan(name, "dropped", f"high-cardinality text, {distinct} distinct values in "
                                                   f"{present} rows; keep it with keep=")
        return self._categorical(column, rows, gaps, "kept on request" if name in self.keep else "")

    def _numeric(self, column: _Column, rows, gaps: int, note: str, kind: str = "numeric",
                 require: bool = False) -> ColumnPlan:
        numbers = column.parsed_numbers()
        if require:
            bad = ~column.missing & np.isnan(numbers)
            if bad.any():
                row = int(np.argmax(bad))
                raise ValueError(f"table: the column {column.name!r} (numeric on request) holds "
                                 f"{column.text[row]!r} at row {row + 1}, not a number")
        values = numbers[rows & ~column.missing]
        _check_finite(values, column.name)
        return ColumnPlan(column.name, kind, note, fill=float(np.median(values)), indicator=gaps > 0, gaps=gaps)

    def _boolean_words(self, column: _Column, rows, gaps: int) -> ColumnPlan:
        values = self._boolean_values(column)[rows & ~column.missing]
        return ColumnPlan(column.name, "boolean", "true/false words", fill=float(np.median(values)),
                          indicator=gaps > 0, gaps=gaps)

    @staticmethod
    def _boolean_values(column: _Column) -> np.ndarray:
        values = np.full(column.rows, np.nan)
        present = np.flatnonzero(~column.missing)
        words = _pandas().Series(column.text[present], dtype=object).str.lower()
        values[present] = np.where(words.isin(TRUE_WORDS), 1.0, np.where(words.isin(FALSE_WORDS), 0.0, np.nan))
        return values

    def _dates(self, column: _Column, rows, gaps: int, fmt: Optional[str]) -> ColumnPlan:
        if self.dates == "drop":
            return ColumnPlan(column.name, "dropped", "dates, dropped on request", date_format=fmt)
        stamps = _parse_dates(column, fmt)[rows & ~column.missing].astype(np.int64)
        parts = list(DATE_PARTS)
        if np.any(stamps % (86400 * 10 ** 9) != 0):
            parts += list(TIME_PARTS)
        return ColumnPlan(column.name, "datetime", f"format {fmt}" if fmt else "", fill=float(np.median(stamps)),
                          indicator=gaps > 0, date_format=fmt, parts=parts, gaps=gaps)

    def _categorical(self, column: _Column, rows, gaps: int, note: str) -> ColumnPlan:
        keys = _keys(column)
        counts: Dict[Any, int] = Counter(keys[rows & ~column.missing].tolist())
        frequent = sorted(counts, key=lambda key: (-counts[key], _order(key)))[:MAX_CATEGORIES]
        # A category seen once is left to the 'unknown' slot when others repeat, so that slot
        # learns what a rare or new category means.
        if any(count > 1 for count in counts.values()):
            frequent = [key for key in frequent if counts[key] > 1]
        categories = sorted(frequent, key=_order)
        return ColumnPlan(column.name, "categorical", note, categories=categories, missing_slot=gaps > 0, gaps=gaps)

    def incomplete_rows(self, table: Any) -> np.ndarray:
        """Per row of ``table``, whether a column the plan reads is missing there."""
        self._require_fitted("incomplete_rows")
        frame = self._checked_frame(table)
        masks = [_Column(frame[plan.name]).missing for plan in self.columns if plan.kind != "dropped"]
        return np.any(masks, axis=0) if masks else np.zeros(len(frame), dtype=bool)

    # Transforming -------------------------------------------------------------------------------

    def _checked_frame(self, table: Any):
        frame = as_frame(table)
        absent = [name for name in self.input_columns if name not in frame.columns]
        if absent:
            raise ValueError(f"table: no column named {absent[0]!r}; the model reads the columns "
                             f"{_listing(self.input_columns)}")
        return frame

    def transform(self, table: Any) -> np.ndarray:
        """float32 (rows, len(feature_names)) for a table holding (at least) the columns fit saw;
        other columns are ignored. Missing values are imputed, new categories set 'unknown'; a
        value of the wrong type (text in a numeric column, a date in another format) is a
        ValueError naming the column and the row."""
        self._require_fitted("transform")
        frame = self._checked_frame(table)
        if len(frame) == 0:
            raise ValueError("table: empty (0 rows)")
        encoded = self._encode_frame(frame)
        if self.mean is not None:
            encoded = (encoded - self.mean) / self.std
        return np.ascontiguousarray(encoded, dtype=np.float32)

    def _encode_frame(self, frame) -> np.ndarray:
        """float64 features before scaling."""
        return np.hstack([self._encode(plan, _Column(frame[plan.name]))
                          for plan in self.columns if plan.kind != "dropped"])

    def fit_transform(self, table: Any) -> np.ndarray:
        return self.fit(table).transform(table)

    def _encode(self, plan: ColumnPlan, column: _Column) -> np.ndarray:
        if plan.kind == "categorical":
            return _one_hot(plan, _keys(column), column.missing)
        if plan.kind == "datetime":
            stamps = _parse_dates(column, plan.date_format)
            bad = ~column.missing & np.isnat(stamps)
            if bad.any():
                row = int(np.argmax(bad))
                shown = column.text[row] if column.text is not None else str(stamps[row])
                raise ValueError(f"table: the column {plan.name!r} holds {shown!r} at row {row + 1}, not a date "
                                 f"in the format it was trained on ({plan.date_format or 'datetime'})")
            values = stamps.astype(np.int64).astype(np.float64)
            values[column.missing] = plan.fill
            block = _date_parts(values, plan.parts)
        else:
            if plan.kind == "boolean" and column.text is not None and not _numeric_text(column):
                values = TablePreprocessor._boolean_values(column)
            else:
                values = column.parsed_numbers().copy()
            bad = ~column.missing & np.isnan(values)
            if bad.any():
                row = int(np.argmax(bad))
                raise ValueError(f"table: the column {plan.name!r} holds {column.text[row]!r} at row {row + 1}; "
                                 f"it was {'numeric' if plan.kind == 'numeric' else 'true/false'} in training")
            _check_finite(values[~column.missing], plan.name)
            values[column.missing] = plan.fill
            block = values.reshape(-1, 1)
        if plan.indicator:
            block = np.hstack([block, column.missing.reshape(-1, 1).astype(np.float64)])
        return block

    # Report and JSON ----------------------------------------------------------------------------

    def report(self) -> List[str]:
        self._require_fitted("report")
        return [plan.describe() for plan in self.columns]

    def to_config(self) -> Dict[str, Any]:
        self._require_fitted("to_config")
        return {"format_version": FORMAT_VERSION,
                "options": {"categorical": self.categorical, "numeric": self.numeric, "drop": self.drop,
                            "keep": self.keep, "dates": self.dates, "missing": self.missing, "scale": self.scale},
                "columns": [asdict(plan) for plan in self.columns],
                "scaling": None if self.mean is None else {"mean": self.mean.tolist(), "std": self.std.tolist()}}

    @classmethod
    def from_config(cls, config: Any) -> "TablePreprocessor":
        """The preprocessor to_config described; ValueError for anything malformed."""
        if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
            raise ValueError("preprocessor: expected a configuration of format_version 1")
        options = config.get("options")
        if not isinstance(options, dict):
            raise ValueError("preprocessor: options: expected a JSON object")
        try:
            preprocessor = cls(**options)
        except TypeError as error:
            raise ValueError(f"preprocessor: options: {error}") from None
        entries = config.get("columns")
        if not isinstance(entries, list) or not entries:
            raise ValueError("preprocessor: columns: expected a non-empty list")
        plans = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"preprocessor: columns[{index}]: expected a JSON object")
            try:
                plan = ColumnPlan(**entry)
            except TypeError as error:
                raise ValueError(f"preprocessor: columns[{index}]: {error}") from None
            _check_plan(plan, index)
            plans.append(plan)
        names = [plan.name for plan in plans]
        repeated = sorted(name for name, count in Counter(names).items() if count > 1)
        if repeated:
            raise ValueError(f"preprocessor: columns: two plans name the column {repeated[0]!r}")
        if all(plan.kind == "dropped" for plan in plans):
            raise ValueError("preprocessor: columns: every column is dropped")
        preprocessor.columns = plans
        width = len(preprocessor.feature_names)
        scaling = config.get("scaling")
        if preprocessor.scale != (scaling is not None):
            raise ValueError("preprocessor: scaling: present exactly when the scale option is set")
        if scaling is not None:
            try:
                mean = np.array(scaling["mean"], dtype=np.float64)
                std = np.array(scaling["std"], dtype=np.float64)
            except (KeyError, TypeError, ValueError):
                raise ValueError("preprocessor: scaling: expected lists of numbers mean and std") from None
            if mean.shape != (width,) or std.shape != (width,) or not (np.isfinite(mean).all()
                                                                       and np.isfinite(std).all() and (std > 0).all()):
                raise ValueError(f"preprocessor: scaling: expected {width} finite means and positive deviations")
            preprocessor.mean, preprocessor.std = mean, std
        return preprocessor

    def to_json(self) -> str:
        return json.dumps(self.to_config())

    def __repr__(self) -> str:
        state = f"{len(self.feature_names)} features from {len(self.input_columns)} columns" if self.fitted \
            else "not fitted"
        return f"TablePreprocessor({state})"


def _names(values: Any, option: str) -> List[str]:
    if isinstance(values, str):
        values = [part.strip() for part in values.split(",") if part.strip()]
    if not isinstance(values, (list, tuple)) or not all(isinstance(value, str) for value in values):
        raise TypeError(f"{option}: expected column names (a list of strings or 'a,b'), got {values!r}")
    return list(values)


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:12])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 12 else "")


def _order(key: Any):
    """Sorts numbers before text, each in its natural order."""
    return (0, key, "") if isinstance(key, int) else (1, 0, str(key))


def _keys(column: _Column) -> np.ndarray:
    """The category key of each row (None where missing), each distinct value keyed once."""
    keys = np.full(column.rows, None, dtype=object)
    source = column.text if column.text is not None else (
        column.numbers if column.numbers is not None else column.dates.astype(str))
    present = np.flatnonzero(~column.missing)
    if present.size:
        codes, uniques = _pandas().factorize(source[present])
        distinct = np.empty(len(uniques), dtype=object)
        distinct[:] = [_key(value) for value in uniques]
        keys[present] = distinct[codes]
    return keys


def _numeric_text(column: _Column) -> bool:
    numbers = column.parsed_numbers()
    return bool(np.all(~np.isnan(numbers[~column.missing])))


def _one_hot(plan: ColumnPlan, keys: np.ndarray, missing: np.ndarray) -> np.ndarray:
    width = len(plan.categories) + 1 + int(plan.missing_slot)
    unknown = len(plan.categories)
    slot = {category: index for index, category in enumerate(plan.categories)}
    slots = np.full(keys.shape[0], unknown + 1 if plan.missing_slot else unknown, dtype=np.int64)
    present = np.flatnonzero(~missing)
    if present.size:
        codes, uniques = _pandas().factorize(keys[present])
        slots[present] = np.array([slot.get(key, unknown) for key in uniques], dtype=np.int64)[codes]
    block = np.zeros((keys.shape[0], width), dtype=np.float64)
    block[np.arange(keys.shape[0]), slots] = 1.0
    return block


def _check_finite(values: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(values) | (np.abs(values) > float(np.finfo(np.float32).max))
    if bad.any():
        raise ValueError(f"table: the column {name!r} holds {float(values[np.argmax(bad)]):g}, not a finite number "
                         f"within float32's range")


def _date_format(texts: np.ndarray) -> Optional[str]:
    """The one strftime format every text parses with (pandas' guess from the first), else None."""
    if texts.size == 0 or not any(character.isdigit() for character in texts[0]):
        return None
    pd = _pandas()
    from pandas.tseries.api import guess_datetime_format

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fmt = guess_datetime_format(texts[0])
        if fmt is None:
            return None
        # utc: offsets that differ between rows (a change to summer time) are one format.
        parsed = pd.to_datetime(pd.Series(texts, dtype=object), format=fmt, errors="coerce", utc=True)
    return fmt if not parsed.isna().any() else None


def _parse_dates(column: _Column, fmt: Optional[str]) -> np.ndarray:
    """datetime64[ns] per row, NaT where missing or not a date in ``fmt``."""
    if column.dates is not None:
        return column.dates
    pd = _pandas()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(pd.Series(column.text, dtype=object), format=fmt, errors="coerce", utc=True)
    return parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _date_parts(nanoseconds: np.ndarray, parts: Sequence[str]) -> np.ndarray:
    pd = _pandas()
    stamps = pd.DatetimeIndex(nanoseconds.astype(np.int64).astype("datetime64[ns]"))
    day_of_year = stamps.day_of_year.to_numpy().astype(np.float64)
    angle = 2.0 * np.pi * (day_of_year - 1.0) / 365.25
    values = {"year": stamps.year, "month": stamps.month, "day": stamps.day, "weekday": stamps.day_of_week,
              "day_of_year": day_of_year, "day_of_year_sin": np.sin(angle), "day_of_year_cos": np.cos(angle),
              "hour": stamps.hour, "minute": stamps.minute}
    return np.column_stack([np.asarray(values[part], dtype=np.float64) for part in parts])


def _check_plan(plan: ColumnPlan, index: int) -> None:
    where = f"preprocessor: columns[{index}]"
    if not isinstance(plan.name, str) or plan.kind not in KINDS:
        raise ValueError(f"{where}: expected a column name and a kind among {', '.join(KINDS)}")
    if plan.kind in ("numeric", "boolean", "datetime"):
        if not isinstance(plan.fill, (int, float)) or isinstance(plan.fill, bool) or not math.isfinite(plan.fill):
            raise ValueError(f"{where} ({plan.name!r}): fill is not a finite number")
    if plan.kind == "categorical":
        if not isinstance(plan.categories, list) or not all(
                isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)) for key in plan.categories):
            raise ValueError(f"{where} ({plan.name!r}): categories must be a list of strings and integers")
    if plan.kind == "datetime":
        allowed = set(DATE_PARTS) | set(TIME_PARTS)
        if not isinstance(plan.parts, list) or not plan.parts or not set(plan.parts) <= allowed:
            raise ValueError(f"{where} ({plan.name!r}): parts must be among {', '.join(sorted(allowed))}")
        if plan.date_format is not None and not isinstance(plan.date_format, str):
            raise ValueError(f"{where} ({plan.name!r}): date_format must be a string")
    for flag in ("indicator", "missing_slot"):
        if not isinstance(getattr(plan, flag), bool):
            raise ValueError(f"{where} ({plan.name!r}): {flag} must be true or false")
