"""Every knob of the stack, read from CDK context (`-c key=value` or cdk.json), with defaults.

Nothing here looks anything up in an AWS account: synthesis stays offline. The
defaults make the stack the docs price (docs/deployment.md, "Rough monthly cost").
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from constructs import Node

REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _list(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith("["):  # -c azs='["eu-west-1a","eu-west-1b"]'
        return _list(json.loads(text))
    return [v.strip() for v in text.split(",") if v.strip()]


@dataclass(frozen=True)
class Config:
    # where
    stack_name: str = "Docproc"
    region: str = "us-east-1"
    account: str | None = None  # None: account-agnostic template (fine for synth, and for deploy)
    azs: tuple[str, ...] = ()  # default: "<region>a", "<region>b"
    nat_gateways: int = 2  # one per AZ; 1 saves ~33 USD a month but loses egress with that AZ

    # the image (pushed to ECR beforehand, see docs/deployment.md)
    ecr_repository: str = "docproc"
    image_tag: str = "latest"

    # edge
    certificate_arn: str | None = None  # ACM certificate (stack region) → HTTPS on the ALB, HTTP redirects
    allowed_cidr: str = "0.0.0.0/0"  # who may reach the ALB
    cloudfront: bool = False
    cloudfront_certificate_arn: str | None = None  # ACM certificate in us-east-1, for domain_name on CloudFront
    domain_name: str | None = None  # e.g. docproc.example.com: Route 53 alias to CloudFront or the ALB
    hosted_zone_id: str | None = None
    hosted_zone_name: str | None = None
    origin_domain_name: str | None = None  # ALB's own name when CloudFront talks HTTPS to it

    # compute
    api_instance_type: str = "t3.medium"
    api_min: int = 2
    api_max: int = 6
    api_workers: int = 2  # gunicorn workers per API instance
    worker_instance_type: str = "c7i.large"  # Sapphire Rapids: AMX bf16 for the embedder
    worker_min: int = 1
    worker_max: int = 8
    worker_drain_seconds: int = 14400 + 300  # JOB_TIMEOUT_MAX_S plus margin: a job is never cut short
    watchdog_instance_type: str = "t3.micro"
    root_volume_gib: int = 30

    # data stores
    docdb_instance_type: str = "db.t3.medium"
    docdb_instances: int = 2
    docdb_port: int = 27117
    valkey_node_type: str = "cache.t4g.small"
    valkey_replicas: int = 1
    valkey_port: int = 6479
    aurora_min_acu: float = 0.5
    aurora_max_acu: float = 8
    aurora_readers: int = 1
    aurora_port: int = 5532
    deletion_protection: bool = True

    # cdk-nag: false lists every finding instead of applying the acknowledgments (for auditing)
    nag_acknowledgments: bool = True

    @property
    def availability_zones(self) -> list[str]:
        return list(self.azs) or [f"{self.region}a", f"{self.region}b"]

    @property
    def https(self) -> bool:
        return bool(self.certificate_arn)

    @property
    def route53(self) -> bool:
        return bool(self.domain_name and self.hosted_zone_id and self.hosted_zone_name)

    def validate(self) -> None:
        problems = []
        if not REGION_RE.match(self.region):
            problems.append(f"region {self.region!r} is not an AWS region name")
        azs = self.availability_zones
        if len(azs) < 2 or len(set(azs)) != len(azs):
            problems.append(f"azs: two or more distinct availability zones are needed, got {azs}")
        problems += [f"az {az!r} is not in region {self.region}" for az in azs if not az.startswith(self.region)]
        if not 1 <= self.nat_gateways <= len(azs):
            problems.append(f"natGateways must be between 1 and {len(azs)}")
        for name, lo, hi in (("api", self.api_min, self.api_max), ("worker", self.worker_min, self.worker_max)):
            if not 0 <= lo <= hi or hi < 1:
                problems.append(f"{name}: need 0 <= min <= max and max >= 1 (got {lo}..{hi})")
        if self.valkey_replicas < 1:
            problems.append("valkeyReplicas must be >= 1: Multi-AZ failover needs a replica")
        if self.docdb_instances < 1:
            problems.append("docdbInstances must be >= 1")
        if not 0 <= self.aurora_min_acu <= self.aurora_max_acu:
            problems.append("auroraMinAcu must be <= auroraMaxAcu")
        if self.domain_name and not self.route53:
            problems.append("domainName needs hostedZoneId and hostedZoneName")
        if self.cloudfront and self.domain_name and not self.cloudfront_certificate_arn:
            problems.append("cloudFront with domainName needs cloudFrontCertificateArn (ACM, in us-east-1)")
        if self.cloudfront and self.https and not (self.origin_domain_name or self.route53):
            problems.append("cloudFront over HTTPS to the ALB needs originDomainName (covered by its certificate)")
        if problems:
            raise ValueError("invalid context: " + "; ".join(problems))


# context key → (Config field, converter)
_KEYS: dict[str, tuple[str, Any]] = {
    "stackName": ("stack_name", str),
    "region": ("region", str),
    "account": ("account", str),
    "azs": ("azs", lambda v: tuple(_list(v))),
    "natGateways": ("nat_gateways", int),
    "ecrRepository": ("ecr_repository", str),
    "imageTag": ("image_tag", str),
    "certificateArn": ("certificate_arn", str),
    "allowedCidr": ("allowed_cidr", str),
    "cloudFront": ("cloudfront", _bool),
    "cloudFrontCertificateArn": ("cloudfront_certificate_arn", str),
    "domainName": ("domain_name", str),
    "hostedZoneId": ("hosted_zone_id", str),
    "hostedZoneName": ("hosted_zone_name", str),
    "originDomainName": ("origin_domain_name", str),
    "apiInstanceType": ("api_instance_type", str),
    "apiMin": ("api_min", int),
    "apiMax": ("api_max", int),
    "apiWorkers": ("api_workers", int),
    "workerInstanceType": ("worker_instance_type", str),
    "workerMin": ("worker_min", int),
    "workerMax": ("worker_max", int),
    "workerDrainSeconds": ("worker_drain_seconds", int),
    "watchdogInstanceType": ("watchdog_instance_type", str),
    "rootVolumeGiB": ("root_volume_gib", int),
    "docdbInstanceType": ("docdb_instance_type", str),
    "docdbInstances": ("docdb_instances", int),
    "docdbPort": ("docdb_port", int),
    "valkeyNodeType": ("valkey_node_type", str),
    "valkeyReplicas": ("valkey_replicas", int),
    "valkeyPort": ("valkey_port", int),
    "auroraMinAcu": ("aurora_min_acu", float),
    "auroraMaxAcu": ("aurora_max_acu", float),
    "auroraReaders": ("aurora_readers", int),
    "auroraPort": ("aurora_port", int),
    "deletionProtection": ("deletion_protection", _bool),
    "nagAcknowledgments": ("nag_acknowledgments", _bool),
}
CONTEXT_KEYS = tuple(_KEYS)


def from_context(node: Node) -> Config:
    """The configuration from the app's context; the account falls back to CDK_DEFAULT_ACCOUNT."""
    values: dict[str, Any] = {}
    for key, (attr, convert) in _KEYS.items():
        raw = node.try_get_context(key)
        if raw is None or raw == "":
            continue
        values[attr] = convert(raw)
    values.setdefault("account", os.environ.get("CDK_DEFAULT_ACCOUNT") or None)
    config = Config(**values)
    config.validate()
    return config
