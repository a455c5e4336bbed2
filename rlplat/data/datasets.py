"""Local prompt datasets for GRPO: read, validate, render into ``PromptItem``s.

A dataset is one local file (``.jsonl``, ``.json`` or ``.parquet``), or a directory written by
``Dataset.save_to_disk`` (its ``train`` split for a dataset dictionary), read with the Hugging Face
``datasets`` library (offline: nothing is fetched). Each row gives a question and a reference
answer, optionally a system prompt, an id and metadata forwarded to the reward. Everything is
validated before :func:`load_prompts` returns, so the launcher can call it before Ray starts and
turn a :class:`DataError` into a one-paragraph message and exit code 2.

Row numbers in messages are 1-based. For JSONL they are the record's position, and the message
adds the physical line number (``datasets`` skips blank lines, so the two can differ).

Known ``datasets`` behaviour worth knowing: when a JSON column mixes types (strings and numbers),
``datasets`` stores it as a ``Json`` feature and decodes strings that are valid JSON, so an answer
``"3.10"`` in such a column arrives as the float 3.1. Keep each column to one type.
"""

from __future__ import annotations

import json
import os
import reprlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from rewards import last_boxed
from rlplat.config.schema import DatasetConfig
from rlplat.data.chat import build_messages, render_prompt, system_prompt
from rlplat.types import PromptItem

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

AnswerFormat = Literal["plain", "gsm8k", "boxed"]
# How error messages name the settings (``data.file.prompt_field=...``).
_KEY = "data.file"
_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_short = reprlib.Repr()  # keyword arguments to Repr() need Python 3.12
_short.maxstring = _short.maxother = 60


class DataError(ValueError):
    """A dataset file or a dataset setting is unusable; the message says where and how to fix it.

    Attributes:
        path: The dataset file.
        row: Human-readable row locator ("row 3 (line 4)"), or None for file-level problems.
        field: The offending field (column or config key), or None.
    """

    def __init__(self, path: str, problem: str, fix: str, *, row: str | None = None, field: str | None = None) -> None:
        where = ", ".join(p for p in (f"dataset {path}", row, f"field '{field}'" if field else None) if p)
        super().__init__(f"{where}: {problem}. Fix: {fix}.")
        self.path, self.row, self.field = path, row, field


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def load_prompts(cfg: DatasetConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> list[PromptItem]:
    """Read, validate and render every prompt of a dataset.

    Args:
        cfg: The dataset settings.
        tokenizer: Its chat template (``add_generation_prompt=True``) renders ``PromptItem.text``;
            without a tokenizer or template, the plain fallback of ``rlplat.data.chat`` is used.

    Returns:
        One ``PromptItem`` per row (the first ``cfg.limit`` rows), ``index`` 0-based in file order.

    Raises:
        DataError: missing/unreadable file, unsupported format, empty dataset, a missing column,
            a row with a missing or mistyped field, an unextractable answer, duplicate ids, or a
            chat template that rejects the messages. Raised before anything is returned.
    """
    rows = _read_rows(cfg)
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    items = [_to_item(cfg, row, i, tokenizer) for i, row in enumerate(rows)]
    _check_unique_uids(cfg, items)
    return items


def read_rows(cfg: DatasetConfig) -> list[dict[str, Any]]:
    """The dataset's raw rows (the first ``cfg.limit``) in file order: row ``i`` is the one that
    ``load_prompts`` turns into the item with ``index == i`` (used to write filtered copies)."""
    rows = _read_rows(cfg)
    return rows if cfg.limit is None else rows[: cfg.limit]


def validate_dataset_file(cfg: DatasetConfig) -> None:
    """Check a dataset without a tokenizer (cheap; for config validation before Ray starts).

    Raises:
        DataError: as :func:`load_prompts`, except chat-template problems.
    """
    load_prompts(cfg, tokenizer=None)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _path(cfg: DatasetConfig) -> str:
    """The dataset file (``_read_rows`` has checked that one is configured)."""
    return cfg.path or ""


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _read_rows(cfg: DatasetConfig) -> list[dict[str, Any]]:
    """All rows of the file as dicts, after file-level and column-level checks."""
    if not cfg.path:
        raise DataError("(none)", "no dataset file is configured", f"set {_KEY}.path to a .jsonl, .json or .parquet file")
    if is_saved_dataset(_path(cfg)):
        rows = _load_saved(cfg)
    else:
        _check_file(cfg)
        rows = _load_with_datasets(cfg)
    if not rows:
        raise DataError(_path(cfg), "the dataset has no rows", "point to a file with at least one row")
    _check_columns(cfg, rows)
    return rows


def is_saved_dataset(path: str) -> bool:
    """Whether ``path`` is a directory ``datasets`` wrote with ``save_to_disk`` (a dataset, or a
    dataset dictionary of splits)."""
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, name))
                                       for name in ("state.json", "dataset_dict.json"))


