"""Shared helpers for the dashboards tests: reading the shipped Grafana JSON and resolving its template variables.

The Grafana side (`iter_panels`, `promql_targets`, `interpolate`) mimics what Grafana does with the JSON closely
enough that an expression which works here works there: multi-value variables become regex alternations, `All`
becomes the variable's `allValue`, and `label_values(...)` variable queries are answered from Prometheus's series API.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

__all__ = (
    'DASHBOARDS_DIR',
    'DASHBOARD_FILES',
    'BUILTIN_INTERVALS',
    'PromTarget',
    'Variable',
    'load_dashboard',
    'iter_panels',
    'promql_targets',
    'tempo_targets',
    'variables',
    'referenced_variables',
    'parse_label_values',
    'resolve_variables',
    'variable_values',
    'interpolate',
    'has_finite_sample',
    'TraceQL',
    'parse_traceql',
    'span_attributes',
)

DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / 'dashboards'
DASHBOARD_FILES = ('tracegraph-overview.json', 'tracegraph-node.json')

BUILTIN_INTERVALS: Mapping[str, str] = {'__rate_interval': '10s', '__interval': '2s', '__range': '1m'}
"""What Grafana would put for its built-in variables with a 1 s scrape interval and a short time range."""

_VAR_RE = re.compile(r'\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)')
_LABEL_VALUES_RE = re.compile(r'^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$', re.DOTALL)
_REGEX_SPECIAL = re.compile(r'([\\^$.|?*+()\[\]{}])')

Json = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class PromTarget:
    """One PromQL expression of a dashboard, with where it was found."""

    dashboard: str
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str
    repeat: str | None = None


@dataclass(frozen=True, kw_only=True)
class Variable:
    """One template variable, as far as interpolation needs it."""

    name: str
    type: str
    query: str = ''
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    current: str | None = None
    options: tuple[str, ...] = field(default=())


def load_dashboard(name: str) -> Json:
    """Read one shipped dashboard."""
    return json.loads((DASHBOARDS_DIR / 'grafana' / name).read_text())


def iter_panels(dashboard: Json) -> Iterator[Json]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get('panels', []):
        yield panel
        yield from panel.get('panels', [])


def _datasource_var(target: Json, panel: Json) -> str:
    ds: Json = target.get('datasource') or panel.get('datasource') or {}
    return str(ds.get('uid', ''))


def promql_targets(dashboard: Json, name: str) -> list[PromTarget]:
    """Every target whose data source is the `${prometheus}` variable."""
    found: list[PromTarget] = []
    for panel in iter_panels(dashboard):
        for target in panel.get('targets', []):
            if _datasource_var(target, panel) == '${prometheus}':
                found.append(
                    PromTarget(
                        dashboard=name,
                        panel_id=panel['id'],
                        panel_title=panel['title'],
                        ref_id=target['refId'],
                        expr=target['expr'],
                        repeat=panel.get('repeat'),
                    )
                )
    return found


def tempo_targets(dashboard: Json) -> list[str]:
    """The TraceQL query of every target whose data source is the `${tempo}` variable."""
    return [
        target['query']
        for panel in iter_panels(dashboard)
        for target in panel.get('targets', [])
        if _datasource_var(target, panel) == '${tempo}'
    ]


def variables(dashboard: Json) -> list[Variable]:
    """The dashboard's template variables, in the order Grafana resolves them."""
    result: list[Variable] = []
    for raw in dashboard['templating']['list']:
        query: Any = raw.get('query', '')
        if isinstance(query, dict):
            query = cast('Json', query).get('query', '')
        current_: Json = raw.get('current') or {}
        current: Any = current_.get('value')
        result.append(
            Variable(
                name=raw['name'],
                type=raw['type'],
                query=str(query),
                multi=bool(raw.get('multi')),
                include_all=bool(raw.get('includeAll')),
                all_value=raw.get('allValue'),
                current=current if isinstance(current, str) else None,
                options=tuple(str(o['value']) for o in raw.get('options', [])),
            )
        )
    return result


def referenced_variables(text: str) -> set[str]:
    """Names of the variables a query or title refers to, in any of Grafana's three syntaxes."""
    return {next(g for g in m.groups() if g) for m in _VAR_RE.finditer(text)}


