"""The offline model's projects: small runnable Python projects chosen and named from the request.

Three kinds, each with its own code, tests and design, all stdlib-only and tested with pytest:
- a command-line tool: a CSV -> JSON converter when the request asks for a conversion, else a text
  statistics tool (lines, words, characters, top words);
- a REST API: a WSGI application over an in-memory store for the request's resource (e.g. todo items),
  with exactly the endpoints the request names (all five CRUD endpoints when it names none);
- a library: a date parser when the request is about dates, else a slug/text-normalisation library.

Deterministic: the same request always gives the same files, so the code agent and the test agent (which
run separately) agree on module names and functions without talking to each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tdev.llm.offline_words import fields_of, plural, resources_in

_CLI_WORDS = re.compile(r"\b(cli|command[- ]line|terminal|console tool|script)\b")
_API_WORDS = re.compile(r"\b(api|rest|restful|endpoints?|http|web service|server|crud)\b")
_LIBRARY_WORDS = re.compile(r"\b(library|package|module|sdk)\b")
_PARSER_WORDS = re.compile(r"\b(parser|parse|parsing)\b")
_CONVERT = re.compile(r"\bconvert\w*\b|\b(to|into)\s+json\b")
_HTTP_ROUTE = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE)\s+(/[A-Za-z0-9_/{}:<>-]*)")
_OPERATION_WORDS = {
    "list": ("list", "lists", "listing", "browse"),
    "create": ("create", "creates", "creating", "add", "adds", "adding", "new"),
    "get": ("get", "gets", "read", "reads", "show", "shows", "fetch", "retrieve", "view"),
    "update": ("update", "updates", "updating", "edit", "edits", "modify", "change", "complete", "mark"),
    "delete": ("delete", "deletes", "deleting", "remove", "removes"),
}
ALL_OPERATIONS = ("list", "create", "get", "update", "delete")


@dataclass
class Project:
    kind: str  # cli | api | library
    name: str  # the Python package
    title: str
    sources: dict[str, str] = field(default_factory=dict)
    tests: dict[str, str] = field(default_factory=dict)
    design: str = ""
    usage: str = ""

    @property
    def files(self) -> dict[str, str]:
        return {**self.sources, **self.tests}


def project_kind(request: str) -> str:
    text = request.lower()
    if _LIBRARY_WORDS.search(text):
        return "library"
    if _CLI_WORDS.search(text):
        return "cli"
    if _API_WORDS.search(text):
        return "api"
    if _PARSER_WORDS.search(text):
        return "library"
    if _CONVERT.search(text):
        return "cli"
    return "api"


def plan_project(request: str) -> Project:
    """The project that fits the request."""
    kind = project_kind(request)
    text = request.lower()
    if kind == "cli":
        return _csv_to_json(request) if "csv" in text and "json" in text else _text_stats(request)
    if kind == "library":
        return _date_parser(request) if re.search(r"\bdates?\b|\bdatetime", text) else _slugify(request)
    return _rest_api(request)


def _fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"__{key.upper()}__", value)
    return template.lstrip("\n")


def _pyproject(name: str, description: str, script: str | None = None) -> str:
    lines = [
        "[project]",
        f'name = "{name.replace("_", "-")}"',
        'version = "0.1.0"',
        f'description = "{description}"',
        'requires-python = ">=3.10"',
        "dependencies = []",
        "",
        "[project.optional-dependencies]",
        'test = ["pytest>=7"]',
        "",
    ]
    if script:
        lines += ["[project.scripts]", f'{name.replace("_", "-")} = "{script}"', ""]
    lines += ["[tool.pytest.ini_options]", 'testpaths = ["tests"]', 'pythonpath = ["."]', ""]
    return "\n".join(lines)


def _readme(title: str, description: str, usage: str) -> str:
    return (
        f"# {title}\n\n{description}\n\n## Usage\n\n```\n{usage}\n```\n\n"
        "## Tests\n\n```\npython -m pytest\n```\n\nStandard library only; Python 3.10 or later.\n"
    )


def _design_doc(title: str, request: str, parts: list[str], decisions: list[str], tests: list[str]) -> str:
    lines = [f"# Design: {title}", "", f"Request: {' '.join(request.split())[:300]}", "", "## Components"]
    lines += [f"- {p}" for p in parts]
    lines += ["", "## Decisions"] + [f"{i}. {d}" for i, d in enumerate(decisions, start=1)]
    lines += ["", "## Test plan"] + [f"- {t}" for t in tests]
    return "\n".join(lines) + "\n"


# =========================================================================================== CLI
_CSV_CORE = '''
"""Convert CSV text to JSON: one object per data row, keyed by the header row."""

from __future__ import annotations

import csv
import io
import json
from typing import Any


class ConversionError(ValueError):
    """The input is not a CSV table this tool can convert."""


def parse_value(text: str) -> Any:
    """Typed value of a cell: '42' -> 42, '4.5' -> 4.5, 'true'/'false' -> bool, '' -> None, else text."""
    stripped = text.strip()
    if stripped == "":
        return None
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        return float(stripped)
    except ValueError:
        return text


def csv_to_records(text: str, *, delimiter: str = ",", infer_types: bool = False) -> list[dict[str, Any]]:
    """The rows of `text` as dicts keyed by the header; blank lines are skipped, ragged rows refused."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    records: list[dict[str, Any]] = []
    for row in reader:
        if not row or all(cell == "" for cell in row):
            continue
        if header is None:
            header = [name.strip() for name in row]
            if any(not name for name in header):
                raise ConversionError("the header row has an empty column name")
            if len(set(header)) != len(header):
                raise ConversionError("the header row repeats a column name")
            continue
        if len(row) != len(header):
            raise ConversionError(f"line {reader.line_num}: {len(row)} fields, expected {len(header)}")
        records.append({name: parse_value(cell) if infer_types else cell for name, cell in zip(header, row)})
    return records


