"""Prometheus exposition of the ledger: what ``routing-ledger metrics`` serves at ``/metrics``.

A custom collector reads the database at scrape time, in one call of
``routing.ops_metrics`` (the integrity report with each metric's kind, and the write path
over a recent window) and one of ``routing.describe_metrics`` (names, label names, units and
help texts): nothing is cached, so a scrape shows the ledger as it is, and the metric list is
the database's, not this module's. Every sample is a gauge named
``routing_ledger_<metric>`` (``_seconds`` appended where the unit is seconds).

Besides, per (model, task type) with judge labels, ``routing_ledger_model_effective_quality``
and ``routing_ledger_model_label_weight`` from ``routing.model_quality``: what the router has
learned, as it uses it at scrape time (a degrading model shows there before it falls below
its floor).

When the database cannot answer, the scrape still succeeds with ``routing_ledger_up 0`` and
nothing else, so an alert can tell "the ledger is broken" from "we cannot see it".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import psycopg
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from routing_ledger.ops import Interval, MetricDescription, Operator

__all__ = ["PREFIX", "LedgerCollector", "family_name", "serve"]

log = logging.getLogger("routing_ledger.metrics")

PREFIX = "routing_ledger_"


def family_name(description: MetricDescription) -> str:
    """The Prometheus name of a metric ``routing.describe_metrics`` lists."""
    suffix = "_seconds" if description.unit == "seconds" else ""
    return f"{PREFIX}{description.metric}{suffix}"


class LedgerCollector(Collector):
    """Reads ``routing.ops_metrics`` at each scrape (``window`` is its ``p_window``)."""

    def __init__(self, operator: Operator, window: Interval | None = None) -> None:
        self._operator = operator
        self._window = window

    def describe(self) -> list[Metric]:
        # Nothing up front: registering must not query the database.
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            descriptions = [
                d for d in self._operator.describe_metrics() if d.source == "ops_metrics"
            ]
            samples = self._operator.ops_metrics(self._window)
            learned = self._operator.model_quality()
        except psycopg.Error as exc:
            log.warning("metrics scrape: the database did not answer: %s", exc)
            yield _gauge("up", "1 when the last scrape read the database, else 0.", 0.0)
            return
        families = {
            d.metric: GaugeMetricFamily(family_name(d), d.description, labels=d.labels)
            for d in descriptions
        }
        label_names = {d.metric: d.labels for d in descriptions}
        for sample in samples:
            family = families.get(sample.metric)
            if family is None:  # a database newer than its own description: skip it
                continue
            family.add_metric(
                [sample.labels.get(name, "") for name in label_names[sample.metric]],
                sample.value,
            )
        yield from families.values()
        quality = GaugeMetricFamily(
            f"{PREFIX}model_effective_quality",
            "The router's estimate of a model's quality for a task type (routing.model_quality:"
            " the posterior mean of q_prior and the decayed judge labels), 0..1.",
            labels=["model", "task_type"],
        )
        weight = GaugeMetricFamily(
            f"{PREFIX}model_label_weight",
            "The decayed weight of a model's judge labels for a task type (each label 1 at its"
            " outcome's time, halving every routing.settings.quality_half_life).",
            labels=["model", "task_type"],
        )
        for row in learned:
            quality.add_metric([row.model_slug, row.task_type], float(row.effective_quality))
            weight.add_metric([row.model_slug, row.task_type], float(row.label_weight))
        yield quality
        yield weight
        yield _gauge("up", "1 when the last scrape read the database, else 0.", 1.0)
        yield _gauge(
            "scrape_duration_seconds",
            "Time this scrape spent reading the database.",
            time.perf_counter() - started,
        )


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", text, value=value)


def serve(
    conninfo: str, host: str, port: int, window: Interval | None = None
) -> tuple[WSGIServer, Operator]:
    """Serve ``/metrics`` on ``host:port`` (0: any free port) in a background thread.

    Returns the server (``server.server_port`` is the port; ``server.shutdown()`` stops it)
    and the operator whose connection the scrapes share (close it after the server).
    """
    operator = Operator(conninfo)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(operator, window))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, operator