def parse_label_values(query: str) -> tuple[str | None, str]:
    """Split a `label_values(selector, label)` variable query into its selector and label."""
    match = _LABEL_VALUES_RE.match(query)
    if match is None:
        raise ValueError(f'not a label_values() query: {query!r}')
    return match['selector'], match['label']


def _regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(r'\\\1', value)


def _format(var: Variable, values: Sequence[str] | Literal['All'], fmt: str | None) -> str:
    if values == 'All':
        if var.all_value is not None:
            return var.all_value
        raise ValueError(f'variable {var.name!r} includes All but has no allValue')
    if fmt == 'pipe':
        return '|'.join(values)
    if fmt == 'regex' or var.multi or var.include_all:
        escaped = [_regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else '(' + '|'.join(escaped) + ')'
    if fmt not in (None, 'raw'):
        raise ValueError(f'unsupported variable format {fmt!r} for {var.name!r}')
    (only,) = values
    return only


def interpolate(text: str, vars_: Mapping[str, Variable], chosen: Mapping[str, Sequence[str] | Literal['All']]) -> str:
    """Replace every variable reference the way Grafana's Prometheus data source does; unknown names are errors."""

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in (match[1], match[3], match[4]) if g)
        if name in BUILTIN_INTERVALS:
            return BUILTIN_INTERVALS[name]
        if name not in vars_:
            raise KeyError(f'unknown variable ${name} in {text!r}')
        var = vars_[name]
        if name not in chosen:
            raise KeyError(f'variable ${name} used before it was resolved in {text!r}')
        return _format(var, chosen[name], match[2])

    return _VAR_RE.sub(replace, text)


def variable_values(
    dashboard: Json,
    name: str,
    series_values: Callable[[str | None, str], list[str]],
    chosen: Mapping[str, Sequence[str] | Literal['All']],
) -> list[str]:
    """The values a Prometheus query variable offers, given the variables resolved before it, sorted.

    Args:
        dashboard: the dashboard JSON.
        name: the variable.
        series_values: answers a `label_values(selector, label)` query (selector already interpolated).
        chosen: the values of the variables before it.

    Raises:
        AssertionError: when the variable query finds no values, naming the variable and the query.
    """
    vars_ = {v.name: v for v in variables(dashboard)}
    selector, label = parse_label_values(vars_[name].query)
    if selector is not None:
        selector = interpolate(selector, vars_, chosen)
    found = sorted(series_values(selector, label))
    assert found, f'variable ${name} has no values: {vars_[name].query!r} (as {selector!r})'
    return found


def resolve_variables(
    dashboard: Json,
    series_values: Callable[[str | None, str], list[str]],
    pick: Literal['all', 'first'],
) -> dict[str, Sequence[str] | Literal['All']]:
    """Give every variable a value, in order, as Grafana would when a user picks them.

    Args:
        dashboard: the dashboard JSON.
        series_values: answers a `label_values(selector, label)` query (selector already interpolated).
        pick: `all` chooses All where the variable offers it (else its first value), `first` the first value.

    Raises:
        AssertionError: when a variable query finds no values, or a custom variable has no current value.
    """
    chosen: dict[str, Sequence[str] | Literal['All']] = {}
    for var in variables(dashboard):
        if var.type == 'query':
            found = variable_values(dashboard, var.name, series_values, chosen)
            chosen[var.name] = 'All' if pick == 'all' and var.include_all else [found[0]]
        elif var.type in ('custom', 'constant', 'textbox', 'interval'):
            assert var.current is not None, f'variable ${var.name} has no current value'
            chosen[var.name] = [var.current]
    return chosen


def has_finite_sample(result: list[Json]) -> bool:
    """Whether a Prometheus instant-query vector holds at least one real number (not NaN, not ±Inf)."""
    for sample in result:
        value = float(sample['value'][1])
        if not math.isnan(value) and not math.isinf(value):
            return True
    return False


# --- a TraceQL subset: enough to run the dashboards' Tempo queries over SDK spans ------------------------------------