def csv_to_json(text: str, *, delimiter: str = ",", infer_types: bool = False, indent: int | None = 2) -> str:
    """The JSON array for the CSV `text`."""
    records = csv_to_records(text, delimiter=delimiter, infer_types=infer_types)
    return json.dumps(records, indent=indent, ensure_ascii=False)
'''

_CSV_CLI = '''
"""Command line: `__SCRIPT__ INPUT.csv [-o OUTPUT.json] [--delimiter ;] [--infer-types] [--indent N]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from __PKG__ import ConversionError, csv_to_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="__SCRIPT__", description="Convert a CSV file to a JSON array.")
    parser.add_argument("input", help="the CSV file to read, or - for standard input")
    parser.add_argument("-o", "--output", help="write the JSON here instead of standard output")
    parser.add_argument("-d", "--delimiter", default=",", help="the field separator (default: ,)")
    parser.add_argument("--infer-types", action="store_true", help="numbers, booleans and empty cells typed")
    parser.add_argument("--indent", type=int, default=2, help="JSON indentation (0: one line)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if len(args.delimiter) != 1:
        print("error: the delimiter must be one character", file=sys.stderr)
        return 2
    try:
        text = sys.stdin.read() if args.input == "-" else Path(args.input).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.input}: {exc}", file=sys.stderr)
        return 1
    try:
        result = csv_to_json(
            text, delimiter=args.delimiter, infer_types=args.infer_types, indent=args.indent or None
        )
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(result + "\\n", encoding="utf-8")
    else:
        print(result)
    return 0
'''

_MAIN = '''
"""`python -m __PKG__`."""

from __PKG__.cli import main

raise SystemExit(main())
'''

_CSV_TESTS = '''
"""Tests for __PKG__: the conversion and the command line."""

from __future__ import annotations

import io
import json

import pytest

from __PKG__ import ConversionError, csv_to_json, csv_to_records, parse_value
from __PKG__.cli import main


def test_rows_become_objects_keyed_by_the_header() -> None:
    records = csv_to_records("name,age\\nAda,36\\nAlan,41\\n")
    assert records == [{"name": "Ada", "age": "36"}, {"name": "Alan", "age": "41"}]


def test_quoted_fields_keep_commas_quotes_and_newlines() -> None:
    text = 'name,quote\\n"Lovelace, Ada","She said ""hi""\\nand left"\\n'
    assert csv_to_records(text) == [{"name": "Lovelace, Ada", "quote": 'She said "hi"\\nand left'}]


def test_infer_types_turns_numbers_booleans_and_blanks_into_json_values() -> None:
    records = csv_to_records("n,x,ok,missing,word\\n7,2.5,true,,seven\\n", infer_types=True)
    assert records == [{"n": 7, "x": 2.5, "ok": True, "missing": None, "word": "seven"}]


@pytest.mark.parametrize(
    ("cell", "value"), [("0", 0), ("-3", -3), ("1e3", 1000.0), ("False", False), (" ", None)]
)
def test_parse_value(cell: str, value: object) -> None:
    assert parse_value(cell) == value


def test_blank_lines_are_skipped_and_empty_input_is_an_empty_array() -> None:
    assert csv_to_records("a,b\\n\\n1,2\\n\\n") == [{"a": "1", "b": "2"}]
    assert csv_to_json("") == "[]"


def test_a_ragged_row_is_refused_with_its_line_number() -> None:
    with pytest.raises(ConversionError, match="line 3: 1 fields, expected 2"):
        csv_to_records("a,b\\n1,2\\n3\\n")


def test_duplicate_or_empty_column_names_are_refused() -> None:
    with pytest.raises(ConversionError, match="repeats"):
        csv_to_records("a,a\\n1,2\\n")
    with pytest.raises(ConversionError, match="empty column"):
        csv_to_records("a,\\n1,2\\n")


def test_other_delimiters() -> None:
    assert csv_to_records("a;b\\n1;2\\n", delimiter=";") == [{"a": "1", "b": "2"}]


def test_the_cli_converts_a_file_into_a_json_file(tmp_path) -> None:
    source = tmp_path / "people.csv"
    source.write_text("name,age\\nAda,36\\n", encoding="utf-8")
    target = tmp_path / "people.json"
    assert main([str(source), "-o", str(target), "--infer-types"]) == 0
    assert json.loads(target.read_text(encoding="utf-8")) == [{"name": "Ada", "age": 36}]


def test_the_cli_reads_standard_input_and_prints_json(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("k,v\\nx,1\\n"))
    assert main(["-", "--indent", "0"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"k": "x", "v": "1"}]


def test_the_cli_reports_bad_input_on_stderr_with_exit_code_2(tmp_path, capsys) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("a,b\\n1\\n", encoding="utf-8")
    assert main([str(source)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_the_cli_reports_a_missing_file_with_exit_code_1(tmp_path, capsys) -> None:
    assert main([str(tmp_path / "nope.csv")]) == 1
    assert "cannot read" in capsys.readouterr().err
'''


def _csv_to_json(request: str) -> Project:
    pkg, script = "csv_to_json", "csv-to-json"
    title = "csv-to-json: convert CSV files to JSON"
    usage = f"python -m {pkg} people.csv -o people.json --infer-types\ncat people.csv | python -m {pkg} -"
    project = Project("cli", pkg, title, usage=usage)
    project.sources = {
        "pyproject.toml": _pyproject(pkg, "Convert CSV files to JSON arrays", f"{pkg}.cli:main"),
        "README.md": _readme(
            title,
            "Reads a CSV table (header row first) and writes a JSON array of objects, one per row.",
            usage,
        ),
        f"{pkg}/__init__.py": _fill(_CSV_CORE),
        f"{pkg}/cli.py": _fill(_CSV_CLI, pkg=pkg, script=script),
        f"{pkg}/__main__.py": _fill(_MAIN, pkg=pkg),
    }
    project.tests = {f"tests/test_{pkg}.py": _fill(_CSV_TESTS, pkg=pkg)}
    project.design = _design_doc(
        title,
        request,
        [
            f"`{pkg}/__init__.py`: the conversion (`csv_to_records`, `csv_to_json`), no I/O.",
            f"`{pkg}/cli.py`: argument parsing, reading the file or stdin, writing the file or stdout.",
            f"`{pkg}/__main__.py`: `python -m {pkg}`; `pyproject.toml` also installs `{script}`.",
        ],
        [
            "The standard library's csv module parses (quotes, embedded delimiters and newlines right).",
            "Values stay text unless --infer-types: a converter must not silently change '007' into 7.",
            "A ragged row is an error naming its line: silently padding would corrupt data.",
            "Exit codes: 0 converted, 1 cannot read the input, 2 the input is not a valid table.",
        ],
        [
            "header mapping, quoting, type inference, blank lines, ragged rows, delimiters",
            "the CLI end to end: file to file, stdin to stdout, error exit codes",
        ],
    )
    return project


_STATS_CORE = '''
"""Text statistics: lines, words, characters and the most common words."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

