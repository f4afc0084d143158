"""The financial sentiment monitor: documents in, sentiment per topic and company over time, alerts.

A thin layer over tunelab's public API (``tunelab.load``, ``Predictor.predict``, ``tunelab.embed``)
and the service's store. What the CLI (``tunelab app monitor``) and the service routes use::

    from tunelab.apps.monitor import Monitor, MonitorConfig, open_monitor_store, trend

    config = MonitorConfig.from_yaml("monitor.yaml")
    with Monitor(config) as monitor:
        monitor.ingest_batch([{"id": "n1", "time": "2026-03-02T09:30:00Z", "text": "Acme misses estimates"}])
        monitor.run(once=True)                       # read the followed files and folders once
        trend(monitor.store, config.name, topic="earnings", bucket="1h")
        monitor.store.pending_alerts()               # for a webhook outbox; then mark_alert_delivered(id)
"""

from tunelab.apps.monitor.classify import Classified, Classifier, Topic, normalise_company
from tunelab.apps.monitor.config import MonitorConfig, Source
from tunelab.apps.monitor.detector import Alert, Detector, DetectorSettings, WindowStats
from tunelab.apps.monitor.documents import Document, check_batch, parse_document, parse_time
from tunelab.apps.monitor.lease import MonitorBusyError
from tunelab.apps.monitor.monitor import IngestResult, Monitor, load_classifier
from tunelab.apps.monitor.report import write_report
from tunelab.apps.monitor.store import MonitorStore, UnknownMonitorError, open_monitor_store
from tunelab.apps.monitor.trend import trend

__all__ = [
    "Alert",
    "Classified",
    "Classifier",
    "Detector",
    "DetectorSettings",
    "Document",
    "IngestResult",
    "Monitor",
    "MonitorBusyError",
    "MonitorConfig",
    "MonitorStore",
    "Source",
    "Topic",
    "UnknownMonitorError",
    "WindowStats",
    "check_batch",
    "load_classifier",
    "normalise_company",
    "open_monitor_store",
    "parse_document",
    "parse_time",
    "trend",
    "write_report",
]
