"""Names of the span attributes, span names and metrics that make up tracegraph's span contract.

Every backend, exporter and dashboard reads these names; they are the one place they are spelled.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = (
    'RUN_SPAN_TEMPLATE',
    'NODE_SPAN_TEMPLATE',
    'GRAPH_NAME',
    'RUN_ID',
    'RUN_START_NODE',
    'RUN_STEPS',
    'RUN_OUTCOME',
    'RUN_OUTPUT',
    'RUN_RESUMED_FROM',
    'NODE_ID',
    'NODE_STEP',
    'NODE_NEXT',
    'NODE_INPUT',
    'NODE_OUTCOME',
    'SNAPSHOT_ID',
    'NODE_ATTEMPT',
    'STATE_DIFF',
    'STATE_BEFORE',
    'STATE_AFTER',
    'LOGFIRE_MSG_TEMPLATE',
    'LOGFIRE_MSG',
    'LOGFIRE_SPAN_TYPE',
    'LOGFIRE_JSON_SCHEMA',
    'METRIC_NODE_DURATION',
    'METRIC_RUN_DURATION',
    'METRIC_RUN_STEPS',
    'DURATION_BUCKETS',
    'INSTRUMENTATION_SCOPE',
    'END_NODE_ID',
    'Outcome',
)

INSTRUMENTATION_SCOPE: Final = 'tracegraph'
"""Name of the tracer and meter tracegraph asks its providers for."""

RUN_SPAN_TEMPLATE: Final = 'run graph {graph_name}'
"""Message template of a run span; its formatted form (`run graph my_graph`) is the span name."""
NODE_SPAN_TEMPLATE: Final = 'run node {node_id}'
"""Message template of a node span; its formatted form (`run node Increment`) is the span name."""

GRAPH_NAME: Final = 'tracegraph.graph.name'
RUN_ID: Final = 'tracegraph.run.id'
RUN_START_NODE: Final = 'tracegraph.run.start_node'
RUN_STEPS: Final = 'tracegraph.run.steps'
RUN_OUTCOME: Final = 'tracegraph.run.outcome'
RUN_OUTPUT: Final = 'tracegraph.run.output'
RUN_RESUMED_FROM: Final = 'tracegraph.run.resumed_from'
"""On the run span of a run resumed in a new trace, and on each of its node spans (the run span ends last): the
trace id of the run it continues."""
GRAPH_EDGES: Final = 'tracegraph.graph.edges'
"""On a run span: the graph's declared edges as compact JSON, each node id to the ids that may come next (`End`
included), in the graph's node order; what a dashboard draws the graph from before (and besides) the steps seen."""

NODE_ID: Final = 'tracegraph.node.id'
NODE_STEP: Final = 'tracegraph.step'
NODE_NEXT: Final = 'tracegraph.node.next'
NODE_INPUT: Final = 'tracegraph.node.input'
NODE_OUTCOME: Final = 'tracegraph.node.outcome'
SNAPSHOT_ID: Final = 'tracegraph.snapshot.id'
"""Id of the persistence snapshot a node span ran (runs given `persistence=` only)."""
NODE_ATTEMPT: Final = 'tracegraph.node.attempt'
"""Which run of its snapshot a persisted node span is: 1, or more when the node was running in a process that died
and runs again on resume (runs given `persistence=` only)."""
STATE_DIFF: Final = 'tracegraph.state.diff'
STATE_BEFORE: Final = 'tracegraph.state.before'
STATE_AFTER: Final = 'tracegraph.state.after'

LOGFIRE_MSG_TEMPLATE: Final = 'logfire.msg_template'
LOGFIRE_MSG: Final = 'logfire.msg'
LOGFIRE_SPAN_TYPE: Final = 'logfire.span_type'
LOGFIRE_JSON_SCHEMA: Final = 'logfire.json_schema'

END_NODE_ID: Final = 'End'
"""Value of `tracegraph.node.next` when a node returned `End`."""

METRIC_NODE_DURATION: Final = 'tracegraph.node.duration'
"""Histogram, unit `s`, attributes `tracegraph.graph.name`, `tracegraph.node.id`, `tracegraph.node.outcome`."""
METRIC_RUN_DURATION: Final = 'tracegraph.run.duration'
"""Histogram, unit `s`, attributes `tracegraph.graph.name`, `tracegraph.run.outcome`."""
METRIC_RUN_STEPS: Final = 'tracegraph.run.steps'
"""Counter of node steps, attribute `tracegraph.graph.name`."""

DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
"""Histogram bucket boundaries in seconds: 100 µs to 10 minutes, about three per decade."""

Outcome = Literal['completed', 'failed', 'interrupted']
"""How a run or a node step ended: `completed` (normally), `failed` (raised), `interrupted` (left or cancelled)."""