WORD = re.compile(r"[A-Za-z0-9']+")


@dataclass(frozen=True)
class Stats:
    lines: int
    words: int
    characters: int
    top_words: list[tuple[str, int]]


def analyse(text: str, *, top: int = 5) -> Stats:
    """Count lines, words and characters of `text`; the `top` most frequent words (case-insensitive)."""
    words = [w.lower() for w in WORD.findall(text)]
    counts = Counter(words)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: max(0, top)]
    return Stats(lines=len(text.splitlines()), words=len(words), characters=len(text), top_words=ranked)
'''

_STATS_CLI = '''
"""Command line: `__SCRIPT__ FILE [--top N] [--json]` (FILE may be - for standard input)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from __PKG__ import analyse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="__SCRIPT__", description="Count lines, words and characters.")
    parser.add_argument("input", help="the text file, or - for standard input")
    parser.add_argument("--top", type=int, default=5, help="how many frequent words to show")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.input == "-" else Path(args.input).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.input}: {exc}", file=sys.stderr)
        return 1
    stats = analyse(text, top=args.top)
    if args.json:
        print(json.dumps(asdict(stats)))
    else:
        print(f"lines {stats.lines}  words {stats.words}  characters {stats.characters}")
        for word, count in stats.top_words:
            print(f"{count:>6}  {word}")
    return 0
'''

_STATS_TESTS = '''
"""Tests for __PKG__."""

from __future__ import annotations

import json

from __PKG__ import analyse
from __PKG__.cli import main


def test_counts_lines_words_and_characters() -> None:
    stats = analyse("one two\\nthree\\n")
    assert (stats.lines, stats.words, stats.characters) == (2, 3, 14)


def test_top_words_are_case_insensitive_and_ranked_by_count_then_word() -> None:
    assert analyse("b a B c a b", top=2).top_words == [("b", 3), ("a", 2)]


def test_empty_text() -> None:
    stats = analyse("")
    assert (stats.lines, stats.words, stats.characters, stats.top_words) == (0, 0, 0, [])


def test_the_cli_prints_json(tmp_path, capsys) -> None:
    source = tmp_path / "t.txt"
    source.write_text("hi hi there\\n", encoding="utf-8")
    assert main([str(source), "--json", "--top", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["top_words"] == [["hi", 2]]


def test_the_cli_reports_a_missing_file(tmp_path, capsys) -> None:
    assert main([str(tmp_path / "missing.txt")]) == 1
    assert "cannot read" in capsys.readouterr().err
'''


def _text_stats(request: str) -> Project:
    pkg, script = "text_stats", "text-stats"
    title = "text-stats: count lines, words and characters"
    usage = f"python -m {pkg} notes.txt --top 10\npython -m {pkg} - --json < notes.txt"
    project = Project("cli", pkg, title, usage=usage)
    project.sources = {
        "pyproject.toml": _pyproject(pkg, "Text statistics on the command line", f"{pkg}.cli:main"),
        "README.md": _readme(
            title, "Counts lines, words and characters and lists the most common words.", usage
        ),
        f"{pkg}/__init__.py": _fill(_STATS_CORE),
        f"{pkg}/cli.py": _fill(_STATS_CLI, pkg=pkg, script=script),
        f"{pkg}/__main__.py": _fill(_MAIN, pkg=pkg),
    }
    project.tests = {f"tests/test_{pkg}.py": _fill(_STATS_TESTS, pkg=pkg)}
    project.design = _design_doc(
        title,
        request,
        [f"`{pkg}/__init__.py`: `analyse(text)` (pure)", f"`{pkg}/cli.py`: arguments, input, output"],
        [
            "The request named no specific job for the tool: a small, useful text tool stands in; say what "
            "it should do and the next run builds that."
        ],
        ["counts, ranking, empty input", "the CLI: JSON output and a missing file"],
    )
    return project


# =========================================================================================== API
_API_APP = '''
"""A JSON REST API for __MANY__ as a WSGI application (standard library only).

