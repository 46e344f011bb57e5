"""docproc's AWS deployment as a CDK v2 app (see app.py and docs/deployment.md)."""
