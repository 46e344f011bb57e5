"""docproc on AWS: one stack, synthesized offline (no context lookups).

    internet ─▶ [CloudFront] ─▶ ALB (public subnets) ─▶ API Auto Scaling group ─┐   (private subnets, NAT)
                                   workers' Auto Scaling group (scales on QueueDepth) ─┤
                                   watchdog (one instance: publishes QueueDepth) ──────┤
                                                                                       ▼   (isolated subnets)
                          DocumentDB (file status) · ElastiCache for Valkey (RQ) · Aurora PostgreSQL
                          Serverless v2 + pgvector (chunks) · S3 (uploads, via the VPC's gateway endpoint)

Every instance runs the one docproc image (from ECR) in the role its group needs, with its settings
built at boot from Secrets Manager (scripts/boot.sh). cdk-nag's AwsSolutions checks run on every
synthesis (app.py); each finding that stays is acknowledged next to its resource, with the reason (nag.py).

The stack only composes its parts; each one's module says what it owns: network.py, data.py, fleet.py,
scaling.py, edge.py, outputs.py. The parts take no part in the logical IDs (logical_ids.py).
"""

from __future__ import annotations

from aws_cdk import CfnElement, Duration, Stack, Tags
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from docproc_infra import logical_ids
from docproc_infra.config import Config
from docproc_infra.data import DataStores, UploadsAccess, access_log_bucket
from docproc_infra.edge import Cdn, Dns, LoadBalancer
from docproc_infra.fleet import Fleet, FleetSpec, Image
from docproc_infra.nag import Ack, Acknowledgments
from docproc_infra.network import Network
from docproc_infra.outputs import Outputs
from docproc_infra.scaling import Scaling


class DocprocStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self._logical_ids: dict[str, str] = {}  # by construct path, see _allocate_logical_id
        self.config = cfg = config
        self._azs = cfg.availability_zones
        self._nag = nag = Acknowledgments(apply=cfg.nag_acknowledgments)
        Tags.of(self).add("project", "docproc")

        log_bucket = access_log_bucket(self)
        network = Network(self, "Network", config=cfg, log_bucket=log_bucket)
        data = DataStores(self, "Data", config=cfg, network=network, log_bucket=log_bucket, nag=nag)
        image = Image.in_ecr(self, cfg.ecr_repository, cfg.image_tag)

        def fleet(id_: str, spec: FleetSpec, security_group: ec2.ISecurityGroup) -> Fleet:
            return Fleet(
                self,
                id_,
                spec=spec,
                config=cfg,
                vpc=network.vpc,
                security_group=security_group,
                image=image,
                data=data,
                nag=nag,
            )

        ec2_health = autoscaling.HealthChecks.ec2(grace_period=Duration.minutes(10))
        api = fleet(
            "ApiFleet",
            FleetSpec(
                role="api",
                description="docproc API instances",
                instance_type=cfg.api_instance_type,
                min_capacity=cfg.api_min,
                max_capacity=cfg.api_max,
                stop_timeout=35,
                health_checks=autoscaling.HealthChecks.with_additional_checks(
                    additional_types=[autoscaling.AdditionalHealthCheckType.ELB], grace_period=Duration.minutes(10)
                ),
                uploads=UploadsAccess.WRITE,
            ),
            network.api_sg,
        )
        workers = fleet(
            "WorkerFleet",
            FleetSpec(
                role="worker",
                description="docproc worker instances",
                instance_type=cfg.worker_instance_type,
                min_capacity=cfg.worker_min,
                max_capacity=cfg.worker_max,
                stop_timeout=cfg.worker_drain_seconds,
                health_checks=ec2_health,
                uploads=UploadsAccess.READ,
                drains_on_scale_in=True,
            ),
            network.worker_sg,
        )
        watchdog = fleet(
            "WatchdogFleet",
            FleetSpec(
                role="watchdog",
                description="docproc watchdog instance",
                instance_type=cfg.watchdog_instance_type,
                min_capacity=1,  # exactly one publisher and one requeuer; the group replaces it if it dies
                max_capacity=1,
                stop_timeout=30,
                health_checks=ec2_health,
                uploads=UploadsAccess.SWEEP,
                publishes_queue_depth=True,
            ),
            network.watchdog_sg,
        )
        Scaling(self, "Scaling", api=api, workers=workers, nag=nag)

        load_balancer = LoadBalancer(
            self, "LoadBalancer", config=cfg, network=network, api=api, log_bucket=log_bucket, nag=nag
        )
        cdn = Cdn(self, "CloudFront", config=cfg, load_balancer=load_balancer, nag=nag) if cfg.cloudfront else None
        if cfg.route53:
            Dns(self, "Dns", config=cfg, load_balancer=load_balancer, cdn=cdn)
        Outputs(
            self,
            "Outputs",
            config=cfg,
            image=image,
            data=data,
            api=api,
            workers=workers,
            watchdog=watchdog,
            load_balancer=load_balancer,
            cdn=cdn,
        )

    @property
    def availability_zones(self) -> list[str]:
        """The AZs from context: without this an account-specific stack would look them up in the account."""
        return list(self._azs)

    @property
    def acknowledgments(self) -> list[Ack]:
        """Every cdk-nag acknowledgment, applied or (nagAcknowledgments=false) only recorded."""
        return self._nag.recorded

    def _allocate_logical_id(self, cfn_element: CfnElement) -> str:
        # CDK asks again on every reference to the element (about ten times each): compute each ID once
        path = cfn_element.node.path
        if path not in self._logical_ids:
            self._logical_ids[path] = logical_ids.logical_id(cfn_element)
        return self._logical_ids[path]