Endpoints:
__ENDPOINT_DOCS__

Run it with `python -m __PKG__` (http://127.0.0.1:8000); tests call `app` directly, without a network.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

MAX_BODY_BYTES = 64 * 1024
MAX_PAGE = 100
FIELDS: dict[str, type] = __FIELDS__
REQUIRED = "__REQUIRED__"
ENABLED = __ENABLED__

_ITEM_PATH = re.compile(r"^/__MANY__/([A-Za-z0-9-]{1,64})$")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Store:
    """The __MANY__, in memory, safe under a threaded server."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def create(self, values: dict[str, Any]) -> dict[str, Any]:
        item = {"id": str(uuid.uuid4()), **values, "created_at": datetime.now(timezone.utc).isoformat()}
        with self._lock:
            self._items[item["id"]] = item
        return item

    def list(self, limit: int, offset: int) -> list[dict[str, Any]]:
        with self._lock:
            items = sorted(self._items.values(), key=lambda i: (i["created_at"], i["id"]))
        return items[offset : offset + limit]

    def get(self, item_id: str) -> dict[str, Any]:
        with self._lock:
            if item_id not in self._items:
                raise ApiError(404, f"no __ONE__ {item_id}")
            return dict(self._items[item_id])

    def update(self, item_id: str, values: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if item_id not in self._items:
                raise ApiError(404, f"no __ONE__ {item_id}")
            self._items[item_id].update(values)
            return dict(self._items[item_id])

    def delete(self, item_id: str) -> None:
        with self._lock:
            if self._items.pop(item_id, None) is None:
                raise ApiError(404, f"no __ONE__ {item_id}")


def validate(body: Any, *, partial: bool) -> dict[str, Any]:
    """The fields of a create (all required ones) or update (any subset) request; unknown ones refused."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ApiError(400, f"unknown fields: {', '.join(unknown)}")
    if not partial and REQUIRED not in body:
        raise ApiError(400, f"{REQUIRED} is required")
    values: dict[str, Any] = {}
    for name, value in body.items():
        kind = FIELDS[name]
        if kind is bool and not isinstance(value, bool) or kind is int and (
            isinstance(value, bool) or not isinstance(value, int)
        ) or kind is str and not isinstance(value, str):
            raise ApiError(400, f"{name} must be a {kind.__name__}")
        if name == REQUIRED and kind is str and not 1 <= len(value.strip()) <= 200:
            raise ApiError(400, f"{name} must be 1..200 characters")
        values[name] = value.strip() if isinstance(value, str) else value
    return values


def _defaults() -> dict[str, Any]:
    return {name: kind() for name, kind in FIELDS.items()}


def make_app(store: Store | None = None) -> Callable[..., Iterable[bytes]]:
    """A WSGI application over `store` (a fresh one by default)."""
    store = store or Store()

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/").rstrip("/") or "/"
        try:
            status, payload = _route(store, method, path, environ)
        except ApiError as exc:
            status, payload = exc.status, {"error": exc.message}
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(f"{status} {_REASONS.get(status, 'OK')}", headers)
        return [body]

    return application


def _body(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError(400, "bad Content-Length") from None
    if length > MAX_BODY_BYTES:
        raise ApiError(413, f"the body is over {MAX_BODY_BYTES} bytes")
    raw = environ["wsgi.input"].read(length) if length else b""
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None


def _page(environ: dict[str, Any]) -> tuple[int, int]:
    from urllib.parse import parse_qs

    query = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        limit = int(query.get("limit", ["20"])[0])
        offset = int(query.get("offset", ["0"])[0])
    except ValueError:
        raise ApiError(400, "limit and offset must be integers") from None
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise ApiError(400, f"limit must be 1..{MAX_PAGE} and offset >= 0")
    return limit, offset


def _allowed(operation: str) -> None:
    if operation not in ENABLED:
        raise ApiError(405, f"{operation} is not an endpoint of this API")


def _route(store: Store, method: str, path: str, environ: dict[str, Any]) -> tuple[int, Any]:
    if path == "/__MANY__":
        if method == "GET":
            _allowed("list")
            limit, offset = _page(environ)
            return 200, {"items": store.list(limit, offset), "limit": limit, "offset": offset}
        if method == "POST":
            _allowed("create")
            return 201, store.create({**_defaults(), **validate(_body(environ), partial=False)})
        raise ApiError(405, f"{method} is not allowed on {path}")
    match = _ITEM_PATH.match(path)
    if match:
        item_id = match.group(1)
        if method == "GET":
            _allowed("get")
            return 200, store.get(item_id)
        if method in ("PATCH", "PUT"):
            _allowed("update")
            return 200, store.update(item_id, validate(_body(environ), partial=method == "PATCH"))
        if method == "DELETE":
            _allowed("delete")
            store.delete(item_id)
            return 204, None
        raise ApiError(405, f"{method} is not allowed on {path}")
    raise ApiError(404, f"no route {method} {path}")


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 413: "Payload Too Large"}

app = make_app()


def main(host: str = "127.0.0.1", port: int = 8000) -> None:
    from wsgiref.simple_server import make_server

    with make_server(host, port, app) as server:
        print(f"serving on http://{host}:{port}/__MANY__")
        server.serve_forever()
'''

_API_MAIN = '''
"""`python -m __PKG__`: serve the API on http://127.0.0.1:8000."""

from __PKG__.app import main

main()
'''

_API_TESTS_HEAD = '''
"""Tests for the __MANY__ API: the WSGI app called directly (no sockets)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from __PKG__.app import MAX_BODY_BYTES, make_app


def call(app: Any, method: str, path: str, body: Any = None, query: str = "") -> tuple[int, Any]:
    raw = b"" if body is None else json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw),
    }
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = int(status.split()[0])

    payload = b"".join(app(environ, start_response))
    return seen["status"], json.loads(payload) if payload else None


@pytest.fixture
def app() -> Any:
    return make_app()


def seed(app: Any, **fields: Any) -> dict[str, Any]:
    """Create one __ONE__ through the API (or, without a create endpoint, the store)."""
    status, created = call(app, "POST", "/__MANY__", {"__REQUIRED__": "first", **fields})
    assert status == 201, created
    return created
'''

_API_TESTS = {
    "create": """

def test_create_returns_201_with_an_id_and_the_fields(app) -> None:
    status, created = call(app, "POST", "/__MANY__", {"__REQUIRED__": "  write the report "})
    assert status == 201
    assert created["__REQUIRED__"] == "write the report"
    assert len(created["id"]) == 36 and created["created_at"]


def test_create_refuses_a_missing_field_an_unknown_field_and_a_bad_body(app) -> None:
    assert call(app, "POST", "/__MANY__", {})[0] == 400
    assert call(app, "POST", "/__MANY__", {"__REQUIRED__": "x", "owner": "me"}) == (
        400, {"error": "unknown fields: owner"})
    assert call(app, "POST", "/__MANY__", ["not", "an", "object"])[0] == 400
    assert call(app, "POST", "/__MANY__", {"__REQUIRED__": ""})[0] == 400


def test_a_body_over_the_limit_is_refused_with_413(app) -> None:
    status, _ = call(app, "POST", "/__MANY__", {"__REQUIRED__": "x" * (MAX_BODY_BYTES + 1)})
    assert status == 413
""",
    "list": """

def test_list_pages_through___MANY___in_creation_order(app) -> None:
    for n in range(3):
        call(app, "POST", "/__MANY__", {"__REQUIRED__": f"n{n}"})
    status, page = call(app, "GET", "/__MANY__", query="limit=2&offset=1")
    assert status == 200
    assert [i["__REQUIRED__"] for i in page["items"]] == ["n1", "n2"]
    assert call(app, "GET", "/__MANY__", query="limit=0")[0] == 400
""",
    "get": """

def test_get_returns_one___ONE___or_404(app) -> None:
    created = seed(app)
    assert call(app, "GET", f"/__MANY__/{created['id']}") == (200, created)
    assert call(app, "GET", "/__MANY__/unknown-id")[0] == 404
""",
    "update": """

def test_patch_changes_only_the_given_fields(app) -> None:
    created = seed(app)
    status, updated = call(app, "PATCH", f"/__MANY__/{created['id']}", {"__REQUIRED__": "renamed"})
    assert status == 200 and updated["__REQUIRED__"] == "renamed" and updated["id"] == created["id"]
    assert call(app, "PATCH", f"/__MANY__/{created['id']}", {"id": "x"})[0] == 400
    assert call(app, "PATCH", "/__MANY__/unknown-id", {"__REQUIRED__": "x"})[0] == 404
""",
    "delete": """

def test_delete_removes_the___ONE__(app) -> None:
    created = seed(app)
    assert call(app, "DELETE", f"/__MANY__/{created['id']}") == (204, None)
    assert call(app, "DELETE", f"/__MANY__/{created['id']}")[0] == 404
""",
}

_API_TESTS_TAIL = """

def test_unknown_routes_are_404_and_endpoints_not_offered_are_405(app) -> None:
    assert call(app, "GET", "/nothing-here")[0] == 404
    assert call(app, "PUT", "/__MANY__")[0] == 405
"""


def requested_operations(request: str, resource: str) -> tuple[str, ...]:
    """The endpoints the request names (`GET /todos`, or words like "create, list and delete"); all
    five CRUD operations when it names none."""
    named: set[str] = set()
    for method, path in _HTTP_ROUTE.findall(request):
        item = bool(re.search(r"/[^/]+/[{<:]", path)) or path.rstrip("/").count("/") >= 2
        named.add(
            {
                "GET": "get" if item else "list",
                "POST": "create",
                "PUT": "update",
                "PATCH": "update",
                "DELETE": "delete",
            }[method]
        )
    if not named:
        words = set(re.findall(r"[a-z]+", request.lower()))
        named = {op for op, triggers in _OPERATION_WORDS.items() if words.intersection(triggers)}
        named.discard("create") if named == {"create"} else None  # "create an API" names no endpoint
    if not named:
        return ALL_OPERATIONS
    if named & {"get", "update", "delete"}:
        named.add("create")  # items must come from somewhere for the others to be usable
    return tuple(op for op in ALL_OPERATIONS if op in named)


def _rest_api(request: str) -> Project:
    resource = resources_in(request)[0]
    many = plural(resource)
    pkg = f"{resource}_api"
    fields = fields_of(resource)
    required = fields[0][0]
    operations = requested_operations(request, resource)
    kinds = {"str": "str", "bool": "bool", "int": "int"}
    field_map = "{" + ", ".join(f'"{name}": {kinds[kind]}' for name, kind in fields) + "}"
    docs = {
        "list": f"  GET /{many}?limit=&offset=   list {many}",
        "create": f"  POST /{many}                 create a {resource} (201)",
        "get": f"  GET /{many}/<id>             read one {resource}",
        "update": f"  PATCH|PUT /{many}/<id>       change a {resource}",
        "delete": f"  DELETE /{many}/<id>          delete a {resource} (204)",
    }
    values = {"pkg": pkg, "many": many, "one": resource, "required": required}
    title = f"{pkg}: a REST API for {many}"
    usage = f'python -m {pkg}\ncurl -X POST localhost:8000/{many} -d \'{{"{required}": "first"}}\''
    project = Project("api", pkg, title, usage=usage)
    project.sources = {
        "pyproject.toml": _pyproject(pkg, f"A JSON REST API for {many}"),
        "README.md": _readme(
            title, "Endpoints:\n\n" + "\n".join(f"- `{docs[op].strip()}`" for op in operations), usage
        ),
        f"{pkg}/__init__.py": f'"""A JSON REST API for {many}."""\n',
        f"{pkg}/app.py": _fill(
            _API_APP,
            endpoint_docs="\n".join(docs[op] for op in operations),
            fields=field_map,
            enabled=repr(set(operations)) if operations else "set()",
            **values,
        ),
        f"{pkg}/__main__.py": _fill(_API_MAIN, pkg=pkg),
    }
    tests = _fill(_API_TESTS_HEAD, **values) + "".join(_fill(_API_TESTS[op], **values) for op in operations)
    tests += _fill(_API_TESTS_TAIL, **values)
    if "delete" not in operations:
        tests += _fill(
            """

def test_delete_is_not_an_endpoint(app) -> None:
    created = seed(app)
    assert call(app, "DELETE", f"/__MANY__/{created['id']}")[0] == 405
""",
            **values,
        )
    project.tests = {f"tests/test_{pkg}.py": tests}
    project.design = _design_doc(
        title,
        request,
        [
            f"`{pkg}/app.py`: routing, validation and an in-memory store behind `make_app()` (WSGI)",
            f"`{pkg}/__main__.py`: a local server on 127.0.0.1:8000 (wsgiref)",
            "Endpoints: " + "; ".join(docs[op].strip() for op in operations),
        ],
        [
            "WSGI and the standard library: runs anywhere, testable without a network.",
            "Server-generated ids and timestamps; unknown fields are a 400, bodies are capped (413).",
            "Bounded pagination (limit 1..100).",
            "The store is an interface (create/list/get/update/delete): swap it for a database later.",
        ],
        [
            f"each endpoint the request names ({', '.join(operations)}): success and failure cases",
            "unknown routes (404) and endpoints not offered (405)",
        ],
    )
    return project


# ======================================================================================= library
_DATES_CORE = '''
"""Parse dates written the ways people write them.

    parse_date("2024-03-15")            ISO 8601
    parse_date("15/03/2024")            day first (day_first=False for 03/15/2024; unambiguous days win)
    parse_date("15.03.2024")
    parse_date("March 15, 2024"), parse_date("15 Mar 2024"), parse_date("Mar 15 2024")
    parse_date("today"), parse_date("yesterday"), parse_date("tomorrow")
    parse_date("in 3 days"), parse_date("2 weeks ago")
"""

from __future__ import annotations

import re
from datetime import date, timedelta

MONTHS = {
    name: number
    for number, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",),
         ("june", "jun"), ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"),
         ("october", "oct"), ("november", "nov"), ("december", "dec")],
        start=1,
    )
    for name in names
}
_ISO = re.compile(r"^(\\d{4})-(\\d{1,2})-(\\d{1,2})$")
_NUMERIC = re.compile(r"^(\\d{1,2})[/.-](\\d{1,2})[/.-](\\d{4})$")
_DAY_MONTH = re.compile(r"^(\\d{1,2})(?:st|nd|rd|th)?\\s+([a-z]+)\\.?,?\\s+(\\d{4})$")
_MONTH_DAY = re.compile(r"^([a-z]+)\\.?\\s+(\\d{1,2})(?:st|nd|rd|th)?,?\\s+(\\d{4})$")
_RELATIVE = re.compile(r"^(?:in\\s+(\\d{1,4})\\s+(day|week)s?|(\\d{1,4})\\s+(day|week)s?\\s+ago)$")


class DateParseError(ValueError):
    """The text is not a date this parser understands."""


def _make(year: int, month: int, day: int, text: str) -> date:
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise DateParseError(f"{text!r} is not a valid date: {exc}") from None


def _month(name: str, text: str) -> int:
    if name not in MONTHS:
        raise DateParseError(f"{text!r}: unknown month {name!r}")
    return MONTHS[name]


def parse_date(text: str, *, today: date | None = None, day_first: bool = True) -> date:
    """The date `text` names; `today` anchors relative dates (default: the real today)."""
    if not isinstance(text, str) or not text.strip():
        raise DateParseError("empty date")
    cleaned = " ".join(text.strip().lower().split())
    anchor = today or date.today()
    if cleaned in ("today", "now"):
        return anchor
    if cleaned == "yesterday":
        return anchor - timedelta(days=1)
    if cleaned == "tomorrow":
        return anchor + timedelta(days=1)
    if match := _RELATIVE.match(cleaned):
        ahead, unit_ahead, ago, unit_ago = match.groups()
        amount = int(ahead or ago)
        days = amount * (7 if (unit_ahead or unit_ago) == "week" else 1)
        return anchor + timedelta(days=days if ahead else -days)
    if match := _ISO.match(cleaned):
        return _make(int(match[1]), int(match[2]), int(match[3]), text)
    if match := _NUMERIC.match(cleaned):
        first, second, year = int(match[1]), int(match[2]), int(match[3])
        if first > 12 or not day_first and second > 12:
            day_first = first > 12
        day, month = (first, second) if day_first else (second, first)
        return _make(year, month, day, text)
    if match := _DAY_MONTH.match(cleaned):
        return _make(int(match[3]), _month(match[2], text), int(match[1]), text)
    if match := _MONTH_DAY.match(cleaned):
        return _make(int(match[3]), _month(match[1], text), int(match[2]), text)
    raise DateParseError(f"{text!r} is not a date this parser understands")
'''

_DATES_TESTS = '''
"""Tests for __PKG__."""

from __future__ import annotations

from datetime import date

import pytest

from __PKG__ import DateParseError, parse_date

TODAY = date(2024, 3, 15)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-15", date(2024, 3, 15)),
        ("2024-3-5", date(2024, 3, 5)),
        ("15/03/2024", date(2024, 3, 15)),
        ("15.03.2024", date(2024, 3, 15)),
        ("05-03-2024", date(2024, 3, 5)),
        ("March 15, 2024", date(2024, 3, 15)),
        ("15 Mar 2024", date(2024, 3, 15)),
        ("1st September 2023", date(2023, 9, 1)),
        ("Sept. 2 2023", date(2023, 9, 2)),
        ("  29 february 2024 ", date(2024, 2, 29)),
    ],
)
def test_absolute_dates(text: str, expected: date) -> None:
    assert parse_date(text) == expected


def test_month_first_when_asked_and_unambiguous_days_win() -> None:
    assert parse_date("03/15/2024", day_first=False) == date(2024, 3, 15)
    assert parse_date("03/04/2024", day_first=False) == date(2024, 3, 4)
    assert parse_date("25/12/2024", day_first=False) == date(2024, 12, 25)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("today", TODAY),
        ("Yesterday", date(2024, 3, 14)),
        ("tomorrow", date(2024, 3, 16)),
        ("in 3 days", date(2024, 3, 18)),
        ("2 weeks ago", date(2024, 3, 1)),
        ("1 day ago", date(2024, 3, 14)),
    ],
)
def test_relative_dates(text: str, expected: date) -> None:
    assert parse_date(text, today=TODAY) == expected


@pytest.mark.parametrize("text", ["", "   ", "2024-02-30", "31/04/2024", "Smarch 3, 2024", "next blue moon"])
def test_what_is_not_a_date_is_refused(text: str) -> None:
    with pytest.raises(DateParseError):
        parse_date(text)
'''


def _date_parser(request: str) -> Project:
    pkg = "date_parser"
    title = "date_parser: parse dates written the ways people write them"
    usage = (
        '>>> from date_parser import parse_date\n>>> parse_date("March 15, 2024")\ndatetime.date(2024, 3, 15)'
    )
    project = Project("library", pkg, title, usage=usage)
    project.sources = {
        "pyproject.toml": _pyproject(pkg, "Parse human-written dates"),
        "README.md": _readme(
            title,
            "ISO, numeric (day or month first), month names and relative dates "
            "(today, in 3 days, 2 weeks ago).",
            usage,
        ),
        f"{pkg}/__init__.py": _fill(_DATES_CORE),
    }
    project.tests = {f"tests/test_{pkg}.py": _fill(_DATES_TESTS, pkg=pkg)}
    project.design = _design_doc(
        title,
        request,
        [f"`{pkg}/__init__.py`: `parse_date(text, today=None, day_first=True)` and `DateParseError`"],
        [
            "One function, explicit formats (regular expressions) instead of guessing: predictable results.",
            "Ambiguous numeric dates follow `day_first`; a first number over 12 is always a day.",
            "Relative dates take `today` as a parameter so they are testable.",
            "Invalid calendar dates (30 February) raise DateParseError, never roll over.",
        ],
        ["every supported format", "relative dates against a fixed today", "invalid input"],
    )
    return project


_SLUG_CORE = '''
"""Text normalisation: slugs for URLs and file names."""

from __future__ import annotations

import re
import unicodedata

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str, *, separator: str = "-", max_length: int = 80) -> str:
    """'Héllo, World!' -> 'hello-world': ASCII, lower case, words joined by `separator`, bounded length."""
    if max_length < 1:
        raise ValueError("max_length must be positive")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub(separator, ascii_text.lower()).strip(separator)
    if len(slug) > max_length:
        slug = slug[:max_length].rsplit(separator, 1)[0] or slug[:max_length]
    return slug
'''

_SLUG_TESTS = '''
"""Tests for __PKG__."""

import pytest

from __PKG__ import slugify


@pytest.mark.parametrize(
    ("text", "slug"),
    [("Hello, World!", "hello-world"), ("  Héllo   Wörld ", "hello-world"), ("a--b", "a-b"), ("!!!", "")],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


def test_separator_and_length() -> None:
    assert slugify("one two three", separator="_") == "one_two_three"
    assert slugify("alpha beta gamma", max_length=12) == "alpha-beta"
    with pytest.raises(ValueError):
        slugify("x", max_length=0)
'''


def _slugify(request: str) -> Project:
    pkg = "slugs"
    title = "slugs: text normalisation for URLs and file names"
    usage = ">>> from slugs import slugify\n>>> slugify(\"Héllo, World!\")\n'hello-world'"
    project = Project("library", pkg, title, usage=usage)
    project.sources = {
        "pyproject.toml": _pyproject(pkg, "Slugs for URLs and file names"),
        "README.md": _readme(title, "ASCII, lower-case, bounded slugs.", usage),
        f"{pkg}/__init__.py": _fill(_SLUG_CORE),
    }
    project.tests = {f"tests/test_{pkg}.py": _fill(_SLUG_TESTS, pkg=pkg)}
    project.design = _design_doc(
        title,
        request,
        [f"`{pkg}/__init__.py`: `slugify(text, separator, max_length)`"],
        ["The request named no specific library job: a small text library stands in."],
        ["punctuation, accents, separators, length bound"],
    )
    return project
