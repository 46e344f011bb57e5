"""The VPC (public, app and data subnets over the AZs from context) and the security groups between the tiers."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from constructs import Construct

from docproc_infra import logical_ids
from docproc_infra.config import Config


class Network(logical_ids.Part):
    """The VPC with flow logs, and one security group per tier. The data stores take connections only
    from the service's groups. Everything opens nothing else except the load balancer (see edge.py)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, log_bucket: s3.IBucket) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            availability_zones=config.availability_zones,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20),
                ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
            # S3 traffic (uploads) stays off the NAT gateways, and costs nothing
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
        )
        # CDK's own validation (cfn-lint rules) warns about literal AZs; they are literal on purpose
        Validations.of(self.vpc).acknowledge(
            Acknowledgment(
                id="CloudFormation-Validate::W3010",
                reason="The AZs come from context (azs, default <region>a and <region>b) so that synthesis "
                "needs no lookup in an AWS account.",
            )
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_s3(log_bucket, "vpc-flow-logs/"),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        self.data_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        def group(id_: str, description: str) -> ec2.SecurityGroup:
            return _SecurityGroup(self, id_, vpc=self.vpc, description=description, allow_all_outbound=False)

        self.alb_sg = group("AlbSg", "docproc load balancer: HTTP(S) in, the API port out")
        self.api_sg = group("ApiSg", "docproc API instances")
        self.worker_sg = group("WorkerSg", "docproc worker instances")
        self.watchdog_sg = group("WatchdogSg", "docproc watchdog instance")
        self.docdb_sg = group("DocDbSg", "DocumentDB: from the API, workers and watchdog only")
        self.valkey_sg = group("ValkeySg", "ElastiCache for Valkey: from the API, workers and watchdog only")
        self.aurora_sg = group("AuroraSg", "Aurora PostgreSQL: from the API, workers and watchdog only")
        services = (self.api_sg, self.worker_sg, self.watchdog_sg)
        for sg in services:
            # AWS APIs (Secrets Manager, ECR, CloudWatch, Auto Scaling), ECR's layers and the OS packages
            sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs, ECR and OS repositories")
        for store, port in (
            (self.docdb_sg, config.docdb_port),
            (self.valkey_sg, config.valkey_port),
            (self.aurora_sg, config.aurora_port),
        ):
            for source in services:
                store.connections.allow_from(source, ec2.Port.tcp(port), f"from {source.node.id}")


class _SecurityGroup(ec2.SecurityGroup):
    """CDK names a rule between two groups after the peer's unique id, which is built from its path. This
    group reports the id it had as the stack's direct child, so that its rules keep their logical IDs."""

    @property
    def unique_id(self) -> str:
        return logical_ids.unique_id(self)