def _load_saved(cfg: DatasetConfig) -> list[dict[str, Any]]:
    """The rows of a ``save_to_disk`` directory: the dataset, or its ``train`` split."""
    import datasets

    try:
        saved = datasets.load_from_disk(_path(cfg))
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as err:
        raise DataError(_path(cfg), f"the saved dataset cannot be read ({type(err).__name__}: {err})",
                        "save it again with Dataset.save_to_disk") from err
    if isinstance(saved, datasets.DatasetDict):
        if "train" not in saved:
            raise DataError(_path(cfg), f"the saved dataset has no 'train' split (splits {sorted(saved)})",
                            "save the split to train on alone, or under the name 'train'")
        saved = saved["train"]
    rows: list[dict[str, Any]] = saved.to_list()
    return rows


def _check_file(cfg: DatasetConfig) -> None:
    """The configured path is a file of a type ``datasets`` reads."""
    if not os.path.isfile(_path(cfg)):
        what = "is a directory datasets did not save (no state.json)" if os.path.isdir(_path(cfg)) \
            else "does not exist"
        # Relative paths resolve against the working directory, which a launcher may have changed.
        where = "" if os.path.isabs(_path(cfg)) else f" (resolved to {os.path.abspath(_path(cfg))})"
        raise DataError(
            _path(cfg),
            f"the file {what}{where}",
            f"set {_KEY}.path to an existing .jsonl, .json or .parquet file, or a save_to_disk directory",
        )
    if _suffix(_path(cfg)) not in _BUILDERS:
        raise DataError(
            _path(cfg),
            f"unsupported file type {_suffix(_path(cfg))!r}",
            "convert it to .jsonl, .json or .parquet (the suffix selects the reader)",
        )


def _load_with_datasets(cfg: DatasetConfig) -> list[dict[str, Any]]:
    """All rows via ``datasets``; a file it cannot read becomes a ``DataError``."""
    import datasets  # heavy (about 0.5 s): imported only when a dataset is read
    import pyarrow

    read_errors = (OSError, ValueError, StopIteration, datasets.exceptions.DatasetsError, pyarrow.ArrowException)
    # A "Generating train split" bar for every small local file is noise in the launcher's output.
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        rows: list[dict[str, Any]] = datasets.load_dataset(
            _BUILDERS[_suffix(_path(cfg))], data_files=_path(cfg), split="train"
        ).to_list()
    except read_errors as err:
        _diagnose_json(cfg)  # raises a precise, row-level DataError when it finds the cause
        raise DataError(
            _path(cfg),
            f"the file cannot be read ({type(err).__name__}: {err})",
            f"check that it is valid {_suffix(_path(cfg))[1:]}",
        ) from err
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    return rows


def _required_columns(cfg: DatasetConfig) -> list[tuple[str, str]]:
    """(config key, column) for every column the settings refer to."""
    optional = [("system_field", cfg.system_field), ("id_field", cfg.id_field)]
    cols = [("prompt_field", cfg.prompt_field), ("answer_field", cfg.answer_field)]
    cols += [(k, c) for k, c in optional if c is not None]
    return cols + [("metadata_fields", c) for c in cfg.metadata_fields]


def _check_columns(cfg: DatasetConfig, rows: list[dict[str, Any]]) -> None:
    available = sorted(rows[0].keys())
    for key, column in _required_columns(cfg):
        if column not in available:
            _diagnose_json(cfg, check_rows=False)  # a JSONL line that is not an object shows up as 'text'
            raise DataError(
                _path(cfg),
                f"no such column (found columns {available})",
                f"set {_KEY}.{key} to one of {available}",
                row="row 1",
                field=column,
            )


