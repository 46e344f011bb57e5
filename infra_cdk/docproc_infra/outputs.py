"""The stack's outputs for operators (docs/deployment.md, "Outputs")."""

from __future__ import annotations

from aws_cdk import CfnOutput
from constructs import Construct

from docproc_infra import logical_ids
from docproc_infra.config import Config
from docproc_infra.data import DataStores
from docproc_infra.edge import Cdn, LoadBalancer
from docproc_infra.fleet import Fleet, Image
from docproc_infra.service import METRIC_NAMESPACE, QUEUE_DEPTH_METRIC, QUEUE_NAME, S3_PREFIX


class Outputs(logical_ids.Part):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        image: Image,
        data: DataStores,
        api: Fleet,
        workers: Fleet,
        watchdog: Fleet,
        load_balancer: LoadBalancer,
        cdn: Cdn | None,
    ) -> None:
        super().__init__(scope, construct_id)
        alb_dns = load_balancer.alb.load_balancer_dns_name
        scheme = "https" if config.https or cdn is not None else "http"
        if config.domain_name and config.route53:
            host = config.domain_name
        elif cdn is not None:
            host = cdn.distribution.distribution_domain_name
        else:
            host = alb_dns
        valkey = data.valkey
        outputs = {
            "ApiUrl": (f"{scheme}://{host}", "the API's base URL (GET /health, POST /upload, /docs)"),
            "LoadBalancerDns": (alb_dns, "the ALB's DNS name"),
            "ImageUri": (image.uri, "the image every instance runs"),
            "UploadsBucket": (data.uploads.bucket_name, f"S3 bucket of the uploads (prefix {S3_PREFIX})"),
            "DocumentDbEndpoint": (data.docdb.cluster_endpoint.socket_address, "DocumentDB cluster endpoint"),
            "DocumentDbSecretArn": (data.docdb_secret.secret_arn, "DocumentDB credentials"),
            "ValkeyEndpoint": (
                f"{valkey.attr_primary_end_point_address}:{valkey.attr_primary_end_point_port}",
                "Valkey primary endpoint (TLS, AUTH)",
            ),
            "ValkeySecretArn": (data.valkey_secret.secret_arn, "Valkey AUTH token"),
            "AuroraEndpoint": (data.aurora.cluster_endpoint.socket_address, "Aurora PostgreSQL writer endpoint"),
            "AuroraSecretArn": (data.aurora_secret.secret_arn, "Aurora credentials"),
            "ApiAsgName": (api.group.auto_scaling_group_name, "API Auto Scaling group"),
            "WorkerAsgName": (workers.group.auto_scaling_group_name, "workers' Auto Scaling group"),
            "WatchdogAsgName": (watchdog.group.auto_scaling_group_name, "watchdog Auto Scaling group"),
            "QueueDepthMetric": (
                f"{METRIC_NAMESPACE}/{QUEUE_DEPTH_METRIC} Queue={QUEUE_NAME}",
                "the CloudWatch metric the watchdog publishes and the workers scale on",
            ),
        }
        if cdn is not None:
            outputs["CloudFrontDomain"] = (cdn.distribution.distribution_domain_name, "CloudFront domain name")
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)