_TRACEQL_TOKEN = re.compile(r'\s*(&&|\|\||=~|!~|!=|>=|<=|=|>|<|&|[{}(),|]|"(?:[^"\\]|\\.)*"|[\w.]+)')
_DURATION = re.compile(r'(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)')
_DURATION_NS = {'ns': 1, 'us': 1_000, 'ms': 1_000_000, 's': 1_000_000_000, 'm': 60_000_000_000, 'h': 3_600_000_000_000}


@dataclass(frozen=True, kw_only=True)
class TraceQL:
    """A parsed `{ conditions } | select(...)` query: a span predicate and the attributes it selects."""

    matches: Callable[[Any], bool]
    select: tuple[str, ...]


def span_attributes(span: Any) -> Mapping[str, Any]:
    """A span's attributes, empty when it has none."""
    found: Mapping[str, Any] | None = span.attributes
    return found or {}


def _span_value(span: Any, path: str) -> Any:
    if path == 'name':
        return span.name
    if path == 'status':
        return span.status.status_code.name.lower()
    if path == 'duration':
        return span.end_time - span.start_time
    if path.startswith('span.'):
        return span_attributes(span).get(path.removeprefix('span.'))
    if path.startswith('resource.'):
        return span.resource.attributes.get(path.removeprefix('resource.'))
    raise ValueError(f'unsupported TraceQL intrinsic or scope: {path!r}')


def _compare(left: Any, op: str, right: Any) -> bool:
    if left is None:
        return False  # TraceQL: a span without the attribute matches no comparison
    if op == '=~':
        return re.fullmatch(right, str(left)) is not None
    if op == '!~':
        return re.fullmatch(right, str(left)) is None
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        '=': lambda a, b: a == b,
        '!=': lambda a, b: a != b,
        '>': lambda a, b: a > b,
        '<': lambda a, b: a < b,
        '>=': lambda a, b: a >= b,
        '<=': lambda a, b: a <= b,
    }
    return comparisons[op](left, right)


def parse_traceql(query: str) -> TraceQL:
    """Parse the TraceQL subset the dashboards use: `&&`, `||`, parentheses, comparisons, and `select()`.

    Raises:
        ValueError: for anything outside that subset, naming the token.
    """
    tokens: list[str] = []
    pos = 0
    while query[pos:].strip():
        match = _TRACEQL_TOKEN.match(query, pos)
        if match is None:
            raise ValueError(f'cannot read TraceQL at {query[pos:].strip()[:20]!r} in {query!r}')
        tokens.append(match[1])
        pos = match.end()
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f'TraceQL ends early: {query!r}')
        token = tokens[pos]
        if expected is not None and token != expected:
            raise ValueError(f'expected {expected!r}, got {token!r} in {query!r}')
        pos += 1
        return token

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def literal(token: str) -> Any:
        if token.startswith('"'):
            return json.loads(token)
        if duration := _DURATION.fullmatch(token):
            return float(duration[1]) * _DURATION_NS[duration[2]]
        if token in ('error', 'ok', 'unset'):
            return token
        if re.fullmatch(r'-?\d+', token):
            return int(token)
        raise ValueError(f'unsupported TraceQL value {token!r}')

    def atom() -> Callable[[Any], bool]:
        if peek() == '(':
            take('(')
            inner = disjunction()
            take(')')
            return inner
        path, op, value = take(), take(), literal(take())
        if op not in ('=~', '!~', '=', '!=', '>', '<', '>=', '<='):
            raise ValueError(f'unsupported TraceQL operator {op!r}')
        return lambda span: _compare(_span_value(span, path), op, value)

    def conjunction() -> Callable[[Any], bool]:
        parts = [atom()]
        while peek() == '&&':
            take('&&')
            parts.append(atom())
        return lambda span: all(p(span) for p in parts)

    def disjunction() -> Callable[[Any], bool]:
        parts = [conjunction()]
        while peek() == '||':
            take('||')
            parts.append(conjunction())
        return lambda span: any(p(span) for p in parts)

    take('{')
    predicate = disjunction()
    take('}')
    selected: list[str] = []
    if peek() == '|':
        take('|')
        take('select')
        take('(')
        selected.append(take())
        while peek() == ',':
            take(',')
            selected.append(take())
        take(')')
    if peek() is not None:
        raise ValueError(f'unexpected {peek()!r} in {query!r}')
    return TraceQL(matches=predicate, select=tuple(selected))
