"""docproc on AWS: one stack, synthesized offline (no context lookups).

    internet ─▶ [CloudFront] ─▶ ALB (public subnets) ─▶ API Auto Scaling group ─┐   (private subnets, NAT)
                                   workers' Auto Scaling group (scales on QueueDepth) ─┤
                                   watchdog (one instance: publishes QueueDepth) ──────┤
                                                                                       ▼   (isolated subnets)
                          DocumentDB (file status) · ElastiCache for Valkey (RQ) · Aurora PostgreSQL
                          Serverless v2 + pgvector (chunks) · S3 (uploads, via the VPC's gateway endpoint)

Every instance runs the one docproc image (from ECR) in the role its group needs, with its settings
built at boot from Secrets Manager (scripts/boot.sh). cdk-nag's AwsSolutions checks run on every
synthesis (app.py); each finding that stays is acknowledged next to its resource, with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import (
    Acknowledgment,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Stack,
    Tags,
    Validations,
)
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_docdb as docdb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct, IConstruct

from docproc_infra.config import Config

SCRIPTS = Path(__file__).resolve().parent / "scripts"

# what the service publishes (python -m worker.watchdog with CLOUDWATCH_METRICS=true) and scales on
METRIC_NAMESPACE = "Docproc"
QUEUE_DEPTH_METRIC = "QueueDepth"
QUEUE_NAME = "ingest"
S3_PREFIX = "uploads/"
API_PORT = 8000
DRAIN_HOOK_NAME = "docproc-drain"

# worker scaling on QueueDepth (jobs waiting, the maximum over a minute)
SCALE_OUT_STEPS = ((10, 1), (50, 2), (200, 4))  # (at least this many waiting, add this many instances)
SCALE_OUT_MINUTES = 2  # consecutive minutes above the first step before adding
SCALE_IN_MINUTES = 15  # consecutive minutes with an empty queue before removing one instance
WORKER_WARMUP = Duration.minutes(5)  # boot, image pull, model load

DOCDB_ENGINE_VERSION = "5.0.0"
DOCDB_PARAMETER_FAMILY = "docdb5.0"
VALKEY_ENGINE_VERSION = "8.1"
VALKEY_PARAMETER_FAMILY = "valkey8"
AURORA_VERSION = rds.AuroraPostgresEngineVersion.VER_17_7  # pgvector 0.8 with HNSW


@dataclass(frozen=True)
class Ack:
    path: str  # the construct acknowledged, and so its children
    rule: str  # cdk-nag's finding id, e.g. AwsSolutions-IAM5[Resource::*]
    reason: str


def flat(scope: IConstruct, value: str) -> str:
    """A value as cdk-nag names it in a finding id: references flattened to <Logical.Attr>, <AWS::Region>.

    The same rendering as cdk-nag's flattenCfnReference, so an acknowledgment matches its finding
    whatever the account, region or partition of the synthesis.
    """

    def visit(node: object) -> str:
        if isinstance(node, str):
            return node.replace("${", "<").replace("}", ">")
        if isinstance(node, dict):
            if "Fn::Join" in node:
                delimiter, items = node["Fn::Join"]
                return delimiter.join(visit(i) for i in items)
            if "Fn::Sub" in node:
                return visit(node["Fn::Sub"])
            if "Fn::GetAtt" in node:
                resource, attribute = node["Fn::GetAtt"]
                return f"<{visit(resource)}.{visit(attribute)}>"
            if "Ref" in node:
                return f"<{visit(node['Ref'])}>"
        return json.dumps(node, separators=(",", ":"))

    return visit(Stack.of(scope).resolve(value))


class DocprocStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = cfg = config
        self.acknowledgments: list[Ack] = []
        self._azs = cfg.availability_zones
        name = cfg.stack_name.lower()
        Tags.of(self).add("project", "docproc")

        # --- network -----------------------------------------------------------------------
        self.log_bucket = s3.Bucket(
            self,
            "LogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,  # ALB access logs accept SSE-S3 only
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            availability_zones=cfg.availability_zones,
            nat_gateways=cfg.nat_gateways,
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
            destination=ec2.FlowLogDestination.to_s3(self.log_bucket, "vpc-flow-logs/"),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        data_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        # --- security groups: the data stores take connections from the service's groups only --------
        def group(id_: str, description: str) -> ec2.SecurityGroup:
            return ec2.SecurityGroup(self, id_, vpc=self.vpc, description=description, allow_all_outbound=False)

        self.alb_sg = group("AlbSg", "docproc load balancer: HTTP(S) in, the API port out")
        self.api_sg = group("ApiSg", "docproc API instances")
        self.worker_sg = group("WorkerSg", "docproc worker instances")
        self.watchdog_sg = group("WatchdogSg", "docproc watchdog instance")
        self.docdb_sg = group("DocDbSg", "DocumentDB: from the API, workers and watchdog only")
        self.valkey_sg = group("ValkeySg", "ElastiCache for Valkey: from the API, workers and watchdog only")
        self.aurora_sg = group("AuroraSg", "Aurora PostgreSQL: from the API, workers and watchdog only")
        for sg in (self.api_sg, self.worker_sg, self.watchdog_sg):
            # AWS APIs (Secrets Manager, ECR, CloudWatch, Auto Scaling), ECR's layers and the OS packages
            sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs, ECR and OS repositories")
        clients = {
            self.docdb_sg: ((self.api_sg, self.worker_sg, self.watchdog_sg), cfg.docdb_port),
            self.valkey_sg: ((self.api_sg, self.worker_sg, self.watchdog_sg), cfg.valkey_port),
            self.aurora_sg: ((self.api_sg, self.worker_sg, self.watchdog_sg), cfg.aurora_port),
        }
        for store, (sources, port) in clients.items():
            for source in sources:
                store.connections.allow_from(source, ec2.Port.tcp(port), f"from {source.node.id}")

        # --- buckets and secrets ---------------------------------------------------------------
        self.uploads = s3.Bucket(
            self,
            "Uploads",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="s3-uploads/",
            lifecycle_rules=[
                s3.LifecycleRule(id="abort-multipart", abort_incomplete_multipart_upload_after=Duration.days(1))
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.valkey_secret = secretsmanager.Secret(
            self,
            "ValkeyAuthToken",
            description="docproc: AUTH token of the ElastiCache for Valkey replication group (the RQ queue)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, include_space=False, password_length=64
            ),
        )
        self.ack(
            self.valkey_secret,
            "AwsSolutions-SMG4",
            "Rotating the Valkey AUTH token needs ElastiCache's two-step ROTATE/SET and an instance refresh "
            "(instances read it at boot); it is a documented runbook step, not an automatic rotation.",
        )

        # --- data stores (isolated subnets) ------------------------------------------------------
        self._documentdb(name, data_subnets)
        self._valkey(name)
        self._aurora(name, data_subnets)

        # --- the image, its logs, and the three roles --------------------------------------------
        self.repository = ecr.Repository.from_repository_name(self, "Repository", cfg.ecr_repository)
        self.image_uri = f"{self.repository.repository_uri}:{cfg.image_tag}"
        self.api_role = self._instance_role("Api", "docproc API instances")
        self.worker_role = self._instance_role("Worker", "docproc worker instances")
        self.watchdog_role = self._instance_role("Watchdog", "docproc watchdog instance")
        self._grant_data_access()

        self.api_asg = self._fleet(
            "Api",
            role_name="api",
            instance_type=cfg.api_instance_type,
            security_group=self.api_sg,
            role=self.api_role,
            min_capacity=cfg.api_min,
            max_capacity=cfg.api_max,
            stop_timeout=35,
            health_checks=autoscaling.HealthChecks.with_additional_checks(
                additional_types=[autoscaling.AdditionalHealthCheckType.ELB], grace_period=Duration.minutes(10)
            ),
        )
        self.api_asg.scale_on_cpu_utilization("CpuTarget", target_utilization_percent=60)

        self.worker_asg = self._fleet(
            "Worker",
            role_name="worker",
            instance_type=cfg.worker_instance_type,
            security_group=self.worker_sg,
            role=self.worker_role,
            min_capacity=cfg.worker_min,
            max_capacity=cfg.worker_max,
            stop_timeout=cfg.worker_drain_seconds,
            health_checks=autoscaling.HealthChecks.ec2(grace_period=Duration.minutes(10)),
        )
        self._worker_scaling()

        self.watchdog_asg = self._fleet(
            "Watchdog",
            role_name="watchdog",
            instance_type=cfg.watchdog_instance_type,
            security_group=self.watchdog_sg,
            role=self.watchdog_role,
            min_capacity=1,  # exactly one publisher and one requeuer; the group replaces it if it dies
            max_capacity=1,
            stop_timeout=30,
            health_checks=autoscaling.HealthChecks.ec2(grace_period=Duration.minutes(10)),
        )
        self.watchdog_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PublishQueueDepth",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # PutMetricData has no resource type; the condition pins the namespace
                conditions={"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}},
            )
        )

        # --- the edge ------------------------------------------------------------------------------
        self._load_balancer()
        self.distribution: cloudfront.Distribution | None = None
        if cfg.cloudfront:
            self._cloudfront()
        if cfg.route53:
            self._dns()
        self._outputs()

    @property
    def availability_zones(self) -> list[str]:
        """The AZs from context: without this an account-specific stack would look them up in the account."""
        return list(self._azs)

    def ack(self, scope: IConstruct, rule: str, reason: str) -> None:
        """Acknowledge one cdk-nag finding on one construct (and its children), with the reason it stays.

        With -c nagAcknowledgments=false the acknowledgments are only recorded, not applied: synthesis then
        lists every finding, which the tests use to prove each acknowledgment is still needed.
        """
        self.acknowledgments.append(Ack(scope.node.path, rule, reason))
        if self.config.nag_acknowledgments:
            Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))

    # ------------------------------------------------------------------------------------------------
    def _documentdb(self, name: str, subnets: ec2.SubnetSelection) -> None:
        cfg = self.config
        cluster_id = f"{name}-docdb"
        params = docdb.ClusterParameterGroup(
            self,
            "DocDbParameters",
            family=DOCDB_PARAMETER_FAMILY,
            description="docproc: TLS required, audit and profiler logs",
            parameters={
                "tls": "enabled",
                "audit_logs": "enabled",
                "profiler": "enabled",
                "profiler_threshold_ms": "500",
            },
        )
        log_groups = [
            logs.LogGroup(
                self,
                f"DocDb{kind.title()}Logs",
                log_group_name=f"/aws/docdb/{cluster_id}/{kind}",
                retention=logs.RetentionDays.ONE_MONTH,
                removal_policy=RemovalPolicy.DESTROY,
            )
            for kind in ("audit", "profiler")
        ]
        self.docdb = docdb.DatabaseCluster(
            self,
            "DocDb",
            db_cluster_name=cluster_id,
            master_user=docdb.Login(username="docproc"),
            engine_version=DOCDB_ENGINE_VERSION,
            instance_type=ec2.InstanceType(cfg.docdb_instance_type.removeprefix("db.")),
            instances=cfg.docdb_instances,
            vpc=self.vpc,
            vpc_subnets=subnets,
            security_group=self.docdb_sg,
            port=cfg.docdb_port,
            parameter_group=params,
            storage_encrypted=True,
            backup=docdb.BackupProps(retention=Duration.days(7), preferred_window="03:00-04:00"),
            preferred_maintenance_window="sun:04:30-sun:05:30",
            deletion_protection=cfg.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            export_audit_logs_to_cloud_watch=True,
            export_profiler_logs_to_cloud_watch=True,
        )
        for lg in log_groups:
            self.docdb.node.add_dependency(lg)
        assert self.docdb.secret is not None
        self.ack(
            self.docdb,
            "AwsSolutions-DOC3",
            "The master username and password are Secrets Manager dynamic references joined with Fn::Join, "
            "which this rule cannot evaluate (it errors); no credential is in the template in plaintext.",
        )
        for log_type in ("authenticate", "createIndex", "dropCollection"):
            self.ack(
                self.docdb,
                f"AwsSolutions-DOC5[LogExport::{log_type}]",
                f"DocumentDB's log exports are only audit and profiler, both on; {log_type} events are part "
                "of the audit log (audit_logs=enabled), and DocumentDB accepts no export of that name.",
            )
        self.ack(
            self.docdb.node.find_child("Secret"),
            "AwsSolutions-SMG4",
            "DocumentDB credentials are read at instance boot into MONGO_URL; automatic rotation would break "
            "running instances, so rotation is a runbook step followed by an instance refresh.",
        )

    def _valkey(self, name: str) -> None:
        cfg = self.config
        subnets = elasticache.CfnSubnetGroup(
            self,
            "ValkeySubnets",
            description="docproc Valkey: isolated subnets",
            subnet_ids=self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids,
        )
        params = elasticache.CfnParameterGroup(
            self,
            "ValkeyParameters",
            cache_parameter_group_family=VALKEY_PARAMETER_FAMILY,
            description="docproc: noeviction, a full memory refuses writes instead of dropping queued jobs",
            properties={"maxmemory-policy": "noeviction"},
        )
        slow_log = logs.LogGroup(
            self, "ValkeySlowLog", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        nodes = 1 + cfg.valkey_replicas
        azs = self.config.availability_zones
        self.valkey = elasticache.CfnReplicationGroup(
            self,
            "Valkey",
            replication_group_description="docproc: the RQ queue",
            engine="valkey",
            engine_version=VALKEY_ENGINE_VERSION,
            cache_node_type=cfg.valkey_node_type,
            num_cache_clusters=nodes,
            preferred_cache_cluster_a_zs=[azs[i % len(azs)] for i in range(nodes)],
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            cache_subnet_group_name=subnets.ref,
            cache_parameter_group_name=params.ref,
            security_group_ids=[self.valkey_sg.security_group_id],
            port=cfg.valkey_port,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            auth_token=self.valkey_secret.secret_value.unsafe_unwrap(),  # a dynamic reference, not the value
            snapshot_retention_limit=7,
            snapshot_window="03:00-04:00",
            preferred_maintenance_window="sun:05:00-sun:06:00",
            auto_minor_version_upgrade=True,
            log_delivery_configurations=[
                elasticache.CfnReplicationGroup.LogDeliveryConfigurationRequestProperty(
                    destination_type="cloudwatch-logs",
                    destination_details=elasticache.CfnReplicationGroup.DestinationDetailsProperty(
                        cloud_watch_logs_details=elasticache.CfnReplicationGroup.CloudWatchLogsDestinationDetailsProperty(
                            log_group=slow_log.log_group_name
                        )
                    ),
                    log_format="json",
                    log_type="slow-log",
                )
            ],
        )

    def _aurora(self, name: str, subnets: ec2.SubnetSelection) -> None:
        cfg = self.config
        cluster_id = f"{name}-aurora"
        engine = rds.DatabaseClusterEngine.aurora_postgres(version=AURORA_VERSION)
        log_group = logs.LogGroup(
            self,
            "AuroraLogs",
            log_group_name=f"/aws/rds/cluster/{cluster_id}/postgresql",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.aurora = rds.DatabaseCluster(
            self,
            "Aurora",
            cluster_identifier=cluster_id,
            engine=engine,
            credentials=rds.Credentials.from_generated_secret("docproc"),
            default_database_name="docproc",
            writer=rds.ClusterInstance.serverless_v2("Writer", auto_minor_version_upgrade=True),
            readers=[
                rds.ClusterInstance.serverless_v2(f"Reader{i + 1}", scale_with_writer=True)
                for i in range(cfg.aurora_readers)
            ],
            serverless_v2_min_capacity=cfg.aurora_min_acu,
            serverless_v2_max_capacity=cfg.aurora_max_acu,
            vpc=self.vpc,
            vpc_subnets=subnets,
            security_groups=[self.aurora_sg],
            port=cfg.aurora_port,
            storage_encrypted=True,
            iam_authentication=True,
            parameter_group=rds.ParameterGroup(
                self,
                "AuroraParameters",
                engine=engine,
                description="docproc: TLS required",
                parameters={"rds.force_ssl": "1"},
            ),
            backup=rds.BackupProps(retention=Duration.days(7), preferred_window="03:00-04:00"),
            preferred_maintenance_window="sun:05:30-sun:06:30",
            cloudwatch_logs_exports=["postgresql"],
            deletion_protection=cfg.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        self.aurora.node.add_dependency(log_group)
        assert self.aurora.secret is not None
        self.ack(
            self.aurora.node.find_child("Secret"),
            "AwsSolutions-SMG4",
            "Aurora credentials: read at instance boot into DATABASE_URL; rotation is a runbook step "
            "followed by an instance refresh, not an automatic rotation that would break running instances.",
        )

    # ------------------------------------------------------------------------------------------------
    def _instance_role(self, id_: str, description: str) -> iam.Role:
        ssm = iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")
        role = iam.Role(
            self,
            f"{id_}Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=description,
            managed_policies=[ssm],
        )
        self.ack(
            role,
            f"AwsSolutions-IAM4[Policy::{flat(self, ssm.managed_policy_arn)}]",
            "Session Manager instead of SSH (no key pairs, no port 22): AmazonSSMManagedInstanceCore is the "
            "AWS-maintained minimum for it.",
        )
        self.repository.grant_pull(role)
        self.ack(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "ECR's GetAuthorizationToken has no resource type (AWS requires Resource *); pulling layers is "
            "granted on the one repository"
            + (
                ", and cloudwatch:PutMetricData, also without a resource type, is pinned by condition to the "
                f"{METRIC_NAMESPACE} namespace."
                if id_ == "Watchdog"
                else "."
            ),
        )
        return role

    def _grant_data_access(self) -> None:
        bucket = self.uploads
        prefix_objects = bucket.arn_for_objects(f"{S3_PREFIX}*")
        list_prefix = iam.PolicyStatement(
            sid="UploadsList",
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [S3_PREFIX, f"{S3_PREFIX}*"]}},
        )
        # API: writes uploads (multipart), deletes a file's objects (listing them first)
        self.api_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="UploadsWriteDelete",
                actions=["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
                resources=[prefix_objects],
            )
        )
        self.api_role.add_to_principal_policy(list_prefix)
        # worker: reads the uploaded bytes
        self.worker_role.add_to_principal_policy(
            iam.PolicyStatement(sid="UploadsRead", actions=["s3:GetObject"], resources=[prefix_objects])
        )
        # watchdog: finishes interrupted deletes and sweeps bytes no status document owns
        self.watchdog_role.add_to_principal_policy(
            iam.PolicyStatement(sid="UploadsDelete", actions=["s3:DeleteObject"], resources=[prefix_objects])
        )
        self.watchdog_role.add_to_principal_policy(list_prefix)
        for role in (self.api_role, self.worker_role, self.watchdog_role):
            self.ack(
                role,
                f"AwsSolutions-IAM5[Resource::{flat(self, prefix_objects)}]",
                "Object keys are created per upload ({file_id}/{name}); the grant is pinned to the bucket's "
                f"{S3_PREFIX} prefix, the narrowest it can be.",
            )
        # secrets: only those each role needs
        assert self.docdb.secret is not None and self.aurora.secret is not None
        for role in (self.api_role, self.worker_role, self.watchdog_role):
            for secret in (self.docdb.secret, self.valkey_secret, self.aurora.secret):
                secret.grant_read(role)

    def _user_data(self, role_name: str, log_group: logs.LogGroup, stop_timeout: int) -> ec2.UserData:
        cfg = self.config
        assert self.docdb.secret is not None and self.aurora.secret is not None
        deploy_env = {
            "ROLE": role_name,
            "AWS_REGION": self.region,
            "IMAGE": self.image_uri,
            "LOG_GROUP": log_group.log_group_name,
            "STOP_TIMEOUT": str(stop_timeout),
            "API_PORT": str(API_PORT),
            "API_WORKERS": str(cfg.api_workers),
            "S3_BUCKET": self.uploads.bucket_name,
            "S3_PREFIX": S3_PREFIX,
            "QUEUE_NAME": QUEUE_NAME,
            "MONGO_SECRET_ARN": self.docdb.secret.secret_arn,
            "VALKEY_SECRET_ARN": self.valkey_secret.secret_arn,
            "VALKEY_HOST": self.valkey.attr_primary_end_point_address,
            "VALKEY_PORT": self.valkey.attr_primary_end_point_port,
            "POSTGRES_SECRET_ARN": self.aurora.secret.secret_arn,
            "CLOUDWATCH_METRICS": "true" if role_name == "watchdog" else "false",
            "DRAIN_HOOK": DRAIN_HOOK_NAME,
        }
        user_data = ec2.UserData.for_linux()
        lines = ["set -euo pipefail", "install -d -m 0755 /etc/docproc /opt/docproc"]
        lines.append("cat > /etc/docproc/deploy.env <<'DOCPROC_ENV'\n" + _env_lines(deploy_env) + "DOCPROC_ENV")
        scripts = ["boot.sh"] + (["drain.sh"] if role_name == "worker" else [])
        for script in scripts:
            body = (SCRIPTS / script).read_text()
            lines.append(f"cat > /opt/docproc/{script} <<'DOCPROC_SCRIPT'\n{body}DOCPROC_SCRIPT")
        lines += ["chmod 0755 /opt/docproc/*.sh", "/opt/docproc/boot.sh"]
        user_data.add_commands(*lines)
        return user_data

    def _fleet(
        self,
        id_: str,
        *,
        role_name: str,
        instance_type: str,
        security_group: ec2.SecurityGroup,
        role: iam.Role,
        min_capacity: int,
        max_capacity: int,
        stop_timeout: int,
        health_checks: autoscaling.HealthChecks,
    ) -> autoscaling.AutoScalingGroup:
        """One role's Auto Scaling group: launch template (IMDSv2, encrypted EBS), user data, logs."""
        log_group = logs.LogGroup(
            self, f"{id_}Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        log_group.grant_write(role)  # its own log group only: the ARN names it
        template = ec2.LaunchTemplate(
            self,
            f"{id_}Template",
            machine_image=ec2.MachineImage.latest_amazon_linux2023(cpu_type=ec2.AmazonLinuxCpuType.X86_64),
            instance_type=ec2.InstanceType(instance_type),
            role=role,
            security_group=security_group,
            user_data=self._user_data(role_name, log_group, stop_timeout),
            require_imdsv2=True,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            http_put_response_hop_limit=2,  # the container reaches IMDS (instance role) through Docker's bridge
            instance_metadata_tags=True,  # drain.sh reads its group's name from the instance tags
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        self.config.root_volume_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        asg = autoscaling.AutoScalingGroup(
            self,
            f"{id_}Asg",
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            launch_template=template,
            min_capacity=min_capacity,
            max_capacity=max_capacity,
            health_checks=health_checks,
            new_instances_protected_from_scale_in=False,  # scale-in is made graceful by the drain hook instead
            update_policy=autoscaling.UpdatePolicy.rolling_update(
                max_batch_size=1, min_instances_in_service=min(min_capacity, max_capacity - 1)
            ),
            group_metrics=[autoscaling.GroupMetrics.all()],
            default_instance_warmup=WORKER_WARMUP,
        )
        Tags.of(asg).add("docproc:role", role_name)
        self.ack(
            asg,
            "AwsSolutions-AS3",
            "Scaling events are in the group's activity history and on EventBridge (aws.autoscaling); no "
            "subscriber exists by default, so an SNS topic for them is left to the operator.",
        )
        return asg

    def _worker_scaling(self) -> None:
        """Step scaling on the queue's depth: out fast on a backlog, in slowly once it is empty.

        Scale-in is graceful: a termination lifecycle hook holds each instance until drain.sh has
        stopped the worker with SIGTERM (RQ's warm shutdown finishes the job in hand) and completes
        the hook; heartbeats keep it alive for up to workerDrainSeconds.
        """
        depth = cloudwatch.Metric(
            namespace=METRIC_NAMESPACE,
            metric_name=QUEUE_DEPTH_METRIC,
            dimensions_map={"Queue": QUEUE_NAME},
            statistic="Maximum",
            period=Duration.minutes(1),
        )
        first = SCALE_OUT_STEPS[0][0]
        self.worker_asg.scale_on_metric(
            "ScaleOutOnBacklog",
            metric=depth,
            scaling_steps=[autoscaling.ScalingInterval(upper=first, change=0)]
            + [autoscaling.ScalingInterval(lower=lower, change=add) for lower, add in SCALE_OUT_STEPS],
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            evaluation_periods=SCALE_OUT_MINUTES,
            datapoints_to_alarm=SCALE_OUT_MINUTES,
            estimated_instance_warmup=WORKER_WARMUP,
            metric_aggregation_type=autoscaling.MetricAggregationType.MAXIMUM,
        )
        self.worker_asg.scale_on_metric(
            "ScaleInWhenEmpty",
            metric=depth,
            scaling_steps=[
                autoscaling.ScalingInterval(upper=0, change=-1),  # the alarm: QueueDepth <= 0
                autoscaling.ScalingInterval(lower=0, change=0),
            ],
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            evaluation_periods=SCALE_IN_MINUTES,
            datapoints_to_alarm=SCALE_IN_MINUTES,
            metric_aggregation_type=autoscaling.MetricAggregationType.MAXIMUM,
        )
        self.worker_asg.add_lifecycle_hook(
            "Drain",
            lifecycle_hook_name=DRAIN_HOOK_NAME,
            lifecycle_transition=autoscaling.LifecycleTransition.INSTANCE_TERMINATING,
            default_result=autoscaling.DefaultResult.CONTINUE,
            heartbeat_timeout=Duration.minutes(15),
        )
        # its own policy, not the role's default one: the launch template depends on that one, and this
        # names the group, which depends on the launch template
        drain_policy = iam.Policy(
            self,
            "WorkerDrainPolicy",
            roles=[self.worker_role],
            statements=[
                iam.PolicyStatement(
                    sid="CompleteOwnDrain",
                    actions=["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
                    resources=[self.worker_asg.auto_scaling_group_arn],
                )
            ],
        )
        self.ack(
            drain_policy,
            f"AwsSolutions-IAM5[Resource::{flat(self, self.worker_asg.auto_scaling_group_arn)}]",
            "The group's ARN embeds a UUID known only once it exists; the name pins the grant to the workers' "
            "own group, for its own lifecycle hook.",
        )

    # ------------------------------------------------------------------------------------------------
    def _load_balancer(self) -> None:
        cfg = self.config
        self.alb = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=self.vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=self.alb_sg,
            drop_invalid_header_fields=True,
            idle_timeout=Duration.seconds(120),  # large uploads over slow links
        )
        self.alb.log_access_logs(self.log_bucket, "alb")
        peer = ec2.Peer.ipv4(cfg.allowed_cidr)
        ports = [443, 80] if cfg.https else [80]
        for port in ports:
            self.alb_sg.add_ingress_rule(peer, ec2.Port.tcp(port), f"HTTP{'S' if port == 443 else ''} from clients")
        if cfg.allowed_cidr == "0.0.0.0/0":
            self.ack(
                self.alb_sg,
                "AwsSolutions-EC23",
                "The public API's load balancer: clients connect from anywhere (narrow with -c allowedCidr=...).",
            )

        target = elbv2.ApplicationTargetGroup(
            self,
            "ApiTargets",
            vpc=self.vpc,
            port=API_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.api_asg],
            deregistration_delay=Duration.seconds(60),
            health_check=elbv2.HealthCheck(
                path="/health",
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
        )
        self.target_group = target
        if cfg.https:
            assert cfg.certificate_arn is not None
            self.listener = self.alb.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_arn(cfg.certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                open=False,
                default_target_groups=None if cfg.cloudfront else [target],
                default_action=elbv2.ListenerAction.fixed_response(403) if cfg.cloudfront else None,
            )
            self.alb.add_redirect(source_port=80, target_port=443, open=False)
        else:
            self.listener = self.alb.add_listener(
                "Http",
                port=80,
                protocol=elbv2.ApplicationProtocol.HTTP,
                open=False,
                default_target_groups=None if cfg.cloudfront else [target],
                default_action=elbv2.ListenerAction.fixed_response(403) if cfg.cloudfront else None,
            )
        self.api_sg.connections.allow_from(self.alb_sg, ec2.Port.tcp(API_PORT), "from the load balancer")

    def _cloudfront(self) -> None:
        """CloudFront in front of the ALB; the ALB answers 403 unless the request carries CloudFront's secret header."""
        cfg = self.config
        verify = secretsmanager.Secret(
            self,
            "OriginVerify",
            description="docproc: header value CloudFront sends and the ALB requires (X-Origin-Verify)",
            generate_secret_string=secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=48),
        )
        self.ack(
            verify,
            "AwsSolutions-SMG4",
            "A shared header value between CloudFront and the ALB; rotate it by redeploying with a new secret.",
        )
        verify_value = verify.secret_value.unsafe_unwrap()  # a dynamic reference, resolved by CloudFormation
        self.listener.add_action(
            "FromCloudFront",
            priority=10,
            conditions=[elbv2.ListenerCondition.http_header("X-Origin-Verify", [verify_value])],
            action=elbv2.ListenerAction.forward([self.target_group]),
        )
        headers = {"X-Origin-Verify": verify_value}
        if cfg.https:
            origin_name = cfg.origin_domain_name or f"origin.{cfg.domain_name}"
            origin: cloudfront.IOrigin = origins.HttpOrigin(
                origin_name,
                protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
                read_timeout=Duration.seconds(60),
                custom_headers=headers,
            )
            self.origin_domain_name: str | None = origin_name
        else:
            origin = origins.LoadBalancerV2Origin(
                self.alb,
                protocol_policy=cloudfront.OriginProtocolPolicy.HTTP_ONLY,
                read_timeout=Duration.seconds(60),
                custom_headers=headers,
            )
            self.origin_domain_name = None
        certificate = (
            acm.Certificate.from_certificate_arn(self, "CloudFrontCertificate", cfg.cloudfront_certificate_arn)
            if cfg.cloudfront_certificate_arn
            else None
        )
        cf_logs = s3.Bucket(
            self,
            "CloudFrontLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            # CloudFront's standard logging writes with ACLs
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.ack(
            cf_logs,
            "AwsSolutions-S1",
            "The destination of CloudFront's access logs; logging it into itself would loop.",
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Cdn",
            comment="docproc API",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            ),
            domain_names=[cfg.domain_name] if cfg.domain_name and certificate else None,
            certificate=certificate,
            # only with a custom certificate: *.cloudfront.net's own policy is fixed by CloudFront
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021 if certificate else None,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_logging=True,
            log_bucket=cf_logs,
            log_file_prefix="cloudfront/",
        )
        self.ack(
            self.distribution,
            "AwsSolutions-CFR1",
            "An API for the operator's own clients; no country restriction is wanted by default.",
        )
        self.ack(
            self.distribution,
            "AwsSolutions-CFR2",
            "No WAF web ACL by default (its fixed monthly cost); attach one when the API is exposed publicly.",
        )
        if certificate is None:
            self.ack(
                self.distribution,
                "AwsSolutions-CFR4",
                "Without a custom domain CloudFront serves its default *.cloudfront.net certificate, whose "
                "minimum protocol CloudFront fixes; with domainName and a certificate TLS 1.2 (2021) applies.",
            )
        if not cfg.https:
            self.ack(
                self.distribution,
                "AwsSolutions-CFR5",
                "Without an ALB certificate (certificateArn) the origin is reached over HTTP; give one to switch "
                "CloudFront to HTTPS-only towards the ALB.",
            )

    def _dns(self) -> None:
        cfg = self.config
        assert cfg.hosted_zone_id and cfg.hosted_zone_name and cfg.domain_name
        zone = route53.HostedZone.from_hosted_zone_attributes(
            self, "Zone", hosted_zone_id=cfg.hosted_zone_id, zone_name=cfg.hosted_zone_name
        )
        if self.distribution is not None:
            target = route53.RecordTarget.from_alias(route53_targets.CloudFrontTarget(self.distribution))
            route53.ARecord(self, "ApiAlias", zone=zone, record_name=cfg.domain_name, target=target)
            route53.AaaaRecord(self, "ApiAliasV6", zone=zone, record_name=cfg.domain_name, target=target)
            if self.origin_domain_name:
                route53.ARecord(
                    self,
                    "OriginAlias",
                    zone=zone,
                    record_name=self.origin_domain_name,
                    target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(self.alb)),
                )
        else:
            route53.ARecord(
                self,
                "ApiAlias",
                zone=zone,
                record_name=cfg.domain_name,
                target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(self.alb)),
            )

    def _outputs(self) -> None:
        cfg = self.config
        assert self.docdb.secret is not None and self.aurora.secret is not None
        scheme = "https" if cfg.https or self.distribution is not None else "http"
        if cfg.domain_name and cfg.route53:
            host = cfg.domain_name
        elif self.distribution is not None:
            host = self.distribution.distribution_domain_name
        else:
            host = self.alb.load_balancer_dns_name
        outputs = {
            "ApiUrl": (f"{scheme}://{host}", "the API's base URL (GET /health, POST /upload, /docs)"),
            "LoadBalancerDns": (self.alb.load_balancer_dns_name, "the ALB's DNS name"),
            "ImageUri": (self.image_uri, "the image every instance runs"),
            "UploadsBucket": (self.uploads.bucket_name, f"S3 bucket of the uploads (prefix {S3_PREFIX})"),
            "DocumentDbEndpoint": (self.docdb.cluster_endpoint.socket_address, "DocumentDB cluster endpoint"),
            "DocumentDbSecretArn": (self.docdb.secret.secret_arn, "DocumentDB credentials"),
            "ValkeyEndpoint": (
                f"{self.valkey.attr_primary_end_point_address}:{self.valkey.attr_primary_end_point_port}",
                "Valkey primary endpoint (TLS, AUTH)",
            ),
            "ValkeySecretArn": (self.valkey_secret.secret_arn, "Valkey AUTH token"),
            "AuroraEndpoint": (self.aurora.cluster_endpoint.socket_address, "Aurora PostgreSQL writer endpoint"),
            "AuroraSecretArn": (self.aurora.secret.secret_arn, "Aurora credentials"),
            "ApiAsgName": (self.api_asg.auto_scaling_group_name, "API Auto Scaling group"),
            "WorkerAsgName": (self.worker_asg.auto_scaling_group_name, "workers' Auto Scaling group"),
            "WatchdogAsgName": (self.watchdog_asg.auto_scaling_group_name, "watchdog Auto Scaling group"),
            "QueueDepthMetric": (
                f"{METRIC_NAMESPACE}/{QUEUE_DEPTH_METRIC} Queue={QUEUE_NAME}",
                "the CloudWatch metric the watchdog publishes and the workers scale on",
            ),
        }
        if self.distribution is not None:
            outputs["CloudFrontDomain"] = (self.distribution.distribution_domain_name, "CloudFront domain name")
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)


def _env_lines(values: dict[str, str]) -> str:
    """KEY=value lines for deploy.env; values may be CloudFormation tokens (resolved before boot)."""
    return "".join(f"{key}={value}\n" for key, value in values.items())
