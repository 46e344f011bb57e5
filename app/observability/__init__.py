"""What every process reports about itself: log lines (logs.py), the API's Prometheus metrics
(api_metrics.py), readiness checks and host metrics. The worker's metrics are worker/metrics.py."""