def _jsonl_records(path: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each non-blank line, the records ``datasets`` reads."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield lineno, line


def _diagnose_json(cfg: DatasetConfig, check_rows: bool = True) -> None:
    """Parse a JSON/JSONL file by hand to name the row that broke ``datasets``; no-op otherwise.

    With ``check_rows`` every record is also validated as ``load_prompts`` would; without it only
    the JSON syntax and the record shape (an object) are checked.
    """
    if _BUILDERS.get(_suffix(_path(cfg))) != "json":
        return
    try:
        records = _parse_json_records(cfg)
    except UnicodeDecodeError as err:
        raise DataError(_path(cfg), f"the file is not UTF-8 text ({err})", "re-encode it as UTF-8") from err
    if not records:
        raise DataError(_path(cfg), "the dataset has no rows", "point to a file with at least one row")
    limit = cfg.limit if cfg.limit is not None else len(records)
    for i, row in enumerate(records[:limit] if check_rows else []):
        _to_item(cfg, row, i, None)  # raises on the first bad field


def _parse_json_records(cfg: DatasetConfig) -> list[dict[str, Any]]:
    if _suffix(_path(cfg)) != ".json":
        return _parse_jsonl(cfg)
    with open(_path(cfg), encoding="utf-8") as f:
        text = f.read()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if not text.lstrip().startswith("["):
            return _parse_jsonl(cfg)  # datasets also accepts JSON lines in a .json file
        raise DataError(_path(cfg), f"invalid JSON at line {err.lineno}: {err.msg}", "fix the JSON syntax") from err
    records = value if isinstance(value, list) else [value]
    return [_as_object(cfg, r, f"row {i + 1}") for i, r in enumerate(records)]


def _parse_jsonl(cfg: DatasetConfig) -> list[dict[str, Any]]:
    records = []
    for n, (lineno, line) in enumerate(_jsonl_records(_path(cfg)), start=1):
        row = f"row {n} (line {lineno})"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                _path(cfg),
                f"invalid JSON: {err.msg} (found {_short.repr(line.strip())})",
                "make every line one complete JSON object",
                row=row,
            ) from err
        records.append(_as_object(cfg, value, row))
    return records


