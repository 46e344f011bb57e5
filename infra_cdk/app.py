#!/usr/bin/env python3
"""The CDK app: `npx cdk synth` / `npx cdk deploy` from infra_cdk/ (cdk.json runs this file).

Every setting comes from context (`-c key=value`, see docproc_infra/config.py and
docs/deployment.md); nothing is looked up in an AWS account, so synthesis works offline.
cdk-nag's AwsSolutions checks run on every synthesis and fail it on any finding that is
not acknowledged with a reason.
"""

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from docproc_infra.config import from_context
from docproc_infra.stack import DocprocStack


def build(app: App) -> DocprocStack:
    config = from_context(app.node)
    stack = DocprocStack(
        app,
        config.stack_name,
        config=config,
        env=Environment(account=config.account, region=config.region),
        description="docproc: upload-first document processing (API, workers, DocumentDB, Valkey, Aurora, S3)",
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stack


if __name__ == "__main__":
    app = App()
    build(app)
    app.synth()
