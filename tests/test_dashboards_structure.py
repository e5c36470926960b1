"""Structure of what ships in dashboards/: Grafana JSON, Collector config, docker-compose stack.

No server is needed here: these tests read the files and check that their parts refer to each other correctly and
to the names of tracegraph's span contract (`tracegraph.tracing.attributes`).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from typing import Any

import pytest
from grafana_helpers import (
    BUILTIN_INTERVALS,
    DASHBOARD_FILES,
    DASHBOARDS_DIR,
    interpolate,
    iter_panels,
    load_dashboard,
    parse_label_values,
    promql_targets,
    referenced_variables,
    tempo_targets,
    variables,
)

from tracegraph.tracing import attributes as attr


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - depends on the environment
        reason = 'pyyaml is not installed (it belongs in the dev extra)'
        if os.environ.get('CI'):
            pytest.fail(reason)
        pytest.skip(reason)
    return yaml


def _load_yaml(relative: str) -> dict[str, Any]:
    return _yaml().safe_load((DASHBOARDS_DIR / relative).read_text())


@pytest.fixture(params=DASHBOARD_FILES)
def dashboard(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, load_dashboard(request.param)


# --- Grafana dashboards -------------------------------------------------------------------------------------------


def test_dashboards_are_importable_grafana_json(dashboard: tuple[str, dict[str, Any]]):
    name, dash = dashboard
    assert dash['schemaVersion'] == 39
    assert dash['uid'] == name.removesuffix('.json')
    assert dash['id'] is None, 'an id would clash with the importing Grafana'
    assert dash['title']
    assert 'tracegraph' in dash['tags']
    panels = list(iter_panels(dash))
    assert panels
    for panel in panels:
        assert {'id', 'type', 'title', 'gridPos'} <= panel.keys(), panel.get('title')
        grid = panel['gridPos']
        assert grid['x'] >= 0 and grid['x'] + grid['w'] <= 24, panel['title']


def test_panel_ids_are_unique(dashboard: tuple[str, dict[str, Any]]):
    _, dash = dashboard
    ids = Counter(panel['id'] for panel in iter_panels(dash))
    assert [pid for pid, n in ids.items() if n > 1] == []


def test_panels_do_not_overlap(dashboard: tuple[str, dict[str, Any]]):
    _, dash = dashboard
    taken: dict[tuple[int, int], str] = {}
    for panel in iter_panels(dash):
        grid = panel['gridPos']
        for x in range(grid['x'], grid['x'] + grid['w']):
            for y in range(grid['y'], grid['y'] + grid['h']):
                assert (x, y) not in taken, f'{panel["title"]!r} overlaps {taken[(x, y)]!r}'
                taken[(x, y)] = panel['title']


def test_every_data_source_is_a_template_variable(dashboard: tuple[str, dict[str, Any]]):
    _, dash = dashboard
    kinds = {v.name: v.query for v in variables(dash) if v.type == 'datasource'}
    assert kinds == {'prometheus': 'prometheus', 'tempo': 'tempo'}
    for panel in iter_panels(dash):
        if panel['type'] == 'row':
            assert 'targets' not in panel
            continue
        sources = [panel['datasource'], *(t['datasource'] for t in panel['targets'])]
        assert panel['targets'], panel['title']
        for source in sources:
            match = re.fullmatch(r'\$\{(\w+)\}', source['uid'])
            assert match, f'{panel["title"]!r}: data source {source} is not a variable'
            assert kinds[match[1]] == source['type'], f'{panel["title"]!r}: {source}'


def test_template_variables(dashboard: tuple[str, dict[str, Any]]):
    _, dash = dashboard
    vars_ = {v.name: v for v in variables(dash)}
    assert set(vars_) == {'prometheus', 'tempo', 'service', 'graph', 'node', 'slow'}
    for var in vars_.values():
        if var.type == 'query':
            selector, label = parse_label_values(var.query)
            assert label in {'job', 'tracegraph_graph_name', 'tracegraph_node_id'}, var.query
            assert selector is None or selector.startswith('tracegraph_'), var.query
        if var.include_all:
            assert var.all_value == '.+', f'${var.name}: All must match every value, not Grafana`s value list'
    assert vars_['service'].query.endswith(', job)'), 'service is the job label (see dashboards/README.md)'
    assert vars_['slow'].current in vars_['slow'].options


def test_every_variable_reference_is_defined(dashboard: tuple[str, dict[str, Any]]):
    _, dash = dashboard
    names = {v.name for v in variables(dash)} | set(BUILTIN_INTERVALS)
    texts = [json.dumps(panel) for panel in iter_panels(dash)] + [v.query for v in variables(dash)]
    used = {name for text in texts for name in referenced_variables(text)}
    # Grafana's own variables used in links.
    assert used - names <= {'__org', '__data', '__value', '__url_time_range'}
    assert {'service', 'graph'} <= used


def test_multi_value_variables_are_matched_as_regexes(dashboard: tuple[str, dict[str, Any]]):
    name, dash = dashboard
    multi = {v.name for v in variables(dash) if v.multi or v.include_all}
    for target in promql_targets(dash, name):
        for var in multi:
            for match in re.finditer(rf'(\w+)\s*(=~|!~|!=|=)\s*"\$\{{?{var}\b', target.expr):
                assert match[2] == '=~', f'{target.panel_title!r}: {match[0]!r} must use =~ for a multi-value variable'


def test_promql_uses_only_the_contract_metrics_and_labels(dashboard: tuple[str, dict[str, Any]]):
    """Metric and label names derived from attributes.py the way the OpenTelemetry Prometheus exporter derives them."""
    name, dash = dashboard

    def prom(key: str) -> str:
        return key.replace('.', '_')

    histograms = {prom(attr.METRIC_NODE_DURATION) + '_seconds', prom(attr.METRIC_RUN_DURATION) + '_seconds'}
    metrics = {f'{h}_{suffix}' for h in histograms for suffix in ('bucket', 'count', 'sum')}
    metrics.add(prom(attr.METRIC_RUN_STEPS) + '_total')
    labels = {prom(k) for k in (attr.GRAPH_NAME, attr.NODE_ID, attr.NODE_OUTCOME, attr.RUN_OUTCOME)}
    labels |= {'job', 'le'}
    targets = promql_targets(dash, name)
    assert targets
    for target in targets:
        used_metrics = set(re.findall(r'\b(tracegraph_\w+)\s*\{', target.expr))
        assert used_metrics, target.expr
        assert used_metrics <= metrics, target.expr
        used_labels = set(re.findall(r'\b(\w+)\s*(?:=~|!~|!=|=)\s*"', target.expr))
        used_labels |= {lbl.strip() for group in re.findall(r'by \(([^)]*)\)', target.expr) for lbl in group.split(',')}
        assert used_labels <= labels, target.expr


def test_traceql_uses_only_the_contract_attributes(dashboard: tuple[str, dict[str, Any]]):
    _, dash = dashboard
    known = {v for k, v in vars(attr).items() if k.isupper() and isinstance(v, str) and v.startswith('tracegraph.')}
    queries = tempo_targets(dash)
    assert queries
    for query in queries:
        used = set(re.findall(r'span\.(tracegraph\.[\w.]+)', query))
        assert used, query
        assert used <= known, query
        assert attr.RUN_ID in used, f'{query!r}: every trace table shows the run id it links from'


def test_trace_tables_link_the_run_id_to_its_trace(dashboard: tuple[str, dict[str, Any]]):
    _, dash = dashboard
    tables = [p for p in iter_panels(dash) if p.get('datasource', {}).get('uid') == '${tempo}']
    assert tables
    for panel in tables:
        (target,) = panel['targets']
        assert target['queryType'] == 'traceql'
        assert target['tableType'] == 'spans'
        links = [
            link
            for override in panel['fieldConfig']['overrides']
            if override['matcher'] == {'id': 'byName', 'options': attr.RUN_ID}
            for prop in override['properties']
            if prop['id'] == 'links'
            for link in prop['value']
        ]
        assert len(links) == 1, panel['title']
        url = links[0]['url']
        assert url.startswith('/explore?')
        assert '${__data.fields.traceIdHidden}' in url
        assert '${tempo}' in url


def test_node_dashboard_asks_for_exemplars():
    dash = load_dashboard('tracegraph-node.json')
    duration_targets = [t for t in promql_targets(dash, 'node') if '_bucket{' in t.expr and 'rate(' in t.expr]
    with_exemplars = [
        target
        for panel in iter_panels(dash)
        for target in panel.get('targets', [])
        if target.get('exemplar') and panel['type'] in {'timeseries', 'heatmap'}
    ]
    assert len(with_exemplars) >= 3
    assert {t['expr'] for t in with_exemplars} <= {t.expr for t in duration_targets}


def test_interpolation_follows_grafana_rules():
    dash = load_dashboard('tracegraph-overview.json')
    vars_ = {v.name: v for v in variables(dash)}
    text = 'x{job=~"$service", g=~"${graph}"}[$__rate_interval] ${slow} ${node:regex}'
    chosen = {'service': 'All', 'graph': ['a.b', 'c'], 'slow': ['1s'], 'node': ['N(1)']}
    assert interpolate(text, vars_, chosen) == r'x{job=~".+", g=~"(a\.b|c)"}[10s] 1s N\(1\)'
    with pytest.raises(KeyError, match=r'unknown variable \$nope'):
        interpolate('$nope', vars_, chosen)


# --- Collector ----------------------------------------------------------------------------------------------------


def test_collector_pipelines_refer_to_defined_components():
    config = _load_yaml('collector/otelcol.yaml')
    service = config['service']
    pipelines: dict[str, dict[str, list[str]]] = service['pipelines']
    connectors = set(config.get('connectors', {}))
    used: dict[str, set[str]] = {'receivers': set(), 'processors': set(), 'exporters': set()}
    for name, pipeline in pipelines.items():
        assert set(pipeline) <= {'receivers', 'processors', 'exporters'}, name
        assert pipeline['receivers'], name
        assert pipeline['exporters'], name
        for kind in used:
            refs = pipeline.get(kind, [])
            assert len(refs) == len(set(refs)), f'{name}: {kind} listed twice'
            used[kind] |= set(refs)
            defined: set[str] = set(config.get(kind, {})) | (connectors if kind != 'processors' else set[str]())
            assert set(refs) <= defined, f'pipeline {name}: {kind} {sorted(set(refs) - defined)} are not defined'
    for kind, names in used.items():
        assert set(config.get(kind, {})) == names - connectors, f'{kind} defined but unused'
    assert connectors <= used['receivers'] & used['exporters'], 'a connector must be both exporter and receiver'
    assert set(service.get('extensions', [])) == set(config.get('extensions', {}))


def test_collector_spanmetrics_turns_traces_into_metrics():
    config = _load_yaml('collector/otelcol.yaml')
    pipelines = config['service']['pipelines']
    assert pipelines['traces']['receivers'] == ['otlp']
    assert 'spanmetrics' in pipelines['traces']['exporters']
    assert 'spanmetrics' in pipelines['metrics']['receivers']
    assert 'prometheus' in pipelines['metrics']['exporters']
    spanmetrics = config['connectors']['spanmetrics']
    dimensions = {d['name'] for d in spanmetrics['dimensions']}
    assert dimensions == {attr.GRAPH_NAME, attr.NODE_ID, attr.NODE_OUTCOME, attr.RUN_OUTCOME}
    assert attr.RUN_ID not in dimensions
    assert spanmetrics['exemplars'] == {'enabled': True}
    units = {'us': 1e-6, 'ms': 1e-3, 's': 1.0}
    buckets = tuple(
        float(m[1]) * units[m[2]]
        for m in (re.fullmatch(r'([\d.]+)(us|ms|s)', b) for b in spanmetrics['histogram']['explicit']['buckets'])
        if m
    )
    assert buckets == pytest.approx(attr.DURATION_BUCKETS)
    assert spanmetrics['histogram']['unit'] == 's'


def test_collector_receives_otlp_and_exports_to_prometheus_and_tempo():
    config = _load_yaml('collector/otelcol.yaml')
    assert set(config['receivers']['otlp']['protocols']) == {'grpc', 'http'}
    for pipeline in config['service']['pipelines'].values():
        assert pipeline['processors'][0] == 'memory_limiter', 'the memory limiter must come first'
        assert pipeline['processors'][-1] == 'batch'
    prometheus = config['exporters']['prometheus']
    assert prometheus['enable_open_metrics'] is True, 'exemplars are exposed only as OpenMetrics'
    assert prometheus['resource_to_telemetry_conversion'] == {'enabled': True}
    assert prometheus['endpoint'].endswith(':8889')
    traces = config['exporters']['otlp/traces']
    assert traces['endpoint'] == '${env:TRACES_OTLP_ENDPOINT:-tempo:4317}'


# --- Prometheus config, docker-compose ----------------------------------------------------------------------------


def test_prometheus_config_scrapes_the_collector_keeping_its_job_label():
    config = _load_yaml('prometheus/prometheus.yml')
    jobs = {job['job_name']: job for job in config['scrape_configs']}
    collector = jobs['otel-collector']
    assert collector['honor_labels'] is True, 'without it the service name lands in exported_job'
    assert collector['static_configs'] == [{'targets': ['otel-collector:8889']}]
    direct = [j for name, j in jobs.items() if name != 'otel-collector']
    assert direct, 'an example job scraping an app directly'
    assert all(j['static_configs'][0]['targets'][0].endswith(':9464') for j in direct)


def test_compose_stack_mounts_existing_files_and_wires_the_services():
    compose = _load_yaml('docker-compose.yml')
    services = compose['services']
    assert set(services) == {'otel-collector', 'tempo-init', 'tempo', 'prometheus', 'grafana'}
    for name, service in services.items():
        assert re.fullmatch(r'[\w./-]+:[\w.-]+', service['image']), f'{name}: pin an image tag'
        assert 'latest' not in service['image'], name
        for mount in service.get('volumes', []):
            source = mount.split(':')[0]
            if source.startswith('./'):
                assert (DASHBOARDS_DIR / source).exists(), f'{name} mounts missing {source}'
            else:
                assert source in compose['volumes'], f'{name}: undeclared volume {source}'
        for port in service.get('ports', []):
            assert port.startswith('127.0.0.1:'), f'{name} publishes {port} beyond loopback'
        for dep in service.get('depends_on', []):
            assert dep in services, f'{name} depends on unknown {dep}'
    assert '--enable-feature=exemplar-storage' in services['prometheus']['command']
    assert services['otel-collector']['environment']['TRACES_OTLP_ENDPOINT'] == 'tempo:4317'


def test_grafana_provisioning_matches_the_dashboards():
    datasources = {d['uid']: d for d in _load_yaml('grafana/provisioning/datasources/tracegraph.yaml')['datasources']}
    assert {uid: d['type'] for uid, d in datasources.items()} == {'prometheus': 'prometheus', 'tempo': 'tempo'}
    destinations = datasources['prometheus']['jsonData']['exemplarTraceIdDestinations']
    assert destinations == [{'name': 'trace_id', 'datasourceUid': 'tempo'}]
    (provider,) = _load_yaml('grafana/provisioning/dashboards/tracegraph.yaml')['providers']
    compose = _load_yaml('docker-compose.yml')
    mounts = dict(m.split(':')[:2] for m in compose['services']['grafana']['volumes'])
    assert mounts['./grafana'] == provider['options']['path']
    assert sorted(p.name for p in (DASHBOARDS_DIR / 'grafana').glob('*.json')) == sorted(DASHBOARD_FILES)


def test_the_tempo_service_map_reads_metrics_the_collector_produces() -> None:
    """Tempo's service map queries `traces_service_graph_request_*` in its Prometheus data source: the Collector's
    servicegraph connector makes them from the traces and hands them to the metrics pipeline Prometheus scrapes."""
    config = _load_yaml('collector/otelcol.yaml')
    pipelines = config['service']['pipelines']
    assert 'servicegraph' in pipelines['traces']['exporters']
    assert 'servicegraph' in pipelines['metrics']['receivers']
    assert 'prometheus' in pipelines['metrics']['exporters']
    sources = _load_yaml('grafana/provisioning/datasources/tracegraph.yaml')
    (tempo,) = [s for s in sources['datasources'] if s['type'] == 'tempo']
    (prometheus,) = [s for s in sources['datasources'] if s['type'] == 'prometheus']
    assert tempo['jsonData']['serviceMap']['datasourceUid'] == prometheus['uid']