def _as_object(cfg: DatasetConfig, value: Any, row: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(
            _path(cfg),
            f"expected a JSON object, found {_describe(value)}",
            'make every record an object such as {"question": ..., "answer": ...}',
            row=row,
        )
    return value


# ---------------------------------------------------------------------------------------------
# Row validation and rendering
# ---------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {_short.repr(value)}"


def _row_label(cfg: DatasetConfig, index: int) -> str:
    """Row locator for messages: 1-based row, plus the physical line for JSONL (read only on error)."""
    if _suffix(_path(cfg)) != ".jsonl":
        return f"row {index + 1}"
    for n, (lineno, _) in enumerate(_jsonl_records(_path(cfg))):
        if n == index:
            return f"row {index + 1} (line {lineno})"
    return f"row {index + 1}"


def row_error(cfg: DatasetConfig, index: int, field: str, problem: str, fix: str) -> DataError:
    """A ``DataError`` naming the file, row ``index`` (0-based; shown 1-based, with the JSONL line) and ``field``."""
    return DataError(_path(cfg), problem, fix, row=_row_label(cfg, index), field=field)


def _present(row: dict[str, Any], field: str) -> bool:
    return row.get(field) is not None


def _question(cfg: DatasetConfig, row: dict[str, Any], index: int) -> str:
    value = row.get(cfg.prompt_field)
    if isinstance(value, str) and value.strip():
        return value
    problem = "is missing" if value is None else f"must be a non-empty string, found {_describe(value)}"
    fix = (
        f"fill in or drop that row, or set {_KEY}.prompt_field to the column that holds "
        f"the question; available fields: {sorted(row.keys())}"
    )
    raise row_error(cfg, index, cfg.prompt_field, problem, fix)


def _number_to_str(value: float) -> str:
    # Arrow widens a column with ints and floats to float64: print 72.0 as the "72" it was.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _reference(cfg: DatasetConfig, row: dict[str, Any], index: int) -> Any:
    value = row.get(cfg.answer_field)
    fix_field = (
        f"fill in or drop that row, or set {_KEY}.answer_field; available fields: {sorted(row.keys())}"
    )
    if value is None:
        raise row_error(cfg, index, cfg.answer_field, "is missing", fix_field)
    if isinstance(value, bool) or not isinstance(value, (str, int, float, list, dict)):
        problem = f"must be a string or a number (or a list/object of code tests), found {_describe(value)}"
        raise row_error(cfg, index, cfg.answer_field, problem, fix_field)
    if isinstance(value, (int, float)):
        value = _number_to_str(value)
    if cfg.answer_format == "plain" and not isinstance(value, str):
        return value  # code tests (lists of asserts, {"input", "output"} cases) pass through
    extracted = extract_reference(value, cfg.answer_format) if isinstance(value, str) else None
    if cfg.answer_format == "plain" and not extracted:
        raise row_error(cfg, index, cfg.answer_field, "is an empty string", fix_field)
    if not extracted:
        marker = "'#### <answer>'" if cfg.answer_format == "gsm8k" else "'\\boxed{...}'"
        raise row_error(
            cfg,
            index,
            cfg.answer_field,
            f"answer_format '{cfg.answer_format}' needs {marker}, found {_describe(value)}",
            f"fix the row, or set {_KEY}.answer_format=plain if the field already holds the bare answer",
        )
    return extracted


def _row_system(cfg: DatasetConfig, row: dict[str, Any], index: int) -> str | None:
    if cfg.system_field is None or not _present(row, cfg.system_field):
        return None
    value = row[cfg.system_field]
    if not isinstance(value, str):
        raise row_error(
            cfg,
            index,
            cfg.system_field,
            f"must be a string, found {_describe(value)}",
            f"fix the row, or set {_KEY}.system_field=null",
        )
    return value


def _uid(cfg: DatasetConfig, row: dict[str, Any], index: int) -> str:
    if cfg.id_field is None:
        return f"{os.path.basename(os.path.normpath(_path(cfg)))}:{index + 1}"
    value = row.get(cfg.id_field)
    if value is None or isinstance(value, (bool, list, dict)):
        found = "nothing" if value is None else _describe(value)
        raise row_error(
            cfg,
            index,
            cfg.id_field,
            f"must be a string or integer id, found {found}",
            f"fill in the id, or set {_KEY}.id_field=null to number rows",
        )
    return str(value)


def _user_message(cfg: DatasetConfig, question: str) -> str:
    suffix = cfg.instruction_suffix
    if not suffix:
        return question
    return question + suffix if suffix[0].isspace() else f"{question}\n{suffix}"


def _render(
    cfg: DatasetConfig, system: str | None, user: str, index: int, tokenizer: PreTrainedTokenizerBase | None
) -> str:
    try:
        return render_prompt(build_messages(system, user), tokenizer)
    except Exception as err:  # jinja raises TemplateError, templates may raise anything
        raise row_error(
            cfg,
            index,
            "chat_template",
            f"the tokenizer's chat template failed: {err}",
            f"use a tokenizer whose template accepts these messages, or set "
            f"{_KEY}.thinking=none and {_KEY}.system_field=null if it "
            "rejects a system role",
        ) from err


def _to_item(
    cfg: DatasetConfig, row: dict[str, Any], index: int, tokenizer: PreTrainedTokenizerBase | None
) -> PromptItem:
    question = _question(cfg, row, index)
    reference = _reference(cfg, row, index)
    system = system_prompt(cfg.thinking, _row_system(cfg, row, index))
    missing = [f for f in cfg.metadata_fields if f not in row]
    if missing:
        raise row_error(
            cfg,
            index,
            missing[0],
            "is not in the row",
            f"remove it from {_KEY}.metadata_fields; available fields: {sorted(row)}",
        )
    metadata = {f: row[f] for f in cfg.metadata_fields}
    text = _render(cfg, system, _user_message(cfg, question), index, tokenizer)
    return PromptItem(
        uid=_uid(cfg, row, index),
        index=index,
        question=question,
        text=text,
        reference=reference,
        system=system,
        metadata=metadata,
    )


def _check_unique_uids(cfg: DatasetConfig, items: list[PromptItem]) -> None:
    # The curriculum's pass-rate store is keyed by uid: duplicates would merge two prompts' stats.
    first: dict[str, int] = {}
    for item in items:
        if item.uid in first:
            raise row_error(
                cfg,
                item.index,
                cfg.id_field or "uid",
                f"duplicate id {item.uid!r}, first seen in {_row_label(cfg, first[item.uid])}",
                f"make the ids unique, or set {_KEY}.id_field=null to number rows instead",
            )
        first[item.uid] = item.index


# ---------------------------------------------------------------------------------------------
# Reference extraction
# ---------------------------------------------------------------------------------------------


def extract_reference(answer: str, answer_format: AnswerFormat) -> str | None:
    """The reference answer inside a solution text, or None when there is none.

    Args:
        answer: The raw answer field.
        answer_format: "plain" (stripped text), "gsm8k" (after the last ``####``, commas removed:
            ``"... #### 1,234"`` -> ``"1234"``) or "boxed" (the last ``\\boxed{...}``/``\\fbox{...}``
            with nested braces, MATH style: ``"\\boxed{\\frac{1}{2}}"`` -> ``"\\frac{1}{2}"``).
    """
    if answer_format == "gsm8k":
        if "####" not in answer:
            return None
        return answer.rsplit("####", 1)[1].strip().replace(",", "") or None
    if answer_format == "boxed":
        return last_boxed(answer)
    return answer.strip()
