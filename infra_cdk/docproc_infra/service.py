"""What the docproc service and its boot scripts expect of the deployment, shared by the stack's parts."""

# what the service publishes (python -m worker.watchdog with CLOUDWATCH_METRICS=true) and the workers scale on
METRIC_NAMESPACE = "Docproc"
QUEUE_DEPTH_METRIC = "QueueDepth"
QUEUE_NAME = "ingest"

S3_PREFIX = "uploads/"  # every object the service writes is under it
API_PORT = 8000
DRAIN_HOOK_NAME = "docproc-drain"  # the workers' termination lifecycle hook, completed by scripts/drain.sh
